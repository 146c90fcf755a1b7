#!/usr/bin/env bash
# Keys and configuration with loose modes or foreign owners are refused, and
# the message says how to fix them: the checkpoint HMAC key (group- or
# world-readable, another owner, a directory others may enter), the agent's
# SSH key (readable by others: libssh2 would use it), its known_hosts and
# the configuration (writable by others). The agent refuses to start; the
# CLI and dial-stdio refuse a configuration others may change; a key made
# readable while the agent runs stops migrations, not the agent. Fixed, all
# works again.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"

fx_agents_up
n=n1
fx_agent_stop "$n"
d=$(fx_dir "$n")
key=$(fx_hmac_key "$n")
sshkey=$(fx_agent_key "$n")
kh=$(fx_agent_known_hosts "$n")
conf=$(fx_conf "$n")

# refuses WHAT TEXT...: the agent on n1 does not start, and says each TEXT.
refuses() {
	local what=$1
	shift
	# A refusal is an orderly exit (1: set-up, 2: configuration), not a crash;
	# an agent that starts anyway is ended by the timeout (exit 124).
	t_expect_exit "1|2" "$what (124: the agent started anyway)" \
		fx_in "$n" timeout "$(t_secs 60)" "$FX_BUILD/agent/nucleus-agent" --config "$conf"
	t_says "$what" "$@"
	t_log "$what: $(grep -o 'cannot start: .*\|nucleus-agent: .*' <<<"$T_OUT" | tail -n1)"
}

t_log "the checkpoint HMAC key"
chmod 0640 "$key"
refuses "HMAC key 0640" "checkpoint HMAC key $key has insecure mode 640" "fix with: chmod 600 $key"
chmod 0604 "$key"
refuses "HMAC key 0604" "insecure mode 604" "fix with: chmod 600 $key"
chmod 0600 "$key"
chown 65534 "$key"
refuses "HMAC key owned by 65534" "is owned by uid 65534 (expected 0)" "fix with: chown 0 $key"
chown 0 "$key"
chmod 0755 "$(dirname "$key")"
refuses "HMAC key directory 0755" "checkpoint HMAC key directory $(dirname "$key") has insecure mode 755" \
	"fix with: chmod 700 $(dirname "$key")"
chmod 0700 "$(dirname "$key")"
chown 65534 "$(dirname "$key")"
refuses "HMAC key directory owned by 65534" "is owned by uid 65534" "fix with: chown 0 $(dirname "$key")"
chown 0 "$(dirname "$key")"

t_log "the agent's SSH key"
for mode in 0644 0640 0604; do
	chmod "$mode" "$sshkey"
	refuses "SSH key $mode" "refusing SSH key $sshkey: group or others may read it (mode $mode)" \
		"fix with: chmod 600 $sshkey"
done
chmod 0600 "$sshkey"
chown 65534 "$sshkey"
refuses "SSH key owned by 65534" "refusing SSH key $sshkey: it is owned by uid 65534, not root" \
	"fix with: chown root $sshkey"
chown 0 "$sshkey"
chmod 0770 "$(dirname "$sshkey")"
refuses "SSH key directory 0770" "its directory $(dirname "$sshkey") is writable by group or others" \
	"fix with: chmod go-w $(dirname "$sshkey")"
chmod 0700 "$(dirname "$sshkey")"
chmod 0666 "$kh"
refuses "known_hosts 0666" "refusing known_hosts $kh: group or others may change it (mode 0666)" "fix with: chmod go-w $kh"
chmod 0644 "$kh"

t_log "the configuration"
for mode in 0666 0646 0660; do
	chmod "$mode" "$conf"
	refuses "configuration $mode" "refusing configuration $conf: group or others may change it (mode $mode)" \
		"fix with: chmod go-w $conf"
done
chmod 0640 "$conf"
chown 65534 "$conf"
refuses "configuration owned by 65534" "it is owned by uid 65534, not root" "fix with: chown root $conf"
chown 0 "$conf"
chmod 0777 "$(dirname "$conf")"
refuses "configuration directory 0777" "its directory $(dirname "$conf") is writable by group or others (mode 0777)"
chmod 0755 "$(dirname "$conf")"

t_log "the CLI and dial-stdio refuse a configuration others may change"
chmod 0666 "$conf"
rc=0
out=$(fx_nm "$n" status 2>&1) || rc=$?
[ "$rc" -ne 0 ] || t_fail "the CLI used a world-writable configuration: $out"
grep -qF "refusing configuration $conf: group or others may change it" <<<"$out" || t_fail "the CLI's refusal: $out"
read -r id _ < <(fx_ctr_start n2 traveller)
t_expect_exit 1 "a migration to a node whose dial-stdio refuses its configuration" fx_nm n2 migrate "$id" node1
t_says "the operator sees dial-stdio's reason" "refusing configuration $conf"
t_assert_eq "$(fx_ctr_where "$id")" n2 "the container after the refused migration"
chmod 0640 "$conf"

t_log "fixed: the agent starts"
fx_agent_start "$n"
fx_nm "$n" status >/dev/null || t_fail "status after the fixes"

t_log "an SSH key made readable while the agent runs stops migrations, not the agent"
read -r id _ < <(fx_ctr_start "$n" mover)
dumps=$(fx_criu_dumps "$n")
chmod 0644 "$sshkey"
t_expect_exit 1 "a migration with a readable SSH key" fx_nm "$n" migrate "$id" node2
t_says "the operator is told how to fix the key" "fix with: chmod 600 $sshkey"
t_assert_eq "$(fx_ctr_where "$id")" "$n" "the container after the refusal"
t_assert_eq "$(fx_criu_dumps "$n")" "$dumps" "CRIU dumps started although nothing was done"
chmod 0600 "$sshkey"
fx_nm "$n" migrate "$id" node2 >/dev/null || t_fail "the migration after fixing the key"
t_assert_eq "$(fx_ctr_where "$id")" n2 "the container after the migration"
t_log "ok"
