#!/usr/bin/env bash
# The two-node fixture works: nodes come up provisioned, ssh either way with
# strict host keys, the agents' keys can run nothing but the pinned
# dial-stdio command (no pty, no forwarding), a wrong host key is refused, link and sshd can be cut and restored, a
# container runs, and teardown leaves nothing behind, even after a failure.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"

# Runs a fixture in a child shell that ends with $1 (an exit code) and reports
# what it created, so that we can check that teardown removed it all.
run_child_fixture() {
	local rc=$1 report=$2
	NM_BUILD_DIR=$FX_BUILD bash -c '
		set -euo pipefail
		. "$1/tests/lib/fixture.sh"
		fx_nodes_up
		ctr=$(fx_ctr_start n1 child)
		{
			echo "ns $(fx_ns n1) $(fx_ns n2)"
			echo "root $FX_ROOT"
			echo "pids ${ctr#* } $(fx_sshd_pid n1) $(fx_sshd_pid n2)"
		} >"$2"
		exit "$3"' child "$FX_SRC" "$report" "$rc"
}

check_nothing_left() {
	local report=$1 ns pid root
	root=$(sed -n 's/^root //p' "$report")
	for ns in $(sed -n 's/^ns //p' "$report"); do
		ip netns list | grep -qw "$ns" && t_fail "namespace $ns left behind"
	done
	for pid in $(sed -n 's/^pids //p' "$report"); do
		t_wait_until 30 "pid $pid gone" bash -c "! kill -0 $pid 2>/dev/null || grep -q '^State:.*Z' /proc/$pid/status" ||
			t_fail "process $pid left behind"
	done
	[ ! -e "$root" ] || t_fail "$root left behind"
}

report=$(mktemp)
trap 'rm -f "$report"' EXIT

t_log "teardown after success"
run_child_fixture 0 "$report" || t_fail "child fixture failed"
check_nothing_left "$report"

t_log "teardown after a failing test"
if run_child_fixture 3 "$report"; then t_fail "child fixture should have failed"; fi
check_nothing_left "$report"
rm -f "$report"

fx_nodes_up

t_log "ssh both ways with strict host-key checking"
t_assert_eq "$(fx_ssh n1 n2 echo ok)" ok "ssh n1 -> n2"
t_assert_eq "$(fx_ssh n2 n1 echo ok)" ok "ssh n2 -> n1"
t_expect_fail "the fixture's addresses exist only in its namespaces" \
	bash -c "ip -o addr show | grep -q ' $FX_NET\.'"

t_log "the agents' keys are pinned to dial-stdio (peer host keys from provisioning)"
for pair in "n1 n2" "n2 n1"; do
	read -r from to <<<"$pair"
	log=$(fx_dir "$to")/ssh/sshd.log
	out=$(fx_agent_ssh "$from" "$to" cat /etc/passwd </dev/null 2>&1) || true
	grep -q '^root:' <<<"$out" && t_fail "$from's agent key ran 'cat /etc/passwd' on $to"
	grep -qF "Accepted publickey for $FX_USER from $(fx_addr "$from")" "$log" ||
		t_fail "$to did not accept $from's agent key for $FX_USER (log: $log)"
	forced="Starting session: forced-command (key-option) '$(fx_agent_bin) dial-stdio --peer $(fx_node_name "$from") --config $(fx_conf "$to")' for $FX_USER"
	grep -qF "$forced" "$log" || t_fail "$to did not run the pinned command for $from's key (log: $log)"
	grep -E "Starting session: (command|shell)" "$log" | grep -q " for $FX_USER " &&
		t_fail "$to ran a session command other than the pinned one for $FX_USER"
done
out=$(fx_agent_ssh n1 n2 -tt true </dev/null 2>&1) || true
grep -q "PTY allocation request failed" <<<"$out" || t_fail "the agent key got a pty: $out"
out=$(FX_SSH_TIMEOUT=$(t_secs 60) fx_agent_ssh n1 n2 -W 127.0.0.1:22 </dev/null 2>&1) && t_fail "stdio forwarding (-W) was granted"
grep -q "SSH-2.0" <<<"$out" && t_fail "stdio forwarding (-W) reached the peer's sshd"
grep -q "administratively prohibited" <<<"$out" || t_fail "unexpected answer to -W: $out"
out=$(FX_SSH_TIMEOUT=$(t_secs 60) fx_agent_ssh n1 n2 -N -o ExitOnForwardFailure=yes -R 127.0.0.1:2222:127.0.0.1:22 </dev/null 2>&1) &&
	t_fail "remote forwarding (-R) was granted"
grep -q "remote port forwarding failed" <<<"$out" || t_fail "unexpected answer to -R: $out"
# -L: the listener is local; what fails is each forwarded connection.
FX_SSH_TIMEOUT=$(t_secs 60) fx_agent_ssh n1 n2 -N -o ExitOnForwardFailure=yes -L 127.0.0.1:2223:127.0.0.1:22 </dev/null 2>"$FX_ROOT/fwd.err" &
fwd=$!
t_wait_until 30 "local forward listener" fx_in n1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2223' 2>/dev/null ||
	t_fail "ssh -L did not listen: $(cat "$FX_ROOT/fwd.err")"
# The refused forward closes the connection (head sees its end, after ssh
# printed why); the timeout only guards against a hang.
banner=$(fx_in n1 timeout "$(t_secs 60)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/2223; head -c 7 <&3' 2>/dev/null) || true
kill "$fwd" 2>/dev/null || true
wait "$fwd" 2>/dev/null || true
[ -z "$banner" ] || t_fail "local forwarding (-L) reached $banner"
grep -q "administratively prohibited" "$FX_ROOT/fwd.err" || t_fail "unexpected answer to -L: $(cat "$FX_ROOT/fwd.err")"
t_expect_fail "an agent key logs in as root" \
	fx_in n1 ssh -F none -i "$(fx_agent_key n1)" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
	-o UserKnownHostsFile="$(fx_agent_known_hosts n1)" -o GlobalKnownHostsFile=/dev/null "root@$(fx_addr n2)" true
t_expect_fail "the fixture's root test key logs in as $FX_USER" \
	fx_in n1 ssh -F none -i "$(fx_dir n1)/ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
	-o UserKnownHostsFile="$(fx_agent_known_hosts n1)" -o GlobalKnownHostsFile=/dev/null "$FX_USER@$(fx_addr n2)" true

t_log "a wrong host key is refused"
kh=$(fx_dir n1)/ssh/known_hosts
cp "$kh" "$kh.good"
ssh-keygen -q -t ed25519 -N '' -f "$FX_ROOT/other_host_key"
printf '%s %s\n' "$(fx_addr n2)" "$(cut -d' ' -f1,2 "$FX_ROOT/other_host_key.pub")" >"$kh"
out=$(fx_ssh n1 n2 true 2>&1) && t_fail "ssh accepted a wrong host key"
grep -q "Host key verification failed" <<<"$out" || t_fail "unexpected error for a wrong host key: $out"
: >"$kh"
t_expect_fail "an unknown host key is refused" fx_ssh n1 n2 true
mv "$kh.good" "$kh"

t_log "link cut and restored"
fx_link_down
FX_SSH_CONNECT_TIMEOUT=2 t_expect_fail "ssh over a cut link" fx_ssh n1 n2 true
fx_link_up
t_assert_eq "$(fx_ssh n1 n2 echo back)" back "ssh after link restored"

t_log "sshd killed and restarted"
fx_sshd_kill n2
t_expect_fail "ssh to a dead sshd" fx_ssh n1 n2 true
fx_sshd_start n2
t_assert_eq "$(fx_ssh n1 n2 echo again)" again "ssh after sshd restart"

t_log "a container runs in its own namespaces"
read -r id pid < <(fx_ctr_start n1 selftest)
[[ $id =~ ^[0-9a-f]{32}$ ]] || t_fail "container id '$id' is not 32 hex digits"
state=$(fx_dir n1)/nucleus/$id.json
t_assert_eq "$(stat -c %a "$state")" 600 "state file mode"
t_assert_eq "$(stat -c %a "$(fx_dir n1)/nucleus")" 700 "state dir mode"
grep -q "\"start_ticks\": $(fx_start_ticks "$pid")," "$state" || t_fail "start_ticks in $state do not match pid $pid"
for ns in pid uts ipc net; do
	[ "$(readlink "/proc/$pid/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ] || t_fail "container shares the $ns namespace"
done
t_assert_eq "$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f4)" "$pid" "container init leads its session"
work=$(fx_ctr_dir n1 selftest)
c1=$(fx_ctr_field "$work" count)
t_wait_until 30 "counter advances" bash -c "[ \$(sed -n 's/.*count=\([0-9]*\).*/\1/p' $work/state) -gt $c1 ]" ||
	t_fail "counter does not advance"
t_log "ok"
