# shellcheck shell=bash
# Helpers for the hostile-peer and local-safety tests: nm-peer-client against
# a node's agent, and the checks every hostile case ends with.

# shellcheck source=tests/lib/agents.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/agents.sh"

PC_BIN=$FX_BUILD/tests/tools/nm-peer-client
# How long the client waits for each expected frame: a bound against a hang.
PC_TIMEOUT=${PC_TIMEOUT:-$(t_ms 30000)}

# pc_ssh FROM TO [CLIENT OPTIONS...] < SCRIPT: the client in FROM's namespace,
# through ssh to TO as the migration user with FROM's agent key: TO's sshd
# runs the pinned command (nucleus-agent dial-stdio --peer FROM's name),
# exactly as a peer agent reaches it; HELLO says FROM's name unless the
# script's hello names another.
pc_ssh() {
	local from=$1 to=$2
	shift 2
	fx_in "$from" "$PC_BIN" --timeout "$PC_TIMEOUT" --node "$(fx_node_name "$from")" --target "$(fx_node_name "$to")" \
		"$@" -- ssh -T -F none -i "$(fx_agent_key "$from")" \
		-o IdentitiesOnly=yes -o UserKnownHostsFile="$(fx_agent_known_hosts "$from")" \
		-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes \
		-o ConnectTimeout="$(fx_ssh_connect_timeout)" "$FX_USER@$(fx_addr "$to")"
}

# pc_local NODE [CLIENT OPTIONS...] < SCRIPT: through dial-stdio as root, on
# the node itself (for cases where SSH adds nothing).
pc_local() {
	local n=$1
	shift
	fx_in "$n" "$PC_BIN" --timeout "$PC_TIMEOUT" "$@" -- "$FX_BUILD/agent/nucleus-agent" dial-stdio \
		--config "$(fx_conf "$n")"
}

# pc_case NAME HOW [ARGS...] < SCRIPT: runs the script with HOW (pc_ssh,
# pc_local, ...); its transcript goes to $FX_ROOT/pc-NAME.out, and is shown
# when an expectation fails.
pc_case() {
	local name=$1 out
	shift
	out=$FX_ROOT/pc-$name.out
	t_log "case: $name"
	if ! "$@" >"$out" 2>&1; then
		cat "$out" >&2
		t_fail "$name: the agent did not answer as expected"
	fi
}

# pc_lines FROM TO NAME SCRIPT-LINE...: case NAME, its script (one line
# per argument) from FROM's key to TO.
pc_lines() {
	local from=$1 to=$2 name=$3
	shift 3
	printf '%s\n' "$@" | pc_case "$name" pc_ssh "$from" "$to"
}

# pc_logged NODE TEXT: NODE's agent log says TEXT (a grep pattern).
pc_logged() { grep -q -- "$2" "$(fx_agent_log "$1")" || t_fail "$(fx_node_name "$1")'s log does not say: $2"; }

# pc_said NAME TEXT: the transcript of case NAME shows TEXT from the agent.
pc_said() {
	grep -q "^< .*$2" "$FX_ROOT/pc-$1.out" || {
		cat "$FX_ROOT/pc-$1.out" >&2
		t_fail "$1: the agent never said '$2'"
	}
}

pc_staging_empty() { [ -z "$(ls -A "$(fx_dir "$1")/migrate/staging")" ]; }
pc_no_active() { ! fx_nm "$1" status --json | grep -q '"active":true'; }

# pc_serving NODE: the agent still serves others: the same pid, a CLI
# status, and a peer session from the other node.
pc_serving() {
	local n=$1 pid=$2
	kill -0 "$pid" 2>/dev/null || t_fail "the agent on $n (pid $pid) is gone"
	t_assert_eq "$(fx_agent_pid "$n")" "$pid" "agent pid on $n"
	fx_nm "$n" status >/dev/null || t_fail "status on $n does not answer"
	printf '%s\n' hello "expect HELLO" node-info-req "expect NODE_INFO" |
		pc_ssh "$(fx_other "$n")" "$n" >"$FX_ROOT/pc-serving.out" 2>&1 || {
		cat "$FX_ROOT/pc-serving.out" >&2
		t_fail "a peer session to $n is not served"
	}
}

# pc_clean NODE PID: after a hostile case: no staging directory left, no
# migration in flight, and the agent serves others.
pc_clean() {
	local n=$1 pid=$2
	t_wait_until 30 "staging on $n empty" pc_staging_empty "$n" ||
		t_fail "staging directories left on $n: $(ls -A "$(fx_dir "$n")/migrate/staging")"
	t_wait_until 30 "no migration in flight on $n" pc_no_active "$n" ||
		t_fail "a migration is still active on $n: $(fx_nm "$n" status)"
	pc_serving "$n" "$pid"
}

# pc_written_since NODE MARKER: files of NODE changed since MARKER, beyond
# what the agent itself keeps (its log, journal, CRIU's logs).
pc_written_since() {
	find "$(fx_dir "$1")" -newer "$2" \( -type f -o -type l \) \
		! -path '*/migrate/journal/*' ! -path '*/migrate/criu/*' ! -name agent.log ! -name 'sshd.log' ! -name 'pc-*.out' \
		! -path '*/ctrs/*' ! -path '*/nucleus/*' 2>/dev/null
}

# pc_user_bin PATH: PATH, or a copy of it under $FX_ROOT/bin when other
# users cannot reach the build (a checkout in a private home directory).
pc_user_bin() {
	if setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$1"; then
		echo "$1"
	else
		install -D -m 0755 "$1" "$FX_ROOT/bin/$(basename "$1")"
		echo "$FX_ROOT/bin/$(basename "$1")"
	fi
}

# pc_as USER [GROUPS] -- CMD...: CMD in no namespace of its own, as USER
# (a name or uid) with only GROUPS (comma-separated, may be empty).
pc_as() {
	local user=$1 groups=$2
	shift 3
	if [ -n "$groups" ]; then
		setpriv --reuid="$user" --regid="$user" --groups="$groups" --inh-caps=-all "$@"
	else
		setpriv --reuid="$user" --regid="$user" --clear-groups --inh-caps=-all "$@"
	fi
}
