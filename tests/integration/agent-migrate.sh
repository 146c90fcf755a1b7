#!/usr/bin/env bash
# A container moves node 1 -> node 2 and back through the agents: its
# counter, open files and pipe continue, exactly one copy runs at every
# check, and the state files say where it is on both nodes.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"

fx_agents_up
read -r id pid < <(fx_ctr_start n1 mover)
work=$(fx_ctr_dir n1 mover)
fx_counter_advances "$work" || t_fail "workload does not tick"

# move FROM TO: one move, checked from every side.
move() {
	local from=$1 to=$2 out c_before c_after new_pid
	c_before=$(fx_count "$work")
	out=$(fx_nm "$from" migrate "$id" "$(fx_node_name "$to")" --json) || t_fail "migrate $from -> $to failed: $out"
	new_pid=$(tail -n1 <<<"$out" | sed -n 's/.*"new_pid":\([0-9]*\).*/\1/p')
	grep -q '"outcome":"done"' <<<"$out" || t_fail "result is not done: $out"
	grep -q '"event":"progress".*"phase":"streaming"' <<<"$out" || t_fail "no streaming progress event: $out"
	t_assert_eq "$(fx_ctr_where "$id")" "$to" "where the container runs after $from -> $to"
	[ ! -e "$(fx_dir "$from")/nucleus/$id.json" ] || t_fail "$from still has a state file for $id"
	local state=$(fx_dir "$to")/nucleus/$id.json
	grep -q "\"pid\": $new_pid," "$state" || t_fail "$to's state file does not name pid $new_pid"
	grep -q '"status": "running"' "$state" || t_fail "$to's state file is not running"
	grep -q '"name": "mover"' "$state" || t_fail "$to's state file lost the name"
	t_assert_eq "$(stat -c %a "$state")" 600 "state file mode on $to"
	t_assert_eq "$(fx_ctr_running_copies mover)" 1 "running copies after $from -> $to"
	t_assert_eq "$(fx_ctr_stopped_copies mover)" 0 "stopped copies after $from -> $to"
	fx_counter_advances "$work" || t_fail "counter stopped after $from -> $to"
	c_after=$(fx_count "$work")
	[ "$c_after" -ge "$c_before" ] || t_fail "counter went back: $c_before -> $c_after"
	fx_log_ok "$work" || t_fail "the log (fed through the pipe) has a gap or a repeat"
	[ -z "$(ls -A "$(fx_dir "$to")/migrate/staging")" ] || t_fail "staging left on $to"
	[ -z "$(ls -A "$(fx_dir "$from")/migrate/checkpoints")" ] || t_fail "images left on $from"
	t_log "moved $from -> $to: pid $new_pid, counter $c_before -> $c_after"
}

# CRIU's logs of migrations that ended long ago go (at start, then at most
# hourly when a migration ends); recent ones stay.
criu_logs=$(fx_dir n1)/migrate/criu
mkdir -p "$criu_logs/00000000000000aa-dump" "$criu_logs/00000000000000bb-restore"
echo "an old log" >"$criu_logs/00000000000000aa-dump/dump.log"
touch -d '15 days ago' "$criu_logs/00000000000000aa-dump"
touch -d '13 days ago' "$criu_logs/00000000000000bb-restore"
fx_agent_stop n1
fx_agent_start n1
[ ! -e "$criu_logs/00000000000000aa-dump" ] || t_fail "CRIU's logs of 15 days ago were not pruned"
[ -d "$criu_logs/00000000000000bb-restore" ] || t_fail "CRIU's logs of 13 days ago were pruned"

log_off=$(stat -c %s "$(fx_agent_log n2)")
move n1 n2
ls -d "$criu_logs"/*-dump >/dev/null 2>&1 || t_fail "the logs of the move that just ended are gone"
# sshd's pipes went to the agent itself: no relay copied the images
fx_logged_since n2 "$log_off" "dial-stdio (pid [0-9]*) handed the SSH session over" ||
	t_fail "node 2's agent did not take the session from dial-stdio"

t_log "a relay whose pipes cannot grow says so in the dialing agent's log, and the move goes through"
# The migration user's pipes take all fs.pipe-user-pages-soft allows: the
# relay node 2 runs on node 1 for this move keeps pipes of a few pages.
hog_out=$FX_ROOT/pipe-hog.out
setpriv --reuid="$FX_USER" --regid="$FX_USER" --clear-groups "$FX_BUILD/tests/tools/nm-pipe-hog" >"$hog_out" 2>&1 &
hog_pid=$!
fx_track_pid "$hog_pid"
t_wait_until 30 "the pipe hog took its share" grep -q '^full' "$hog_out" || t_fail "nm-pipe-hog: $(cat "$hog_out")"
log_off=$(stat -c %s "$(fx_agent_log n2)")
move n2 n1
fx_logged_since n2 "$log_off" "peer node1's relay: .*stdin stays a pipe of .*fs.pipe-user-pages-soft" ||
	t_fail "node 2's log does not say why the relay is slow: $(tail -c +$((log_off + 1)) "$(fx_agent_log n2)" | grep relay)"
kill "$hog_pid"
wait "$hog_pid" 2>/dev/null || true

t_log "status on both nodes tells the same story"
s1=$(fx_nm n1 status --json)
s2=$(fx_nm n2 status --json)
grep -q "\"id\":\"$id\"" <<<"$s1" || t_fail "node1's status does not list the container: $s1"
! grep -q "\"id\":\"$id\"" <<<"$s2" || t_fail "node2's status still lists the container: $s2"
[ "$(grep -o '"phase":"done"' <<<"$s1" | wc -l)" -ge 1 ] || t_fail "node1 shows no finished source migration"
[ "$(grep -o '"phase":"running"' <<<"$s2" | wc -l)" -ge 1 ] || t_fail "node2 shows no finished destination migration"
fx_nm n1 status >/dev/null || t_fail "status (text) fails"
fx_nm n2 list >/dev/null || t_fail "list fails"

t_log "drain without --to: every configured peer is a target"
fx_nm n1 drain >"$FX_ROOT/drain.out" 2>&1 || t_fail "drain without --to failed: $(cat "$FX_ROOT/drain.out")"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the drain"
grep -q "node2" "$FX_ROOT/drain.out" || t_fail "the drain's report names no target: $(cat "$FX_ROOT/drain.out")"
fx_nm n1 uncordon >/dev/null || t_fail "uncordon after the drain failed"

t_log "SIGTERM: both agents exit cleanly, every handle closed"
for n in n1 n2; do
	pid=$(fx_agent_pid "$n")
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	t_assert_eq "$rc" 0 "exit status of $n's agent after SIGTERM"
	! grep -q "handles left open" "$(fx_agent_log "$n")" || t_fail "$n's agent left libuv handles open at exit"
	grep -q "no handoff in progress: exiting" "$(fx_agent_log "$n")" || t_fail "$n's agent did not say why it exits"
	[ ! -e "$(fx_socket "$n")" ] || t_fail "$n's agent left its socket behind"
done
t_log "ok"
