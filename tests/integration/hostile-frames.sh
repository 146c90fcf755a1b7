#!/usr/bin/env bash
# A hostile or broken peer speaks to node2's agent directly, over SSH as the
# migration user through the pinned `nucleus-agent dial-stdio`: malformed
# frames (oversize and zero lengths, truncated, not a map, hostile msgpack
# sizes, wrong and missing fields, unknown types), messages out of order or
# of the wrong direction, and offers the agent must refuse. Each gets a clear
# answer (ERROR or REJECT whose reason is checked, then the close where the
# stream cannot go on); no staging directory or migration is left; nothing
# is written; and the agent keeps serving: after each case a status and a
# peer session, and at the end real migrations both ways.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"

fx_agents_up
pid2=$(fx_agent_pid n2)
marker=$FX_ROOT/marker
touch "$marker"
sleep 1 # file times: anything written from now on is newer than the marker

# case NAME SCRIPT-LINE...: the script through SSH, then the checks.
case_ssh() {
	local name=$1
	shift
	printf '%s\n' "$@" | pc_case "$name" pc_ssh n1 n2
	pc_clean n2 "$pid2"
}

t_log "frames the decoder refuses end the session with the reason"
case_ssh oversize-first "len 0x7fffffff" "expect-closed frame length 2147483647 exceeds limit 4194304"
case_ssh oversize hello "expect HELLO" "len 4194305" "expect-closed exceeds limit 4194304"
case_ssh zero-length hello "expect HELLO" "len 0" "expect-closed frame length 0"
case_ssh truncated hello "expect HELLO" "raw 00000010 82a174" shutdown "expect-closed in the middle of a frame"
case_ssh truncated-header hello "expect HELLO" "raw 0000" shutdown "expect-closed in the middle of a frame"
case_ssh not-a-map hello "expect HELLO" "raw 00000001 01" "expect-closed not a map"
case_ssh huge-array hello "expect HELLO" "raw 0000000d 82a17403a3736571ddffffffff" \
	"expect-closed msgpack array of 4294967295 elements"
case_ssh deep-nesting hello "expect HELLO" "raw 0000001d 82a17403a3736571 $(printf '91%.0s' {1..20})00" \
	"expect-closed nesting deeper than 16"
case_ssh trailing-garbage hello "expect HELLO" "raw 0000000a 82a17403a373657101c0" "expect-closed trailing garbage"
case_ssh key-not-string hello "expect HELLO" "raw 00000006 82a174030102" "expect-closed is an unsigned integer, not a string"
case_ssh duplicate-key hello "expect HELLO" "map t=u:3 seq=u:1 seq=u:2" "expect-closed field 'seq' appears twice"
case_ssh unknown-type hello "expect HELLO" "map t=u:200" "expect-closed unknown message type 200"
case_ssh type-not-int hello "expect HELLO" "map t=s:HELLO" "expect-closed"
case_ssh wrong-field-type "map t=u:1 version=s:1 min_version=u:1 node=s:x role=s:peer" "expect-closed HELLO: field 'version'"
case_ssh missing-field hello "expect HELLO" "map t=u:23 mig=s:m path=s:images/a mode=u:384" \
	"expect-closed FILE: field 'size' missing"
case_ssh bin-as-str hello "expect HELLO" "map t=u:24 mig=s:m data=s:abc" "expect-closed DATA: field 'data'"

t_log "HELLO: first, and in a version both speak"
case_ssh no-hello node-info-req "expect-closed expected HELLO, got NODE_INFO_REQ"
case_ssh no-common-version "hello version=99 min=99" "expect-closed no version in common"
case_ssh hello-as-cli "hello role=cli" "expect-closed the migration user"
case_ssh hello-twice hello "expect HELLO" hello "expect-silence 300" node-info-req "expect NODE_INFO"

t_log "messages out of order: refused, and the session goes on"
case_ssh file-before-offer hello "expect HELLO" "file m1 images/a 1" "expect ERROR image data without an accepted offer" \
	"data m1 1" "expect ERROR image data without an accepted offer" \
	"file-end m1" "expect ERROR image data without an accepted offer" \
	"images-done m1 hmac=$(printf '0%.0s' {1..64}) files=0 bytes=0" "expect ERROR image data without an accepted offer" \
	node-info-req "expect NODE_INFO"
case_ssh restore-before-verified hello "expect HELLO" "restore m2" "expect ERROR RESTORE before the images were verified" \
	"offer m2" "expect ACCEPT" "restore m2" "expect ERROR RESTORE before the images were verified"
case_ssh commit-unknown hello "expect HELLO" "commit nosuchmig" "expect ERROR no copy of this migration is held or running here"
case_ssh commit-before-restored hello "expect HELLO" "offer m3" "expect ACCEPT" "commit m3" "expect ERROR COMMIT before RESTORED"
case_ssh abort-unknown hello "expect HELLO" "abort nosuchmig testing" "expect-silence 300" \
	"query nosuchmig" "expect OUTCOME unknown"
case_ssh data-other-mig hello "expect HELLO" "offer m4" "expect ACCEPT" "file m5 images/a 1" \
	"expect ERROR image data without an accepted offer"
for m in accept verified; do
	case_ssh "wrong-direction-$m" hello "expect HELLO" "$m m6" "expect ERROR unexpected message on a peer session"
done
case_ssh wrong-direction-restored hello "expect HELLO" "map t=u:29 mig=s:m6 pid=u:1" \
	"expect ERROR unexpected message on a peer session"
case_ssh wrong-direction-result hello "expect HELLO" "map t=u:70 doc=s:{}" "expect ERROR unexpected message on a peer session"
t_log "operator requests on a peer session are refused (a peer cannot move, cordon or list)"
read -r id1 _ < <(fx_ctr_start n2 resident)
case_ssh migrate-on-peer hello "expect HELLO" "migrate $id1 node1" "expect ERROR unexpected message on a peer session"
case_ssh cordon-on-peer hello "expect HELLO" "cordon on" "expect ERROR unexpected message on a peer session"
case_ssh status-on-peer hello "expect HELLO" status "expect ERROR unexpected message on a peer session"
t_assert_eq "$(fx_ctr_where "$id1")" n2 "the container a peer asked to move"
fx_nm n2 status --json | grep -q '"cordoned":false' || t_fail "a peer's CORDON took effect"

t_log "offers the destination refuses"
case_ssh offer-twice hello "expect HELLO" "offer o1" "expect ACCEPT" "offer o2" "expect ERROR one migration per session"
case_ssh offer-lazy hello "expect HELLO" "offer o3 lazy=1" "expect REJECT post-copy offered, but the source did not announce"
# An older source (no "binding" in HELLO) is refused at its OFFER, before it
# freezes anything, not after it streamed an image set the target refuses.
case_ssh offer-unbound "hello features=zstd,file-mac" "expect HELLO" "offer o9" \
	"expect REJECT does not bind its image sets to their migration (HELLO lists no \"binding\""
case_ssh offer-newer-criu hello "expect HELLO" "offer o4 criu=99.0.0" "expect REJECT images from CRIU 99.0.0 cannot be restored"
case_ssh offer-newer-kernel hello "expect HELLO" "offer o5 kernel=99.0.0" "expect REJECT the source runs kernel 99.0.0"
case_ssh offer-no-space hello "expect HELLO" "offer o6 bytes=9000000000000000" "expect REJECT staging has"
case_ssh offer-running-here hello "expect HELLO" "offer o7 container=$id1" "expect REJECT already runs on this node"
case_ssh offer-bad-id hello "expect HELLO" \
	"map t=u:20 mig=s:o8 container_id=s:../../x container_name=s:x metadata=b:7b7d image_bytes=u:1 criu_version=s:4.2.1 kernel=s:6.1.0 lazy=bool:false" \
	"expect-closed field 'container_id'"
case_ssh offer-bad-mig hello "expect HELLO" \
	"map t=u:20 mig=s:../o9 container_id=s:abc container_name=s:x metadata=b:7b7d image_bytes=u:1 criu_version=s:4.2.1 kernel=s:6.1.0 lazy=bool:false" \
	"expect-closed field 'mig'"
# Two sessions offering the same migration id: the second is refused. The
# first holds same1 until the second has its answer, however long that
# takes: its script comes through a FIFO, fed 64 KiB of data every half
# second (the receiver wants progress, or it ends the migration), and ends
# when the FIFO closes.
fifo=$FX_ROOT/same-a.fifo
mkfifo "$fifo"
pc_ssh n1 n2 <"$fifo" >"$FX_ROOT/pc-same-a.out" 2>&1 &
holder=$!
exec 7>"$fifo"
printf '%s\n' hello "expect HELLO" "offer same1" "expect ACCEPT" "file same1 images/a 100000000" >&7
t_wait_until 30 "first offer accepted" grep -q "^< ACCEPT" "$FX_ROOT/pc-same-a.out" || t_fail "the first offer was not accepted"
(while printf '%s\n' "data same1 65536"; do sleep 0.5; done) >&7 2>/dev/null &
feeder=$!
printf '%s\n' hello "expect HELLO" "offer same1" "expect REJECT migration id in use" |
	pc_case offer-id-in-use pc_ssh n1 n2
kill "$feeder"
wait "$feeder" 2>/dev/null || true
exec 7>&-
wait "$holder" || t_fail "the session holding migration same1 failed: $(cat "$FX_ROOT/pc-same-a.out")"
pc_clean n2 "$pid2"

t_log "nothing was written outside the agent's own files"
written=$(pc_written_since n2 "$marker")
[ -z "$written" ] || t_fail "files written on node2 by hostile sessions: $written"

t_log "the agent still moves containers, both ways"
read -r id _ < <(fx_ctr_start n1 mover)
fx_nm n1 migrate "$id" node2 >/dev/null || t_fail "a migration to node2 after the hostile sessions failed"
t_assert_eq "$(fx_ctr_where "$id")" n2 "container after the move"
fx_nm n2 migrate "$id" node1 >/dev/null || t_fail "a migration back to node1 failed"
t_assert_eq "$(fx_ctr_where "$id")" n1 "container after the move back"
t_assert_eq "$(fx_agent_pid n2)" "$pid2" "node2's agent pid"
t_log "ok"
