#!/usr/bin/env bash
# Targets that would hold a source's container frozen. node1's agent plays
# the hostile target through fault injection; node2 is an honest source
# whose CRIU timeout is four idle timeouts, so that a bound that did not
# work shows as CRIU's timeout or the target's own, later, never as ours.
# - One that never replies to the dump's page-server requests (NM_FAULT
#   fail=ps-replies: it drops its page server's replies, answers PINGs).
# - One that stops reading its session once a migration's bytes arrive, yet
#   sends a PING and a PONG of its own every 2 s (fail=peer-reading): while
#   the dump streams a 32 MiB heap that cannot fit in the pipes between the
#   nodes, and while the image stream waits to be verified.
# - One that never answers the source's HELLO, and sends the same PINGs
#   (fail=peer-hello): the move fails before anything is frozen.
# And the control: an honest target on a move paced to outlast the idle
# timeout completes (its PONGs count).
# Each time the source gives up at ssh.idle_timeout, not before (a lower
# bound, which load cannot break), and says why; the container runs on at
# node2, one copy, its counter or its heap intact; node1 keeps no staging
# and no page server. The target's own bounds (a sender too slow) are four
# idle timeouts too: a hostile target has none.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"

idle_ms=$((FX_IDLE_TIMEOUT * 1000))
long=$((4 * FX_IDLE_TIMEOUT))
fx_nodes_up
fx_agent_start n1
FX_AGENT_ARGS="--set agent.criu_timeout=$long" fx_agent_start n2
read -r id _ < <(fx_ctr_start n2 pages)
work=$(fx_ctr_dir n2 pages)
fx_counter_advances "$work" || t_fail "workload does not tick"
read -r hid _ < <(b_hog_start n2 heap 32 random) || t_fail "could not start the 32 MiB workload"
hwork=$(b_hog_dir n2 heap)
log1=$(fx_agent_log n1)
log2=$(fx_agent_log n2)

# hostile_target FAULT [AGENT SETTINGS...]: node1's agent again, as that
# target.
hostile_target() {
	local fault=$1
	shift
	fx_agent_stop n1
	FX_AGENT_ARGS="--set ssh.idle_timeout=$long $*" fx_agent_start n1 "NM_FAULT=fail=$fault"
}

# move_refused CASE CTR OUTCOME WHY: node2 moves CTR to node1; the move
# must end in OUTCOME (failed: the dump failed, the tasks ran on;
# rolled-back: they were resumed after it), not before the idle timeout,
# with WHY in its error. Sets $took_ms.
move_refused() {
	local name=$1 ctr=$2 outcome=$3 why=$4 out rc=0 t0 res
	t0=$(date +%s%N)
	out=$(fx_nm n2 migrate "$ctr" node1 --json) || rc=$?
	took_ms=$((($(date +%s%N) - t0) / 1000000))
	res=$(grep '"event":"result"' <<<"$out" | tail -n1)
	t_assert_eq "$(jq -r .result.outcome <<<"$res")" "$outcome" "$name: outcome ($out)"
	# The CLI's exit codes: 1 failed (nothing moved), 4 rolled back.
	t_assert_eq "$rc" "$([ "$outcome" = failed ] && echo 1 || echo 4)" "$name: exit code"
	jq -r .result.error <<<"$res" | grep -qF -- "$why" || t_fail "$name: the result does not say why: $res"
	[ "$took_ms" -ge "$idle_ms" ] || t_fail "$name: the move gave up after $took_ms ms, before ssh.idle_timeout"
	t_log "$name: given up after $took_ms ms (exit $rc)"
}

# nothing_left_on_n1 CASE: no staging and no page server on node1.
nothing_left_on_n1() {
	t_wait_until 60 "node1's staging is gone" bash -c "[ -z \"\$(ls -A '$(fx_dir n1)/migrate/staging')\" ]" ||
		t_fail "$1: staging left on node1"
	# [p]: the pattern must not match the shell that carries it.
	t_wait_until 60 "node1's page server is gone" bash -c "! pgrep -f '[p]age-server.*$(fx_dir n1)' >/dev/null" ||
		t_fail "$1: a page server was left running on node1"
}

# counter_runs_on_n2 CASE PID: the counter container is its old process at
# node2, and goes on without a gap.
counter_runs_on_n2() {
	t_assert_eq "$(fx_ctr_where "$id")" n2 "$1: where the container runs"
	t_assert_eq "$(fx_ctr_running_copies pages)" 1 "$1: running copies"
	t_assert_eq "$(fx_ctr_stopped_copies pages)" 0 "$1: stopped copies"
	kill -0 "$2" || t_fail "$1: the container is not its old process on node2 any more"
	fx_counter_advances "$work" || t_fail "$1: counter stopped"
	fx_log_ok "$work" || t_fail "$1: the log has a gap or a repeat"
}

ctr_pid() { sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p' "$(fx_dir n2)/nucleus/$1.json"; }

t_log "a target that never replies to the dump's page-server requests"
hostile_target ps-replies
off1=$(stat -c %s "$log1") off2=$(stat -c %s "$log2")
pid=$(ctr_pid "$id")
move_refused ps-replies "$id" failed "the target left the dump's page-server request unanswered for $idle_ms ms"
fx_logged_since n1 "$off1" "fault injection: failing ps-replies" || t_fail "ps-replies: node1 never withheld a reply"
counter_runs_on_n2 ps-replies "$pid"
nothing_left_on_n1 ps-replies

t_log "a target that stops reading while CRIU streams it 32 MiB of pages, and sends PINGs of its own"
b_hog_request "$hwork" check checks || t_fail "the heap workload does not check its heap"
hostile_target peer-reading
off1=$(stat -c %s "$log1") off2=$(stat -c %s "$log2")
hpid=$(ctr_pid "$hid")
move_refused deaf-pages "$hid" failed "node1 answered none of our PINGs for"
fx_logged_since n1 "$off1" "fault injection: failing peer-reading" || t_fail "deaf-pages: node1 never stopped reading"
# The dump was blocked writing its pages, with no reply owed: only the
# PINGs could tell.
! fx_logged_since n2 "$off2" "sent [0-9]* bytes of the page server's session while CRIU dumped" ||
	t_fail "deaf-pages: the dump's pages all left: the case proves nothing"
t_assert_eq "$(fx_ctr_where "$hid")" n2 "deaf-pages: where the heap container runs"
kill -0 "$hpid" || t_fail "deaf-pages: the heap container is not its old process on node2 any more"
b_hog_request "$hwork" check checks || t_fail "deaf-pages: the heap workload does not check its heap"
t_assert_eq "$(b_hog_field "$hwork" check_ok)" 1 "deaf-pages: heap checksum"
nothing_left_on_n1 deaf-pages

t_log "a target that stops reading the image stream, and sends PINGs of its own"
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.criu_timeout=$long --set agent.stream_pages=no" fx_agent_start n2
off1=$(stat -c %s "$log1")
pid=$(ctr_pid "$id")
move_refused deaf-images "$id" rolled-back "node1 answered none of our PINGs for"
counter_runs_on_n2 deaf-images "$pid"
nothing_left_on_n1 deaf-images

t_log "a target that never answers HELLO, and sends PINGs of its own"
# Its PINGs keep the connection's own idle timer quiet: only a bound on
# the HELLO ends the wait, before anything is frozen.
hostile_target peer-hello
off1=$(stat -c %s "$log1")
pid=$(ctr_pid "$id")
move_refused no-hello "$id" failed "node1 did not answer our HELLO within $idle_ms ms"
fx_logged_since n1 "$off1" "fault injection: failing peer-hello" || t_fail "no-hello: node1 answered the HELLO"
counter_runs_on_n2 no-hello "$pid"

t_log "an honest target on a move that outlasts the idle timeout: its PONGs keep the link"
# The control: PONGs to our PINGs must count (a paced move of the 32 MiB
# heap takes about 32 s at 1 MiB/s, longer than ssh.idle_timeout whatever
# the load).
fx_agent_stop n1
fx_agent_start n1
fx_agent_stop n2
FX_AGENT_ARGS="--set limits.bandwidth=1M" fx_agent_start n2
t0=$(date +%s%N)
out=$(fx_nm n2 migrate "$hid" node1 --json) || t_fail "the honest paced move failed: $out"
honest_ms=$((($(date +%s%N) - t0) / 1000000))
[ "$honest_ms" -gt "$idle_ms" ] || t_fail "the paced move took $honest_ms ms, within the idle timeout: the control proves nothing"
t_assert_eq "$(fx_ctr_where "$hid")" n1 "where the heap container runs after the honest move"
b_hog_request "$hwork" check checks || t_fail "the moved heap workload does not check its heap"
t_assert_eq "$(b_hog_field "$hwork" check_ok)" 1 "heap checksum after the honest move"

t_log "ok: every hostile target was given up on at ssh.idle_timeout ($idle_ms ms); the containers ran on at node2; an honest move of $honest_ms ms completed"
