#!/usr/bin/env bash
# Draining node 1 onto two targets, two at a time: three containers, one of
# them unmovable (a gVisor-marked state file). The two others move, spread
# over the targets; the unmovable one is reported and keeps running at home.
# The node is cordoned first (the drain says so) and a move towards it while
# it drains is refused; its limits.bandwidth is the node's, shared: while two
# streams run each is given half (the agent's log of the rates it assigns),
# and never more than the budget in all.
set -euo pipefail
FX_NODES="n1 n2 n3"
. "$(dirname "$0")/../lib/agents.sh"

# bytes/s for the node: each ~230 KiB stream takes about 14 s, so that the
# two overlap even when the second dump comes seconds after the first (CRIU
# dumps one at a time) on a busy machine.
BUDGET=16384
fx_nodes_up
FX_AGENT_ARGS="--set limits.bandwidth=$BUDGET" fx_agent_start n1
fx_agent_start n2
fx_agent_start n3
read -r incoming _ < <(fx_ctr_start n2 incoming)
declare -A ids
for name in d1 d2 gv; do
	read -r id _ < <(fx_ctr_start n1 "$name")
	ids[$name]=$id
done
sed -i 's/"using_gvisor": false/"using_gvisor": true/' "$(fx_dir n1)/nucleus/${ids[gv]}.json"
for name in d1 d2 gv; do fx_counter_advances "$(fx_ctr_dir n1 "$name")" || t_fail "$name does not tick"; done

log_off=$(stat -c %s "$(fx_agent_log n1)")
shares() { tail -c "+$((log_off + 1))" "$(fx_agent_log n1)" | grep -o 'streaming at up to [0-9]* bytes/s: [0-9]* stream(s)' || true; }
two_streams() { shares | grep -q 'stream(s)' && shares | grep -q ': 2 stream(s)'; }
rc=0
fx_nm n1 drain --to node2,node3 --parallel 2 --json >"$FX_ROOT/drain.out" 2>&1 &
drain_pid=$!
fx_track_pid "$drain_pid"
t_wait_until 120 "two streams share the budget" two_streams || t_fail "never two streams at once: $(shares)"
t_log "while it drains, a move towards it is refused"
t_expect_exit 3 "a move to the draining node" fx_nm n2 migrate "$incoming" node1
t_says "a move to the draining node" "cordoned"
t_assert_eq "$(fx_ctr_where "$incoming")" n2 "the container refused by the draining node"
wait "$drain_pid" || rc=$?
out=$(cat "$FX_ROOT/drain.out")
t_assert_eq "$rc" 4 "drain exit code with one unmovable container ($out)"
grep -q '"phase":"cordoned"' <<<"$out" || t_fail "the drain does not say it cordoned the node: $out"
grep -q '"cordoned":true' <<<"$(tail -n1 <<<"$out")" || t_fail "the drain's result does not say the node is cordoned"
fx_nm n1 status --json | grep -q '"cordoned":true' || t_fail "node1 is not cordoned after its drain"
t_log "the budget: $(shares | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
while read -r _ _ _ _ rate _ n _; do
	t_assert_eq "$rate" "$((BUDGET / n))" "the share of one of $n stream(s)"
	t_assert "$n stream(s) at $rate bytes/s exceed the budget" [ $((rate * n)) -le "$BUDGET" ]
done < <(shares)
result=$(tail -n1 <<<"$out")
grep -q '"moved":2' <<<"$result" || t_fail "two containers should have moved: $result"
grep -q '"failed":1' <<<"$result" || t_fail "one container should not have moved: $result"
grep -q "\"container\":\"${ids[gv]}\"[^}]*\"outcome\":\"refused\"" <<<"$result" ||
	grep -q "\"outcome\":\"refused\"[^}]*\"container\":\"${ids[gv]}\"" <<<"$result" ||
	t_fail "the gVisor container is not reported as refused: $result"

t_assert_eq "$(fx_ctr_where "${ids[gv]}")" n1 "the gVisor container stays on node1"
w1=$(fx_ctr_where "${ids[d1]}")
w2=$(fx_ctr_where "${ids[d2]}")
[ "$w1" != n1 ] && [ "$w2" != n1 ] || t_fail "a movable container stayed: d1 on $w1, d2 on $w2"
[ "$w1" != "$w2" ] || t_fail "both went to $w1: the drain did not spread them"
for name in d1 d2 gv; do
	t_assert_eq "$(fx_ctr_running_copies "$name")" 1 "running copies of $name"
	fx_counter_advances "$(fx_ctr_dir n1 "$name")" || t_fail "$name stopped ticking"
	fx_log_ok "$(fx_ctr_dir n1 "$name")" || t_fail "log of $name has a gap"
done

t_log "the text table"
fx_nm n1 drain --to node2,node3 >"$FX_ROOT/table" || true
grep -q "CONTAINER" "$FX_ROOT/table" && grep -q "gVisor\|gvisor" "$FX_ROOT/table" ||
	{ cat "$FX_ROOT/table" >&2; t_fail "the drain table does not show the refusal"; }
t_log "a drain whose every target fails at once (unknown names): an answer, and the agent lives on"
rc=0
out=$(fx_nm n1 drain --to nosuch1,nosuch2 --json 2>&1) || rc=$?
[ "$rc" -ne 0 ] || t_fail "a drain to unknown targets succeeded: $out"
grep -q '"event":"result"' <<<"$out" || t_fail "no result from a drain to unknown targets: $out"
fx_agent_up n1 || t_fail "the agent on n1 died in a drain to unknown targets"
t_assert_eq "$(fx_ctr_where "${ids[gv]}")" n1 "where gv runs after a drain to unknown targets"

t_log "targets that refuse the drain's question, or never answer it: not usable, with the reason"
# node3 answers NODE_INFO_REQ with ERROR, node2 not at all (it answers
# PINGs, so its link stays up): each is asked once, and neither may hold
# the drain for longer than the idle timeout (20 s here; the wait allows
# three).
fx_agent_stop n2
fx_agent_stop n3
fx_agent_start n2 NM_FAULT=fail=node-info-silent
fx_agent_start n3 NM_FAULT=fail=node-info
read -r id3 _ < <(fx_ctr_start n1 d3)
fx_nm n1 drain --to node2,node3 --json >"$FX_ROOT/asked.out" 2>&1 &
drain_pid=$!
fx_track_pid "$drain_pid"
t_wait_until 60 "the drain ends" bash -c "! kill -0 $drain_pid 2>/dev/null" ||
	t_fail "the drain still waits for its targets: $(cat "$FX_ROOT/asked.out")"
rc=0
wait "$drain_pid" || rc=$?
result=$(tail -n1 "$FX_ROOT/asked.out")
t_assert_eq "$rc" 4 "exit code of a drain whose targets did not answer ($result)"
reason() { jq -r --arg t "$1" '[.. | objects | select(.target? == $t and has("usable"))][0] | "\(.usable) \(.reason)"' <<<"$result"; }
grep -q "^false node3 refused our NODE_INFO_REQ: node information refused" <<<"$(reason node3)" ||
	t_fail "node3's refusal is not the drain's reason: $(reason node3)"
grep -q "^false node2 did not answer our NODE_INFO_REQ within" <<<"$(reason node2)" ||
	t_fail "node2's silence is not the drain's reason: $(reason node2)"
t_assert_eq "$(fx_ctr_where "$id3")" n1 "where d3 runs after a drain without targets"
fx_counter_advances "$(fx_ctr_dir n1 d3)" || t_fail "d3 stopped ticking"
t_log "ok: d1 -> $w1, d2 -> $w2, gv stays on n1; targets that refused or ignored the question were left out"
