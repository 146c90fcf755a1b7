#!/usr/bin/env bash
# The cluster HMAC key as the fixture provisions it (generated on n1,
# streamed to n2): identical on both nodes, 32 bytes, 0600 root in a 0700
# directory; --generate keeps an existing key; a different key replaces it
# only with --force; bad keys are refused; the key is never written to a
# terminal nor left in a temporary file.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"

fx_nodes_up
NP=$FX_PROVISION
k1=$(fx_hmac_key n1)
k2=$(fx_hmac_key n2)
c1=$(fx_conf n1)
c2=$(fx_conf n2)

state() { stat -c '%n %s %a %U:%G %Y' "$k1" "$k2" && sha256sum "$k1" "$k2"; }
no_leftovers() {
	local left
	left=$(find "$(dirname "$k1")" "$(dirname "$k2")" -mindepth 1 ! -name "$(basename "$k1")")
	[ -z "$left" ] || t_fail "left behind next to the keys: $left"
}

t_log "one key on both nodes"
cmp -s "$k1" "$k2" || t_fail "the HMAC keys of n1 and n2 differ"
for k in "$k1" "$k2"; do
	t_assert_eq "$(stat -c '%s %a %U:%G' "$k")" "32 600 root:root" "size, mode, owner of $k"
	t_assert_eq "$(stat -c '%a %U:%G' "$(dirname "$k")")" "700 root:root" "mode, owner of $(dirname "$k")"
done
no_leftovers
# 32 random bytes: not all equal, not text
[ "$(od -An -tx1 -v "$k1" | tr -s ' \n' '\n' | sed '/^$/d' | sort -u | wc -l)" -gt 8 ] || t_fail "the key does not look random"
fp1=$("$NP" hmac-key --config "$c1" --fingerprint) || t_fail "--fingerprint failed on n1"
t_assert_eq "$fp1" "sha256:$(sha256sum <"$k1" | cut -d' ' -f1)" "fingerprint"
t_assert_eq "$("$NP" hmac-key --config "$c2" --fingerprint)" "$fp1" "fingerprints of n1 and n2"

t_log "generate again and install the same key again: nothing changes"
before=$(state)
sleep 1.1
"$NP" hmac-key -q --config "$c1" --generate || t_fail "--generate with a key present failed"
"$NP" hmac-key -q --config "$c2" --generate || t_fail "--generate on n2 with a key present failed"
"$NP" hmac-key --config "$c1" --print | "$NP" hmac-key -q --config "$c2" --install - || t_fail "re-install failed"
t_assert_eq "$(state)" "$before" "keys after --generate and --install of the same key"

t_log "a different key is refused without --force"
head -c 32 /dev/urandom >"$FX_ROOT/other.key"
t_expect_error 4 "refusing to replace the cluster key" "$NP" hmac-key --config "$c2" --install "$FX_ROOT/other.key"
t_expect_error 4 "refusing to replace the cluster key" "$NP" hmac-key --config "$c2" --install - <"$FX_ROOT/other.key"
t_assert_eq "$(state)" "$before" "keys after a refused install"
no_leftovers

t_log "bad keys are refused"
head -c 31 /dev/urandom >"$FX_ROOT/short.key"
t_expect_error 3 "has 31 bytes" "$NP" hmac-key --config "$c2" --install "$FX_ROOT/short.key" --force
t_expect_error 3 "has 0 bytes" "$NP" hmac-key --config "$c2" --install - --force </dev/null
head -c 5000 /dev/urandom >"$FX_ROOT/long.key"
t_expect_error 3 "has 4097 bytes" "$NP" hmac-key --config "$c2" --install "$FX_ROOT/long.key" --force
t_expect_error 3 "not found" "$NP" hmac-key --config "$c2" --install "$FX_ROOT/missing.key"
t_expect_error 2 "exactly one of" "$NP" hmac-key --config "$c2"
t_expect_error 2 "exactly one of" "$NP" hmac-key --config "$c2" --generate --print
t_expect_error 2 "unknown option --size" "$NP" hmac-key --config "$c2" --generate --size 64
t_assert_eq "$(state)" "$before" "keys after bad keys"
no_leftovers

t_log "--print never writes to a terminal"
command -v script >/dev/null || t_fail "script(1) is missing (util-linux)"
out=$(script -qec "$NP hmac-key --config $c1 --print" /dev/null </dev/null 2>&1) && t_fail "--print wrote to a terminal"
grep -q "refusing to write the cluster key to a terminal" <<<"$out" || t_fail "unexpected --print on a terminal: $out"

t_log "a key with unsafe modes is not used"
chmod 0644 "$k2"
t_expect_error 4 "must be 0600 root" "$NP" hmac-key --config "$c2" --fingerprint
t_expect_error 4 "must be 0600 root" "$NP" hmac-key --config "$c2" --print
chmod 0600 "$k2"
chmod 0755 "$(dirname "$k2")"
t_expect_error 4 "must be 0700 root" "$NP" hmac-key --config "$c2" --fingerprint
chmod 0700 "$(dirname "$k2")"

t_log "--force replaces it, atomically and privately"
"$NP" hmac-key -q --config "$c2" --install "$FX_ROOT/other.key" --force || t_fail "--install --force failed"
cmp -s "$k2" "$FX_ROOT/other.key" || t_fail "--force did not install the new key"
t_assert_eq "$(stat -c '%s %a %U:%G' "$k2")" "32 600 root:root" "replaced key"
no_leftovers
"$NP" hmac-key --config "$c1" --print | "$NP" hmac-key -q --config "$c2" --install - --force || t_fail "restoring n1's key failed"
cmp -s "$k1" "$k2" || t_fail "n2's key differs from n1's after restoring"

t_log "a missing key: --generate makes one, --fingerprint says it is missing"
mv "$k2" "$FX_ROOT/k2.saved"
t_expect_error 3 "cluster key .* not found" "$NP" hmac-key --config "$c2" --fingerprint
rc=0
out=$("$NP" status --config "$c2") || rc=$?
t_assert_eq "$rc" 3 "status with the key missing"
grep -q "^hmac key  *MISSING $k2$" <<<"$out" || t_fail "status does not report the missing key: $out"
"$NP" hmac-key -q --config "$c2" --generate || t_fail "--generate failed"
t_assert_eq "$(stat -c '%s %a %U:%G' "$k2")" "32 600 root:root" "generated key"
cmp -s "$k2" "$k1" && t_fail "a newly generated key equals n1's"
mv "$FX_ROOT/k2.saved" "$k2"
no_leftovers
t_log "ok"
