# shellcheck shell=bash
# A move that fails at the restore on the target, and the way back: how long
# the container stays down after the failure, ours against the baseline.
#
#   ours      n2's agent runs with NM_FAULT=fail=dest-restore
#             (agent/daemon/fault.c): dump, stream and verify as usual, then
#             the restore fails before CRIU runs; the source rolls back.
#             The failure is the target's log line "fault injection:
#             failing dest-restore"; the source seeing it is its
#             "-> rolling-back" line (both stamped in ms by the agents).
#   baseline  what an operator does when `criu restore` fails on node 2:
#             `criu restore` of the images still on node 1 (the baseline's
#             dump ended the tree). Its failure is the moment the images
#             have arrived (no restore is tried on node 2; the operator's
#             own reaction is counted as zero).
#
# The container runs again when the workload ticks again: the end of its
# largest gap (its own clock), after a reset made just before the move.
#   rollback  failure -> running again on n1
#   seen      failure -> the source knows (ours; the baseline's is 0)
#   back      failure -> the mover says the container runs again (ours: its
#             log; the baseline: `criu restore -d` returned)
#   downtime  the whole freeze, dump to running again

B_ROLLBACK_COLUMNS="run	mib	kind	method	status	rollback_s	seen_s	back_s	downtime_s	total_s	check_ok	note"

# b_log_stamp FILE OFFSET PATTERN: epoch seconds of the last line matching
# PATTERN after byte OFFSET of an agent log; empty when none.
b_log_stamp() {
	local line
	line=$(tail -c +"$(($2 + 1))" "$1" | grep -E "$3" | tail -n1)
	[ -n "$line" ] || return 0
	date -u -d "${line%% *}" +%s.%N 2>/dev/null
}

b_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# b_rollback_baseline PID NAME: dump and transfer as baseline_migrate, then
# the restore on n1; prints fail_at= seen_at=.
b_rollback_baseline() {
	local pid=$1 name=$2 criu img1 img2 t
	criu=$(t_criu)
	img1=$(b_img_dir n1)/$name
	img2=$(b_img_dir n2)/$name
	mkdir -m 0700 "$img1" || return 1
	b_mem_exec n1 "$criu" dump -t "$pid" -D "$img1" -o dump.log --network-lock nftables ||
		{ baseline__log_tail "$img1/dump.log" "criu dump"; return 1; }
	tar -C "$img1" -c . | fx_ssh n1 n2 "mkdir -m 0700 '$img2' && tar -C '$img2' -x" ||
		{ b_log "baseline: transfer failed"; return 1; }
	t=$(b_now)
	b_mem_exec n1 "$criu" restore -D "$img1" -o restore.log -d --network-lock nftables \
		--pidfile "$img1.restored.pid" ||
		{ baseline__log_tail "$img1/restore.log" "criu restore on n1"; return 1; }
	echo "fail_at=$t"
	echo "seen_at=$t"
	echo "back_at=$(b_now)"
	echo "pid=$(cat "$img1.restored.pid")"
}

# b_rollback_once FILE RUN MIB KIND METHOD: one measured failed move.
b_rollback_once() {
	local file=$1 run=$2 mib=$3 kind=$4 method=$5 name id pid dir out rc t0 t1 fail seen c gap end ok note="" newpid
	local ticks back
	name="rb-$mib-$kind-$run-$method"
	b_log "run $run: $mib MiB $kind failing at the target's restore, by $method"
	if ! read -r id pid < <(b_hog_start n1 "$name" "$mib" "$kind"); then
		b_row "$file" "$run" "$mib" "$kind" "$method" fail - - - - - - "workload did not start"
		return 0
	fi
	dir=$(b_hog_dir n1 "$name")
	ticks=$(fx_start_ticks "$pid")
	sleep 1
	b_hog_request "$dir" reset resets || b_die "the workload does not answer its reset file"
	t0=$(b_now)
	case $method in
	baseline) out=$(b_rollback_baseline "$pid" "$name") ;;
	ours) out=$(ours_failed_move n1 n2 "$id") ;;
	esac
	rc=$?
	t1=$(b_now)
	fail=$(b_kv fail_at "$out") seen=$(b_kv seen_at "$out") back=$(b_kv back_at "$out")
	if [ "$rc" -ne 0 ] || [ -z "$fail" ]; then
		b_row "$file" "$run" "$mib" "$kind" "$method" fail - - - - "$(b_elapsed "$t0" "$t1")" - \
			"no rollback measured (exit $rc)"
		[ "$(fx_start_ticks "$pid")" = "$ticks" ] && b_hog_stop "$pid"
		b_rollback_cleanup "$method" "$id" "$name" "$(b_kv pid "$out")"
		return 0
	fi
	c=$(b_hog_field "$dir" count)
	t_wait_until 60 "the workload ticks on n1 again" b_hog_ticks_past "$dir" $((c + 5)) ||
		note="workload did not tick after the rollback"
	gap=$(b_hog_field "$dir" max_gap_us)
	end=$(b_hog_field "$dir" max_gap_end_us)
	b_gap_in_window "$end" "$t0" "$t1" || note="${note:+$note; }largest gap is outside the move window"
	b_hog_request "$dir" check checks && ok=$(b_hog_field "$dir" check_ok) || ok=-
	[ "$ok" = 1 ] || note="${note:+$note; }heap checksum mismatch after the rollback"
	b_row "$file" "$run" "$mib" "$kind" "$method" "$([ -z "$note" ] && echo ok || echo suspect)" \
		"$(awk -v e="$end" -v f="$fail" 'BEGIN { printf "%.3f", e / 1e6 - f }')" \
		"$(awk -v s="${seen:-$fail}" -v f="$fail" 'BEGIN { printf "%.3f", s - f }')" \
		"$(awk -v s="$back" -v f="$fail" 'BEGIN { if (s == "") print "-"; else printf "%.3f", s - f }')" \
		"$(awk -v g="$gap" 'BEGIN { printf "%.3f", g / 1e6 }')" "$(b_elapsed "$t0" "$t1")" "$ok" "${note:--}"
	newpid=$(b_kv pid "$out")
	b_rollback_cleanup "$method" "$id" "$name" "$newpid"
}

# b_rollback_cleanup METHOD ID NAME PID: ends the container wherever it is.
b_rollback_cleanup() {
	case $1 in
	baseline)
		[ -n "$4" ] && b_hog_stop "$4"
		rm -f "$(b_img_dir n1)/$3.restored.pid"
		baseline_cleanup n1 n2 "$3"
		rm -f "$(fx_dir n1)/nucleus/$2.json"
		;;
	ours) ours_cleanup n1 n2 "$2" ;;
	esac
}
