# shellcheck shell=bash
# The breadth workload (tests/workloads/breadth.c) in the fixture: start it
# as a container, ask it to check its objects, read its report.

# shellcheck source=tests/lib/fixture.sh
. "$(dirname "${BASH_SOURCE[0]}")/fixture.sh"

BREADTH=$FX_BUILD/tests/workloads/nm-breadth

# breadth_report_wait DIR ROUND: waits for the workload's report of that round.
breadth_report_wait() {
	t_wait_until 30 "report round $2 in $1" bash -c "head -n1 '$1/report' 2>/dev/null | grep -qx 'round $2' && grep -qx end '$1/report'"
}

# breadth_check PID DIR ROUND: asks the workload (its init's host PID) for a
# round of checks; prints the report's lines ("ok CLASS: ..." or
# "FAIL CLASS: ...").
breadth_check() {
	kill -USR1 "$1" || return 1
	breadth_report_wait "$2" "$3" || return 1
	sed -e '1d' -e '/^end$/d' "$2/report"
}

# breadth_start NODE STATE_DIR DIR NAME CLASSES: a container on NODE running
# the workload with these classes (comma-separated), registered in STATE_DIR;
# prints "<id> <pid>" once it has built its objects.
breadth_start() {
	local node=$1 state=$2 dir=$3 name=$4 classes=$5 out
	mkdir -p "$dir"
	out=$(fx_in "$node" "$FX_BUILD/tests/workloads/nm-ctr-start" --state-dir "$state" --name "$name" \
		--console "$dir/console" -- "$BREADTH" "$dir" --only "$classes") || return 1
	fx_track_pid "${out#* }"
	t_wait_until 10 "workload $name builds its objects" test -s "$dir/ready" || return 1
	grep -q '^ready' "$dir/ready" || { cat "$dir/ready" >&2; return 1; }
	echo "$out"
}

# breadth_all_ok REPORT CLASSES: every class (comma-separated) reports ok;
# otherwise prints the lines that do not, and fails.
breadth_all_ok() {
	local report=$1 c bad=""
	for c in ${2//,/ }; do
		grep -q "^ok $c: " <<<"$report" || bad+="$(grep "^[A-Za-z]* $c: " <<<"$report" || echo "no check of $c"); "
	done
	[ -z "$bad" ] || { echo "$bad"; return 1; }
}
