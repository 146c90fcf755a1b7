#!/usr/bin/env bash
# A native-shaped nucleus container moves n1 -> n2 -> n1 through the agents
# (`nucleus-migrate CONTAINER TARGET --accept-landlock-loss`), with real
# CRIU and sshd.
#
# Before any move: what cannot move is refused before anything is frozen,
# exit 3 with the reason, the container untouched (same pid and start
# ticks, never stopped, no CRIU dump started): Landlock without the option,
# and a target whose address for it is taken, where its veth name is taken,
# whose bridge has another subnet, that lacks its volume, or says it lacks
# the memory for its root tmpfs. Each move's result and the source's
# journal record the accepted loss of Landlock. Then a move whose restore
# fails on the target rolls back: the source's tasks, held stopped since
# the dump, resume in place (same pid), back in their cgroup, and the
# target released the address it had reserved. So does a source agent
# killed right after the dump, once it is restarted.
#
# Checked after each move: the counter continues, /tmp and /dev/shm content
# and the held lock are intact, the address answers from the target node,
# the target's cgroup (recorded in the state file) holds every task, the
# seccomp filter still kills a forbidden call, capabilities are still
# dropped, no_new_privs is set, the subnet is masqueraded on the target;
# the result records the Landlock loss; and
# the source has no task, veth, cgroup, address reservation or state file
# left. Copies restored by an agent have no supervisor: after the move back
# the agent on n2 cleaned up behind the copy that left.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"
. "$(dirname "$0")/../lib/native.sh"

fx_native_agents_up

json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
field() { fx_native_field n1 web "$1" "${2:-}"; } # the volume is shared storage
state_of() { echo "$(fx_native_state "$1")/$id.json"; }
pid_of() { json "$(state_of "$1")" 'd["pid"]'; }
gt() { [ "$(field "$1" "${3:-}")" -gt "$2" ] 2>/dev/null; }
stopped() { grep -q '^State:.*T' "/proc/$1/status"; }
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status"; }
node_name() { echo "node${1#n}"; }

read -r id pid < <(fx_native_start n1 web --landlock --stdio null -- \
	/context/nm-native-work --status /data --listen 7000)
addr=$(cat "$(fx_native_state n1)/ip-alloc/$id.ip")
veth=$(grep -o 'vethc-[0-9a-f]*' <<<"$(nsenter -t "$pid" -n ip -o link)" | sed -n '1s/vethc-/veth-/p')
ticks=$(fx_start_ticks "$pid")
t_wait_until 5 "Landlock confines web" bash -c "grep -q landlock=denied $(fx_dir n1)/vol/web/status" ||
	t_fail "web is not under Landlock"

# untouched NODE PID: the container runs where it ran, as it was.
untouched() {
	local n=$1 p=$2 count
	t_assert_eq "$(pid_of "$n")" "$p" "web's pid on $n"
	t_assert_eq "$(fx_start_ticks "$p")" "$ticks" "web's start ticks"
	! stopped "$p" || t_fail "web is stopped on $n"
	count=$(field count)
	t_wait_until 10 "web counts on $n" gt count "$((count + 2))" || t_fail "web does not count on $n"
}

# ---- refused before the freeze ---------------------------------------------------
dumps=$(fx_criu_dumps n1)
t_log "Landlock without --accept-landlock-loss is refused"
t_expect_exit 3 "a move that would drop Landlock" fx_nm n1 migrate "$id" node2
t_says "a move that would drop Landlock" Landlock --accept-landlock-loss
untouched n1 "$pid"

t_log "a target where the address is taken refuses before the dump"
install -d -m 0700 "$(fx_native_state n2)/ip-alloc"
echo "$addr" >"$(fx_native_state n2)/ip-alloc/squatter.ip"
t_expect_exit 3 "a target whose address is taken" fx_nm n1 migrate "$id" node2 --accept-landlock-loss
t_says "a target whose address is taken" "$addr"
rm -f "$(fx_native_state n2)/ip-alloc/squatter.ip"
untouched n1 "$pid"

t_log "a target where web's veth name is taken refuses before the dump"
vethc=$(nsenter -t "$pid" -n ip -o link show | grep -o 'vethc-[^@:]*' | head -n1)
[ -n "$vethc" ] || t_fail "web has no vethc- link"
veth=veth-${vethc#vethc-}
ip -n "$(fx_ns n2)" link add "$veth" type veth peer name nmpeer0
t_expect_exit 3 "a target whose veth name is taken" fx_nm n1 migrate "$id" node2 --accept-landlock-loss
t_says "a target whose veth name is taken" "interface $veth exists on this node already"
ip -n "$(fx_ns n2)" link del "$veth"
untouched n1 "$pid"

t_log "a target whose bridge has another subnet refuses before the dump"
ip -n "$(fx_ns n2)" addr flush dev nucleus0
ip -n "$(fx_ns n2)" addr add 10.0.43.1/24 dev nucleus0
t_expect_exit 3 "a target with another subnet" fx_nm n1 migrate "$id" node2 --accept-landlock-loss
t_says "a target with another subnet" "bridge nucleus0 is 10.0.43.1/24 here, 10.0.42.1/24 on the source"
ip -n "$(fx_ns n2)" addr flush dev nucleus0
ip -n "$(fx_ns n2)" addr add 10.0.42.1/24 dev nucleus0
untouched n1 "$pid"

t_log "a target that lacks web's volume (a bind source) refuses before the dump"
# The nodes share one file system: n2's agent gets a mount namespace of its
# own where the directory of n1's volumes is an empty tmpfs.
cat >"$FX_ROOT/hide-dir" <<'EOS'
#!/bin/sh
dir=$1
shift
mount -t tmpfs -o size=1m nm-hidden "$dir" && exec "$@"
EOS
chmod 0755 "$FX_ROOT/hide-dir"
fx_agent_stop n2
FX_AGENT_WRAP="unshare -m --propagation private $FX_ROOT/hide-dir $(fx_dir n1)/vol" \
	FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n2)" fx_agent_start n2
t_expect_exit 3 "a target without web's volume" fx_nm n1 migrate "$id" node2 --accept-landlock-loss
t_says "a target without web's volume" "binds $(fx_dir n1)/vol/web at /data, which this node lacks"
fx_agent_stop n2

t_log "a target without the memory for web's root tmpfs refuses before the dump"
# The node's available memory is what /proc/meminfo says: n2's agent reads,
# in a mount namespace of its own, one that says 1 MiB (the machine has far
# more than any root tmpfs of a test).
printf 'MemTotal: 1024 kB\nMemFree: 1024 kB\nMemAvailable: 1024 kB\n' >"$FX_ROOT/meminfo"
cat >"$FX_ROOT/low-mem" <<'EOS'
#!/bin/sh
f=$1
shift
mount --bind "$f" /proc/meminfo && exec "$@"
EOS
chmod 0755 "$FX_ROOT/low-mem"
FX_AGENT_WRAP="unshare -m --propagation private $FX_ROOT/low-mem $FX_ROOT/meminfo" \
	FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n2)" fx_agent_start n2
t_expect_exit 3 "a target without the memory" fx_nm n1 migrate "$id" node2 --accept-landlock-loss
t_says "a target without the memory" "MiB; this node has 1 MiB available"
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n2)" fx_agent_start n2
untouched n1 "$pid"
t_assert_eq "$(fx_criu_dumps n1)" "$dumps" "CRIU dumps started although every move was refused"
[ ! -e "$(fx_native_state n2)/ip-alloc/$id.ip" ] || t_fail "n2 kept a reservation for a refused move"

# ---- a restore that fails on the target: resumed in place ----------------------------
t_log "a failed restore on n2 rolls back: the held tasks resume in place"
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n2)" fx_agent_start n2 NM_FAULT=fail=dest-restore
t_expect_exit 4 "a move whose restore fails" fx_nm n1 migrate "$id" node2 --accept-landlock-loss
untouched n1 "$pid"
grep -qx "$pid" "$(fx_cgroup_root n1)/nucleus-$id/cgroup.procs" || t_fail "web is not back in its cgroup"
[ ! -e "$(fx_native_state n2)/ip-alloc/$id.ip" ] || t_fail "n2 did not release the address after the rollback"
[ ! -e "$(fx_cgroup_root n2)/nucleus-$id" ] || t_fail "n2 kept a cgroup after the rollback"
grep -q "runs on in place as pid $pid" "$(fx_agent_log n1)" || t_fail "the rollback did not resume in place"
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n2)" fx_agent_start n2

# ---- the source's agent dies with the tasks held stopped: its restart resumes them ---
t_log "n1's agent killed right after it journals 'dumped': the restart resumes web in place"
no_active() { ! fx_nm n1 status --json | grep -q '"active":true' && ! fx_nm n2 status --json | grep -q '"active":true'; }
fx_agent_stop n1
FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n1)" fx_agent_start n1 NM_FAULT=crash-after=dumped
t_expect_exit 5 "a move whose source agent dies after the dump" fx_nm n1 migrate "$id" node2 --accept-landlock-loss
t_wait_until 30 "n1's agent is dead" bash -c "! kill -0 $(fx_agent_pid n1) 2>/dev/null" || t_fail "the fault did not kill n1's agent"
wait "$(fx_agent_pid n1)" 2>/dev/null || true
for p in $(fx_tree "$pid"); do stopped "$p" || t_fail "task $p of web is not held stopped after the dump"; done
FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n1)" fx_agent_start n1
t_wait_until 60 "both agents settle" no_active || t_fail "migrations still active after n1's agent came back"
untouched n1 "$pid"
grep -qx "$pid" "$(fx_cgroup_root n1)/nucleus-$id/cgroup.procs" || t_fail "web is not back in its cgroup after the restart"
grep -q "resume" <<<"$(grep "recovering source migration" "$(fx_agent_log n1)" | tail -n1)" ||
	t_fail "n1's agent did not recover by resuming the held tasks"
t_wait_until 10 "n2 released web's address" test ! -e "$(fx_native_state n2)/ip-alloc/$id.ip" ||
	t_fail "n2 did not release the address when the source went away"

# move FROM TO: through the agents; checked on TO, and nothing left on FROM.
move() {
	local from=$1 to=$2 oldpid newpid count probes cg p out
	oldpid=$(pid_of "$from")
	count=$(field count)
	out=$(fx_nm "$from" migrate "$id" "$(node_name "$to")" --accept-landlock-loss --json 2>&1) ||
		t_fail "moving web $from -> $to failed: $out"
	t_assert_eq "$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["result"].get("landlock"))' <<<"$out")" \
		accepted-loss "the result records the accepted loss of Landlock"
	mig=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["result"]["mig"])' <<<"$out")
	t_wait_until 10 "$from's journal archives $mig" test -f "$(fx_dir "$from")/migrate/journal/done/$mig.json" ||
		t_fail "no finished record of $mig on $from"
	grep -q '"landlock": *"accepted-loss"' "$(fx_dir "$from")/migrate/journal/done/$mig.json" ||
		t_fail "$from's journal does not record the accepted loss of Landlock"
	t_assert_eq "$(fx_ctr_where "$id")" "$to" "where web runs after the move"
	newpid=$(pid_of "$to")
	fx_track_pid "$newpid"

	# ---- on the target ---------------------------------------------------------
	t_wait_until 10 "web counts on $to" gt count "$((count + 3))" ||
		t_fail "web's counter does not continue on $to: $(cat "$(fx_dir n1)/vol/web/status" 2>&1)"
	grep -q "tmp=ok shm=ok lock=ok" "$(fx_dir n1)/vol/web/status" ||
		t_fail "web's state on $to: $(cat "$(fx_dir n1)/vol/web/status")"
	cg=$(fx_cgroup_root "$to")/nucleus-$id
	t_assert_eq "$(json "$(state_of "$to")" 'd["cgroup_path"]')" "$cg" "web's cgroup_path on $to"
	for p in $(fx_tree "$newpid"); do
		grep -qx "$p" "$cg/cgroup.procs" || t_fail "task $p of web is not in $cg"
		t_assert_eq "$(awk '/^CapEff:/ { print $2 }' "/proc/$p/status")" 0000000000000000 "CapEff of $p on $to"
		t_assert_eq "$(awk '/^Seccomp:/ { print $2 }' "/proc/$p/status")" 2 "seccomp of $p on $to"
		t_assert_eq "$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$p/status")" 1 "no_new_privs of $p on $to"
	done
	[ -e "$(fx_native_state "$to")/ip-alloc/$id.ip" ] || t_fail "web's address is not reserved on $to"
	grep -q "master nucleus0" <<<"$(ip -n "$(fx_ns "$to")" -o link show "$veth")" ||
		t_fail "$veth is not on $to's nucleus0"
	# The fixture's nodes have no MASQUERADE of their own: the agent that
	# restored web made the rule nucleus would have.
	t_wait_until 5 "MASQUERADE on $to" bash -c \
		"ip netns exec $(fx_ns "$to") iptables -w -t nat -S POSTROUTING | grep -q -- '-s 10.0.42.0/24 ! -o nucleus0 -j MASQUERADE'" ||
		t_fail "no MASQUERADE for web's subnet on $to"
	# web echoes what its one client sends: ask it from the target node.
	t_assert_eq "$(fx_in "$to" timeout "$(t_secs 5)" bash -c "exec 3<>/dev/tcp/$addr/7000 && printf nm-probe >&3 && head -c 8 <&3")" \
		nm-probe "web's answer at $addr:7000 from $to"
	probes=$(field probes_killed)
	kill -USR2 "$(fx_native_child "$newpid" nm-probe)"
	t_wait_until 5 "the filter kills on $to" gt probes_killed "$probes" ||
		t_fail "the forbidden call was not killed on $to: $(cat "$(fx_dir n1)/vol/web/status")"
	t_assert_eq "$(field landlock)" allowed "Landlock after the move (CRIU does not carry it)"

	# ---- nothing left on the source -----------------------------------------------
	t_wait_until 5 "web's old tasks gone" gone "$oldpid" || t_fail "web still has task $oldpid on $from"
	t_wait_until 10 "$from cleaned up after web" test ! -e "$(state_of "$from")" ||
		t_fail "web's state file is left on $from"
	t_wait_until 10 "$from released web's address" test ! -e "$(fx_native_state "$from")/ip-alloc/$id.ip" ||
		t_fail "web's address is still reserved on $from"
	t_wait_until 10 "web's cgroup removed on $from" test ! -e "$(fx_cgroup_root "$from")/nucleus-$id" ||
		t_fail "web's cgroup is left on $from"
	! ip -n "$(fx_ns "$from")" link show "$veth" >/dev/null 2>&1 || t_fail "$veth is left on $from"
	t_log "ok: web moved $from -> $to through the agents (counter $count -> $(field count))"
}

move n1 n2
grep -q "keeping container $id" "$(fx_agent_log n2)" || t_fail "n2's agent does not keep the copy it restored"
move n2 n1
grep -q "container $id (pid [0-9]*) exited: its address, cgroup and state file are gone" "$(fx_agent_log n2)" ||
	t_fail "n2's agent did not clean up after the copy that left"
t_log "ok"
