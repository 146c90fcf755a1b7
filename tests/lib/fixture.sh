# shellcheck shell=bash
# The two-node fixture every integration test stands on (more nodes on request).
#
# Two nodes on one machine: each a network namespace of its own, joined by a
# veth pair (198.18.0.1 and 198.18.0.2, from the benchmarking range, which
# exists only inside these namespaces). Each node runs its own OpenSSH sshd
# (own config, host key, authorized_keys, pid) and has its own directories:
#
#   $FX_ROOT/nN/ssh/       the node's sshd: host key, sshd_config (+ sshd_config.d/
#                          with provisioning's drop-in), log, authorized_keys.%u
#                          (root: the other node's test key; nucleus: the pinned
#                          agent keys); the fixture's own root access: a test
#                          client key (id_ed25519) and known_hosts
#   $FX_ROOT/nN/etc/       agent.conf (fx_conf), agent.provision, ssh/ (the
#                          agent's key pair, fx_agent_key, and known_hosts)
#   $FX_ROOT/nN/run/       the agent's control socket directory (0750 root:nucleus)
#   $FX_ROOT/nN/migrate/   the agent's work directory
#   $FX_ROOT/nN/lib/       the cluster HMAC key (identical on both nodes)
#   $FX_ROOT/nN/nucleus/   the nucleus runtime's state directory (NUCLEUS_STATE_DIR)
#   $FX_ROOT/nN/ctrs/      workload files
#
# Nodes are provisioned with deploy/nucleus-provision, as a real cluster is:
# init on each node, export/import of the bundles, one HMAC key generated on
# n1 and installed on n2. With FX_PROVISION_MODE=cluster the same happens in
# one `nucleus-provision cluster` run over the fixture's root SSH access.
# The nodes are named node1 and node2 (fx_node_name); the migration user is
# the system user "nucleus" (created once, kept).
#
# Processes enter a node with nsenter --net only: `ip netns exec` would also
# give each process a mount namespace of its own, and CRIU would then find
# the agent and its containers in different mount namespaces.
#
# Teardown always runs (trap on EXIT, INT, TERM): it kills, by pid, only what
# the fixture started (sshd, agents, containers registered in the nodes'
# state directories, anything left in the nodes' network namespaces) and
# deletes the namespaces and $FX_ROOT.

# shellcheck source=tests/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

FX_SRC=${NM_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
FX_BUILD=${NM_BUILD_DIR:-$FX_SRC/build}
FX_BASE=${NM_FX_BASE:-/var/lib/nucleus-fx}
FX_NET=198.18.0
FX_PROVISION=${NM_PROVISION:-$FX_SRC/deploy/nucleus-provision}
FX_PROVISION_MODE=${FX_PROVISION_MODE:-steps}
FX_USER=nucleus
# The nodes; a test may ask for more before fx_nodes_up (FX_NODES="n1 n2 n3").
# Two nodes share a veth pair; more are joined through a bridge that lives in
# a namespace of its own.
FX_NODES=${FX_NODES:-n1 n2}
FX_TAG=""
FX_ROOT=""
FX_TEARDOWN_HOOKS=()

fx_ns() { echo "nmfx-$FX_TAG-$1"; }
fx_addr() { echo "$FX_NET.${1#n}"; }
fx_dir() { echo "$FX_ROOT/$1"; }
# fx_use_node NODE: this shell's nucleus state directory and HMAC key are
# NODE's, as the CLI run on NODE by hand would have them.
fx_use_node() {
	export NUCLEUS_STATE_DIR=$FX_ROOT/$1/nucleus
	export NUCLEUS_CHECKPOINT_HMAC_KEY_FILE=$FX_ROOT/$1/keys/checkpoint-hmac.key
}
fx_other() { [ "$1" = n1 ] && echo n2 || echo n1; }
fx_node_name() { echo "node${1#n}"; }
fx_conf() { echo "$FX_ROOT/$1/etc/agent.conf"; }
fx_agent_key() { echo "$FX_ROOT/$1/etc/ssh/id_ed25519"; }
fx_agent_known_hosts() { echo "$FX_ROOT/$1/etc/ssh/known_hosts"; }
fx_socket() { echo "$FX_ROOT/$1/run/agent.sock"; }
fx_hmac_key() { echo "$FX_ROOT/$1/lib/checkpoint-hmac.key"; }
# The nucleus-agent that peers' pinned command runs, as the migration user:
# the build's when any user can reach it, else (a checkout in a private home
# directory) a copy under $FX_ROOT made by fx_nodes_up.
fx_agent_bin() {
	if setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$FX_BUILD/agent"; then
		echo "$FX_BUILD/agent/nucleus-agent"
	else
		echo "$FX_ROOT/bin/nucleus-agent"
	fi
}
fx_copy_agent_bin() {
	[ "$(fx_agent_bin)" = "$FX_ROOT/bin/nucleus-agent" ] && [ -x "$FX_BUILD/agent/nucleus-agent" ] || return 0
	install -D -m 0755 "$FX_BUILD/agent/nucleus-agent" "$FX_ROOT/bin/nucleus-agent"
}

# fx_in NODE CMD...: runs CMD inside NODE's network namespace.
fx_in() {
	local node=$1
	shift
	nsenter --net="/run/netns/$(fx_ns "$node")" -- "$@"
}

# Start time (field 22 of /proc/PID/stat) of a live process, to tell it from a
# later process that reuses its pid.
fx_start_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# fx_track_pid PID...: teardown kills these, if they are still the same
# processes. Kept in a file so that subshells can add to it.
fx_track_pid() {
	local pid
	for pid in "$@"; do
		echo "$pid $(fx_start_ticks "$pid")" >>"$FX_ROOT/tracked-pids"
	done
}

fx_tracked_pids() {
	local pid ticks
	[ -f "$FX_ROOT/tracked-pids" ] || return 0
	while read -r pid ticks; do
		[ -n "$ticks" ] && [ "$(fx_start_ticks "$pid")" = "$ticks" ] && echo "$pid"
	done <"$FX_ROOT/tracked-pids"
	return 0
}

fx_init() {
	t_require_root
	[ -z "$FX_ROOT" ] || return 0
	# The base is root-owned and 0755 so that sshd's StrictModes accepts the
	# paths of authorized_keys (/tmp is world-writable and would not pass).
	mkdir -p "$FX_BASE"
	chmod 0755 "$FX_BASE"
	FX_ROOT=$(mktemp -d "$FX_BASE/fx.XXXXXX")
	chmod 0755 "$FX_ROOT"
	FX_TAG=$(basename "$FX_ROOT" | cut -c4-)
	trap 'fx_teardown' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

fx_nodes() { echo "$FX_NODES"; }
fx_peers() { local n; for n in $FX_NODES; do [ "$n" = "$1" ] || echo "$n"; done; }

fx_make_namespaces() {
	local n sw
	for n in $FX_NODES; do
		ip netns add "$(fx_ns $n)"
		ip -n "$(fx_ns $n)" link set lo up
	done
	if [ "$FX_NODES" = "n1 n2" ]; then
		ip link add name eth0 netns "$(fx_ns n1)" type veth peer name eth0 netns "$(fx_ns n2)"
	else
		sw=$(fx_ns sw)
		ip netns add "$sw"
		ip -n "$sw" link add br0 type bridge
		ip -n "$sw" link set br0 up
		for n in $FX_NODES; do
			ip link add name eth0 netns "$(fx_ns $n)" type veth peer name "p$n" netns "$sw"
			ip -n "$sw" link set "p$n" master br0
			ip -n "$sw" link set "p$n" up
		done
	fi
	for n in $FX_NODES; do
		ip -n "$(fx_ns $n)" addr add "$(fx_addr $n)/24" dev eth0
		ip -n "$(fx_ns $n)" link set eth0 up
	done
}

fx_make_node_dirs() {
	local n=$1 d
	d=$(fx_dir "$n")
	mkdir -p "$d/ssh/sshd_config.d" "$d/ctrs"
	install -d -m 0700 "$d/nucleus"
	chmod 0755 "$d" "$d/ssh" "$d/ssh/sshd_config.d"
	ssh-keygen -q -t ed25519 -N '' -C "nucleus-fx host $n" -f "$d/ssh/ssh_host_ed25519_key"
	ssh-keygen -q -t ed25519 -N '' -C "nucleus-fx client $n" -f "$d/ssh/id_ed25519"
	# The drop-in comes first, as in Debian's sshd_config: its Match block
	# ends with its file.
	cat >"$d/ssh/sshd_config" <<CFG
Include $d/ssh/sshd_config.d/*.conf
ListenAddress $(fx_addr "$n")
Port 22
HostKey $d/ssh/ssh_host_ed25519_key
PidFile $d/ssh/sshd.pid
AuthorizedKeysFile $d/ssh/authorized_keys.%u
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
LogLevel VERBOSE
# The fixture's own root logins (test set-up, the bench's hand-made
# baseline) run their commands without root's ~/.bashrc: bash sources it for
# a command from sshd only as a top-level shell (SHLVL unset), and what a
# machine's root keeps there would be timed as part of the baseline's every
# transfer. The agents log in as the migration user, whose shell is sh.
Match User root
	SetEnv SHLVL=1
CFG
}

# The fixture's own root access: each node's test client key may log in to
# the other as root; each node pins the other's host key, and nothing else,
# in its known_hosts. (The agents' trust is provisioning's job.)
fx_exchange_keys() {
	local n o
	for n in $FX_NODES; do
		: >"$(fx_dir "$n")/ssh/authorized_keys.root"
		: >"$(fx_dir "$n")/ssh/known_hosts"
		chmod 0600 "$(fx_dir "$n")/ssh/authorized_keys.root"
		for o in $(fx_peers "$n"); do
			cat "$(fx_dir "$o")/ssh/id_ed25519.pub" >>"$(fx_dir "$n")/ssh/authorized_keys.root"
			printf '%s %s\n' "$(fx_addr "$o")" "$(cut -d' ' -f1,2 "$(fx_dir "$o")/ssh/ssh_host_ed25519_key.pub")" \
				>>"$(fx_dir "$n")/ssh/known_hosts"
		done
	done
}

fx_port_open() { fx_in "$1" bash -c "exec 3<>/dev/tcp/$(fx_addr "$1")/22" 2>/dev/null; }

fx_sshd_start() {
	local n=$1 d pid
	d=$(fx_dir "$n")
	# sshd's privilege separation directory; the Debian service would create it.
	install -d -m 0755 /run/sshd
	/usr/sbin/sshd -t -f "$d/ssh/sshd_config" || t_fail "sshd config of $n is invalid"
	# nsenter execs sshd, so $! is sshd's own pid. Its own output goes to its
	# log as well: an sshd that outlived its test (a teardown cut short)
	# must not hold the test's output open, which meson waits on.
	nsenter --net="/run/netns/$(fx_ns "$n")" -- /usr/sbin/sshd -D -f "$d/ssh/sshd_config" -E "$d/ssh/sshd.log" \
		</dev/null >>"$d/ssh/sshd.log" 2>&1 &
	pid=$!
	echo "$pid" >"$d/ssh/sshd.fxpid"
	fx_track_pid "$pid"
	t_wait_until 30 "sshd on $n" fx_port_open "$n" || t_fail "sshd on $n did not come up (log: $d/ssh/sshd.log)"
}

fx_sshd_pid() { cat "$(fx_dir "$1")/ssh/sshd.fxpid"; }

fx_sshd_kill() {
	local pid
	pid=$(fx_sshd_pid "$1")
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# fx_sshd_kill_all NODE: the node's sshd listener and every live session
# process of it (what a crashed or OOM-killed sshd takes with it), found by
# pid among the processes of the node's network namespace.
fx_sshd_kill_all() {
	local pid
	fx_sshd_kill "$1"
	for pid in $(ip netns pids "$(fx_ns "$1")" 2>/dev/null); do
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] && kill -KILL "$pid" 2>/dev/null
	done
	return 0
}

# How long an ssh client of the fixture may take to connect: a bound against
# a hang (a loaded machine may take seconds), unless a test that expects the
# connect to fail asks for less (FX_SSH_CONNECT_TIMEOUT=2 fx_ssh ...).
fx_ssh_connect_timeout() { echo "${FX_SSH_CONNECT_TIMEOUT:-$(t_secs 30)}"; }

# fx_ssh FROM TO [SSH ARGS...]: OpenSSH client from node FROM to node TO with
# strict host-key checking against FROM's known_hosts.
fx_ssh() {
	local from=$1 to=$2 d
	shift 2
	d=$(fx_dir "$from")
	fx_in "$from" ssh -F none -i "$d/ssh/id_ed25519" -o IdentitiesOnly=yes \
		-o UserKnownHostsFile="$d/ssh/known_hosts" -o GlobalKnownHostsFile=/dev/null \
		-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout="$(fx_ssh_connect_timeout)" \
		"root@$(fx_addr "$to")" "$@"
}

# fx_agent_ssh FROM TO [SSH ARGS...]: what FROM's agent does: OpenSSH as the
# migration user with FROM's agent key, strict host keys from the agent's
# own known_hosts. FX_SSH_TIMEOUT=SECONDS bounds the whole session.
fx_agent_ssh() {
	local from=$1 to=$2
	shift 2
	fx_in "$from" ${FX_SSH_TIMEOUT:+timeout "$FX_SSH_TIMEOUT"} ssh -F none -i "$(fx_agent_key "$from")" -o IdentitiesOnly=yes \
		-o UserKnownHostsFile="$(fx_agent_known_hosts "$from")" -o GlobalKnownHostsFile=/dev/null \
		-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout="$(fx_ssh_connect_timeout)" \
		"$FX_USER@$(fx_addr "$to")" "$@"
}

# fx_provision_args NODE: the node's nucleus-provision init options, one
# "--option=value" per line (without --node).
fx_provision_args() {
	local n=$1 d
	d=$(fx_dir "$n")
	printf '%s\n' \
		"--config=$(fx_conf "$n")" \
		"--work-dir=$d/migrate" \
		"--ssh-dir=$d/etc/ssh" \
		"--user=$FX_USER" \
		"--socket=$(fx_socket "$n")" \
		"--state-dir=$d/nucleus" \
		"--hmac-key=$(fx_hmac_key "$n")" \
		"--authorized-keys=$d/ssh/authorized_keys.$FX_USER" \
		"--host-key=$d/ssh/ssh_host_ed25519_key.pub" \
		"--address=$(fx_addr "$n")" \
		"--agent-bin=$(fx_agent_bin)" \
		"--sshd-config=$d/ssh/sshd_config" \
		"--sshd-dropin=$d/ssh/sshd_config.d/nucleus-migrate.conf" \
		"--sshd-pid-file=$d/ssh/sshd.pid"
}

# fx_provision_init NODE [MORE OPTIONS]: nucleus-provision init for NODE
# (again: it is idempotent).
fx_provision_init() {
	local n=$1 args
	shift
	mapfile -t args < <(fx_provision_args "$n")
	"$FX_PROVISION" init -q --node "$(fx_node_name "$n")" "${args[@]}" "$@"
}

# The step-by-step path of a real cluster: init on each node, each node's
# bundle imported on the other, one HMAC key made on n1 and streamed to n2.
fx_provision() {
	local n o
	for n in $FX_NODES; do
		fx_provision_init "$n" || t_fail "nucleus-provision init failed on $n"
	done
	for n in $FX_NODES; do
		for o in $(fx_peers "$n"); do
			"$FX_PROVISION" export --config "$(fx_conf "$n")" |
				"$FX_PROVISION" import -q --config "$(fx_conf "$o")" ||
				t_fail "importing $n's bundle on $o failed"
		done
	done
	"$FX_PROVISION" hmac-key -q --config "$(fx_conf n1)" --generate || t_fail "hmac-key --generate failed"
	for o in $(fx_peers n1); do
		"$FX_PROVISION" hmac-key --config "$(fx_conf n1)" --print |
			"$FX_PROVISION" hmac-key -q --config "$(fx_conf "$o")" --install - || t_fail "hmac-key --install failed"
	done
}

# fx_cluster_ssh NODE: the ssh command that reaches NODE as root: from the
# other node's namespace with that node's test key (the fixture's root access).
fx_cluster_ssh() {
	local o d
	o=$(fx_other "$1")
	d=$(fx_dir "$o")
	echo "nsenter --net=/run/netns/$(fx_ns "$o") ssh -F none -i $d/ssh/id_ed25519 -o IdentitiesOnly=yes" \
		"-o UserKnownHostsFile=$d/ssh/known_hosts -o GlobalKnownHostsFile=/dev/null" \
		"-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=$(fx_ssh_connect_timeout)"
}

# fx_cluster_args: `nucleus-provision cluster` arguments for both nodes.
fx_cluster_args() {
	local n
	for n in n1 n2; do
		echo "$(fx_node_name "$n")=root@$(fx_addr "$n")"
		echo "--ssh=$(fx_cluster_ssh "$n")"
		echo "--remote=$FX_PROVISION"
		fx_provision_args "$n"
	done
}

# The operator's path: one `nucleus-provision cluster` over root SSH (sshd
# must run; each init reloads its node's sshd for the drop-in).
# shellcheck disable=SC2120 # tests pass extra cluster options
fx_provision_cluster() {
	local args
	mapfile -t args < <(fx_cluster_args)
	"$FX_PROVISION" cluster -q "${args[@]}" "$@" >"$FX_ROOT/cluster.out" ||
		{ cat "$FX_ROOT/cluster.out" >&2; t_fail "nucleus-provision cluster failed"; }
}

fx_link_down() { ip -n "$(fx_ns n1)" link set eth0 down; }
fx_link_up() {
	ip -n "$(fx_ns n1)" link set eth0 up
	t_wait_until 30 "link up" fx_port_open n2
}

# fx_nodes_up: both nodes provisioned for nucleus-migrate, with sshd, ready
# for ssh either way (root with the test keys, nucleus with the agent keys).
fx_nodes_up() {
	local n
	fx_init
	fx_make_namespaces
	for n in $FX_NODES; do fx_make_node_dirs "$n"; done
	fx_exchange_keys
	fx_copy_agent_bin
	case $FX_PROVISION_MODE in
	steps)
		fx_provision
		for n in $FX_NODES; do fx_sshd_start "$n"; done
		;;
	cluster)
		[ "$FX_NODES" = "n1 n2" ] || t_fail "FX_PROVISION_MODE=cluster supports the two-node fixture only"
		fx_sshd_start n1
		fx_sshd_start n2
		fx_provision_cluster
		;;
	*) t_fail "FX_PROVISION_MODE must be steps or cluster, not '$FX_PROVISION_MODE'" ;;
	esac
	t_log "nodes $FX_NODES up under $FX_ROOT (namespaces nmfx-$FX_TAG-*; provisioned: $FX_PROVISION_MODE)"
}

# fx_ctr_dir NODE NAME: where workload NAME on NODE keeps its files.
fx_ctr_dir() { echo "$(fx_dir "$1")/ctrs/$2"; }

# fx_ctr_start NODE NAME [nm-counter period ms]: starts the counter workload as
# a nucleus container on NODE; prints "<id> <pid>".
fx_ctr_start() {
	local n=$1 name=$2 period=${3:-100} d w out
	d=$(fx_dir "$n")
	w=$(fx_ctr_dir "$n" "$name")
	mkdir -p "$w"
	out=$(fx_in "$n" "$FX_BUILD/tests/workloads/nm-ctr-start" --state-dir "$d/nucleus" --name "$name" \
		--console "$w/console" -- "$FX_BUILD/tests/workloads/nm-counter" "$w" "$period") ||
		t_fail "could not start container $name on $n"
	t_wait_until 30 "workload $name writes state" test -s "$w/state" || t_fail "workload $name did not start"
	echo "$out"
}

# fx_log_ok DIR: the workload's log counts 1..N with no gap or repeat. The
# last line may be half-written while we read: it is left out. On failure it
# says where the sequence breaks.
fx_log_ok() {
	awk 'NR > 1 && prev != "" && prev + 0 != NR - 1 { printf "log line %d is \"%s\"\n", NR - 1, prev > "/dev/stderr"; bad = 1; exit }
	     { prev = $0 } END { exit bad }' "$1/log"
}

# fx_ctr_field DIR KEY: a field of the workload's state record (count, pid, ...).
fx_ctr_field() { sed -n "s/.*\b$2=\([0-9-]*\).*/\1/p" "$1/state"; }

# fx_counter_reaches DIR N: waits until the workload's counter is past N.
fx_counter_reaches() {
	t_wait_until 30 "counter of $1 past $2" bash -c "[ \"\$(sed -n 's/.*count=\([0-9]*\).*/\1/p' $1/state)\" -gt $2 ]"
}

# The pids of live containers registered in a node's state directory (pid and
# start_ticks must still match).
fx_state_pids() {
	local f pid ticks
	for f in "$(fx_dir "$1")"/nucleus/*.json; do
		[ -f "$f" ] || continue
		pid=$(sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p' "$f")
		ticks=$(sed -n 's/^ *"start_ticks": *\([0-9]*\).*/\1/p' "$f")
		[ -n "$pid" ] && [ "$(fx_start_ticks "$pid")" = "$ticks" ] && echo "$pid"
	done
	return 0
}

# fx_rm PATH...: rm -rf that also removes files the agents sealed
# (received images are immutable once checked) and files a test made
# append-only (agent-consume).
fx_rm() {
	chattr -R -i -a "$@" 2>/dev/null || true
	rm -rf "$@"
}

fx_kill_pids() {
	local pid
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	sleep 0.2
	for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}

fx_teardown() {
	local rc=$? n pids hook
	trap - EXIT INT TERM
	# Teardown must run to the end whatever fails on the way.
	set +e
	[ -n "$FX_ROOT" ] || return "$rc"
	if [ "$rc" -ne 0 ] && [ -n "${FX_KEEP_ON_FAIL:-}" ]; then
		t_log "kept $FX_ROOT for inspection"
		return "$rc"
	fi
	pids=($(fx_tracked_pids))
	for n in $FX_NODES; do
		pids+=($(fx_state_pids "$n"))
		[ -e "/run/netns/$(fx_ns $n)" ] && pids+=($(ip netns pids "$(fx_ns $n)" 2>/dev/null))
	done
	[ "${#pids[@]}" -eq 0 ] || fx_kill_pids "${pids[@]}"
	# Helpers sourced on top (tests/lib/native.sh) clean up what they made.
	for hook in "${FX_TEARDOWN_HOOKS[@]}"; do "$hook"; done
	for n in $FX_NODES sw; do
		[ -e "/run/netns/$(fx_ns $n)" ] && ip netns del "$(fx_ns $n)"
	done
	fx_rm "$FX_ROOT"
	FX_ROOT=""
	return "$rc"
}
