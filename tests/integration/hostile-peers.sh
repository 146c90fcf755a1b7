#!/usr/bin/env bash
# A peer is who its SSH key says it is. Three nodes; node3 holds a key of
# its own (a real peer of node2's, provisioned as every peer is) and turns
# hostile: through the pinned `nucleus-agent dial-stdio --peer node3` it
# claims to be node1, speaks RELAY itself, and sends ABORT, COMMIT, RESTORE,
# image data, PS_DATA and QUERY for migrations that are node1's. Each is
# refused with ERROR and logged on node2, and the migration it aimed at goes
# on untouched: streamed to its end by node1's session, or moved for real
# with exactly one copy running afterwards.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"

FX_NODES="n1 n2 n3"
fx_agents_up
pid2=$(fx_agent_pid n2)
log2=$(fx_agent_log n2)

# as NODE NAME SCRIPT-LINE...: the script from NODE's key to node2.
as() { pc_lines "$1" n2 "${@:2}"; }
logged() { pc_logged n2 "$1"; }

t_log "a key speaks for its own node only"
as n3 claims-node1 "hello node=node1" "expect-closed this session's key belongs to peer node3, but its HELLO says peer \"node1\""
logged "belongs to peer node3, but its HELLO says peer \"node1\""
as n3 relay-forged "relay node1" "expect-closed RELAY is dial-stdio's first frame, never the peer's"
as n3 relay-after-hello hello "expect HELLO" "relay node1" "expect-closed RELAY is dial-stdio's first frame"
as n3 honest hello "expect HELLO" node-info-req "expect NODE_INFO"
pc_clean n2 "$pid2"

t_log "node1's migration in flight: node3 (and node1's other sessions) cannot steer it"
# node1's session offers own1 and keeps it alive with a trickle of data (the
# receiver wants progress) until the other cases are done: its script comes
# through a FIFO.
fifo=$FX_ROOT/own.fifo
mkfifo "$fifo"
pc_ssh n1 n2 <"$fifo" >"$FX_ROOT/pc-own.out" 2>&1 &
holder=$!
exec 7>"$fifo"
printf '%s\n' hello "expect HELLO" "offer own1" "expect ACCEPT" "file own1 images/a 100000000" >&7
t_wait_until 30 "node1's offer accepted" grep -q "^< ACCEPT" "$FX_ROOT/pc-own.out" || t_fail "node1's offer was not accepted"
(while printf '%s\n' "data own1 65536"; do sleep 0.5; done) >&7 2>/dev/null &
feeder=$!
as n3 steer-abort hello "expect HELLO" "abort own1 steered" "expect ERROR ABORT for migration own1 refused: node3 is not its source"
as n3 steer-commit hello "expect HELLO" "commit own1" "expect ERROR COMMIT for migration own1 refused: node3 is not its source"
as n3 steer-restore hello "expect HELLO" "restore own1" "expect ERROR RESTORE for migration own1 refused"
as n3 steer-data hello "expect HELLO" "file own1 images/b 1" "expect ERROR images for migration own1 refused"
as n3 steer-pages hello "expect HELLO" "map t=u:37 mig=s:own1 data=b:00" "expect ERROR pages for migration own1 refused"
as n3 steer-ps-pages hello "expect HELLO" "map t=u:39 mig=s:own1 data=b:00 tag=b:0000000000000000000000000000000000000000000000000000000000000000" \
	"expect ERROR pages for migration own1 refused" "map t=u:40 mig=s:own1 tag=b:0000000000000000000000000000000000000000000000000000000000000000 kept=bool:false" \
	"expect ERROR pages for migration own1 refused"
# The same key on another session: not the session the offer came on.
as n1 steer-same-peer hello "expect HELLO" "abort own1 steered" \
	"expect ERROR ABORT for migration own1 refused: node1 is not its source's session"
logged "refusing ABORT from node3 (session [0-9]*, another peer): the migration's source is node1 on another session"
logged "refusing COMMIT from node3"
logged "refusing ABORT from node1 (session [0-9]*, another session of its peer)"
fx_nm n2 status own1 --json | grep -q '"phase":"receiving"' || t_fail "own1 is no longer receiving: $(fx_nm n2 status own1)"
kill "$feeder"
wait "$feeder" 2>/dev/null || true
printf '%s\n' "abort own1 done" >&7
exec 7>&-
wait "$holder" || t_fail "node1's session failed: $(cat "$FX_ROOT/pc-own.out")"
pc_clean n2 "$pid2"
fx_nm n2 status own1 --json | grep -q '"phase":"aborted"' || t_fail "own1 did not end by its own session's ABORT"

t_log "PS_DATA outside a lazy migration is refused"
as n1 pages-not-lazy hello "expect HELLO" "offer p1" "expect ACCEPT" "map t=u:37 mig=s:p1 data=b:00" \
	"expect ERROR PS_DATA outside a lazy (post-copy) migration" "map t=u:37 mig=s:p2 data=b:00" \
	"expect ERROR PS_DATA for a migration this session does not carry"
pc_clean n2 "$pid2"

t_log "PS_PAGES and PS_END outside a migration whose pages stream during the dump are refused"
as n1 ps-pages-not-streamed hello "expect HELLO" "offer p3" "expect ACCEPT" \
	"map t=u:39 mig=s:p3 data=b:00 tag=b:0000000000000000000000000000000000000000000000000000000000000000" \
	"expect ERROR PS_PAGES outside a migration whose pages stream during the dump" \
	"map t=u:40 mig=s:p3 tag=b:0000000000000000000000000000000000000000000000000000000000000000 kept=bool:false" \
	"expect ERROR PS_END outside a migration whose pages stream during the dump" \
	"map t=u:39 mig=s:p4 data=b:00 tag=b:0000000000000000000000000000000000000000000000000000000000000000" "expect ERROR PS_PAGES for a migration this session does not carry"
pc_clean n2 "$pid2"

t_log "QUERY (and COMMIT, ABORT, RESTORE) for a migration node2 sources, from node3: refused, and the move goes on"
read -r qid _ < <(fx_ctr_start n2 queried)
gate=$FX_ROOT/gate
: >"$gate"
fx_agent_stop n1
fx_agent_start n1 "NM_FAULT=pause-after=verified" "NM_FAULT_GATE=$gate"
fx_nm n2 migrate "$qid" node1 >"$FX_ROOT/queried.out" 2>&1 &
mover=$!
t_wait_until 120 "node1 paused at verified" grep -q "paused at verified" "$(fx_agent_log n1)" ||
	t_fail "node1 never reached verified: $(cat "$FX_ROOT/queried.out")"
mig=$(grep "fault injection: paused at verified" "$(fx_agent_log n1)" | tail -n1 |
	sed -n 's/.* warning \[\([A-Za-z0-9_-]*\)\].*/\1/p')
[ -n "$mig" ] || t_fail "no migration id in node1's log"
as n3 query-stranger hello "expect HELLO" "query $mig" "expect ERROR QUERY for migration $mig refused: node3 is not its target" \
	"commit $mig" "expect ERROR COMMIT for migration $mig refused" "abort $mig steered" \
	"expect ERROR ABORT for migration $mig refused" "restore $mig" "expect ERROR RESTORE for migration $mig refused"
rm -f "$gate"
wait "$mover" || t_fail "the move node3 asked about failed: $(cat "$FX_ROOT/queried.out")"
logged "source: refusing QUERY from node3"
t_assert_eq "$(fx_ctr_where "$qid")" n1 "the queried container after its move"
t_assert_eq "$(fx_ctr_running_copies queried)" 1 "running copies of the queried container"
t_assert_eq "$(fx_ctr_stopped_copies queried)" 0 "stopped copies of the queried container"
as n3 query-stranger-done hello "expect HELLO" "query $mig" "expect ERROR QUERY for migration $mig refused"
as n1 query-target-done hello "expect HELLO" "query $mig" "expect OUTCOME committed"
fx_agent_stop n1
fx_agent_start n1

t_log "COMMIT for a finished migration, from node3: refused; from its source: RUNNING"
read -r cid _ < <(fx_ctr_start n1 committed)
fx_nm n1 migrate "$cid" node2 --json >"$FX_ROOT/committed.json" || t_fail "the move to node2 failed"
cmig=$(sed -n 's/.*"mig": *"\([A-Za-z0-9_-]*\)".*/\1/p' "$FX_ROOT/committed.json" | head -n1)
[ -n "$cmig" ] || t_fail "no migration id in $(cat "$FX_ROOT/committed.json")"
as n3 commit-stranger hello "expect HELLO" "commit $cmig" "expect ERROR COMMIT for migration $cmig refused: node3 is not its source"
as n3 abort-stranger hello "expect HELLO" "abort $cmig late" "expect-silence 300" node-info-req "expect NODE_INFO"
as n1 commit-source hello "expect HELLO" "commit $cmig" "expect RUNNING"
t_assert_eq "$(fx_ctr_where "$cid")" n2 "the committed container"
t_assert_eq "$(fx_ctr_running_copies committed)" 1 "running copies of the committed container"

t_log "205 OFFER+ABORT cycles from node3 do not push node1's migration out of reach"
as n3 flood-history hello "expect HELLO" "cycles flood 205" node-info-req "expect NODE_INFO"
grep "^cycles:" "$FX_ROOT/pc-flood-history.out" >&2
as n1 commit-after-flood hello "expect HELLO" "commit $cmig" "expect RUNNING"
pc_clean n2 "$pid2"

t_log "migration ids are never reused, whoever offers them"
as n1 reuse-committed hello "expect HELLO" "offer $cmig" "expect REJECT migration id used before: ids are never reused"
as n3 reuse-aborted hello "expect HELLO" "offer own1" "expect REJECT migration id used before"
as n1 commit-after-reuse hello "expect HELLO" "commit $cmig" "expect RUNNING"
pc_clean n2 "$pid2"

t_log "the staging quota counts what lands, not what was offered"
fx_agent_stop n2
FX_AGENT_ARGS="--set limits.staging_max=48M" fx_agent_start n2
pid2=$(fx_agent_pid n2)
as n1 quota-one hello "expect HELLO" "offer q1 bytes=1048576" "expect ACCEPT" "file q1 images/a 60000000" \
	"expect ERROR staging quota: migration q1 would hold 57 MiB"
pc_clean n2 "$pid2"
logged "staging quota: 60000000 more bytes refused"

t_log "one peer's share of the slots: its second move waits, another peer's goes on"
fx_agent_stop n2
FX_AGENT_ARGS="--set limits.peer_parallel=1" fx_agent_start n2
pid2=$(fx_agent_pid n2)
fifo=$FX_ROOT/share.fifo
mkfifo "$fifo"
pc_ssh n3 n2 <"$fifo" >"$FX_ROOT/pc-share.out" 2>&1 &
holder=$!
exec 7>"$fifo"
printf '%s\n' hello "expect HELLO" "offer share1" "expect ACCEPT" "file share1 images/a 100000000" >&7
t_wait_until 30 "node3's first offer accepted" grep -q "^< ACCEPT" "$FX_ROOT/pc-share.out" ||
	t_fail "node3's first offer was not accepted: $(cat "$FX_ROOT/pc-share.out")"
(while printf '%s\n' "data share1 65536"; do sleep 0.5; done) >&7 2>/dev/null &
feeder=$!
as n3 share-second hello "expect HELLO" "offer share2 container=0123456789abcdef0123456789abcde2" \
	"expect REJECT node2 already holds 1 migration(s) from node3, its share (limits.peer_parallel)"
as n1 share-other hello "expect HELLO" "offer share3 container=0123456789abcdef0123456789abcde3" "expect ACCEPT" "abort share3 done"
kill "$feeder"
wait "$feeder" 2>/dev/null || true
printf '%s\n' "abort share1 done" >&7
exec 7>&-
wait "$holder" || t_fail "node3's first session failed: $(cat "$FX_ROOT/pc-share.out")"
pc_clean n2 "$pid2"
logged "refusing container .* from node3: node2 already holds 1 migration(s) from node3"

t_log "RESOLVED for migrations node2 never had: one record per session, no more"
as n3 resolved-unknown hello "expect HELLO" "map t=u:38 mig=s:unknown1 outcome=s:aborted reason=s:settled" \
	"map t=u:38 mig=s:unknown2 outcome=s:aborted reason=s:settled" node-info-req "expect NODE_INFO"
t_wait_until 30 "node2 records the first" test -f "$(fx_dir n2)/migrate/journal/done/unknown1.json" ||
	t_fail "node2 did not record the first RESOLVED"
logged "node3 sent another RESOLVED for a migration unknown here on session [0-9]*: not recorded"
[ ! -e "$(fx_dir n2)/migrate/journal/done/unknown2.json" ] || t_fail "node2 recorded a second RESOLVED on one session"

t_log "the agents still move containers, both ways"
fx_nm n2 migrate "$cid" node1 >/dev/null || t_fail "the move back to node1 failed"
t_assert_eq "$(fx_ctr_where "$cid")" n1 "the container after the move back"
t_assert_eq "$(fx_agent_pid n2)" "$pid2" "node2's agent pid"
t_log "ok"
