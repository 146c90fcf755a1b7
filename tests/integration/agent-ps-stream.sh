#!/usr/bin/env bash
# Pages streamed while CRIU dumps ([agent] stream_pages on node 1): the dump
# sends its pages to node 2's page server through the agents' page link,
# each frame checked before CRIU reads it, and node 1 writes no page images
# of its own; node 2 signs the staging whole, restores, and the container's
# counter and log go on, one copy running. A page frame bent on its way
# (NM_FAULT fail=ps-frame on the source) is refused by the target before its page
# server reads it; the dump fails, and the container runs on where it was.
# A tree that cannot be held (a file lock) keeps its pages in its images:
# PS_END says so, the target lets its page server go, the pages come with
# the image stream, and the container moves as usual. Under [limits]
# bandwidth the page stream keeps to it: a move of incompressible pages
# takes at least what the bytes sent allow at that rate. A page server
# stopped mid-dump, then killed: node2 held the session meanwhile, ends the
# move, and lets the session go (the container runs on at home). (Targets
# that never reply to the dump: hostile-target.)
# --ssh-thread: the same, every agent running its SSH sessions on threads of
# their own ([ssh] thread), and saying so.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"
. "$(dirname "$0")/../lib/breadth.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"

SSH_THREAD=""
[ "${1:-}" = --ssh-thread ] && SSH_THREAD="--set ssh.thread=yes"

fx_nodes_up
FX_AGENT_ARGS="--set agent.stream_pages=yes $SSH_THREAD" fx_agent_start n1
FX_AGENT_ARGS="$SSH_THREAD" fx_agent_start n2
read -r id _ < <(fx_ctr_start n1 pages)
work=$(fx_ctr_dir n1 pages)
fx_counter_advances "$work" || t_fail "workload does not tick"
log1=$(fx_agent_log n1)
log2=$(fx_agent_log n2)

t_log "a move node1 -> node2 whose pages go while CRIU dumps"
off1=$(stat -c %s "$log1") off2=$(stat -c %s "$log2")
out=$(fx_nm n1 migrate "$id" node2 --json) || t_fail "migrate failed: $out"
res=$(grep '"event":"result"' <<<"$out" | tail -n1)
t_assert_eq "$(jq -r .result.outcome <<<"$res")" "done" "outcome of the move"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the move"
t_assert_eq "$(fx_ctr_running_copies pages)" 1 "running copies after the move"
t_assert_eq "$(fx_ctr_stopped_copies pages)" 0 "stopped copies after the move"
fx_counter_advances "$work" || t_fail "counter stopped after the move"
fx_log_ok "$work" || t_fail "the log has a gap or a repeat after the move"

sent=$(tail -c +$((off1 + 1)) "$log1" | sed -n "s/.*sent \([0-9]*\) bytes of the page server's session while CRIU dumped.*/\1/p" | tail -n1)
wire=$(tail -c +$((off1 + 1)) "$log1" | sed -n "s/.*while CRIU dumped ([0-9]* frames, \([0-9]*\) bytes as sent,.*/\1/p" | tail -n1)
[ -n "$sent" ] || t_fail "node1 did not send the pages while CRIU dumped: $(tail -c +$((off1 + 1)) "$log1" | tail -n 30)"
# The source read every request its dump sent (CRIU's page-server protocol
# as it passed): an open per pagemap and the close wanted a reply.
asked=$(tail -c +$((off1 + 1)) "$log1" | sed -n "s/.*the dump waited on \([0-9]*\) replies).*/\1/p" | tail -n1)
[ "${asked:-0}" -ge 2 ] || t_fail "node1 did not follow its dump's requests (${asked:-no} replies awaited)"
! fx_logged_since n1 "$off1" "cannot follow the dump's page-server protocol" ||
	t_fail "node1 lost track of its dump's page-server protocol"
dumped=$(tail -c +$((off1 + 1)) "$log1" | sed -n 's/.*dumped \([0-9]*\) bytes of images;.*/\1/p' | tail -n1)
[ -n "$dumped" ] || t_fail "node1 did not log its dump"
# Pages are most of any checkpoint: had they been written here, the dump's
# own images would outweigh what crossed the link.
[ "$dumped" -lt "$sent" ] || t_fail "node1's dump wrote $dumped bytes of images, more than the $sent bytes of pages it sent"
# Both agents take zstd: page frames that shrink go compressed.
if [ -z "$wire" ] || [ "$wire" -ge "$sent" ]; then
	t_fail "the page frames were not compressed: ${wire:-?} bytes sent for $sent"
fi
fx_logged_since n2 "$off2" -E "the page stream ended: $sent bytes in [0-9]+ frames, each checked \(Poly1305\)" ||
	t_fail "node2 did not check the $sent bytes of the page stream to its end with Poly1305"
fx_logged_since n1 "$off1" "bytes as sent, tagged with Poly1305," || t_fail "node1 did not tag the page frames with Poly1305"
fx_logged_since n2 "$off2" "the staging was signed beside the restore in" ||
	t_fail "node2 did not sign the staging with the pages"
if [ -n "$SSH_THREAD" ]; then
	fx_logged_since n1 "$off1" "SSH on a thread of its own" || t_fail "node1's link did not run SSH on its own thread"
else
	fx_logged_since n1 "$off1" "SSH on the agent's loop" || t_fail "node1's link did not run SSH on its loop"
fi
[ -z "$(ls -A "$(fx_dir n2)/migrate/staging")" ] || t_fail "staging left on node2"
[ -z "$(ls -A "$(fx_dir n1)/migrate/checkpoints")" ] || t_fail "images left on node1"

t_log "a page frame bent on its way back: node1 refuses it, the container runs on at node2"
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.stream_pages=yes $SSH_THREAD" fx_agent_start n2 "NM_FAULT=fail=ps-frame"
pid2=$(sed -n 's/^ *"pid": *\([0-9]*\).*/\1/p' "$(fx_dir n2)/nucleus/$id.json")
off1=$(stat -c %s "$log1")
rc=0
out=$(fx_nm n2 migrate "$id" node1 --json) || rc=$?
# The dump fails with the tasks running on where they were: nothing moved.
t_assert_eq "$rc" 1 "exit code of the move whose page frame was bent ($out)"
res=$(grep '"event":"result"' <<<"$out" | tail -n1)
t_assert_eq "$(jq -r .result.outcome <<<"$res")" failed "outcome of the move whose page frame was bent"
jq -r .result.error <<<"$res" | grep -q "frame 2 from node2 failed its check" ||
	t_fail "the result does not say why: $res"
fx_logged_since n1 "$off1" -E "frame 2 from node2 failed its check: refusing the page stream" ||
	t_fail "node1 did not refuse the bent frame: $(tail -c +$((off1 + 1)) "$log1" | tail -n 30)"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the refused frame"
t_assert_eq "$(fx_ctr_running_copies pages)" 1 "running copies after the refused frame"
t_assert_eq "$(fx_ctr_stopped_copies pages)" 0 "stopped copies after the refused frame"
kill -0 "$pid2" || t_fail "the container is not its old process on node2 any more"
fx_counter_advances "$work" || t_fail "counter stopped after the refused frame"
fx_log_ok "$work" || t_fail "the log has a gap or a repeat after the refused frame"
[ -z "$(ls -A "$(fx_dir n1)/migrate/staging")" ] || t_fail "staging left on node1"
t_log "a tree that cannot be held: its pages go with the images"
bdir=$(fx_ctr_dir n2 locks)
read -r bid bpid < <(breadth_start n2 "$(fx_dir n2)/nucleus" "$bdir" locks flock) || t_fail "the locks workload did not start"
report=$(breadth_check "$bpid" "$bdir" 1) || t_fail "no report from the locks workload"
bad=$(breadth_all_ok "$report" flock) || t_fail "before the move: $bad"
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.stream_pages=yes $SSH_THREAD" fx_agent_start n2
off1=$(stat -c %s "$log1") off2=$(stat -c %s "$log2")
out=$(fx_nm n2 migrate "$bid" node1 --json) || t_fail "the move of the tree that cannot be held failed: $out"
res=$(grep '"event":"result"' <<<"$out" | tail -n1)
t_assert_eq "$(jq -r .result.outcome <<<"$res")" "done" "outcome of the move of the tree that cannot be held"
fx_logged_since n2 "$off2" "the dump kept the pages in its images" || t_fail "node2 did not say the pages stayed in its images"
fx_logged_since n1 "$off1" "the source kept the pages in its images: they come with the image stream" ||
	t_fail "node1 did not take the pages from the image stream"
! fx_logged_since n1 "$off1" "signed beside the restore" ||
	t_fail "node1 signed a staging whose pages came with the images"
t_assert_eq "$(fx_ctr_where "$bid")" n1 "where the locks container runs after the move"
bpid=$(jq -r .result.new_pid <<<"$res")
report=$(breadth_check "$bpid" "$bdir" 2) || t_fail "no report from the moved locks workload"
bad=$(breadth_all_ok "$report" flock) || t_fail "after the move: $bad"
t_log "[limits] bandwidth paces the page stream"
# A lower bound only, which load cannot break: the pacer lets no more than
# rate x time go, plus the frame in flight at either end (at most 1 MiB
# each). Unpaced, the same move takes a fraction of it.
rate=$((4 << 20))
fx_agent_stop n1
FX_AGENT_ARGS="--set agent.stream_pages=yes --set limits.bandwidth=4M $SSH_THREAD" fx_agent_start n1
read -r hid _ < <(b_hog_start n1 paced 32 random) || t_fail "could not start the 32 MiB workload"
off1=$(stat -c %s "$log1")
t0=$(date +%s%N)
out=$(fx_nm n1 migrate "$hid" node2 --json) || t_fail "the paced move failed: $out"
took_ms=$((($(date +%s%N) - t0) / 1000000))
t_assert_eq "$(fx_ctr_where "$hid")" n2 "where the paced container runs after the move"
pwire=$(tail -c +$((off1 + 1)) "$log1" | sed -n "s/.*while CRIU dumped ([0-9]* frames, \([0-9]*\) bytes as sent,.*/\1/p" | tail -n1)
[ -n "$pwire" ] || t_fail "node1 did not stream the paced move's pages: $(tail -c +$((off1 + 1)) "$log1" | tail -n 30)"
[ "$pwire" -gt $((24 << 20)) ] || t_fail "only $pwire bytes of incompressible pages went: the test proves nothing"
least_ms=$(((pwire - (2 << 20)) * 1000 / rate))
[ "$took_ms" -ge "$least_ms" ] ||
	t_fail "the move sent $pwire bytes of pages in $took_ms ms, faster than 4 MiB/s allows ($least_ms ms)"

t_log "node2's page server stops mid-dump, then dies: node2 ends the move and reads its session on"
# While its page server is stopped the page link fills and node2 holds the
# session. The page server's death then ends the move on node2 while the
# session is held; the source's dump fails, and it closes its channel. A
# session still held would never hear that end, and would stay, with its
# sshd and dial-stdio, until node2's agent ends. (n1 still paces its pages
# at 4 MiB/s: the dump lasts long enough to stop the page server in it.)
read -r sid spid < <(b_hog_start n1 stuck 32 random) || t_fail "could not start the workload for the stuck page server"
off2=$(stat -c %s "$log2")
fx_move_start n1 "$sid" node2 "$FX_ROOT/stuck.out"
cli=$FX_MOVE_PID
ps_pid() { pgrep -f "page-server --ps-socket 3 -D $(fx_dir n2)/" | head -n1; }
pages_arrive() { [ "$(find "$(fx_dir n2)/migrate/staging" -name 'pages-*.img' -size +1024k 2>/dev/null | wc -l)" -gt 0 ]; }
t_wait_until 60 "pages arrive in node2's staging" pages_arrive || t_fail "no pages arrived on node2: $(cat "$FX_ROOT/stuck.out")"
pspid=$(ps_pid)
[ -n "$pspid" ] || t_fail "no page server runs on node2"
kill -STOP "$pspid"
t_wait_until 60 "node2 holds the session for its stopped page server" \
	fx_logged_since n2 "$off2" "the page server lags: the session waits for it" ||
	t_fail "node2 never held the session: $(tail -c +$((off2 + 1)) "$log2" | tail -n 20)"
kill -KILL "$pspid"
fx_move_end "$cli" "$FX_ROOT/stuck.out" 1 "" "the move whose page server died"
t_assert_eq "$(fx_ctr_where "$sid")" n1 "where the container runs after its page server died"
kill -0 "$spid" || t_fail "the container is not its old process on node1 any more"
t_wait_until 60 "node2 lets go of the failed move's session" fx_no_peer_sessions n2 n1 ||
	t_fail "node2 still holds the failed move's session: dial-stdio $(fx_peer_sessions n2 n1 | tr '\n' ' ')"

t_log "ok: $sent bytes of pages crossed while CRIU dumped ($wire as sent; $dumped bytes of other images; $asked replies awaited); a bent frame was refused; $pwire paced bytes took $took_ms ms (at least $least_ms)"
