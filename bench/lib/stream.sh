# shellcheck shell=bash
# Streaming throughput: the same checkpoint directory sent from n1 to n2 by
# OpenSSH with its defaults (`tar -c | ssh n2 'cat >/dev/null'`) and by our
# image stream. The directory is a real CRIU checkpoint of an nm-memhog
# container of the chosen size and kind, dumped once onto n1's tmpfs.

B_STREAM_COLUMNS="run	kind	method	status	payload_bytes	seconds	mb_per_s	wire_bytes	note"

b_stream_dir() { echo "$(b_img_dir n1)/stream-$1"; }

# b_stream_prepare KIND MIB: dumps a MIB MiB hog of KIND into
# $(b_stream_dir KIND); prints the payload size in bytes.
b_stream_prepare() {
	local kind=$1 mib=$2 name dir id pid
	name="stream-src-$kind"
	dir=$(b_stream_dir "$kind")
	read -r id pid < <(b_hog_start n1 "$name" "$mib" "$kind") || b_die "stream source workload did not start"
	mkdir -m 0700 "$dir"
	fx_in n1 "$(t_criu)" dump -t "$pid" -D "$dir" -o dump.log --network-lock nftables ||
		b_die "criu dump of the stream source failed (log: $dir/dump.log)"
	# Only our two-session row sends the halves.
	[ "$OURS_OK" = 1 ] && b_stream_halves "$dir"
	b_tree_bytes "$dir"
}

# b_stream_halves DIR: DIR-half1 and DIR-half2, which together hold DIR's
# bytes: its largest file (the pages) cut in two, the other files in the
# first half. Two sessions, each sending one half at the same time, are the
# most that striping one image set over two sessions could give here: no
# reordering, each session with its own sender process, sshd and writer.
b_stream_halves() {
	local dir=$1 big size half f
	big=$(find "$dir" -maxdepth 1 -type f -printf '%s %f\n' | sort -n | tail -n1 | cut -d' ' -f2)
	size=$(stat -c %s "$dir/$big")
	half=$((size / 2 / 4096 * 4096))
	mkdir -m 0700 "$dir-half1" "$dir-half2"
	head -c "$half" "$dir/$big" >"$dir-half1/$big"
	tail -c $((size - half)) "$dir/$big" >"$dir-half2/$big"
	for f in "$dir"/*; do
		[ "$(basename "$f")" = "$big" ] || cp "$f" "$dir-half1/"
	done
}

# b_zstd_ratio DIR: how well the directory compresses (zstd -1, one thread),
# for the report only; "n/a" without the zstd tool.
b_zstd_ratio() {
	local raw z
	command -v zstd >/dev/null || { echo n/a; return; }
	raw=$(b_tree_bytes "$1")
	z=$(tar -C "$1" -c . | zstd -1 -T1 -c | wc -c)
	awk -v r="$raw" -v z="$z" 'BEGIN { printf "%.2f", r / z }'
}

b_stream_move() {
	case $1 in
	baseline) baseline_stream n1 n2 "$2" ;;
	ours) ours_stream n1 n2 "$2" ;;
	ours-2) ours_stream_pair n1 n2 "$2-half1" "$2-half2" ;;
	ours-sender) ours_stream_sender n1 n2 "$2" ;;
	ours-local) ours_stream_local n2 "$2" ;;
	ours-thread) OURS_STREAM_FLAGS="$OURS_STREAM_FLAGS --thread" ours_stream n1 n2 "$2" ;;
	*) b_die "unknown method $1" ;;
	esac
}

# b_stream_once FILE RUN KIND METHOD DIR BYTES: one timed stream; appends a row.
b_stream_once() {
	local file=$1 run=$2 kind=$3 method=$4 dir=$5 bytes=$6 t0 t1 w0 w1 rc secs
	b_log "run $run: stream $kind by $method"
	w0=$(b_wire_bytes n1)
	t0=$(b_now)
	b_stream_move "$method" "$dir"
	rc=$?
	t1=$(b_now)
	w1=$(b_wire_bytes n1)
	secs=$(b_elapsed "$t0" "$t1")
	if [ "$rc" -ne 0 ]; then
		b_row "$file" "$run" "$kind" "$method" fail "$bytes" "$secs" - $((w1 - w0)) "exit $rc"
		return 0
	fi
	b_row "$file" "$run" "$kind" "$method" ok "$bytes" "$secs" \
		"$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", b / s / 1e6 }')" $((w1 - w0)) -
}
