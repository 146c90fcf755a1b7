#!/usr/bin/env bash
# Post-copy (--lazy): refused up front where fs.pipe-max-size is too small;
# otherwise the container resumes on node 2 while its pages
# follow through the agents' SSH session; its counter, log and pipe go on,
# exactly one copy runs. A restore that fails before the commit makes the
# lazy dump fail, and the frozen container resumes where it was, its network
# lock undone. A lazy dump that dies after COMMIT, its pages not all
# served: the source's link ends, so the target ends its incomplete copy,
# and the source hears on a new link that no copy is left (lost, the
# documented risk of post-copy) instead of both waiting for good.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"

fx_agents_up
read -r id pid < <(fx_ctr_start n1 lazy)
work=$(fx_ctr_dir n1 lazy)
fx_counter_advances "$work" || t_fail "workload does not tick"

t_log "fs.pipe-max-size below 4 MiB: --lazy is refused before anything is frozen"
pipe_max=$(cat /proc/sys/fs/pipe-max-size)
restore_pipe_max() { sysctl -q -w fs.pipe-max-size="$pipe_max"; }
# set +e first: under errexit, `(exit "$rc")` (which hands the status on
# to fx_teardown) would end the trap there when rc is not 0, and a failing
# run would leave its agents and sshd running.
trap 'rc=$?; set +e; restore_pipe_max; (exit "$rc"); fx_teardown' EXIT
sysctl -q -w fs.pipe-max-size=1048576
rc=0
out=$(fx_nm n1 migrate "$id" node2 --lazy 2>&1) || rc=$?
restore_pipe_max
t_assert_eq "$rc" 3 "exit code of --lazy with a small fs.pipe-max-size ($out)"
grep -q "fs.pipe-max-size" <<<"$out" || t_fail "the refusal does not name fs.pipe-max-size: $out"
t_assert_eq "$(fx_ctr_where "$id")" n1 "where the container runs after the refusal"
kill -0 "$pid" || t_fail "the container is not its old process any more"
fx_counter_advances "$work" || t_fail "counter stopped after the refusal"

t_log "a post-copy move node1 -> node2"
c_before=$(fx_count "$work")
out=$(fx_nm n1 migrate "$id" node2 --lazy --json) || t_fail "migrate --lazy failed: $out"
res=$(grep '"event":"result"' <<<"$out" | tail -n1)
t_assert_eq "$(jq -r .result.outcome <<<"$res")" done "outcome of the lazy move"
new_pid=$(jq -r .result.new_pid <<<"$res")
jq -e '.result.stages.postcopy_ms >= 0' <<<"$res" >/dev/null || t_fail "no post-copy stage in the result: $res"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the lazy move"
t_assert_eq "$(fx_ctr_running_copies lazy)" 1 "running copies after the lazy move"
t_assert_eq "$(fx_ctr_stopped_copies lazy)" 0 "stopped copies after the lazy move"
grep -q "\"pid\": $new_pid," "$(fx_dir n2)/nucleus/$id.json" || t_fail "node2's state file does not name pid $new_pid"
[ ! -e "$(fx_dir n1)/nucleus/$id.json" ] || t_fail "node1 still has a state file"
fx_counter_advances "$work" || t_fail "counter stopped after the lazy move"
[ "$(fx_count "$work")" -ge "$c_before" ] || t_fail "counter went back"
fx_log_ok "$work" || t_fail "the log has a gap or a repeat after the lazy move"
[ -z "$(ls -A "$(fx_dir n2)/migrate/staging")" ] || t_fail "staging left on node2"
[ -z "$(ls -A "$(fx_dir n1)/migrate/checkpoints")" ] || t_fail "images left on node1"
grep -q "post-copy done" "$(fx_agent_log n2)" || t_fail "node2 did not log the end of post-copy"

t_log "a lazy move whose restore fails before the commit: it resumes on node2"
fx_agent_stop n1
fx_agent_start n1 "NM_FAULT=fail=dest-restore"
c_before=$(fx_count "$work")
rc=0
out=$(fx_nm n2 migrate "$id" node1 --lazy --json) || rc=$?
t_assert_eq "$rc" 4 "exit code of a rolled-back lazy move ($out)"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the rollback"
t_assert_eq "$(fx_ctr_running_copies lazy)" 1 "running copies after the rollback"
t_assert_eq "$(fx_ctr_stopped_copies lazy)" 0 "stopped copies after the rollback"
kill -0 "$new_pid" || t_fail "the container is not its old process any more"
fx_counter_advances "$work" || t_fail "counter stopped after the rollback"
fx_log_ok "$work" || t_fail "the log has a gap or a repeat after the rollback"
tables=$(nsenter --net="/proc/$new_pid/ns/net" nft list tables) || t_fail "cannot list the container's nftables tables"
! grep -q CRIU <<<"$tables" || t_fail "CRIU's network lock is still in the container's network namespace: $tables"

t_log "a lazy move whose dump dies after COMMIT, its pages not all served: both sides end it"
# node2 (the source) stops at `committed` (its loop still, so no page
# leaves) with most of a 256 MiB heap not yet fetched; its CRIU is killed
# there, and node2 goes on.
gate=$FX_ROOT/lazy-gate
fx_agent_stop n1
fx_agent_start n1
fx_agent_stop n2
: >"$gate"
fx_agent_start n2 NM_FAULT=pause-after=committed "NM_FAULT_GATE=$gate"
read -r hid _ < <(b_hog_start n2 lazyhog 256 random) || t_fail "the 256 MiB workload did not start"
off2=$(stat -c %s "$(fx_agent_log n2)")
fx_move_start n2 "$hid" node1 "$FX_ROOT/lazy-dies.out" --lazy
cli=$FX_MOVE_PID
t_wait_until 120 "node2 stops at committed" fx_logged_since n2 "$off2" "fault injection: paused at committed" ||
	t_fail "node2 never reached committed: $(cat "$FX_ROOT/lazy-dies.out")"
criu=$(fx_criu_pid n2) || t_fail "no lazy dump runs on node2 at committed"
kill -KILL "$criu"
rm -f "$gate"
t_wait_until 120 "the move ends on node2" bash -c "! kill -0 $cli 2>/dev/null" ||
	t_fail "node2's move still waits after its lazy dump died: $(tail -c +$((off2 + 1)) "$(fx_agent_log n2)" | tail -n 20)"
wait "$cli" || true
res=$(grep '"event":"result"' "$FX_ROOT/lazy-dies.out" | tail -n1)
t_assert_eq "$(jq -r .result.outcome <<<"$res")" lost "outcome of the lazy move whose dump died after COMMIT ($res)"
dst_outcome() { fx_nm n1 status "$hid" --json 2>/dev/null | jq -r '.result.migrations[0] | .outcome // .phase // empty'; }
dst_aborted() { [ "$(dst_outcome)" = aborted ]; }
t_wait_until 60 "node1 ends its incomplete copy" dst_aborted ||
	t_fail "node1's copy is not aborted: $(fx_nm n1 status "$hid" --json 2>&1)"
t_assert_eq "$(fx_ctr_running_copies lazyhog)" 0 "running copies of a container whose pages were lost"
t_log "ok"
