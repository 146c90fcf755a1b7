#!/usr/bin/env bash
# Prints the fault matrix (phase x fault -> outcome) from the rows that
# fault-matrix.sh wrote, then each cell's detail (the CLI's first line),
# then the rollback time of every cell that rolled back (failure seen on
# the source -> container running again, from the source agent's log;
# reported, never asserted). The same for the native-shaped container's
# rows (fault-matrix.sh --native, files native-<row>.tsv).
# Fails when a row is missing, a cell failed, or a row is of another run
# than this one (NM_TEST_RUN, else the parent process: under `meson test`
# the rows and this report are children of the same run; the files of an
# earlier run stay in the build directory and must not pass for this one).
#
#   fault-report.sh [ROW...]                 the plain rows; the native rows
#                                            too where this run wrote them
#   fault-report.sh --native [ROW...]        both, every native row required
#   fault-report.sh --native-only [ROW...]   only the native rows
set -uo pipefail
# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

FX_BUILD=${NM_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}
FM_RESULTS=${FM_RESULTS:-$FX_BUILD/fault-matrix}
ROWS=(precheck after-dump mid-stream after-verify during-restore after-restored after-committed criu-dump criu-restore)
FAULTS=(link-cut src-kill dst-kill dst-sshd flip restore-fail disk-full criu-kill-start criu-kill-mid criu-kill-end criu-hang)
# Which shapes are read, and whether the native rows may be missing.
SHAPES=(plain native)
NATIVE=optional
case ${1:-} in
--native)
	NATIVE=required
	shift
	;;
--native-only)
	SHAPES=(native)
	NATIVE=required
	shift
	;;
esac
[ $# -gt 0 ] && ROWS=("$@")

declare -A CELL DETAIL RB SHOWN
bad=0 ok=0 na=0
run=$(t_run_id)

# load SHAPE: reads that shape's row files into CELL, DETAIL and RB.
load() {
	local shape=$1 prefix="" row f head row_run r fault status verdict detail rb
	[ "$shape" = plain ] || prefix=native-
	for row in "${ROWS[@]}"; do
		f=$FM_RESULTS/$prefix$row.tsv
		if [ ! -s "$f" ]; then
			if [ "$shape" = native ] && [ "$NATIVE" = optional ]; then
				continue
			fi
			t_log "row $prefix$row: no results ($f)"
			bad=$((bad + 1))
			continue
		fi
		read -r head <"$f"
		row_run=none
		[[ $head != "# run "* ]] || row_run=${head#"# run "}
		# Optional native rows of another run are not this run's: left out.
		[ "$row_run" = "$run" ] || [ "$shape" != native ] || [ "$NATIVE" = required ] || continue
		SHOWN[$shape]=1
		if [ "$row_run" != "$run" ]; then
			t_log "row $prefix$row: the results in $f are of another run ($row_run; this run: $run): run the row again (meson test --suite fault)"
			bad=$((bad + 1))
			continue
		fi
		while IFS=$'\t' read -r r fault status verdict detail rb; do
			[ "${r:0:1}" != "#" ] || continue
			r=$shape/$r
			case $status in
			ok) CELL[$r/$fault]=$verdict DETAIL[$r/$fault]=$detail RB[$r/$fault]=${rb:--} ok=$((ok + 1)) ;;
			n/a) CELL[$r/$fault]="n/a" DETAIL[$r/$fault]="n/a: $verdict" na=$((na + 1)) ;;
			*) CELL[$r/$fault]="FAIL" DETAIL[$r/$fault]="FAIL: $verdict" bad=$((bad + 1)) ;;
			esac
		done <"$f"
	done
}

# table SHAPE TITLE KIND: one phase x fault table of the outcomes
# (KIND cell) or the rollback times (KIND rollback).
table() {
	local shape=$1 title=$2 kind=$3 row fault v
	echo
	echo "$title"
	printf '%-16s' "phase \\ fault"
	for fault in "${FAULTS[@]}"; do printf ' | %-22s' "$fault"; done
	echo
	printf '%-16s' "----------------"
	for fault in "${FAULTS[@]}"; do printf ' | %-22s' "----------------------"; done
	echo
	for row in "${ROWS[@]}"; do
		printf '%-16s' "$row"
		for fault in "${FAULTS[@]}"; do
			if [ "$kind" = cell ]; then
				v=${CELL[$shape/$row/$fault]:-missing}
			elif [[ ${CELL[$shape/$row/$fault]:-} == rolled-back* ]]; then
				v=${RB[$shape/$row/$fault]:--}
			else
				v="" # no rollback in this cell
			fi
			printf ' | %-22s' "$v"
		done
		echo
	done
}

report() {
	local shape=$1 what row fault
	what="fault matrix"
	[ "$shape" = plain ] || what="fault matrix, native-shaped container (held stopped by its dump; a rollback resumes it)"
	table "$shape" "$what: outcome (source journal), where the container runs, CLI exit" cell
	echo
	for row in "${ROWS[@]}"; do
		for fault in "${FAULTS[@]}"; do
			printf '  %-16s %-13s %s\n' "$row" "$fault" "${DETAIL[$shape/$row/$fault]:-missing}"
		done
	done
	table "$shape" "$what: rollback time in ms (failure seen on the source -> container running again; - : not found in the log)" rollback
}

for shape in "${SHAPES[@]}"; do load "$shape"; done

{
	for shape in "${SHAPES[@]}"; do
		[ -n "${SHOWN[$shape]:-}" ] || [ "$shape" = plain ] || [ "$NATIVE" = required ] || continue
		report "$shape"
	done
	echo
	echo "$ok cells passed, $na n/a, $bad failed or missing"
} | if [ -n "${FM_REPORT:-}" ]; then tee "$FM_REPORT"; else cat; fi

[ "$bad" -eq 0 ]
