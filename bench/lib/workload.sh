# shellcheck shell=bash
# The nm-memhog container on a node: start it, read its state record, ask it
# to forget its largest gap or to verify its heap, stop it.
#
# A hog NAME on node NODE keeps its files in $(fx_ctr_dir NODE NAME). The
# nodes share one filesystem, so after a move the restored hog on the other
# node goes on writing the same state file.

b_hog_dir() { fx_ctr_dir "$1" "$2"; }

# b_hog_field DIR KEY: one field of the hog's state record.
b_hog_field() { sed -n "s/.*\b$2=\([0-9a-z-]*\).*/\1/p" "$1/state" 2>/dev/null; }

# b_hog_start NODE NAME MIB KIND: starts nm-memhog as a nucleus container on
# NODE and waits until its heap is filled; prints "<id> <host pid>".
b_hog_start() {
	local node=$1 name=$2 mib=$3 kind=$4 d dir out
	d=$(fx_dir "$node")
	dir=$(b_hog_dir "$node" "$name")
	mkdir -p "$dir"
	out=$(fx_in "$node" "$NM_BUILD_DIR/tests/workloads/nm-ctr-start" --state-dir "$d/nucleus" --name "$name" \
		--console "$dir/console" -- "$NM_BUILD_DIR/bench/workloads/nm-memhog" --mib "$mib" --kind "$kind" "$dir") ||
		return 1
	# Filling a GiB takes a few seconds on a busy 2-core machine.
	t_wait_until 120 "hog $name fills $mib MiB" test -s "$dir/state" || return 1
	echo "$out"
}

# b_hog_ticks_past DIR COUNT: the hog has ticked past COUNT.
b_hog_ticks_past() {
	local c
	c=$(b_hog_field "$1" count)
	[ -n "$c" ] && [ "$c" -gt "$2" ]
}

# b_hog_request DIR WHAT COUNTER: drops the control file WHAT (reset, check)
# and waits until the hog has served it (COUNTER went up).
b_hog_request() {
	local dir=$1 what=$2 counter=$3 before
	before=$(b_hog_field "$dir" "$counter")
	touch "$dir/$what"
	t_wait_until 60 "hog serves $what" b_hog_counter_above "$dir" "$counter" "$before"
}

b_hog_counter_above() {
	local v
	v=$(b_hog_field "$1" "$2")
	[ -n "$v" ] && [ "$v" -gt "$3" ]
}

# b_hog_stop PID: ends a hog we started or restored, by pid.
b_hog_stop() {
	[ -n "$1" ] || return 0
	kill -KILL "$1" 2>/dev/null || true
}
