#!/usr/bin/env bash
# An agent killed (SIGKILL) right after it journals each step of the handoff,
# then restarted: afterwards exactly one copy of the container runs, on the
# node the journal's outcome says, its state continuous, nothing left over.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"

# node-to-crash phase  where-it-ends  CLI-exit
CASES=(
	"n1 dumping n1 5"
	"n1 dumped n1 5"
	"n1 streaming n1 5"
	"n1 restoring n1 5"
	"n1 committed n2 5"
	"n1 done n2 5"
	"n2 receiving n1 1"
	"n2 verified n1 4"
	"n2 dest-restoring n1 4"
	"n2 restored n1 4"
	"n2 running n2 5"
)
[ -n "${AGENT_CRASH_ONLY:-}" ] && CASES=("$AGENT_CRASH_ONLY")

fx_nodes_up

no_active() { ! fx_nm n1 status --json | grep -q '"active":true' && ! fx_nm n2 status --json | grep -q '"active":true'; }

check_clean() {
	local n
	for n in n1 n2; do
		[ -z "$(ls -A "$(fx_dir "$n")/migrate/staging")" ] || t_fail "$1: staging left on $n: $(ls "$(fx_dir "$n")/migrate/staging")"
		[ -z "$(ls -A "$(fx_dir "$n")/migrate/checkpoints")" ] || t_fail "$1: images left on $n"
	done
}

run_case() {
	local crash=$1 phase=$2 want=$3 want_rc=$4 name id rc=0 out work c0 c1 where
	name=c-$phase-${crash}
	t_log "== SIGKILL of $crash's agent after it journals '$phase'"
	if [ "$crash" = n1 ]; then
		fx_agent_start n1 "NM_FAULT=crash-after=$phase"
		fx_agent_start n2
	else
		fx_agent_start n1
		fx_agent_start n2 "NM_FAULT=crash-after=$phase"
	fi
	read -r id _ < <(fx_ctr_start n1 "$name")
	work=$(fx_ctr_dir n1 "$name")
	fx_counter_advances "$work" || t_fail "$name does not tick"
	c0=$(fx_count "$work")
	out=$(fx_nm n1 migrate "$id" node2 2>&1) || rc=$?
	t_assert_eq "$rc" "$want_rc" "CLI exit for a crash after $phase ($out)"
	t_wait_until 60 "$crash's agent is dead" bash -c "! kill -0 $(fx_agent_pid "$crash") 2>/dev/null" ||
		t_fail "the fault did not kill $crash's agent"
	wait "$(fx_agent_pid "$crash")" 2>/dev/null || true
	fx_agent_start "$crash"
	t_wait_until 300 "both agents settle" no_active || {
		fx_nm n1 status >&2 || true
		fx_nm n2 status >&2 || true
		t_fail "migrations still active long after a crash after $phase"
	}
	where=$(fx_ctr_where "$id")
	t_assert_eq "$where" "$want" "where $name runs after a crash after $phase"
	t_assert_eq "$(fx_ctr_running_copies "$name")" 1 "running copies of $name"
	t_assert_eq "$(fx_ctr_stopped_copies "$name")" 0 "stopped copies of $name"
	fx_counter_advances "$work" || t_fail "$name stopped ticking"
	c1=$(fx_count "$work")
	[ "$c1" -ge "$c0" ] || t_fail "counter of $name went back: $c0 -> $c1"
	fx_log_ok "$work" || t_fail "log of $name has a gap or a repeat"
	check_clean "$phase"
	fx_agent_stop n1
	fx_agent_stop n2
	t_log "ok: $name runs on $want, counter $c0 -> $c1"
}

for c in "${CASES[@]}"; do
	# shellcheck disable=SC2086
	run_case $c
done
t_log "ok: ${#CASES[@]} crash points"
