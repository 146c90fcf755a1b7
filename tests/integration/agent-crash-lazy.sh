#!/usr/bin/env bash
# Post-copy with the target's agent killed (SIGKILL) once it has restored
# the container, stopped, before the commit: its `criu lazy-pages` daemon
# is still fetching the pages, and it ends with the agent (its page-server
# link is the agent's relay). Two outcomes are right, and which one comes
# depends on whether the daemon had every page before the kill:
# - pages were still missing: the source makes its lazy dump fail, the
#   frozen container runs on at home (exit 4, rolled-back), and the
#   restarted target hears "aborted" and discards its incomplete copy;
# - every page had arrived (CRIU's lazy dump returned): the source cannot
#   bring it back and says so (exit 9, lost), and the restarted target hears
#   "committed" and resumes its complete copy.
# Either way exactly one copy runs afterwards, its heap intact (checksummed),
# and nothing is left: no daemon, no stopped copy, no staging, no images,
# no network lock.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"

HOG_MIB=${AGENT_CRASH_LAZY_MIB:-64}
name=lazyhog

fx_nodes_up
fx_agent_start n1
fx_agent_start n2 "NM_FAULT=crash-after=restored"
agent2=$(fx_agent_pid n2)

read -r id _ < <(b_hog_start n1 "$name" "$HOG_MIB" random) || t_fail "could not start the $HOG_MIB MiB workload"
work=$(b_hog_dir n1 "$name")
b_hog_request "$work" check checks || t_fail "$name does not check its heap"
t_assert_eq "$(b_hog_field "$work" check_ok)" 1 "heap checksum of $name before the move"
c0=$(b_hog_field "$work" count)

rc=0
out=$(fx_nm n1 migrate "$id" node2 --lazy --json) || rc=$?
res=$(grep '"event":"result"' <<<"$out" | tail -n1)
outcome=$(jq -r .result.outcome <<<"$res")
mig=$(jq -r .result.mig <<<"$res")
case "$rc/$outcome" in
4/rolled-back) home=n1 dest_phase=aborted ;;
9/lost) home=n2 dest_phase=running ;;
*) t_fail "a lazy move whose target died after restoring: exit $rc, outcome $outcome: $res" ;;
esac
t_log "source: exit $rc, $outcome ($(jq -r .result.error <<<"$res"))"
t_wait_until 60 "n2's agent is dead" bash -c "! kill -0 $agent2 2>/dev/null" || t_fail "n2's agent did not crash"
grep -q "fault injection: killing this agent at restored" "$(fx_agent_log n2)" ||
	t_fail "n2's agent died elsewhere than after restoring"

# The daemon is CRIU's and outside the agent's process: it must end on its
# own once its link is gone (a zombie awaiting init counts as ended).
lazy_daemons() {
	local pid n=0
	for pid in $(pgrep -f "lazy-pages .*$(fx_dir n2)/" || true); do
		grep -q '^State:.*[ZX]' "/proc/$pid/status" 2>/dev/null || [ ! -e "/proc/$pid" ] || n=$((n + 1))
	done
	echo "$n"
}
no_lazy_daemon() { [ "$(lazy_daemons)" = 0 ]; }
t_wait_until 60 "n2's lazy-pages daemon ends with its agent" no_lazy_daemon ||
	t_fail "n2's lazy-pages daemon outlived its agent: $(pgrep -af "lazy-pages .*$(fx_dir n2)/")"

fx_agent_start n2
no_active() { ! fx_nm n1 status --json | grep -q '"active":true' && ! fx_nm n2 status --json | grep -q '"active":true'; }
t_wait_until 120 "both agents settle" no_active || t_fail "a migration is still active after n2's restart"

# ---- exactly one copy, where the outcome says, heap intact ----
t_assert_eq "$(fx_ctr_where "$id")" "$home" "where $name runs"
t_assert_eq "$(fx_ctr_running_copies "$name")" 1 "running copies of $name"
t_assert_eq "$(fx_ctr_stopped_copies "$name")" 0 "stopped copies of $name"
t_wait_until 60 "$name ticks on" b_hog_ticks_past "$work" "$c0" || t_fail "$name stopped ticking"
b_hog_request "$work" check checks || t_fail "$name does not check its heap after the crash"
t_assert_eq "$(b_hog_field "$work" check_ok)" 1 "heap checksum of $name after the crash"

# ---- what each journal says, and nothing left ----
rec=$(fx_dir n2)/migrate/journal/done/$mig.json
[ -f "$rec" ] || t_fail "n2 has no finished record of $mig"
t_assert_eq "$(jq -r .phase "$rec")" "$dest_phase" "n2's outcome of $mig"
[ -z "$(ls -A "$(fx_dir n2)/migrate/staging")" ] || t_fail "staging left on n2"
[ -z "$(ls -A "$(fx_dir n1)/migrate/checkpoints")" ] || t_fail "images left on n1"
init=$(fx_ctr_inits "$name")
tables=$(nsenter -t "$init" -n nft list tables | grep -i criu || true)
[ -z "$tables" ] || t_fail "CRIU's network lock left in the container's namespace: $tables"
fx_agent_stop n1
fx_agent_stop n2
t_log "ok: target killed after restoring mid post-copy: $outcome, runs once on $home, heap intact, nothing left"
