#!/usr/bin/env bash
# `nucleus-migrate resolve` settles a migration held in doubt, both ways.
# A move is stopped where the source heard RESTORED and has not committed
# (pause-after=got-restored), and the source's agent is killed there: the
# target holds a stopped copy and asks a source that cannot answer.
# The source's dump holds the container stopped there until the commit.
#  - commit, from the facts: the source comes back without its journal
#    record (a lost disk): it answers "unknown" forever; resolve learns that
#    it has no record and only holds a stopped copy, which nothing there
#    resumes, commits, and both journals record the decision; the container
#    runs on the target, once; the answer names the pid the operator ends
#    on the source (the source does not end it on the target's word), and
#    `kill-tree` there ends it.
#  - abort, forced: the source stays down; resolve shows the facts and
#    decides nothing (exit 5), not even when asked without --force; with
#    --abort --force the target kills its copy; the source, back with its
#    journal, rolls back: the container resumes on the source, the same
#    process, once.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"

fx_nodes_up
GATE=$FX_ROOT/gate

# phase_is NODE CONTAINER PHASE: NODE's newest migration of CONTAINER is in PHASE.
phase_is() {
	fx_nm "$1" status "$2" --json | jq -e --arg p "$3" '.result.migrations[0].phase == $p' >/dev/null
}
fx_agent_start n2

# in_doubt NAME: starts NAME on n1, moves it until the source has heard
# RESTORED, kills the source's agent there; prints "ID MIG PID" (PID: the
# container's on n1) once n2 holds the migration in doubt.
in_doubt() {
	local name=$1 id pid off mig
	off=$(stat -c %s "$(fx_agent_log n1)" 2>/dev/null || echo 0)
	: >"$GATE"
	fx_agent_start n1 NM_FAULT=pause-after=got-restored "NM_FAULT_GATE=$GATE"
	read -r id pid < <(fx_ctr_start n1 "$name")
	fx_counter_advances "$(fx_ctr_dir n1 "$name")" || t_fail "$name does not tick"
	(fx_nm n1 migrate "$id" node2 >"$FX_ROOT/$name.cli" 2>&1 || true) &
	t_wait_until 300 "n1 pauses at got-restored" bash -c \
		"tail -c +$((off + 1)) '$(fx_agent_log n1)' | grep -q 'fault injection: paused at got-restored '" ||
		t_fail "the move never reached got-restored: $(cat "$FX_ROOT/$name.cli")"
	fx_agent_kill n1
	rm -f "$GATE"
	t_wait_until 120 "n2 holds the move in doubt" phase_is n2 "$id" in-doubt ||
		t_fail "n2 did not hold the move in doubt: $(fx_nm n2 status "$id" 2>&1)"
	mig=$(fx_nm n2 status "$id" --json | jq -r '.result.migrations[0].mig')
	echo "$id $mig $pid"
}

t_log "commit: the source lost its record and runs no copy"
read -r id mig pid < <(in_doubt committed)
t_assert_eq "$(fx_ctr_stopped_copies committed)" 2 "stopped copies (held by n1's dump, restored on n2)"
t_assert_eq "$(fx_pids_stopped "$pid")" 1 "n1's original held stopped"
ticks=$(fx_start_ticks "$pid")
rm -f "$(fx_dir n1)/migrate/journal/$mig.json"
fx_agent_start n1
t_expect_exit 0 "resolve from the facts" fx_nm n2 resolve "$mig"
t_says "resolve from the facts" "phase in-doubt; the copy: held stopped" "source (node1): says unknown" \
	"its journal: no record" "the copy there: held stopped (pid $pid)" "decision: commit" \
	"recorded here and on the source" "left to do: node1 holds a stopped copy of the container as pid $pid" \
	"kill-tree --start-ticks $ticks $pid"
t_log "$(grep decision <<<"$T_OUT")"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after resolve --commit"
t_assert_eq "$(fx_ctr_running_copies committed)" 1 "running copies"
t_assert_eq "$(fx_pids_stopped "$pid")" 1 "n1's copy, stopped until the operator ends it"
# The start time names the process: another one under the same pid is left alone.
t_expect_exit 6 "kill-tree of pid $pid with another start time" \
	fx_in n1 "$FX_BUILD/agent/nucleus-migrate" kill-tree --start-ticks $((ticks + 1)) "$pid"
t_says "kill-tree with another start time" "is not the one meant" "nothing was done"
t_assert_eq "$(fx_pids_stopped "$pid")" 1 "n1's copy after a kill-tree that named another process"
t_expect_exit 0 "kill-tree of the held copy on n1" \
	fx_in n1 "$FX_BUILD/agent/nucleus-migrate" kill-tree --start-ticks "$ticks" "$pid"
t_assert_eq "$(fx_ctr_stopped_copies committed)" 0 "stopped copies after kill-tree on n1"
t_assert_eq "$(fx_ctr_running_copies committed)" 1 "running copies after kill-tree on n1"
fx_counter_advances "$(fx_ctr_dir n1 committed)" || t_fail "the resolved container does not tick"
grep -q '"resolution"' "$(fx_dir n2)/migrate/journal/done/$mig.json" || t_fail "n2's journal does not record the decision"
t_wait_until 30 "n1's journal records the decision" grep -q '"resolution"' "$(fx_dir n1)/migrate/journal/done/$mig.json" ||
	t_fail "n1's journal does not record the decision"
t_assert_eq "$(jq -r .phase "$(fx_dir n1)/migrate/journal/done/$mig.json")" done "n1's record of the settled move"
t_expect_exit 1 "resolve of a settled move" fx_nm n2 resolve "$mig"
t_says "resolve of a settled move" "is over here (running)"
t_expect_exit 6 "resolve of an unknown move" fx_nm n2 resolve nosuchmigration

t_log "abort, forced: the source cannot be reached"
fx_agent_stop n1
read -r id mig pid < <(in_doubt aborted)
t_expect_exit 5 "resolve without the source" fx_nm n2 resolve "$mig"
t_says "resolve without the source" "source (node1): cannot be reached" "no decision (undecided)" "--force"
t_expect_exit 5 "resolve --abort without --force" fx_nm n2 resolve "$mig" --abort
t_assert_eq "$(fx_ctr_stopped_copies aborted)" 2 "stopped copies after refusals to decide (n1's, n2's)"
t_expect_exit 0 "resolve --abort --force" fx_nm n2 resolve "$mig" --abort --force
t_says "resolve --abort --force" "decision: abort (forced)" "the source could not be told" "now aborted"
t_assert_eq "$(fx_ctr_stopped_copies aborted)" 1 "stopped copies after the forced abort (n1's, held)"
grep -q '"forced": true' "$(fx_dir n2)/migrate/journal/done/$mig.json" || t_fail "n2's journal does not record the forced decision"
fx_agent_start n1
t_wait_until 120 "the source rolls back" phase_is n1 "$id" rolled-back ||
	t_fail "the source did not roll back: $(fx_nm n1 status "$id" 2>&1)"
t_assert_eq "$(fx_ctr_where "$id")" n1 "where the container runs after the forced abort"
t_assert_eq "$(fx_ctr_running_copies aborted)" 1 "running copies"
t_assert_eq "$(fx_pids_running "$pid")" 1 "n1's original process runs again (resumed, not restored)"
t_assert_eq "$(fx_ctr_stopped_copies aborted)" 0 "stopped copies after the rollback"
t_log "ok"
