#!/usr/bin/env bash
# A large image set through the image stream: with [agent] stream_pages = no
# on node 1 the dump writes its pages, and they cross after it, 96 MiB of
# random bytes in one pages-*.img. Node 2's agent checks and hashes each
# frame on its loop while the writes into staging run on the threadpool
# (transfer/recv-write.c), the session held while they lag. The move
# completes, the staged set is what node 1 sent (the tree HMAC verified on
# node 2 over every byte), the restored heap has the checksum it had before
# the move, and one copy runs. Then node 2's staging stalls
# (NM_FAULT=stall=staging-writes: its writes wait while a gate file exists):
# its agent stops reading the session once 8 MiB wait to be written, and
# reads on when they caught up after the gate is gone; the move completes.
# Last, the stalled staging breaks (NM_FAULT=fail=staging-writes: the write
# that waited fails once the gate is gone): the move rolls back, the
# container runs on at home, and node2 lets the session go.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"
NM_BUILD_DIR=${NM_BUILD_DIR:-$FX_BUILD}
# shellcheck source=bench/lib/workload.sh
. "$FX_SRC/bench/lib/workload.sh"

MIB=96

heap_intact() {
	b_hog_request "$1" check checks || t_fail "the workload does not check its heap $2"
	t_assert_eq "$(b_hog_field "$1" check_ok)" 1 "the heap's checksum $2"
}

fx_nodes_up
FX_AGENT_ARGS="--set agent.stream_pages=no" fx_agent_start n1
fx_agent_start n2
read -r id _ < <(b_hog_start n1 bigheap "$MIB" random) || t_fail "the workload did not start"
work=$(b_hog_dir n1 bigheap)
heap_intact "$work" "before the move"
log2=$(fx_agent_log n2)
off2=$(stat -c %s "$log2")

t_log "a move node1 -> node2 whose $MIB MiB of pages cross in the image stream"
out=$(fx_nm n1 migrate "$id" node2 --json) || t_fail "migrate failed: $out"
res=$(grep '"event":"result"' <<<"$out" | tail -n1)
t_assert_eq "$(jq -r .result.outcome <<<"$res")" "done" "outcome of the move"
# Every node whose state file names a live, running copy: n2 alone.
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the move"

got=$(tail -c +$((off2 + 1)) "$log2" | sed -n 's/.*verified [0-9]* files, \([0-9]*\) bytes (tree HMAC.*/\1/p' | tail -n1)
[ -n "$got" ] || t_fail "node2 did not log the verified image set: $(tail -c +$((off2 + 1)) "$log2" | tail -n 20)"
[ "$got" -ge $((MIB << 20)) ] || t_fail "node2 verified $got bytes of images, fewer than the $MIB MiB heap"
t_log "node2 verified $got bytes of images"
heap_intact "$work" "after the move"

# stalled_move NAME FAULT: node2's agent again with NM_FAULT=FAULT, and a
# move from node1 of a fresh MIB MiB workload NAME whose writes into
# node2's staging wait at the gate until node2 holds the session; then the
# gate goes. Sets id, work, off2, rc (the CLI's exit) and res (its result).
gate=$FX_ROOT/stage-gate
# stalled_move NAME FAULT RC OUTCOME: a move of a new workload NAME to node2,
# whose agent runs with NM_FAULT=FAULT; it must end with RC and OUTCOME.
stalled_move() {
	local name=$1 fault=$2 want_rc=$3 want=$4 cli
	fx_agent_stop n2
	fx_agent_start n2 "NM_FAULT=$fault" "NM_FAULT_GATE=$gate"
	read -r id _ < <(b_hog_start n1 "$name" "$MIB" random) || t_fail "the workload $name did not start"
	work=$(b_hog_dir n1 "$name")
	heap_intact "$work" "before the move of $name"
	off2=$(stat -c %s "$log2")
	: >"$gate"
	fx_move_start n1 "$id" node2 "$FX_ROOT/$name.out"
	cli=$FX_MOVE_PID
	t_wait_until 120 "node2 holds the session for its stalled writes" bash -c \
		"tail -c +$((off2 + 1)) '$log2' | grep -q 'the writes into staging lag: the session waits for them'" ||
		t_fail "node2 never held the session: $(tail -c +$((off2 + 1)) "$log2" | tail -n 20)"
	rm -f "$gate"
	fx_move_end "$cli" "$FX_ROOT/$name.out" "$want_rc" "$want" "the move of $name"
}

t_log "again, with node2's writes into staging stalled"
stalled_move stalled stall=staging-writes 0 "done"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the move"
fx_logged_since n2 "$off2" "the writes into staging caught up: reading the session on" ||
	t_fail "node2 did not read the session on after its writes caught up"
heap_intact "$work" "after the move to stalled staging"

t_log "again, with node2's staging breaking while the session waits for it"
# NM_FAULT=fail=staging-writes: the write that waited at the gate fails
# once the gate is gone. node2 ends the move, the source rolls back and
# closes its channel, and node2 lets the session go: its sshd and its
# dial-stdio end.
stalled_move broken stall=staging-writes,fail=staging-writes 4 rolled-back
t_assert_eq "$(fx_ctr_where "$id")" n1 "where the container runs after the failed move"
heap_intact "$work" "after the move whose staging broke"
t_wait_until 60 "node2 lets go of the failed move's session" fx_no_peer_sessions n2 n1 ||
	t_fail "node2 still holds the failed move's session: dial-stdio $(fx_peer_sessions n2 n1 | tr '\n' ' ')"
t_log "ok"
