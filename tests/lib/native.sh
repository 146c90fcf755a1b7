# shellcheck shell=bash
# Native-shaped nucleus containers on the fixture's nodes (on top of
# fixture.sh): what a node of the native runtime has, and starting
# containers the way nucleus does (tests/workloads/native-start.c).
#
# Per node, fx_native_node_up NODE makes:
#   - the bridge nucleus0 (10.0.42.1/24) in the node's network namespace,
#     ip_forward on (nm-native-start also makes the bridge when missing, as
#     nucleus does; the fixture makes it so that a target node has one);
#   - a cgroup root in the unified hierarchy, <v2>/nmfx-<tag>/<node>
#     (NUCLEUS_CGROUP_ROOT for that node), and <root>/system.slice where the
#     supervisors live, as a systemd unit would: the containers' cgroup
#     namespaces are rooted there and see themselves as /../../nucleus-<id>;
#   - a journald stand-in, $FX_ROOT/<node>/journal.sock, logging to
#     $FX_ROOT/<node>/journal.log.
# On a hybrid host (v1 controllers, an empty unified hierarchy) the limits
# cannot be written; membership still works.

# shellcheck source=tests/lib/fixture.sh
. "$(dirname "${BASH_SOURCE[0]}")/fixture.sh"

FX_NATIVE_START=$FX_BUILD/tests/workloads/nm-native-start
FX_NATIVE_WORK=$FX_BUILD/tests/workloads/nm-native-work
FX_NATIVE_INIT=$FX_BUILD/tests/workloads/nm-native-init
FX_JOURNALD=$FX_BUILD/tests/tools/nm-journald

# The unified (v2) hierarchy's mount point.
fx_cgroup2() { awk '$9 == "cgroup2" && $4 == "/" { print $5; exit }' /proc/self/mountinfo; }
fx_cgroup_base() { echo "$(fx_cgroup2)/nmfx-$FX_TAG"; }
fx_cgroup_root() { echo "$(fx_cgroup_base)/$1"; }
fx_journal_sock() { echo "$(fx_dir "$1")/journal.sock"; }
fx_journal_log() { echo "$(fx_dir "$1")/journal.log"; }
fx_native_state() { echo "$(fx_dir "$1")/nucleus"; }

fx_native_teardown() {
	local base
	base=$(fx_cgroup_base 2>/dev/null) || return 0
	[ -d "$base" ] || return 0
	# Deepest first; a cgroup empties a moment after its last task died.
	t_wait_until 5 "cgroups under $base removed" \
		bash -c "find '$base' -depth -type d -exec rmdir {} + 2>/dev/null; [ ! -d '$base' ]" ||
		t_log "left behind: $(find "$base" -type d | tr '\n' ' ')"
}

fx_native_node_up() {
	local n=$1 ns pid
	ns=$(fx_ns "$n")
	[ -n "$(fx_cgroup2)" ] || t_fail "no unified cgroup hierarchy mounted"
	ip -n "$ns" link add nucleus0 type bridge
	ip -n "$ns" addr add 10.0.42.1/24 dev nucleus0
	ip -n "$ns" link set nucleus0 up
	fx_in "$n" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
	mkdir -p "$(fx_cgroup_root "$n")/system.slice"
	[ "${#FX_TEARDOWN_HOOKS[@]}" -gt 0 ] || FX_TEARDOWN_HOOKS+=(fx_native_teardown)
	fx_in "$n" "$FX_JOURNALD" "$(fx_journal_sock "$n")" "$(fx_journal_log "$n")" >"$(fx_dir "$n")/journald.out" 2>&1 &
	pid=$!
	fx_track_pid "$pid"
	t_wait_until 5 "journald on $n" grep -q ready "$(fx_dir "$n")/journald.out" || t_fail "journald on $n did not start"
}

# fx_native_agents_up: the fixture's nodes, each with a bridge and an
# agent (tests/lib/agents.sh) that makes the cgroups of the containers it
# restores below its node's cgroup root, as NUCLEUS_CGROUP_ROOT tells
# nucleus there.
fx_native_agents_up() {
	local n
	fx_nodes_up
	for n in $FX_NODES; do fx_native_node_up "$n"; done
	for n in $FX_NODES; do
		FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root "$n")" fx_agent_start "$n"
	done
}

# fx_native_start NODE NAME [nm-native-start OPTIONS] -- WORKLOAD ARGS: a
# native container on NODE named NAME, its workload nm-native-work (copied
# into /context) with its status in the volume $FX_ROOT/NODE/vol/NAME
# mounted at /data. Prints "<id> <pid>". Default stdio: the node's journal.
fx_native_start() {
	local n=$1 name=$2 d ctx out
	shift 2
	d=$(fx_dir "$n")
	ctx=$d/ctx
	# Not $d/run: the agent's control socket lives there (0750 root:nucleus),
	# and nucleus makes its runtime directory 0700.
	mkdir -p "$ctx" "$d/vol/$name" "$d/native-run"
	install -m 0755 "$FX_NATIVE_WORK" "$ctx/nm-native-work"
	out=$(fx_in "$n" "$FX_NATIVE_START" --state-dir "$(fx_native_state "$n")" --name "$name" \
		--runtime-dir "$d/native-run" --context "$ctx" --cgroup-root "$(fx_cgroup_root "$n")" \
		--supervisor-cgroup "$(fx_cgroup_root "$n")/system.slice/nucleus-$name.service" \
		--network bridge --rootfs-size 64m --volume "$d/vol/$name:/data" \
		--stdio "journal:$(fx_journal_sock "$n")" --supervisor-log "$d/supervisor-$name.log" "$@") ||
		t_fail "could not start native container $name on $n"
	t_wait_until 10 "$name writes its status" test -s "$d/vol/$name/status" ||
		t_fail "native container $name on $n does not run (log: $d/supervisor-$name.log)"
	echo "$out"
}

# fx_native_field NODE NAME KEY [FILE]: a field of the workload's status
# (or tcp) record in NODE's volume.
fx_native_field() {
	local f
	f=$(fx_dir "$1")/vol/$2/${4:-status}
	sed -n "s/.*\b$3=\([^ ]*\).*/\1/p" "$f" 2>/dev/null
}

# fx_native_child ROOTPID COMM: the pid of the child of ROOTPID named COMM.
fx_native_child() { ps -o pid=,comm= --ppid "$1" | awk -v c="$2" '$2 == c { print $1; exit }'; }

# The pids of a tree (root first).
fx_tree() {
	local p
	echo "$1"
	for p in $(ps -o pid= --ppid "$1"); do fx_tree "$p"; done
}
