#!/usr/bin/env bash
# The target's restore and its staged pages ([agent] consume_staging).
# A staging of pages streamed during the dump is signed beside the restore.
# - yes: CRIU opens the page files only once the signing has read them; once
#   CRIU has restored the container, the pages it read are punched out of
#   the staged pages-*.img (the memory they held is free again), while the
#   other images stay whole and sealed.
# - no: the staged pages stay allocated, and when the target says RESTORED
#   the staging verifies in the nucleus format.
# Either way the move completes and one copy runs. Where CRIU could not
# punch the staged pages (a file system without hole punching; here: an
# append-only flag set on them), they are read as usual. A signing beside
# the restore that fails fails the restore (yes: CRIU is refused the page
# files; no: the restored copy is killed), and the move rolls back.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"

gate=$FX_ROOT/consume-gate

# staged_pages: "<allocated bytes> <apparent bytes>" of node 2's staged pages-*.img.
staged_pages() {
	find "$(fx_dir n2)/migrate/staging" -name 'pages-*.img' -printf '%b %s\n' |
		awk '{ alloc += $1 * 512; size += $2 } END { print alloc + 0, size + 0 }'
}

# staging_verifies: node 2's staging, as it is now, verifies against the
# agents' cluster key in the nucleus format.
staging_verifies() {
	local dir
	dir=$(find "$(fx_dir n2)/migrate/staging" -mindepth 1 -maxdepth 1 -type d | head -n1)
	[ -n "$dir" ] || t_fail "no staging on node2"
	NUCLEUS_CHECKPOINT_HMAC_KEY_FILE=$(fx_hmac_key n2) "$FX_BUILD/agent/nucleus-migrate" verify "$dir" >&2
}

# move_paused ID NAME: moves ID node1 -> node2 with node 1 held right after
# node 2 said RESTORED; sets ALLOC and SIZE to the staged pages' numbers at
# that moment, and SIGNED to whether the staging verified then (yes or no),
# then lets the move finish and checks its outcome.
move_paused() {
	local id=$1 name=$2 off cli
	off=$(stat -c %s "$(fx_agent_log n1)")
	: >"$gate"
	fx_move_start n1 "$id" node2 "$FX_ROOT/$name.out"
	cli=$FX_MOVE_PID
	t_wait_until 300 "node1 pauses after RESTORED" bash -c \
		"tail -c +$((off + 1)) '$(fx_agent_log n1)' | grep -q 'fault injection: paused at got-restored '" ||
		t_fail "node1 never reached got-restored ($(cat "$FX_ROOT/$name.out"))"
	read -r ALLOC SIZE < <(staged_pages)
	SIGNED=no
	! staging_verifies || SIGNED=yes
	find "$(fx_dir n2)/migrate/staging" -name '*.img' ! -name 'pages-*' -exec lsattr {} + |
		awk '$1 !~ /i/ { print "not sealed: " $2; bad = 1 } END { exit bad }' >&2 ||
		t_fail "an image other than pages-*.img lost its seal"
	rm -f "$gate"
	fx_move_end "$cli" "$FX_ROOT/$name.out" 0 "done" "the move of $name"
	t_assert_eq "$(fx_ctr_where "$id")" n2 "where $name runs"
	t_assert_eq "$(fx_ctr_running_copies "$name")" 1 "running copies of $name"
}

fx_nodes_up
fx_agent_start n1 "NM_FAULT=pause-after=got-restored" "NM_FAULT_GATE=$gate"
fx_agent_start n2

t_log "consume_staging = yes (the default): the staged pages are gone once restored"
read -r id _ < <(fx_ctr_start n1 consume)
work=$(fx_ctr_dir n1 consume)
fx_counter_advances "$work" || t_fail "workload does not tick"
move_paused "$id" consume
t_log "staged pages after the restore: $ALLOC of $SIZE bytes allocated"
[ "$SIZE" -gt 0 ] || t_fail "no staged pages-*.img found on node2"
[ "$ALLOC" -le $((SIZE / 8)) ] || t_fail "the restore left $ALLOC of $SIZE bytes of staged pages allocated"
t_assert_eq "$SIGNED" no "whether the consumed staging still verified after the restore"
fx_logged_since n2 0 "is signed beside the restore, before CRIU may open a page file" ||
	t_fail "node2 did not log that it signs the staging beside the consuming restore"
fx_logged_since n2 0 "the staging was signed beside the restore in" ||
	t_fail "node2 did not log the signing beside the consuming restore"
fx_counter_advances "$work" || t_fail "counter stopped after the move"
fx_log_ok "$work" || t_fail "the log has a gap or a repeat"

t_log "consume_staging = no: the staged pages stay, the staging is signed beside the restore"
fx_agent_stop n2
off=$(stat -c %s "$(fx_agent_log n2)")
FX_AGENT_ARGS="--set agent.consume_staging=no" fx_agent_start n2
read -r id2 _ < <(fx_ctr_start n1 keep)
fx_counter_advances "$(fx_ctr_dir n1 keep)" || t_fail "workload keep does not tick"
move_paused "$id2" keep
t_log "staged pages after the restore: $ALLOC of $SIZE bytes allocated; the staging verified: $SIGNED"
[ "$SIZE" -gt 0 ] || t_fail "no staged pages-*.img found on node2"
[ "$ALLOC" -ge "$SIZE" ] || t_fail "with consume_staging = no only $ALLOC of $SIZE bytes of staged pages are allocated"
t_assert_eq "$SIGNED" yes "whether the staging verified once node2 said RESTORED"
fx_logged_since n2 "$off" "is signed beside the restore" ||
	t_fail "node2 did not log that it signs the staging beside the restore"
fx_logged_since n2 "$off" "the staging was signed beside the restore in" ||
	t_fail "node2 did not log the signing beside the restore"

# sign_fails SETTING NAME WHY: a move whose staging cannot be signed, with
# consume_staging = SETTING on node 2, rolls back; node 2 says WHY.
sign_fails() {
	local setting=$1 name=$2 why=$3 off rc=0 out id
	fx_agent_stop n2
	off=$(stat -c %s "$(fx_agent_log n2)")
	FX_AGENT_ARGS="--set agent.consume_staging=$setting" fx_agent_start n2 "NM_FAULT=fail=staging-sign"
	read -r id _ < <(fx_ctr_start n1 "$name")
	fx_counter_advances "$(fx_ctr_dir n1 "$name")" || t_fail "workload $name does not tick"
	out=$(fx_nm n1 migrate "$id" "$(fx_node_name n2)" --json) || rc=$?
	t_assert_eq "$rc" 4 "exit status of a move whose staging cannot be signed: $out"
	grep -q '"outcome":"rolled-back"' <<<"$out" || t_fail "not rolled back: $out"
	fx_logged_since n2 "$off" "cannot sign .* beside the restore" ||
		t_fail "node2 did not say that the signing beside the restore failed"
	fx_logged_since n2 "$off" "$why" || t_fail "node2 did not say: $why"
	t_assert_eq "$(fx_ctr_where "$id")" n1 "where $name runs after the rollback"
	t_assert_eq "$(fx_ctr_running_copies "$name")" 1 "running copies of $name"
	fx_counter_advances "$(fx_ctr_dir n1 "$name")" || t_fail "$name stopped after the rollback"
}

fx_agent_stop n1
fx_agent_start n1
t_log "a signing beside a consuming restore that fails: CRIU is refused the pages, the move rolls back"
sign_fails yes unsigned "CRIU was refused the page files, nothing was restored"
t_log "a signing beside a restore that reads the pages whole fails: the copy is killed, the move rolls back"
sign_fails no unsigned2 "was killed, nothing of it ran"
fx_agent_stop n1
fx_agent_start n1 "NM_FAULT=pause-after=got-restored" "NM_FAULT_GATE=$gate"

t_log "staged pages CRIU cannot punch (append-only): the restore reads them as usual"
gate2=$FX_ROOT/consume-gate-n2
fx_agent_stop n2
off=$(stat -c %s "$(fx_agent_log n2)")
fx_agent_start n2 "NM_FAULT=pause-after=verified" "NM_FAULT_GATE=$gate2"
read -r id3 _ < <(fx_ctr_start n1 append)
fx_counter_advances "$(fx_ctr_dir n1 append)" || t_fail "workload append does not tick"
: >"$gate2"
: >"$gate"
off1=$(stat -c %s "$(fx_agent_log n1)")
fx_move_start n1 "$id3" node2 "$FX_ROOT/append.out"
cli=$FX_MOVE_PID
t_wait_until 300 "node2 pauses after VERIFIED" bash -c \
	"tail -c +$((off + 1)) '$(fx_agent_log n2)' | grep -q 'fault injection: paused at verified '" ||
	t_fail "node2 never reached verified ($(cat "$FX_ROOT/append.out"))"
pages=$(find "$(fx_dir n2)/migrate/staging" -name 'pages-*.img')
[ -n "$pages" ] || t_fail "no staged pages-*.img on node2"
# shellcheck disable=SC2086 # one path per word
chattr -i $pages && chattr +a $pages
rm -f "$gate2"
t_wait_until 300 "node1 pauses after RESTORED" bash -c \
	"tail -c +$((off1 + 1)) '$(fx_agent_log n1)' | grep -q 'fault injection: paused at got-restored '" ||
	t_fail "node1 never reached got-restored ($(cat "$FX_ROOT/append.out"))"
read -r ALLOC SIZE < <(staged_pages)
# shellcheck disable=SC2086
chattr -a $pages
rm -f "$gate"
fx_move_end "$cli" "$FX_ROOT/append.out" 0 "done" "the move of append"
t_log "staged pages after the restore: $ALLOC of $SIZE bytes allocated"
[ "$ALLOC" -ge "$SIZE" ] || t_fail "append-only staged pages were punched: $ALLOC of $SIZE bytes allocated"
grep -q "cannot punch holes" <(tail -c +$((off + 1)) "$(fx_agent_log n2)") ||
	t_fail "node2 did not log that the restore kept the staged pages"
t_assert_eq "$(fx_ctr_where "$id3")" n2 "where append runs"
t_assert_eq "$(fx_ctr_running_copies append)" 1 "running copies of append"
t_log "ok"
