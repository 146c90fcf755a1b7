#!/usr/bin/env bash
# Lanes (feature "lanes", [ssh] lanes on the source): a move's pages dealt
# over two SSH sessions, the second encrypting on a thread of its own, through real
# sshd and CRIU. The target grants the lanes with a secret, the second
# session joins with it, LANES names the two, and the target takes the
# frames in turn; the heap checks out after the move, one copy runs. The
# same move from a source that asks for no lanes uses one session, and
# `--lanes` sets it for one move either way (5 is refused, exit 2). A lane
# lost while the pages flow (NM_FAULT fail=lane-lost on the source) fails
# the dump, and the container runs on at home, its heap intact. A
# stranger's session cannot join: LANE_JOIN for no migration taking lanes
# is refused and the session closed, and the agent goes on.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"

fx_nodes_up
FX_AGENT_ARGS="--set ssh.lanes=2" fx_agent_start n1
FX_AGENT_ARGS="--set ssh.lanes=2" fx_agent_start n2
log1=$(fx_agent_log n1)
log2=$(fx_agent_log n2)

# 48 MiB of mixed pages: about two hundred frames, so both lanes carry many.
read -r id _ < <(b_hog_start n1 striped 48 mixed) || t_fail "could not start the workload"
dir=$(b_hog_dir n1 striped)

t_log "a move node1 -> node2 whose pages are dealt over two sessions"
off1=$(stat -c %s "$log1") off2=$(stat -c %s "$log2")
out=$(fx_nm n1 migrate "$id" node2 --json) || t_fail "migrate failed: $out"
res=$(grep '"event":"result"' <<<"$out" | tail -n1)
t_assert_eq "$(jq -r .result.outcome <<<"$res")" "done" "outcome of the move"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the move"
t_assert_eq "$(fx_ctr_running_copies striped)" 1 "running copies after the move"
fx_logged_since n2 "$off2" "granting 2 lanes for the pages" || t_fail "node2 did not grant two lanes"
fx_logged_since n1 "$off1" "node2 takes 2 lanes: dialing 1 more session" || t_fail "node1 did not dial a lane"
fx_logged_since n2 "$off2" -E "lane 1 joined \(session [0-9]+\)" || t_fail "the lane did not join on node2"
fx_logged_since n1 "$off1" "the pages go over 2 sessions to node2" || t_fail "node1 did not deal over two sessions"
fx_logged_since n2 "$off2" "the pages come over 2 lanes" || t_fail "node2 did not take the pages in turns"
frames=$(tail -c +$((off2 + 1)) "$log2" | sed -n 's/.*the page stream ended: [0-9]* bytes in \([0-9]*\) frames, each checked.*/\1/p' | tail -n1)
# In turns, frame n came on lane n mod 2: with more than a few frames
# lane 1 carried half of them.
[ "${frames:-0}" -ge 16 ] || t_fail "only ${frames:-no} frames went: the lanes were hardly used"
fx_logged_since n1 "$off1" "SSH on a thread of its own" || t_fail "node1's lane did not run SSH on its own thread"
! fx_logged_since n2 "$off2" "refusing the page stream" || t_fail "node2 refused a frame of the striped stream"
b_hog_request "$dir" check checks || t_fail "the hog did not check its heap after the move"
t_assert_eq "$(b_hog_field "$dir" check_ok)" 1 "the heap's checksum after the striped move"

t_log "the same move back from a source that asks for no lanes: one session"
fx_agent_stop n2
FX_AGENT_ARGS="--set ssh.lanes=1" fx_agent_start n2
off1=$(stat -c %s "$log1") off2=$(stat -c %s "$log2")
out=$(fx_nm n2 migrate "$id" node1 --json) || t_fail "the move back failed: $out"
t_assert_eq "$(fx_ctr_where "$id")" n1 "where the container runs after the move back"
! fx_logged_since n1 "$off1" "granting" || t_fail "node1 granted lanes nobody asked for"
! fx_logged_since n2 "$off2" "dialing" || t_fail "node2 dialed lanes it was not set to"
b_hog_request "$dir" check checks || t_fail "the hog did not check its heap after the move back"
t_assert_eq "$(b_hog_field "$dir" check_ok)" 1 "the heap's checksum after the move back"

t_log "--lanes for one move: 1 against the configuration's 2, then 2 against its 1"
off1=$(stat -c %s "$log1") off2=$(stat -c %s "$log2")
out=$(fx_nm n1 migrate "$id" node2 --lanes 1 --json) || t_fail "the move with --lanes 1 failed: $out"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the move with --lanes 1"
! fx_logged_since n2 "$off2" "granting" || t_fail "node2 granted lanes to a move with --lanes 1"
off1=$(stat -c %s "$log1") off2=$(stat -c %s "$log2")
out=$(fx_nm n2 migrate "$id" node1 --lanes 2 --json) || t_fail "the move with --lanes 2 failed: $out"
t_assert_eq "$(fx_ctr_where "$id")" n1 "where the container runs after the move with --lanes 2"
fx_logged_since n2 "$off2" "the pages go over 2 sessions to node1" || t_fail "node2 did not deal over two sessions"
fx_logged_since n1 "$off1" "the pages come over 2 lanes" || t_fail "node1 did not take the pages in turns"
b_hog_request "$dir" check checks || t_fail "the hog did not check its heap after the move with --lanes 2"
t_assert_eq "$(b_hog_field "$dir" check_ok)" 1 "the heap's checksum after the move with --lanes 2"
rc=0
fx_nm n1 migrate "$id" node2 --lanes 5 >/dev/null 2>&1 || rc=$?
t_assert_eq "$rc" 2 "exit code of --lanes 5"

t_log "a lane lost while the pages flow: the dump fails, the container runs on at home"
fx_agent_stop n1
FX_AGENT_ARGS="--set ssh.lanes=2" fx_agent_start n1 "NM_FAULT=fail=lane-lost"
off1=$(stat -c %s "$log1") off2=$(stat -c %s "$log2")
rc=0
out=$(fx_nm n1 migrate "$id" node2 --json) || rc=$?
res=$(grep '"event":"result"' <<<"$out" | tail -n1)
# Either end may notice first: node1 breaks its dump on the lost lane, or
# node2 reports the lane's end before that; the dump fails either way
# (exit 1), or, had it ended meanwhile, the move rolls back (exit 4).
case "$rc/$(jq -r .result.outcome <<<"$res")" in
1/failed | 4/rolled-back) ;;
*) t_fail "the move whose lane was lost: exit $rc, $res" ;;
esac
fx_logged_since n1 "$off1" "lane 1 to node2 ended while the pages flowed (lane 1 cut (fault injection))" ||
	jq -r .result.error <<<"$res" | grep -q "the pages streamed during the dump: " ||
	t_fail "neither node said the lane was lost: $res"
t_assert_eq "$(fx_ctr_where "$id")" n1 "where the container runs after the lost lane"
t_assert_eq "$(fx_ctr_running_copies striped)" 1 "running copies after the lost lane"
t_assert_eq "$(fx_ctr_stopped_copies striped)" 0 "stopped copies after the lost lane"
b_hog_request "$dir" check checks || t_fail "the hog did not check its heap after the lost lane"
t_assert_eq "$(b_hog_field "$dir" check_ok)" 1 "the heap's checksum after the lost lane"
t_wait_until 30 "staging on node2 empty" test -z "$(ls -A "$(fx_dir n2)/migrate/staging")" ||
	t_fail "staging left on node2 after the lost lane"

t_log "a LANE_JOIN for no migration that takes lanes: refused, the session closed"
off2=$(stat -c %s "$log2")
secret=$(printf '%064d' 0)
pc_case lane-stranger pc_ssh n1 n2 <<EOF
hello features=binding,ps-stream,lanes
expect HELLO
map t=u:41 mig=s:no-such-move lane=u:1 secret=b:$secret
expect-closed the migration takes no lanes now
EOF
fx_logged_since n2 "$off2" "LANE_JOIN for migration no-such-move, lane 1, refused: the migration takes no lanes now" ||
	t_fail "node2 did not log the refused join"
fx_nm n2 status >/dev/null || t_fail "node2's agent does not answer after the refused join"
