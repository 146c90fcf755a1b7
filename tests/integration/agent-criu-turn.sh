#!/usr/bin/env bash
# A node runs one CRIU dump or restore at a time, but a dump whose pace is
# not this machine's steps out of the way: a restore coming in meanwhile
# runs at once, where it would otherwise wait, its container frozen on its
# source, for that dump's end.
#
# A lazy dump that only serves its pages (past post-dump): node1 moves a
# container to node2 with --lazy; node2's CRIU is held before its restore
# (NM_FAULT criu-hold-at=pre-restore), so no page is fetched and node1's
# lazy dump keeps serving. Meanwhile node3 moves another container to
# node1: it completes while the lazy dump still runs. A second lazy move,
# node1 -> node3, its restore held too, keeps its turn (one dump aside at
# a time) until node2 goes on and the first lazy move completes; then a
# move from node2 into node1 completes while the second lazy dump serves.
# node3 goes on; one copy of each runs.
#
# A dump that node1's bandwidth share holds back: node1, limited to 128
# KiB/s, moves 16 MiB of incompressible pages to node2, which takes it
# two minutes at least. A move from node3 into node1 meanwhile completes
# while that dump still runs; that container's move back to node3 waits
# (dumps do wait for a paced dump), its container running. Then node2's
# page server is killed: the paced move fails, its container runs on at
# node1, its old process, and the move back completes.
set -euo pipefail
FX_NODES="n1 n2 n3"
. "$(dirname "$0")/../lib/agents.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"

# move_in_beside FROM NAME KIND DUMP MOVE: moves a new counter NAME from
# node FROM into node1 while node1's KIND dump (CRIU's pid DUMP, for the
# move whose client is MOVE) runs on; the move in ends first, done, with
# one copy and a whole log. Sets ID and WORK.
move_in_beside() {
	local from=$1 name=$2 kind=$3 dump=$4 move=$5 cli off
	read -r ID _ < <(fx_ctr_start "$from" "$name")
	WORK=$(fx_ctr_dir "$from" "$name")
	fx_counter_advances "$WORK" || t_fail "$name does not tick"
	off=$(stat -c %s "$(fx_agent_log n1)")
	fx_move_start "$from" "$ID" node1 "$FX_ROOT/$name.out"
	cli=$FX_MOVE_PID
	# Queued behind the dump, the restore would wait for its end: a lazy
	# one's criu_timeout (600 s), a paced one's two minutes at least, far
	# beyond this bound, which load only scales.
	t_wait_until 120 "the move of $name into node1 ends" bash -c "! kill -0 $cli 2>/dev/null" ||
		t_fail "the move of $name into node1 still waits while node1's $kind dump runs: $(tail -c +$((off + 1)) "$(fx_agent_log n1)" | tail -n 5)"
	fx_move_end "$cli" "$FX_ROOT/$name.out" 0 "done" "the move of $name into node1"
	kill -0 "$dump" || t_fail "node1's $kind dump ended before the move of $name did: the test proves nothing"
	kill -0 "$move" || t_fail "node1's $kind move ended before the move of $name did"
	t_assert_eq "$(fx_ctr_where "$ID")" n1 "where $name runs"
	t_assert_eq "$(fx_ctr_running_copies "$name")" 1 "running copies of $name"
	fx_counter_advances "$WORK" || t_fail "$name stopped after its move into node1"
	fx_log_ok "$WORK" || t_fail "the log of $name has a gap or a repeat after its move into node1"
}

fx_nodes_up
gate=$FX_ROOT/restore-gate
gate3=$FX_ROOT/restore-gate3
: >"$gate"
: >"$gate3"
fx_agent_start n1
fx_agent_start n2 NM_FAULT=criu-hold-at=pre-restore "NM_FAULT_GATE=$gate"
fx_agent_start n3 NM_FAULT=criu-hold-at=pre-restore "NM_FAULT_GATE=$gate3"
read -r lid _ < <(b_hog_start n1 lazyhog 64 random) || t_fail "the lazy move's workload did not start"
read -r lid2 _ < <(b_hog_start n1 lazyhog2 64 random) || t_fail "the second lazy move's workload did not start"
off1=$(stat -c %s "$(fx_agent_log n1)")
off2=$(stat -c %s "$(fx_agent_log n2)")
off3=$(stat -c %s "$(fx_agent_log n3)")

t_log "a lazy move node1 -> node2, node2's restore held: node1's dump serves its pages"
fx_move_start n1 "$lid" node2 "$FX_ROOT/lazy.out" --lazy
lazy_cli=$FX_MOVE_PID
t_wait_until 120 "node2's CRIU holds before its restore" \
	fx_logged_since n2 "$off2" "fault injection: CRIU held at pre-restore" ||
	t_fail "node2's restore never held: $(cat "$FX_ROOT/lazy.out")"
lazy_dump=$(fx_criu_pid n1) || t_fail "no lazy dump runs on node1"

t_log "a move node3 -> node1 meanwhile: its restore does not wait for the lazy dump"
move_in_beside n3 incoming lazy "$lazy_dump" "$lazy_cli"
fx_logged_since n1 "$off1" "gives up its CRIU turn" || t_fail "node1 did not log that its lazy dump gave up its turn"

t_log "a second lazy move node1 -> node3, node3's restore held: it keeps its turn while the first serves"
off1=$(stat -c %s "$(fx_agent_log n1)")
fx_move_start n1 "$lid2" node3 "$FX_ROOT/lazy2.out" --lazy
lazy2_cli=$FX_MOVE_PID
t_wait_until 120 "node3's CRIU holds before its restore" \
	fx_logged_since n3 "$off3" "fault injection: CRIU held at pre-restore" ||
	t_fail "node3's restore never held: $(cat "$FX_ROOT/lazy2.out")"
lazy_dump2=$(fx_criu_pid n1 "$lazy_dump") || t_fail "no second lazy dump runs on node1"
fx_logged_since n1 "$off1" "keeps its CRIU turn while another dump runs aside" ||
	t_fail "node1 did not log that its second lazy dump keeps its turn"

t_log "node2 goes on: the first lazy move completes, and the second lazy dump goes aside"
rm -f "$gate"
fx_move_end "$lazy_cli" "$FX_ROOT/lazy.out" 0 "done" "the lazy move"
t_assert_eq "$(fx_ctr_running_copies lazyhog)" 1 "running copies of the lazily moved container"
t_wait_until 60 "node1's lazy dump ends" bash -c "! kill -0 $lazy_dump 2>/dev/null" ||
	t_fail "node1's lazy dump still runs after the lazy move"
t_wait_until 60 "node1 says its second lazy dump has gone aside" \
	fx_logged_since n1 "$off1" "gives up its CRIU turn now, and the node's other dumps and restores" ||
	t_fail "node1 did not log that its second lazy dump took the aside the first one left"
# From node2: node3's CRIU holds the second lazy move's restore.
move_in_beside n2 incoming3 "second lazy" "$lazy_dump2" "$lazy2_cli"

t_log "node3 goes on: the second lazy move completes"
rm -f "$gate3"
fx_move_end "$lazy2_cli" "$FX_ROOT/lazy2.out" 0 "done" "the second lazy move"
t_assert_eq "$(fx_ctr_running_copies lazyhog2)" 1 "running copies of the second lazily moved container"
t_wait_until 60 "node1's second lazy dump ends" bash -c "! kill -0 $lazy_dump2 2>/dev/null" ||
	t_fail "node1's second lazy dump still runs after its move"

t_log "node1 limited to 128 KiB/s moves 16 MiB of incompressible pages to node2"
fx_agent_stop n1
FX_AGENT_ARGS="--set limits.bandwidth=128K" fx_agent_start n1
read -r paced_id paced_pid < <(b_hog_start n1 pacedhog 16 random) || t_fail "the paced move's workload did not start"
off1=$(stat -c %s "$(fx_agent_log n1)")
off2=$(stat -c %s "$(fx_agent_log n2)")
fx_move_start n1 "$paced_id" node2 "$FX_ROOT/paced.out"
paced_cli=$FX_MOVE_PID
t_wait_until 120 "node1's bandwidth share holds its dump back" \
	fx_logged_since n1 "$off1" "the node's bandwidth share holds the dump back" ||
	t_fail "node1 never held its dump back: $(tail -c +$((off1 + 1)) "$(fx_agent_log n1)" | tail -n 20)"
paced_dump=$(fx_criu_pid n1) || t_fail "no paced dump runs on node1"

t_log "a move node3 -> node1 meanwhile: its restore does not wait for the paced dump"
move_in_beside n3 incoming2 paced "$paced_dump" "$paced_cli"

t_log "a move node1 -> node3 meanwhile: its dump waits for the paced one, its container running"
# Beside the paced dump it would split node1's share and keep both
# containers frozen, each longer.
off1=$(stat -c %s "$(fx_agent_log n1)")
fx_move_start n1 "$ID" node3 "$FX_ROOT/back.out"
back_cli=$FX_MOVE_PID
t_wait_until 60 "node1 says the dump back waits" fx_logged_since n1 "$off1" "the dump waits for its turn" ||
	t_fail "node1 did not hold the dump back behind the paced one: $(tail -c +$((off1 + 1)) "$(fx_agent_log n1)" | tail -n 10)"
fx_counter_advances "$WORK" || t_fail "the container whose dump waits does not tick"
kill -0 "$back_cli" || t_fail "the move back ended while the paced dump ran: $(cat "$FX_ROOT/back.out")"

t_log "node2's page server dies: the paced move fails, its container runs on at node1; the move back goes"
pspid=$(pgrep -f "page-server --ps-socket 3 -D $(fx_dir n2)/" | head -n1)
[ -n "$pspid" ] || t_fail "no page server runs on node2 for the paced move"
kill -KILL "$pspid"
fx_move_end "$paced_cli" "$FX_ROOT/paced.out" 1 "" "the paced move whose page server died"
t_assert_eq "$(fx_ctr_where "$paced_id")" n1 "where the paced container runs"
kill -0 "$paced_pid" || t_fail "the paced container is not its old process on node1 any more"
t_assert_eq "$(fx_ctr_running_copies pacedhog)" 1 "running copies of the paced container"
t_wait_until 60 "node1's paced dump ends" bash -c "! kill -0 $paced_dump 2>/dev/null" ||
	t_fail "node1's paced dump still runs after its move failed"
fx_move_end "$back_cli" "$FX_ROOT/back.out" 0 "done" "the move back to node3"
t_assert_eq "$(fx_ctr_where "$ID")" n3 "where the container moved back runs"
t_assert_eq "$(fx_ctr_running_copies incoming2)" 1 "running copies of the container moved back"
fx_counter_advances "$WORK" || t_fail "counter stopped after the move back"
fx_log_ok "$WORK" || t_fail "the log has a gap or a repeat after the move back"
t_log "ok"
