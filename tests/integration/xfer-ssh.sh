#!/usr/bin/env bash
# Image streaming through a real sshd on the two-node fixture: libssh2 on
# libuv from node 1, `nucleus-agent dial-stdio` on node 2 relaying to a
# receiver on a unix socket. Bytes and HMAC must arrive intact; host keys,
# keys, link cuts and corruption must be refused cleanly.
# --thread: the same, with each session on a thread of its own
# (XFER_SSH_ON_THREAD): every byte, error and message must be the same.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"

THREAD=()
if [ "${1:-}" = --thread ]; then
	THREAD=(--thread)
	t_log "every session on a thread of its own"
fi

SEND=$FX_BUILD/tests/tools/nm-xfer-send
SERVE=$FX_BUILD/tests/tools/nm-xfer-serve
AGENT=$FX_BUILD/agent/nucleus-agent
for b in "$SEND" "$SERVE" "$AGENT"; do [ -x "$b" ] || t_fail "missing $b (build first)"; done

fx_nodes_up
N1=$(fx_dir n1)
N2=$(fx_dir n2)
KEY=$FX_ROOT/hmac.key
head -c 32 /dev/urandom >"$KEY"
chmod 0600 "$KEY"
STAGE=$N2/staging
install -d -m 0700 "$STAGE"
SOCK=$N2/agent.sock

# hmac_tree DIR: HMAC-SHA256 of DESIGN.md's record stream, computed with
# openssl, independently of the C code under test.
hmac_tree() {
	local dir=$1 f
	{
		printf 'D\0images\0'
		for f in $(cd "$dir/images" && LC_ALL=C ls -A); do
			printf 'F\0images/%s\0' "$f"
			perl -e 'print pack("Q<", shift)' "$(stat -c %s "$dir/images/$f")"
			cat "$dir/images/$f"
		done
		printf 'F\0metadata.json\0'
		perl -e 'print pack("Q<", shift)' "$(stat -c %s "$dir/metadata.json")"
		cat "$dir/metadata.json"
	} | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(xxd -p -c 256 "$KEY")" | awk '{print $NF}'
}

# serve_start LOG [ARGS]: a receiver on node 2 for one transfer.
serve_start() {
	local log=$1
	shift
	rm -f "$SOCK"
	# nsenter execs the receiver: $! is the receiver itself.
	nsenter --net="/run/netns/$(fx_ns n2)" -- "$SERVE" --socket "$SOCK" --staging-dir "$STAGE" --hmac-key "$KEY" \
		--once "$@" >"$log" 2>&1 &
	SERVE_PID=$!
	fx_track_pid "$SERVE_PID"
	t_wait_until 30 "receiver listening" grep -q LISTENING "$log" || t_fail "receiver did not start: $(cat "$log")"
}

# send_n1 ARGS...: nm-xfer-send from node 1 to node 2 over SSH.
send_n1() {
	fx_in n1 "$SEND" --host "$(fx_addr n2)" --key "$N1/ssh/id_ed25519" --known-hosts "$N1/ssh/known_hosts" \
		--command "$AGENT dial-stdio --socket $SOCK" --hmac-key "$KEY" --connect-timeout "$(t_ms 30000)" \
		"${THREAD[@]}" "$@"
}

# A failing run must fail for the reason the test expects, not because a
# sanitizer (in an ASan build) stopped it.
clean() {
	! grep -q "Sanitizer" <<<"$1" || t_fail "sanitizer report: $1"
}

host_fp=$(ssh-keygen -lf "$N2/ssh/ssh_host_ed25519_key.pub" | awk '{print $2}')

# ---------------------------------------------------------------------------
t_log "a directory of many files, one of 256 MiB, node 1 -> node 2"
SRC=$N1/scratch/ckpt
mkdir -p "$SRC/images"
: >"$SRC/images/core-1.img"
: >"$SRC/images/pstree.img"
for i in $(seq 1 40); do head -c $((i * 997)) /dev/urandom >"$SRC/images/small-$i.img"; done
head -c $((3 * 1024 * 1024 + 5)) /dev/urandom >"$SRC/images/mm-1.img"
head -c $((256 * 1024 * 1024)) /dev/urandom >"$SRC/images/pages-1.img"
printf '{"container_id":"0123abcd","container_name":"xfer"}' >"$SRC/metadata.json"
echo "0000" >"$SRC/checkpoint.hmac" # never sent
want=$(hmac_tree "$SRC")
nfiles=$(($(ls -A "$SRC/images" | wc -l) + 1))

serve_start "$FX_ROOT/serve1.log"
out=$(send_n1 --mig big-1 "$SRC") || t_fail "transfer failed: $out"
wait "$SERVE_PID" || t_fail "receiver failed: $(cat "$FX_ROOT/serve1.log")"
read -r _ files bytes hmac secs rate <<<"$out"
t_log "sent $files files, $bytes bytes in ${secs}s: $rate MB/s"
t_assert_eq "$files" "$nfiles" "files sent"
t_assert_eq "$hmac" "$want" "HMAC announced by the sender vs. openssl"
grep -q "^RECEIVED big-1 $nfiles $bytes $want\$" "$FX_ROOT/serve1.log" || t_fail "receiver: $(cat "$FX_ROOT/serve1.log")"
grep -q "^TAKEN " "$FX_ROOT/serve1.log" || t_fail "dial-stdio relayed instead of handing the session over: $(cat "$FX_ROOT/serve1.log")"
DST=$STAGE/big-1
t_assert_eq "$(cat "$DST/checkpoint.hmac")" "$want" "checkpoint.hmac written by the receiver"
t_assert_eq "$(hmac_tree "$DST")" "$want" "HMAC of the received tree"
for f in "$SRC"/images/* "$SRC/metadata.json"; do
	rel=${f#"$SRC"/}
	cmp "$f" "$DST/$rel" || t_fail "$rel differs after the transfer"
done
t_assert_eq "$(stat -c %a "$DST")" 700 "staging directory mode"
t_assert_eq "$(ls -A "$DST" | tr '\n' ' ')" "checkpoint.hmac images metadata.json " "staging contents"

t_log "for comparison: OpenSSH (default ciphers) cat >/dev/null of the 256 MiB file"
t0=$(date +%s%N)
fx_ssh n1 n2 'cat >/dev/null' <"$SRC/images/pages-1.img"
t1=$(date +%s%N)
t_log "openssh: $(awk -v b=$((256 * 1024 * 1024)) -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f MB/s", b / (ns / 1e9) / 1e6 }')"
out=$(send_n1 --mig cat-1 --no-verify --command 'cat >/dev/null' "$SRC") || t_fail "stream to cat failed: $out"
t_log "ours into 'cat >/dev/null' (framing and hashing, no receiver): $(awk '{print $6}' <<<"$out") MB/s"
fx_rm "$DST"

mid=$FX_ROOT/mid
mkdir -p "$mid/images"
head -c $((24 * 1024 * 1024 + 7)) /dev/urandom >"$mid/images/pages-1.img"
for i in 1 2 3 4 5; do head -c $((i * 4099)) /dev/urandom >"$mid/images/core-$i.img"; done
echo '{"container_id":"mid"}' >"$mid/metadata.json"
want_mid=$(hmac_tree "$mid")
# A session on its own thread opens one channel.
if [ ${#THREAD[@]} -eq 0 ]; then
t_log "three streams at once on three channels of one SSH session"
serve_start "$FX_ROOT/serve-par.log" --count 3
out=$(send_n1 --mig par --parallel 3 "$mid") || t_fail "parallel transfer failed: $out"
wait "$SERVE_PID" || t_fail "receiver failed: $(cat "$FX_ROOT/serve-par.log")"
t_log "3 x $(du -sm "$mid" | cut -f1) MiB on one session: $(awk '{print $6}' <<<"$out") MB/s in total"
for i in 1 2 3; do
	grep -q "^RECEIVED par-$i 7 .* $want_mid\$" "$FX_ROOT/serve-par.log" || t_fail "par-$i: $(cat "$FX_ROOT/serve-par.log")"
	cmp "$mid/images/pages-1.img" "$STAGE/par-$i/images/pages-1.img" || t_fail "par-$i: pages-1.img differs"
	fx_rm "$STAGE/par-$i"
done
fi

t_log "dial-stdio --relay (as for an agent that does not take the session's pipes) carries the same bytes"
serve_start "$FX_ROOT/serve-relay.log"
out=$(fx_in n1 "$SEND" --host "$(fx_addr n2)" --key "$N1/ssh/id_ed25519" --known-hosts "$N1/ssh/known_hosts" \
	--command "$AGENT dial-stdio --relay --socket $SOCK" --hmac-key "$KEY" --connect-timeout "$(t_ms 30000)" \
	--mig relayed "$mid") || t_fail "relayed transfer failed: $out"
wait "$SERVE_PID" || t_fail "receiver failed: $(cat "$FX_ROOT/serve-relay.log")"
grep -q "^RECEIVED relayed 7 .* $want_mid\$" "$FX_ROOT/serve-relay.log" || t_fail "relayed: $(cat "$FX_ROOT/serve-relay.log")"
! grep -q "^TAKEN " "$FX_ROOT/serve-relay.log" || t_fail "--relay handed the session over"
cmp "$mid/images/pages-1.img" "$STAGE/relayed/images/pages-1.img" || t_fail "relayed: pages-1.img differs"
fx_rm "$STAGE/relayed"

# The bench's row without SSH; the same for either kind of session.
if [ ${#THREAD[@]} -eq 0 ]; then
	t_log "the same stream straight into the receiver's unix socket (--local-socket), no SSH"
	serve_start "$FX_ROOT/serve-local.log"
	out=$("$SEND" --local-socket "$SOCK" --hmac-key "$KEY" --mig local-1 "$mid") || t_fail "local transfer failed: $out"
	wait "$SERVE_PID" || t_fail "receiver failed: $(cat "$FX_ROOT/serve-local.log")"
	read -r _ files _ hmac _ <<<"$out"
	t_assert_eq "$files" 7 "files sent over the unix socket"
	t_assert_eq "$hmac" "$want_mid" "HMAC announced over the unix socket vs. openssl"
	grep -q "^RECEIVED local-1 7 .* $want_mid\$" "$FX_ROOT/serve-local.log" ||
		t_fail "local-1: $(cat "$FX_ROOT/serve-local.log")"
	cmp "$mid/images/pages-1.img" "$STAGE/local-1/images/pages-1.img" || t_fail "local-1: pages-1.img differs"
	fx_rm "$STAGE/local-1"
fi

t_log "a forced command in authorized_keys wins over the command asked for"
ak=$N2/ssh/authorized_keys.root
cp "$ak" "$ak.open"
printf 'command="%s dial-stdio --socket %s",restrict %s\n' "$AGENT" "$SOCK" "$(cat "$N1/ssh/id_ed25519.pub")" >"$ak"
small=$FX_ROOT/small
mkdir -p "$small/images"
echo one >"$small/images/a.img"
echo '{}' >"$small/metadata.json"
serve_start "$FX_ROOT/serve0.log"
out=$(send_n1 --mig forced-1 --command "false" "$small") || t_fail "transfer with a forced command failed: $out"
wait "$SERVE_PID" || t_fail "receiver failed: $(cat "$FX_ROOT/serve0.log")"
cmp "$small/images/a.img" "$STAGE/forced-1/images/a.img" || t_fail "a.img differs"
mv "$ak.open" "$ak"
fx_rm "$STAGE/forced-1"

t_log "the remote command's stderr is passed on as it runs: printable, each line cut, the number bounded"
chatty=$FX_ROOT/chatty.sh
cat >"$chatty" <<SH
#!/bin/sh
printf 'colour \033[31mred\n' >&2
printf '%0300d\n' 0 >&2
i=0
while [ \$i -lt 18 ]; do echo "line \$i" >&2; i=\$((i + 1)); done
exec $AGENT dial-stdio --socket $SOCK
SH
chmod 0755 "$chatty"
serve_start "$FX_ROOT/serve-chatty.log"
out=$(send_n1 --mig chatty-1 --command "$chatty" "$small" 2>&1) || t_fail "transfer with a chatty relay failed: $out"
wait "$SERVE_PID" || t_fail "receiver failed: $(cat "$FX_ROOT/serve-chatty.log")"
t_assert_eq "$(grep -c '^REMARK ' <<<"$out")" 17 "lines passed on (16 and the note of the rest)"
grep -qx 'REMARK colour ?\[31mred' <<<"$out" || t_fail "the escape was not made printable: $out"
grep -qx "REMARK $(printf '%0200d' 0)" <<<"$out" || t_fail "the long line was not cut at 200 bytes: $out"
grep -qx 'REMARK line 13' <<<"$out" || t_fail "the 16th line is missing: $out"
! grep -q 'REMARK line 14' <<<"$out" || t_fail "more than 16 lines were passed on: $out"
grep -qx 'REMARK (further lines not shown)' <<<"$out" || t_fail "no note of the lines not shown: $out"
! grep -q $'\033' <<<"$out" || t_fail "an escape byte reached the output"
fx_rm "$STAGE/chatty-1"

# ---------------------------------------------------------------------------
t_log "a wrong host key is refused, and the message shows the offered key's fingerprint"
kh=$N1/ssh/known_hosts
cp "$kh" "$kh.good"
ssh-keygen -q -t ed25519 -N '' -f "$FX_ROOT/other_host_key"
printf '%s %s\n' "$(fx_addr n2)" "$(cut -d' ' -f1,2 "$FX_ROOT/other_host_key.pub")" >"$kh"
if out=$(send_n1 --mig hk-1 "$SRC" 2>&1); then t_fail "a wrong host key was accepted"; fi
clean "$out"
grep -q "does not match" <<<"$out" || t_fail "unexpected message for a changed host key: $out"
grep -qF "$host_fp" <<<"$out" || t_fail "message lacks the fingerprint $host_fp: $out"

t_log "an unknown host is refused unless accept-new is asked for"
: >"$kh"
if out=$(send_n1 --mig hk-2 "$SRC" 2>&1); then t_fail "an unknown host key was accepted"; fi
clean "$out"
grep -q "is not in" <<<"$out" || t_fail "unexpected message for an unknown host: $out"
grep -qF "$host_fp" <<<"$out" || t_fail "message lacks the fingerprint $host_fp: $out"
[ ! -s "$kh" ] || t_fail "known_hosts was written without accept-new"
serve_start "$FX_ROOT/serve2.log"
out=$(send_n1 --mig hk-3 --accept-new "$small") || t_fail "accept-new failed: $out"
wait "$SERVE_PID" || t_fail "receiver failed: $(cat "$FX_ROOT/serve2.log")"
grep -q "^$(fx_addr n2) ssh-ed25519 " "$kh" || t_fail "accept-new did not record the key: $(cat "$kh")"
# What accept-new wrote is what OpenSSH itself accepts.
t_assert_eq "$(fx_ssh n1 n2 echo ok)" ok "OpenSSH with the recorded key"
mv "$kh.good" "$kh"
fx_rm "$STAGE/hk-3"

# ---------------------------------------------------------------------------
t_log "an unauthorized key is refused"
ssh-keygen -q -t ed25519 -N '' -f "$FX_ROOT/stranger"
if out=$(fx_in n1 "$SEND" --host "$(fx_addr n2)" --key "$FX_ROOT/stranger" --known-hosts "$kh" \
	--command "$AGENT dial-stdio --socket $SOCK" --hmac-key "$KEY" --mig auth-1 "$small" 2>&1); then
	t_fail "an unauthorized key was accepted"
fi
clean "$out"
grep -q "refused public key authentication" <<<"$out" || t_fail "unexpected message for a refused key: $out"

t_log "nothing listening is a clear error"
if out=$(fx_in n1 "$SEND" --host "$(fx_addr n2)" --port 2222 --key "$N1/ssh/id_ed25519" --known-hosts "$kh" \
	--hmac-key "$KEY" "$small" 2>&1); then t_fail "connected to a closed port"; fi
clean "$out"
grep -q "refused" <<<"$out" || t_fail "unexpected message for a closed port: $out"

t_log "no agent behind dial-stdio: the remote command's failure is reported with its words"
if out=$(send_n1 --mig noagent-1 "$small" 2>&1); then t_fail "sent without a receiver"; fi
clean "$out"
grep -q "exited with status 8" <<<"$out" || t_fail "unexpected message without an agent: $out"
grep -q "cannot connect to the agent at $SOCK" <<<"$out" || t_fail "dial-stdio's reason is missing: $out"

# The remote command sends one frame (PING, seq 1), which the held sender
# does not take: its connection stops reading there, before the channel's
# end. Then it waits for a gate the test opens only once every byte has
# left, so the sender is idle when the channel ends: nothing but the
# channel's own end can tell it, or it would wait for its idle timeout,
# longer than the test allows. The command ends with a failing status, or
# killed by a signal (sshd then reports the signal and no status).
ping_frame='\000\000\000\011\202\241t\003\243seq\001'
held_case() { # name, how it ends (words), the command's end, the sender's expected words
	local name=$1 how=$2 ending=$3 words=$4 gate=$FX_ROOT/held-$1.gate held_pid out
	t_log "a remote command that $how while the sender holds its reading: the sender hears it at once"
	send_n1 --mig "held-$name" --hold-reading --idle-timeout "$(t_ms 600000)" \
		--command "printf '$ping_frame'; while [ ! -e $gate ]; do sleep 0.05; done; $ending" \
		"$small" >"$FX_ROOT/held-$name.out" 2>&1 &
	held_pid=$!
	t_wait_until 60 "the held sender's bytes to leave" grep -q "^ALL-SENT held-$name" "$FX_ROOT/held-$name.out" ||
		t_fail "the held sender did not send: $(cat "$FX_ROOT/held-$name.out")"
	touch "$gate"
	t_wait_until 60 "the held sender to hear of the channel's end" grep -q '^nm-xfer-send: ' "$FX_ROOT/held-$name.out" ||
		t_fail "the sender holding its reading did not hear of the channel's end: $(cat "$FX_ROOT/held-$name.out")"
	if wait "$held_pid"; then t_fail "the held sender reported success"; fi
	out=$(cat "$FX_ROOT/held-$name.out")
	clean "$out"
	grep -q "$words" <<<"$out" || t_fail "unexpected message for the held sender: $out"
}
held_case exit "exits with status 9" 'exit 9' "exited with status 9"
held_case kill "is killed by a signal" 'kill -KILL $$' "was killed by signal KILL"

# ---------------------------------------------------------------------------
t_log "a corrupted byte (wrong SHA-256) is refused and staging removed"
serve_start "$FX_ROOT/serve3.log"
if out=$(send_n1 --mig bad-1 --bad-digest images/small-7.img "$SRC" 2>&1); then
	t_fail "a wrong digest was accepted"
fi
clean "$out"
wait "$SERVE_PID" && t_fail "receiver accepted a wrong digest"
grep -q "SHA-256 of images/small-7.img does not match" <<<"$out" || t_fail "sender's message: $out"
grep -q "^FAILED bad-1 .*SHA-256" "$FX_ROOT/serve3.log" || t_fail "receiver: $(cat "$FX_ROOT/serve3.log")"
[ ! -e "$STAGE/bad-1" ] || t_fail "staging left behind after a wrong digest"

# ---------------------------------------------------------------------------
t_log "cutting the link mid-stream fails cleanly on both sides"
# n1's link carries 2 MB/s at most (a token bucket): the 256 MiB stream
# lasts two minutes at least, so the cut surely lands in its middle.
tc -n "$(fx_ns n1)" qdisc add dev eth0 root tbf rate 16mbit burst 64kb latency 1s
# The idle timeout is what ends both sides after the cut; it is long
# enough that a busy machine does not end the stream before the cut.
serve_start "$FX_ROOT/serve4.log" --idle-timeout "$(t_ms 8000)"
send_n1 --mig cut-1 --idle-timeout "$(t_ms 8000)" "$SRC" >"$FX_ROOT/send4.out" 2>&1 &
send_pid=$!
fx_track_pid "$send_pid"
# Files have no name until they are checked: watch the receiver's writes.
t_wait_until 60 "the stream is under way" \
	bash -c "[ \$(sed -n 's/^wchar: //p' /proc/$SERVE_PID/io 2>/dev/null || echo 0) -gt 1000000 ]" ||
	t_fail "the stream did not start: $(cat "$FX_ROOT/send4.out")"
fx_link_down
tc -n "$(fx_ns n1)" qdisc del dev eth0 root
start=$(date +%s)
rc=0
wait "$send_pid" || rc=$?
[ "$rc" -ne 0 ] || t_fail "the sender reported success over a cut link"
rc=0
wait "$SERVE_PID" || rc=$?
[ "$rc" -ne 0 ] || t_fail "the receiver reported success over a cut link"
elapsed=$(($(date +%s) - start))
t_log "both sides gave up after ${elapsed}s: sender: $(tail -1 "$FX_ROOT/send4.out"); receiver: $(tail -1 "$FX_ROOT/serve4.log")"
# A bound against a hang only (the idle timeout is 8 s, scaled; load decides the rest).
[ "$elapsed" -le "$(t_secs 60)" ] || t_fail "giving up took ${elapsed}s"
clean "$(cat "$FX_ROOT/send4.out" "$FX_ROOT/serve4.log" "$FX_ROOT/serve3.log")"
grep -q "idle" "$FX_ROOT/send4.out" || t_fail "sender's message: $(cat "$FX_ROOT/send4.out")"
grep -q "^FAILED cut-1 .*silent" "$FX_ROOT/serve4.log" || t_fail "receiver: $(cat "$FX_ROOT/serve4.log")"
[ ! -e "$STAGE/cut-1" ] || t_fail "staging left behind after a cut link"

t_log "with the link down the peer is unreachable"
if out=$(fx_in n1 "$SEND" --host "$(fx_addr n2)" --key "$N1/ssh/id_ed25519" --known-hosts "$kh" \
	--connect-timeout 1500 --hmac-key "$KEY" "$small" 2>&1); then t_fail "connected over a cut link"; fi
clean "$out"
grep -q "unreachable" <<<"$out" || t_fail "unexpected message for an unreachable peer: $out"
fx_link_up

t_log "a peer that drops every packet: the connect times out with a clear error"
ip -n "$(fx_ns n2)" link set eth0 down
if out=$(fx_in n1 "$SEND" --host "$(fx_addr n2)" --key "$N1/ssh/id_ed25519" --known-hosts "$kh" \
	--connect-timeout 1500 --hmac-key "$KEY" "$small" 2>&1); then t_fail "connected to a silent peer"; fi
clean "$out"
grep -q "timed out after 1500 ms" <<<"$out" || t_fail "unexpected message for a connect timeout: $out"
ip -n "$(fx_ns n2)" link set eth0 up
t_wait_until 30 "link up" fx_port_open n2
t_assert_eq "$(ls -A "$STAGE")" "" "staging area after all tests"
t_log "ok"
