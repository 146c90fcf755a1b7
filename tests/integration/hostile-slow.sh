#!/usr/bin/env bash
# Peers that hold resources: silent sessions, a frame trickled a byte at a
# time, a never-ending stream of tiny DATA frames, a migration that only
# pings (the agents run with ssh.idle_timeout=4 s: each must end within a
# few seconds, with its reason where the session goes on); and 1000
# connections at once: the agent serves its cap of 256 (plus its reserve
# for root), refuses the rest with a reason, keeps serving root and then
# everyone, and its fds and memory return to where they were.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"

fx_agents_up
pid2=$(fx_agent_pid n2)
idle_ms=$((FX_IDLE_TIMEOUT * 1000))

# elapsed NAME: the ms a case's "< closed after" line reports.
closed_after() { sed -n 's/^< closed after \([0-9]*\) ms.*/\1/p' "$FX_ROOT/pc-$1.out" | tail -n1; }
assert_within() { # NAME MIN MAX: closed after MIN..MAX ms
	local ms
	ms=$(closed_after "$1")
	[ -n "$ms" ] || t_fail "$1: no close in the transcript"
	[ "$ms" -ge "$2" ] && [ "$ms" -le "$3" ] || t_fail "$1: closed after $ms ms, expected $2..$3 ms"
	t_log "$1: closed after $ms ms"
}

t_log "a silent peer session ends at the idle timeout"
printf '%s\n' hello "expect HELLO" expect-closed | PC_TIMEOUT=15000 pc_case silent-session pc_ssh n1 n2
assert_within silent-session $((idle_ms - 500)) $((idle_ms + 3000))
pc_clean n2 "$pid2"

t_log "a connection that never says HELLO ends after 10 s"
printf '%s\n' expect-closed | PC_TIMEOUT=20000 pc_case silent-before-hello pc_ssh n1 n2
assert_within silent-before-hello 9500 13000
pc_clean n2 "$pid2"

t_log "a frame trickled a byte at a time is idle (only whole frames count)"
# A PING frame, 1 byte every 500 ms: its 21 bytes would take 10 s.
frame="00000011 82a174 03 a3736571 cf0000000000000001"
printf '%s\n' hello "expect HELLO" "trickle 500 $frame $frame $frame" expect-closed |
	PC_TIMEOUT=15000 pc_case trickle pc_ssh n1 n2
grep -q "^trickle: the agent hung up" "$FX_ROOT/pc-trickle.out" || {
	cat "$FX_ROOT/pc-trickle.out" >&2
	t_fail "the agent took a trickled frame to its end"
}
hung=$(sed -n 's/^trickle: the agent hung up after [0-9]* bytes, \([0-9]*\) ms/\1/p' "$FX_ROOT/pc-trickle.out")
[ "$hung" -le $((idle_ms + 4000)) ] || t_fail "the trickle went on for $hung ms"
t_log "trickle: cut after $hung ms"
pc_clean n2 "$pid2"

t_log "a never-ending stream of 1-byte DATA frames ends: the receiver wants progress"
printf '%s\n' hello "expect HELLO" "offer d1" "expect ACCEPT" "file d1 images/a 100000000" "drip d1 300" \
	node-info-req "expect NODE_INFO" | PC_TIMEOUT=15000 pc_case drip pc_ssh n1 n2
pc_said drip "ERROR .*the sender is too slow"
ms=$(sed -n 's/^drip: answered after \([0-9]*\) ms/\1/p' "$FX_ROOT/pc-drip.out")
[ -n "$ms" ] && [ "$ms" -le $((idle_ms + 3000)) ] || t_fail "the drip was answered after ${ms:-no} ms"
t_log "drip: refused after $ms ms"
pc_clean n2 "$pid2"

t_log "a migration that only pings ends; the session stays"
script=(hello "expect HELLO" "offer p1" "expect ACCEPT")
for i in $(seq 1 $((FX_IDLE_TIMEOUT + 3))); do script+=("ping $i" "sleep 1000"); done
script+=("expect ERROR the sender went silent" node-info-req "expect NODE_INFO")
printf '%s\n' "${script[@]}" | pc_case ping-only pc_ssh n1 n2
pc_clean n2 "$pid2"

t_log "1000 connections at once, as the migration user (what dial-stdio runs as)"
fds() { find "/proc/$pid2/fd" -mindepth 1 -maxdepth 1 | wc -l; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid2/status"; }
fds0=$(fds)
rss0=$(rss)
pc_user=$(pc_user_bin "$PC_BIN")
pc_as "$FX_USER" "" -- "$pc_user" --flood 1000 --socket "$(fx_socket n2)" --timeout 20000 --hold 4000 >"$FX_ROOT/flood.out" 2>&1 &
flood=$!
t_wait_until 20 "the flood is served" grep -q '^served=' "$FX_ROOT/flood.out" || t_fail "flood: $(cat "$FX_ROOT/flood.out")"
fds_during=$(fds)
rss_during=$(rss)
# While the peers' cap is full, root still gets in.
fx_nm n2 status >/dev/null || t_fail "root's status was refused during the flood"
wait "$flood" || t_fail "the flood client failed: $(cat "$FX_ROOT/flood.out")"
read -r line <"$FX_ROOT/flood.out"
t_log "flood: $line; fds $fds0 -> $fds_during; VmRSS $rss0 -> $rss_during kB"
t_assert_eq "$(sed -n 's/.*served=\([0-9]*\).*/\1/p' <<<"$line")" 256 "connections served"
t_assert_eq "$(sed -n 's/.*answered=\([0-9]*\).*/\1/p' <<<"$line")" 256 "served connections answered NODE_INFO"
t_assert_eq "$(sed -n 's/.*refused=\([0-9]*\).*/\1/p' <<<"$line")" 744 "connections refused"
t_assert_eq "$(sed -n 's/.*pending=\([0-9]*\).*/\1/p' <<<"$line")" 0 "connections left without an answer"
[ "$fds_during" -le $((fds0 + 256 + 16)) ] || t_fail "the agent held $fds_during fds during the flood (cap 256)"
[ "$rss_during" -le $((rss0 + 32768)) ] || t_fail "the agent's memory grew from $rss0 to $rss_during kB"
t_wait_until 10 "fds back to $fds0" bash -c "[ \$(find /proc/$pid2/fd -mindepth 1 -maxdepth 1 | wc -l) -le $fds0 ]" ||
	t_fail "the agent holds $(fds) fds after the flood, $fds0 before"
refusals=$(grep -c "refusing more" "$(fx_agent_log n2)" || true)
[ "$refusals" -le 10 ] || t_fail "744 refusals became $refusals log lines"
grep -q "more refusals in the last" "$(fx_agent_log n2)" || t_fail "the refusals were not counted in the log"

t_log "root's reserve: 16 connections beyond the cap, then refused with a reason"
fx_in n2 "$PC_BIN" --flood 300 --socket "$(fx_socket n2)" --timeout 20000 >"$FX_ROOT/flood-root.out" 2>&1 ||
	t_fail "root flood: $(cat "$FX_ROOT/flood-root.out")"
read -r line <"$FX_ROOT/flood-root.out"
t_assert_eq "$(sed -n 's/.*served=\([0-9]*\).*/\1/p' <<<"$line")" 272 "root connections served"
t_log "a refused connection hears why"
pc_as "$FX_USER" "" -- "$pc_user" --flood 256 --socket "$(fx_socket n2)" --timeout 20000 --hold 4000 >"$FX_ROOT/flood2.out" 2>&1 &
flood=$!
t_wait_until 20 "the cap is full" grep -q '^served=256' "$FX_ROOT/flood2.out" || t_fail "flood: $(cat "$FX_ROOT/flood2.out")"
printf '%s\n' hello "expect-closed serves 256 connections already" |
	pc_case refused-at-cap pc_as "$FX_USER" "" -- "$pc_user" --socket "$(fx_socket n2)"
wait "$flood" || true
t_wait_until 10 "fds back to $fds0" bash -c "[ \$(find /proc/$pid2/fd -mindepth 1 -maxdepth 1 | wc -l) -le $fds0 ]" ||
	t_fail "the agent holds $(fds) fds after the floods, $fds0 before"

# Two more floods came and went: memory does not grow with each (no leak).
rss_end=$(rss)
t_log "VmRSS after three floods: $rss_end kB (after the first: $rss_during kB)"
[ "$rss_end" -le $((rss_during + 8192)) ] || t_fail "the agent's memory grew from $rss_during to $rss_end kB over the floods"

pc_clean n2 "$pid2"
t_log "the agent still moves containers"
read -r id _ < <(fx_ctr_start n1 mover)
fx_nm n1 migrate "$id" node2 >/dev/null || t_fail "a migration after the floods failed"
t_assert_eq "$(fx_ctr_where "$id")" n2 "container after the move"
t_log "ok"
