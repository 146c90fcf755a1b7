#!/usr/bin/env bash
# A hostile peer streams images to node2's agent over SSH (through the pinned
# dial-stdio), holding the cluster HMAC key where the case needs a stream
# that verifies: paths that try to leave staging (.., /, NUL, absolute,
# hidden, checkpoint.hmac), names that collide, files larger than offered,
# more or less DATA than announced, wrong digests and HMACs, images of
# another container than offered, images CRIU cannot restore, and a peer
# that never asks for the restore of images that verified. Each is
# refused with its reason; no canary appears where a traversal would land;
# nothing is written outside staging, no staging directory or stopped
# process is left; and the agent keeps serving.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"

fx_agents_up
pid2=$(fx_agent_pid n2)
key=$(fx_hmac_key n1)
cmp -s "$key" "$(fx_hmac_key n2)" || t_fail "the nodes do not share the HMAC key"

# Real images: a checkpoint of a container on node1 (it stops there).
read -r vid _ < <(fx_ctr_start n1 victim)
ck=$FX_ROOT/ckpt
NUCLEUS_STATE_DIR=$(fx_dir n1)/nucleus NUCLEUS_CHECKPOINT_HMAC_KEY_FILE=$key \
	fx_in n1 "$FX_BUILD/agent/nucleus-migrate" checkpoint "$vid" -o "$ck" >/dev/null || t_fail "checkpoint failed"
# The same images with pstree.img replaced by noise: signed by the peer, so
# they verify, but CRIU cannot restore them.
cp -a "$ck" "$FX_ROOT/ckpt-bad"
# A task's memory map image (which the agent itself never reads, unlike
# pstree.img and core-*.img): only CRIU finds it broken.
mm=$(find "$ck/images" -name 'mm-*.img' | head -n1)
[ -n "$mm" ] || t_fail "the checkpoint has no mm-*.img"
head -c "$(stat -c %s "$mm")" /dev/urandom >"$FX_ROOT/ckpt-bad/images/${mm##*/}"
# Another key of the right size: what a node outside the cluster would use.
head -c 32 /dev/urandom >"$FX_ROOT/other.key"

marker=$FX_ROOT/marker
touch "$marker"
sleep 1

# Each case's migration id is its own (s1 becomes s1-N): an id is never
# accepted twice.
ncase=0
uniq_ids() { sed -E "s/\b(s[0-9])\b/\1-$ncase/g"; }
case_ssh() {
	local name=$1
	shift
	ncase=$((ncase + 1))
	printf '%s\n' "$@" | uniq_ids | pc_case "$name" pc_ssh n1 n2 --hmac-key "$key"
	pc_clean n2 "$pid2"
}
O=(hello "expect HELLO" "offer s1 container=$vid" "expect ACCEPT")
file_map() { echo "map t=u:23 mig=s:s1 path=s:$1 size=u:1 mode=u:384"; }

t_log "paths that would leave staging"
canary=$(fx_dir n2)/canary
case_ssh path-absolute "${O[@]}" "$(file_map "$canary")" "expect-closed is neither metadata.json nor images/<name>"
case_ssh path-dotdot "${O[@]}" "$(file_map ../canary)" "expect-closed is neither metadata.json nor images/<name>"
case_ssh path-images-dotdot "${O[@]}" "$(file_map images/../../canary)" "expect-closed starts with '.'"
case_ssh path-images-dotdot-only "${O[@]}" "$(file_map images/..)" "expect-closed starts with '.'"
case_ssh path-subdir "${O[@]}" "$(file_map images/a/../../../canary)" "expect-closed has a subdirectory"
case_ssh path-nul "${O[@]}" "$(file_map 'images/a\x00/../../../canary')" "expect-closed contains a NUL byte"
case_ssh path-nul-metadata "${O[@]}" "$(file_map 'metadata.json\x00../canary')" "expect-closed contains a NUL byte"
case_ssh path-hidden "${O[@]}" "$(file_map images/.canary)" "expect-closed starts with '.'"
case_ssh path-hmac "${O[@]}" "$(file_map checkpoint.hmac)" "expect-closed is not sent as a file"
case_ssh path-empty-name "${O[@]}" "$(file_map images/)" "expect-closed has an empty file name"
case_ssh path-empty "${O[@]}" "map t=u:23 mig=s:s1 path=s: size=u:1 mode=u:384" "expect-closed field 'path'"
case_ssh path-space "${O[@]}" "$(file_map 'images/a\x20b')" "expect-closed field 'path'"
case_ssh path-overlong "${O[@]}" "$(file_map "images/$(printf 'a%.0s' {1..256})")" "expect-closed field 'path'"
case_ssh mode-setuid "${O[@]}" "map t=u:23 mig=s:s1 path=s:images/a size=u:1 mode=u:2541" "expect-closed has bits outside 0644"
found=$(find "$FX_ROOT" -name '*canary*' 2>/dev/null)
[ -z "$found" ] || t_fail "a traversal created: $found"

t_log "names that collide, and order"
case_ssh image-twice "${O[@]}" "file s1 images/a 1" "data s1 1" "file-end s1" "file s1 images/a 1" \
	"expect ERROR must arrive sorted and once (previous: images/a)"
case_ssh image-unsorted "${O[@]}" "file s1 images/b 1" "data s1 1" "file-end s1" "file s1 images/a 1" \
	"expect ERROR out of order"
case_ssh metadata-twice "${O[@]}" "put s1 $ck/metadata.json metadata.json" "put s1 $ck/metadata.json metadata.json" \
	"expect ERROR after metadata.json, which must come last"
case_ssh image-after-metadata "${O[@]}" "put s1 $ck/metadata.json metadata.json" "file s1 images/z 1" \
	"expect ERROR after metadata.json, which must come last"
# A staging directory (or a symlink) already there under the offered id is
# not ours: the offer is refused and it is left alone.
staging=$(fx_dir n2)/migrate/staging
mkdir "$staging/pre1"
touch "$staging/pre1/keep"
mkdir "$FX_ROOT/elsewhere"
ln -s "$FX_ROOT/elsewhere" "$staging/pre2"
for id in pre1 pre2; do
	printf '%s\n' hello "expect HELLO" "offer $id container=$vid" "expect REJECT cannot create staging directory" |
		pc_case "staging-exists-$id" pc_ssh n1 n2
done
[ -f "$staging/pre1/keep" ] || t_fail "the agent touched a staging directory it did not create"
[ -L "$staging/pre2" ] && [ -z "$(ls -A "$FX_ROOT/elsewhere")" ] || t_fail "the agent followed a planted symlink"
rm -rf "${staging:?}/pre1" "${staging:?}/pre2"
pc_clean n2 "$pid2"

t_log "sizes: larger than offered, more or less DATA than announced"
case_ssh file-larger-than-offer hello "expect HELLO" "offer s2 container=$vid bytes=1048576" "expect ACCEPT" \
	"file s2 images/a 300000000" "expect ERROR of 300000000 bytes exceeds the limit"
case_ssh more-data "${O[@]}" "file s1 images/a 10" "data s1 11" "expect ERROR more DATA for images/a than the 10 bytes announced"
case_ssh more-data-later "${O[@]}" "file s1 images/a 10" "data s1 6" "data s1 6" "expect ERROR more DATA for images/a"
case_ssh less-data "${O[@]}" "file s1 images/a 10" "data s1 9" "file-end s1" "expect ERROR after 9 of the 10 bytes announced"
case_ssh data-outside-file "${O[@]}" "data s1 1" "expect ERROR DATA outside a file"
case_ssh file-in-file "${O[@]}" "file s1 images/a 2" "data s1 1" "file s1 images/b 1" "expect ERROR arrived before FILE_END"
case_ssh done-in-file "${O[@]}" "file s1 images/a 2" "images-done s1" "expect ERROR IMAGES_DONE before FILE_END"

t_log "digests and the tree HMAC"
case_ssh bad-sha256 "${O[@]}" "file s1 images/a 10" "data s1 10" "file-end s1 sha=bad" \
	"expect ERROR does not match what the sender computed"
case_ssh bad-hmac "${O[@]}" "put-dir s1 $ck" "images-done s1 hmac=bad" "expect ERROR the checkpoint HMAC does not verify"
ncase=$((ncase + 1))
printf '%s\n' "${O[@]}" "put-dir s1 $ck" "images-done s1" "expect ERROR the checkpoint HMAC does not verify" | uniq_ids |
	pc_case other-key pc_ssh n1 n2 --hmac-key "$FX_ROOT/other.key"
pc_clean n2 "$pid2"
case_ssh bad-counts "${O[@]}" "put-dir s1 $ck" "images-done s1 files=3" "expect ERROR IMAGES_DONE announces 3 files"
case_ssh no-metadata "${O[@]}" "file s1 images/a 1" "data s1 1" "file-end s1" "images-done s1" \
	"expect ERROR IMAGES_DONE without metadata.json"

t_log "signed images bound to another migration, or to none: refused before anything is restored"
case_ssh binding-none "${O[@]}" "put-dir s1 $ck" "images-done s1 bind=none" "expect ERROR the images carry no binding"
case_ssh binding-replay "${O[@]}" "put-dir s1 $ck" "images-done s1 bind=s9" \
	"expect ERROR the images are signed, but not for migration s1"
case_ssh binding-reused-id "${O[@]}" "put-dir s1 $ck" "images-done s1" "expect VERIFIED"
ncase=$((ncase - 1)) # the same id again
printf '%s\n' hello "expect HELLO" "offer s1" "expect REJECT migration id used before" | uniq_ids |
	pc_case binding-reused-offer pc_ssh n1 n2
ncase=$((ncase + 1))
pc_clean n2 "$pid2"

t_log "verified images of another container than offered"
case_ssh other-container hello "expect HELLO" "offer s3 container=0123456789abcdef0123456789abcdef" "expect ACCEPT" \
	"put-dir s3 $ck" "images-done s3" "expect ERROR the images are of container $vid, but the offer was for"

t_log "signed images whose state names another container: refused before the restore"
other=fedcba9876543210fedcba9876543210
cp -a "$ck" "$FX_ROOT/ckpt-state"
sed -i -E "s/\"id\": ?\"$vid\"/\"id\": \"$other\"/" "$FX_ROOT/ckpt-state/metadata.json"
grep -q "\"id\": \"$other\"" "$FX_ROOT/ckpt-state/metadata.json" || t_fail "the state's id was not changed"
case_ssh state-other-id "${O[@]}" "put-dir s1 $FX_ROOT/ckpt-state" "images-done s1" \
	"expect ERROR differs from its state's id" "expect-closed"
[ ! -e "$(fx_dir n2)/nucleus/$other.json" ] && [ ! -e "$(fx_dir n2)/nucleus/$vid.json" ] ||
	t_fail "a state file was written for refused images"

t_log "verified images CRIU cannot restore: CRIU's reason reaches the peer"
case_ssh criu-fails "${O[@]}" "put-dir s1 $FX_ROOT/ckpt-bad" "images-done s1" "expect VERIFIED" \
	"restore s1" "expect ERROR Head magic doesn't match for mm-"
pc_said criu-fails "restore on node2 failed: criu restore"

t_log "a peer that leaves after VERIFIED, and one that aborts a restored copy"
case_ssh leave-verified "${O[@]}" "put-dir s1 $ck" "images-done s1" "expect VERIFIED"
case_ssh abort-restored "${O[@]}" "put-dir s1 $ck" "images-done s1" "expect VERIFIED" "restore s1" "expect RESTORED" \
	"abort s1 testing" "expect-silence 500"
restored=$(sed -n 's/^< RESTORED pid=\([0-9]*\).*/\1/p' "$FX_ROOT/pc-abort-restored.out")
[ -n "$restored" ] || t_fail "no RESTORED pid in the transcript"
t_wait_until 60 "the aborted copy is gone" bash -c "! kill -0 $restored 2>/dev/null" ||
	t_fail "the stopped copy (pid $restored) was left after ABORT"
t_assert_eq "$(fx_ctr_where "$vid")" "" "where the victim runs (nowhere: it was only checkpointed)"

# ps_case NAME TIMEOUT STEP...: a case on the page stream (each STEP a line
# of pc_case's), TIMEOUT ms for all of it (empty: pc_case's default); the
# target must leave no page server behind.
ps_case() {
	local name=$1 timeout=$2
	shift 2
	ncase=$((ncase + 1))
	printf '%s\n' "$@" | uniq_ids | pc_case "$name" pc_ssh n1 n2 --hmac-key "$key" ${timeout:+--timeout "$timeout"}
	pc_clean n2 "$pid2"
	pgrep -f "page-server.*$(fx_dir n2)" >/dev/null && t_fail "$name: a page server was left running on node2"
	return 0
}

t_log "a peer that streams its pages and never ends them, keeping its session alive"
# The images verify, so the dump is over: the page stream's end is due.
# Without it the target gives up after the idle timeout (the PINGs keep the
# session itself alive), and its page server and staging go.
ps_case ps-end-never "$((2 * PC_TIMEOUT))" "hello features=binding,ps-stream" "expect HELLO" \
	"offer s1 container=$vid ps_stream=1" "expect ACCEPT" "put-dir s1 $ck" "images-done s1" \
	"expect-pinging $(t_ms 2000) ERROR the source neither ended the page stream nor did its page server finish"

t_log "a peer whose images verify, that never asks for the restore, keeping its session alive"
# VERIFIED calls for RESTORE at once. Without it the target gives up after
# the idle timeout (the PINGs keep the session itself alive) and lets the
# staging and its slot go.
ps_case restore-never "$((2 * PC_TIMEOUT))" hello "expect HELLO" "offer s1 container=$vid" "expect ACCEPT" \
	"put-dir s1 $ck" "images-done s1" "expect VERIFIED" \
	"expect-pinging $(t_ms 2000) ERROR sent no RESTORE within"
[ -z "$(ls -A "$(fx_dir n2)/migrate/staging")" ] || t_fail "restore-never: staging left on node2"

# ps_frame_case NAME FEATURES WHY: a page frame that claims to be compressed
# (size=4096) but holds bytes that are no zstd frame, under a tag of zeros,
# from a peer whose HELLO lists FEATURES; the target must refuse the page
# stream with WHY.
ps_frame_case() {
	local zeros
	zeros=$(printf '0%.0s' $(seq 64))
	ps_case "$1" "" "hello features=$2" "expect HELLO" "offer s1 container=$vid ps_stream=1" "expect ACCEPT" \
		"map t=u:39 mig=s:s1 data=b:0102030405060708 tag=b:$zeros size=u:4096" "expect ERROR $3"
}

t_log "a compressed page frame where the HELLOs agreed on no compression"
ps_frame_case ps-zstd-unagreed binding,ps-stream "is malformed (a compressed frame, where the HELLOs agreed on none)"
t_log "a compressed page frame under ps-ztag: its tag is checked before anything decompresses it"
ps_frame_case ps-ztag-first binding,ps-stream,zstd,ps-ztag "frame 1 from"
pc_said ps-ztag-first "failed its check"
t_log "the same frame from a peer without ps-ztag: decompressed first, refused as no zstd frame"
ps_frame_case ps-ztag-raw binding,ps-stream,zstd "is malformed (ZDATA:"
t_log "the same frame under ps-poly1305: a tag of zeros fails its Poly1305 check"
ps_frame_case ps-poly-first binding,ps-stream,zstd,ps-ztag,ps-poly1305 "frame 1 from"
pc_said ps-poly-first "failed its check"

t_log "a container of the same name runs here: refused before the restore"
read -r rid rpid < <(fx_ctr_start n2 victim)
case_ssh name-clash "${O[@]}" "put-dir s1 $ck" "images-done s1" "expect ERROR another container named victim ($rid) runs"
t_assert_eq "$(fx_ctr_where "$rid")" n2 "the resident container of the same name"
t_assert_eq "$(fx_ctr_where "$vid")" "" "where the offered container runs (nowhere)"

t_log "nothing was written outside staging"
written=$(pc_written_since n2 "$marker")
[ -z "$written" ] || t_fail "files written on node2 outside staging: $written"

t_log "the agent still moves containers"
read -r id _ < <(fx_ctr_start n1 mover)
fx_nm n1 migrate "$id" node2 >/dev/null || t_fail "a migration after the hostile streams failed"
t_assert_eq "$(fx_ctr_where "$id")" n2 "container after the move"
t_assert_eq "$(fx_agent_pid n2)" "$pid2" "node2's agent pid"
t_log "ok"
