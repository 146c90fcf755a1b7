/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One migration's lanes on its destination (DESIGN.md "Striping the image
 * stream"; proto/PROTOCOL.md feature "lanes"), as pure rules: which
 * further session of the source may join the stream, and on which lane
 * the stream's next frame must come.
 *
 * The session the OFFER came on is lane 0. The target grants lanes with a
 * secret in ACCEPT; each further session asks to join with LANE_JOIN; the
 * source names the lanes it deals over in LANES before the first dealt
 * frame, and frame n then comes on lane n mod that count. The adapter
 * holds the reading of every lane but the one handoff_lanes_due() names,
 * so that a frame is only ever read in its turn: a peer that sends one on
 * the wrong lane waits, and one read out of turn anyway fails the
 * stream. No verdict but HANDOFF_LANE_OK changes the state. */

#include <errno.h>
#include <stdint.h>

#define HANDOFF_LANES_MAX 4u        /* PROTO_LANES_MAX */
#define HANDOFF_LANE_SECRET_LEN 32u /* PROTO_LANE_SECRET_LEN */

typedef enum handoff_lanes_phase {
        HANDOFF_LANES_NONE,    /* none granted: the stream is lane 0's alone */
        HANDOFF_LANES_JOINING, /* granted: further sessions may join */
        HANDOFF_LANES_DEALT,   /* LANES came: frames in turn, nobody joins */
        _HANDOFF_LANES_PHASE_MAX,
        _HANDOFF_LANES_PHASE_INVALID = -EINVAL,
} handoff_lanes_phase;

typedef enum handoff_lane_verdict {
        HANDOFF_LANE_OK,
        HANDOFF_LANE_STRANGER,    /* the session's key is another peer's than the OFFER session's */
        HANDOFF_LANE_CLOSED,      /* the migration takes no joins: none granted, or dealt already */
        HANDOFF_LANE_RANGE,       /* the lane is not below the grant */
        HANDOFF_LANE_TAKEN,       /* the lane joined already */
        HANDOFF_LANE_SECRET,      /* the secret is not the grant's */
        HANDOFF_LANE_UNJOINED,    /* LANES names a lane that did not join, or comes twice */
        HANDOFF_LANE_OUT_OF_TURN, /* a frame on a lane whose turn it is not */
        HANDOFF_LANE_LOST,        /* a lane dealt to ended: the stream cannot be whole */
        _HANDOFF_LANE_VERDICT_MAX,
        _HANDOFF_LANE_VERDICT_INVALID = -EINVAL,
} handoff_lane_verdict;

typedef struct handoff_lanes {
        handoff_lanes_phase phase;
        uint32_t granted; /* JOINING, DEALT: lanes granted, lane 0 included */
        uint32_t joined;  /* bit i: lane i joined; lane 0 always */
        uint32_t dealt;   /* DEALT: frames come over lanes 0..dealt-1 */
        uint64_t next;    /* DEALT: the number of the frame due next */
        uint8_t secret[HANDOFF_LANE_SECRET_LEN];
} handoff_lanes;

/* [ssh] lanes = auto: the sessions a move of about `bytes` deals its pages
 * over from a node of `cores` cores. Each lane beyond the first needs a
 * core of its own beside the agent's loop and CRIU's (on two cores a
 * second session made the dump slower: DESIGN.md), and a set large enough
 * to pay for another SSH handshake (0.1-0.4 s): below
 * HANDOFF_LANES_AUTO_MIN_BYTES, one. */
#define HANDOFF_LANES_AUTO_MIN_BYTES (UINT64_C(256) << 20)
uint32_t handoff_lanes_auto(uint64_t bytes, unsigned cores);

/* "ok", "another peer's session", ...: the reason an ERROR carries. */
const char *handoff_lane_verdict_to_string(handoff_lane_verdict v);

/* No lanes: the stream is lane 0's, every frame due there. */
void handoff_lanes_init(handoff_lanes *l);

/* ACCEPT grants n lanes (2..HANDOFF_LANES_MAX, lane 0 included) under a
 * fresh random secret; any other n grants none. */
void handoff_lanes_grant(handoff_lanes *l, uint32_t n, const uint8_t secret[HANDOFF_LANE_SECRET_LEN]);

/* LANE_JOIN on a session whose relay names session_peer, for a migration
 * whose OFFER came from mig_peer. The secret is compared in constant time,
 * after every other rule. */
handoff_lane_verdict handoff_lanes_join(handoff_lanes *l, const char *mig_peer, const char *session_peer,
                                        uint32_t lane, const uint8_t secret[HANDOFF_LANE_SECRET_LEN]);

/* LANES on lane 0: frames are dealt over lanes 0..n-1 from here, n >= 1,
 * every one of them joined. Without a grant only n = 1 is admitted (it
 * changes nothing). */
handoff_lane_verdict handoff_lanes_deal(handoff_lanes *l, uint32_t n);

/* The lane the next frame is due on (0 until LANES). */
uint32_t handoff_lanes_due(const handoff_lanes *l);

/* Lane's session ended. Before LANES it is simply no longer joined (and
 * LANES may not name it); once dealt to, the stream is lost
 * (HANDOFF_LANE_LOST). A lane left out of LANES, or lane 0, changes
 * nothing here: lane 0's end is its session's, handled as today. */
handoff_lane_verdict handoff_lanes_leave(handoff_lanes *l, uint32_t lane);

/* A frame of the stream came on lane: admitted only in its turn, which
 * then passes to the next lane. */
handoff_lane_verdict handoff_lanes_took(handoff_lanes *l, uint32_t lane);
