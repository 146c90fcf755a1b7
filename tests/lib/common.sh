# shellcheck shell=bash
# Helpers shared by every shell test: assertions that say what failed, waits
# with a timeout multiplier, and TAP-free plain output (meson reads the exit
# code: 0 pass, 77 skip, anything else fail).
#
# Time (tests/README.md): a test waits on an event (t_wait_until polls for
# it); a time limit is a generous bound against a hang that scales with
# NM_TIMEOUT_MULT (T_TIMEOUT_MULT, a whole number), never a claim about
# speed.

T_NAME=${T_NAME:-$(basename "$0" .sh)}
T_TIMEOUT_MULT=${NM_TIMEOUT_MULT:-1}
[[ $T_TIMEOUT_MULT =~ ^[1-9][0-9]*$ ]] || T_TIMEOUT_MULT=1

t_log() { printf '[%s] %s\n' "$T_NAME" "$*" >&2; }

t_fail() {
	printf '[%s] FAIL: %s\n' "$T_NAME" "$*" >&2
	exit 1
}

# t_require_root: integration tests need root; in CI they fail, never skip.
t_require_root() {
	[ "$(id -u)" -eq 0 ] || t_fail "needs root (CRIU, network namespaces, sshd)"
}

t_assert() {
	local msg=$1
	shift
	"$@" || t_fail "$msg (command: $*)"
}

# t_secs N / t_ms N: N seconds or milliseconds, scaled by T_TIMEOUT_MULT
# (for the time limits a test passes to a program).
t_secs() { echo $(($1 * T_TIMEOUT_MULT)); }
t_ms() { echo $(($1 * T_TIMEOUT_MULT)); }

t_assert_eq() {
	[ "$1" = "$2" ] || t_fail "$3: expected '$2', got '$1'"
}

# t_wait_until SECONDS DESCRIPTION CMD...: polls CMD every 0.1 s until it
# succeeds, for at most SECONDS x T_TIMEOUT_MULT.
t_wait_until() {
	local secs=$1 what=$2 deadline
	shift 2
	deadline=$(($(date +%s%N) / 1000000 + secs * 1000 * T_TIMEOUT_MULT))
	until "$@"; do
		[ $(($(date +%s%N) / 1000000)) -lt "$deadline" ] || {
			t_log "timed out after ${secs}s waiting for: $what"
			return 1
		}
		sleep 0.1
	done
}

# t_expect_exit STATUS WHAT CMD...: CMD exits with STATUS (a number, or
# several as "1|2"). Its output, standard output and error together, is left
# in T_OUT for t_says, and shown when the status is not the expected one.
t_expect_exit() {
	local want=$1 what=$2 rc=0
	shift 2
	T_OUT=$("$@" 2>&1) || rc=$?
	[[ "|$want|" == *"|$rc|"* ]] || t_fail "$what: exit $rc, expected $want: $T_OUT"
}

# t_expect_error STATUS ERE CMD...: CMD exits with STATUS and its standard
# error (its standard output is not looked at) matches ERE.
t_expect_error() {
	local want=$1 pattern=$2
	shift 2
	t_expect_exit "$want" "$*" t__stderr_only "$@"
	t_says_re "$*" "$pattern"
}
t__stderr_only() { "$@" >/dev/null; }

# t_says WHAT TEXT...: the output of the last t_expect_exit holds each TEXT,
# a fixed string; t_says_re: each extended regular expression.
t_says() {
	local what=$1 t
	shift
	for t in "$@"; do
		grep -qF -- "$t" <<<"$T_OUT" || t_fail "$what: the output does not say '$t': $T_OUT"
	done
}
t_says_re() {
	local what=$1 t
	shift
	for t in "$@"; do
		grep -qE -- "$t" <<<"$T_OUT" || t_fail "$what: the output does not match '$t': $T_OUT"
	done
}

# t_expect_fail DESCRIPTION CMD...: CMD must exit non-zero.
t_expect_fail() {
	local what=$1
	shift
	if "$@"; then t_fail "expected failure: $what"; fi
	return 0
}

# t_run_id: the run this test belongs to (results one test leaves for
# another, such as the fault matrix's rows, are of this run or stale):
# NM_TEST_RUN if set (tests/run sets it), else the parent process (pid and
# start time), which under `meson test` is the same for every test of a run.
t_run_id() {
	if [ -n "${NM_TEST_RUN:-}" ]; then
		echo "$NM_TEST_RUN"
	else
		echo "meson-$PPID-$(sed 's/.*) //' "/proc/$PPID/stat" | cut -d' ' -f20)"
	fi
}

# t_criu: the criu binary the project uses: the first of the trusted paths
# that is >= 4.2 (deploy/install-deps puts one there).
t_criu() {
	local b v
	for b in /usr/local/sbin/criu /usr/sbin/criu; do
		[ -x "$b" ] || continue
		v=$("$b" --version 2>/dev/null | sed -n 's/^Version: *//p')
		[ -n "$v" ] && dpkg --compare-versions "$v" ge 4.2 && { echo "$b"; return 0; }
	done
	t_fail "no criu >= 4.2 in /usr/local/sbin or /usr/sbin (run deploy/install-deps)"
}
