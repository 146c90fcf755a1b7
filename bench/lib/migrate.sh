# shellcheck shell=bash
# One measured migration of an nm-memhog container from n1 to n2, by the
# baseline or by us, measured the same way for both:
#   downtime  the workload's own largest tick gap after the move (it was
#             told to forget older gaps just before)
#   total     wall clock around the whole move (dump start to the container
#             running on n2; for post-copy, until the last page arrived), as
#             an operator waits for it
#   wire      bytes through n1's link, both ways, during the move
#   stages    dump / transfer / restore times, as the mover reports them
#   check     the heap's checksum still matches after the move
#   memory    at the sizes chosen (B_MEM_SIZES), the most memory the move
#             added on each node above the container (lib/memory.sh), and
#             the tmpfs part of it at that moment

B_MIGRATE_COLUMNS="run	mib	kind	method	status	downtime_s	total_s	wire_bytes	img_bytes	dump_s	xfer_s	restore_s	check_ok	src_extra_bytes	dst_extra_bytes	src_shmem_bytes	dst_shmem_bytes	note"
# Sizes (MiB) whose moves are sampled for memory (bench/run migrate --mem-sizes).
B_MEM_SIZES=${B_MEM_SIZES:-1024}

# b_kv KEY TEXT: the value of KEY=value in key=value lines.
b_kv() { sed -n "s/^$1=//p" <<<"$2" | head -n1; }

# b_migrate_row FILE FIELDS...: one tab-separated row.
b_row() {
	local file=$1
	shift
	(
		IFS=$'\t'
		echo "$*"
	) >>"$file"
}

# b_move METHOD ID PID NAME: runs the mover; prints its key=value lines.
b_move() {
	case $1 in
	baseline) baseline_migrate n1 n2 "$3" "$4" ;;
	ours) ours_migrate n1 n2 "$2" default ;;
	# A post-copy move is over when the last page has left the source: its
	# stalls until then are downtime too, and the source's memory is held.
	ours-lazy) ours_migrate n1 n2 "$2" lazy && ours_lazy_wait n1 n2 "$2" ;;
	*) b_die "unknown method $1" ;;
	esac
}

b_move_cleanup() {
	case $1 in
	baseline) baseline_cleanup n1 n2 "$3" ;;
	ours | ours-lazy) ours_cleanup n1 n2 "$2" ;;
	esac
}

# b_gap_in_window END_US T0 T1: the gap ended inside the move (with 2 s of
# slack after it), so it is the move's and not some earlier hiccup.
b_gap_in_window() {
	awk -v e="$1" -v a="$2" -v b="$3" 'BEGIN { exit !(e / 1e6 >= a && e / 1e6 <= b + 2) }'
}

# b_mem_wanted MIB: whether moves of MIB MiB are sampled for memory.
b_mem_wanted() { [[ ",$B_MEM_SIZES," == *",$1,"* ]] && [ "${#B_MEM_CG[@]}" -gt 0 ]; }

# b_migrate_once FILE RUN MIB KIND METHOD: one measured move; appends a row.
b_migrate_once() {
	local file=$1 run=$2 mib=$3 kind=$4 method=$5 name id pid dir out rc t0 t1 w0 w1 newpid c gap end ok note=""
	local mem=0 sx=- dx=- ss=- ds=-
	name="hog-$mib-$kind-$run-$method"
	b_log "run $run: $mib MiB $kind by $method"
	if ! read -r id pid < <(b_hog_start n1 "$name" "$mib" "$kind"); then
		b_row "$file" "$run" "$mib" "$kind" "$method" fail - - - - - - - - - - - - "workload did not start"
		return 0
	fi
	dir=$(b_hog_dir n1 "$name")
	# Let the machine settle after the fill, then measure only this move.
	sleep 1
	b_hog_request "$dir" reset resets || b_die "the workload does not answer its reset file"

	b_mem_wanted "$mib" && mem=1
	[ "$mem" = 1 ] && b_mem_start
	w0=$(b_wire_bytes n1)
	t0=$(b_now)
	out=$(b_move "$method" "$id" "$pid" "$name")
	rc=$?
	t1=$(b_now)
	w1=$(b_wire_bytes n1)
	if [ "$mem" = 1 ]; then
		b_mem_stop
		read -r sx ss < <(b_mem_extra n1)
		read -r dx ds < <(b_mem_extra n2)
	fi
	newpid=$(b_kv pid "$out")
	if [ "$rc" -ne 0 ] || [ -z "$newpid" ]; then
		b_row "$file" "$run" "$mib" "$kind" "$method" fail - "$(b_elapsed "$t0" "$t1")" $((w1 - w0)) - - - - - \
			- - - - "mover failed (exit $rc)"
		b_hog_stop "$pid"
		b_move_cleanup "$method" "$id" "$name"
		return 0
	fi
	fx_track_pid "$newpid"

	c=$(b_hog_field "$dir" count)
	t_wait_until 30 "the workload ticks on n2" b_hog_ticks_past "$dir" $((c + 5)) || note="workload did not tick after the move"
	gap=$(b_hog_field "$dir" max_gap_us)
	end=$(b_hog_field "$dir" max_gap_end_us)
	b_gap_in_window "$end" "$t0" "$t1" || note="${note:+$note; }largest gap is outside the move window"
	b_hog_request "$dir" check checks && ok=$(b_hog_field "$dir" check_ok) || ok=-
	[ "$ok" = 1 ] || note="${note:+$note; }heap checksum mismatch after the move"

	b_row "$file" "$run" "$mib" "$kind" "$method" "$([ -z "$note" ] && echo ok || echo suspect)" \
		"$(awk -v g="$gap" 'BEGIN { printf "%.3f", g / 1e6 }')" "$(b_elapsed "$t0" "$t1")" $((w1 - w0)) \
		"$(b_kv img_bytes "$out" | grep . || echo -)" \
		"$(b_kv dump_s "$out" | grep . || echo -)" "$(b_kv xfer_s "$out" | grep . || echo -)" \
		"$(b_kv restore_s "$out" | grep . || echo -)" "$ok" "$sx" "$dx" "$ss" "$ds" "${note:--}"
	b_hog_stop "$newpid"
	b_move_cleanup "$method" "$id" "$name"
}
