#!/usr/bin/env bash
# The checkpoint core end to end on one node, with real CRIU: a namespaced
# nucleus container is checkpointed by `nucleus-migrate checkpoint` (the
# source copy is gone afterwards), the directory verifies and has the
# nucleus layout and metadata, `restore --leave-stopped` brings it back with
# every task stopped and its state file rewritten (unknown fields kept),
# `resume` continues it, and its counter, pipe and open files go on. Then a
# tree that holds file locks, has stopped children and a TCP connection goes
# through checkpoint and restore with the default options: the locks stay
# held, the stopped children stay stopped (also through --leave-stopped and
# `resume -i`), and `restore --tcp close` closes the connection.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
. "$(dirname "$0")/../lib/breadth.sh"

# NM_MIGRATE: another build of the CLI (e.g. with sanitizers) against this fixture.
NM=${NM_MIGRATE:-$FX_BUILD/agent/nucleus-migrate}
[ -x "$NM" ] || t_fail "$NM is not built"
criu=$(t_criu)
fx_nodes_up
fx_use_node n1
nm() { fx_in n1 "$NM" "$@"; }
count() { fx_ctr_field "$work" count; }
# The workload's log holds 1..N without a gap or a repeat. Checked on a copy,
# since the logger keeps appending; a line caught half-written is dropped.
log_continuous() {
	local snap=$FX_ROOT/log.snap
	cp "$work/log" "$snap"
	[ -z "$(tail -c1 "$snap")" ] || sed -i '$d' "$snap"
	[ -s "$snap" ] && seq 1 "$(wc -l <"$snap")" | cmp -s - "$snap"
}
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status"; }
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

read -r id pid < <(fx_ctr_start n1 web)
work=$(fx_ctr_dir n1 web)
state=$NUCLEUS_STATE_DIR/$id.json
fx_counter_reaches "$work" 2 || t_fail "workload does not tick"

# An unknown field and an annotation that the rewrite must keep.
python3 - "$state" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["annotations"] = {"team": "edge"}
d["x_future_field"] = {"kept": [1, 2]}
open(sys.argv[1], "w").write(json.dumps(d, indent=2))
EOF

ckpt=$FX_ROOT/ckpt/web
t_log "checkpoint $id (pid $pid) by name"
out=$(nm checkpoint --verbose web -o "$ckpt" 2>&1) || t_fail "checkpoint failed: $out"
printf '%s\n' "$out" >&2
grep -q "criu: pre-dump" <<<"$out" || t_fail "CRIU's pre-dump notification did not reach the loop"
grep -q "criu: post-dump" <<<"$out" || t_fail "CRIU's post-dump notification did not reach the loop"
grep -q "criu:       $criu (" <<<"$out" || t_fail "checkpoint does not say it used $criu"
t_assert "the source copy is gone after the dump" gone "$pid"
c1=$(count)
sleep 0.5
t_assert_eq "$(count)" "$c1" "counter while checkpointed"

# Layout: nucleus's, 0700 directories, CRIU's files outside the signed tree.
t_assert_eq "$(stat -c %a "$ckpt")" 700 "checkpoint dir mode"
t_assert_eq "$(stat -c %a "$ckpt/images")" 700 "images dir mode"
t_assert_eq "$(ls "$ckpt" | tr '\n' ' ')" "checkpoint.hmac images metadata.json " "checkpoint dir contents"
t_assert_eq "$(stat -c %s "$ckpt/checkpoint.hmac")" 64 "checkpoint.hmac size (no newline)"
grep -qE '^[0-9a-f]{64}$' "$ckpt/checkpoint.hmac" || t_fail "checkpoint.hmac is not 64 lowercase hex digits"
ls "$ckpt/images" | grep -q '^pages-.*\.img$' || t_fail "no page images"
[ -s "$ckpt.work/dump.log" ] || t_fail "CRIU's log is not in the work dir"
[ ! -e "$ckpt/images/dump.log" ] && [ ! -e "$ckpt/images/stats-dump" ] || t_fail "CRIU wrote into the signed tree"

# metadata.json: nucleus's fields in order, then ours.
keys=$(json "$ckpt/metadata.json" '" ".join(d.keys())')
t_assert_eq "$keys" "container_id container_name original_pid command checkpoint_at version using_gvisor rootless cgroup_path resource_limits nm_format nm_source_node nm_kernel_release nm_criu_version nm_image_bytes nm_bare_pid nm_container_state" "metadata.json fields"
t_assert_eq "$(json "$ckpt/metadata.json" 'd["container_id"]')" "$id" "metadata container_id"
t_assert_eq "$(json "$ckpt/metadata.json" 'd["original_pid"]')" "$pid" "metadata original_pid"
t_assert_eq "$(json "$ckpt/metadata.json" 'd["nm_image_bytes"]')" "$(find "$ckpt/images" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')" "metadata nm_image_bytes"
t_assert_eq "$(json "$ckpt/metadata.json" 'd["nm_criu_version"]')" "$("$criu" --version | sed -n 's/^Version: *//p')" "metadata nm_criu_version"
t_assert_eq "$(json "$ckpt/metadata.json" 'd["nm_container_state"]["x_future_field"]["kept"]')" "[1, 2]" "state carried in metadata"

t_log "verify"
nm verify "$ckpt" || t_fail "a fresh checkpoint does not verify"

t_log "restore --leave-stopped"
out=$(nm restore --verbose -i "$ckpt" --leave-stopped 2>&1) || t_fail "restore failed: $out"
printf '%s\n' "$out" >&2
newpid=$(sed -n 's/.* as pid \([0-9]*\), stopped$/\1/p' <<<"$out")
[ -n "$newpid" ] || t_fail "restore did not print the new pid"
fx_track_pid "$newpid"
grep -q "criu: post-restore" <<<"$out" || t_fail "CRIU's post-restore notification did not reach the loop"
t_assert "the checkpoint still verifies after a restore (CRIU wrote nothing into it)" nm verify "$ckpt"

# Every task of the tree is stopped, not only the root.
tree=$(ps -o pid= --ppid "$newpid" | tr -d ' ')
[ -n "$tree" ] || t_fail "the restored init has no child (the logger)"
for p in "$newpid" $tree; do
	grep -q '^State:.*T' "/proc/$p/status" || t_fail "restored task $p is not stopped: $(grep State "/proc/$p/status")"
done
sleep 0.5
t_assert_eq "$(count)" "$c1" "counter while restored stopped"

# The state file: same id and name, new pid and start_ticks, running, and
# what nucleus-migrate does not know about is still there.
t_assert_eq "$(json "$state" 'd["pid"]')" "$newpid" "state pid"
t_assert_eq "$(json "$state" 'd["start_ticks"]')" "$(fx_start_ticks "$newpid")" "state start_ticks"
t_assert_eq "$(json "$state" 'd["status"]')" running "state status"
t_assert_eq "$(json "$state" 'd["name"]')" web "state name"
t_assert_eq "$(json "$state" 'd["x_future_field"]')" "{'kept': [1, 2]}" "unknown field kept"
t_assert_eq "$(json "$state" 'd["annotations"]["team"]')" edge "annotations kept"
t_assert_eq "$(stat -c %a "$state")" 600 "state file mode"

t_log "resume $newpid"
nm resume "$newpid" || t_fail "resume failed"
fx_counter_reaches "$work" $((c1 + 3)) || t_fail "counter did not continue after resume"
for p in "$newpid" $tree; do
	grep -q '^State:.*T' "/proc/$p/status" && t_fail "task $p is still stopped after resume"
done
log_continuous || t_fail "log has a gap or repeats"
c2=$(count)
[ "$c2" -gt "$c1" ] || t_fail "counter went back: $c1 -> $c2"
t_assert_eq "$(fx_ctr_field "$work" pid)" 1 "restored init is pid 1 of its namespace"
t_log "ok: counter $c1 -> $c2 across checkpoint, restore and resume"

classes=stopped,flock,posix-lock,ofd-lock,lease,tcp-conn
bdir=$(fx_ctr_dir n1 locks)
read -r _ bpid < <(breadth_start n1 "$NUCLEUS_STATE_DIR" "$bdir" locks "$classes") || t_fail "the locks workload did not start"
round=1
report=$(breadth_check "$bpid" "$bdir" $round) || t_fail "no report from the locks workload"
bad=$(breadth_all_ok "$report" "$classes") || t_fail "before any checkpoint: $bad"

# checkpoint_restore N [RESTORE OPTIONS]: checkpoint "locks" into a new
# directory and restore it; sets bpid to the restored init.
checkpoint_restore() {
	local dir=$FX_ROOT/ckpt/locks$1 out
	shift
	out=$(nm checkpoint locks -o "$dir" 2>&1) || t_fail "checkpoint of a tree with locks and stopped tasks failed: $out"
	grep -q "tcp:        move" <<<"$out" || t_fail "checkpoint of a container with its own network namespace does not move its connections: $out"
	grep -q "stopped:    2 task(s)" <<<"$out" || t_fail "checkpoint does not report 2 stopped tasks: $out"
	out=$(nm restore -i "$dir" "$@" 2>&1) || t_fail "restore $* failed: $out"
	bpid=$(sed -n 's/.* as pid \([0-9]*\), [a-z]*$/\1/p' <<<"$out")
	[ -n "$bpid" ] || t_fail "restore did not print the new pid: $out"
	fx_track_pid "$bpid"
	if [[ " $* " == *" --leave-stopped "* ]]; then
		nm resume -i "$dir" "$bpid" >/dev/null || t_fail "resume -i $dir $bpid failed"
	fi
	round=$((round + 1))
	report=$(breadth_check "$bpid" "$bdir" $round) || t_fail "no report after restore $*"
}

t_log "file locks, stopped children and a TCP connection, with the default options"
checkpoint_restore 1
bad=$(breadth_all_ok "$report" "$classes") || t_fail "after checkpoint and restore: $bad"
t_log "the same through restore --leave-stopped and resume -i"
checkpoint_restore 2 --leave-stopped
bad=$(breadth_all_ok "$report" "$classes") || t_fail "after restore --leave-stopped and resume -i: $bad"
t_log "restore --tcp close"
checkpoint_restore 3 --tcp close
grep -q "^FAIL tcp-conn: closed:" <<<"$report" || t_fail "restore --tcp close kept the connection: $report"
bad=$(breadth_all_ok "$report" "${classes%,tcp-conn}") || t_fail "after restore --tcp close: $bad"
t_log "ok: locks held, stopped tasks stopped, TCP moved or closed as asked"
