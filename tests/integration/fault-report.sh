#!/usr/bin/env bash
# Prints the fault matrix (phase x fault -> outcome) from the rows that
# fault-matrix.sh wrote, then each cell's detail (the CLI's first line).
# Fails when a row is missing, a cell failed, or a row is of another run
# than this one (NM_TEST_RUN, else the parent process: under `meson test`
# the rows and this report are children of the same run; the files of an
# earlier run stay in the build directory and must not pass for this one).
#
#   fault-report.sh [ROW...]     default: every row
set -uo pipefail
# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

FX_BUILD=${NM_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}
FM_RESULTS=${FM_RESULTS:-$FX_BUILD/fault-matrix}
ROWS=(precheck after-dump mid-stream after-verify during-restore after-restored after-committed criu-dump criu-restore)
FAULTS=(link-cut src-kill dst-kill dst-sshd flip restore-fail disk-full criu-kill-start criu-kill-mid criu-kill-end criu-hang)
[ $# -gt 0 ] && ROWS=("$@")

declare -A CELL DETAIL
bad=0 ok=0 na=0
run=$(t_run_id)
for row in "${ROWS[@]}"; do
	f=$FM_RESULTS/$row.tsv
	if [ ! -s "$f" ]; then
		t_log "row $row: no results ($f)"
		bad=$((bad + 1))
		continue
	fi
	read -r head <"$f"
	row_run=none
	[[ $head != "# run "* ]] || row_run=${head#"# run "}
	if [ "$row_run" != "$run" ]; then
		t_log "row $row: the results in $f are of another run ($row_run; this run: $run): run the row again (meson test --suite fault)"
		bad=$((bad + 1))
		continue
	fi
	while IFS=$'\t' read -r r fault status verdict detail; do
		[ "${r:0:1}" != "#" ] || continue
		case $status in
		ok) CELL[$r/$fault]=$verdict DETAIL[$r/$fault]=$detail ok=$((ok + 1)) ;;
		n/a) CELL[$r/$fault]="n/a" DETAIL[$r/$fault]="n/a: $verdict" na=$((na + 1)) ;;
		*) CELL[$r/$fault]="FAIL" DETAIL[$r/$fault]="FAIL: $verdict" bad=$((bad + 1)) ;;
		esac
	done <"$f"
done

{
	echo
	echo "fault matrix: outcome (source journal), where the container runs, CLI exit"
	printf '%-16s' "phase \\ fault"
	for fault in "${FAULTS[@]}"; do printf ' | %-22s' "$fault"; done
	echo
	printf '%-16s' "----------------"
	for fault in "${FAULTS[@]}"; do printf ' | %-22s' "----------------------"; done
	echo
	for row in "${ROWS[@]}"; do
		printf '%-16s' "$row"
		for fault in "${FAULTS[@]}"; do printf ' | %-22s' "${CELL[$row/$fault]:-missing}"; done
		echo
	done
	echo
	for row in "${ROWS[@]}"; do
		for fault in "${FAULTS[@]}"; do
			printf '  %-16s %-13s %s\n' "$row" "$fault" "${DETAIL[$row/$fault]:-missing}"
		done
	done
	echo
	echo "$ok cells passed, $na n/a, $bad failed or missing"
} | if [ -n "${FM_REPORT:-}" ]; then tee "$FM_REPORT"; else cat; fi

[ "$bad" -eq 0 ]
