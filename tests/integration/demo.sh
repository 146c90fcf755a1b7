#!/usr/bin/env bash
# The README's main job, deploy/demo, runs green and shows what it promises:
# progress, the container continuing on node2 from the same count, the
# downtime and bytes; and it leaves nothing behind.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
t_require_root

src=${NM_SOURCE_DIR:?}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
NM_BUILD_DIR=${NM_BUILD_DIR:?} "$src/deploy/demo" >"$out" 2>&1 || { cat "$out" >&2; t_fail "deploy/demo failed"; }
grep -q "^moved counter .* from node1 to node2: pid [0-9]* there" "$out" || t_fail "no move reported"
grep -q "streaming" "$out" || t_fail "no progress shown"
grep -q "^  node2: count=" "$out" || t_fail "the counter is not shown on node2"
b=$(sed -n 's/.*before the move: \([0-9]*\);.*/\1/p' "$out")
a=$(sed -n 's/.*right after: \([0-9]*\) .*/\1/p' "$out")
[ -n "$b" ] && [ -n "$a" ] && [ "$a" -ge "$b" ] || t_fail "counter did not continue: before '$b', after '$a'"
grep -q "downtime measured by the agents: [0-9]* ms" "$out" || t_fail "no downtime reported"
grep -q "image bytes moved and verified: [0-9]*$" "$out" || t_fail "no byte count reported"
grep -q "^  from node1, .*:7000 answers: hello-n1$" "$out" || t_fail "the native container's address did not answer on node1"
grep -q "^  from node2, .*:7000 answers: hello-n2$" "$out" || t_fail "the native container's address did not answer on node2"
grep -q "^  node1 left behind: state file no, address reservation no$" "$out" || t_fail "the native move left something on node1"
tag=$(sed -n 's/.*namespaces nmfx-\([A-Za-z0-9]*\)-.*/\1/p' "$out" | head -n1)
[ -n "$tag" ] || t_fail "the demo did not name its namespaces"
! ip netns list | grep -q "nmfx-$tag-" || t_fail "the demo left its namespaces nmfx-$tag-* behind"
root=$(sed -n 's/.* up under \([^ ]*\) .*/\1/p' "$out" | head -n1)
[ -n "$root" ] && [ ! -e "$root" ] || t_fail "the demo left $root behind"
t_log "ok: counter $b -> $a"
