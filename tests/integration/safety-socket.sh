#!/usr/bin/env bash
# Who may use the control socket. Others than root and the migration user
# are kept out by the socket's directory (0750 root:nucleus), and, when they
# get past it (a member of the group), by SO_PEERCRED: refused with a reason,
# and the agent logs it. The migration user (what a peer's SSH key runs as)
# may only speak as a peer: never as the CLI, never move, cordon or list.
# Root may do anything.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"

fx_agents_up
n=n1
sock=$(fx_socket "$n")
log=$(fx_agent_log "$n")
pid1=$(fx_agent_pid "$n")
gid=$(getent group "$FX_USER" | cut -d: -f3)
nm=$(pc_user_bin "$FX_BUILD/agent/nucleus-migrate")
pc=$(pc_user_bin "$PC_BIN")
read -r id _ < <(fx_ctr_start "$n" resident)
dumps=$(fx_criu_dumps "$n")

# run_as WHAT WANT-EXIT USER GROUPS CMD...: CMD as USER exits WANT-EXIT
# (its output in T_OUT, for t_says).
run_as() {
	local what=$1 want=$2 user=$3 groups=$4
	shift 4
	t_expect_exit "$want" "$what" pc_as "$user" "$groups" -- "$@"
}

t_log "uid 65534: the socket's directory keeps it out"
run_as "nobody, status" 8 65534 "" "$nm" status --socket "$sock"
t_says "nobody, status" "ermission denied"
run_as "nobody, with the configuration" 8 65534 "" "$nm" status --config "$(fx_conf "$n")"
t_says "nobody, with the configuration" "cannot read config"

t_log "uid 65534 in the socket's group: SO_PEERCRED refuses it, with a reason, and the agent logs it"
run_as "nobody in group $FX_USER" 1 65534 "$gid" "$nm" status --socket "$sock"
t_says "nobody in group $FX_USER" "uid 65534 may not use the nucleus-migrate agent on node1"
t_wait_until 30 "the refusal is logged" grep -q "refusing uid 65534 (pid [0-9]*): not root or the migration user" "$log" ||
	t_fail "the agent did not log the refusal of uid 65534"
printf '%s\n' "hello role=cli" "expect-closed may not use the nucleus-migrate agent" |
	pc_case nobody-raw pc_as 65534 "$gid" -- "$pc" --socket "$sock"
printf '%s\n' "hello role=peer" "expect-closed may not use the nucleus-migrate agent" |
	pc_case nobody-raw-peer pc_as 65534 "$gid" -- "$pc" --socket "$sock"

t_log "the migration user may only speak as a peer"
for verb in status list cordon; do
	run_as "$FX_USER: $verb" 1 "$FX_USER" "" "$nm" "$verb" --socket "$sock"
	t_says "$FX_USER: $verb" "may not use nucleus-migrate on node1: only root may (it is the migration user"
done
run_as "$FX_USER: migrate" 1 "$FX_USER" "" "$nm" migrate "$id" node2 --socket "$sock"
t_says "$FX_USER: migrate" "only root may"
grep -q "refusing a CLI session from uid $(id -u "$FX_USER") (pid [0-9]*): the migration user may only speak as a peer" "$log" ||
	t_fail "the agent did not log the refused CLI session of $FX_USER"
printf '%s\n' "hello role=cli" "migrate $id node2" "expect-closed only root may" |
	pc_case nucleus-cli-migrate pc_as "$FX_USER" "" -- "$pc" --socket "$sock"
# As a peer (what it is for), operator requests are still not requests.
printf '%s\n' "relay node2" hello "expect HELLO" "migrate $id node2" "expect ERROR unexpected message on a peer session" \
	"cordon on" "expect ERROR unexpected message on a peer session" \
	list "expect ERROR unexpected message on a peer session" node-info-req "expect NODE_INFO" |
	pc_case nucleus-peer pc_as "$FX_USER" "" -- "$pc" --node node2 --socket "$sock"
# Straight to the socket, not through dial-stdio: nobody says whose key it is.
printf '%s\n' hello "expect-closed must come through dial-stdio" |
	pc_case nucleus-no-relay pc_as "$FX_USER" "" -- "$pc" --node node2 --socket "$sock"
t_assert_eq "$(fx_ctr_where "$id")" "$n" "the container others asked to move"
t_assert_eq "$(fx_criu_dumps "$n")" "$dumps" "CRIU dumps started by others' requests (the container was never frozen)"
fx_nm "$n" status --json | grep -q '"cordoned":false' || t_fail "a refused CORDON took effect"

t_log "root may do anything"
fx_nm "$n" status >/dev/null || t_fail "root's status"
fx_nm "$n" cordon >/dev/null && fx_nm "$n" uncordon >/dev/null || t_fail "root's cordon"
fx_nm "$n" migrate "$id" node2 >/dev/null || t_fail "root's migrate"
t_assert_eq "$(fx_ctr_where "$id")" n2 "container after root's migrate"
t_assert_eq "$(fx_agent_pid "$n")" "$pid1" "agent pid on $n"
t_log "ok"
