#!/usr/bin/env bash
# CRIU works on this machine, inside the project's own fixture: a namespaced
# workload on node 1 is dumped (leave-running off: it is gone afterwards) and
# restored by the installed criu, and its counter, pipe and open files go on.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"

criu=$(t_criu)
t_log "using $criu ($("$criu" --version | head -n1))"
fx_nodes_up

read -r id pid < <(fx_ctr_start n1 local)
work=$(fx_ctr_dir n1 local)
img=$FX_ROOT/images
mkdir -m 0700 "$img" "$FX_ROOT/criu-work"
fx_counter_reaches "$work" 2 || t_fail "workload does not tick"

t_log "dump pid $pid"
fx_in n1 "$criu" dump -t "$pid" -D "$img" -W "$FX_ROOT/criu-work" -o dump.log \
	--network-lock nftables || { tail -n 20 "$FX_ROOT/criu-work/dump.log" >&2; t_fail "criu dump failed"; }
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status"; }
t_assert "the source copy is gone after a dump" gone "$pid"
c1=$(fx_ctr_field "$work" count)
sleep 0.5
t_assert_eq "$(fx_ctr_field "$work" count)" "$c1" "counter while dumped"

t_log "restore from $img"
fx_in n1 "$criu" restore -D "$img" -W "$FX_ROOT/criu-work" -o restore.log -d \
	--network-lock nftables --pidfile "$FX_ROOT/restored.pid" ||
	{ tail -n 20 "$FX_ROOT/criu-work/restore.log" >&2; t_fail "criu restore failed"; }
newpid=$(cat "$FX_ROOT/restored.pid")
fx_track_pid "$newpid"
t_log "restored as pid $newpid"
fx_counter_reaches "$work" $((c1 + 3)) || t_fail "counter did not continue after restore"

# Every value the init sent through the pipe reached the log, in order: the
# pipe, its reader and the log's open file all came through.
fx_log_ok "$work" || t_fail "log has a gap or repeats"
c2=$(fx_ctr_field "$work" count)
[ "$c2" -gt "$c1" ] || t_fail "counter went back: $c1 -> $c2"
t_log "ok: counter $c1 -> $c2 across dump and restore"
