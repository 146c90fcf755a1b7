#!/usr/bin/env bash
# What a move checks before anything is frozen, each refusing with exit 3
# and its reason while the container runs on untouched (same pid, same start
# ticks, no CRIU dump started): a target that holds another HMAC key (the
# agents compare their keys' identities from HELLO), a target whose `criu
# check` fails (a criu that fails `check` and is real CRIU otherwise), and a
# target whose CPU lacks what the source's has (the source's cpuinfo image,
# made by real CRIU and widened to claim every feature, which real CRIU on
# the target refuses). A node without a key does not start and says how to
# install one; it never makes its own. Once all is right again, the move
# goes through. A CPU image the target accepted lately is not judged again
# (the log says so); a different one is, and is refused.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"

CRIU=$(t_criu)
fx_agents_up
read -r id pid < <(fx_ctr_start n1 checked)
work=$(fx_ctr_dir n1 checked)
fx_counter_advances "$work" || t_fail "workload does not tick"
ticks=$(fx_start_ticks "$pid")
dumps=$(fx_criu_dumps n1)

# untouched WHAT: the container still runs on n1 as the same process, and
# nothing was dumped.
untouched() {
	t_log "refused: $(grep -v '^ *$' <<<"$T_OUT" | tail -n1)"
	t_assert_eq "$(fx_ctr_where "$id")" n1 "$1: where the container runs"
	t_assert_eq "$(fx_start_ticks "$pid")" "$ticks" "$1: the container's start ticks"
	t_assert_eq "$(fx_criu_dumps n1)" "$dumps" "$1: CRIU dumps started"
	fx_counter_advances "$work" || t_fail "$1: the container does not tick"
}

# restart NODE [AGENT ARGS]: the agent on NODE again, with these options.
restart() {
	local n=$1
	fx_agent_stop "$n"
	FX_AGENT_ARGS="${2:-}" fx_agent_start "$n"
}

t_log "a target holding another HMAC key"
key2=$(fx_hmac_key n2)
cp -p "$key2" "$FX_ROOT/key2.saved"
fx_agent_stop n2
head -c 32 /dev/urandom >"$key2"
fx_agent_start n2
t_expect_exit 3 "a move to a node with another key" fx_nm n1 migrate "$id" node2
t_says "a move to a node with another key" "the checkpoint HMAC keys differ" "node1 holds key" "node2 holds key" \
	"nucleus-provision hmac-key --print | ssh root@node2 nucleus-provision hmac-key --install -"
grep -q "$(od -An -tx1 "$key2" | tr -d ' \n' | cut -c1-16)" <<<"$T_OUT" && t_fail "the refusal shows the key itself"
untouched "different keys"
t_log "and a move from that node"
read -r id2 _ < <(fx_ctr_start n2 other)
t_expect_exit 3 "a move from a node with another key" fx_nm n2 migrate "$id2" node1
t_says "a move from a node with another key" "the checkpoint HMAC keys differ"
t_assert_eq "$(fx_ctr_where "$id2")" n2 "the container on node2 after the refusal"

t_log "a node without a key does not start, makes none, and says how to install it"
fx_agent_stop n2
rm -f "$key2"
t_expect_exit "1|2" "an agent without its HMAC key (124: it started)" \
	fx_in n2 timeout "$(t_secs 60)" "$FX_BUILD/agent/nucleus-agent" --config "$(fx_conf n2)"
t_says "an agent without its HMAC key" "checkpoint HMAC key $key2 does not exist" "hmac-key --install -" \
	"hmac-key --generate"
[ ! -e "$key2" ] || t_fail "the agent made a key of its own"
cp -p "$FX_ROOT/key2.saved" "$key2"
fx_agent_start n2

t_log "a target whose criu check fails"
mkdir -p "$FX_ROOT/bin"
cat >"$FX_ROOT/bin/criu-check-fails" <<EOF
#!/bin/sh
if [ "\$1" = check ]; then
	echo "Error (criu/cr-check.c:1): simulated: this kernel lacks what CRIU needs"
	exit 1
fi
exec $CRIU "\$@"
EOF
chmod 0755 "$FX_ROOT/bin/criu-check-fails"
restart n2 "--criu $FX_ROOT/bin/criu-check-fails"
fx_nm n2 status --json | grep -q '"criu_check":"failed"' || t_fail "node2's status does not show its failed criu check"
t_expect_exit 3 "a move to a node whose criu check fails" fx_nm n1 migrate "$id" node2
t_says "a move to a node whose criu check fails" "criu check fails on node2" "simulated: this kernel lacks"
untouched "a failing criu check"
restart n2
fx_nm n2 status --json | grep -q '"criu_check":"passed"' || t_fail "node2's criu check after the real criu is back"

t_log "a target whose CPU lacks what the source's offers"
# Real CRIU records this CPU; every capability word it wrote as a 32-bit
# varint (5 bytes) is widened to all ones, as a CPU with every feature.
mkdir -p "$FX_ROOT/cpu"
"$CRIU" cpuinfo dump -D "$FX_ROOT/cpu" 2>/dev/null || t_fail "criu cpuinfo dump"
perl -e '
	local $/; open(my $f, "<:raw", $ARGV[0]) or die; my $b = <$f>; close $f;
	sub varint { my ($p) = @_; my ($v, $s) = (0, 0);
		while (1) { my $c = ord(substr($b, $$p++, 1)); $v |= ($c & 0x7f) << $s; $s += 7; last unless $c & 0x80 }
		return $v }
	my $p = 12; die "not an x86 cpuinfo image\n" unless ord(substr($b, $p++, 1)) == 0x0a;
	my $end = varint(\$p); $end += $p; my $n = 0;
	while ($p < $end) {
		my $tag = ord(substr($b, $p++, 1)); my $w = $tag & 7;
		if ($w == 0) { my $s = $p; varint(\$p);
			if ($tag >> 3 == 6 && $p - $s == 5) { substr($b, $s, 5) = "\xff\xff\xff\xff\x0f"; $n++ } }
		elsif ($w == 2) { $p += varint(\$p) } else { die "wire type $w\n" } }
	die "no capability word to widen\n" unless $n;
	open($f, ">:raw", $ARGV[1]) or die; print $f $b; close $f;' "$FX_ROOT/cpu/cpuinfo.img" "$FX_ROOT/cpuinfo-wide.img"
# The oracle: real CRIU here refuses the widened image and takes its own.
mkdir -p "$FX_ROOT/cpu-wide" && cp "$FX_ROOT/cpuinfo-wide.img" "$FX_ROOT/cpu-wide/cpuinfo.img"
"$CRIU" cpuinfo check --cpu-cap=fpu,ins -D "$FX_ROOT/cpu" >/dev/null 2>&1 || t_fail "criu refuses this CPU's own image"
if "$CRIU" cpuinfo check --cpu-cap=fpu,ins -D "$FX_ROOT/cpu-wide" >/dev/null 2>&1; then
	t_fail "criu takes the widened image: the test would prove nothing"
fi
cat >"$FX_ROOT/bin/criu-wide-cpu" <<EOF
#!/bin/sh
if [ "\$1" = cpuinfo ] && [ "\$2" = dump ] && [ "\$3" = -D ]; then
	cp "$FX_ROOT/cpuinfo-wide.img" "\$4/cpuinfo.img"
	exit
fi
exec $CRIU "\$@"
EOF
chmod 0755 "$FX_ROOT/bin/criu-wide-cpu"
restart n1 "--criu $FX_ROOT/bin/criu-wide-cpu"
t_expect_exit 3 "a move to a CPU that lacks features" fx_nm n1 migrate "$id" node2
t_says "a move to a CPU that lacks features" "the CPU of node2 lacks what node1's offers" \
	"CPU instruction capabilities do not match"
untouched "an incompatible CPU"

t_log "all right again: the move goes through"
restart n1
fx_nm n1 migrate "$id" node2 >/dev/null || t_fail "the move once every check passes"
t_assert_eq "$(fx_ctr_where "$id")" n2 "the container after the move"

# n2's log since byte OFF says that CRIU there was not asked again.
not_asked_since() { fx_logged_since n2 "$1" "CRIU here accepted this CPU image lately"; }

t_log "a CPU image accepted lately is not judged again; another one is"
fx_nm n2 migrate "$id" node1 >/dev/null || t_fail "the move back to n1"
off=$(stat -c %s "$(fx_agent_log n2)")
fx_nm n1 migrate "$id" node2 >/dev/null || t_fail "the second move to n2"
t_assert_eq "$(fx_ctr_where "$id")" n2 "the container after the second move"
not_asked_since "$off" || t_fail "n2 asked CRIU again about the CPU image it accepted for the first move"
fx_nm n2 migrate "$id" node1 >/dev/null || t_fail "the move back to n1, again"
restart n1 "--criu $FX_ROOT/bin/criu-wide-cpu"
off=$(stat -c %s "$(fx_agent_log n2)")
t_expect_exit 3 "a wider CPU image after a pass" fx_nm n1 migrate "$id" node2
t_says "a wider CPU image after a pass" "the CPU of node2 lacks what node1's offers"
! not_asked_since "$off" || t_fail "n2 took the wider image for the one it had accepted"
t_assert_eq "$(fx_ctr_where "$id")" n1 "the container after the refusal"
t_log "ok"
