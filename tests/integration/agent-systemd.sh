#!/usr/bin/env bash
# The agent under systemd, with the test holding systemd's two sockets
# (tests/tools/nm-dgram-listen): READY=1 once recovery is done and the
# socket answers, WATCHDOG=1 pings from the loop at half $WATCHDOG_USEC,
# RELOADING=1 then READY=1 around a SIGHUP that takes limits.parallel live
# and refuses to rename the node (saying why), STOPPING=1 on SIGTERM; and
# log records on the journal's native socket with fields, so that one move
# is found by NUCLEUS_MIGRATION=<id> with its container, peer, phase and
# outcome.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"

LISTEN=$FX_BUILD/tests/tools/nm-dgram-listen
fx_nodes_up
notify=$FX_ROOT/notify.sock
jsock=$FX_ROOT/journal.sock
for s in notify journal; do
	"$LISTEN" "$FX_ROOT/$s.sock" "$FX_ROOT/$s.out" &
	fx_track_pid $!
	t_wait_until 10 "the $s socket" test -S "$FX_ROOT/$s.sock" || t_fail "nm-dgram-listen did not bind"
done
got() { grep -c -x -- "$2" "$FX_ROOT/$1.out" 2>/dev/null || true; }
has() { [ "$(got "$1" "$2")" -ge "${3:-1}" ]; }
journal_has() { grep -q -- "$1" "$FX_ROOT/journal.out" 2>/dev/null; }

fx_agent_start n1 NOTIFY_SOCKET="$notify" WATCHDOG_USEC=1000000 JOURNAL_STREAM=8:42 NM_JOURNAL_SOCKET="$jsock"
fx_agent_start n2

t_log "readiness and the watchdog"
t_wait_until 30 "READY=1" has notify READY=1 || t_fail "no READY=1: $(cat "$FX_ROOT/notify.out")"
grep -q '^STATUS=node node1 ready' "$FX_ROOT/notify.out" || t_fail "no STATUS with READY=1"
t_wait_until 30 "two watchdog pings" has notify WATCHDOG=1 2 || t_fail "no watchdog pings: $(cat "$FX_ROOT/notify.out")"
journal_has '^MESSAGE=node node1 ready on ' || t_fail "the journal has no record of the start"
journal_has '^PRIORITY=6$' || t_fail "records without PRIORITY"
journal_has '^CODE_FUNC=agent_run$' || t_fail "records without CODE_FUNC"
# Under the journal nothing goes to stderr but what the journal refused.
grep -q 'ready on' "$(fx_agent_log n1)" && t_fail "log lines went to stderr as well as to the journal"

t_log "one move, found by its id"
read -r id _ < <(fx_ctr_start n1 journaled)
mig=$(fx_nm n1 migrate "$id" node2 --json | tail -n1 | jq -r '.result.mig // .mig')
[ -n "$mig" ] && [ "$mig" != null ] || t_fail "no migration id"
# The records of that migration: split at "--", keep those with its id.
# The last was sent before the CLI heard the result, but the listener
# writes it out when it is scheduled: wait for it.
mig_records() {
	awk -v m="NUCLEUS_MIGRATION=$mig" 'BEGIN { RS = "--\n" } index($0, m "\n") { print; print "--" }' \
		"$FX_ROOT/journal.out" >"$FX_ROOT/mig.out"
	grep -q -x NUCLEUS_OUTCOME=done "$FX_ROOT/mig.out"
}
t_wait_until 30 "the record of $mig's outcome" mig_records || true
for f in "NUCLEUS_CONTAINER=$id" NUCLEUS_PEER=node2 NUCLEUS_ROLE=source NUCLEUS_PHASE=dumping \
	NUCLEUS_PHASE=committed NUCLEUS_OUTCOME=done; do
	grep -q -x -- "$f" "$FX_ROOT/mig.out" || t_fail "no record of $mig with $f"
done
t_log "$(grep -c '^--$' "$FX_ROOT/mig.out") records of $mig"

t_log "SIGHUP: limits live, the node's name refused with its reason"
conf=$(fx_conf n1)
cp -p "$conf" "$FX_ROOT/conf.saved"
sed -i -e 's/^parallel = .*/parallel = 3/' -e 's/^node = .*/node = renamed/' "$conf"
kill -HUP "$(fx_agent_pid n1)"
t_wait_until 30 "RELOADING=1" has notify RELOADING=1 || t_fail "no RELOADING=1"
t_wait_until 30 "READY=1 after the reload" has notify READY=1 2 || t_fail "no READY=1 after the reload"
t_wait_until 30 "the reload's record" journal_has '^MESSAGE=reloaded' || t_fail "no record of the reload"
journal_has '^MESSAGE=reload: limits.parallel 2 -> 3$' || t_fail "limits.parallel was not taken live"
journal_has '^MESSAGE=reload: agent.node cannot change while the agent runs (peers and the journal know this node by it)' ||
	t_fail "the node's new name was not refused with its reason"
fx_nm n1 status --json | grep -q '"node":"node1"' || t_fail "the node renamed itself on a reload"
cp -p "$FX_ROOT/conf.saved" "$conf"

t_log "SIGTERM: STOPPING=1"
fx_agent_stop n1
t_wait_until 30 "STOPPING=1" has notify STOPPING=1 || t_fail "no STOPPING=1"
t_log "ok"
