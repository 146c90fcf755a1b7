#!/usr/bin/env bash
# The source agent killed (SIGKILL, by pid) in the middle of CRIU's dump of a
# 256 MiB container, caught while CRIU writes its pages, then restarted.
# The CRIU keeper kills CRIU when the agent's end of its pipe closes; the
# half-written checkpoint stays on disk until the restart, whose recovery
# removes it. Afterwards the container runs exactly once, at home, its heap
# intact (the workload re-checks its checksum); the checkpoint directory,
# CRIU's network lock and the CRIU keeper are gone; the journal records the
# migration as failed, stopped before its dump completed. The same restart
# sweeps images planted as other crashes leave them (see below).
#
# With --streamed the dump sends its pages to the target's page server as
# it goes ([agent] stream_pages, the default), and the agent is killed once
# a page file has grown in the target's staging: besides the above, the
# target's page server ends with the session and its staging goes.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"

HOG_MIB=${AGENT_CRASH_DUMP_MIB:-256}
name=big

MODE=local
[ "${1:-}" != --streamed ] || MODE=streamed

fx_nodes_up
if [ "$MODE" = local ]; then
	# The dump writes its pages here, not to the target's page server:
	# what it leaves half-written is what the restart's recovery must sweep.
	FX_AGENT_ARGS="--set agent.stream_pages=no" fx_agent_start n1
else
	FX_AGENT_ARGS="--set agent.stream_pages=yes" fx_agent_start n1
fi
fx_agent_start n2

read -r id _ < <(b_hog_start n1 "$name" "$HOG_MIB" random) || t_fail "could not start the $HOG_MIB MiB workload"
work=$(b_hog_dir n1 "$name")
b_hog_request "$work" check checks || t_fail "$name does not check its heap"
t_assert_eq "$(b_hog_field "$work" check_ok)" 1 "heap checksum of $name before the move"
c0=$(b_hog_field "$work" count)
cps=$(fx_dir n1)/migrate/checkpoints
stg=$(fx_dir n2)/migrate/staging
agent=$(fx_agent_pid n1)
# Where CRIU's page files grow: the source's checkpoint, or the target's
# staging (written by its page server from the stream).
pages_in=$cps
[ "$MODE" = local ] || pages_in=$stg

# caught_mid_dump: CRIU has begun writing the container's pages (its
# parasite is inside the tasks, the images are not complete). Builtins only
# (a glob and a test), polled without forking.
caught_mid_dump() {
	local f
	for f in "$pages_in"/*/images/pages-*.img "$pages_in"/*/pages-*.img; do
		[ -s "$f" ] && CAUGHT=$f && return 0
	done
	return 1
}

fx_nm n1 migrate "$id" node2 >"$FX_ROOT/cli.out" 2>&1 &
cli=$!
CAUGHT=""
deadline=$((SECONDS + $(t_secs 120)))
while ! caught_mid_dump; do
	kill -0 "$cli" 2>/dev/null || t_fail "the move ended before CRIU wrote a page: $(cat "$FX_ROOT/cli.out")"
	[ "$SECONDS" -lt "$deadline" ] || t_fail "CRIU never wrote a page file under $pages_in"
done
# Mid-dump the agent holds CRIU's end of the page stream's socket: like
# every descriptor of the agent but stdio it is close-on-exec (only the keeper opens
# it for its own CRIU), so no other child the agent spawns inherits it.
if [ "$MODE" = streamed ]; then
	for f in /proc/"$agent"/fdinfo/*; do
		[ "${f##*/}" -gt 2 ] || continue # stdio
		flags=$(sed -n 's/^flags:[[:space:]]*//p' "$f" 2>/dev/null) || continue
		[ -n "$flags" ] || continue
		(((8#$flags & 8#2000000) != 0)) ||
			t_fail "n1's agent holds fd ${f##*/} without close-on-exec: $(readlink "/proc/$agent/fd/${f##*/}")"
	done
fi
# The CRIU keeper and CRIU, before the agent's death hands them to another
# parent.
criu_pids=$(pgrep -P "$agent" -x nm-criu-keeper || true)
for k in $criu_pids; do criu_pids+=" $(pgrep -P "$k" | tr '\n' ' ')"; done
kill -KILL "$agent"
t_log "n1's agent ($agent) killed while CRIU wrote ${CAUGHT#"$pages_in"/} ($MODE)"
t_wait_until 60 "n1's agent is dead" bash -c "! kill -0 $agent 2>/dev/null" || t_fail "n1's agent outlived SIGKILL"
wait "$agent" 2>/dev/null || true
rc=0
wait "$cli" || rc=$?
t_assert_eq "$rc" 5 "CLI exit when its agent died mid-dump ($(cat "$FX_ROOT/cli.out"))"

# What the crash left: the migration's checkpoint directory, with the pages
# CRIU had begun, and nothing of CRIU itself once its keeper saw the pipe
# close.
mig=${CAUGHT#"$pages_in"/}
mig=${mig%%/*}
if [ "$MODE" = streamed ]; then
	# The target heard the session end: its page server and staging go
	# without any restart.
	t_wait_until 60 "n2's staging of $mig is removed" bash -c "[ ! -e '$stg/$mig' ]" ||
		t_fail "n2 kept the staging of $mig after its source died: $(find "$stg/$mig" -maxdepth 2 | head -n 5)"
	ps_left=$(pgrep -f "page-server.*$mig" || true)
	[ -z "$ps_left" ] || t_fail "n2's page server for $mig outlived the session: $ps_left"
fi
[ -d "$cps/$mig" ] || t_fail "no checkpoint directory left by the crash: the test caught nothing"
[ -n "$criu_pids" ] || t_fail "no CRIU keeper ran when the agent was killed"
for p in $criu_pids; do
	t_wait_until 30 "CRIU's process $p ends with its agent" bash -c "! kill -0 $p 2>/dev/null || grep -q '^State:.*Z' /proc/$p/status" ||
		t_fail "CRIU's process $p outlived the agent: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
done
journal=$(fx_dir n1)/migrate/journal
grep -q '"phase": *"dumping"' "$journal/$mig.json" ||
	t_fail "the journal does not hold the migration in 'dumping' after the crash: $(cat "$journal/$mig.json" 2>&1)"

# Beside the crash's leftover, images no active migration owns, planted as
# other crashes leave them; the restart's sweep decides each on what the
# journal and the directory say:
# - no record and no signature (a dump cut short): removed;
# - no record but a signature (a complete set): kept, it may be a container;
# - a finished record that says `lost`: kept, they are the container;
# - a finished record that says `failed`: removed;
# - a symbolic link: removed as a link, what it points to untouched.
outside=$FX_ROOT/outside
mkdir -p "$outside" && echo data >"$outside/keep-me"
plant_images() { mkdir -p "$cps/$1/images" && echo pages >"$cps/$1/images/pages-1.img"; }
plant_done() { printf '{"mig": "%s", "phase": "%s", "container": "planted-%s"}\n' "$1" "$2" "$1" >"$journal/done/$1.json"; }
plant_images orphan-partial
plant_images orphan-signed && echo sig >"$cps/orphan-signed/checkpoint.hmac"
plant_images orphan-lost && plant_done orphan-lost lost
plant_images orphan-failed && plant_done orphan-failed failed
ln -s "$outside" "$cps/orphan-link"

log_off=$(stat -c %s "$(fx_agent_log n1)")
fx_agent_start n1
no_active() { ! fx_nm n1 status --json | grep -q '"active":true' && ! fx_nm n2 status --json | grep -q '"active":true'; }
t_wait_until 300 "both agents settle" no_active || {
	fx_nm n1 status >&2 || true
	t_fail "the migration is still active long after the restart"
}

# ---- the checkpoint directory is gone, and the agent said so ----
[ ! -e "$cps/$mig" ] || t_fail "the checkpoint directory $mig outlived recovery: $(ls -A "$cps/$mig")"
t_assert_eq "$(ls -A "$cps" | tr '\n' ' ')" "orphan-lost orphan-signed " "images kept on n1 by the sweep"
[ -f "$cps/orphan-lost/images/pages-1.img" ] && [ -f "$cps/orphan-signed/images/pages-1.img" ] ||
	t_fail "the sweep emptied images it kept"
t_assert_eq "$(cat "$outside/keep-me" 2>&1)" data "what the planted link pointed to"
swept=$(tail -c +"$((log_off + 1))" "$(fx_agent_log n1)")
grep -q "keeping images .*/orphan-lost: its migration ended lost" <<<"$swept" ||
	t_fail "the agent does not say why it keeps orphan-lost"
grep -q "keeping images .*/orphan-signed: a complete, signed set" <<<"$swept" ||
	t_fail "the agent does not say why it keeps orphan-signed"
grep -q "removing leftover images .*/orphan-failed (migration failed)" <<<"$swept" ||
	t_fail "the agent does not say it removed orphan-failed"
rm -rf "$cps/orphan-lost" "$cps/orphan-signed" "$journal/done/orphan-lost.json" "$journal/done/orphan-failed.json"
[ -z "$(ls -A "$(fx_dir n2)/migrate/staging")" ] || t_fail "staging left on n2"

fx_logged_since n1 "$log_off" 'recovering 1 migration(s) from the journal' ||
	t_fail "the restarted agent does not say it recovered the migration"

# ---- the journal says what happened ----
rec=$journal/done/$mig.json
[ -f "$rec" ] || t_fail "no finished journal record of $mig"
[ ! -e "$journal/$mig.json" ] || t_fail "the migration is still an active journal record"
t_assert_eq "$(jq -r .phase "$rec")" failed "the journal's outcome of $mig"
why=$(jq -r .error "$rec")
[[ $why == *"stopped before its dump completed (phase dumping)"*"runs on here"* ]] ||
	t_fail "the journal does not say the agent stopped mid-dump: $why"
src=$(fx_nm n1 status "$id" --json | jq -c '.result.migrations[0] // empty')
t_assert_eq "$(jq -r '.outcome // .phase' <<<"$src")" failed "n1's status of the migration"

# ---- exactly one copy, at home, heap intact, still ticking ----
t_assert_eq "$(fx_ctr_where "$id")" n1 "where $name runs after the crash"
t_assert_eq "$(fx_ctr_running_copies "$name")" 1 "running copies of $name"
t_assert_eq "$(fx_ctr_stopped_copies "$name")" 0 "stopped copies of $name"
t_wait_until 60 "$name ticks on" b_hog_ticks_past "$work" "$c0" || t_fail "$name stopped ticking"
b_hog_request "$work" check checks || t_fail "$name does not check its heap after the crash"
t_assert_eq "$(b_hog_field "$work" check_ok)" 1 "heap checksum of $name after the crash"

# ---- nothing of CRIU left ----
k=$(pgrep -P "$(fx_agent_pid n1)" -x nm-criu-keeper || true)
[ -z "$k" ] || t_fail "a CRIU keeper is left on n1: $k"
init=$(fx_ctr_inits "$name")
tables=$(nsenter -t "$init" -n nft list tables | grep -i criu || true)
[ -z "$tables" ] || t_fail "CRIU's network lock left in the container's namespace: $tables"
fx_agent_stop n1
fx_agent_stop n2
t_log "ok: killed mid-dump ($mig, pages $MODE), recovered: runs once on n1, heap intact, checkpoint removed, journal 'failed'"
