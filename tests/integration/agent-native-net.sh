#!/usr/bin/env bash
# The nat table follows a native container through the agents, as nucleus's
# supervisor keeps it: one `-s SUBNET ! -o nucleus0 -j MASQUERADE` rule per
# running bridged container (DESIGN.md "The nat table" on the `! -o`), and per published port (`--publish 8080:7000`) a DNAT rule in
# PREROUTING and one in OUTPUT.
#
# - A target where the port is published already refuses before the
#   freeze: exit 3, the port named, the container untouched, no dump.
# - A move whose restore fails rolls back: the source keeps its rules, the
#   target made none.
# - n1 -> n2: the target's port reaches the container (from n2 itself, the
#   OUTPUT rule, and from n1, PREROUTING); the source has no DNAT rule left
#   and one MASQUERADE rule less; the target one more.
# - n2 -> n1: the same the other way; n2's agent, which kept the copy, removed
#   its rules when it left.
# - The copy restored on n1 exits: n1's agent removes its rules (it is the
#   supervisor there); the other container's MASQUERADE rule stays.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"
. "$(dirname "$0")/../lib/native.sh"

fx_native_agents_up

json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
pid_of() { json "$(fx_native_state "$1")/$id.json" 'd["pid"]'; }
stopped() { grep -q '^State:.*T' "/proc/$1/status"; }
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status"; }
nat() { ip netns exec "$(fx_ns "$1")" iptables -w -t nat -S "$2"; }
# masq NODE: MASQUERADE rules for the subnet; dnat NODE CHAIN: web's DNAT rules.
masq() { nat "$1" POSTROUTING | grep -c -- '^-A POSTROUTING -s 10.0.42.0/24 ! -o nucleus0 -j MASQUERADE$' || true; }
dnat() { nat "$1" "$2" | grep -c -- "--dport 8080 -j DNAT --to-destination $addr:7000\$" || true; }
# counts NODE MASQ PRE OUT: the node's rules are these (waited for).
counts() { [ "$(masq "$1")" = "$2" ] && [ "$(dnat "$1" PREROUTING)" = "$3" ] && [ "$(dnat "$1" OUTPUT)" = "$4" ]; }
expect_counts() {
	t_wait_until 10 "$1 has $2 MASQUERADE, $3+$4 DNAT rules" counts "$@" ||
		t_fail "$1's nat table: $(masq "$1") MASQUERADE (want $2), $(dnat "$1" PREROUTING) PREROUTING (want $3), $(dnat "$1" OUTPUT) OUTPUT (want $4) DNAT rules for web: $(nat "$1" PREROUTING; nat "$1" OUTPUT; nat "$1" POSTROUTING)"
}
# probe FROM NODE: web echoes what its client sends, through NODE's port 8080.
probe() {
	t_assert_eq "$(fx_in "$1" timeout "$(t_secs 5)" bash -c "exec 3<>/dev/tcp/$(fx_addr "$2")/8080 && printf nm-probe >&3 && head -c 8 <&3")" \
		nm-probe "web's answer through $2's published port 8080, asked from $1"
}

read -r id pid < <(fx_native_start n1 web --publish 8080:7000 --stdio null -- \
	/context/nm-native-work --status /data --listen 7000)
addr=$(cat "$(fx_native_state n1)/ip-alloc/$id.ip")
ticks=$(fx_start_ticks "$pid")
# A second bridged container without ports: its MASQUERADE rule is counted too.
read -r _ other < <(fx_native_start n1 other --stdio null -- /context/nm-native-work --status /data)
fx_track_pid "$other"

expect_counts n1 2 1 1
expect_counts n2 0 0 0
probe n1 n1

untouched() {
	t_assert_eq "$(pid_of n1)" "$pid" "web's pid on n1"
	t_assert_eq "$(fx_start_ticks "$pid")" "$ticks" "web's start ticks"
	! stopped "$pid" || t_fail "web is stopped on n1"
}

# ---- refused before the freeze: the port is taken on the target ----------------
t_log "a target where port 8080 is published already refuses before the dump"
dumps=$(fx_criu_dumps n1)
squat=(-p tcp --dport 8080 -j DNAT --to-destination 10.0.42.250:80)
ip netns exec "$(fx_ns n2)" iptables -w -t nat -A PREROUTING "${squat[@]}"
t_expect_exit 3 "a target whose port 8080 is taken" fx_nm n1 migrate "$id" node2 --accept-landlock-loss
t_says "a target whose port 8080 is taken" "tcp/8080"
ip netns exec "$(fx_ns n2)" iptables -w -t nat -D PREROUTING "${squat[@]}"
untouched
t_assert_eq "$(fx_criu_dumps n1)" "$dumps" "CRIU dumps started although the move was refused"
[ ! -e "$(fx_native_state n2)/ip-alloc/$id.ip" ] || t_fail "n2 kept a reservation for a refused move"
expect_counts n1 2 1 1
expect_counts n2 0 0 0

# ---- a failed restore: the source keeps its rules, the target makes none ---------
t_log "a failed restore on n2 rolls back: n1 keeps web's rules"
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n2)" fx_agent_start n2 NM_FAULT=fail=dest-restore
t_expect_exit 4 "a move whose restore fails" fx_nm n1 migrate "$id" node2 --accept-landlock-loss
untouched
expect_counts n1 2 1 1
expect_counts n2 0 0 0
probe n1 n1
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n2)" fx_agent_start n2

# move FROM TO: through the agents; TO's port reaches web, FROM has no rule left.
move() {
	local from=$1 to=$2 oldpid out
	oldpid=$(pid_of "$from")
	out=$(fx_nm "$from" migrate "$id" "$(fx_node_name "$to")" --accept-landlock-loss 2>&1) ||
		t_fail "moving web $from -> $to failed: $out"
	t_assert_eq "$(fx_ctr_where "$id")" "$to" "where web runs after the move"
	fx_track_pid "$(pid_of "$to")"
	t_wait_until 5 "web's old tasks gone" gone "$oldpid" || t_fail "web still has task $oldpid on $from"
	t_log "ok: web moved $from -> $to"
}

move n1 n2
expect_counts n2 1 1 1
expect_counts n1 1 0 0
probe n2 n2
probe n1 n2
grep -q "a MASQUERADE rule for 10.0.42.0/24 and 1 published port(s) in place" "$(fx_agent_log n2)" ||
	t_fail "n2's agent did not say it added web's rules"

# ---- the agent restarted with web's rules gone (a crash between recording the
# kept container and adding them, or a hand that removed them) -----------------
t_log "n2's agent restarted without web's rules puts them back, once"
fx_agent_stop n2
expect_counts n2 1 1 1
in_n2() { ip netns exec "$(fx_ns n2)" iptables -w -t nat "$@"; }
in_n2 -D POSTROUTING -s 10.0.42.0/24 ! -o nucleus0 -j MASQUERADE
in_n2 -D PREROUTING -p tcp --dport 8080 -j DNAT --to-destination "$addr:7000"
in_n2 -D OUTPUT -p tcp -m addrtype --dst-type LOCAL --dport 8080 -j DNAT --to-destination "$addr:7000"
expect_counts n2 0 0 0
FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n2)" fx_agent_start n2
expect_counts n2 1 1 1
probe n1 n2
fx_agent_stop n2
FX_AGENT_ARGS="--set agent.cgroup_root=$(fx_cgroup_root n2)" fx_agent_start n2
t_wait_until 10 "n2's agent checked web's rules again" \
	bash -c "[ \$(grep -c 'and 1 published port(s) in place' '$(fx_agent_log n2)') -ge 3 ]" ||
	t_fail "n2's agent did not check web's rules after its second restart"
expect_counts n2 1 1 1

move n2 n1
expect_counts n1 2 1 1
expect_counts n2 0 0 0
probe n1 n1
probe n2 n1
grep -q "container $id exited: its MASQUERADE rule and 1 published port(s) are gone" "$(fx_agent_log n2)" ||
	t_fail "n2's agent did not say it removed the rules of the copy that left"

# ---- the copy on n1 exits: n1's agent is its supervisor ----------------------------
t_log "web's copy on n1 exits: n1's agent removes its rules"
last=$(pid_of n1)
kill -KILL "$last"
t_wait_until 10 "web's copy on n1 gone" gone "$last" || t_fail "web's copy $last did not exit"
expect_counts n1 1 0 0
kill -0 "$other" || t_fail "the other container died"
t_log "ok"
