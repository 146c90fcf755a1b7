#!/usr/bin/env bash
# ckpt's side of streaming pages while CRIU dumps, with real CRIU on one
# node (nm-ps-dump joins the two ends by a socketpair; the agents will relay
# it over the peer session): a nucleus container is dumped held stopped with
# its pages sent to `criu page-server`, which writes them into another
# directory; the dump's own directory holds no page, and is signed. The two
# directories together verify once signed and restore the container, whose
# counter, pipe and log go on. A dump whose page server is gone fails, and
# the container runs on where it was, with nothing of the dump left. A tree
# that cannot be held (it holds a file lock) keeps its pages in its own
# images, so that they can bring it back. Through the two agents' ends of a
# page stream (ps_link, every frame tagged and checked) the pages arrive
# the same and restore; a frame flipped on its way is refused before the
# page server reads it, both CRIUs fail, and the container runs on.
set -euo pipefail
. "$(dirname "$0")/../lib/fixture.sh"
. "$(dirname "$0")/../lib/breadth.sh"

NM=$FX_BUILD/agent/nucleus-migrate
PSD=$FX_BUILD/tests/tools/nm-ps-dump
[ -x "$PSD" ] || t_fail "$PSD is not built"
fx_nodes_up
fx_use_node n1
nm() { fx_in n1 "$NM" "$@"; }
count() { fx_ctr_field "$work" count; }
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status"; }
stopped() { grep -q '^State:.*T' "/proc/$1/status"; }
page_files() { find "$1" -name 'pages-*.img' -o -name 'pagemap-*.img' | wc -l; }
# restore_halves SRC DST PID WHAT: the dump's directory and the page
# server's made one checkpoint, signed and verified; the held source PID
# ended; the container restored from it (newpid), its counter and log go on.
restore_halves() {
	local src=$1 dst=$2 pid=$3 what=$4 c out
	cp "$src/metadata.json" "$dst/"
	cp -n "$src"/images/* "$dst/images/"
	nm sign "$dst" >/dev/null || t_fail "sign of the $what halves failed"
	nm verify "$dst" || t_fail "the $what halves do not verify"
	nm kill-tree "$pid" || t_fail "kill-tree of the held source failed"
	t_wait_until 10 "the held source to end" gone "$pid" || t_fail "the held source did not end"
	c=$(count)
	out=$(nm restore -i "$dst" 2>&1) || t_fail "restore from the $what halves failed: $out"
	newpid=$(sed -n "s/.* as pid \([0-9]*\).*/\1/p" <<<"$out" | head -n1)
	[ -n "$newpid" ] || t_fail "restore did not print the new pid: $out"
	fx_track_pid "$newpid"
	fx_counter_reaches "$work" $((c + 3)) || t_fail "counter did not continue after the restore from the $what halves"
	fx_log_ok "$work" || t_fail "log has a gap or repeats after the restore from the $what halves"
}

read -r id pid < <(fx_ctr_start n1 web)
work=$(fx_ctr_dir n1 web)
fx_counter_reaches "$work" 2 || t_fail "workload does not tick"
tree="$pid $(ps -o pid= --ppid "$pid" | tr -d ' ')"

src=$FX_ROOT/ckpt/src dst=$FX_ROOT/ckpt/dst
mkdir -p -m 0700 "$FX_ROOT/ckpt" "$dst/images"
t_log "dump $id (pid $pid), its pages to a page server"
out=$(fx_in n1 "$PSD" --stranger web "$src" "$dst" "$FX_ROOT/ckpt/work") || t_fail "the dump through a page server failed: $out"
printf '%s\n' "$out" >&2
grep -q '^dump: status=0 outcome=ok pages=server stopped=1 ' <<<"$out" || t_fail "the dump did not send its pages and hold the tree: $out"
# Another process's open of a file in the page server's images, for
# writing, while it runs: refused, and said (no change was made).
grep -q '^stranger: refused (EPERM)$' <<<"$out" || t_fail "a stray writer could open a file the page server writes into: $out"
grep -q '^page-server: status=0 why=0 change(s) and 1 refused open(s) .* while the page server wrote them$' <<<"$out" ||
	t_fail "the page server did not end its session cleanly, or did not say what it refused: $out"
# Sealed once the page server is done: no writer gets at them afterwards.
for f in "$dst"/images/pages-*.img "$dst"/images/pagemap-*.img; do
	lsattr "$f" | grep -q '^[^ ]*i' || t_fail "$(basename "$f") is not sealed after the page server ended"
done

t_assert_eq "$(page_files "$src")" 0 "page and pagemap files in the dump's directory"
[ "$(page_files "$dst")" -ge 2 ] || t_fail "the page server wrote no pages or pagemap into $dst: $(ls "$dst/images")"
nm verify "$src" || t_fail "the dump's own directory (no pages) does not verify"
for p in $tree; do
	stopped "$p" || t_fail "task $p of the dumped tree is not held stopped"
done
c1=$(count)
sleep 0.5
t_assert_eq "$(count)" "$c1" "counter while held"

t_log "the two halves make one checkpoint"
restore_halves "$src" "$dst" "$pid" joined

t_log "a dump whose page server is gone"
src2=$FX_ROOT/ckpt/src2
mkdir -p -m 0700 "$FX_ROOT/ckpt/dst2/images"
out=$(fx_in n1 "$PSD" --no-server web "$src2" "$FX_ROOT/ckpt/dst2" "$FX_ROOT/ckpt/work2") &&
	t_fail "a dump with nobody reading its pages succeeded: $out"
printf '%s\n' "$out" >&2
grep -q '^dump: status=-[0-9]* outcome=failed-running .* running=1$' <<<"$out" || t_fail "the failed dump does not say the container runs on: $out"
c2=$(count)
fx_counter_reaches "$work" $((c2 + 3)) || t_fail "the container does not run on after the failed dump"
for p in $newpid $(ps -o pid= --ppid "$newpid" | tr -d ' '); do
	stopped "$p" && t_fail "task $p stays stopped after the failed dump"
done
[ ! -e "$src2" ] || [ -z "$(ls -A "$src2")" ] || t_fail "the failed dump left images: $(ls -R "$src2")"

t_log "the pages through the agents' ends of a page stream"
src4=$FX_ROOT/ckpt/src4 dst4=$FX_ROOT/ckpt/dst4
mkdir -p -m 0700 "$dst4/images"
pid=$newpid
out=$(fx_in n1 "$PSD" --link web "$src4" "$dst4" "$FX_ROOT/ckpt/work4") || t_fail "the dump through the link failed: $out"
printf '%s\n' "$out" >&2
grep -q '^dump: status=0 outcome=ok pages=server stopped=1 ' <<<"$out" || t_fail "the dump through the link did not send its pages: $out"
grep -q '^page-server: status=0$' <<<"$out" || t_fail "the page server behind the link did not end cleanly: $out"
link=$(grep '^link: state=' <<<"$out") || t_fail "no link report: $out"
[[ $link =~ ^link:\ state=ended\ frames=([0-9]+)\ bytes=([0-9]+)\ replies=([0-9]+)$ ]] || t_fail "the page stream did not end: $link"
frames=${BASH_REMATCH[1]} bytes=${BASH_REMATCH[2]} replies=${BASH_REMATCH[3]}
pages=$(find "$dst4/images" -name 'pages-*.img' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
if [ "$pages" -eq 0 ] || [ "$bytes" -lt "$pages" ]; then
	t_fail "the link carried $bytes bytes for $pages bytes of pages"
fi
[ "$replies" -ge 1 ] || t_fail "no reply of the page server came back through the link: $link"
t_assert_eq "$(page_files "$src4")" 0 "page and pagemap files in the linked dump's directory"
restore_halves "$src4" "$dst4" "$pid" linked

t_log "a page frame flipped on its way ($frames frames in the good run)"
src5=$FX_ROOT/ckpt/src5
mkdir -p -m 0700 "$FX_ROOT/ckpt/dst5/images"
out=$(fx_in n1 "$PSD" --link --flip 2 web "$src5" "$FX_ROOT/ckpt/dst5" "$FX_ROOT/ckpt/work5") &&
	t_fail "a dump whose page frame was flipped succeeded: $out"
printf '%s\n' "$out" >&2
grep -q '^link: frame 2 refused (Bad message)$' <<<"$out" || t_fail "the flipped frame was not refused: $out"
grep -q '^link: state=broken ' <<<"$out" || t_fail "the link did not break: $out"
grep -q '^page-server: status=-' <<<"$out" || t_fail "the page server did not fail: $out"
grep -q '^dump: status=-[0-9]* outcome=failed-running .* running=1$' <<<"$out" || t_fail "the dump did not fail with the container running: $out"
c4=$(count)
fx_counter_reaches "$work" $((c4 + 3)) || t_fail "the container does not run on after the refused frame"
for p in $newpid $(ps -o pid= --ppid "$newpid" | tr -d ' '); do
	stopped "$p" && t_fail "task $p stays stopped after the refused frame"
done
fx_log_ok "$work" || t_fail "log has a gap or repeats after the refused frame"

t_log "a tree that cannot be held keeps its pages"
bdir=$(fx_ctr_dir n1 locks)
read -r _ bpid < <(breadth_start n1 "$NUCLEUS_STATE_DIR" "$bdir" locks flock) || t_fail "the locks workload did not start"
report=$(breadth_check "$bpid" "$bdir" 1) || t_fail "no report from the locks workload"
bad=$(breadth_all_ok "$report" flock) || t_fail "before the dump: $bad"
src3=$FX_ROOT/ckpt/src3
mkdir -p -m 0700 "$FX_ROOT/ckpt/dst3/images"
out=$(fx_in n1 "$PSD" --if-safe locks "$src3" "$FX_ROOT/ckpt/dst3" "$FX_ROOT/ckpt/work3") || t_fail "the dump of a tree that cannot be held failed: $out"
printf '%s\n' "$out" >&2
grep -q '^dump: status=0 outcome=ok pages=here ' <<<"$out" || t_fail "a tree with a file lock sent its pages away: $out"
grep -q '^page-server: not used$' <<<"$out" || t_fail "the page server was not let go: $out"
[ "$(page_files "$src3")" -ge 2 ] || t_fail "the ended tree's images hold no pages"
t_assert_eq "$(page_files "$FX_ROOT/ckpt/dst3")" 0 "page files at the unused page server"
t_wait_until 10 "the ended tree to go" gone "$bpid" || t_fail "the tree that could not be held was not ended"
out=$(nm restore -i "$src3" 2>&1) || t_fail "restore of the ended tree from its own images failed: $out"
bpid=$(sed -n "s/.* as pid \([0-9]*\).*/\1/p" <<<"$out" | head -n1)
fx_track_pid "$bpid"
report=$(breadth_check "$bpid" "$bdir" 2) || t_fail "no report from the restored locks workload"
bad=$(breadth_all_ok "$report" flock) || t_fail "after the restore: $bad"

t_log "ok: pages went to the page server, the joined checkpoint restored (counter $c1 -> $(count)); a dump without its server failed in place"
