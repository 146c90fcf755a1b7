#!/usr/bin/env bash
# `nucleus-provision cluster`, run over the fixture's root SSH access (the
# operator's path), provisions the two nodes exactly as the step-by-step path
# does (same files, modes, entries, one HMAC key), reloads each node's sshd
# for the drop-in, and is idempotent; bad node lists, unreachable nodes and
# differing HMAC keys stop it with a clear error.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"

# normalized: everything provisioning wrote on both nodes, with the parts
# that differ between two fixtures (root path, generated keys) named.
normalized() {
	local n d f sub=()
	for n in n1 n2; do
		d=$(fx_dir "$n")
		sub+=(-e "s|$(cut -d' ' -f2 "$(fx_agent_key "$n").pub")|AGENTKEY_$n|g")
		sub+=(-e "s|$(cut -d' ' -f2 "$d/ssh/ssh_host_ed25519_key.pub")|HOSTKEY_$n|g")
	done
	sub+=(-e "s|$FX_ROOT|ROOT|g")
	for n in n1 n2; do
		d=$(fx_dir "$n")
		find "$d/etc" "$d/lib" "$d/run" "$d/migrate" "$d/nucleus" "$d/ssh/authorized_keys.$FX_USER" "$d/ssh/sshd_config.d" \
			-printf '%p %M %u:%g\n' | sort
		for f in etc/agent.conf etc/agent.provision etc/ssh/known_hosts etc/ssh/id_ed25519.pub \
			"ssh/authorized_keys.$FX_USER" ssh/sshd_config.d/nucleus-migrate.conf; do
			echo "== $n/$f"
			cat "$d/$f"
		done
		echo "hmac key $(stat -c %s "$(fx_hmac_key "$n")") bytes"
	done | sed "${sub[@]}"
	cmp -s "$(fx_hmac_key n1)" "$(fx_hmac_key n2)" && echo "hmac keys equal"
}

t_log "the step-by-step path, in a fixture of its own"
steps=$(mktemp)
trap 'rm -f "$steps"' EXIT
NM_BUILD_DIR=$FX_BUILD FX_PROVISION_MODE=steps bash -c '
	set -euo pipefail
	. "$1/tests/lib/fixture.sh"
	eval "$2"
	fx_nodes_up
	normalized >"$3"' steps "$FX_SRC" "$(declare -f normalized)" "$steps" || t_fail "step-by-step fixture failed"
grep -q "hmac keys equal" "$steps" || t_fail "step-by-step path: HMAC keys differ"

t_log "the cluster path"
# shellcheck disable=SC2034 # read by fx_nodes_up
FX_PROVISION_MODE=cluster
fx_nodes_up
NP=$FX_PROVISION
normalized >"$FX_ROOT/cluster.norm"
diff -u "$steps" "$FX_ROOT/cluster.norm" >&2 || t_fail "cluster and step-by-step provisioning differ (diff above)"
rm -f "$steps"
for n in n1 n2; do
	grep -q "^== $(fx_node_name "$n") (root@$(fx_addr "$n"))$" "$FX_ROOT/cluster.out" || t_fail "no status of $n in the cluster output"
	# the drop-in was added while sshd ran: init reloaded it
	t_assert_eq "$(grep -c 'Received SIGHUP; restarting' "$(fx_dir "$n")/ssh/sshd.log")" 1 "sshd reloads on $n"
done
t_assert_eq "$(grep -c 'host-key:ok agent-key:ok' "$FX_ROOT/cluster.out")" 2 "peers reported ok"

t_log "the agents log in to each other, pinned"
for n in n1 n2; do
	o=$(fx_other "$n")
	fx_agent_ssh "$o" "$n" true </dev/null >/dev/null 2>&1 || true
	grep -qF "Starting session: forced-command (key-option) '$(fx_agent_bin) dial-stdio --peer $(fx_node_name "$o") --config $(fx_conf "$n")' for $FX_USER from $(fx_addr "$o")" \
		"$(fx_dir "$n")/ssh/sshd.log" || t_fail "$n did not run the pinned command for $o's agent key"
done

t_log "cluster again changes nothing"
snapshot() {
	local n
	for n in n1 n2; do
		find "$(fx_dir "$n")/etc" "$(fx_dir "$n")/lib" "$(fx_dir "$n")/ssh" -type f ! -name sshd.log -printf '%p %M %u:%g %s %T@\n'
		find "$(fx_dir "$n")/etc" "$(fx_dir "$n")/lib" "$(fx_dir "$n")/ssh" -type f ! -name sshd.log -exec sha256sum {} +
	done | sort
}
before=$(snapshot)
fx_provision_cluster
t_assert_eq "$(snapshot)" "$before" "files after a second cluster run"
for n in n1 n2; do
	t_assert_eq "$(grep -c 'Received SIGHUP; restarting' "$(fx_dir "$n")/ssh/sshd.log")" 1 "sshd reloads on $n after a run without changes"
done

t_log "bad node lists"
t_expect_error 2 "list the nodes" "$NP" cluster
t_expect_error 2 "expected NAME=\[USER@\]HOST|nodes are NAME=" "$NP" cluster node1
t_expect_error 2 "'bad name' is not a valid node name" "$NP" cluster "bad name=root@192.0.2.1"
t_expect_error 2 "'99999' .* is not a port number" "$NP" cluster "node1=root@192.0.2.1:99999"
t_expect_error 2 "'Root' .* is not a valid user name" "$NP" cluster "node1=Root@192.0.2.1"
t_expect_error 2 "'-oProxyCommand=x' .* is not a host name" "$NP" cluster "node1=-oProxyCommand=x"
t_expect_error 2 "node node1 is listed twice" "$NP" cluster node1=192.0.2.1 node1=192.0.2.2
t_expect_error 2 "node names come from NAME=HOST" "$NP" cluster --node x node1=192.0.2.1
t_expect_error 2 "unknown option --frob" "$NP" cluster --frob 1 node1=192.0.2.1
t_assert_eq "$(snapshot)" "$before" "files after refused node lists"

t_log "an unreachable node stops the run with a clear error"
mapfile -t args < <(fx_cluster_args)
ssh3=$(FX_SSH_CONNECT_TIMEOUT=2 fx_cluster_ssh n2)
t_expect_error 1 "init failed on node3 \(root@198.18.0.9\)" \
	"$NP" cluster -q "${args[@]}" node3=root@198.18.0.9 "--ssh=$ssh3" "--remote=$NP" "--config=$FX_ROOT/n3/agent.conf"
t_assert_eq "$(snapshot)" "$before" "files after a run that failed on an unreachable node"

t_log "a node with a different HMAC key"
head -c 32 /dev/urandom >"$FX_ROOT/other.key"
"$NP" hmac-key -q --config "$(fx_conf n2)" --install "$FX_ROOT/other.key" --force || t_fail "installing another key on n2 failed"
before=$(snapshot)
t_expect_error 4 "node2 holds a different cluster key .* than node1" "$NP" cluster -q "${args[@]}"
t_assert_eq "$(snapshot)" "$before" "files after the refused run"
cmp -s "$(fx_hmac_key n2)" "$FX_ROOT/other.key" || t_fail "the refused run changed n2's key"
fx_provision_cluster --replace-hmac
cmp -s "$(fx_hmac_key n1)" "$(fx_hmac_key n2)" || t_fail "--replace-hmac did not give n2 n1's key"
t_assert_eq "$(stat -c '%s %a %U:%G' "$(fx_hmac_key n2)")" "32 600 root:root" "n2's key after --replace-hmac"
t_log "ok"
