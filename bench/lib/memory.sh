# shellcheck shell=bash
# What a move costs each node in memory, above the container itself.
#
# Each node gets a memory cgroup of its own (cgroup v2 when its memory
# controller is there, else the v1 memory hierarchy), holding the node's
# mover: its sshd (so every session, `dial-stdio` and the baseline's remote
# `tar x` land in it), its agent (so the keeper and CRIU do), and the
# baseline's `criu dump` / `criu restore`. The kernel charges a page of
# tmpfs to the cgroup of the task that first wrote it, so the images and
# the staging written on the bench tmpfs are inside the count, as are the
# movers' heaps, page tables and socket and pipe buffers.
#
# A sampler reads, every B_MEM_PERIOD seconds during a move: the cgroup's
# usage, its shmem (tmpfs) part, and the resident anonymous memory of the
# container's own tasks that live in it (on the target CRIU restores the
# container inside the cgroup; those tasks are told apart by their pid
# namespace, which is not the node's). The move's extra memory on the node
# is the largest (usage - container) over the move, less the usage just
# before it.

B_MEM_PERIOD=${B_MEM_PERIOD:-0.05}
B_MEM_CG=()  # NODE=DIR: each node's cgroup (none: memory is not measured)
B_MEM_V=     # 1 or 2
B_MEM_ROOT=
B_MEM_SAMPLERS=()

b_mem_cg() {
	local n
	for n in "${B_MEM_CG[@]}"; do
		[ "${n%%=*}" = "$1" ] && { echo "${n#*=}"; return 0; }
	done
	return 1
}

# b_mem_root: sets B_MEM_ROOT (where a node cgroup goes) and B_MEM_V.
b_mem_root() {
	local v2
	v2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
	if [ -n "$v2" ] && grep -qw memory "$v2/cgroup.controllers" 2>/dev/null; then
		B_MEM_V=2 B_MEM_ROOT=$v2
	elif [ -f /sys/fs/cgroup/memory/memory.usage_in_bytes ]; then
		B_MEM_V=1 B_MEM_ROOT=/sys/fs/cgroup/memory
	else
		return 1
	fi
}

# b_mem_setup: a memory cgroup per node with the node's sshd in it. Call
# after b_nodes_up; the agents join in ours_setup (b_mem_join).
b_mem_setup() {
	local root n cg
	b_mem_root || { b_log "no memory cgroup: memory is not measured"; return 0; }
	root=$B_MEM_ROOT
	[ "$B_MEM_V" = 2 ] && ! grep -qw memory "$root/cgroup.subtree_control" &&
		{ echo +memory >"$root/cgroup.subtree_control" || { b_log "cannot enable the memory controller"; return 0; }; }
	FX_TEARDOWN_HOOKS+=(b_mem_teardown)
	for n in n1 n2; do
		cg=$root/nm-bench-$FX_TAG-$n
		mkdir -p "$cg" || { b_log "cannot make $cg: memory is not measured"; B_MEM_CG=(); return 0; }
		B_MEM_CG+=("$n=$cg")
		b_mem_join "$n" "$(fx_sshd_pid "$n")"
	done
}

# b_mem_join NODE PID: PID (and what it starts from now on) into NODE's cgroup.
b_mem_join() {
	local cg
	cg=$(b_mem_cg "$1") || return 0
	echo "$2" >"$cg/cgroup.procs" || b_log "cannot move pid $2 into $cg"
}

# b_mem_exec NODE CMD...: runs CMD in NODE's network namespace and cgroup.
b_mem_exec() {
	local n=$1 cg
	shift
	cg=$(b_mem_cg "$n") || { fx_in "$n" "$@"; return; }
	# shellcheck disable=SC2016 # expanded by the inner shell
	fx_in "$n" sh -c 'echo $$ >"$1" && shift && exec "$@"' sh "$cg/cgroup.procs" "$@"
}

b_mem_teardown() {
	local cg
	[ -n "$B_MEM_ROOT" ] || return 0
	for cg in "$B_MEM_ROOT/nm-bench-$FX_TAG-"*; do
		[ -d "$cg" ] || continue
		# A cgroup empties a moment after its last task died.
		t_wait_until 5 "cgroup $cg removed" rmdir "$cg" 2>/dev/null || b_log "left behind: $cg"
	done
	B_MEM_CG=()
}

# The sampler forks nothing: on this 2-core machine a loop of `$(...)` and
# `sleep` every 50 ms took ~0.2 CPU-seconds per second per node (measured),
# CPU the moves it watches need. Functions set B_MEM_SAMPLE instead of
# printing, and the pause is a read that times out.

# b_mem__usage CG: sets B_MEM_U and B_MEM_S (usage, shmem) in bytes.
b_mem__usage() {
	local cg=$1 k v
	if [ "$B_MEM_V" = 2 ]; then
		read -r B_MEM_U <"$cg/memory.current"
	else
		read -r B_MEM_U <"$cg/memory.usage_in_bytes"
	fi
	B_MEM_S=0
	while read -r k v; do
		[ "$k" = shmem ] && { B_MEM_S=$v; break; }
	done <"$cg/memory.stat"
}

# b_mem__ctr_rss CG: sets B_MEM_RSS, the resident anonymous bytes of the
# tasks in CG that live in another pid namespace than ours (a restored
# container).
b_mem__ctr_rss() {
	local cg=$1 p k v
	B_MEM_RSS=0
	while read -r p; do
		[ "/proc/$p/ns/pid" -ef /proc/self/ns/pid ] && continue
		# A task may end between the two reads.
		{ while read -r k v _; do
			[ "$k" = RssAnon: ] && { B_MEM_RSS=$((B_MEM_RSS + v * 1024)); break; }
		done <"/proc/$p/status"; } 2>/dev/null
	done <"$cg/cgroup.procs"
}

# b_mem__sample CG: sets B_MEM_SAMPLE to "usage shmem container".
b_mem__sample() {
	b_mem__usage "$1"
	b_mem__ctr_rss "$1"
	B_MEM_SAMPLE="$B_MEM_U $B_MEM_S $B_MEM_RSS"
}

# b_mem__sample_loop CG OUT: "usage shmem container" lines until killed.
b_mem__sample_loop() {
	local cg=$1 out=$2 pause
	# A pipe opened for reading and writing never has data: reading it
	# with a timeout is a sleep without a fork.
	exec {pause}<> <(:)
	while :; do
		b_mem__sample "$cg"
		echo "$B_MEM_SAMPLE" >>"$out"
		read -r -t "$B_MEM_PERIOD" -u "$pause" _ || :
	done
}

# b_mem_start: samples each node once, then keeps sampling in the background.
b_mem_start() {
	local e n cg f
	B_MEM_SAMPLERS=()
	for e in "${B_MEM_CG[@]}"; do
		n=${e%%=*} cg=${e#*=}
		f=$(b_mem_file "$n")
		# The first sample, before the move starts, is the base.
		b_mem__sample "$cg"
		echo "$B_MEM_SAMPLE" >"$f"
		b_mem__sample_loop "$cg" "$f" &
		B_MEM_SAMPLERS+=($!)
		fx_track_pid "$!"
	done
}

b_mem_file() { echo "${TMPDIR:-/tmp}/nm-bench-mem-$FX_TAG-$1"; }

# b_mem_stop: ends the samplers.
b_mem_stop() {
	local p
	for p in "${B_MEM_SAMPLERS[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	B_MEM_SAMPLERS=()
}

# b_mem_extra NODE: "extra_bytes shmem_at_peak" of the last sampled move:
# the largest (usage - container) less the first sample's; "- -" without
# samples.
b_mem_extra() {
	local f
	f=$(b_mem_file "$1")
	[ -s "$f" ] || { echo "- -"; return; }
	awk 'NF == 3 { x = $1 - $3; if (NR == 1) base = x; if (!seen || x > peak) { peak = x; sh = $2; seen = 1 } }
		END { if (!seen) { print "- -"; exit } printf "%d %d\n", peak - base, sh }' "$f"
}

# b_mem_describe: what the memory figures count here, for the record.
b_mem_describe() {
	if [ "${#B_MEM_CG[@]}" -eq 0 ]; then
		echo "none (memory not measured)"
	else
		echo "cgroup v$B_MEM_V memory controller, one cgroup per node (sshd, agent, CRIU, the baseline's criu), sampled every ${B_MEM_PERIOD}s"
	fi
}
