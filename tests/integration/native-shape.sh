#!/usr/bin/env bash
# The test containers have the shape of nucleus's native runtime
# (tests/workloads/native-start.c): checked from outside, as CRIU will see
# them, on a fixture node: the process tree and namespaces, the mount table,
# security settings, rlimits, the veth pair and address reservation, NAT,
# the cgroup and its namespace, stdio (journal, pipe), the seccomp filter
# killing a forbidden call, Landlock, and the supervisor's cleanup when the
# container exits.
set -euo pipefail
. "$(dirname "$0")/../lib/native.sh"

fx_nodes_up
fx_native_node_up n1
d1=$(fx_dir n1)
state=$(fx_native_state n1)
cgroot=$(fx_cgroup_root n1)
in_ns() { fx_in n1 "$@"; }
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
ns_of() { stat -L -c %i "/proc/$1/ns/$2"; }
mnt_line() { awk -v t="$2" '$5 == t' "/proc/$1/mountinfo" | tail -1; }
mnt_opts() { mnt_line "$1" "$2" | awk '{ print $6 }'; }
mnt_fs() { mnt_line "$1" "$2" | awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1), $(i + 3); exit } }'; }
has_opt() { grep -qx -- "$2" <<<"${1//,/$'\n'}"; }

# A secret file on the host, bound into the container's /run/secrets.
echo "s3cret" >"$d1/token"
chmod 600 "$d1/token"
read -r id pid < <(fx_native_start n1 web --secret "$d1/token:token" --pids-max 256 -- \
	/context/nm-native-work --status /data --listen 7000)
t_log "container $id, PID 1 is host pid $pid"

# ---- process tree and namespaces -------------------------------------------
c1=$(ps -o ppid= -p "$pid" | tr -d ' ')
p0=$(ps -o ppid= -p "$c1" | tr -d ' ')
t_assert_eq "$(tr '\0' ' ' <"/proc/$p0/cmdline" | cut -d' ' -f1)" "$FX_NATIVE_START" "P0 is the supervisor"
t_assert_eq "$(ns_of "$c1" pid)" "$(ns_of $$ pid)" "C1 lives in the host pid namespace"
for ns in mnt net uts ipc cgroup; do
	t_assert_eq "$(ns_of "$c1" $ns)" "$(ns_of "$pid" $ns)" "C1 shares the container's $ns namespace"
done
for ns in pid mnt net uts ipc cgroup; do
	[ "$(ns_of "$pid" $ns)" != "$(ns_of $$ $ns)" ] || t_fail "PID 1 has no $ns namespace of its own"
done
for ns in user time; do
	t_assert_eq "$(ns_of "$pid" $ns)" "$(ns_of $$ $ns)" "no $ns namespace (nucleus's default)"
done
grep -q 'NSpid:.*[[:space:]]1$' "/proc/$pid/status" || t_fail "PID 1 is not pid 1 of its namespace"
t_assert_eq "$(ps -o sid= -p "$pid" | tr -d ' ')" "$pid" "PID 1 leads its session"
t_assert_eq "$(cat "/proc/$pid/root/etc/hostname")" web "hostname file"

# ---- mounts, as mountinfo shows them ---------------------------------------
root_fs=$(mnt_fs "$pid" /)
t_assert_eq "${root_fs%% *}" tmpfs "root file system type"
has_opt "${root_fs#* }" size=65536k || t_fail "root tmpfs size: ${root_fs#* }"
has_opt "$(mnt_opts "$pid" /)" nosuid && has_opt "$(mnt_opts "$pid" /)" nodev || t_fail "root is not nosuid,nodev"
for dev in null:1,3 zero:1,5 full:1,7 random:1,8 urandom:1,9; do
	t_assert_eq "$(stat -c '%F %t,%T' "/proc/$pid/root/dev/${dev%%:*}")" "character special file ${dev#*:}" "/dev/${dev%%:*}"
done
[ -z "$(awk '$5 == "/dev" || $5 == "/sys" || $5 == "/dev/pts"' "/proc/$pid/mountinfo")" ] ||
	t_fail "the container has /dev, /sys or devpts mounted"
for d in /bin /usr /lib /lib64 /nix; do
	[ -d "$d" ] || continue
	line=$(mnt_line "$pid" "$d")
	[ -n "$line" ] || t_fail "host $d is not bound into the container"
	has_opt "$(mnt_opts "$pid" "$d")" ro || t_fail "$d is not read-only: $line"
done
t_assert_eq "$(mnt_fs "$pid" /dev/shm | cut -d' ' -f1)" tmpfs "/dev/shm type"
has_opt "$(mnt_fs "$pid" /dev/shm | cut -d' ' -f2)" size=65536k || t_fail "/dev/shm size"
t_assert_eq "$(mnt_fs "$pid" /run/secrets | cut -d' ' -f1)" tmpfs "/run/secrets type"
has_opt "$(mnt_opts "$pid" /run/secrets/token)" ro || t_fail "the secret's bind is not read-only"
t_assert_eq "$(cat "/proc/$pid/root/run/secrets/token")" s3cret "secret content"
t_assert_eq "$(mnt_line "$pid" /data | awk '{ print $4 }')" "$d1/vol/web" "the volume bind's source"
has_opt "$(mnt_opts "$pid" /proc)" ro || t_fail "/proc is not read-only"
for p in sys irq bus fs; do
	[ -e "/proc/$pid/root/proc/$p" ] || continue
	has_opt "$(mnt_opts "$pid" "/proc/$p")" ro || t_fail "/proc/$p is not a read-only self-bind"
done
masked=0
for f in kcore keys timer_list sched_debug sysrq-trigger latency_stats kallsyms; do
	line=$(mnt_line "$pid" "/proc/$f")
	[ -n "$line" ] || continue
	[ "$(awk '{ print $4 }' <<<"$line")" = /null ] || t_fail "/proc/$f is not masked by /dev/null: $line"
	masked=$((masked + 1))
done
[ "$masked" -gt 0 ] || t_fail "no /proc file is masked by the host's /dev/null"
if [ -d /proc/acpi ]; then
	has_opt "$(mnt_fs "$pid" /proc/acpi | cut -d' ' -f2)" size=0k || t_fail "/proc/acpi is no size=0 tmpfs"
fi
t_assert_eq "$(cat "/proc/$pid/root/tmp/nm-data" | wc -c)" 262144 "state in /tmp on the root tmpfs"

# ---- security ------------------------------------------------------------------
st=/proc/$pid/status
t_assert_eq "$(awk '/^Seccomp:/ { print $2 }' "$st")" 2 "seccomp filter mode"
t_assert_eq "$(awk '/^NoNewPrivs:/ { print $2 }' "$st")" 1 "no_new_privs"
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
	t_assert_eq "$(awk -v c="$cap:" '$1 == c { print $2 }' "$st")" 0000000000000000 "$cap"
done
t_assert_eq "$(awk '/^Max processes/ { print $3 }' "/proc/$pid/limits")" 256 "RLIMIT_NPROC = pids max"
t_assert_eq "$(awk '/^Max open files/ { print $4 }' "/proc/$pid/limits")" 1024 "RLIMIT_NOFILE"
t_assert_eq "$(awk '/^Max locked memory/ { print $4 }' "/proc/$pid/limits")" 65536 "RLIMIT_MEMLOCK"
t_assert_eq "$(fx_native_field n1 web landlock)" allowed "no Landlock unless asked"

# ---- network: veth pair named after PID 1's host pid, reserved address, NAT ----
hex=$(printf %x "$pid")
addr=$(cat "$state/ip-alloc/$id.ip")
[[ $addr =~ ^10\.0\.42\.([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 2 ] && [ "${BASH_REMATCH[1]}" -le 254 ] ||
	t_fail "reserved address '$addr' is not in 10.0.42.2-254"
grep -q "master nucleus0" <<<"$(in_ns ip -o link show "veth-$hex")" || t_fail "veth-$hex is not on nucleus0"
grep -q "inet $addr/24" <<<"$(nsenter -t "$pid" -n ip -o -4 addr show "vethc-$hex")" || t_fail "vethc-$hex has not $addr/24"
grep -q "default via 10.0.42.1" <<<"$(nsenter -t "$pid" -n ip route)" || t_fail "no default route via the bridge"
t_assert_eq "$(in_ns cat /proc/sys/net/ipv4/ip_forward)" 1 "ip_forward"
grep -q -- "-s 10.0.42.0/24 ! -o nucleus0 -j MASQUERADE" <<<"$(in_ns iptables -t nat -S POSTROUTING)" || t_fail "no MASQUERADE rule"
in_ns bash -c "exec 3<>/dev/tcp/$addr/7000" || t_fail "the container's port does not answer on the bridge"

# ---- cgroup and its namespace ---------------------------------------------------
cg=$cgroot/nucleus-$id
t_assert_eq "$(json "$state/$id.json" 'd["cgroup_path"]')" "$cg" "cgroup_path in the state file"
grep -qx "$pid" "$cg/cgroup.procs" || t_fail "PID 1 is not in $cg"
for p in $(fx_tree "$pid"); do grep -qx "$p" "$cg/cgroup.procs" || t_fail "task $p is not in $cg"; done
t_assert_eq "$(nsenter -t "$pid" -C cat "/proc/$pid/cgroup" | sed -n 's/^0:://p')" "/../../nucleus-$id" \
	"the container sees its cgroup from a namespace rooted at its supervisor's"
grep -qx "$p0" "$cgroot/system.slice/nucleus-web.service/cgroup.procs" || t_fail "the supervisor is not in its unit cgroup"
if [ -e "$cg/pids.max" ]; then
	t_assert_eq "$(cat "$cg/pids.max")" 256 "pids.max"
else
	t_log "this host's unified hierarchy has no pids controller: limits not written (membership checked)"
	t_assert_eq "$(cat "$cg/cgroup.max.descendants")" 16 "what the bare hierarchy offers is written"
fi

# ---- state file: nucleus's fields, in nucleus's order -------------------------
keys=$(json "$state/$id.json" '" ".join(d.keys())')
t_assert_eq "$keys" "id name pid command started_at memory_limit cpu_limit using_gvisor rootless cgroup_path config_hash creator_uid process_uid process_gid additional_gids start_ticks status bundle_path annotations" "state file fields"
t_assert_eq "$(json "$state/$id.json" 'd["pid"]')" "$pid" "state pid is PID 1's host pid"
t_assert_eq "$(json "$state/$id.json" 'd["start_ticks"]')" "$(fx_start_ticks "$pid")" "state start_ticks"
t_assert_eq "$(stat -c %a "$state/$id.json")" 600 "state file mode"

# ---- stdio (detached: host /dev/null, a journal stream) ----------------------
t_assert_eq "$(readlink "/proc/$pid/fd/0")" /dev/null "stdin"
mnt0=$(awk '/^mnt_id:/ { print $2 }' "/proc/$pid/fdinfo/0")
! grep -qx "$mnt0" <<<"$(awk '{ print $1 }' "/proc/$pid/mountinfo")" || t_fail "stdin's /dev/null is on a mount the container sees"
[[ $(readlink "/proc/$pid/fd/1") == socket:* ]] || t_fail "stdout is not the journal stream"
t_wait_until 5 "the journal has the workload's line" grep -q "nucleus-${id:0:12}: nm-native-work: started" "$(fx_journal_log n1)" ||
	t_fail "the workload's output did not reach the journal"

# ---- the workload's own checks and the seccomp filter -------------------------
t_wait_until 5 "status ok" bash -c "grep -q 'tmp=ok shm=ok lock=ok stopped=T probe=waiting' $d1/vol/web/status" ||
	t_fail "workload status: $(cat "$d1/vol/web/status")"
probe=$(fx_native_child "$pid" nm-probe)
kill -USR2 "$probe"
t_wait_until 5 "the forbidden call kills the probe" bash -c "grep -q 'probe=killed-31' $d1/vol/web/status" ||
	t_fail "the probe was not killed by SIGSYS: $(cat "$d1/vol/web/status")"

# ---- the alternatives: pipes, Landlock, a production-mode init -----------------
read -r id2 pid2 < <(fx_native_start n1 piped --stdio "pipe:$d1/piped.out" --landlock -- \
	/context/nm-native-work --status /data)
[[ $(readlink "/proc/$pid2/fd/1") == pipe:* ]] || t_fail "stdout of the piped container is not a pipe"
t_wait_until 5 "the supervisor drains the pipe" grep -q "nm-native-work: started" "$d1/piped.out" ||
	t_fail "the pipe's output did not reach $d1/piped.out"
t_wait_until 5 "Landlock status" bash -c "grep -q landlock=denied $d1/vol/piped/status" ||
	t_fail "Landlock does not confine the container: $(cat "$d1/vol/piped/status")"
read -r _ pid3 < <(fx_native_start n1 prod --init "$FX_NATIVE_INIT" -- /context/nm-native-work --status /data)
t_assert_eq "$(readlink "/proc/$pid3/exe")" "$FX_NATIVE_INIT" "production-mode init runs from the host path"
t_assert_eq "$(fx_native_field n1 prod pid)" 3 "the workload is the init's child"

# nucleus binds a memfd over resolv.conf with --rootfs and bridge networking:
# this kernel refuses any bind of a memfd.
out=$(fx_native_start n1 memfd --memfd-resolv -- /context/nm-native-work --status /data 2>&1) &&
	t_fail "a memfd could be bound: $out"
grep -q "memfd over /etc/resolv.conf: Invalid argument" <<<"$out" || t_fail "unexpected failure: $out"

# ---- the supervisor cleans up when the container exits ------------------------
kill -KILL "$pid"
t_wait_until 10 "the supervisor cleaned up" bash -c "! kill -0 $p0 2>/dev/null" ||
	t_fail "the supervisor did not finish (log: $d1/supervisor-web.log)"
[ ! -e "$state/$id.json" ] || t_fail "state file left"
[ ! -e "$state/ip-alloc/$id.ip" ] || t_fail "address reservation left"
[ ! -e "$cg" ] || t_fail "cgroup $cg left"
! in_ns ip link show "veth-$hex" >/dev/null 2>&1 || t_fail "veth-$hex left"
t_assert_eq "$(grep -c MASQUERADE <<<"$(in_ns iptables -t nat -S POSTROUTING)")" 2 "one MASQUERADE rule per running bridged container"
t_log "ok: native shape of $id, supervisor cleanup"
