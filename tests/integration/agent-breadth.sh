#!/usr/bin/env bash
# Breadth: any process tree that CRIU itself can dump and restore on this
# machine also moves node to node with the agents' default settings.
#
# The workload (tests/workloads/breadth.c) builds many kinds of kernel
# objects and checks each of them on SIGUSR1. First every class is taken
# through a local dump and restore with the criu command line (what CRIU can
# do here); a class CRIU cannot do is listed with CRIU's message and a known
# reason, and left out. An unexplained local failure fails the test. Then one
# container with every remaining class moves node 1 -> node 2 -> node 1 with
# `nucleus-migrate CONTAINER TARGET` and nothing else, and every check must
# pass after each move, with exactly one copy running. Then a move that fails
# on the target rolls back, and one with --tcp close closes the container's
# TCP connection and keeps everything else.
set -euo pipefail
# The production idle timeout, not the fixture's 4 s: this test is not about
# noticing a cut link, and the receiver counts the source's dump (slow on a
# busy machine, for a tree of many processes) against its progress window.
FX_IDLE_TIMEOUT=$((30 * ${NM_TIMEOUT_MULT:-1}))
. "$(dirname "$0")/../lib/agents.sh"
. "$(dirname "$0")/../lib/breadth.sh"

criu=$(t_criu)

# What CRIU cannot do on these machines, and why. A class listed here is
# still tried locally: should CRIU manage it somewhere, it moves too.
declare -A LIMITS=(
	[creds]="CRIU reads the resource limits of a task running under other uids with prlimit(), which needs CAP_SYS_RESOURCE; root here has no CAP_SYS_RESOURCE"
	[eventfd-sem]="CRIU does not record EFD_SEMAPHORE: the eventfd comes back as a plain counter (no error from CRIU)"
	[netlink-queued]="CRIU cannot dump a netlink socket with unread messages and refuses the whole tree"
	[timerfd-fast]="CRIU restores a periodic timerfd from its fdinfo, which shows 0 s left once the period has passed during the freeze: the timer comes back disarmed (no error from CRIU; CRIU issue 3162)"
)
# Limits that show or not depending on how long the freeze lasts: a small
# tree dumped locally may freeze for less than the timer's 50 ms period and
# pass, while the move of the whole tree freezes longer and fails. They are
# tried locally and reported, but never moved, whatever the local outcome.
declare -A TIMED=(
	[timerfd-fast]=1
)

# The first errors in a CRIU log: the cause comes before the consequences.
criu_errors() { grep 'Error (' "$1" 2>/dev/null | grep -v RLIMIT_NOFILE | head -n 2 | sed 's/^([0-9. ]*) //' | tr '\n' ' '; }

# local_roundtrip NAME CLASSES: a container with these classes, dumped and
# restored twice with the criu command line (a move there and back does it
# twice), with the options CRIU needs for what it can do (file locks, TCP
# connections, nftables). Sets REPORT to the checks after both restores, or
# LOCAL_MSG to CRIU's message and returns 1 when a dump or a restore failed.
local_roundtrip() {
	local name=$1 classes=$2 dir=$FX_ROOT/local/$1 id pid before round
	local opts=(--network-lock nftables --file-locks --tcp-established)
	REPORT="" LOCAL_MSG=""
	read -r id pid < <(breadth_start n1 "$FX_ROOT/local/state" "$dir" "$name" "$classes") ||
		t_fail "workload with $classes did not start"
	before=$(breadth_check "$pid" "$dir" 1) || t_fail "$name: no report before the dump"
	! grep -q '^FAIL' <<<"$before" || t_fail "$name fails before any dump (a workload bug): $before"
	for round in 2 3; do
		mkdir -p "$dir.img$round" "$dir.work$round"
		if ! fx_in n1 "$criu" dump -t "$pid" -D "$dir.img$round" -W "$dir.work$round" -o dump.log \
			"${opts[@]}" 2>/dev/null; then
			LOCAL_MSG="criu dump: $(criu_errors "$dir.work$round/dump.log")"
			kill -KILL "$pid" 2>/dev/null || true
			return 1
		fi
		if ! fx_in n1 "$criu" restore -D "$dir.img$round" -W "$dir.work$round" -o restore.log -d \
			--pidfile "$dir.pid$round" "${opts[@]}" 2>/dev/null; then
			LOCAL_MSG="criu restore: $(criu_errors "$dir.work$round/restore.log")"
			return 1
		fi
		pid=$(cat "$dir.pid$round")
		fx_track_pid "$pid"
		REPORT+=$(breadth_check "$pid" "$dir" "$round") || t_fail "$name: no report after restore $((round - 1))"
		REPORT+=$'\n'
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# local_result CLASS: 0 when CLASS passed every check in REPORT; LOCAL_MSG
# gets its first failure.
local_result() {
	LOCAL_MSG=$(sed -n "s/^FAIL $1: //p" <<<"$REPORT" | head -n1)
	[ -z "$LOCAL_MSG" ] && grep -q "^ok $1:" <<<"$REPORT"
}

# local_class CLASS: one class on its own; 0 when it survived.
local_class() {
	local_roundtrip "l-$1" "$1" && local_result "$1"
}

fx_agents_up
mkdir -p "$FX_ROOT/local/state"

t_log "(a) every class, dumped and restored locally by $criu"
# Every class with a known limit alone (CRIU's message for each), the others
# together in one container; should that one fail as a whole, each of them
# alone, to name the culprit.
movable=() together=()
declare -A RESULT WHAT
while IFS=$'\t' read -r c what; do
	WHAT[$c]=$what
	[ -n "${LIMITS[$c]:-}" ] || together+=("$c")
done < <("$BREADTH" --list)
judge() {
	local c=$1 ok=$2
	if [ "$ok" = yes ] && [ -n "${TIMED[$c]:-}" ]; then
		RESULT[$c]="left out"
		t_log "  $c (${WHAT[$c]}): survived this local round trip, but only when the freeze is short"
		t_log "      left out of the moves: ${LIMITS[$c]}"
	elif [ "$ok" = yes ]; then
		movable+=("$c")
		RESULT[$c]="ok"
		t_log "  $c (${WHAT[$c]}): ok"
	elif [ -n "${LIMITS[$c]:-}" ]; then
		RESULT[$c]="left out"
		t_log "  $c (${WHAT[$c]}): CRIU cannot do it here: $LOCAL_MSG"
		t_log "      left out of the moves: ${LIMITS[$c]}"
	else
		t_fail "$c (${WHAT[$c]}) does not survive a local dump and restore, and no reason is known: $LOCAL_MSG"
	fi
}
for c in "${!LIMITS[@]}"; do
	if local_class "$c"; then judge "$c" yes; else judge "$c" no; fi
done
if local_roundtrip l-together "$(IFS=,; echo "${together[*]}")"; then
	for c in "${together[@]}"; do
		if local_result "$c"; then judge "$c" yes; else judge "$c" no; fi
	done
else
	t_log "  the ${#together[@]} classes together: $LOCAL_MSG; each alone:"
	for c in "${together[@]}"; do
		if local_class "$c"; then judge "$c" yes; else judge "$c" no; fi
	done
fi
[ "${#movable[@]}" -ge 40 ] || t_fail "only ${#movable[@]} classes survive CRIU locally: ${movable[*]}"
classes=$(IFS=,; echo "${movable[*]}")

# all_ok REPORT WHEN [CLASS EXPECTED-PREFIX]: every movable class reports ok,
# but the one named, whose line must start with the given text.
all_ok() {
	local report=$1 when=$2 except=${3:-} want=${4:-} c line
	for c in "${movable[@]}"; do
		line=$(grep "^[A-Za-z]* $c: " <<<"$report") || t_fail "$when: no check of $c in the report"
		if [ "$c" = "$except" ]; then
			grep -q "^FAIL $c: $want" <<<"$line" || t_fail "$when: $c should say '$want': $line"
		else
			[ "${line%% *}" = ok ] || t_fail "$when: $line"
		fi
	done
	t_log "$when: ${#movable[@]} classes checked"
}

# verify PID WHEN [CLASS EXPECTED-PREFIX]: one more round of checks of the
# moved workload, judged by all_ok.
ROUND=0
verify() {
	local pid=$1 report
	shift
	ROUND=$((ROUND + 1))
	report=$(breadth_check "$pid" "$work" "$ROUND") ||
		t_fail "$1: no report from the workload (round $ROUND; console: $(tail -n 3 "$work/console" 2>/dev/null))"
	all_ok "$report" "$@"
}

work=$(fx_ctr_dir n1 breadth)
t_log "(b) one container with ${#movable[@]} classes moves with the agents' defaults"
read -r id pid < <(breadth_start n1 "$(fx_dir n1)/nucleus" "$work" breadth "$classes") || t_fail "the workload did not start"
verify "$pid" "before any move"

# move FROM TO [OPTIONS]: prints the new pid of the container's init.
move() {
	local from=$1 to=$2 out new_pid
	shift 2
	out=$(fx_nm "$from" migrate "$id" "$(fx_node_name "$to")" --json "$@") || t_fail "migrate $from -> $to failed: $out"
	grep -q '"outcome":"done"' <<<"$out" || t_fail "$from -> $to did not finish: $out"
	new_pid=$(tail -n1 <<<"$out" | sed -n 's/.*"new_pid":\([0-9]*\).*/\1/p')
	t_assert_eq "$(fx_ctr_where "$id")" "$to" "where the container runs after $from -> $to"
	t_assert_eq "$(fx_ctr_running_copies breadth)" 1 "running copies after $from -> $to"
	t_assert_eq "$(fx_ctr_inits breadth | wc -l)" 1 "copies (running or not) after $from -> $to"
	echo "$new_pid"
}

pid=$(move n1 n2)
verify "$pid" "after node1 -> node2"
pid=$(move n2 n1)
verify "$pid" "after node2 -> node1"

t_log "(c) a move that fails on the target rolls back, and every check still passes"
fx_agent_stop n2
fx_agent_start n2 NM_FAULT=fail=dest-restore
rc=0
out=$(fx_nm n1 migrate "$id" "$(fx_node_name n2)" --json) || rc=$?
t_assert_eq "$rc" 4 "exit status of a move whose restore fails on the target: $out"
grep -q '"outcome":"rolled-back"' <<<"$out" || t_fail "not rolled back: $out"
t_assert_eq "$(fx_ctr_where "$id")" n1 "where the container runs after the rollback"
t_assert_eq "$(fx_ctr_running_copies breadth)" 1 "running copies after the rollback"
pid=$(fx_state_pids n1)
verify "$pid" "after a rollback on node1"
fx_agent_stop n2
fx_agent_start n2

if [[ " ${movable[*]} " == *" tcp-conn "* ]]; then
	t_log "(d) --tcp close: the connection inside the container is closed, everything else moves"
	pid=$(move n1 n2 --tcp close)
	grep -q '"tcp": "close"' "$(fx_dir n1)"/migrate/journal/done/*.json ||
		t_fail "node1's journal does not record the close policy"
	verify "$pid" "after node1 -> node2 with --tcp close" tcp-conn "closed:"
fi

t_log "ok: ${#movable[@]} classes moved both ways and survived a rollback; left out: $(for c in "${!LIMITS[@]}"; do [ "${RESULT[$c]:-}" = "left out" ] && printf '%s ' "$c"; done)"
