#!/usr/bin/env bash
# Every SSH, agent and CRIU error reaches the operator with its cause, never
# a bare "failed": the target's sshd down (the host and "refused"), a host
# key that changed (its fingerprint) or is unknown, a key the target does
# not accept, the target's agent down (dial-stdio's reason), a dump that
# fails by injection and for real (CRIU's own words: a container holding a
# unix socket connected outside it), and a restore that fails on the target
# (its reason; the container rolled back). The exit codes say what happened
# and the container runs where the message says.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"

fx_agents_up
read -r id _ < <(fx_ctr_start n1 worker)
work=$(fx_ctr_dir n1 worker)

# fails WANT-EXIT WHAT TEXT...: nucleus-migrate moves the container to node2
# and exits WANT-EXIT; its message holds each TEXT.
fails() {
	local want=$1 what=$2
	shift 2
	t_expect_exit "$want" "$what" fx_nm n1 migrate "${MIGRATE_ID:-$id}" node2
	t_says "$what" "$@"
	t_log "$what: $(grep -i 'NOT moved\|rolled back' <<<"$T_OUT" | head -n1)"
}
# untouched WHAT: the container runs at home and was never frozen (no CRIU
# dump started on n1 since the last check).
dumps=$(fx_criu_dumps n1)
untouched() {
	t_assert_eq "$(fx_ctr_where "$id")" n1 "where the container runs after: $1"
	t_assert_eq "$(fx_criu_dumps n1)" "$dumps" "CRIU dumps started on n1 by: $1"
}

t_log "SSH"
fx_sshd_kill n2
fails 1 "sshd down" "$(fx_addr n2)" "refused" "not touched"
untouched "sshd down"
fx_sshd_start n2

kh=$(fx_agent_known_hosts n1)
cp "$kh" "$FX_ROOT/known_hosts.good"
ssh-keygen -q -t ed25519 -N '' -C other -f "$FX_ROOT/otherkey"
sed -i "s#ssh-ed25519 [^ ]*#$(cut -d' ' -f1,2 "$FX_ROOT/otherkey.pub")#" "$kh"
real=$(ssh-keygen -lf "$(fx_dir n2)/ssh/ssh_host_ed25519_key.pub" | cut -d' ' -f2)
fails 1 "changed host key" "host key verification failed" "$real" "does not match the key recorded in $kh"
untouched "changed host key"
: >"$kh"
fails 1 "unknown host key" "is not in $kh" "$real"
cp "$FX_ROOT/known_hosts.good" "$kh"

ak=$(fx_dir n2)/ssh/authorized_keys.$FX_USER
cp "$ak" "$FX_ROOT/authorized_keys.good"
: >"$ak"
fails 1 "key not authorized" "refused public key authentication as $FX_USER" "$(fx_agent_key n1)"
cp "$FX_ROOT/authorized_keys.good" "$ak"
untouched "key not authorized"

t_log "the target's agent"
fx_agent_stop n2
fails 1 "agent down on the target" "dial-stdio" "cannot connect to the agent" "is nucleus-agent running?"
fx_agent_start n2
untouched "agent down on the target"

t_log "CRIU: an injected dump failure"
fx_agent_stop n1
fx_agent_start n1 NM_FAULT=fail=dump
fails 1 "dump fails (injected)" "cannot dump" "dump failed (fault injection)" "not touched"
untouched "dump fails (injected)"
fx_agent_stop n1
fx_agent_start n1

t_log "CRIU: a container CRIU cannot dump (a unix socket connected outside it)"
d=$(fx_ctr_dir n1 ext)
mkdir -p "$d"
fx_in n1 "$FX_BUILD/tests/tools/nm-unix-holder" --listen "$d/outside.sock" >"$d/listener.out" 2>&1 &
fx_track_pid $!
t_wait_until 30 "the listener" grep -q ready "$d/listener.out" || t_fail "the outside listener did not start"
read -r eid epid < <(fx_in n1 "$FX_BUILD/tests/workloads/nm-ctr-start" --state-dir "$(fx_dir n1)/nucleus" --name ext \
	--console "$d/console" -- "$FX_BUILD/tests/tools/nm-unix-holder" "$d/outside.sock")
t_wait_until 30 "the holder connects" grep -q ready "$d/console" || t_fail "the holder did not connect: $(cat "$d/console")"
MIGRATE_ID=$eid fails 1 "CRIU refuses the dump" "criu dump of pid $epid failed" \
	"External socket is used. Consider using --ext-unix-sk option" "dump.log" "not touched"
kill -0 "$epid" || t_fail "the container CRIU could not dump is gone"
t_assert_eq "$(fx_ctr_where "$eid")" n1 "the container CRIU could not dump"

t_log "CRIU: the restore fails on the target: rolled back, with the target's reason"
fx_agent_stop n2
fx_agent_start n2 NM_FAULT=fail=dest-restore
before=$(fx_count "$work")
fails 4 "restore fails on the target" "restore on node2 failed" "fault injection"
t_assert_eq "$(fx_ctr_where "$id")" n1 "the rolled-back container"
fx_counter_advances "$work" || t_fail "the rolled-back container does not run"
[ "$(fx_count "$work")" -ge "$before" ] || t_fail "the counter went back after the rollback"
fx_agent_stop n2
fx_agent_start n2

t_log "and with all fixed, it moves"
fx_nm n1 migrate "$id" node2 >/dev/null || t_fail "the migration after all the failures"
t_assert_eq "$(fx_ctr_where "$id")" n2 "the container after the move"
t_log "ok"
