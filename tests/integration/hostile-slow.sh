#!/usr/bin/env bash
# Peers that hold resources: silent sessions, a frame trickled a byte at a
# time, a never-ending stream of tiny DATA frames, a migration that only
# pings (each must end at the fixture's ssh.idle_timeout, not before it and
# because of it, with its reason where the session goes on; the one that
# only pings at twice the criu_timeout, set to half the idle timeout for
# it, since its first frame may wait for the source's dump); and 1000
# connections at once: the agent serves its cap of 256 (plus its reserve
# for root), refuses the rest with a reason, keeps serving root and then
# everyone, and its fds and memory return to where they were.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"

fx_agents_up
pid2=$(fx_agent_pid n2)
idle_ms=$((FX_IDLE_TIMEOUT * 1000))

# Each case checks that the agent ended the session not before its timeout
# (a lower bound: load only makes it later) and because of it (the agent's
# log says why); how soon after the timeout is not asserted (load decides).
# The client counts from its own last write, never later than the agent's
# last frame from it, so the relay's delay cannot make the time look short.
#
# closed_no_earlier NAME MIN: the case's "< closed after" line says >= MIN ms.
closed_no_earlier() {
	local ms
	ms=$(sed -n 's/^< closed after \([0-9]*\) ms.*/\1/p' "$FX_ROOT/pc-$1.out" | tail -n1)
	[ -n "$ms" ] || t_fail "$1: no close in the transcript"
	[ "$ms" -ge "$2" ] || t_fail "$1: closed after $ms ms, before the timeout ($2 ms)"
	t_log "$1: closed after $ms ms"
}
# logged_since NAME OFFSET TEXT: n2's agent logged TEXT since OFFSET.
logged_since() {
	fx_logged_since n2 "$2" -F -- "$3" || t_fail "$1: n2's agent did not log '$3'"
}
log_size() { stat -c %s "$(fx_agent_log n2)"; }

t_log "a silent peer session ends at the idle timeout"
off=$(log_size)
printf '%s\n' hello "expect HELLO" expect-closed | pc_case silent-session pc_ssh n1 n2
closed_no_earlier silent-session $((idle_ms - 500))
logged_since silent-session "$off" "connection idle for $idle_ms ms"
pc_clean n2 "$pid2"

t_log "a connection that never says HELLO ends after 10 s"
off=$(log_size)
printf '%s\n' expect-closed | pc_case silent-before-hello pc_ssh n1 n2
closed_no_earlier silent-before-hello 9500
logged_since silent-before-hello "$off" "connection idle for 10000 ms"
pc_clean n2 "$pid2"

t_log "a frame trickled a byte at a time is idle (only whole frames count)"
# A frame that announces 64 KiB, 1 byte every 500 ms: it never completes,
# and the trickle outlasts the idle timeout by far (the agent hangs up
# while it goes on).
frame="00010000 82a17403$(printf '00%.0s' $(seq 1 $((4 * idle_ms / 1000 + 60))))"
off=$(log_size)
printf '%s\n' hello "expect HELLO" "trickle 500 $frame" expect-closed | pc_case trickle pc_ssh n1 n2
grep -q "^trickle: the agent hung up" "$FX_ROOT/pc-trickle.out" || {
	cat "$FX_ROOT/pc-trickle.out" >&2
	t_fail "the agent did not hang up on a trickled frame"
}
hung=$(sed -n 's/^trickle: the agent hung up after [0-9]* bytes, \([0-9]*\) ms/\1/p' "$FX_ROOT/pc-trickle.out")
[ "$hung" -ge $((idle_ms - 500)) ] || t_fail "the trickle was cut after $hung ms, before the idle timeout"
logged_since trickle "$off" "connection idle for $idle_ms ms"
t_log "trickle: cut after $hung ms"
pc_clean n2 "$pid2"

t_log "a never-ending stream of 1-byte DATA frames ends: the receiver wants progress"
printf '%s\n' hello "expect HELLO" "offer d1" "expect ACCEPT" "file d1 images/a 100000000" "drip d1 300" \
	node-info-req "expect NODE_INFO" | pc_case drip pc_ssh n1 n2
pc_said drip "ERROR .*the sender is too slow"
t_log "drip: $(grep '^drip: answered' "$FX_ROOT/pc-drip.out")"
pc_clean n2 "$pid2"

t_log "a migration that only pings, its first frame never sent, ends; the session stays"
# Before its first frame a source dumps, and its dump may first wait for its
# node's CRIU: that wait is bounded by twice the target's criu_timeout, here
# set so that the bound is the idle timeout.
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.criu_timeout=$((FX_IDLE_TIMEOUT / 2))" fx_agent_start n2
pid2=$(fx_agent_pid n2)
script=(hello "expect HELLO" "offer p1" "expect ACCEPT")
for i in $(seq 1 $((FX_IDLE_TIMEOUT + 3))); do script+=("ping $i" "sleep 1000"); done
script+=("expect ERROR the sender sent nothing for" node-info-req "expect NODE_INFO")
printf '%s\n' "${script[@]}" | pc_case ping-only pc_ssh n1 n2
pc_clean n2 "$pid2"
# The rest with the default criu_timeout: a real move restores on n2.
fx_agent_stop n2
fx_agent_start n2
pid2=$(fx_agent_pid n2)

t_log "1000 connections at once, as the migration user through one peer's key (what dial-stdio runs as)"
fds() { find "/proc/$pid2/fd" -mindepth 1 -maxdepth 1 | wc -l; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid2/status"; }
fds0=$(fds)
rss0=$(rss)
pc_user=$(pc_user_bin "$PC_BIN")
# The flood's served connections stay open (and alive) while $hold exists.
hold=$FX_ROOT/flood.hold
: >"$hold"
pc_as "$FX_USER" "" -- "$pc_user" --flood 1000 --relay node1 --socket "$(fx_socket n2)" --timeout "$(t_ms 120000)" \
	--hold "@$hold" >"$FX_ROOT/flood.out" 2>&1 &
flood=$!
t_wait_until 120 "the flood is served" grep -q '^served=' "$FX_ROOT/flood.out" || t_fail "flood: $(cat "$FX_ROOT/flood.out")"
fds_during=$(fds)
rss_during=$(rss)
# While the peers' cap is full, root still gets in.
fx_nm n2 status >/dev/null || t_fail "root's status was refused during the flood"
rm -f "$hold"
wait "$flood" || t_fail "the flood client failed: $(cat "$FX_ROOT/flood.out")"
read -r line <"$FX_ROOT/flood.out"
t_log "flood: $line; fds $fds0 -> $fds_during; VmRSS $rss0 -> $rss_during kB"
# 256 accepted (the cap), of which one key may hold 64 sessions.
t_assert_eq "$(sed -n 's/.*served=\([0-9]*\).*/\1/p' <<<"$line")" 64 "connections served"
t_assert_eq "$(sed -n 's/.*answered=\([0-9]*\).*/\1/p' <<<"$line")" 64 "served connections answered NODE_INFO"
t_assert_eq "$(sed -n 's/.*refused=\([0-9]*\).*/\1/p' <<<"$line")" 936 "connections refused"
t_assert_eq "$(sed -n 's/.*pending=\([0-9]*\).*/\1/p' <<<"$line")" 0 "connections left without an answer"
[ "$fds_during" -le $((fds0 + 256 + 16)) ] || t_fail "the agent held $fds_during fds during the flood (cap 256)"
[ "$rss_during" -le $((rss0 + 32768)) ] || t_fail "the agent's memory grew from $rss0 to $rss_during kB"
t_wait_until 30 "fds back to $fds0" bash -c "[ \$(find /proc/$pid2/fd -mindepth 1 -maxdepth 1 | wc -l) -le $fds0 ]" ||
	t_fail "the agent holds $(fds) fds after the flood, $fds0 before"
refusals=$(grep -c "refusing more" "$(fx_agent_log n2)" || true)
peer_refusals=$(grep -c "holds 64 sessions already" "$(fx_agent_log n2)" || true)
# At most about two lines a second of the flood (one refusal, one sum): far
# fewer than the refusals, however long a busy machine takes to refuse them.
[ "$refusals" -le 100 ] && [ "$peer_refusals" -le 100 ] || t_fail "936 refusals became $refusals + $peer_refusals log lines"
# The sum is logged when the interval after the first refusal has passed.
t_wait_until 30 "the refusals counted in the log" grep -q "more refusals in the last" "$(fx_agent_log n2)" ||
	t_fail "the refusals were not counted in the log"

t_log "root's reserve: 16 connections beyond the cap, then refused with a reason"
fx_in n2 "$PC_BIN" --flood 300 --socket "$(fx_socket n2)" --timeout "$(t_ms 120000)" >"$FX_ROOT/flood-root.out" 2>&1 ||
	t_fail "root flood: $(cat "$FX_ROOT/flood-root.out")"
read -r line <"$FX_ROOT/flood-root.out"
t_assert_eq "$(sed -n 's/.*served=\([0-9]*\).*/\1/p' <<<"$line")" 272 "root connections served"
# Root's 272 connections set the memory's high-water mark (one key's
# flood is served 64): the flood after it must not raise it further.
rss_root=$(rss)
[ "$rss_root" -gt "$rss_during" ] || rss_root=$rss_during
t_log "a refused connection hears why"
: >"$hold"
pc_as "$FX_USER" "" -- "$pc_user" --flood 64 --relay node1 --socket "$(fx_socket n2)" --timeout "$(t_ms 120000)" \
	--hold "@$hold" >"$FX_ROOT/flood2.out" 2>&1 &
flood=$!
t_wait_until 120 "the peer's cap is full" grep -q '^served=64' "$FX_ROOT/flood2.out" || t_fail "flood: $(cat "$FX_ROOT/flood2.out")"
printf '%s\n' "relay node1" hello "expect-closed peer node1 holds 64 sessions on node2 already" |
	pc_case refused-at-cap pc_as "$FX_USER" "" -- "$pc_user" --socket "$(fx_socket n2)"
rm -f "$hold"
wait "$flood" || true
t_wait_until 30 "fds back to $fds0" bash -c "[ \$(find /proc/$pid2/fd -mindepth 1 -maxdepth 1 | wc -l) -le $fds0 ]" ||
	t_fail "the agent holds $(fds) fds after the floods, $fds0 before"

# Two more floods came and went: memory does not grow with each (no leak).
rss_end=$(rss)
t_log "VmRSS after three floods: $rss_end kB (after the first: $rss_during kB, the largest: $rss_root kB)"
[ "$rss_end" -le $((rss_root + 8192)) ] || t_fail "the agent's memory grew from $rss_root to $rss_end kB over the floods"

pc_clean n2 "$pid2"
t_log "the agent still moves containers"
read -r id _ < <(fx_ctr_start n1 mover)
fx_nm n1 migrate "$id" node2 >/dev/null || t_fail "a migration after the floods failed"
t_assert_eq "$(fx_ctr_where "$id")" n2 "container after the move"
t_log "ok"
