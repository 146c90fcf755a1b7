#!/usr/bin/env bash
# A node runs one CRIU dump or restore at a time, but a lazy dump that only
# serves its pages (past post-dump) is out of the way: a restore coming in
# meanwhile runs at once, where it would otherwise wait, its container
# frozen on its source, until every page was fetched (or criu_timeout).
#
# node1 moves a container to node2 with --lazy; node2's CRIU is held before
# its restore (NM_FAULT criu-hold-at=pre-restore), so no page is fetched and
# node1's lazy dump keeps serving. Meanwhile node3 moves another container
# to node1: it completes while the lazy dump still runs. Then node2 goes on
# and the lazy move completes too; one copy of each runs.
set -euo pipefail
FX_NODES="n1 n2 n3"
. "$(dirname "$0")/../lib/agents.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"

fx_nodes_up
gate=$FX_ROOT/restore-gate
: >"$gate"
fx_agent_start n1
fx_agent_start n2 NM_FAULT=criu-hold-at=pre-restore "NM_FAULT_GATE=$gate"
fx_agent_start n3
read -r lid _ < <(b_hog_start n1 lazyhog 64 random) || t_fail "the lazy move's workload did not start"
read -r id pid < <(fx_ctr_start n3 incoming)
work=$(fx_ctr_dir n3 incoming)
fx_counter_advances "$work" || t_fail "workload does not tick"
off1=$(stat -c %s "$(fx_agent_log n1)")
off2=$(stat -c %s "$(fx_agent_log n2)")

t_log "a lazy move node1 -> node2, node2's restore held: node1's dump serves its pages"
fx_nm n1 migrate "$lid" node2 --lazy --json >"$FX_ROOT/lazy.out" 2>&1 &
lazy_cli=$!
fx_track_pid "$lazy_cli"
t_wait_until 120 "node2's CRIU holds before its restore" \
	fx_logged_since n2 "$off2" "fault injection: CRIU held at pre-restore" ||
	t_fail "node2's restore never held: $(cat "$FX_ROOT/lazy.out")"
lazy_dump=$(fx_criu_pid n1) || t_fail "no lazy dump runs on node1"

t_log "a move node3 -> node1 meanwhile: its restore does not wait for the lazy dump"
fx_nm n3 migrate "$id" node1 --json >"$FX_ROOT/incoming.out" 2>&1 &
cli=$!
fx_track_pid "$cli"
# Queued behind the lazy dump, the restore would wait for node1's
# criu_timeout (600 s): far beyond this bound, which load only scales.
t_wait_until 120 "the move into node1 ends" bash -c "! kill -0 $cli 2>/dev/null" ||
	t_fail "the move into node1 still waits while node1's lazy dump serves: $(tail -c +$((off1 + 1)) "$(fx_agent_log n1)" | tail -n 5)"
rc=0
wait "$cli" || rc=$?
out=$(cat "$FX_ROOT/incoming.out")
res=$(grep '"event":"result"' <<<"$out" | tail -n1)
t_assert_eq "$rc" 0 "exit code of the move into node1 ($out)"
t_assert_eq "$(jq -r .result.outcome <<<"$res")" done "outcome of the move into node1"
kill -0 "$lazy_dump" || t_fail "node1's lazy dump ended before the move into node1 did: the test proves nothing"
kill -0 "$lazy_cli" || t_fail "the lazy move ended while node2's restore held: $(cat "$FX_ROOT/lazy.out")"
fx_logged_since n1 "$off1" "gives up its CRIU turn" || t_fail "node1 did not log that its lazy dump gave up its turn"
t_assert_eq "$(fx_ctr_where "$id")" n1 "where the moved container runs"
t_assert_eq "$(fx_ctr_running_copies incoming)" 1 "running copies of the moved container"
fx_counter_advances "$work" || t_fail "counter stopped after the move into node1"
fx_log_ok "$work" || t_fail "the log has a gap or a repeat after the move into node1"

t_log "node2 goes on: the lazy move completes"
rm -f "$gate"
rc=0
wait "$lazy_cli" || rc=$?
res=$(grep '"event":"result"' "$FX_ROOT/lazy.out" | tail -n1)
t_assert_eq "$rc" 0 "exit code of the lazy move ($res)"
t_assert_eq "$(jq -r .result.outcome <<<"$res")" done "outcome of the lazy move"
t_assert_eq "$(fx_ctr_running_copies lazyhog)" 1 "running copies of the lazily moved container"
t_wait_until 60 "node1's lazy dump ends" bash -c "! kill -0 $lazy_dump 2>/dev/null" ||
	t_fail "node1's lazy dump still runs after the lazy move"
t_log "ok"
