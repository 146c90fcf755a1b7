# shellcheck shell=bash
# Agents on the two-node fixture: start, stop, kill and ask them, as an
# operator would (nucleus-agent with the provisioned configuration,
# nucleus-migrate against its socket).

# shellcheck source=tests/lib/fixture.sh
. "$(dirname "${BASH_SOURCE[0]}")/fixture.sh"

# Under a sanitizer build, a leak or a runtime error fails the process; the
# one leak libcriu 4.2.1 itself has (its config path) is suppressed.
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$FX_SRC/tests/unit/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Shorter timeouts than in production (30 s idle, 10 s connect), so that a
# cut link is noticed sooner, yet long enough for a busy machine: the
# destination's receiver waits for the source's first image frame within
# the idle timeout, and before it the source may wait for CRIU (another
# migration's dump) and dump (seconds under load); an SSH connect may take
# seconds too. Scaled by NM_TIMEOUT_MULT.
FX_IDLE_TIMEOUT=${FX_IDLE_TIMEOUT:-$(t_secs 20)}
FX_CONNECT_TIMEOUT=${FX_CONNECT_TIMEOUT:-$(t_secs 15)}

fx_agent_log() { echo "$(fx_dir "$1")/agent.log"; }

# fx_logged_since NODE OFFSET GREP_ARGS...: whether NODE's agent log, from
# byte OFFSET on, has a line grep matches. Not a pipeline: grep -q ends at
# its first match, and under pipefail the SIGPIPE of the tail still
# writing would fail the check (it did, under load, with a long log).
fx_logged_since() {
	local log
	log=$(fx_agent_log "$1")
	grep -q "${@:3}" < <(tail -c +$(($2 + 1)) "$log")
}
fx_agent_pid() { cat "$(fx_dir "$1")/agent.fxpid" 2>/dev/null; }

# fx_nm NODE VERB [ARGS...]: nucleus-migrate on NODE against its agent.
fx_nm() {
	local n=$1
	shift
	fx_in "$n" "$FX_BUILD/agent/nucleus-migrate" "$@" --config "$(fx_conf "$n")"
}

fx_agent_up() { fx_nm "$1" status --json >/dev/null 2>&1; }

# fx_move_start NODE ID TARGET OUT [ARGS...]: starts `migrate ID TARGET
# --json ARGS...` on NODE in the background, its output into OUT, and
# tracks it for the teardown; FX_MOVE_PID is its pid. (A command
# substitution would run it in a subshell, whose child the test could not
# wait for.)
fx_move_start() {
	local node=$1 id=$2 to=$3 out=$4
	shift 4
	fx_nm "$node" migrate "$id" "$to" --json "$@" >"$out" 2>&1 &
	FX_MOVE_PID=$!
	fx_track_pid "$FX_MOVE_PID"
}

# fx_move_end PID OUT RC [OUTCOME] WHAT: waits for a move fx_move_start
# began and fails the test unless it exited RC with the result OUTCOME
# (not checked when empty). FX_MOVE_RESULT is its result record then.
fx_move_end() {
	local pid=$1 out=$2 want_rc=$3 want=$4 what=$5 rc=0
	wait "$pid" || rc=$?
	FX_MOVE_RESULT=$(grep '"event":"result"' "$out" | tail -n1)
	t_assert_eq "$rc" "$want_rc" "exit code of $what ($(cat "$out"))"
	[ -z "$want" ] || t_assert_eq "$(jq -r .result.outcome <<<"$FX_MOVE_RESULT")" "$want" "outcome of $what"
}

# fx_agent_start NODE [ENV=VALUE...]: starts NODE's agent (environment
# such as NM_FAULT=crash-after=committed goes before the binary) and waits
# until it answers on its socket. FX_AGENT_ARGS adds agent options
# (FX_AGENT_ARGS="--set limits.bandwidth=64K" fx_agent_start n1).
# FX_AGENT_WRAP runs the agent through a command that execs it in the end
# (words, no quoting), such as one that changes its mount namespace first.
fx_agent_start() {
	local n=$1 pid
	shift
	echo "---- start $(date +%T.%N)" >>"$(fx_agent_log "$n")"
	# shellcheck disable=SC2086 # FX_AGENT_WRAP and FX_AGENT_ARGS are lists of words
	nsenter --net="/run/netns/$(fx_ns "$n")" -- ${FX_AGENT_WRAP:-} env "$@" "$FX_BUILD/agent/nucleus-agent" --config "$(fx_conf "$n")" \
		--log-level debug --set "ssh.idle_timeout=$FX_IDLE_TIMEOUT" \
		--set "ssh.connect_timeout=$FX_CONNECT_TIMEOUT" ${FX_AGENT_ARGS:-} >>"$(fx_agent_log "$n")" 2>&1 &
	pid=$!
	echo "$pid" >"$(fx_dir "$n")/agent.fxpid"
	fx_track_pid "$pid"
	t_wait_until 30 "agent on $n" fx_agent_up "$n" || {
		tail -n 20 "$(fx_agent_log "$n")" >&2
		t_fail "the agent on $n did not come up"
	}
}

# fx_agent_stop NODE [SIGNAL]: signals the agent and waits until it is gone.
fx_agent_stop() {
	local n=$1 sig=${2:-TERM} pid
	pid=$(fx_agent_pid "$n")
	[ -n "$pid" ] || return 0
	kill "-$sig" "$pid" 2>/dev/null || true
	t_wait_until 30 "agent on $n exits" bash -c "! kill -0 $pid 2>/dev/null" || t_fail "agent on $n did not exit on SIG$sig"
	wait "$pid" 2>/dev/null || true
}

fx_agent_kill() { fx_agent_stop "$1" KILL; }

# fx_peer_sessions NODE PEER: the pids of the dial-stdio that PEER's
# sessions on NODE run (its pinned command names NODE's configuration).
fx_peer_sessions() {
	pgrep -f "dial-stdio --peer $(fx_node_name "$2") --config $(fx_conf "$1")" || true
}
fx_no_peer_sessions() { [ -z "$(fx_peer_sessions "$1" "$2")" ]; }

# fx_criu_pid NODE [EXCEPT]: the pid of the node's `criu swrk` (a child of
# the agent's CRIU keeper, in the keeper's pid namespace: a restored tree's
# first task, forked by swrk, lives in a new one), if one runs, other than
# EXCEPT.
fx_criu_pid() {
	local agent k c
	agent=$(fx_agent_pid "$1")
	for k in $(pgrep -P "$agent" -x nm-criu-keeper); do
		for c in $(pgrep -P "$k" -x criu); do
			[ "$(readlink "/proc/$c/ns/pid")" = "$(readlink "/proc/$k/ns/pid")" ] || continue
			[ "$c" != "${2:-}" ] || continue
			echo "$c"
			return 0
		done
	done
	return 1
}

fx_agents_up() {
	local n
	fx_nodes_up
	for n in $FX_NODES; do fx_agent_start "$n"; done
}

# fx_ctr_where ID: prints the node(s) whose state directory says ID runs
# there and whose process really runs (start ticks match).
fx_ctr_where() {
	local n f pid ticks
	for n in $FX_NODES; do
		f=$(fx_dir "$n")/nucleus/$1.json
		[ -f "$f" ] || continue
		pid=$(sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p' "$f")
		ticks=$(sed -n 's/^ *"start_ticks": *\([0-9]*\).*/\1/p' "$f")
		[ -n "$pid" ] && [ "$(fx_start_ticks "$pid")" = "$ticks" ] && ! grep -q '^State:.*[TtZ]' "/proc/$pid/status" &&
			echo "$n"
	done
	return 0
}

# The host pids of the workload NAME's container inits (pid 1 in their own
# pid namespace; nm-counter, nm-breadth or nm-memhog, whose directory is its
# last argument), on whichever node of this fixture they run (not another
# test's fixture that uses the same name at the same time).
fx_ctr_inits() {
	local pid
	for pid in $(pgrep -f "nm-(counter|breadth|memhog) (.* )?$FX_ROOT/n[0-9]+/ctrs/$1( |\$)" || true); do
		[ "$(awk '/^NSpid:/ { print $NF }' "/proc/$pid/status" 2>/dev/null)" = 1 ] && echo "$pid"
	done
	return 0
}

# fx_pids_running PID...: how many of them run (state R/S/D);
# fx_pids_stopped PID...: how many are held stopped. A pid gone since it was
# listed counts as neither.
fx_pids_running() {
	local pid n=0 state
	for pid in "$@"; do
		state=$(sed -n 's/^State:\t//p' "/proc/$pid/status" 2>/dev/null) && [ -n "$state" ] || continue
		[[ ${state:0:1} == [TtZX] ]] || n=$((n + 1))
	done
	echo "$n"
}
fx_pids_stopped() {
	local pid n=0
	for pid in "$@"; do
		grep -q '^State:.*[Tt]' "/proc/$pid/status" 2>/dev/null && n=$((n + 1))
	done
	echo "$n"
}

# How many copies of NAME run, and how many are held stopped.
# shellcheck disable=SC2046 # a list of pids
fx_ctr_running_copies() { fx_pids_running $(fx_ctr_inits "$1"); }
# shellcheck disable=SC2046
fx_ctr_stopped_copies() { fx_pids_stopped $(fx_ctr_inits "$1"); }

fx_count() { fx_ctr_field "$1" count; }

# fx_counter_advances DIR: the counter moves (it runs).
fx_counter_advances() { fx_counter_reaches "$1" "$(fx_count "$1")"; }

# fx_criu_dumps NODE: how many CRIU dumps NODE's agent has started (each gets
# its work directory <mig>-dump before CRIU runs). A container whose count
# did not change was never frozen: CRIU's dump is the only thing that
# freezes it.
fx_criu_dumps() { find "$(fx_dir "$1")/migrate/criu" -mindepth 1 -maxdepth 1 -name '*-dump' 2>/dev/null | wc -l; }
