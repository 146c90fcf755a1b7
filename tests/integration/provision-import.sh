#!/usr/bin/env bash
# nucleus-provision export/import/forget on the fixture's nodes: the entries
# a bundle creates, importing twice (no duplicates), re-importing a changed
# peer (replaced in place), non-default ports, hashed known_hosts, forgetting
# a peer, and malformed or hostile bundles (a clear error, nothing changed).
# The agent keys still log in afterwards.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"

fx_nodes_up
NP=$FX_PROVISION
d1=$(fx_dir n1)
conf=$(fx_conf n1)
kh=$(fx_agent_known_hosts n1)
ak=$d1/ssh/authorized_keys.$FX_USER

files() { printf '%s\n' "$conf" "$kh" "$ak"; }
snapshot() { files | xargs stat -c '%n %a %U:%G %s %Y.%y' && files | xargs sha256sum; }
blob() { cut -d' ' -f2 "$1"; }

t_log "the bundle"
"$NP" export --config "$(fx_conf n2)" >"$FX_ROOT/b2" || t_fail "export failed"
cat >"$FX_ROOT/b2.want" <<EOF
nucleus-bundle 1
node node2
address $(fx_addr n2)
port 22
user $FX_USER
agent-key ssh-ed25519 $(blob "$(fx_agent_key n2).pub")
host-key ssh-ed25519 $(blob "$(fx_dir n2)/ssh/ssh_host_ed25519_key.pub")
end
EOF
grep -v '^#' "$FX_ROOT/b2" | cmp -s - "$FX_ROOT/b2.want" || t_fail "bundle of n2: $(cat "$FX_ROOT/b2")"
t_assert_eq "$("$NP" export --config "$(fx_conf n2)" --address 192.0.2.7 --port 2200 | grep -E '^(address|port) ' | tr '\n' ' ')" \
	"address 192.0.2.7 port 2200 " "export --address --port"

t_log "what the import of node2 wrote on n1"
t_assert_eq "$(grep -c . "$kh")" 1 "known_hosts lines"
t_assert_eq "$(cat "$kh")" "$(fx_addr n2) ssh-ed25519 $(blob "$(fx_dir n2)/ssh/ssh_host_ed25519_key.pub") nucleus-peer:node2" "known_hosts entry"
t_assert_eq "$(grep -c . "$ak")" 1 "authorized_keys lines"
t_assert_eq "$(cat "$ak")" \
	"restrict,command=\"$(fx_agent_bin) dial-stdio --peer node2 --config $conf\" ssh-ed25519 $(blob "$(fx_agent_key n2).pub") nucleus-agent@node2" \
	"authorized_keys entry (restrict + pinned command)"
t_assert_eq "$(sed -n '/^\[peer node2\]$/,/^$/p' "$conf")" "[peer node2]
host = $(fx_addr n2)
port = 22
user = $FX_USER" "[peer node2] section"
# accepted NODE FROM: how often NODE's sshd let FROM's agent key in.
accepted() { grep -c "Accepted publickey for $FX_USER from $(fx_addr "$2")" "$(fx_dir "$1")/ssh/sshd.log" || true; }
# reaches FROM TO: FROM's agent logs in to TO under strict host-key
# checking (what it runs there may fail: no agent listens in this test).
reaches() {
	local was
	was=$(accepted "$2" "$1")
	fx_agent_ssh "$1" "$2" -o LogLevel=ERROR true </dev/null >/dev/null 2>&1 || true
	[ "$(accepted "$2" "$1")" -gt "$was" ]
}
# OpenSSH itself accepts the entry under strict checking (the agent uses libssh2 on the same file)
reaches n1 n2 || t_fail "n1's agent cannot log in to n2 with its known_hosts under strict checking"

t_log "import twice: no duplicates, nothing rewritten"
before=$(snapshot)
sleep 1.1 # mtimes have a resolution of one second in %Y
"$NP" import -q --config "$conf" <"$FX_ROOT/b2" || t_fail "second import failed"
t_assert_eq "$(snapshot)" "$before" "files after importing the same bundle again"
cat "$FX_ROOT/b2" "$FX_ROOT/b2" >"$FX_ROOT/b2b2"
t_expect_error 3 "node node2 appears in more than one bundle" "$NP" import --config "$conf" <"$FX_ROOT/b2b2"

t_log "a peer with a non-default port, and a second peer"
ssh-keygen -q -t ed25519 -N '' -C x -f "$FX_ROOT/k3"
ssh-keygen -q -t ed25519 -N '' -C x -f "$FX_ROOT/h3"
cat >"$FX_ROOT/b3" <<EOF
# a hand-written bundle: comments and blank lines are fine

nucleus-bundle 1
node node3
address node3.example.test
port 2222
user nucleus
agent-key $(cut -d' ' -f1,2 "$FX_ROOT/k3.pub")
host-key $(cut -d' ' -f1,2 "$FX_ROOT/h3.pub")
end
EOF
"$NP" import -q --config "$conf" <"$FX_ROOT/b3" || t_fail "import of node3 failed"
grep -qxF "[node3.example.test]:2222 $(cut -d' ' -f1,2 "$FX_ROOT/h3.pub") nucleus-peer:node3" "$kh" ||
	t_fail "known_hosts entry for a port other than 22: $(cat "$kh")"
t_assert_eq "$(grep -c . "$kh") $(grep -c . "$ak") $(grep -c '^\[peer ' "$conf")" "2 2 2" "entries for two peers"

t_log "re-importing a changed peer replaces its entries in place"
ssh-keygen -q -t ed25519 -N '' -C x -f "$FX_ROOT/h3new"
ssh-keygen -q -t ed25519 -N '' -C x -f "$FX_ROOT/k3new"
sed -e "s|^host-key .*|host-key $(cut -d' ' -f1,2 "$FX_ROOT/h3new.pub")|" \
	-e "s|^agent-key .*|agent-key $(cut -d' ' -f1,2 "$FX_ROOT/k3new.pub")|" \
	-e "s|^address .*|address 192.0.2.33|" "$FX_ROOT/b3" >"$FX_ROOT/b3new"
"$NP" import -q --config "$conf" <"$FX_ROOT/b3new" || t_fail "re-import of node3 failed"
t_assert_eq "$(grep -c . "$kh") $(grep -c . "$ak") $(grep -c '^\[peer ' "$conf")" "2 2 2" "entries after re-import"
grep -q "node3.example.test" "$kh" "$conf" && t_fail "the old address of node3 is still trusted"
grep -qF "$(blob "$FX_ROOT/h3.pub")" "$kh" && t_fail "the old host key of node3 is still trusted"
grep -qF "$(blob "$FX_ROOT/k3.pub")" "$ak" && t_fail "the old agent key of node3 is still authorized"
t_assert_eq "$(sed -n 2p "$kh")" "[192.0.2.33]:2222 $(cut -d' ' -f1,2 "$FX_ROOT/h3new.pub") nucleus-peer:node3" "node3's entry, in its place"
t_assert_eq "$(sed -n 1p "$kh" | cut -d' ' -f1)" "$(fx_addr n2)" "node2's entry stays first"

t_log "hashed known_hosts"
fx_provision_init n1 --hash-known-hosts yes 2>/dev/null || t_fail "init --hash-known-hosts yes failed"
"$NP" import -q --config "$conf" <"$FX_ROOT/b2" || t_fail "import with hashing failed"
t_assert_eq "$(grep -c . "$kh")" 2 "known_hosts lines after hashing node2's entry"
grep -q "^|1|.* nucleus-peer:node2$" "$kh" || t_fail "node2's entry is not hashed: $(cat "$kh")"
grep -q "^$(fx_addr n2) " "$kh" && t_fail "node2's plain entry is still there"
ssh-keygen -F "$(fx_addr n2)" -f "$kh" | grep -qF "$(blob "$(fx_dir n2)/ssh/ssh_host_ed25519_key.pub")" ||
	t_fail "ssh-keygen -F does not find node2 in the hashed known_hosts"
reaches n1 n2 || t_fail "OpenSSH rejects the hashed entry"
before=$(snapshot)
sleep 1.1
"$NP" import -q --config "$conf" <"$FX_ROOT/b2" || t_fail "re-import with hashing failed"
t_assert_eq "$(snapshot)" "$before" "a hashed entry is kept, not re-salted, on re-import"
fx_provision_init n1 --hash-known-hosts no 2>/dev/null || t_fail "init --hash-known-hosts no failed"
"$NP" import -q --config "$conf" <"$FX_ROOT/b2" || t_fail "import without hashing failed"
t_assert_eq "$(grep -c "^$(fx_addr n2) " "$kh") $(grep -c '^|1|' "$kh" || true)" "1 0" "plain entry back, hashed one gone"

t_log "bad bundles: a clear error, nothing changed"
before=$(snapshot)
b2=$FX_ROOT/b2
bad() { # bad PATTERN SED-EXPRESSION: the bundle of n2, edited, is refused
	sed -e "$2" "$b2" >"$FX_ROOT/bad"
	t_expect_error 3 "$1" "$NP" import --config "$conf" <"$FX_ROOT/bad"
}
t_expect_error 3 "no bundle on standard input" "$NP" import --config "$conf" </dev/null
bad "ends without 'end'" '/^end$/d'
bad "expected 'nucleus-bundle 1'" '/^nucleus-bundle/d'
bad "unsupported bundle version '2'" 's/^nucleus-bundle 1$/nucleus-bundle 2/'
bad "field 'host-key' is missing" '/^host-key/d'
bad "field 'port' appears twice" 's/^port 22$/port 22\nport 23/'
bad "unknown field 'colour'" 's/^port 22$/port 22\ncolour red/'
bad "node 'node2\]' is not a valid node name" 's/^node .*/node node2]/'
bad "node '\.\./x' is not a valid node name" 's|^node .*|node ../x|'
bad "address '1.2.3.4 command=x' is not" 's/^address .*/address 1.2.3.4 command=x/'
bad "address '-oProxyCommand=x' is not" 's/^address .*/address -oProxyCommand=x/'
bad "port '0' is not a port" 's/^port .*/port 0/'
bad "user 'root;x' is not a valid user" 's/^user .*/user root;x/'
bad "agent-key must be 'ssh-ed25519 BASE64'" 's/^agent-key ssh-ed25519 /agent-key ssh-rsa /'
bad "agent-key is not a valid ed25519 public key" 's/^agent-key ssh-ed25519 .*/agent-key ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBad/'
bad "agent-key must be 'ssh-ed25519 BASE64'" 's/^\(agent-key .*\)$/\1 extra",command="sh/'
bad "host-key must be 'TYPE BASE64'" 's/^host-key ssh-ed25519 /host-key ssh-dss /'
bad "host-key is not a valid public key" 's/^host-key ssh-ed25519 .*/host-key ssh-ed25519 AAAA/'
bad "for node node1, which is this node itself" 's/^node .*/node node1/'
bad "carries this node's own agent key" "s|^agent-key .*|agent-key $(cut -d' ' -f1,2 "$(fx_agent_key n1).pub")|"
head -c 3000 /dev/urandom >"$FX_ROOT/bad"
t_expect_error 3 "malformed bundle" "$NP" import --config "$conf" <"$FX_ROOT/bad"
head -c 70000 /dev/zero | tr '\0' '#' >"$FX_ROOT/bad"
t_expect_error 3 "larger than 65536 bytes" "$NP" import --config "$conf" <"$FX_ROOT/bad"
# one good bundle and one bad one: neither is imported
{ cat "$FX_ROOT/b3"; sed 's/^node .*/node node4/; s/^port .*/port x/' "$FX_ROOT/b3"; } >"$FX_ROOT/bad"
t_expect_error 3 "port 'x' is not a port" "$NP" import --config "$conf" <"$FX_ROOT/bad"
# an agent key already authorized for another peer (a cloned node)
sed 's/^node .*/node node5/' "$b2" >"$FX_ROOT/bad"
t_expect_error 4 "already authorized as 'nucleus-agent@node2'" "$NP" import --config "$conf" <"$FX_ROOT/bad"
t_expect_error 3 "configuration /nonexistent/agent.conf not found" "$NP" import --config /nonexistent/agent.conf <"$b2"
t_expect_error 2 "bundles come on standard input" "$NP" import --config "$conf" "$b2"
t_assert_eq "$(snapshot)" "$before" "files after refused bundles"

t_log "forget"
t_expect_error 3 "unknown node 'node9'" "$NP" forget --config "$conf" node9
t_expect_error 2 "expected one node name" "$NP" forget --config "$conf"
t_assert_eq "$(snapshot)" "$before" "files after forgetting an unknown node"
"$NP" forget -q --config "$conf" node3 || t_fail "forget node3 failed"
grep -q node3 "$kh" "$ak" "$conf" && t_fail "node3 is still trusted after forget"
grep -q '192.0.2.33' "$kh" && t_fail "node3's host key is still in known_hosts"
t_assert_eq "$(grep -c . "$kh") $(grep -c . "$ak") $(grep -c '^\[peer ' "$conf")" "1 1 1" "entries after forgetting node3"
# the configuration ends cleanly (no blank lines piling up)
[ -n "$(tail -c1 "$conf")" ] || [ -n "$(tail -n1 "$conf")" ] || t_fail "$conf ends with a blank line"

t_log "the agents still trust each other"
for n in n1 n2; do
	reaches "$(fx_other "$n")" "$n" || t_fail "$n does not accept $(fx_other "$n")'s agent key any more"
done
"$NP" status --config "$conf" >/dev/null || t_fail "status of n1 reports a problem"
t_log "ok"
