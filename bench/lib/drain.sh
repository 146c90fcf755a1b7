# shellcheck shell=bash
# A node drain: COUNT nm-memhog containers of MIB MiB on n1, all moved to
# n2. Ours: one `nucleus-migrate drain --to node2` on n1 (parallelism: the
# CLI's default, capped by limits.parallel).
# Baseline: the hand-made move (lib/baseline.sh) of each container, one
# after the other, as an operator's loop would. Measured the same way:
#   wall      from the drain's start to its end (the last container running
#             on n2), the operator's wait
#   worst     the largest downtime any one container saw (its own largest
#             tick gap after a reset made just before the drain)
#   median    the median of the containers' downtimes

B_DRAIN_COLUMNS="run	count	mib	method	status	wall_s	worst_downtime_s	median_downtime_s	moved	note"

# b_drain_start COUNT MIB RUN METHOD: starts the containers; prints
# "<name> <id> <pid> <start ticks>" lines.
b_drain_start() {
	local count=$1 mib=$2 run=$3 method=$4 i name id pid
	for ((i = 1; i <= count; i++)); do
		name="drain-$run-$method-$i"
		read -r id pid < <(b_hog_start n1 "$name" "$mib" mixed) || return 1
		echo "$name $id $pid $(fx_start_ticks "$pid")"
	done
}

# b_drain_baseline LIST: moves each "<name> <id> <pid>" of LIST in turn;
# prints how many moved, and the restored pids on a line of their own.
b_drain_baseline() {
	local name id pid ticks out n=0 pids=()
	while read -r name id pid ticks; do
		out=$(baseline_migrate n1 n2 "$pid" "$name") || continue
		n=$((n + 1))
		pids+=("$(b_kv pid "$out")")
	done <<<"$1"
	echo "$n"
	echo "${pids[*]}"
}

# b_drain_once FILE RUN COUNT MIB METHOD: one measured drain; appends a row.
b_drain_once() {
	local file=$1 run=$2 count=$3 mib=$4 method=$5 list name id pid t0 t1 out rc moved gaps="" g end dir note=""
	local extra_pids="" c
	b_log "run $run: drain of $count x $mib MiB by $method"
	if ! list=$(b_drain_start "$count" "$mib" "$run" "$method"); then
		b_row "$file" "$run" "$count" "$mib" "$method" fail - - - - "workloads did not start"
		b_drain_cleanup "$method" "$list" ""
		return 0
	fi
	sleep 1
	while read -r name id pid ticks; do
		b_hog_request "$(b_hog_dir n1 "$name")" reset resets || b_die "a workload does not answer its reset file"
	done <<<"$list"
	t0=$(b_now)
	case $method in
	ours) out=$(ours_drain n1 n2) ;;
	baseline) out=$(b_drain_baseline "$list") ;;
	esac
	rc=$?
	t1=$(b_now)
	moved=$(head -n1 <<<"$out")
	extra_pids=$(sed -n 2p <<<"$out")
	[ "$rc" -eq 0 ] && [ "${moved:-0}" = "$count" ] || note="moved ${moved:-0} of $count (exit $rc)"
	while read -r name id pid ticks; do
		dir=$(b_hog_dir n1 "$name")
		c=$(b_hog_field "$dir" count)
		t_wait_until 30 "$name ticks on n2" b_hog_ticks_past "$dir" $((c + 5)) ||
			{ note="${note:+$note; }$name did not tick after the drain"; continue; }
		g=$(b_hog_field "$dir" max_gap_us)
		end=$(b_hog_field "$dir" max_gap_end_us)
		b_gap_in_window "$end" "$t0" "$t1" || note="${note:+$note; }$name: largest gap outside the drain"
		gaps+="$g"$'\n'
	done <<<"$list"
	b_row "$file" "$run" "$count" "$mib" "$method" "$([ -z "$note" ] && echo ok || echo suspect)" \
		"$(b_elapsed "$t0" "$t1")" \
		"$(sort -n <<<"$gaps" | awk 'NF { v = $1 } END { printf "%.3f", v / 1e6 }')" \
		"$(sort -n <<<"$gaps" | awk 'NF { a[++n] = $1 } END { if (!n) { print "-"; exit }
			printf "%.3f", ((n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) / 1e6 }')" \
		"${moved:-0}" "${note:--}"
	b_drain_cleanup "$method" "$list" "$extra_pids"
}

# b_drain_cleanup METHOD LIST PIDS: ends every container of the drain on
# either node and removes what the moves left.
b_drain_cleanup() {
	local method=$1 name id pid ticks p
	for p in $3; do b_hog_stop "$p"; done
	while read -r name id pid ticks; do
		[ -n "$name" ] || continue
		# Still the original (a move that never happened): end it; a pid
		# reused by someone else is left alone.
		[ "$(fx_start_ticks "$pid")" = "$ticks" ] && b_hog_stop "$pid"
		case $method in
		ours) ours_cleanup n1 n2 "$id" ;;
		baseline)
			baseline_cleanup n1 n2 "$name"
			rm -f "$(fx_dir n1)/nucleus/$id.json"
			;;
		esac
	done <<<"$2"
}
