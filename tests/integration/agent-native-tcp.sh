#!/usr/bin/env bash
# Two native-shaped containers on n1's bridge hold one TCP connection (web
# echoes what cli sends, cli never reconnects); the agents move web, then
# cli, to n2, each by `nucleus-migrate CONTAINER node2` with the defaults
# (and --accept-landlock-loss, which every native move needs).
# The default `tcp = auto` moves the connection of a container that has a
# network namespace of its own (both ends are inside it), so the journal
# says `move` for both. Between the two moves the ends sit on different
# bridges and the connection waits (TCP retransmits); once both are on n2's
# bridge it carries data again: the same connection (no error, rounds go
# on), and nothing of either container is left on n1.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"
. "$(dirname "$0")/../lib/native.sh"

fx_native_agents_up

json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
# The volumes are shared storage: each container's status is in n1's.
field() { fx_native_field n1 "$1" "$2" "${3:-}"; }
gt() { [ "$(field "$1" "$2" "${4:-}")" -gt "$3" ] 2>/dev/null; }
declare -A id

read -r id[web] _ < <(fx_native_start n1 web --stdio null -- /context/nm-native-work --status /data --listen 7000)
addr=$(cat "$(fx_native_state n1)/ip-alloc/${id[web]}.ip")
read -r id[cli] _ < <(fx_native_start n1 cli --stdio null -- /context/nm-native-work --status /data --connect "$addr:7000")
t_wait_until 10 "TCP rounds on n1" gt cli rounds 5 tcp || t_fail "no TCP traffic: $(cat "$(fx_dir n1)/vol/cli/tcp")"

# move NAME: through the agents, n1 -> n2, with the defaults.
move() {
	local name=$1 oldpid out mig
	oldpid=$(json "$(fx_native_state n1)/${id[$name]}.json" 'd["pid"]')
	out=$(fx_nm n1 migrate "${id[$name]}" node2 --accept-landlock-loss --json 2>&1) || t_fail "moving $name to n2 failed: $out"
	t_assert_eq "$(fx_ctr_where "${id[$name]}")" n2 "where $name runs after its move"
	fx_track_pid "$(json "$(fx_native_state n2)/${id[$name]}.json" 'd["pid"]')"
	mig=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["result"]["mig"])' <<<"$out")
	t_assert_eq "$(jq -r .tcp "$(fx_dir n1)/migrate/journal/done/$mig.json")" move "the TCP mode n1 journaled for $name"
	t_wait_until 10 "$name's old tasks gone on n1" bash -c "! kill -0 $oldpid 2>/dev/null || grep -q '^State:.*Z' /proc/$oldpid/status" ||
		t_fail "$name still has task $oldpid on n1"
	t_wait_until 10 "n1 cleaned up after $name" test ! -e "$(fx_native_state n1)/${id[$name]}.json" ||
		t_fail "$name's state file is left on n1"
	t_wait_until 10 "n1 released $name's address" test ! -e "$(fx_native_state n1)/ip-alloc/${id[$name]}.ip" ||
		t_fail "$name's address is still reserved on n1"
}

t_log "web moves first: its client stays behind on n1's bridge"
move web
t_log "then cli joins it on n2's bridge"
move cli
rounds=$(field cli rounds tcp)
# TCP backs off while the ends cannot reach each other: the first
# retransmission after the second move may take a while.
t_wait_until 60 "TCP rounds on n2" gt cli rounds "$((rounds + 3))" tcp ||
	t_fail "the connection carries nothing on n2: $(cat "$(fx_dir n1)/vol/cli/tcp")"
t_assert_eq "$(field cli err tcp)" none "the client's TCP error after both moves"
t_assert_eq "$(field web err tcp)" none "the server's TCP error after both moves"
# Where each runs, from every node's state files: n2 only, once.
t_assert_eq "$(fx_ctr_where "${id[web]}")" n2 "where web runs after both moves"
t_assert_eq "$(fx_ctr_where "${id[cli]}")" n2 "where cli runs after both moves"
t_log "ok: one connection moved in two moves (rounds $rounds -> $(field cli rounds tcp))"
