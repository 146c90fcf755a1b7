#!/usr/bin/env bash
# nucleus-provision init, on the fixture's nodes (which it provisioned):
# owners and modes, the migration user, sshd's effective settings for it,
# the configuration (also as the agent's inih reads it), idempotence, updates
# of single keys, bad input, and the installed files (unit, tmpfiles.d, sshd
# drop-in, example configuration) that belong with it.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"

fx_nodes_up
NP=$FX_PROVISION
d1=$(fx_dir n1)
conf=$(fx_conf n1)

# snapshot NODE: content, owner, mode and mtime of everything provisioning
# wrote on NODE.
snapshot() {
	local d
	d=$(fx_dir "$1")
	find "$d/etc" "$d/ssh/authorized_keys.$FX_USER" "$d/ssh/sshd_config.d" "$d/lib" "$d/run" "$d/migrate" "$d/nucleus" \
		-printf '%p %M %u:%g %s %T@\n' | sort
	find "$d/etc" "$d/ssh/authorized_keys.$FX_USER" "$d/ssh/sshd_config.d" "$d/lib" -type f -exec sha256sum {} + | sort
}

mode_owner() { stat -c '%a %U:%G' "$1"; }

t_log "owners and modes"
t_assert_eq "$(mode_owner "$(fx_agent_key n1)")" "600 root:root" "agent private key"
t_assert_eq "$(mode_owner "$(fx_agent_key n1).pub")" "644 root:root" "agent public key"
t_assert_eq "$(mode_owner "$d1/etc/ssh")" "700 root:root" "agent ssh dir"
t_assert_eq "$(mode_owner "$d1/migrate")" "700 root:root" "work dir"
t_assert_eq "$(mode_owner "$d1/nucleus")" "700 root:root" "state dir"
t_assert_eq "$(mode_owner "$d1/lib")" "700 root:root" "HMAC key dir"
t_assert_eq "$(mode_owner "$(fx_hmac_key n1)")" "600 root:root" "HMAC key"
t_assert_eq "$(mode_owner "$d1/run")" "750 root:$FX_USER" "socket dir"
t_assert_eq "$(mode_owner "$conf")" "640 root:$FX_USER" "agent.conf"
t_assert_eq "$(mode_owner "$d1/ssh/authorized_keys.$FX_USER")" "644 root:root" "migration user's authorized_keys"
t_assert_eq "$(mode_owner "$(fx_agent_known_hosts n1)")" "644 root:root" "agent known_hosts"
t_assert_eq "$(mode_owner "$d1/ssh/sshd_config.d/nucleus-migrate.conf")" "644 root:root" "sshd drop-in"
t_assert_eq "$(ssh-keygen -l -f "$(fx_agent_key n1)" | sed 's/.*(\(.*\))$/\1/')" ED25519 "agent key type"
grep -q ' nucleus-agent@node1$' "$(fx_agent_key n1).pub" || t_fail "agent key comment is not nucleus-agent@node1"

t_log "the migration user"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd "$FX_USER") || t_fail "user $FX_USER missing"
t_assert_eq "$shell" /bin/sh "shell of $FX_USER (sshd runs forced commands through it)"
t_assert_eq "$(getent group "$gid" | cut -d: -f1)" "$FX_USER" "primary group of $FX_USER"
{ [ "$uid" -ne 0 ] && [ "$uid" -lt 1000 ]; } || t_fail "$FX_USER is not a system user (uid $uid)"
t_assert_eq "$(getent shadow "$FX_USER" | cut -d: -f2)" '*' "password field of $FX_USER (no password, not locked)"
[ -d "$home" ] || t_fail "home $home of $FX_USER does not exist"
setpriv --reuid="$FX_USER" --regid="$FX_USER" --init-groups test -r "$conf" ||
	t_fail "$FX_USER cannot read $conf (dial-stdio needs it)"
setpriv --reuid="$FX_USER" --regid="$FX_USER" --init-groups test -x "$d1/run" ||
	t_fail "$FX_USER cannot reach the socket directory"
setpriv --reuid="$FX_USER" --regid="$FX_USER" --init-groups test -r "$(fx_agent_key n1)" &&
	t_fail "$FX_USER can read the agent's private key"
setpriv --reuid="$FX_USER" --regid="$FX_USER" --init-groups test -r "$(fx_hmac_key n1)" &&
	t_fail "$FX_USER can read the cluster HMAC key"

t_log "sshd's effective settings: the drop-in binds the migration user only"
eff() { /usr/sbin/sshd -T -f "$d1/ssh/sshd_config" -C "user=$1,host=peer,addr=$(fx_addr n2),laddr=$(fx_addr n1),lport=22"; }
nuc=$(eff "$FX_USER")
for want in "authorizedkeysfile $d1/ssh/authorized_keys.$FX_USER" "authenticationmethods publickey" \
	"passwordauthentication no" "kbdinteractiveauthentication no" "permittty no" "disableforwarding yes" \
	"allowtcpforwarding no" "allowagentforwarding no" "x11forwarding no" "permittunnel no" \
	"permituserrc no" "trustedusercakeys none" "authorizedkeyscommand none" "permituserenvironment no"; do
	grep -qxF "$want" <<<"$nuc" || t_fail "sshd -T for $FX_USER lacks '$want'"
done
root=$(eff root)
grep -qxF "authorizedkeysfile $d1/ssh/authorized_keys.%u" <<<"$root" || t_fail "the drop-in changed root's AuthorizedKeysFile"
grep -qx "permittty yes" <<<"$root" || t_fail "the drop-in's Match block leaked into the rest of sshd_config"

t_log "the configuration, as the agent's inih reads it"
# shellcheck disable=SC2046 # pkg-config prints several flags
cc -x c -o "$FX_ROOT/ini-dump" - $(pkg-config --cflags --libs inih) <<'C'
#include <ini.h>
#include <stdio.h>
static int put(void *u, const char *s, const char *k, const char *v)
{
	(void)u;
	printf("%s.%s=%s\n", s, k, v);
	return 1;
}
int main(int argc, char **argv)
{
	(void)argc;
	return ini_parse(argv[1], put, NULL) == 0 ? 0 : 1;
}
C
ini=$("$FX_ROOT/ini-dump" "$conf") || t_fail "inih cannot parse $conf"
for want in "agent.node=node1" "agent.socket=$(fx_socket n1)" "agent.socket_group=$FX_USER" \
	"agent.state_dir=$d1/nucleus" "agent.work_dir=$d1/migrate" "agent.hmac_key=$(fx_hmac_key n1)" "agent.criu=" \
	"ssh.key=$(fx_agent_key n1)" "ssh.known_hosts=$(fx_agent_known_hosts n1)" "ssh.user=$FX_USER" \
	"ssh.accept_new=no" "peer node2.host=$(fx_addr n2)" "peer node2.port=22" "peer node2.user=$FX_USER"; do
	grep -qxF "$want" <<<"$ini" || t_fail "$conf: inih does not read '$want'"
done
t_assert_eq "$(grep -c '^agent\.node=' <<<"$ini")" 1 "node keys in $conf"

t_log "the example configuration has the keys that init writes"
example=$FX_SRC/deploy/agent.conf.example
ex=$("$FX_ROOT/ini-dump" "$example") || t_fail "inih cannot parse $example"
keys() { sed -n 's/^\([a-z]*\.[a-z_]*\)=.*/\1/p' | sort; }
t_assert_eq "$(keys <<<"$ex")" "$(keys <<<"$ini")" "keys of agent.conf.example vs a provisioned agent.conf"
t_assert_eq "$(grep -c '^peer node2\.' <<<"$ex")" 3 "peer example"

t_log "init again changes nothing (n1 and n2)"
before1=$(snapshot n1)
before2=$(snapshot n2)
sleep 0.01
fx_provision_init n1 || t_fail "second init failed"
fx_provision_init n2 || t_fail "second init on n2 failed"
t_assert_eq "$(snapshot n1)" "$before1" "n1 after a second init"
t_assert_eq "$(snapshot n2)" "$before2" "n2 after a second init"
t_assert_eq "$(grep -c '^\[agent\]' "$conf")" 1 "[agent] sections"
t_assert_eq "$(grep -c '^node = ' "$conf")" 1 "node lines"
t_assert_eq "$(grep -c '^\[peer node2\]' "$conf")" 1 "[peer node2] sections"
t_assert_eq "$(getent passwd "$FX_USER" | wc -l)" 1 "passwd entries of $FX_USER"

t_log "init changes only the keys it is given"
cp "$conf" "$FX_ROOT/conf.before"
fx_provision_init n1 --set agent.log_level=debug --set limits.parallel=4 || t_fail "init --set failed"
t_assert_eq "$(diff "$FX_ROOT/conf.before" "$conf" | grep -c '^[<>]')" 4 "changed lines after --set (2 keys)"
grep -qx 'log_level = debug' "$conf" || t_fail "log_level not updated"
grep -qx 'parallel = 4' "$conf" || t_fail "parallel not updated"
"$NP" init -q --config "$conf" --set agent.log_level=info --set limits.parallel=2 || t_fail "init --set back failed"
cmp -s "$FX_ROOT/conf.before" "$conf" || t_fail "$conf differs after setting the keys back: $(diff "$FX_ROOT/conf.before" "$conf")"
# (the directory holding agent.conf has a new mtime: the file was replaced)
t_assert_eq "$(snapshot n1 | grep -v -e "$conf" -e "^$d1/etc ")" "$(grep -v -e "$conf" -e "^$d1/etc " <<<"$before1")" "other files after --set"

t_log "a wrong mode is put right"
chmod 0644 "$(fx_agent_key n1)"
chmod 0755 "$d1/lib"
fx_provision_init n1 2>/dev/null || t_fail "init after mode damage failed"
t_assert_eq "$(mode_owner "$(fx_agent_key n1)")" "600 root:root" "agent key mode restored"
t_assert_eq "$(mode_owner "$d1/lib")" "700 root:root" "HMAC key dir mode restored"

t_log "bad input is refused with a clear error, and changes nothing"
before1=$(snapshot n1)
fresh=$FX_ROOT/fresh/agent.conf
t_expect_error 3 "give this node a name with --node" "$NP" init --config "$fresh"
[ ! -e "$FX_ROOT/fresh" ] || t_fail "init without --node created $FX_ROOT/fresh"
t_expect_error 2 "not a valid node name" "$NP" init --config "$fresh" --node 'bad name'
t_expect_error 2 "not a valid node name" "$NP" init --config "$fresh" --node '-x'
t_expect_error 2 "not an absolute path" "$NP" init --config "$fresh" --node x --socket '/run/a b'
t_expect_error 2 "not an absolute path" "$NP" init --config "$fresh" --node x --work-dir "/var/lib/\$(id)"
t_expect_error 2 "unknown option --colour" "$NP" init --config "$fresh" --node x --colour red
t_expect_error 2 "SECTION.KEY=VALUE" "$NP" init --config "$conf" --set log_level=debug
t_expect_error 2 "without ' ;'" "$NP" init --config "$conf" --set 'agent.log_level=debug ; x'
t_expect_error 2 "yes or no" "$NP" init --config "$conf" --hash-known-hosts maybe
t_expect_error 2 "not a port number" "$NP" init --config "$conf" --port 70000
t_expect_error 2 "unknown command 'frobnicate'" "$NP" frobnicate
[ ! -e "$FX_ROOT/fresh" ] || t_fail "rejected init calls created $FX_ROOT/fresh"
mkdir -m 0755 "$FX_ROOT/bad"
sed 's/^node = .*/node = bad node!/' "$conf" >"$FX_ROOT/bad/agent.conf"
cp "$d1/etc/agent.provision" "$FX_ROOT/bad/agent.provision"
t_expect_error 3 "node 'bad node!' is not a valid node name" "$NP" export --config "$FX_ROOT/bad/agent.conf"
t_expect_error 3 "node 'bad node!' is not a valid node name" "$NP" init --config "$FX_ROOT/bad/agent.conf"
sed -i 's/^node = .*/node = node1/; s/^user = .*/user = Bad User/' "$FX_ROOT/bad/agent.conf"
t_expect_error 3 "user 'Bad User' is not a valid user name" "$NP" init --config "$FX_ROOT/bad/agent.conf"
t_expect_error 3 "configuration /nonexistent/agent.conf not found" "$NP" export --config /nonexistent/agent.conf
t_expect_error 3 "configuration /nonexistent/agent.conf not found" "$NP" status --config /nonexistent/agent.conf
t_assert_eq "$(snapshot n1)" "$before1" "n1 after refused input"

t_log "help"
"$NP" --help | grep -q '^EXIT STATUS' || t_fail "--help has no EXIT STATUS section"
"$NP" --help | grep -q '^BUNDLE FORMAT' || t_fail "--help has no BUNDLE FORMAT section"
for c in init export import forget hmac-key status sshd-snippet cluster; do
	"$NP" "$c" --help | grep -q "^    $c " || t_fail "'$c --help' does not describe $c"
done
"$NP" status --config "$conf" >"$FX_ROOT/status" || t_fail "status reports a problem: $(cat "$FX_ROOT/status")"
grep -q "^peer  *node2 $(fx_addr n2) host-key:ok agent-key:ok$" "$FX_ROOT/status" || t_fail "status: $(cat "$FX_ROOT/status")"

t_log "installed files: sshd drop-in, systemd unit, tmpfiles.d"
"$NP" sshd-snippet --config /nonexistent/agent.conf | cmp -s - "$FX_SRC/deploy/sshd/nucleus-migrate.conf" ||
	t_fail "deploy/sshd/nucleus-migrate.conf differs from what 'nucleus-provision sshd-snippet' renders for the defaults"
"$NP" sshd-snippet --config "$conf" | cmp -s - "$d1/ssh/sshd_config.d/nucleus-migrate.conf" ||
	t_fail "installed drop-in differs from 'sshd-snippet --config'"
unit=$FX_SRC/deploy/systemd/nucleus-agent.service
command -v systemd-analyze >/dev/null || t_fail "systemd-analyze is missing (deploy/install-deps installs systemd)"
mkdir "$FX_ROOT/unit"
# verify needs an executable; everything else is checked as shipped
sed 's|^ExecStart=nucleus-agent |ExecStart=/bin/true |' "$unit" >"$FX_ROOT/unit/nucleus-agent.service"
grep -q '^ExecStart=/bin/true --config /etc/nucleus/agent.conf$' "$FX_ROOT/unit/nucleus-agent.service" ||
	t_fail "unexpected ExecStart in $unit"
out=$(systemd-analyze verify "$FX_ROOT/unit/nucleus-agent.service" 2>&1) || t_fail "systemd-analyze verify: $out"
[ -z "$out" ] || t_fail "systemd-analyze verify warns: $out"
for want in KillMode=process Restart=on-failure TasksMax=infinity; do
	grep -qx "$want" "$unit" || t_fail "$unit lacks $want"
done
for bad in NoNewPrivileges PrivateTmp ProtectSystem ProtectHome PrivateDevices SystemCallFilter \
	CapabilityBoundingSet RestrictNamespaces PrivateMounts MemoryDenyWriteExecute; do
	grep -q "^$bad=" "$unit" && t_fail "$unit sets $bad=, which restored containers would inherit"
done
mkdir -p "$FX_ROOT/tmpfiles/etc"
cp /etc/passwd /etc/group "$FX_ROOT/tmpfiles/etc/"
systemd-tmpfiles --create --root="$FX_ROOT/tmpfiles" "$FX_SRC/deploy/tmpfiles.d/nucleus-migrate.conf" ||
	t_fail "systemd-tmpfiles rejects deploy/tmpfiles.d/nucleus-migrate.conf"
t_assert_eq "$(mode_owner "$FX_ROOT/tmpfiles/run/nucleus-migrate")" "750 root:$FX_USER" "tmpfiles socket dir"
t_log "ok"
