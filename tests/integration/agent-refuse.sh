#!/usr/bin/env bash
# Refused before anything is dumped (exit 3, with the reason): by the
# target, a cordoned node and a container that already runs there; by the
# source, a gVisor container and one with a user namespace of its own. An
# unknown or ambiguous container is an error. No container ever stopped.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"

fx_agents_up
read -r id pid < <(fx_ctr_start n1 stay)
work=$(fx_ctr_dir n1 stay)
fx_counter_advances "$work" || t_fail "workload does not tick"
# Refused before it is frozen: no CRIU dump starts for any of these.
dumps=$(fx_criu_dumps n1)

t_log "a cordoned target refuses"
fx_nm n2 cordon >/dev/null
t_expect_exit 3 "migrate to a cordoned node" fx_nm n1 migrate "$id" node2
t_says "migrate to a cordoned node" cordoned
t_assert_eq "$(fx_ctr_where "$id")" n1 "container after a refusal"
t_assert_eq "$(fx_criu_dumps n1)" "$dumps" "CRIU dumps started although the move was refused"
t_assert_eq "$(fx_nm n2 status --json | grep -o '"cordoned":true')" '"cordoned":true' "node2 reports its cordon"

t_log "the cordon survives an agent restart"
fx_agent_stop n2
fx_agent_start n2
t_expect_exit 3 "migrate to a cordoned node after restart" fx_nm n1 migrate "$id" node2
fx_nm n2 uncordon >/dev/null

t_log "unknown and ambiguous containers"
t_expect_exit 6 "unknown container" fx_nm n1 migrate nosuchcontainer node2
read -r id2 _ < <(fx_ctr_start n1 stay)
t_expect_exit 6 "ambiguous name" fx_nm n1 migrate stay node2
t_says "ambiguous name (the candidates)" "$id" "$id2"
t_expect_exit 2 "missing target" fx_nm n1 migrate "$id"
t_expect_exit 1 "unknown target" fx_nm n1 migrate "$id" node9

t_log "a gVisor container is refused"
read -r gid _ < <(fx_ctr_start n1 sandboxed)
f=$(fx_dir n1)/nucleus/$gid.json
sed -i 's/"using_gvisor": false/"using_gvisor": true/' "$f"
t_expect_exit 3 "gVisor container" fx_nm n1 migrate "$gid" node2
t_says "gVisor container" gVisor
t_assert_eq "$(fx_ctr_where "$gid")" n1 "where the gVisor container runs after its refusal"
fx_counter_advances "$(fx_ctr_dir n1 sandboxed)" || t_fail "the gVisor container stopped counting"

t_log "a container with a user namespace of its own is refused"
uw=$(fx_ctr_dir n1 userns)
mkdir -p "$uw"
read -r uid upid < <(fx_in n1 unshare --user --map-root-user "$FX_BUILD/tests/workloads/nm-ctr-start" \
	--state-dir "$(fx_dir n1)/nucleus" --name userns --console "$uw/console" -- \
	"$FX_BUILD/tests/workloads/nm-counter" "$uw" 100) || t_fail "could not start a container in a user namespace"
fx_track_pid "$upid"
t_wait_until 30 "the container in a user namespace counts" test -s "$uw/state" ||
	t_fail "the container in a user namespace did not start"
[ "$(readlink "/proc/$upid/ns/user")" != "$(readlink /proc/self/ns/user)" ] ||
	t_fail "the container's init shares the host's user namespace"
t_expect_exit 3 "a container with its own user namespace" fx_nm n1 migrate "$uid" node2
t_says "a container with its own user namespace" "user namespace of its own"
t_assert_eq "$(fx_ctr_where "$uid")" n1 "where the container in a user namespace runs after its refusal"
# Running, sleeping or in a disk wait; not stopped, traced or gone.
grep -q '^State:[[:space:]]*[RSD]' "/proc/$upid/status" ||
	t_fail "the container in a user namespace is not running: $(grep '^State:' "/proc/$upid/status" 2>&1)"
fx_counter_advances "$uw" || t_fail "the container in a user namespace stopped counting"

t_log "the same container already running on the target is refused"
cp "$(fx_dir n1)/nucleus/$id.json" "$(fx_dir n2)/nucleus/$id.json"
t_expect_exit 3 "container present on the target" fx_nm n1 migrate "$id" node2
rm -f "$(fx_dir n2)/nucleus/$id.json"
t_assert_eq "$(fx_ctr_where "$id")" n1 "container after all refusals"
t_assert_eq "$(fx_criu_dumps n1)" "$dumps" "CRIU dumps started during refusals"

t_log "the agent is not running"
fx_agent_stop n1
t_expect_exit 8 "no agent" fx_nm n1 status
t_log "ok"
