#!/usr/bin/env bash
# Static analysis: clang-tidy 14 with the committed .clang-tidy (which says
# what is enabled, what is not and why) on every C file of the project that
# BUILD-DIR compiles (its compile_commands.json), in parallel. Any finding
# fails: WarningsAsErrors is '*'. The full output is kept in
# BUILD-DIR/meson-logs/clang-tidy.log.
#
#   clang-tidy.sh SOURCE-DIR BUILD-DIR
set -uo pipefail

src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
log=$build/meson-logs/clang-tidy.log

tidy=$(command -v clang-tidy-14 || command -v clang-tidy) ||
	{ echo "clang-tidy is not installed (deploy/install-deps installs it)"; exit 1; }
runner=$(command -v run-clang-tidy-14 || command -v run-clang-tidy) ||
	{ echo "run-clang-tidy is not installed (it comes with clang-tidy)"; exit 1; }
[ -f "$build/compile_commands.json" ] || { echo "no $build/compile_commands.json"; exit 1; }
[ -f "$src/.clang-tidy" ] || { echo "no $src/.clang-tidy"; exit 1; }

files=$(grep -c '"file":' "$build/compile_commands.json")
mkdir -p "$(dirname "$log")"
# The build's flags are gcc's: clang does not know a few warning options.
"$runner" -clang-tidy-binary "$tidy" -p "$build" -j "$(nproc)" -quiet \
	-extra-arg=-Wno-unknown-warning-option "^$src/" >"$log.raw" 2>&1
rc=$?
sed 's/\x1b\[[0-9;]*m//g' "$log.raw" >"$log" # it colours its output whatever we say
rm -f "$log.raw"
findings=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' "$log" | sort -u)
if [ "$rc" -ne 0 ] || [ -n "$findings" ]; then
	echo "$findings"
	[ -n "$findings" ] || tail -n 30 "$log"
	echo "clang-tidy: $(grep -c . <<<"$findings") finding(s) in $files compiled files (log: $log)"
	exit 1
fi
echo "clang-tidy: $files compiled files, no findings"
