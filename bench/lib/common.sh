# shellcheck shell=bash
# What every bench script shares: the two-node fixture, clocks, counters,
# the tmpfs image areas and the teardown that removes them.
#
# The fixture (tests/lib/fixture.sh) gives two nodes n1 and n2 (network
# namespaces joined by a veth pair, each with its own sshd). Bench adds one
# tmpfs per node for checkpoint images, mounted under the fixture root and
# unmounted before the fixture's own teardown deletes that root.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export NM_SOURCE_DIR=${NM_SOURCE_DIR:-$(cd "$BENCH_DIR/.." && pwd)}
export NM_BUILD_DIR=${NM_BUILD_DIR:-$NM_SOURCE_DIR/build}
T_NAME=bench

# shellcheck source=tests/lib/fixture.sh
. "$NM_SOURCE_DIR/tests/lib/fixture.sh"

BENCH_MOUNTS=()

b_log() { printf '[bench] %s\n' "$*" >&2; }
b_die() {
	printf '[bench] error: %s\n' "$*" >&2
	exit 1
}

# b_now: wall clock in seconds with microseconds, without a fork.
b_now() { echo "$EPOCHREALTIME"; }

# b_elapsed START [END]: seconds between two b_now values, 3 decimals.
b_elapsed() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.3f", b - a }'; }

# b_wire_bytes NODE: bytes received plus bytes sent on NODE's link so far.
# /proc/net/dev shows the network namespace of the reader.
b_wire_bytes() { fx_in "$1" awk -F'[: ]+' '$2 == "eth0" { printf "%.0f\n", $3 + $11 }' /proc/net/dev; }

b_img_dir() { echo "$(fx_dir "$1")/img"; }

# b_nodes_up MAX_MIB: the fixture's two nodes, each with a tmpfs for images
# big enough for a MAX_MIB checkpoint (twice, for slack).
b_nodes_up() {
	local max_mib=$1 n d
	fx_nodes_up
	trap 'b_teardown' EXIT
	for n in n1 n2; do
		d=$(b_img_dir "$n")
		mkdir -p "$d"
		mount -t tmpfs -o "size=$((max_mib * 2 + 512))m,mode=0700" "nm-bench-$n" "$d" ||
			b_die "cannot mount a tmpfs on $d"
		BENCH_MOUNTS+=("$d")
	done
}

# b_teardown: unmounts our tmpfs areas, then hands over to the fixture's
# teardown (which kills what the fixture tracked and deletes its root) with
# the exit status unchanged.
b_teardown() {
	local rc=$? d
	for d in "${BENCH_MOUNTS[@]}"; do
		umount "$d" 2>/dev/null || umount -l "$d" 2>/dev/null || b_log "could not unmount $d"
	done
	BENCH_MOUNTS=()
	(exit "$rc")
	fx_teardown
}

# b_require: the binaries bench needs, built.
b_require() {
	local f
	for f in bench/workloads/nm-memhog tests/workloads/nm-ctr-start; do
		[ -x "$NM_BUILD_DIR/$f" ] || b_die "$NM_BUILD_DIR/$f is missing: build first (meson setup build && ninja -C build)"
	done
	[ "$(id -u)" -eq 0 ] || b_die "needs root (CRIU, network namespaces, sshd)"
}

# b_ssh_cipher: what OpenSSH negotiates between the nodes with its defaults.
b_ssh_cipher() {
	fx_ssh n1 n2 -v true 2>&1 | sed -n 's/.*kex: client->server cipher: \([^ ]*\) MAC: \([^ ]*\).*/\1 (MAC \2)/p' | head -n1
}

b_ssh_kex() { fx_ssh n1 n2 -v true 2>&1 | sed -n 's/.*kex: algorithm: //p' | head -n1; }

# b_tree_bytes DIR: the sum of the sizes of the files under DIR.
b_tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }
