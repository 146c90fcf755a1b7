#!/usr/bin/env bash
# The fault matrix: for each phase of a handoff, each fault, injected at that
# exact point on real agents, real CRIU and real sshd. Afterwards (once both
# agents have settled) exactly one copy of the container runs, on the node
# the source's journal says; its counter went on without a gap; nothing is
# left behind (staging, images, stopped trees, CRIU's nftables lock); both
# nodes' `status` agree; and the CLI's exit code and message say what
# happened.
#
#   fault-matrix.sh [--native] [ROW...]   rows: the phases below (default: all)
#   FM_FAULTS="link-cut flip"             only these columns (for debugging)
#
# --native: every cell with a native-shaped nucleus container
# (tests/lib/native.sh) instead of the bare counter: its tasks are held
# stopped by the dump until the commit, so a rollback before the commit
# resumes them in place. Besides what every cell checks, such a cell checks
# what a rollback or a move must keep: the workload's own state (/tmp,
# /dev/shm, the held lock), its address answering from the node it runs on,
# its cgroup holding every task, and nothing of it (state file, address
# reservation, cgroup, veth) left on the other node. Its results go to
# native-<row>.tsv.
#
# Every cell that rolls back reports its rollback time: from the failure
# seen on the source (its agent's first error for the migration, or its
# journaling of rolling-back) to the container running again (its "rolled
# back: ... runs" line), both from the source agent's log. Reported, never
# asserted.
#
# Each row's results go to $FM_RESULTS/<row>.tsv (default
# $NM_BUILD_DIR/fault-matrix), headed by the run they belong to
# (NM_TEST_RUN, else the parent process: one `meson test`);
# fault-report.sh prints them as one table and refuses rows of another run.
# One fixture serves a row; the agents are restarted for every cell.
set -euo pipefail
# shellcheck source=tests/lib/agents.sh
. "$(dirname "$0")/../lib/agents.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"
# shellcheck source=tests/lib/native.sh
. "$(dirname "$0")/../lib/native.sh"

ROWS=(precheck after-dump mid-stream after-verify during-restore after-restored after-committed criu-dump criu-restore)
FAULTS=(link-cut src-kill dst-kill dst-sshd flip restore-fail disk-full criu-kill-start criu-kill-mid criu-kill-end criu-hang)
# CRIU's own faults land on CRIU itself, in the two rows where it runs: the
# source's dump (criu-dump) and the destination's restore (criu-restore).
# The agent holds CRIU at one of its notifications while the fault lands
# (CRIU_HOLD below). start: before CRIU touched anything; mid: the dump has
# seized the tasks and locked their network, no parasite inside yet / the
# restore forked the tree (a half-restored PID 1 of a new pid namespace
# holds CRIU's socket); end: the images are complete and the dumped tasks
# are ended / the restored tree stands stopped, before CRIU answers; hang:
# CRIU is stopped (the dump's at start, the restore's at mid) and never
# continued, until the agent's criu_timeout.
CRIU_ROWS=" criu-dump criu-restore "
# The rows whose fault lands once the dump is complete: its pages crossed
# while CRIU dumped (checked in every cell of them).
STREAM_ROWS=" after-dump mid-stream after-verify during-restore after-restored after-committed "
# Their container is nm-memhog (bench/workloads/memhog.c), whose heap is
# checksummed when filled and re-checked on request: a move or a rollback
# from images must bring back every byte. Random bytes: nothing compresses.
FM_HOG_MIB=${FM_HOG_MIB:-64}
# A short CRIU deadline for these cells, scaled; the settle bound follows.
FM_CRIU_TIMEOUT=$(t_secs 20)
FM_SETTLE_MAX=$((FM_CRIU_TIMEOUT + $(t_secs 90)))

# Where each row stops the handoff. "node point": that node's agent stands
# still right after the point (NM_FAULT=pause-after) while the fault is
# injected.
declare -A PAUSE=(
	[precheck]="n1 precheck"             # journaled, before connecting and OFFER
	[mid-stream]="n1 first-file-sent"    # a file on its way or there, the rest held back
	[after-dump]="n1 dumped"             # the images are complete, the container is gone
	[after-verify]="n2 verified"         # every byte checked, VERIFIED not sent yet
	[during-restore]="n2 dest-restoring" # released at once: the fault lands while CRIU restores
	[after-restored]="n1 got-restored"   # the source heard RESTORED, COMMITTED not journaled
	[after-committed]="n1 committed"     # COMMITTED on disk, COMMIT not sent
)
# mid-stream's stream is slowed down (limits.bandwidth): the source reports
# its progress every 0.5 s, and the first report that counts a whole file
# sent (where it pauses) must come long before the last file. The fault
# lands once that file is on the destination's disk.
MID_BANDWIDTH=${FM_MID_BANDWIDTH:-64K} # ~235 KiB of images: a ~3.5 s stream

# What each cell must end with: the source's outcome (where the container
# runs follows from it), then the CLI exit codes that tell it truthfully.
# A cell that cannot apply says why. Exit 5: the CLI could not learn the
# end (its agent was killed, or the target had not confirmed a committed
# handoff when the CLI was answered).
declare -A EXPECT=(
	[precheck/link-cut]="failed 1"
	[precheck/src-kill]="failed 5"
	[precheck/dst-kill]="done 0"
	[precheck/dst-sshd]="failed 1"
	[precheck/flip]="n/a: nothing is staged before the offer"
	[precheck/restore-fail]="n/a: no restore before the offer"
	[precheck/disk-full]="refused 3"

	[after-dump/link-cut]="rolled-back 4"
	[after-dump/src-kill]="rolled-back 5"
	[after-dump/dst-kill]="rolled-back 4"
	[after-dump/dst-sshd]="rolled-back 4"
	[after-dump/flip]="done 0"
	[after-dump/restore-fail]="n/a: no restore before the images are verified"
	[after-dump/disk-full]="rolled-back 4"

	[mid-stream/link-cut]="rolled-back 4"
	[mid-stream/src-kill]="rolled-back 5"
	[mid-stream/dst-kill]="rolled-back 4"
	[mid-stream/dst-sshd]="rolled-back 4"
	[mid-stream/flip]="done 0"
	[mid-stream/restore-fail]="n/a: no restore before the images are verified"
	[mid-stream/disk-full]="rolled-back 4"

	[after-verify/link-cut]="rolled-back 4"
	[after-verify/src-kill]="rolled-back 5"
	[after-verify/dst-kill]="rolled-back 4"
	[after-verify/dst-sshd]="rolled-back 4"
	[after-verify/flip]="done 0"
	[after-verify/restore-fail]="n/a: the restore starts only at RESTORE (see during-restore)"
	[after-verify/disk-full]="done 0"

	[during-restore/link-cut]="rolled-back 4"
	[during-restore/src-kill]="rolled-back 5"
	[during-restore/dst-kill]="rolled-back 4"
	[during-restore/dst-sshd]="rolled-back 4"
	[during-restore/flip]="done 0"
	[during-restore/restore-fail]="rolled-back 4"
	[during-restore/disk-full]="done 0"

	[after-restored/link-cut]="done 5"
	[after-restored/src-kill]="rolled-back 5"
	[after-restored/dst-kill]="done 0"
	[after-restored/dst-sshd]="done 5"
	[after-restored/flip]="done 0"
	[after-restored/restore-fail]="n/a: the restore is over"
	[after-restored/disk-full]="done 0"

	[after-committed/link-cut]="done 5"
	[after-committed/src-kill]="done 5"
	[after-committed/dst-kill]="done 0"
	[after-committed/dst-sshd]="done 5"
	[after-committed/flip]="done 0"
	[after-committed/restore-fail]="n/a: the restore is over"
	[after-committed/disk-full]="done 0"

	# Outcomes with "|": either is right, by where CRIU was when it died
	# (the note says which): at the restore's end CRIU had answered (the
	# move goes on) or not (the source restores its own).
	[criu-dump/criu-kill-start]="failed 1"
	[criu-dump/criu-kill-mid]="failed 1"
	[criu-dump/criu-kill-end]="rolled-back 4"
	[criu-dump/criu-hang]="failed 1"
	[criu-restore/criu-kill-start]="rolled-back 4"
	[criu-restore/criu-kill-mid]="rolled-back 4"
	[criu-restore/criu-kill-end]="rolled-back|done 4|0"
	[criu-restore/criu-hang]="rolled-back 4"
)
# A native container's dump holds its tasks stopped, never ends them: CRIU
# killed once its images were complete finds them still there, continued
# where they were (the dump failed, nothing to restore).
if [ "${1:-}" = --native ]; then
	EXPECT[criu-dump/criu-kill-end]="failed 1"
fi
# Every other cell of a CRIU row or column does not apply.
for r in "${ROWS[@]}"; do
	for f in "${FAULTS[@]}"; do
		[ -z "${EXPECT[$r/$f]:-}" ] || continue
		if [[ $CRIU_ROWS == *" $r "* ]]; then
			EXPECT[$r/$f]="n/a: this row is for CRIU's own faults (see the row of its phase)"
		else
			EXPECT[$r/$f]="n/a: CRIU's own faults are in the criu-dump and criu-restore rows"
		fi
	done
done

FM_RESULTS=${FM_RESULTS:-$FX_BUILD/fault-matrix}
FM_RUN=$(t_run_id)
FM_SHAPE=plain
if [ "${1:-}" = --native ]; then
	FM_SHAPE=native
	shift
fi
SELECTED=("$@")
[ ${#SELECTED[@]} -gt 0 ] || SELECTED=("${ROWS[@]}")
for r in "${SELECTED[@]}"; do
	[[ " ${ROWS[*]} " == *" $r "* ]] || t_fail "unknown row '$r' (rows: ${ROWS[*]})"
done
mkdir -p "$FM_RESULTS"

fx_nodes_up
if [ "$FM_SHAPE" = native ]; then
	fx_native_node_up n1
	fx_native_node_up n2
fi
FM_GATE=$FX_ROOT/fault-gate
FM_STAGING=$(fx_dir n2)/migrate/staging
FM_CELL=$FX_ROOT/cell

fm_umount() {
	if mountpoint -q "$FM_STAGING" 2>/dev/null; then
		chattr -R -i "$FM_STAGING" 2>/dev/null || true
		umount "$FM_STAGING" 2>/dev/null || umount -l "$FM_STAGING"
	fi
	return 0
}
# The check must be able to fail: a table named as CRIU names its lock is
# seen.
fm_criu_tables_selftest() {
	fx_in n1 nft add table inet CRIU-fm-selftest
	[ -n "$(fm_criu_tables n1 fx_in n1)" ] || t_fail "the nftables check does not see a CRIU table"
	fx_in n1 nft delete table inet CRIU-fm-selftest
}

fm_on_exit() {
	local rc=$?
	set +e
	fm_umount
	(exit "$rc")
	fx_teardown
}
trap fm_on_exit EXIT

# ---- helpers ----

fm_log_size() { stat -c %s "$(fx_agent_log "$1")" 2>/dev/null || echo 0; }
# fm_log_since NODE OFFSET: the node's agent log written since OFFSET.
fm_log_since() { tail -c "+$(($2 + 1))" "$(fx_agent_log "$1")" 2>/dev/null; }

fm_no_active() {
	! fx_nm n1 status --json | grep -q '"active":true' && ! fx_nm n2 status --json | grep -q '"active":true'
}

# fm_mig_doc NODE CONTAINER-ID: the node's status record of the container's
# migration (compact JSON), empty when it has none.
fm_mig_doc() {
	fx_nm "$1" status "$2" --json | jq -c '.result.migrations[0] // empty'
}

fm_staged_images() { find "$FM_STAGING" -mindepth 2 -maxdepth 2 -type d -name images 2>/dev/null | head -n 1; }
# The source's images (after-dump/flip: a byte changed on the source between
# the dump and the stream).
fm_source_images() { find "$(fx_dir n1)/migrate/checkpoints" -mindepth 2 -maxdepth 2 -type d -name images 2>/dev/null | head -n 1; }

# fm_left DIR: what DIR holds, but for the disk-full filler and done/.
fm_left() { find "$1" -mindepth 1 -maxdepth 1 ! -name '.fill*' ! -name 'done' -printf '%f ' 2>/dev/null; }

# The largest image on the destination (flip target), empty if none.
fm_largest_image() {
	local d
	if [ "${FM_FLIP_ON:-n2}" = n1 ]; then d=$(fm_source_images); else d=$(fm_staged_images); fi
	[ -n "$d" ] || return 0
	find "$d" -maxdepth 1 -type f -size +0 -printf '%s %p\n' 2>/dev/null | sort -rn | head -n 1 | cut -d' ' -f2-
}

# Mid-stream: an image is on the destination's disk, metadata.json (the
# last file) is not.
fm_midstream() {
	local d
	d=$(fm_staged_images)
	[ -n "$d" ] && [ ! -e "$(dirname "$d")/metadata.json" ] || return 1
	[ -n "$(fm_largest_image)" ]
}

# fm_flip: complements one byte in the middle of the largest staged image,
# as a failing disk or a stray writer would. Prints what happened.
fm_flip() {
	local f off b nb after out
	f=$(fm_largest_image)
	[ -n "$f" ] || t_fail "no image on ${FM_FLIP_ON:-n2} to flip a byte of"
	off=$(($(stat -c %s "$f") / 2))
	b=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
	nb=$((b ^ 255))
	# shellcheck disable=SC2059 # the format is the byte
	if out=$(printf "\\$(printf '%03o' "$nb")" | dd of="$f" bs=1 seek="$off" count=1 conv=notrunc status=none 2>&1); then
		after=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
		[ "$after" = "$nb" ] || t_fail "the flip of $(basename "$f") did not land"
		echo "flipped"
	else
		after=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
		[ "$after" = "$b" ] || t_fail "a refused write changed $(basename "$f")"
		case $out in
		*"Operation not permitted"*)
			# Sealed, or not even to be opened (the restore's guard: then
			# lsattr cannot open it either).
			if lsattr "$f" 2>/dev/null | grep -q '^[^ ]*i'; then
				echo "refused (immutable)"
			else
				echo "refused (guarded: not sealed, not to be opened)"
			fi
			;;
		*) t_fail "flipping a byte of $(basename "$f") failed oddly: $out" ;;
		esac
	fi
}

# Disk full: the destination's staging is a tmpfs of its own; filling it at
# the fault point leaves no byte for what comes next.
fm_fill_staging() {
	dd if=/dev/zero of="$FM_STAGING/.fill" bs=1M status=none 2>/dev/null || true
	dd if=/dev/zero of="$FM_STAGING/.fill2" bs=4k status=none 2>/dev/null || true
	[ "$(df --output=avail -B1 "$FM_STAGING" | tail -n 1 | tr -d ' ')" -lt 8192 ] ||
		t_fail "could not fill the staging tmpfs"
}

fm_mount_staging() {
	mkdir -p "$FM_STAGING"
	mountpoint -q "$FM_STAGING" && t_fail "$FM_STAGING is mounted already"
	mount -t tmpfs -o "size=$1,mode=0700,uid=0,gid=0" nucleus-fx-staging "$FM_STAGING"
}

# fm_catch_criu NODE: waits for the node's agent to run CRIU, stops it
# (SIGSTOP) and prints its pid. For a fault that may land anywhere in a
# restore (during-restore); the CRIU rows hold CRIU at an exact point
# instead (fm_criu_held).
fm_catch_criu() {
	local p="" deadline=$((SECONDS + $(t_secs 120)))
	until p=$(fx_criu_pid "$1"); do
		[ "$SECONDS" -lt "$deadline" ] || return 1
	done
	kill -STOP "$p" || return 1
	t_wait_until 30 "CRIU $p stops" grep -q '^State:.*T' "/proc/$p/status" || return 1
	echo "$p"
}

# fm_state PID: FM_ST is the process's state letter, "" when it is gone.
fm_state() {
	FM_ST=""
	{ read -r FM_ST <"/proc/$1/stat"; } 2>/dev/null || return 0
	FM_ST=${FM_ST##*) }
	FM_ST=${FM_ST:0:1}
}
fm_gone() {
	fm_state "$1"
	case $FM_ST in "" | Z | X) return 0 ;; esac
	return 1
}

# Where each CRIU cell holds CRIU: the notification at which CRIU waits for
# the agent's answer (NM_FAULT=criu-hold-at, agent/daemon/fault.c), held
# there while the gate file exists. CRIU stands at exactly that point
# whatever the load, however late the test gets to run; the fault lands,
# then the gate goes.
declare -A CRIU_HOLD=(
	[criu-dump/criu-kill-start]=pre-dump           # before it seized anything
	[criu-dump/criu-hang]=pre-dump                 # ditto
	[criu-dump/criu-kill-mid]=query-ext-files      # tasks seized, network locked, no parasite yet
	[criu-dump/criu-kill-end]=post-dump            # images complete, the tasks not ended yet
	[criu-restore/criu-kill-start]=pre-restore     # nothing forked yet
	[criu-restore/criu-kill-mid]=setup-namespaces  # the tree's PID 1 forked, its namespaces made
	[criu-restore/criu-hang]=setup-namespaces      # ditto
	[criu-restore/criu-kill-end]=post-resume       # the tree complete and stopped, stats written, no answer
)

# fm_criu_held NODE OFFSET POINT: waits until NODE's agent (its log since
# OFFSET) holds CRIU at POINT, and prints CRIU's pid. An answer of the CLI
# first ends the wait: the move ended before.
fm_criu_held() {
	local n=$1 off=$2 point=$3 p
	t_wait_until 300 "CRIU on $n held at $point" bash -c "test -s '$FM_CELL/cli.rc' || tail -c +$((off + 1)) '$(fx_agent_log "$n")' | grep -q 'fault injection: CRIU held at $point '" || true
	grep -q "fault injection: CRIU held at $point " <(fm_log_since "$n" "$off") ||
		t_fail "CRIU on $n was never held at $point (CLI: $(cat "$FM_CELL/cli.out" 2>/dev/null))"
	p=$(fx_criu_pid "$n") || t_fail "no CRIU runs on $n while held at $point"
	echo "$p"
}

# fm_dump_end CRIU INIT: CRIU, held where it said its images are complete
# (post-dump), before it ends the tasks: the tasks end (as CRIU ends them
# next), and CRIU is killed before it answers: the moment the issue found,
# made certain.
fm_dump_end() {
	local p=$1 init=$2
	if [ "$FM_SHAPE" = native ]; then
		# A native container's dump leaves its tasks stopped: nothing ends
		# them, CRIU dies holding a complete image set.
		kill -KILL "$p"
		echo "CRIU killed once its images were complete, the tasks held stopped, before it answered"
		return 0
	fi
	# SIGKILL cannot be taken back: the tasks end, though their zombies
	# wait for their tracer (CRIU) to go first.
	kill -KILL "$init"
	kill -KILL "$p"
	t_wait_until 30 "the tasks end" fm_gone "$init" || t_fail "the container's init $init does not end"
	echo "CRIU killed once its images were complete and the tasks had ended, before it answered"
}

# fm_criu_fault ROW FAULT: injects FAULT into CRIU in ROW while the agent
# holds CRIU at the cell's point (CRIU_HOLD); prints a note. The gate goes
# after the fault (fm_cell): a killed CRIU never hears the answer, a stopped
# one never reads it.
fm_criu_fault() {
	local row=$1 fault=$2 node=n1 off=$off1 point p init
	if [ "$row" = criu-restore ]; then
		node=n2
		off=$off2
	fi
	point=${CRIU_HOLD[$row/$fault]}
	p=$(fm_criu_held "$node" "$off" "$point")
	[ "$row" = criu-dump ] && init=$(fm_inits "$name" | head -n 1)
	case $row/$fault in
	*/criu-kill-start)
		kill -KILL "$p"
		echo "CRIU killed as it started (at $point)"
		;;
	criu-dump/criu-hang)
		# Left stopped before it seized anything: a CRIU stopped (or
		# killed) later, with its parasite inside the tasks, takes them
		# with it (DESIGN.md, "CRIU's death, phase by phase").
		kill -STOP "$p"
		echo "CRIU stopped as it started (at $point), never continued"
		;;
	criu-dump/criu-kill-mid)
		# Mid-dump: CRIU has seized the tasks and locked their network,
		# its parasite not inside them yet (a CRIU killed while it puts the
		# parasite in may take the tasks with it: DESIGN.md).
		fm_state "$init"
		[ "$FM_ST" = t ] || t_fail "the container's init is in state '$FM_ST' with its network locked, not seized"
		[ -n "$(fm_criu_tables container nsenter -t "$init" -n)" ] ||
			t_fail "CRIU, held at $point, has not locked the container's network"
		kill -KILL "$p"
		echo "CRIU killed mid-dump (at $point), the tasks seized and their network locked"
		;;
	criu-dump/criu-kill-end) fm_dump_end "$p" "$init" ;;
	criu-restore/*)
		# What CRIU has forked (the tree's PID 1 of a new pid namespace)
		# must not outlive it (checked once the cell settled).
		pgrep -P "$p" >"$FM_CELL/criu-children" 2>/dev/null || true
		[ -s "$FM_CELL/criu-children" ] ||
			t_fail "CRIU on n2, held at $point, has forked nothing"
		case $fault in
		criu-hang)
			kill -STOP "$p"
			echo "CRIU stopped mid-restore (at $point), never continued"
			;;
		criu-kill-mid)
			kill -KILL "$p"
			echo "CRIU killed mid-restore (at $point), its tree half made"
			;;
		criu-kill-end)
			kill -KILL "$p"
			echo "CRIU killed once its tree was complete and stopped (at $point), before it answered"
			;;
		esac
		;;
	*) t_fail "no CRIU fault $fault in $row" ;;
	esac
}

# The CRIU network lock is an nftables table named CRIU (CRIU-<pid> in
# newer versions); none may outlive a dump or a restore.
fm_criu_tables() {
	local where=$1 out
	shift
	out=$("$@" nft list tables) || t_fail "cannot list the nftables tables of $where"
	grep -i 'criu' <<<"$out" | sed "s/^/$where: /" || true
}

# fm_no_sanitizer NODE OFFSET WHEN: no ASan/UBSan report in NODE's agent log
# since OFFSET. (grep reads a file, not a pipe: under pipefail an early match
# would kill the writer, and the pipeline's failure would read as "none".)
fm_no_sanitizer() {
	local pat='ERROR: (Address|Leak)Sanitizer|runtime error:'
	! grep -qE "$pat" <(fm_log_since "$1" "$2") ||
		t_fail "sanitizer report in $1's agent log$3: $(grep -m1 -E 'SUMMARY|runtime error:' <(fm_log_since "$1" "$2"))"
}

# The CLI's answer without its progress lines (a phase name, then padding),
# its tabs (CRIU's log lines quoted in it have them) made spaces: it goes
# into a column of the row's results.
fm_cli_message() {
	grep -vE '^(precheck|dumping|dumped|streaming|restoring|committed|done|rolling-back|rolled-back|failed|refused|lost)( |$)' <<<"$1" |
		head -n 1 | tr '\t' ' ' | cut -c1-160
}

fm_kill_container() {
	local name=$1 id=$2 pid n
	for pid in $(fm_inits "$name"); do kill -KILL "$pid" 2>/dev/null || true; done
	if [ "$FM_SHAPE" = native ]; then
		# Its supervisor (or the agent that restored it) cleans up after it.
		for n in n1 n2; do
			t_wait_until 10 "$name cleaned up on $n" test ! -e "$(fx_native_state "$n")/$id.json" ||
				t_log "$name's state file stays on $n after it was killed"
		done
	fi
	for n in n1 n2; do rm -f "$(fx_dir "$n")/nucleus/$id.json"; done
}

# fm_heap_intact DIR WHEN: the nm-memhog container re-checks its heap now
# against the checksum it took when it filled it.
fm_heap_intact() {
	b_hog_request "$1" check checks || t_fail "the workload does not check its heap $2"
	[ "$(b_hog_field "$1" check_ok)" = 1 ] || t_fail "the workload's heap checksum differs $2"
}

fm_agent_alive() { local p; p=$(fx_agent_pid "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# Back to a clean start for the next cell, whatever the last one did.
fm_reset() {
	local n
	rm -f "$FM_GATE"
	ip -n "$(fx_ns n1)" link show eth0 | grep -q 'state UP' || fx_link_up
	fx_port_open n2 || fx_sshd_start n2
	for n in n1 n2; do
		if fm_agent_alive "$n"; then
			fx_agent_stop "$n" TERM 2>/dev/null || fx_agent_kill "$n"
		fi
	done
	fm_umount
}

# After a failed cell: nothing of it may poison the next one.
fm_wipe() {
	local n
	for n in n1 n2; do
		awk -v d="$(fx_dir "$n")/migrate/criu/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo |
			sort -r | while read -r mnt; do umount -l "$mnt" || true; done
		chattr -R -i "$(fx_dir "$n")/migrate" 2>/dev/null || true
		rm -rf "$(fx_dir "$n")"/migrate/{journal,staging,checkpoints}/* 2>/dev/null || true
	done
}

# ---- the container, plain or native-shaped ----

# fm_agent_start NODE EXTRA-ARGS [ENV=VALUE...]: NODE's agent, with what
# every start of it needs (restarts mid-cell too): for native containers,
# the node's cgroup root, where it makes the cgroups of what it restores.
fm_agent_start() {
	local n=$1 extra=$2 base=""
	shift 2
	[ "$FM_SHAPE" != native ] || base="--set agent.cgroup_root=$(fx_cgroup_root "$n")"
	FX_AGENT_ARGS="$base $extra" fx_agent_start "$n" "$@"
}

# fm_ctr_start NAME: starts the cell's container on n1; prints "<id> <pid>".
# The native one listens on port 7000 of its bridge address (its nm-tcp
# echoes what a client sends).
fm_ctr_start() {
	if [ "$FM_SHAPE" = native ]; then
		# stdio on /dev/null: a detached container's journald stream is
		# refused (exit 3, native-refuse), before any fault could land.
		fx_native_start n1 "$1" --stdio null -- /context/nm-native-work --status /data --listen 7000
	else
		fx_ctr_start n1 "$1"
	fi
}

# fm_vol NAME: the native container's volume (status and tcp records),
# the same path on both nodes (the volume is shared storage).
fm_vol() { echo "$(fx_dir n1)/vol/$1"; }

fm_count() {
	if [ "$FM_SHAPE" = native ]; then fx_native_field n1 "$1" count; else fx_count "$(fx_ctr_dir n1 "$1")"; fi
}
# fm_advances NAME: the counter moves on past where it is now.
fm_advances() {
	local c
	c=$(fm_count "$1")
	t_wait_until 30 "the counter of $1 past $c" bash -c "[ \"\$(sed -n 's/.*\bcount=\([0-9]*\).*/\1/p' '$(fm_status_file "$1")')\" -gt $c ]"
}
fm_status_file() {
	if [ "$FM_SHAPE" = native ]; then echo "$(fm_vol "$1")/status"; else echo "$(fx_ctr_dir n1 "$1")/state"; fi
}

# fm_inits NAME: the host pids of the container's PID 1s, on either node
# of this fixture. A native PID 1 is told from other tests' by its volume
# (device and inode of its /data).
fm_inits() {
	local pid vol
	if [ "$FM_SHAPE" != native ]; then
		fx_ctr_inits "$1"
		return 0
	fi
	vol=$(stat -c %d:%i "$(fm_vol "$1")")
	for pid in $(pgrep -x nm-native-work || true); do
		[ "$(awk '/^NSpid:/ { print $NF }' "/proc/$pid/status" 2>/dev/null)" = 1 ] || continue
		[ "$(stat -L -c %d:%i "/proc/$pid/root/data" 2>/dev/null)" = "$vol" ] && echo "$pid"
	done
	return 0
}
# shellcheck disable=SC2046 # a list of pids
fm_running_copies() { fx_pids_running $(fm_inits "$1"); }
# shellcheck disable=SC2046
fm_stopped_copies() { fx_pids_stopped $(fm_inits "$1"); }

# fm_log_ok NAME: the workload's log counts 1..N without a gap or a
# repeat (the native one keeps it in /tmp of its root tmpfs).
fm_log_ok() {
	local pid
	if [ "$FM_SHAPE" != native ]; then
		fx_log_ok "$(fx_ctr_dir n1 "$1")"
		return
	fi
	pid=$(fm_inits "$1" | head -n 1)
	[ -n "$pid" ] || return 1
	awk 'NR > 1 && prev != "" && prev + 0 != NR - 1 { printf "log line %d is \"%s\"\n", NR - 1, prev > "/dev/stderr"; bad = 1; exit }
	     { prev = $0 } END { exit bad }' "/proc/$pid/root/tmp/nm-log"
}

# fm_pages_way LOG: how the source's dump sent the pages, from its log
# (DESIGN.md, "Pages streamed while CRIU dumps"): "streamed" to the
# target's page server while CRIU dumped, "kept" in its own images, or
# nothing (the dump never got that far).
fm_pages_way() {
	if grep -q "of the page server's session while CRIU dumped" <<<"$1"; then
		echo streamed
	elif grep -q 'the dump kept the pages in its images' <<<"$1"; then
		echo kept
	fi
}

# fm_native_facts ID: FM_ADDR, FM_VETH: the container's bridge address and
# its veth's host end, as n1's supervisor made them.
fm_native_facts() {
	local pid
	FM_ADDR=$(cat "$(fx_native_state n1)/ip-alloc/$1.ip")
	pid=$(jq -r .pid "$(fx_native_state n1)/$1.json")
	FM_VETH=$(nsenter -t "$pid" -n ip -o link | grep -o 'vethc-[0-9a-f]*' | sed -n '1s/vethc-/veth-/p')
	if [ -z "$FM_ADDR" ] || [ -z "$FM_VETH" ]; then t_fail "no address or veth for container $1"; fi
}

# fm_native_checks NAME ID NODE: what a rollback or a move must keep of a
# native container that runs on NODE, and nothing of it on the other node.
fm_native_checks() {
	local name=$1 id=$2 on=$3 off st pid cg p answer
	off=$(fx_other "$on")
	st=$(fx_native_state "$on")/$id.json
	pid=$(jq -r .pid "$st")
	cg=$(jq -r '.cgroup_path // empty' "$st")
	[ -n "$cg" ] || cg=$(fx_cgroup_root "$on")/nucleus-$id
	[ -d "$cg" ] || t_fail "$name's cgroup $cg is not on $on"
	for p in $(fx_tree "$pid"); do
		grep -qx "$p" "$cg/cgroup.procs" || t_fail "task $p of $name is not in its cgroup $cg on $on"
	done
	t_wait_until 10 "$name's own checks pass" grep -q 'tmp=ok shm=ok lock=ok' "$(fm_vol "$name")/status" ||
		t_fail "$name's state on $on: $(cat "$(fm_vol "$name")/status")"
	[ -e "$(fx_native_state "$on")/ip-alloc/$id.ip" ] || t_fail "$name's address is not reserved on $on"
	ip -n "$(fx_ns "$on")" -o link show "$FM_VETH" 2>/dev/null | grep -q "master nucleus0" ||
		t_fail "$FM_VETH is not on $on's nucleus0"
	answer=$(fx_in "$on" timeout "$(t_secs 10)" bash -c "exec 3<>/dev/tcp/$FM_ADDR/7000 && printf nm-probe >&3 && head -c 8 <&3" 2>&1) || true
	t_assert_eq "$answer" nm-probe "$name's answer at $FM_ADDR:7000 from $on"
	# The node it left (or never reached) keeps nothing of it; a source's
	# supervisor cleans up a moment after its tasks ended.
	t_wait_until 10 "no state file of $name on $off" test ! -e "$(fx_native_state "$off")/$id.json" ||
		t_fail "$name's state file is left on $off"
	t_wait_until 10 "no address reservation of $name on $off" test ! -e "$(fx_native_state "$off")/ip-alloc/$id.ip" ||
		t_fail "$name's address is still reserved on $off"
	t_wait_until 10 "no cgroup of $name on $off" test ! -e "$(fx_cgroup_root "$off")/nucleus-$id" ||
		t_fail "$name's cgroup is left on $off"
	! ip -n "$(fx_ns "$off")" link show "$FM_VETH" >/dev/null 2>&1 || t_fail "$FM_VETH is left on $off"
}

# fm_log_ms LINE: the time of an agent log line (ISO 8601, milliseconds
# and Z) in milliseconds since the epoch.
fm_log_ms() { date -d "${1%% *}" +%s%3N; }

# fm_rollback_ms MIG LOG-TEXT: from the failure seen on the source (the
# first of: its core taking the event that turns to rolling-back, an error
# logged for MIG, its journaling of rolling-back) to the container running
# again (its "rolled back: ... runs" line), in milliseconds; "-" when the
# text lacks either.
fm_rollback_ms() {
	local mig=$1 seen run
	seen=$(grep -m1 -E "^[0-9T:.-]+Z .*(error \[$mig\]|\[$mig\] .*(now|->) rolling-back)" <<<"$2" || true)
	run=$(grep -m1 -E "^[0-9T:.-]+Z .*\[$mig\] .*rolled back: .*runs" <<<"$2" || true)
	if [ -z "$seen" ] || [ -z "$run" ]; then
		echo -
		return 0
	fi
	echo $(($(fm_log_ms "$run") - $(fm_log_ms "$seen")))
}

# ---- one cell ----

# fm_cell ROW FAULT: runs in a subshell; its verdict goes to $FM_CELL/result
# as "outcome<TAB>detail", a failure to $FM_CELL/fail.
fm_cell() {
	local row=$1 fault=$2 name id pid0 work c0 c1 rc out where want_where n
	local pnode="" ppoint="" n1env=() n2env=() n1args="" note="" off1 off2 src dst outcome dphase=none cli msg
	local expect_outcome expect_rc
	read -r expect_outcome expect_rc <<<"${EXPECT[$row/$fault]}"
	name=fm-$row-$fault
	work=$(fx_ctr_dir n1 "$name")

	if [ -n "${PAUSE[$row]:-}" ]; then
		read -r pnode ppoint <<<"${PAUSE[$row]}"
		if [ "$pnode" = n1 ]; then n1env+=("NM_FAULT=pause-after=$ppoint" "NM_FAULT_GATE=$FM_GATE"); else n2env+=("NM_FAULT=pause-after=$ppoint" "NM_FAULT_GATE=$FM_GATE"); fi
	fi
	[ "$row" = mid-stream ] && n1args="--set limits.bandwidth=$MID_BANDWIDTH"
	local n2args="" criu_row=""
	if [[ $CRIU_ROWS == *" $row "* ]]; then
		criu_row=1
		n1args="--set agent.criu_timeout=$FM_CRIU_TIMEOUT"
		n2args=$n1args
		# The bare tree's dump is made to end its tasks here (fm_dump_end),
		# as a tree that cannot be held: its pages stay in its images,
		# which its way back is restored from. A held tree streams them
		# (the native row: nothing ends its tasks).
		[ "$row/$fault/$FM_SHAPE" != criu-dump/criu-kill-end/plain ] || n1args+=" --set agent.stream_pages=no"
		local hold=("NM_FAULT=criu-hold-at=${CRIU_HOLD[$row/$fault]}" "NM_FAULT_GATE=$FM_GATE")
		if [ "$row" = criu-dump ]; then n1env+=("${hold[@]}"); else n2env+=("${hold[@]}"); fi
	fi
	if [ "$fault" = restore-fail ]; then
		if [ ${#n2env[@]} -gt 0 ]; then n2env[0]+=",fail=dest-restore"; else n2env+=("NM_FAULT=fail=dest-restore"); fi
	fi
	if [ "$fault" = disk-full ]; then
		# Before the offer: too small for the images from the start (the
		# target refuses). Later: room enough, filled at the fault point.
		if [ "$row" = precheck ]; then fm_mount_staging 4M; else fm_mount_staging 64M; fi
	fi
	off1=$(fm_log_size n1)
	off2=$(fm_log_size n2)
	local off1_cell=$off1
	fm_agent_start n1 "$n1args" "${n1env[@]}"
	fm_agent_start n2 "$n2args" "${n2env[@]}"

	if [ "$FM_SHAPE" = native ]; then
		read -r id pid0 < <(fm_ctr_start "$name")
		fm_native_facts "$id"
	elif [ -n "$criu_row" ]; then
		# A state file left by an earlier run of this cell would pass
		# for the new workload's.
		rm -rf "$work"
		read -r id pid0 < <(b_hog_start n1 "$name" "$FM_HOG_MIB" random) || t_fail "could not start $name"
		fm_heap_intact "$work" "before the move"
	else
		read -r id pid0 < <(fm_ctr_start "$name")
	fi
	fm_advances "$name" || t_fail "$name does not tick"
	c0=$(fm_count "$name")
	if [ -n "$pnode" ] || [ -n "$criu_row" ]; then : >"$FM_GATE"; fi

	rm -f "$FM_CELL/cli.out" "$FM_CELL/cli.rc"
	# Nothing shows whether a native container is under Landlock, which
	# CRIU does not carry: its move needs the operator's consent.
	local move_args=()
	[ "$FM_SHAPE" != native ] || move_args=(--accept-landlock-loss)
	: >"$FM_CELL/cli.rc.start"
	(
		rc=0
		fx_nm n1 migrate "$id" node2 "${move_args[@]}" >"$FM_CELL/cli.out" 2>&1 || rc=$?
		echo "$rc" >"$FM_CELL/cli.rc"
	) &
	cli=$!

	# ---- reach the point ----
	local t_fault
	if [ -n "$criu_row" ]; then
		note=$(fm_criu_fault "$row" "$fault")
		t_fault=$(date +%s)
	elif [ -n "$pnode" ]; then
		local off=$off1
		[ "$pnode" = n2 ] && off=$off2
		# An answer of the CLI first ends the wait: the move ended before.
		t_wait_until 300 "$pnode pauses at $ppoint" bash -c "test -s '$FM_CELL/cli.rc' || tail -c +$((off + 1)) '$(fx_agent_log "$pnode")' | grep -q 'fault injection: paused at $ppoint '" || true
		grep -q "fault injection: paused at $ppoint " <(fm_log_since "$pnode" "$off") ||
			t_fail "$pnode never reached $ppoint (CLI: $(cat "$FM_CELL/cli.out" 2>/dev/null))"
		# The source stands still: the file it sent lands, nothing after it.
		if [ "$row" = mid-stream ]; then
			t_wait_until 60 "the first image on n2" fm_midstream ||
				t_fail "the source paused mid-stream, but n2 has no image, or has them all"
		fi
	fi
	local criu=""
	if [ "$row" = during-restore ] && [ "$fault" != restore-fail ]; then
		# Let CRIU start, hold it (SIGSTOP) mid-restore while the fault
		# lands, then let it go on: the fault really hits a running restore.
		rm -f "$FM_GATE"
		criu=$(fm_catch_criu n2) || t_fail "never saw CRIU restore on n2"
		note="CRIU held mid-restore"
	fi

	# ---- inject ----
	[ -n "$criu_row" ] || t_fault=$(date +%s)
	case $fault in
	link-cut) fx_link_down ;;
	src-kill)
		fx_agent_kill n1
		off1=$(fm_log_size n1)
		fm_agent_start n1 ""
		;;
	dst-kill)
		fx_agent_kill n2
		[ -z "$criu" ] || kill -CONT "$criu" 2>/dev/null || true
		off2=$(fm_log_size n2)
		fm_agent_start n2 ""
		;;
	dst-sshd) fx_sshd_kill_all n2 ;;
	flip)
		# Between the dump and the restore nothing may change the images
		# (DESIGN.md, "Integrity from CRIU's write to CRIU's read"): on the
		# source they are sealed once written; on the target sealed as
		# they arrive, and while CRIU restores (seals lifted for its
		# punching) only CRIU may open its page files.
		if [ "$row" = after-dump ]; then note=$(FM_FLIP_ON=n1 fm_flip); else note=$(fm_flip); fi
		case $row in
		after-dump | mid-stream | during-restore)
			# mid-stream: the largest staged image is a page file the page
			# server wrote (the pages streamed while CRIU dumped), sealed
			# at its exit, guarded before.
			[[ $note == refused* ]] || t_fail "a byte of the images changed between the dump and the restore ($note)"
			# While CRIU restores, the page file is unsealed (consumed) and
			# only the guard stands in the way: that is what is tried here.
			[ "$row" != during-restore ] || [[ $note == *guarded* ]] ||
				t_fail "the page file was still sealed while CRIU restored ($note): no consuming restore under the guard"
			if [ -n "$criu" ]; then
				note+=" while CRIU restored"
			elif [ "$row" = mid-stream ]; then
				note+=" while the other images streamed"
			else
				note+=" while the source held the images"
			fi
			;;
		esac
		;;
	restore-fail) ;;
	disk-full) [ "$row" = precheck ] || fm_fill_staging ;;
	esac
	[ -z "$criu" ] || kill -CONT "$criu" 2>/dev/null || true
	rm -f "$FM_GATE"

	# ---- the CLI's answer, then heal what stays broken ----
	t_wait_until 600 "the CLI answers" test -s "$FM_CELL/cli.rc" || t_fail "the CLI did not answer"
	wait "$cli"
	rc=$(cat "$FM_CELL/cli.rc")
	out=$(cat "$FM_CELL/cli.out")
	msg=$(fm_cli_message "$out")
	case $fault in
	link-cut) fx_link_up ;;
	dst-sshd) fx_sshd_start n2 ;;
	esac

	t_wait_until 300 "both agents settle" fm_no_active || {
		fx_nm n1 status >&2 || true
		fx_nm n2 status >&2 || true
		t_fail "migrations still active long after the fault"
	}
	local settle=$(($(date +%s) - t_fault))
	if [ "$row/$fault" = during-restore/flip ] && [[ $note == *guarded* ]]; then
		grep -q 'refused open(s) of the staged page files' <(fm_log_since n2 "$off2") ||
			t_fail "n2's agent does not report the refused open of a page file"
	fi
	if [ -n "$criu_row" ]; then
		# Bounded: CRIU's deadline and the rollback after it, never "until
		# someone kills the command".
		[ "$settle" -le "$FM_SETTLE_MAX" ] || t_fail "settled after ${settle}s (bound ${FM_SETTLE_MAX}s)"
		note+="; settled in ${settle}s"
	fi

	# ---- how the pages went ----
	# Every container here can be held stopped by its dump, so with
	# stream_pages on (the default) its pages cross while CRIU dumps. In
	# the rows whose fault lands after the dump, the source must say so:
	# these cells are then the faults of a page-streamed move.
	local pages
	pages=$(fm_pages_way "$(fm_log_since n1 "$off1_cell")")
	if [[ $STREAM_ROWS == *" $row "* ]]; then
		[ "$pages" = streamed ] || t_fail "the dump finished, but its pages were not streamed (${pages:-no word of them})"
	fi
	[ -z "$pages" ] || note+="${note:+; }pages $pages"

	# ---- both agents alive, no sanitizer report ----
	fm_no_sanitizer n1 "$off1" ""
	fm_no_sanitizer n2 "$off2" ""
	for n in n1 n2; do fm_agent_alive "$n" || t_fail "$n's agent died"; done

	# ---- what the journals say ----
	src=$(fm_mig_doc n1 "$id") || t_fail "cannot ask n1's agent for its status"
	[ -n "$src" ] || t_fail "n1 has no record of the migration"
	outcome=$(jq -r '.outcome // .phase' <<<"$src")
	dst=$(fm_mig_doc n2 "$id") || t_fail "cannot ask n2's agent for its status"
	if [ -n "$dst" ]; then
		dphase=$(jq -r '.phase' <<<"$dst")
		t_assert_eq "$(jq -r '.mig' <<<"$dst")" "$(jq -r '.mig' <<<"$src")" "the migration n2 knows of"
	fi
	case $outcome in
	done)
		want_where=n2
		[ "$dphase" = running ] || t_fail "n1 says done, n2 says '$dphase'"
		;;
	rolled-back | failed | refused)
		want_where=n1
		[ "$dphase" = aborted ] || [ "$dphase" = none ] || t_fail "n1 says $outcome, n2 says '$dphase'"
		;;
	*) t_fail "the source ended '$outcome' ($src)" ;;
	esac

	if [ "$row/$fault" = criu-restore/criu-kill-end ]; then
		# Where CRIU was when it died decides the outcome; say which.
		case $outcome in
		done) note+=" (it had answered: the move went on)" ;;
		rolled-back) note+=" (before it answered: the source resumed its tree)" ;;
		esac
	fi

	# ---- exactly one copy, where the journal says, state continued ----
	where=$(fx_ctr_where "$id")
	t_assert_eq "$where" "$want_where" "where $name runs (source outcome $outcome)"
	t_assert_eq "$(fm_running_copies "$name")" 1 "running copies of $name"
	t_assert_eq "$(fm_stopped_copies "$name")" 0 "stopped copies of $name"
	# Held stopped by its dump and resumed in place (ckpt_tree_holdable),
	# not restored from its images: the same process runs at home. Where
	# CRIU itself was killed, the tasks need not be there to resume (at
	# criu-dump/criu-kill-end they had ended); then the images bring them
	# back, and the report says which way it went.
	if [ "$FM_SHAPE" != native ] && [ "$outcome" = rolled-back ]; then
		if [ -z "$criu_row" ]; then
			t_assert_eq "$(fm_inits "$name")" "$pid0" "the pid of $name at home after the rollback"
		elif [ "$(fm_inits "$name")" = "$pid0" ]; then
			note+="; resumed in place"
		else
			note+="; restored from its images (a new process)"
		fi
	fi
	fm_advances "$name" || t_fail "$name stopped ticking"
	c1=$(fm_count "$name")
	[ "$c1" -ge "$c0" ] || t_fail "the counter of $name went back: $c0 -> $c1"
	if [ "$FM_SHAPE" != native ] && [ -n "$criu_row" ]; then
		fm_heap_intact "$work" "after the fault (outcome $outcome)"
		note+="; heap checksum intact"
	else
		fm_log_ok "$name" || t_fail "the log of $name has a gap or a repeat"
	fi
	[ "$FM_SHAPE" != native ] || fm_native_checks "$name" "$id" "$want_where"

	# ---- the rollback time (reported, never asserted) ----
	local rollback=-
	if [ "$outcome" = rolled-back ]; then
		rollback=$(fm_rollback_ms "$(jq -r .mig <<<"$src")" "$(fm_log_since n1 "$off1")")
		[ "$rollback" != - ] || t_log "no failure or no 'rolled back' line in n1's log for this cell"
	fi

	# ---- nothing left behind ----
	local left k
	for n in n1 n2; do
		k=$(pgrep -P "$(fx_agent_pid "$n")" -x nm-criu-keeper || true)
		[ -z "$k" ] || t_fail "a CRIU keeper is left on $n: $k"
	done
	# What CRIU had forked when it died (a half-restored tree) is gone,
	# unless CRIU had answered and it is the copy that runs now.
	if [ -s "$FM_CELL/criu-children" ] && [ "$outcome" != "done" ]; then
		while read -r pid; do
			[ ! -d "/proc/$pid" ] || t_fail "CRIU's child $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)) outlived it"
		done <"$FM_CELL/criu-children"
	fi
	for n in n1 n2; do
		left=$(fm_left "$(fx_dir "$n")/migrate/staging")
		[ -z "$left" ] || t_fail "staging left on $n: $left"
		left=$(fm_left "$(fx_dir "$n")/migrate/checkpoints")
		[ -z "$left" ] || t_fail "images left on $n: $left"
		left=$(fm_left "$(fx_dir "$n")/migrate/journal")
		[ -z "$left" ] || t_fail "active journal records left on $n: $left"
		# A restore's root tmpfs (native) is unmounted whatever ended it.
		left=$(awk -v d="$(fx_dir "$n")/migrate/criu/" 'index($5, d) == 1 { printf "%s ", $5 }' /proc/self/mountinfo)
		[ -z "$left" ] || t_fail "mounts left on $n: $left"
		local tables
		tables=$(fm_criu_tables "$n" fx_in "$n")
		[ -z "$tables" ] || t_fail "CRIU's nftables lock left: $tables"
	done
	local pid tables
	pid=$(fm_inits "$name")
	tables=$(fm_criu_tables "container" nsenter -t "$pid" -n)
	[ -z "$tables" ] || t_fail "CRIU's nftables lock left in the container's namespace: $tables"

	# ---- the CLI told the truth ----
	fm_says() { [ "$outcome" = "$1" ] && grep -q "$2" <<<"$out"; }
	case $rc in
	0) fm_says "done" '^moved ' || t_fail "exit 0 but outcome $outcome: $msg" ;;
	4) fm_says rolled-back 'restored and still runs here' || t_fail "exit 4 but outcome $outcome: $msg" ;;
	1) fm_says failed 'not touched' || t_fail "exit 1 but outcome $outcome: $msg" ;;
	3) fm_says refused 'NOT moved (refused)' || t_fail "exit 3 but outcome $outcome: $msg" ;;
	5)
		grep -qE 'IN DOUBT|went away before answering' <<<"$out" || t_fail "exit 5 without saying so: $msg"
		! grep -q '^IN DOUBT: -$' <<<"$out" || t_fail "exit 5 without a reason: $msg"
		;;
	*) t_fail "CLI exit $rc: $msg" ;;
	esac
	! grep -qE '^(NOT moved[^:]*|IN DOUBT): *-?$' <<<"$out" || t_fail "the CLI gives no reason: $msg"
	[[ "|$expect_outcome|" == *"|$outcome|"* ]] || t_fail "outcome $outcome, expected $expect_outcome (CLI exit $rc: $msg)"
	[[ "|$expect_rc|" == *"|$rc|"* ]] || t_fail "CLI exit $rc, expected $expect_rc ($msg)"

	# ---- the agents stop cleanly: no leak report at exit ----
	fm_kill_container "$name" "$id"
	fx_agent_stop n1
	fx_agent_stop n2
	fm_no_sanitizer n1 "$off1" " at exit"
	fm_no_sanitizer n2 "$off2" " at exit"

	# The agents are this subshell's children: stop them here, where they
	# can be reaped at once.
	fm_reset
	printf '%s %s exit %s\t%s%s\t%s\n' "$outcome" "$where" "$rc" "$msg" \
		"${note:+ [$note]}" "$rollback" >"$FM_CELL/result"
}

# ---- the rows ----

fm_criu_tables_selftest

failed=0
for row in "${SELECTED[@]}"; do
	results=$FM_RESULTS/$row.tsv
	[ "$FM_SHAPE" != native ] || results=$FM_RESULTS/native-$row.tsv
	printf '# run %s\n' "$FM_RUN" >"$results"
	for fault in ${FM_FAULTS:-${FAULTS[*]}}; do
		want=${EXPECT[$row/$fault]}
		if [[ $want == n/a* ]]; then
			printf '%s\t%s\tn/a\t%s\n' "$row" "$fault" "${want#n/a: }" >>"$results"
			t_log "-- $row / $fault: n/a (${want#n/a: })"
			continue
		fi
		t_log "== $row / $fault (expect: $want)"
		rm -rf "$FM_CELL"
		mkdir -p "$FM_CELL"
		start=$(date +%s)
		# A subshell: a failed cell ends there, and the row goes on. Not as
		# an if condition, which would turn errexit off inside.
		set +e
		(
			set -eE
			trap 'printf "line %s failed: %s\n" "$LINENO" "$BASH_COMMAND" >>"$FM_CELL/fail"' ERR
			t_fail() {
				printf '%s\n' "$*" >"$FM_CELL/fail"
				printf '[%s] FAIL: %s\n' "$T_NAME" "$*" >&2
				exit 1
			}
			fm_cell "$row" "$fault"
		)
		cell_rc=$?
		set -e
		if [ "$cell_rc" -eq 0 ]; then
			IFS=$'\t' read -r verdict detail rollback <"$FM_CELL/result"
			printf '%s\t%s\tok\t%s\t%s\t%s\n' "$row" "$fault" "$verdict" "$detail" "$rollback" >>"$results"
			t_log "ok: $row / $fault: $verdict (rollback ${rollback} ms; cell $(($(date +%s) - start)) s)"
		else
			failed=$((failed + 1))
			printf '%s\t%s\tFAIL\t%s\n' "$row" "$fault" "$( (cat "$FM_CELL/fail" 2>/dev/null || echo "exited") | tr '\n\t' '  ' | cut -c1-300)" >>"$results"
			t_log "FAILED: $row / $fault"
			for n in n1 n2; do
				t_log "--- $n agent log (tail)"
				tail -n 40 "$(fx_agent_log "$n")" >&2 || true
			done
			fm_reset || true
			fm_wipe
			for pid in $(fm_inits "fm-$row-$fault"); do kill -KILL "$pid" 2>/dev/null || true; done
			rm -f "$(fx_dir n1)"/nucleus/*.json "$(fx_dir n2)"/nucleus/*.json
			continue
		fi
	done
done

if [ "$FM_SHAPE" = native ]; then
	NM_TEST_RUN=$FM_RUN "$(dirname "$0")/fault-report.sh" --native-only "${SELECTED[@]}"
else
	NM_TEST_RUN=$FM_RUN "$(dirname "$0")/fault-report.sh" "${SELECTED[@]}"
fi
[ "$failed" -eq 0 ] || t_fail "$failed cell(s) failed"
