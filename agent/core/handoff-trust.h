/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Who may say what about a migration (DESIGN.md "Peer trust"), as a pure
 * function: the adapters ask before an event reaches a role's core, and a
 * message from anyone the rules do not admit is answered with ERROR and
 * logged, and changes nothing.
 *
 * A peer is who its SSH key says it is (dial-stdio's RELAY), never what
 * its HELLO says. A destination's migration belongs to the session its
 * OFFER came on; a source's to its target. */

#include <stdbool.h>
#include <stdint.h>

#include "handoff.h"

/* Who sent a message about a migration, as the migration sees it. */
typedef enum handoff_sender {
        HANDOFF_FROM_SESSION,  /* destination: the session the OFFER came on */
        HANDOFF_FROM_LANE,     /* destination: a session of its source joined as a lane (handoff-lanes.h) */
        HANDOFF_FROM_PEER,     /* another session of the migration's peer (its source, or its target) */
        HANDOFF_FROM_STRANGER, /* any other peer */
        _HANDOFF_SENDER_MAX,
        _HANDOFF_SENDER_INVALID = -EINVAL,
} handoff_sender;

const char *handoff_sender_to_string(handoff_sender s);

/* What a message about a migration asks for. */
typedef enum handoff_msg {
        HANDOFF_MSG_IMAGES,  /* FILE, DATA, ZDATA, FILE_END, FILE_MAC, IMAGES_DONE */
        HANDOFF_MSG_RESTORE, /* RESTORE */
        HANDOFF_MSG_PAGES,   /* PS_DATA, PS_PAGES, PS_END */
        HANDOFF_MSG_COMMIT,  /* COMMIT */
        HANDOFF_MSG_ABORT,   /* ABORT */
        HANDOFF_MSG_QUERY,   /* QUERY */
        _HANDOFF_MSG_MAX,
        _HANDOFF_MSG_INVALID = -EINVAL,
} handoff_msg;

const char *handoff_msg_to_string(handoff_msg m);

/* Whether a message of this kind from this sender may reach the
 * migration's core (role: the migration's on this node). */
bool handoff_admits(mig_role role, handoff_msg msg, handoff_sender from);

/* Staging is shared by every migration in flight here: whether one that
 * holds mine bytes may take more, while the others hold others, under
 * limit ([limits] staging_max; 0: none). Counted as files are announced
 * (a file's DATA may not exceed its size), not as offered. */
bool handoff_staging_admits(uint64_t limit, uint64_t others, uint64_t mine, uint64_t more);

/* Which of the migration's sessions a message came on. */
typedef enum handoff_session {
        HANDOFF_SESSION_OTHER, /* none of them */
        HANDOFF_SESSION_OWN,   /* the migration's own: the one the OFFER came on, or the source's link */
        HANDOFF_SESSION_LANE,  /* one joined to it as a lane */
        _HANDOFF_SESSION_MAX,
        _HANDOFF_SESSION_INVALID = -EINVAL,
} handoff_session;

/* The sender of a message, from the names of the migration's peer and the
 * message's peer, and which of the migration's sessions it came on. */
handoff_sender handoff_sender_of(const char *mig_peer, const char *msg_peer, handoff_session session);
