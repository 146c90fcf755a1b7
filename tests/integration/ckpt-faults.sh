#!/usr/bin/env bash
# The checkpoint core's failure paths with real CRIU, on one node:
#  - a tampered image is refused at restore (exit 7) and nothing is restored;
#  - a restore that CRIU fails leaves the images intact, and a retry works;
#  - a stopped restored tree can be killed (kill-tree) and restored again;
#  - a second copy of a running container is refused;
#  - a missing or ambiguous container (exit 6) and a gVisor one (exit 3) are refused,
#    and the refused containers keep running.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"

# NM_MIGRATE: another build of the CLI (e.g. with sanitizers) against this fixture.
NM=${NM_MIGRATE:-$FX_BUILD/agent/nucleus-migrate}
[ -x "$NM" ] || t_fail "$NM is not built"
t_criu >/dev/null
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
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status"; }
# Live processes of this workload (a dumped one is a zombie, or reaped).
workload_pids() { pgrep -f "nm-counter $work" || true; }
tree_sum() { (cd "$ckpt" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
flip_byte() {
	python3 - "$1" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x01
open(p, "r+b").write(b)
EOF
}

read -r id pid < <(fx_ctr_start n1 db)
work=$(fx_ctr_dir n1 db)
state=$NUCLEUS_STATE_DIR/$id.json
fx_counter_reaches "$work" 2 || t_fail "workload does not tick"

t_log "refusals before anything is touched"
t_expect_exit 6 "checkpoint of a missing container" nm checkpoint no-such-thing -o "$FX_ROOT/x1"
t_says "missing container" "no container 'no-such-thing'" "$id (db)"
read -r dup1id dup1 < <(fx_ctr_start n1 dup)
read -r _ dup2 < <(fx_ctr_start n1 dup)
t_expect_exit 6 "checkpoint of an ambiguous name" nm checkpoint dup -o "$FX_ROOT/x2"
t_says "ambiguous name" ambiguous
t_assert "containers named ambiguously still run" alive "$dup1"
t_assert "containers named ambiguously still run" alive "$dup2"
mkdir -p "$(fx_ctr_dir n1 gv)"
gv=$(fx_in n1 "$FX_BUILD/tests/workloads/nm-ctr-start" --state-dir "$NUCLEUS_STATE_DIR" --name gv --gvisor \
	-- "$FX_BUILD/tests/workloads/nm-counter" "$(fx_ctr_dir n1 gv)")
t_expect_exit 3 "checkpoint of a gVisor container (refused: exit 3)" nm checkpoint gv -o "$FX_ROOT/x3"
t_says "gVisor refusal" gVisor
t_assert "the gVisor container still runs" alive "${gv#* }"
[ ! -e "$FX_ROOT/x1" ] && [ ! -e "$FX_ROOT/x3/images" ] || t_fail "a refused checkpoint created images"

ckpt=$FX_ROOT/ckpt/db
nm checkpoint db -o "$ckpt" || t_fail "checkpoint failed"
t_expect_exit 1 "checkpoint into a non-empty directory" nm checkpoint "$dup1id" -o "$ckpt"
t_assert "a refused checkpoint leaves its container running" alive "$dup1"
nm verify "$ckpt" || t_fail "the checkpoint does not verify"
c1=$(count)
sum=$(tree_sum)

t_log "a tampered image is refused and nothing is restored"
img=$(ls "$ckpt"/images/pages-*.img | head -n1)
flip_byte "$img"
t_expect_exit 7 "verify of a tampered checkpoint" nm verify "$ckpt"
t_expect_exit 7 "restore of a tampered checkpoint" nm restore -i "$ckpt"
t_says "tampered restore" "HMAC mismatch"
[ ! -e "$ckpt.work/restore.log" ] || t_fail "CRIU ran on a tampered checkpoint"
[ -z "$(workload_pids)" ] || t_fail "something was restored from a tampered checkpoint: $(workload_pids)"
t_assert_eq "$(json "$state" 'd["pid"]')" "$pid" "state file after a refused restore"
flip_byte "$img"
t_assert_eq "$(tree_sum)" "$sum" "tree after undoing the tamper"
nm verify "$ckpt" || t_fail "undoing the tamper does not verify"

t_log "a failing restore leaves the images intact"
# The workload's open log file is gone: CRIU cannot reopen it and fails.
mv "$work/log" "$work/log.away"
t_expect_exit 1 "restore with an open file missing" nm restore -i "$ckpt"
t_says_re "failed restore" "criu restore of .* failed" "images are untouched"
[ -s "$ckpt.work/restore.log" ] || t_fail "CRIU did not run"
[ -z "$(workload_pids)" ] || t_fail "a failed restore left processes: $(workload_pids)"
t_assert_eq "$(tree_sum)" "$sum" "images after a failed restore"
nm verify "$ckpt" || t_fail "the checkpoint does not verify after a failed restore"
t_assert_eq "$(json "$state" 'd["pid"]')" "$pid" "state file after a failed restore"
mv "$work/log.away" "$work/log"

t_log "retry, stopped; then kill the stopped tree"
out=$(nm restore -i "$ckpt" --leave-stopped) || t_fail "retried restore failed"
p1=$(sed -n 's/.* as pid \([0-9]*\), stopped$/\1/p' <<<"$out")
[ -n "$p1" ] || t_fail "no pid in: $out"
fx_track_pid "$p1"
kids=$(ps -o pid= --ppid "$p1" | tr -d ' ')
nm kill-tree "$p1" || t_fail "kill-tree failed"
for p in "$p1" $kids; do
	alive "$p" && t_fail "pid $p of the killed tree still runs"
done
[ -z "$(workload_pids)" ] || t_fail "kill-tree left processes: $(workload_pids)"
t_assert_eq "$(tree_sum)" "$sum" "images after kill-tree"

t_log "restore again, running"
out=$(nm restore -i "$ckpt") || t_fail "restore after kill-tree failed"
p2=$(sed -n 's/.* as pid \([0-9]*\), running$/\1/p' <<<"$out")
[ -n "$p2" ] || t_fail "no pid in: $out"
fx_track_pid "$p2"
t_assert_eq "$(json "$state" 'd["pid"]')" "$p2" "state pid"
fx_counter_reaches "$work" $((c1 + 3)) ||
	t_fail "counter did not continue"
log_continuous || t_fail "log has a gap or repeats"

t_log "a second copy is refused"
t_expect_exit 1 "restore beside the running copy" nm restore -i "$ckpt"
t_says "second copy" "already runs on this node as pid $p2"
t_assert "the running copy is untouched" alive "$p2"
t_assert_eq "$(workload_pids | grep -c .)" 2 "workload processes (init and logger) after the refused second copy"
t_log "ok"
