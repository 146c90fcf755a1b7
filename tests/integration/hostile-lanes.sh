#!/usr/bin/env bash
# Lanes against a hostile peer (feature "lanes"). node1's session, played by
# nm-peer-client through its real key and sshd, offers a move whose pages
# would stream over three lanes; node2 grants them with a secret. Then:
# a wrong secret, another node's key with the right secret, a lane never
# granted, the same lane twice, and LANES naming a lane that never joined:
# each refused and logged, the refused sessions closed, and the bad LANES
# ends that move on node2 with nothing left. A second move over two lanes:
# lane 1 sends first (a message that is no page, then frame 1) and is not
# read until frame 0 came on lane 0; then the other message is refused
# (a lane carries pages only) and frame 1 taken; lane 1 ends while it is
# dealt to, and the move ends with nothing left on node2. A third move:
# its lane 1 joins and leaves before LANES; the move goes
# on: LANES may still name it, and its turn then finds its end (node2 does
# not read a lane before LANES, so it need not notice before), which ends
# the move. A fourth: LANES leaves a joined lane out, node2 ends that
# lane's session, and the pages go on over lane 0 alone. A fifth: the
# lane whose turn it is goes silent, and the move ends at the idle timeout.
set -euo pipefail
. "$(dirname "$0")/../tools/peer.sh"

FX_NODES="n1 n2 n3"
fx_agents_up
pid2=$(fx_agent_pid n2)
log2=$(fx_agent_log n2)
key=$(fx_hmac_key n1)

# as NODE NAME SCRIPT-LINE...: the script from NODE's key to node2.
as() { pc_lines "$1" n2 "${@:2}"; }
logged() { pc_logged n2 "$1"; }

# source_offers NAME MIG LANES: node1's session (nm-peer-client, its
# script on fd 7) offers MIG with its pages streamed over LANES lanes; sets
# SECRET to what node2's ACCEPT granted.
source_offers() {
	local name=$1 mig=$2 lanes=$3 fifo=$FX_ROOT/$1.fifo
	mkfifo "$fifo"
	pc_ssh n1 n2 --hmac-key "$key" <"$fifo" >"$FX_ROOT/pc-$name.out" 2>&1 &
	SRC_PID=$!
	exec 7>"$fifo"
	printf '%s\n' "hello features=binding,ps-stream,lanes" "expect HELLO" "offer $mig ps_stream=1 lanes=$lanes" \
		"expect ACCEPT" >&7
	t_wait_until 30 "node2 accepts $mig" grep -q "^< ACCEPT" "$FX_ROOT/pc-$name.out" ||
		t_fail "node2 did not accept $mig: $(cat "$FX_ROOT/pc-$name.out")"
	SECRET=$(sed -n 's/^< ACCEPT lanes=[0-9]* secret=\([0-9a-f]*\).*/\1/p' "$FX_ROOT/pc-$name.out")
	[ ${#SECRET} -eq 64 ] || t_fail "node2's ACCEPT of $mig granted no lanes: $(cat "$FX_ROOT/pc-$name.out")"
}

# lane_joins NAME MIG LANE: a further session of node1's (its script on
# fd 8) joins MIG as LANE.
lane_joins() {
	local name=$1 fifo=$FX_ROOT/$1.fifo
	mkfifo "$fifo"
	pc_ssh n1 n2 --hmac-key "$key" <"$fifo" >"$FX_ROOT/pc-$name.out" 2>&1 &
	LANE_PID=$!
	exec 8>"$fifo"
	printf '%s\n' "hello features=binding,ps-stream,lanes" "expect HELLO" "$(join "$2" "$3" "$SECRET")" \
		"expect LANE_JOINED" >&8
	t_wait_until 30 "lane $3 of $2 joins" grep -q "^< LANE_JOINED lane=$3" "$FX_ROOT/pc-$name.out" ||
		t_fail "lane $3 did not join: $(cat "$FX_ROOT/pc-$name.out")"
}

join() { echo "map t=u:41 mig=s:$1 lane=u:$2 secret=b:$3"; }
said() { t_wait_until 30 "$1 says $2" grep -q "$2" "$FX_ROOT/pc-$1.out" || t_fail "$1 never heard: $2 ($(cat "$FX_ROOT/pc-$1.out"))"; }
HELLO="hello features=binding,ps-stream,lanes"

t_log "move lanes1, three lanes granted: who may join"
source_offers src1 lanes1 3
bad=${SECRET:0:62}$(printf '%02x' $(((0x${SECRET:62:2} + 1) % 256)))
as n1 wrong-secret "$HELLO" "expect HELLO" "$(join lanes1 1 "$bad")" \
	"expect-closed LANE_JOIN for migration lanes1, lane 1, refused: wrong secret"
as n3 other-key "$HELLO" "expect HELLO" "$(join lanes1 1 "$SECRET")" \
	"expect-closed refused: the session is another peer's than the migration's"
as n1 never-granted "$HELLO" "expect HELLO" "$(join lanes1 3 "$SECRET")" \
	"expect-closed refused: no such lane was granted"
logged "LANE_JOIN for migration lanes1, lane 1, refused: wrong secret"
logged "session [0-9]* from node3: LANE_JOIN for migration lanes1, lane 1, refused: the session is another peer's"
lane_joins lane1 lanes1 1
as n1 joined-twice "$HELLO" "expect HELLO" "$(join lanes1 1 "$SECRET")" "expect-closed refused: that lane joined already"
# Lane 2 never joined: LANES may not name it.
printf '%s\n' "lanes lanes1 3" "expect ERROR LANES 3: the lanes named did not all join" >&7
said src1 "^< ERROR .*LANES 3: the lanes named did not all join"
exec 8>&-
exec 7>&-
wait "$SRC_PID" "$LANE_PID" || true # their scripts held: what they heard was checked above
pc_clean n2 "$pid2"

t_log "move lanes2 over two lanes: frames in turn, whichever lane sends first"
source_offers src2 lanes2 2
lane_joins lane2 lanes2 1
printf '%s\n' "lanes lanes2 2" >&7
t_wait_until 30 "node2 takes LANES 2" grep -q "the pages come over 2 lanes" "$log2" || t_fail "node2 did not take LANES 2"
# Lane 1 sends first: a message that is no page, then frame 1. Frame 0 is
# due on lane 0, so lane 1 is not read at all meanwhile.
printf '%s\n' node-info-req "ps-pages lanes2 1 02" "expect ERROR a lane carries pages only" >&8
printf '%s\n' node-info-req "expect NODE_INFO" >&7
said src2 "^< NODE_INFO"
! grep -q "^< ERROR" "$FX_ROOT/pc-lane2.out" || t_fail "node2 read lane 1 out of its turn: $(cat "$FX_ROOT/pc-lane2.out")"
fx_nm n2 status --json | grep -q '"active":true' || t_fail "the move ended on a frame out of its turn: $(tail -n 20 "$log2")"
# Frame 0 on lane 0: lane 1's turn, where the other message is refused
# (the turn stays) and frame 1 taken.
printf '%s\n' "ps-pages lanes2 0 01" >&7
said lane2 "^< ERROR .*a lane carries pages only"
t_log "lane 1 ends while it is dealt to: the move ends"
# Frame 2 on lane 0 is taken only if frame 1 was; then lane 1's turn
# finds its end.
exec 8>&-
printf '%s\n' "ps-pages lanes2 2 03" >&7
t_wait_until 30 "node2 ends lanes2" grep -q "the pages streamed during the dump: " "$log2" ||
	t_fail "node2 did not end the move whose lane ended: $(tail -n 20 "$log2")"
! grep -q "refusing the page stream\|failed its check" "$log2" || t_fail "node2 ended the move for another reason: $(tail -n 20 "$log2")"
exec 7>&-
wait "$SRC_PID" "$LANE_PID" || true # their scripts held: what they heard was checked above
pc_clean n2 "$pid2"

# lane_leaves: the lane's client ends its script and goes, before LANES.
# node2 holds a lane unread until LANES, so it need not notice yet.
lane_leaves() {
	exec 8>&-
	wait "$LANE_PID" || true # its script held: what it heard was checked above
}

t_log "move lanes3: a lane that joined leaves before LANES, which still names it"
source_offers src3 lanes3 2
lane_joins lane3 lanes3 1
lane_leaves
printf '%s\n' "lanes lanes3 2" "ps-pages lanes3 0 01" >&7
t_wait_until 30 "node2 ends lanes3" grep -q "\[lanes3\].*the pages streamed during the dump: a lane the pages were dealt over ended" "$log2" ||
	t_fail "node2 did not end the move at the turn of its lane that had left: $(tail -n 20 "$log2")"
grep -q "\[lanes3\].*the pages come over 2 lanes" "$log2" || t_fail "node2 did not take LANES 2: $(tail -n 20 "$log2")"
exec 7>&-
wait "$SRC_PID" || true # its script held: what it heard was checked above
pc_clean n2 "$pid2"

t_log "move lanes4: LANES leaves a joined lane out: node2 ends it, and the pages go on over lane 0 alone"
source_offers src4 lanes4 2
lane_joins lane4 lanes4 1
printf '%s\n' "lanes lanes4 1" "ps-pages lanes4 0 01" "ps-pages lanes4 1 02" "node-info-req" "expect NODE_INFO" >&7
printf '%s\n' "expect-closed" >&8
said lane4 "^< closed after"
said src4 "^< NODE_INFO"
grep -q "\[lanes4\].*the pages come over 1 lane$" "$log2" || t_fail "node2 did not take LANES 1: $(tail -n 20 "$log2")"
! grep -q "^< ERROR" "$FX_ROOT/pc-src4.out" || t_fail "node2 refused lane 0's frames: $(cat "$FX_ROOT/pc-src4.out")"
fx_nm n2 status --json | grep -q '"active":true' || t_fail "the move ended with a lane left out: $(tail -n 20 "$log2")"
exec 8>&-
exec 7>&-
wait "$SRC_PID" "$LANE_PID" || true # their scripts held: what they heard was checked above
pc_clean n2 "$pid2"

t_log "move lanes5: the lane whose turn it is goes silent: the move ends at its idle timeout"
source_offers src5 lanes5 2
lane_joins lane5 lanes5 1
printf '%s\n' "lanes lanes5 2" "ps-pages lanes5 0 01" >&7
# Whichever of node2's bounds fires first (the stream's silence, the
# lane's idle timeout), the move ends there, not later, with nothing left.
t_wait_until $((FX_IDLE_TIMEOUT + 30)) "node2 ends lanes5" grep -q "\[lanes5\].*destination finished: aborted: .*\(silent\|idle\)" "$log2" ||
	t_fail "node2 did not end the move whose lane went silent: $(tail -n 20 "$log2")"
exec 8>&-
exec 7>&-
wait "$SRC_PID" "$LANE_PID" || true # their scripts held: what they heard was checked above
pc_clean n2 "$pid2"
