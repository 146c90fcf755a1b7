/* SPDX-License-Identifier: Apache-2.0 */
#include "handoff-trust.h"

#include <string.h>

#include "macro.h"

static const char *const sender_names[_HANDOFF_SENDER_MAX] = {
        [HANDOFF_FROM_SESSION] = "its session",
        [HANDOFF_FROM_LANE] = "a lane of its session",
        [HANDOFF_FROM_PEER] = "another session of its peer",
        [HANDOFF_FROM_STRANGER] = "another peer",
};

static const char *const msg_names[_HANDOFF_MSG_MAX] = {
        [HANDOFF_MSG_IMAGES] = "images", [HANDOFF_MSG_RESTORE] = "RESTORE", [HANDOFF_MSG_PAGES] = "pages",
        [HANDOFF_MSG_COMMIT] = "COMMIT", [HANDOFF_MSG_ABORT] = "ABORT",     [HANDOFF_MSG_QUERY] = "QUERY",
};

const char *handoff_sender_to_string(handoff_sender s) {
        return s >= 0 && s < _HANDOFF_SENDER_MAX ? sender_names[s] : NULL;
}

const char *handoff_msg_to_string(handoff_msg m) {
        return m >= 0 && m < _HANDOFF_MSG_MAX ? msg_names[m] : NULL;
}

/* Destination: what the source sends in order comes on the session it
 * offered on, and ABORT too (a source aborts on its own link, and after a
 * lost link it never aborts: it is committed, or it rolled back and the
 * lost session discarded our side already). COMMIT may come on a new
 * session of the same peer: a committed source reconnects and repeats it.
 * A lane carries its share of the pages, nothing else. Nobody asks a
 * destination QUERY. */
static bool dst_admits(handoff_msg msg, handoff_sender from) {
        switch (msg) {
        case HANDOFF_MSG_PAGES: return from == HANDOFF_FROM_SESSION || from == HANDOFF_FROM_LANE;
        case HANDOFF_MSG_IMAGES:
        case HANDOFF_MSG_RESTORE:
        case HANDOFF_MSG_ABORT: return from == HANDOFF_FROM_SESSION;
        case HANDOFF_MSG_COMMIT: return from == HANDOFF_FROM_SESSION || from == HANDOFF_FROM_PEER;
        case HANDOFF_MSG_QUERY:
        case _HANDOFF_MSG_MAX:
        case _HANDOFF_MSG_INVALID: break;
        }
        return false;
}

/* Source: only its target asks how it ended (on a session of its own); an
 * answer to anyone else could only mislead or, before COMMITTED, end our
 * move. Everything else the target says comes on our own link. A source
 * has no lanes: they are sessions into the destination. */
static bool src_admits(handoff_msg msg, handoff_sender from) {
        return msg == HANDOFF_MSG_QUERY && (from == HANDOFF_FROM_SESSION || from == HANDOFF_FROM_PEER);
}

bool handoff_admits(mig_role role, handoff_msg msg, handoff_sender from) {
        if (from < 0 || from >= _HANDOFF_SENDER_MAX || msg < 0 || msg >= _HANDOFF_MSG_MAX)
                return false;
        switch (role) {
        case MIG_ROLE_SOURCE: return src_admits(msg, from);
        case MIG_ROLE_DEST: return dst_admits(msg, from);
        case _MIG_ROLE_MAX:
        case _MIG_ROLE_INVALID: break;
        }
        return false;
}

bool handoff_staging_admits(uint64_t limit, uint64_t others, uint64_t mine, uint64_t more) {
        if (!limit)
                return true;
        /* Each step on its own: a peer chooses sizes up to 2^63. */
        if (others > limit || mine > limit - others)
                return false;
        return more <= limit - others - mine;
}

handoff_sender handoff_sender_of(const char *mig_peer, const char *msg_peer, handoff_session session) {
        if (!mig_peer || !msg_peer || strcmp(mig_peer, msg_peer) != 0)
                return HANDOFF_FROM_STRANGER;
        switch (session) {
        case HANDOFF_SESSION_OWN: return HANDOFF_FROM_SESSION;
        case HANDOFF_SESSION_LANE: return HANDOFF_FROM_LANE;
        case HANDOFF_SESSION_OTHER:
        case _HANDOFF_SESSION_MAX:
        case _HANDOFF_SESSION_INVALID: break;
        }
        return HANDOFF_FROM_PEER;
}
