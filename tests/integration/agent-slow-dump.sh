#!/usr/bin/env bash
# A source whose dump begins late: node1's CRIU stands still before it
# dumps (NM_FAULT criu-hold-at=pre-dump) for longer than the idle timeout,
# as a dump queued behind another move's does. node2 accepted and waits:
# before the first frame the wait is twice its criu_timeout, not the idle
# timeout (the PINGs keep the session; a dead source would end it). The
# move completes, one copy runs. A second move from node1 meanwhile waits
# for node1's CRIU and says so (log and progress), then completes too; so
# does the restore of a move from node2 into node1. (A source that never
# begins: hostile-slow.)
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"

fx_nodes_up
gate=$FX_ROOT/dump-gate
: >"$gate"
fx_agent_start n1 NM_FAULT=criu-hold-at=pre-dump "NM_FAULT_GATE=$gate"
fx_agent_start n2
read -r id _ < <(fx_ctr_start n1 late)
read -r id2 _ < <(fx_ctr_start n1 second)
read -r id3 _ < <(fx_ctr_start n2 incoming)
work=$(fx_ctr_dir n1 late)
fx_counter_advances "$work" || t_fail "workload does not tick"
off1=$(stat -c %s "$(fx_agent_log n1)")

# node1_says_waits WHAT OUT: node1 logs that its WHAT (dump, restore) waits
# for its turn; OUT is that move's output, for the failure message.
node1_says_waits() {
	t_wait_until 60 "node1 says the $1 waits" \
		fx_logged_since n1 "$off1" "the $1 waits for its turn: this node's CRIU runs another" ||
		t_fail "node1 did not say why the $1 waits: $(cat "$2")"
}

t_log "a move whose dump waits longer than the idle timeout before it sends anything"
fx_move_start n1 "$id" node2 "$FX_ROOT/late.out"
cli=$FX_MOVE_PID
t_wait_until 60 "node1's CRIU holds before its dump" \
	fx_logged_since n1 "$off1" "fault injection: CRIU held at pre-dump" ||
	t_fail "node1's CRIU never held: $(cat "$FX_ROOT/late.out")"

t_log "a second move from node1 meanwhile: its dump waits for its turn, and says so"
fx_move_start n1 "$id2" node2 "$FX_ROOT/second.out"
cli2=$FX_MOVE_PID
node1_says_waits dump "$FX_ROOT/second.out"
t_wait_until 30 "the second move's progress says why it waits" \
	grep -q '"message":"the dump waits for its turn' "$FX_ROOT/second.out" ||
	t_fail "the second move's progress does not say why it waits: $(cat "$FX_ROOT/second.out")"

t_log "a move from node2 into node1 meanwhile: its restore waits for node1's CRIU, and says so"
fx_move_start n2 "$id3" node1 "$FX_ROOT/incoming.out"
cli3=$FX_MOVE_PID
node1_says_waits restore "$FX_ROOT/incoming.out"

# Past the idle timeout, and a little more: nothing has left node1 yet.
sleep $((FX_IDLE_TIMEOUT + 5))
kill -0 "$cli" || t_fail "the move ended while node1's CRIU held: $(cat "$FX_ROOT/late.out")"
rm -f "$gate"
fx_move_end "$cli" "$FX_ROOT/late.out" 0 "done" "the late move"
t_assert_eq "$(fx_ctr_where "$id")" n2 "where the container runs after the late move"
t_assert_eq "$(fx_ctr_running_copies late)" 1 "running copies after the late move"
fx_counter_advances "$work" || t_fail "counter stopped after the late move"
fx_log_ok "$work" || t_fail "the log has a gap or a repeat after the late move"
fx_move_end "$cli2" "$FX_ROOT/second.out" 0 "done" "the second move"
res=$FX_MOVE_RESULT
# Its dump waited at least the sleep above for its turn, frozen for none
# of it: the downtime it reports leaves the wait out.
dt=$(jq -r .result.downtime_ms <<<"$res")
dur=$(jq -r .result.duration_ms <<<"$res")
[ "$dt" != null ] && [ $((dt + (FX_IDLE_TIMEOUT + 5) * 1000)) -le "$dur" ] ||
	t_fail "the second move's downtime (${dt} ms) counts its wait for node1's CRIU (the move took ${dur} ms)"
t_assert_eq "$(fx_ctr_where "$id2")" n2 "where the second container runs"
t_assert_eq "$(fx_ctr_running_copies second)" 1 "running copies of the second container"
fx_move_end "$cli3" "$FX_ROOT/incoming.out" 0 "done" "the move into node1"
t_assert_eq "$(fx_ctr_where "$id3")" n1 "where the incoming container runs"
t_assert_eq "$(fx_ctr_running_copies incoming)" 1 "running copies of the incoming container"
t_log "ok"
