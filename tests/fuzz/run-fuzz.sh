#!/usr/bin/env bash
# Runs a libFuzzer target for a bounded time on a copy of the committed seed
# corpus, so that the committed files never change. Fails on any crash,
# leak, timeout or sanitizer report; the input that caused it is kept in
# WORKDIR/artifacts/.
#
#   run-fuzz.sh FUZZER CORPUS WORKDIR SECONDS [DICT]
set -euo pipefail

fuzzer=$1 corpus=$2 work=$3 seconds=$4
dict=()
[ $# -ge 5 ] && dict=(-dict="$5")

rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp "$corpus"/* "$work/corpus/"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# libFuzzer exits 77 on a crash by default, which meson counts as a skip:
# any finding must fail the test.
codes=(-error_exitcode=1 -timeout_exitcode=1)

# Every committed seed first, one by one, so that a regression names its file.
"$fuzzer" "${codes[@]}" -runs=0 "$corpus"/*

"$fuzzer" "${codes[@]}" \
	-max_total_time="$seconds" \
	-timeout=$((10 * ${NM_TIMEOUT_MULT:-1})) \
	-rss_limit_mb=2048 \
	-max_len=65536 \
	-print_final_stats=1 \
	"${dict[@]}" \
	-artifact_prefix="$work/artifacts/" \
	"$work/corpus"
