# shellcheck shell=bash
# The slot where nucleus-migrate plugs into the benchmark.
#
# The driver (bench/run) does all the measuring itself, the same way for the
# baseline and for us: downtime from the workload's own largest tick gap,
# total time from its wall clock around the call, bytes on the wire from the
# nodes' link counters, heap integrity from the workload's checksum. These
# functions only have to move things. Contract:
#
#   ours_available
#       Returns 0 when our tool can run here. Otherwise prints ONE line saying
#       why (the report quotes it) and returns non-zero; the driver then
#       reports the baseline alone and says that ours is missing.
#
#   ours_setup
#       Called once after the nodes are up (fx_nodes_up plus a tmpfs per node
#       at $(b_img_dir n1), $(b_img_dir n2), free for staging): start an agent
#       on each node (fx_in NODE ...; fx_track_pid the pids so the fixture's
#       teardown ends them), provision keys and known_hosts from
#       $(fx_dir NODE)/ssh, the HMAC cluster key, and so on.
#
#   ours_migrate FROM TO ID MODE
#       Moves nucleus container ID (registered in $(fx_dir FROM)/nucleus) from
#       node FROM to node TO; MODE is "default" or "lazy" (post-copy). Returns
#       once the container runs on TO. Prints key=value lines on stdout:
#         pid=N          required: host pid of the restored container init
#                        (the destination's state file has it)
#         dump_s=S xfer_s=S restore_s=S
#                        optional: stage times, for the report's split (with
#                        overlapping stages, give each stage's own span)
#       Returns non-zero on failure (the run is reported as failed, never
#       dropped).
#
#   ours_lazy_wait FROM TO ID
#       After ours_migrate ... lazy: blocks until post-copy is over (every
#       page reached TO, the source released the container's memory).
#       Returns non-zero if it failed. The driver counts the workload's
#       stalls until then as downtime and this time in the total.
#
#   ours_stream FROM TO DIR
#       Sends every file of the checkpoint directory DIR (on FROM) through our
#       image stream to TO, where the bytes are received (and verified, as in
#       a migration) and then discarded or staged on TO's tmpfs. Returns 0
#       once TO has everything. The driver times the call.
#
#   ours_stream_pair FROM TO DIR1 DIR2
#       Two such streams at once, each in its own SSH session; returns 0
#       once TO has both. The driver times the call.
#
#   ours_stream_sender FROM TO DIR
#       Our sender alone: DIR's files through the same image stream into
#       `cat >/dev/null` on TO, the far side the baseline has (nothing
#       checked or staged there); returns 0 once the bytes have left and
#       the channel closed. The driver times the call.
#
#   ours_stream_local TO DIR
#       Our stream without SSH: the same sender and receiver, joined by the
#       receiver's unix socket on TO (the nodes share the machine's files
#       and cores); every byte read, hashed, compressed, checked and staged
#       as by ours_stream, none encrypted. The driver times the call.
#
#   ours_drain FROM TO
#       Drains node FROM (every running container) to TO at the tool's
#       default parallelism and makes FROM accept moves again afterwards.
#       Prints the number of containers moved; non-zero when the drain
#       itself failed.
#
#   ours_agent_restart NODE [ENV=VALUE...]
#       Restarts NODE's mover with ENV in its environment (none: as
#       ours_setup starts it). bench/run rollback uses it to make the
#       target fail its restore: NM_FAULT=fail=dest-restore.
#
#   ours_failed_move FROM TO ID
#       A move of ID that TO fails at the restore (after ours_agent_restart
#       TO NM_FAULT=fail=dest-restore); returns once FROM rolled back, non-
#       zero when it did not. Prints fail_at=T (when TO failed), seen_at=T
#       (when FROM knew) and, optionally, back_at=T (when FROM says the
#       container runs again), epoch seconds.
#
#   ours_cleanup FROM TO ID
#       Removes whatever a run left (staging directories, journals) so that
#       the next run starts clean. Must not fail when there is nothing.

# Our tool, as an operator runs it: one nucleus-agent per node, provisioned
# by deploy/nucleus-provision (the fixture does that), started with its
# work directory (journal, checkpoints, staging, CRIU's logs) on the node's
# bench tmpfs, as the baseline's images are; `nucleus-migrate migrate ID
# node2 --json` against the local agent. The image stream alone is
# tests/tools/nm-xfer-send (libssh2, the agent's sender) over the fixture's
# sshd into `nucleus-agent dial-stdio`, relaying to tests/tools/nm-xfer-serve
# (the agent's receiver: checks and stages every byte on n2's tmpfs), with
# what two agents negotiate (OURS_STREAM_FLAGS: zstd, FILE_MAC).

# shellcheck source=tests/lib/agents.sh
. "$NM_SOURCE_DIR/tests/lib/agents.sh"

OURS_BIN=(agent/nucleus-agent agent/nucleus-migrate tests/tools/nm-xfer-send tests/tools/nm-xfer-serve)
# The agents' peer sessions: a busy 2-core machine must not look like a cut link.
OURS_IDLE_TIMEOUT=${OURS_IDLE_TIMEOUT:-30}
# Extra agent settings for experiments (each a section.key=value).
OURS_AGENT_SET=${OURS_AGENT_SET:-}
# What two agents of this build agree on in HELLO, for the bare stream.
OURS_STREAM_FLAGS=${OURS_STREAM_FLAGS:---zstd --file-mac}

ours_available() {
	local f
	for f in "${OURS_BIN[@]}"; do
		[ -x "$NM_BUILD_DIR/$f" ] || { echo "$NM_BUILD_DIR/$f is not built"; return 1; }
	done
	[ -x "$NM_SOURCE_DIR/deploy/nucleus-provision" ] || { echo "deploy/nucleus-provision is missing"; return 1; }
	return 0
}

ours__work_dir() { echo "$(b_img_dir "$1")/agent"; }

# ours__agent_start NODE [ENV=VALUE...]: the provisioned agent, its work
# directory on the node's tmpfs, in the node's memory cgroup (the keeper and
# CRIU follow it there); waits until it answers on its socket. ENV such as
# NM_FAULT=fail=dest-restore (agent/daemon/fault.c) goes into its
# environment.
ours__agent_start() {
	local n=$1 pid s sets=()
	shift
	for s in $OURS_AGENT_SET; do sets+=(--set "$s"); done
	echo "---- start $(date +%T.%N)" >>"$(fx_agent_log "$n")"
	nsenter --net="/run/netns/$(fx_ns "$n")" -- env "$@" "$NM_BUILD_DIR/agent/nucleus-agent" --config "$(fx_conf "$n")" \
		--log-level info --set "agent.work_dir=$(ours__work_dir "$n")" \
		--set "ssh.idle_timeout=$OURS_IDLE_TIMEOUT" "${sets[@]}" >>"$(fx_agent_log "$n")" 2>&1 &
	pid=$!
	echo "$pid" >"$(fx_dir "$n")/agent.fxpid"
	fx_track_pid "$pid"
	b_mem_join "$n" "$pid"
	t_wait_until 10 "agent on $n" fx_agent_up "$n" || {
		tail -n 20 "$(fx_agent_log "$n")" >&2
		b_log "the agent on $n did not come up"
		return 1
	}
}

ours_setup() {
	ours__agent_start n1 && ours__agent_start n2
}

# ours_agent_restart NODE [ENV=VALUE...]: NODE's agent again, with ENV (none:
# as ours_setup starts it).
ours_agent_restart() {
	local n=$1 pid
	pid=$(fx_agent_pid "$n")
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null
		t_wait_until 30 "agent on $n exits" bash -c "! kill -0 $pid 2>/dev/null" || return 1
	fi
	ours__agent_start "$@"
}

# ours_migrate FROM TO ID MODE: prints pid=, the stage times and img_bytes
# from the agent's result document. restore_s is RESTORE to RUNNING: CRIU's
# restore with every task stopped, then COMMIT and the resume.
ours_migrate() {
	local from=$1 to=$2 id=$3 mode=$4 out res lazy=()
	[ "$mode" = lazy ] && lazy=(--lazy)
	out=$(fx_nm "$from" migrate "$id" "$(fx_node_name "$to")" --json "${lazy[@]}")
	res=$(grep '"event": *"result"' <<<"$out" | tail -n1)
	if [ -z "$res" ] || [ "$(jq -r '.result.outcome' <<<"$res")" != done ]; then
		b_log "ours: migration failed: $(jq -r '.result.error // .result.outcome' <<<"$res" 2>/dev/null)"
		tail -n 5 "$(fx_agent_log "$from")" "$(fx_agent_log "$to")" >&2
		return 1
	fi
	jq -r '.result as $r | $r.stages as $s |
		"pid=\($r.new_pid)",
		"img_bytes=\($r.bytes)",
		"downtime_agent_s=\(($r.downtime_ms // 0) / 1000)",
		(if $s.dump_ms then "dump_s=\($s.dump_ms / 1000)" else empty end),
		(if $s.stream_ms then "xfer_s=\($s.stream_ms / 1000)" else empty end),
		(if $s.restore_ms then "restore_s=\(($s.restore_ms + ($s.commit_ms // 0)) / 1000)" else empty end)' <<<"$res"
}

# ours_lazy_wait FROM TO ID: post-copy is over when neither agent has the
# move in flight any more: the source's migration ends (DONE) only after the
# target said RUNNING, which it says after the last page arrived, and
# ours_migrate waits for that result already. So this only checks it.
ours_lazy_wait() {
	local from=$1 to=$2 n
	for n in "$from" "$to"; do
		t_wait_until 120 "post-copy over on $n" ours__no_migration "$n" || return 1
	done
}

ours__no_migration() {
	[ "$(fx_nm "$1" status --json | jq '[.. | objects | select(.active == true)] | length')" = 0 ]
}

# ours__stream_tree DIR: the checkpoint directory layout our stream sends
# (images/ and metadata.json) over the same bytes: hard links to every file
# of DIR (a bare CRIU image directory), made once.
ours__stream_tree() {
	local dir=$1 t=$1.nm f
	if [ ! -d "$t" ]; then
		mkdir -m 0700 "$t" "$t/images"
		for f in "$dir"/*; do ln "$f" "$t/images/$(basename "$f")"; done
		printf '{"container_id":"bench","container_name":"bench-stream"}' >"$t/metadata.json"
	fi
	echo "$t"
}

OURS_STREAM_SERVE_PID=
OURS_STREAM_N=0

ours__stream_serve() {
	local d sock log
	[ -n "$OURS_STREAM_SERVE_PID" ] && kill -0 "$OURS_STREAM_SERVE_PID" 2>/dev/null && return 0
	d=$(b_img_dir n2)
	sock=$d/stream.sock log=$d/stream-serve.log
	install -d -m 0700 "$d/stream-staging"
	fx_in n2 "$NM_BUILD_DIR/tests/tools/nm-xfer-serve" --socket "$sock" --staging-dir "$d/stream-staging" \
		--hmac-key "$(fx_hmac_key n2)" $([[ $OURS_STREAM_FLAGS == *--file-mac* ]] && echo --file-mac) >"$log" 2>&1 &
	OURS_STREAM_SERVE_PID=$!
	fx_track_pid "$OURS_STREAM_SERVE_PID"
	t_wait_until 10 "stream receiver on n2" grep -q LISTENING "$log"
}

# ours__xfer_send FROM TO TREE MIG ARGS...: nm-xfer-send from FROM over SSH to
# TO with what two agents negotiate, and ARGS (the remote command); its
# output, stderr included. A stream that stands still for a minute fails
# its run instead of holding the bench for good.
ours__xfer_send() {
	local from=$1 to=$2 tree=$3 mig=$4
	shift 4
	# shellcheck disable=SC2086 # the flags are a word list
	fx_in "$from" "$NM_BUILD_DIR/tests/tools/nm-xfer-send" --host "$(fx_addr "$to")" \
		--key "$(fx_dir "$from")/ssh/id_ed25519" --known-hosts "$(fx_dir "$from")/ssh/known_hosts" \
		--hmac-key "$(fx_hmac_key "$from")" --connect-timeout 10000 --idle-timeout 60000 --mig "$mig" \
		$OURS_STREAM_FLAGS "$@" "$tree" 2>&1
}

# ours_stream FROM TO DIR [MIG]: DIR's files through our image stream into a
# receiver on TO that checks every byte (the tree HMAC; a per-file SHA-256
# too without --file-mac) and stages it on TO's tmpfs; VERIFIED ends it.
# Staging is removed afterwards.
ours_stream() {
	local from=$1 to=$2 tree out rc mig=${4:-}
	tree=$(ours__stream_tree "$3") && ours__stream_serve || return 1
	if [ -z "$mig" ]; then
		OURS_STREAM_N=$((OURS_STREAM_N + 1))
		mig=bench-$OURS_STREAM_N-$$
	fi
	out=$(ours__xfer_send "$from" "$to" "$tree" "$mig" \
		--command "$NM_BUILD_DIR/agent/nucleus-agent dial-stdio --socket $(b_img_dir "$to")/stream.sock")
	rc=$?
	ours__stream_end "$to" "$mig" "$rc" "$out" ours_stream
}

# ours__stream_end TO MIG RC OUT WHO: after a stream into the receiver on TO,
# removes MIG's staging (received files are sealed immutable) and logs the
# sender's OUT under WHO; fails when the sender did (RC).
ours__stream_end() {
	fx_rm "$(b_img_dir "$1")/stream-staging/$2"
	[ "$3" -eq 0 ] || { b_log "$5: nm-xfer-send failed: $4"; return 1; }
	b_log "$5: ${4//$'\n'/; }"
}

# ours_stream_sender FROM TO DIR: DIR's files as ours_stream sends them (the
# same sender, flags and SSH session) into `cat >/dev/null` on TO: the
# sending stage alone, with the far side OpenSSH's stream has.
ours_stream_sender() {
	local from=$1 to=$2 tree out
	tree=$(ours__stream_tree "$3") || return 1
	OURS_STREAM_N=$((OURS_STREAM_N + 1))
	out=$(ours__xfer_send "$from" "$to" "$tree" "bench-$OURS_STREAM_N-$$" --command 'cat >/dev/null' --no-verify) ||
		{ b_log "ours_stream_sender: nm-xfer-send failed: $out"; return 1; }
	b_log "ours_stream_sender: ${out//$'\n'/; }"
}

# ours_stream_local TO DIR: DIR's files through our image stream without SSH:
# the sender on TO, connected to the receiver's socket; staging removed
# afterwards, as by ours_stream.
ours_stream_local() {
	local to=$1 tree out rc mig
	tree=$(ours__stream_tree "$2") && ours__stream_serve || return 1
	OURS_STREAM_N=$((OURS_STREAM_N + 1))
	mig=bench-$OURS_STREAM_N-$$
	# shellcheck disable=SC2086 # the flags are a word list
	out=$(fx_in "$to" "$NM_BUILD_DIR/tests/tools/nm-xfer-send" --local-socket "$(b_img_dir "$to")/stream.sock" \
		--hmac-key "$(fx_hmac_key "$to")" --mig "$mig" $OURS_STREAM_FLAGS "$tree" 2>&1)
	rc=$?
	ours__stream_end "$to" "$mig" "$rc" "$out" ours_stream_local
}

# ours_stream_pair FROM TO DIR1 DIR2: two image streams at once, each in its
# own SSH session and sender process, into the one receiver on TO; fails if
# either fails.
ours_stream_pair() {
	local from=$1 to=$2 p1 p2 rc1 rc2
	# Trees and receiver made here: the background shells would each start one.
	ours__stream_tree "$3" >/dev/null && ours__stream_tree "$4" >/dev/null && ours__stream_serve || return 1
	OURS_STREAM_N=$((OURS_STREAM_N + 2))
	ours_stream "$from" "$to" "$3" "bench-$((OURS_STREAM_N - 1))-$$" &
	p1=$!
	ours_stream "$from" "$to" "$4" "bench-$OURS_STREAM_N-$$" &
	p2=$!
	wait "$p1"
	rc1=$?
	wait "$p2"
	rc2=$?
	[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ]
}

# ours_drain FROM TO: FROM drained to TO; prints how many containers moved.
# The target is named (the only peer, which is also what the default
# "every configured peer" means): without --to this build's CLI sends an
# empty target list, which the protocol refuses ("field 'targets' has 0
# elements").
ours_drain() {
	local from=$1 to=$2 out res
	out=$(fx_nm "$from" drain --to "$(fx_node_name "$to")" --json)
	res=$(grep '"event": *"result"' <<<"$out" | tail -n1)
	fx_nm "$from" uncordon >/dev/null 2>&1 || b_log "cannot uncordon $from after the drain"
	[ -n "$res" ] || { b_log "ours: the drain gave no result: $(tail -n 3 <<<"$out")"; return 1; }
	[ "$(jq -r '.result.outcome' <<<"$res")" != error ] ||
		{ b_log "ours: the drain failed: $(jq -r '.result.error' <<<"$res")"; return 1; }
	jq -r '.result.moved // 0' <<<"$res"
	[ "$(jq -r '.result.failed // 0' <<<"$res")" = 0 ] ||
		b_log "ours: some moves of the drain failed: $(jq -c '[.result.items[] | select(.outcome != "done") | .error]' <<<"$res")"
}

# ours_failed_move FROM TO ID: a move that TO's agent (restarted with
# NM_FAULT=fail=dest-restore) fails at its restore; returns once FROM rolled
# back. Prints fail_at= (TO's agent logging the injected failure), seen_at=
# (FROM's agent journaling rolling-back) and back_at= (FROM's agent saying
# the container runs again), epoch seconds.
ours_failed_move() {
	local from=$1 to=$2 id=$3 l1 l2 o1 o2 out rc
	l1=$(fx_agent_log "$from") l2=$(fx_agent_log "$to")
	o1=$(b_size "$l1") o2=$(b_size "$l2")
	out=$(fx_nm "$from" migrate "$id" "$(fx_node_name "$to")" --json)
	rc=$?
	grep -q '"outcome": *"rolled-back"' <<<"$out" || {
		b_log "ours: expected a rollback (exit 4), got exit $rc: $(tail -n1 <<<"$out")"
		return 1
	}
	echo "fail_at=$(b_log_stamp "$l2" "$o2" 'fault injection: failing dest-restore')"
	echo "seen_at=$(b_log_stamp "$l1" "$o1" 'source [a-z-]+ -> rolling-back')"
	echo "back_at=$(b_log_stamp "$l1" "$o1" 'rolled back: container')"
}

# ours_cleanup FROM TO ID: what a run leaves: the container's state file
# (and, after a failed move that rolled back, the container it names, which
# the driver does not know), the agents' CRIU logs.
ours_cleanup() {
	local from=$1 to=$2 id=$3 n f pid ticks
	for n in "$from" "$to"; do
		f=$(fx_dir "$n")/nucleus/$id.json
		if [ -f "$f" ]; then
			pid=$(jq -r '.pid // empty' "$f" 2>/dev/null)
			ticks=$(jq -r '.start_ticks // empty' "$f" 2>/dev/null)
			[ -n "$pid" ] && [ "$(fx_start_ticks "$pid")" = "$ticks" ] && kill -KILL "$pid" 2>/dev/null
			rm -f "$f"
		fi
		rm -rf "$(ours__work_dir "$n")"/criu/* 2>/dev/null
	done
	return 0
}
