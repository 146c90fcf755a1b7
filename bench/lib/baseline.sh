# shellcheck shell=bash
# The hand-made baseline: exactly what an operator types.
#
#   node 1:  criu dump -t PID -D DIR --network-lock nftables      (leave-running off)
#            tar -C DIR -c . | ssh node2 'mkdir DIR2 && tar -C DIR2 -x'
#   node 2:  criu restore -D DIR2 -d --network-lock nftables
#
# with the installed criu (t_criu), OpenSSH's default cipher (no -c), images
# on tmpfs on both sides. CRIU writes its logs into the image directory, as
# it does for an operator who passes -o; they travel with the images. CRIU
# runs in the node's memory cgroup (lib/memory.sh), as our agent does.

# baseline_migrate FROM TO PID NAME: moves the process tree PID from node
# FROM to node TO. Prints key=value lines: dump_s, xfer_s, restore_s, pid
# (host pid of the restored tree), img_bytes (size of the image files).
# Returns non-zero, with CRIU's log tail on stderr, when a stage fails.
baseline_migrate() {
	local from=$1 to=$2 pid=$3 name=$4 criu img1 img2 pidfile t0 t1 t2 t3
	criu=$(t_criu)
	img1=$(b_img_dir "$from")/$name
	img2=$(b_img_dir "$to")/$name
	pidfile=$(fx_ctr_dir "$to" "$name").restored.pid
	mkdir -m 0700 "$img1" || return 1

	t0=$(b_now)
	b_mem_exec "$from" "$criu" dump -t "$pid" -D "$img1" -o dump.log --network-lock nftables ||
		{ baseline__log_tail "$img1/dump.log" "criu dump"; return 1; }
	t1=$(b_now)
	tar -C "$img1" -c . | fx_ssh "$from" "$to" "mkdir -m 0700 '$img2' && tar -C '$img2' -x" ||
		{ b_log "baseline: transfer failed"; return 1; }
	t2=$(b_now)
	b_mem_exec "$to" "$criu" restore -D "$img2" -o restore.log -d --network-lock nftables --pidfile "$pidfile" ||
		{ baseline__log_tail "$img2/restore.log" "criu restore"; return 1; }
	t3=$(b_now)

	echo "dump_s=$(b_elapsed "$t0" "$t1")"
	echo "xfer_s=$(b_elapsed "$t1" "$t2")"
	echo "restore_s=$(b_elapsed "$t2" "$t3")"
	echo "pid=$(cat "$pidfile")"
	echo "img_bytes=$(b_tree_bytes "$img1")"
}

baseline__log_tail() {
	b_log "baseline: $2 failed; last lines of $1:"
	tail -n 15 "$1" >&2 2>/dev/null
}

# baseline_stream FROM TO DIR: the same bytes an operator would send, into
# `ssh peer 'cat >/dev/null'` with OpenSSH's defaults.
baseline_stream() {
	tar -C "$3" -c . | fx_ssh "$1" "$2" 'cat >/dev/null'
}

# baseline_cleanup FROM TO NAME: removes both image directories of a run.
baseline_cleanup() {
	rm -rf "$(b_img_dir "$1")/${3:?}" "$(b_img_dir "$2")/${3:?}" "$(fx_ctr_dir "$2" "${3:?}").restored.pid"
}
