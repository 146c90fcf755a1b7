#!/usr/bin/env bash
# What cannot move is refused before anything is frozen, with the reason
# (exit 3), and the container runs on untouched. Each refusal on the source
# is checked against CRIU itself (`checkpoint --try-anyway`, or the criu
# CLI): CRIU 4.2.1 really fails there, with the message quoted in
# DESIGN.md. A target that lacks what the container needs (veth name or
# address taken, no such bridge or another subnet, a bind source missing,
# the cgroup there already) refuses the restore (exit 3) and keeps nothing;
# the source then resumes in place.
set -euo pipefail
. "$(dirname "$0")/../lib/native.sh"

NM=${NM_MIGRATE:-$FX_BUILD/agent/nucleus-migrate}
[ -x "$NM" ] || t_fail "$NM is not built"
criu=$(t_criu)
fx_nodes_up
fx_native_node_up n1
fx_native_node_up n2
CK=$FX_ROOT/ck
mkdir -p "$CK"
nm() {
	local n=$1
	shift
	fx_in "$n" env NUCLEUS_STATE_DIR="$(fx_native_state "$n")" NUCLEUS_CHECKPOINT_HMAC_KEY_FILE="$(fx_hmac_key "$n")" \
		NUCLEUS_CGROUP_ROOT="$(fx_cgroup_root "$n")" "$NM" "$@"
}
gt() { [ "$(fx_native_field "$1" "$2" count)" -gt "$3" ] 2>/dev/null; }
running_on() {
	local name=$1 pid=$2 c
	c=$(fx_native_field n1 "$name" count)
	t_wait_until 10 "$name counts on" gt n1 "$name" "$c" || t_fail "$name does not run on after the refusal"
	# Running, sleeping or in a disk wait (where a busy machine can catch
	# its writes); not stopped, traced or gone.
	grep -q '^State:[[:space:]]*[RSD]' "/proc/$pid/status" ||
		t_fail "$name's PID 1 is not running: $(grep '^State:' "/proc/$pid/status" 2>&1)"
	grep -qx "$pid" "$(fx_cgroup_root n1)/nucleus-$3/cgroup.procs" || t_fail "$name left its cgroup"
}
# refused NAME PID ID PATTERN [checkpoint options]: exit 3, the reason, no
# directory left, the container untouched.
refused() {
	local name=$1 pid=$2 cid=$3 pattern=$4 out rc=0
	shift 4
	out=$(nm n1 checkpoint "$name" -o "$CK/refused-$name" --file-locks "$@" 2>&1) || rc=$?
	t_assert_eq "$rc" 3 "exit status of refusing $name ($out)"
	grep -q -- "$pattern" <<<"$out" || t_fail "refusing $name does not say why: $out"
	[ ! -e "$CK/refused-$name" ] || t_fail "a refusal left $CK/refused-$name"
	running_on "$name" "$pid" "$cid"
	t_log "refused $name: $(sed 's/.*: cannot move/cannot move/' <<<"$out" | cut -c1-160)..."
}
# criu_says NAME PID ID PATTERN: with the refusal skipped, CRIU fails
# with PATTERN in its log, and the container runs on.
criu_says() {
	local name=$1 pid=$2 cid=$3 pattern=$4 out
	out=$(nm n1 checkpoint "$name" -o "$CK/try-$name" --file-locks --accept-landlock-loss --try-anyway 2>&1) &&
		t_fail "CRIU dumped $name after all: $out"
	grep -q -- "$pattern" <<<"$out" || t_fail "CRIU's reason for $name is not '$pattern': $out"
	running_on "$name" "$pid" "$cid"
	t_log "CRIU on $name: $(grep -o -- "$pattern[^|]*" <<<"$out" | head -1)"
}

# ---- on the source ----------------------------------------------------------------
read -r web_id web_pid < <(fx_native_start n1 web --stdio "pipe:$(fx_dir n1)/web.out" --landlock -- \
	/context/nm-native-work --status /data)
refused web "$web_pid" "$web_id" "Landlock, which CRIU 4.2 does not carry"

read -r jr_id jr_pid < <(fx_native_start n1 jr -- /context/nm-native-work --status /data)
refused jr "$jr_pid" "$jr_id" "socket of another network namespace" --accept-landlock-loss
criu_says jr "$jr_pid" "$jr_id" "unix: Unix socket [0-9]* not found"

read -r tap_id tap_pid < <(fx_native_start n1 tap --network tap --stdio null -- /context/nm-native-work --status /data)
refused tap "$tap_pid" "$tap_id" "uses tap device tap0" --accept-landlock-loss
criu_says tap "$tap_pid" "$tap_id" "No fd info for non persistent tun device tap0"

read -r prod_id prod_pid < <(fx_native_start n1 prod --init "$FX_NATIVE_INIT" --stdio null -- \
	/context/nm-native-work --status /data)
refused prod "$prod_pid" "$prod_id" "production-mode init" --accept-landlock-loss
criu_says prod "$prod_pid" "$prod_id" "Can't lookup mount=[0-9]* for fd=-3 path=$FX_NATIVE_INIT"

# The cgroup namespace: nucleus's shape is refused by CRIU itself; ckpt
# handles it by putting the tasks below the namespace's root for the dump
# (native-move). Here the criu CLI, given every external the container
# needs, shows the failure.
ext=$(python3 - "$web_pid" <<'EOF'
import os, sys
pid = sys.argv[1]
def table(path):
    return [l.split() for l in open(path)]
host = {l[2] for l in table("/proc/self/mountinfo")}
args = []
for l in table(f"/proc/{pid}/mountinfo"):
    if l[4] != "/" and l[2] in host:
        args.append(f"--external=mnt[{l[4]}]:{l[4]}")
info = dict(line.split(":", 1) for line in open(f"/proc/{pid}/fdinfo/0"))
ino = os.stat(f"/proc/{pid}/fd/0").st_ino
args.append(f"--external=file[{int(info['mnt_id']):x}:{ino:x}]")
print(" ".join(args))
EOF
)
mkdir -p "$CK/raw"
# shellcheck disable=SC2086 # one argument per word
if fx_in n1 "$criu" dump -t "$web_pid" -D "$CK/raw" -o dump.log --leave-running --network-lock nftables --file-locks $ext; then
	t_fail "criu dumped a container whose cgroup namespace is rooted outside its cgroup"
fi
grep -q "invalid cgroup configuration, /../../nucleus-$web_id is not a suffix of /.*/nucleus-$web_id" "$CK/raw/dump.log" ||
	t_fail "CRIU failed otherwise: $(grep Error "$CK/raw/dump.log" | head -3)"
t_log "criu CLI: $(grep -o 'invalid cgroup configuration.*' "$CK/raw/dump.log")"
running_on web "$web_pid" "$web_id"

# ---- on the target ------------------------------------------------------------------
out=$(nm n1 checkpoint web -o "$CK/web" --file-locks --accept-landlock-loss --leave-stopped 2>&1) ||
	t_fail "checkpoint of web failed: $out"
addr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nm_native"]["net"]["address"])' "$CK/web/metadata.json")
veth=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nm_native"]["net"]["veth"])' "$CK/web/metadata.json")
n2state=$(fx_native_state n2)
mkdir -p "$n2state/ip-alloc" "$(fx_dir n2)/vol/web"
restore_n2() { nm n2 restore -i "$CK/web" --work-dir "$CK/web.rwork" --external-mount "/data:${vol:-$(fx_dir n2)/vol/web}" "$@" 2>&1; }
# target_refuses PATTERN [restore options]: exit 3, the reason, nothing kept.
target_refuses() {
	local pattern=$1 out rc=0
	shift
	out=$(restore_n2 "$@") || rc=$?
	t_assert_eq "$rc" 3 "exit status ($out)"
	grep -q -- "$pattern" <<<"$out" || t_fail "the refusal does not say why: $out"
	[ ! -e "$n2state/$web_id.json" ] || t_fail "a refused restore left a state file"
	[ ! -e "$n2state/ip-alloc/$web_id.ip" ] || t_fail "a refused restore kept the address"
	[ ! -e "$(fx_cgroup_root n2)/nucleus-$web_id" ] || [ "${keep_cgroup:-}" ] || t_fail "a refused restore made the cgroup"
	t_log "target refused: $(sed 's/.*cannot take container [0-9a-f]*: //' <<<"$out")"
}
ip -n "$(fx_ns n2)" link add "$veth" type veth peer name nmpeer0
target_refuses "interface $veth exists on this node already"
ip -n "$(fx_ns n2)" link del "$veth"

printf '%s' "$addr" >"$n2state/ip-alloc/0123456789abcdef0123456789abcdef.ip"
target_refuses "address $addr is reserved for container 0123456789abcdef0123456789abcdef"
rm "$n2state/ip-alloc/0123456789abcdef0123456789abcdef.ip"

ip -n "$(fx_ns n2)" link add nmother type veth peer name nmpeer1
ip -n "$(fx_ns n2)" addr add "$addr/32" dev nmother
target_refuses "address $addr is on nmother"
ip -n "$(fx_ns n2)" link del nmother

target_refuses "this node has no bridge nucleus9" --bridge nucleus9
ip -n "$(fx_ns n2)" addr flush dev nucleus0
ip -n "$(fx_ns n2)" addr add 10.0.43.1/24 dev nucleus0
target_refuses "bridge nucleus0 is 10.0.43.1/24 here, 10.0.42.1/24 on the source"
ip -n "$(fx_ns n2)" addr flush dev nucleus0
ip -n "$(fx_ns n2)" addr add 10.0.42.1/24 dev nucleus0

vol=$FX_ROOT/no-such-dir target_refuses "binds $FX_ROOT/no-such-dir at /data, which this node lacks"

mkdir "$(fx_cgroup_root n2)/nucleus-$web_id"
keep_cgroup=1 target_refuses "cgroup $(fx_cgroup_root n2)/nucleus-$web_id exists on this node already"
rmdir "$(fx_cgroup_root n2)/nucleus-$web_id"

# Nothing was touched: the source resumes in place.
nm n1 resume -i "$CK/web" >/dev/null || t_fail "rollback of web failed"
running_on web "$web_pid" "$web_id"
t_log "ok: every refusal said why and left both nodes as they were"
