#!/usr/bin/env bash
# Native-shaped containers move between the fixture's nodes at the ckpt
# level, both ways, with real CRIU: `nucleus-migrate checkpoint
# --leave-stopped` on one node (tasks stay stopped), the signed directory
# copied over the fixture's root ssh, `restore` on the other node, `resume`
# there, `kill-tree -i` on the source (the commit). Two containers on the
# same bridge hold a TCP connection and move together. Before the first
# move, the same dump is rolled back instead (`resume -i`): the source runs
# on in place.
#
# Checked after each move: the counter continues (and its log in /tmp has
# no gap), /tmp and /dev/shm content and both locks intact, the TCP
# connection still carries data, the address answers from the target node,
# the target's cgroup holds every task, the seccomp filter still kills a
# forbidden call, no capability came back, read-only mounts are read-only,
# Landlock is gone (the loss the operator accepted, recorded in the
# metadata); and the source has no task, veth, cgroup, address reservation or
# state file left.
set -euo pipefail
. "$(dirname "$0")/../lib/native.sh"

NM=${NM_MIGRATE:-$FX_BUILD/agent/nucleus-migrate}
[ -x "$NM" ] || t_fail "$NM is not built"
fx_nodes_up
fx_native_node_up n1
fx_native_node_up n2
CK=$FX_ROOT/ck
mkdir -p "$CK"
declare -A id
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
nm() {
	local n=$1
	shift
	fx_in "$n" env NUCLEUS_STATE_DIR="$(fx_native_state "$n")" NUCLEUS_CHECKPOINT_HMAC_KEY_FILE="$(fx_hmac_key "$n")" \
		NUCLEUS_CGROUP_ROOT="$(fx_cgroup_root "$n")" "$NM" "$@"
}
field() { fx_native_field "$1" "$2" "$3" "${4:-}"; }
state_of() { echo "$(fx_native_state "$1")/${id[$2]}.json"; }
pid_of() { json "$(state_of "$1" "$2")" 'd["pid"]'; }
gt() { [ "$(field "$1" "$2" "$3" "${5:-}")" -gt "$4" ] 2>/dev/null; }
stopped() { grep -q '^State:.*T' "/proc/$1/status"; }
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status"; }
# The log in /tmp counts 1..N, read through the container's root; a line
# caught half-written is dropped.
log_continuous() {
	local snap=$FX_ROOT/log.snap
	cat "/proc/$1/root/tmp/nm-log" >"$snap"
	[ -z "$(tail -c1 "$snap")" ] || sed -i '$d' "$snap"
	[ -s "$snap" ] && seq 1 "$(wc -l <"$snap")" | cmp -s - "$snap"
}

# ---- two containers on n1's bridge, one TCP connection between them ------------
read -r web_id web_pid < <(fx_native_start n1 web --landlock --stdio "pipe:$(fx_dir n1)/web.out" -- \
	/context/nm-native-work --status /data --listen 7000)
addr=$(cat "$(fx_native_state n1)/ip-alloc/$web_id.ip")
read -r cli_id _ < <(fx_native_start n1 cli --stdio null -- /context/nm-native-work --status /data --connect "$addr:7000")
id=([web]=$web_id [cli]=$cli_id)
t_wait_until 10 "TCP rounds" gt n1 cli rounds 5 tcp || t_fail "no TCP traffic: $(cat "$(fx_dir n1)/vol/cli/tcp")"
t_wait_until 5 "Landlock confines web" bash -c "grep -q landlock=denied $(fx_dir n1)/vol/web/status" ||
	t_fail "web is not under Landlock"

# checkpoint FROM NAME TAG: a dump that keeps the tasks stopped.
checkpoint() {
	local from=$1 name=$2 out
	out=$(nm "$from" checkpoint "$name" -o "$CK/$3-$name" --leave-stopped --file-locks --tcp-established \
		--accept-landlock-loss 2>&1) || t_fail "checkpoint of $name on $from failed: $out"
	grep -q "Every task is stopped here" <<<"$out" || t_fail "checkpoint did not keep $name stopped: $out"
}

# ---- rollback first: the same dump, resumed in place ------------------------------
for c in web cli; do checkpoint n1 $c rollback; done
pid=$(pid_of n1 web)
for p in $(fx_tree "$pid"); do stopped "$p" || t_fail "task $p of web is not stopped after the dump"; done
count=$(field n1 web count)
rounds=$(field n1 cli rounds tcp)
sleep 0.5
t_assert_eq "$(field n1 web count)" "$count" "web's counter while dumped"
[ -e "$(fx_cgroup_root n1)/system.slice/nucleus-web.service/nm-dump-$web_id" ] ||
	t_fail "the dump did not put web below its cgroup namespace's root"
for c in web cli; do nm n1 resume -i "$CK/rollback-$c" >/dev/null || t_fail "rollback of $c failed"; done
t_wait_until 10 "web counts again" gt n1 web count $((count + 3)) || t_fail "web did not resume in place"
t_wait_until 10 "TCP again after the rollback" gt n1 cli rounds $((rounds + 3)) tcp ||
	t_fail "the TCP connection did not survive the rollback: $(cat "$(fx_dir n1)/vol/cli/tcp")"
t_assert_eq "$(field n1 cli err tcp)" none "TCP error after the rollback"
grep -qx "$pid" "$(fx_cgroup_root n1)/nucleus-$web_id/cgroup.procs" || t_fail "web is not back in its cgroup"
[ ! -e "$(fx_cgroup_root n1)/system.slice/nucleus-web.service/nm-dump-$web_id" ] || t_fail "the dump cgroup is left"
t_log "ok: rollback in place (counter $count -> $(field n1 web count))"

# move FROM TO: both containers, checked on TO; the source ends.
move() {
	local from=$1 to=$2 tag=$1-to-$2 c p m cg st out count_before rounds_before probes newpid
	declare -A oldpid veth
	for c in web cli; do
		oldpid[$c]=$(pid_of "$from" $c)
		# The veth keeps the name it got at the very start, from the
		# first PID 1's pid.
		veth[$c]=$(grep -o 'vethc-[0-9a-f]*' <<<"$(nsenter -t "${oldpid[$c]}" -n ip -o link)" | sed -n '1s/vethc-/veth-/p')
	done
	for c in web cli; do checkpoint "$from" $c "$tag"; done
	count_before=$(field "$from" web count)
	rounds_before=$(field "$from" cli rounds tcp)
	t_assert_eq "$(json "$CK/$tag-web/metadata.json" 'd["nm_native"]["security"]["landlock"]')" accepted-loss \
		"the metadata records the accepted loss of Landlock"

	# Over the fixture's root ssh, as an operator would copy it.
	for c in web cli; do
		tar -C "$CK" -cf - "$tag-$c" | fx_ssh "$from" "$to" "mkdir -p $CK/at-$to && tar -C $CK/at-$to -xf -" ||
			t_fail "copying $tag-$c to $to failed"
		nm "$to" verify "$CK/at-$to/$tag-$c" >/dev/null || t_fail "$tag-$c does not verify on $to"
	done
	for c in web cli; do
		# A volume is shared storage in a cluster: here each node has its
		# own directory, brought up to date while the tasks are stopped
		# (CRIU checks the size of every file they hold open there).
		mkdir -p "$(fx_dir "$to")/vol/$c"
		cp -a "$(fx_dir "$from")/vol/$c/." "$(fx_dir "$to")/vol/$c/"
		out=$(nm "$to" restore -i "$CK/at-$to/$tag-$c" --leave-stopped --work-dir "$CK/$tag-$c.rwork" \
			--external-mount "/data:$(fx_dir "$to")/vol/$c" --stdout "$(fx_dir "$to")/$c.out" 2>&1) ||
			t_fail "restore of $c on $to failed: $out"
		newpid=$(pid_of "$to" $c)
		fx_track_pid "$newpid"
		for p in $(fx_tree "$newpid"); do stopped "$p" || t_fail "restored task $p of $c is not stopped"; done
		cg=$(fx_cgroup_root "$to")/nucleus-${id[$c]}
		t_assert_eq "$(json "$(state_of "$to" $c)" 'd["cgroup_path"]')" "$cg" "$c's cgroup_path on $to"
		for p in $(fx_tree "$newpid"); do grep -qx "$p" "$cg/cgroup.procs" || t_fail "task $p of $c is not in $cg"; done
		grep -q "master nucleus0" <<<"$(ip -n "$(fx_ns "$to")" -o link show "${veth[$c]}")" ||
			t_fail "${veth[$c]} is not on $to's nucleus0"
		[ -e "$(fx_native_state "$to")/ip-alloc/${id[$c]}.ip" ] || t_fail "$c's address is not reserved on $to"
		for m in /bin /usr /lib /lib64; do
			[ -d "$m" ] || continue
			grep -qx ro <<<"$(awk -v m="$m" '$5 == m { print $6 }' "/proc/$newpid/mountinfo" | tr , '\n')" ||
				t_fail "$m is not read-only in the restored $c"
		done
	done
	for c in web cli; do nm "$to" resume "$(pid_of "$to" $c)" >/dev/null || t_fail "resume of $c on $to failed"; done
	# The commit: the source's stopped copies end. On n1 nucleus's
	# supervisor cleans up after them; copies restored on n2 have none.
	for c in web cli; do
		nm "$from" kill-tree -i "$CK/$tag-$c" $([ "$from" = n2 ] && echo --forget) >/dev/null ||
			t_fail "ending $c on $from failed"
	done

	# ---- on the target ---------------------------------------------------------
	newpid=$(pid_of "$to" web)
	t_wait_until 10 "web counts on $to" gt "$to" web count $((count_before + 3)) ||
		t_fail "web's counter does not continue on $to: $(cat "$(fx_dir "$to")/vol/web/status" 2>&1)"
	log_continuous "$newpid" || t_fail "web's log in /tmp has a gap or a repeat"
	for c in web cli; do
		st=$(cat "$(fx_dir "$to")/vol/$c/status")
		grep -q "tmp=ok shm=ok lock=ok" <<<"$st" || t_fail "$c's state on $to: $st"
	done
	t_wait_until 15 "TCP on $to" gt "$to" cli rounds $((rounds_before + 3)) tcp ||
		t_fail "the TCP connection carries nothing on $to: $(cat "$(fx_dir "$to")/vol/cli/tcp")"
	t_assert_eq "$(field "$to" cli err tcp)" none "TCP error on $to"
	t_assert_eq "$(field "$to" web err tcp)" none "TCP error of the server on $to"
	probes=$(field "$to" web probes tcp)
	fx_in "$to" bash -c "exec 3<>/dev/tcp/$addr/7000" || t_fail "$addr does not answer from $to"
	t_wait_until 5 "the probe connection accepted" gt "$to" web probes "$probes" tcp ||
		t_fail "web did not take the probe connection on $to"
	for p in $(fx_tree "$newpid"); do
		t_assert_eq "$(awk '/^CapEff:/ { print $2 }' "/proc/$p/status")" 0000000000000000 "CapEff of $p on $to"
		t_assert_eq "$(awk '/^Seccomp:/ { print $2 }' "/proc/$p/status")" 2 "seccomp of $p on $to"
		t_assert_eq "$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$p/status")" 1 "no_new_privs of $p on $to"
	done
	probes=$(field "$to" web probes_killed)
	kill -USR2 "$(fx_native_child "$newpid" nm-probe)"
	t_wait_until 5 "the filter kills on $to" gt "$to" web probes_killed "$probes" ||
		t_fail "the forbidden call was not killed on $to: $(cat "$(fx_dir "$to")/vol/web/status")"
	t_assert_eq "$(field "$to" web probe)" killed-31 "the probe's end on $to"
	t_assert_eq "$(field "$to" web landlock)" allowed "Landlock after the move (CRIU does not carry it)"

	# ---- nothing left on the source -----------------------------------------------
	for c in web cli; do
		for p in "${oldpid[$c]}"; do t_wait_until 5 "$c's old tasks gone" gone "$p" || t_fail "$c still has task $p on $from"; done
		t_wait_until 10 "$from cleaned up after $c" test ! -e "$(state_of "$from" $c)" ||
			t_fail "$c's state file is left on $from"
		[ ! -e "$(fx_native_state "$from")/ip-alloc/${id[$c]}.ip" ] || t_fail "$c's address is still reserved on $from"
		t_wait_until 5 "$c's cgroup removed on $from" test ! -e "$(fx_cgroup_root "$from")/nucleus-${id[$c]}" ||
			t_fail "$c's cgroup is left on $from"
		! ip -n "$(fx_ns "$from")" link show "${veth[$c]}" >/dev/null 2>&1 || t_fail "${veth[$c]} is left on $from"
	done
	t_log "ok: web and cli moved $from -> $to (counter $count_before -> $(field "$to" web count), TCP rounds $rounds_before -> $(field "$to" cli rounds tcp))"
}

move n1 n2
move n2 n1
