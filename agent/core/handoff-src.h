/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The source's side of the handoff as a pure function (see handoff.h):
 * src_step(state, event) -> (new state, actions). agent/daemon/mig-src.c
 * turns I/O into events and carries the actions out. DESIGN.md has the
 * rules as a table; tests/unit/test-handoff-src.c checks every one.
 *
 *   PRECHECK   connect to the target, OFFER; nothing touched yet
 *   DUMPING    journaled, then CRIU dumps
 *   DUMPED     the images are complete here; the tasks are gone, or held
 *              stopped (a native container), or (post-copy) frozen,
 *              serving pages
 *   STREAMING  images on the wire, hashed as they pass; then VERIFIED
 *   RESTORING  RESTORE sent; the target restores with tasks stopped
 *   COMMITTED  journaled on RESTORED: from here on there is no way back
 *   DONE       RUNNING heard; images and our state file removed
 *
 * Any failure before COMMITTED rolls back (ROLLING_BACK -> ROLLED_BACK, or
 * LOST when the images cannot be restored): the held tasks resume in place,
 * or, when they are gone, our images are restored here. COMMITTED ends the
 * held tasks; after it we only go forward, reconnecting until the target
 * confirms RUNNING. */

#include <stddef.h>

#include "handoff.h"

typedef enum src_phase {
        SRC_PRECHECK,     /* resolving, connecting, offering: nothing changed yet */
        SRC_DUMPING,      /* journaled before CRIU starts */
        SRC_DUMPED,       /* images on disk; the source copy is gone */
        SRC_STREAMING,    /* images on their way; waiting for VERIFIED at the end */
        SRC_RESTORING,    /* RESTORE sent, waiting for RESTORED */
        SRC_COMMITTED,    /* journaled: from here on only forward */
        SRC_DONE,         /* RUNNING received, source images and state removed */
        SRC_ROLLING_BACK, /* restoring the source copy from its own images */
        SRC_ROLLED_BACK,  /* the container runs here again */
        SRC_FAILED,       /* failed before anything changed (container untouched) */
        SRC_REFUSED,      /* the target (or this node) said no before anything changed */
        SRC_LOST,         /* no copy could be brought back: needs an operator */
        _SRC_PHASE_MAX,
        _SRC_PHASE_INVALID = -EINVAL,
} src_phase;

/* The names are the journal's and `status`'s: they never change. */
const char *src_phase_to_string(src_phase p);
src_phase src_phase_from_string(const char *s);
bool src_phase_is_final(src_phase p);
/* The exit code nucleus-migrate reports for a phase (exit-codes.h). */
int src_phase_exit_code(src_phase p);

/* Post-copy (--lazy): CRIU's lazy dump keeps the memory in the frozen tasks
 * and serves it, relayed over the peer session, until the target has every
 * page; the dump call returns only then. */
typedef enum src_postcopy {
        SRC_PC_OFF,           /* not a post-copy move */
        SRC_PC_PENDING,       /* post-copy asked for; the images are not complete yet */
        SRC_PC_SERVING,       /* images complete ("post-dump"); pages served from the frozen tasks */
        SRC_PC_RESUMING,      /* rollback: the page server was made to fail; CRIU resumes the tasks */
        SRC_PC_CUT,           /* the link went after COMMITTED and the relay with it: CRIU ends the tasks */
        SRC_PC_TARGET_LOST,   /* the target lost its copy: lost once CRIU returns */
        SRC_PC_RUNNING_HEARD, /* RUNNING arrived (every page is there); CRIU's return ends the move */
        SRC_PC_RETURNED,      /* CRIU's lazy dump returned: no task of ours is left frozen */
        _SRC_PC_MAX,
        _SRC_PC_INVALID = -EINVAL,
} src_postcopy;

const char *src_postcopy_to_string(src_postcopy p);

/* The session to the target. */
typedef enum src_link {
        SRC_LINK_NONE,    /* none (lost, closed, or never opened) */
        SRC_LINK_OPENING, /* SSH and HELLO under way */
        SRC_LINK_READY,   /* messages can be sent */
        _SRC_LINK_MAX,
        _SRC_LINK_INVALID = -EINVAL,
} src_link;

const char *src_link_to_string(src_link l);

/* The image stream, during STREAMING. */
typedef enum src_stream {
        SRC_STREAM_NONE,    /* not started */
        SRC_STREAM_SENDING, /* files on the wire */
        SRC_STREAM_SENT,    /* IMAGES_DONE sent: VERIFIED may come */
        _SRC_STREAM_MAX,
        _SRC_STREAM_INVALID = -EINVAL,
} src_stream;

const char *src_stream_to_string(src_stream s);

/* The tasks a good dump left stopped here (leave-stopped): until the
 * commit, a rollback only resumes them. */
typedef enum src_hold {
        SRC_HOLD_NONE,    /* none held: not dumped yet, post-copy, or resumed */
        SRC_HOLD_STOPPED, /* held stopped: a rollback resumes them in place */
        SRC_HOLD_ENDED,   /* ended at COMMITTED (after its journal write) */
        _SRC_HOLD_MAX,
        _SRC_HOLD_INVALID = -EINVAL,
} src_hold;

const char *src_hold_to_string(src_hold h);

/* What a restarted agent finds of the tree it was moving. */
typedef enum src_tree {
        SRC_TREE_GONE,    /* no task of it (its root's start ticks do not match) */
        SRC_TREE_RUNNING, /* there and running */
        SRC_TREE_STOPPED, /* there and stopped: held by our dump */
        _SRC_TREE_MAX,
        _SRC_TREE_INVALID = -EINVAL,
} src_tree;

const char *src_tree_to_string(src_tree t);

typedef struct src_state {
        src_phase phase;
        src_postcopy postcopy;
        src_hold hold;
        src_link link;
        src_stream stream;
        unsigned rollback_failures; /* ROLLING_BACK: restore attempts that failed */
        unsigned forward_tries;     /* COMMITTED: connections tried since the link went */
} src_state;

/* The state of a new migration: PRECHECK, post-copy if lazy. */
src_state src_state_new(bool lazy);
/* The state a restarted agent finds in a journal record. */
src_state src_state_from_journal(src_phase phase);

typedef enum src_event_kind {
        SRC_EV_START,               /* a new migration: journal it, connect */
        SRC_EV_RECOVER,             /* the agent restarted with this journaled phase */
        SRC_EV_LINK_READY,          /* the session to the target said HELLO */
        SRC_EV_LINK_LOST,           /* the session ended, or could not be opened */
        SRC_EV_OFFER_FAILED,        /* the container could not be described (nothing changed) */
        SRC_EV_OFFER_REFUSED,       /* this move cannot be offered (post-copy unsupported) */
        SRC_EV_ACCEPT,              /* the target takes it: dump */
        SRC_EV_REJECT,              /* the target refuses it */
        SRC_EV_IMAGES_READY,        /* lazy dump's "post-dump": images complete, pages still here */
        SRC_EV_DUMP_OK,             /* CRIU's dump returned (lazy: every page was served) */
        SRC_EV_DUMP_FAILED_RUNNING, /* CRIU's dump failed and the tasks still run */
        SRC_EV_DUMP_FAILED_GONE,    /* CRIU's dump failed and the tasks are gone, no complete images */
        SRC_EV_DUMP_FAILED_IMAGES,  /* CRIU failed after its images were complete (post-dump), the
                                     * tasks are gone; the images were verified and signed */
        SRC_EV_STREAM_SENT,         /* every image sent, IMAGES_DONE too */
        SRC_EV_STREAM_FAILED,       /* the image stream failed */
        SRC_EV_VERIFIED,            /* the target checked every byte */
        SRC_EV_RESTORED,            /* the target holds a stopped copy */
        SRC_EV_RUNNING,             /* the target's copy runs (post-copy: with every page) */
        SRC_EV_PEER_ABORT,          /* the target aborted */
        SRC_EV_PEER_ERROR,          /* the target reported an error (code; -ESRCH: it holds no copy) */
        SRC_EV_PEER_UNEXPECTED,     /* the target sent a message that has no place here */
        SRC_EV_JOURNAL_FAILED,      /* the last journal write failed: the phase is not on disk */
        SRC_EV_ROLLBACK_OK,         /* our images were restored here */
        SRC_EV_ROLLBACK_FAILED,     /* restoring them failed */
        SRC_EV_RESUMED,             /* the held tasks run again in place */
        SRC_EV_RESUME_FAILED,       /* they could not be resumed (gone, or a step failed) */
        SRC_EV_TIMER,               /* a retry is due */
        SRC_EV_QUERY,               /* a destination asks how this migration ended */
        _SRC_EVENT_MAX,
        _SRC_EVENT_INVALID = -EINVAL,
} src_event_kind;

const char *src_event_to_string(src_event_kind e);

typedef struct src_event {
        src_event_kind kind;
        int code;      /* PEER_ERROR: the target's -errno */
        src_tree tree; /* RECOVER: what is left of the tree here */
        bool held;     /* DUMP_OK: the dump left the tasks stopped (leave-stopped) */
        bool settled;  /* QUERY: no step of this migration is being carried out */
} src_event;

/* Why a migration failed, when the core decides it (the agent words it). */
typedef enum src_why {
        SRC_WHY_EVENT,                 /* the event's own error */
        SRC_WHY_TARGET_GONE_IN_DUMP,   /* the target went away while CRIU dumped */
        SRC_WHY_LAZY_ENDED_EARLY,      /* the lazy dump ended after the relay was cut, before COMMITTED */
        SRC_WHY_POSTCOPY_AFTER_COMMIT, /* the lazy dump failed after COMMITTED */
        SRC_WHY_POSTCOPY_SERVED,       /* a rollback was needed after every page had left */
        SRC_WHY_POSTCOPY_UNDOABLE,     /* the target lost its copy during post-copy */
        SRC_WHY_ROLLBACK_EXHAUSTED,    /* the rollback failed every attempt */
        SRC_WHY_STOPPED_BEFORE_DUMP,   /* the agent stopped before its dump completed */
        SRC_WHY_STOPPED_DURING_MOVE,   /* the agent stopped during the move */
        SRC_WHY_ANSWERED_ABORTED,      /* we told an asking destination "aborted" */
        _SRC_WHY_MAX,
        _SRC_WHY_INVALID = -EINVAL,
} src_why;

const char *src_why_to_string(src_why w);

typedef enum src_action_kind {
        SRC_DO_NOTE_FAILURE,    /* why: record the first failure (for the journal and the result) */
        SRC_DO_JOURNAL,         /* phase: write the record; the rest of the list waits for it */
        SRC_DO_OPEN_LINK,       /* connect to the target (LINK_READY or LINK_LOST follows) */
        SRC_DO_CLOSE_LINK,      /* end the session (no LINK_LOST follows) */
        SRC_DO_SEND_OFFER,      /* describe the container; OFFER (or OFFER_FAILED/REFUSED) */
        SRC_DO_SEND_ABORT,      /* ABORT to the target */
        SRC_DO_SEND_RESTORE,    /* RESTORE */
        SRC_DO_SEND_COMMIT,     /* COMMIT */
        SRC_DO_START_DUMP,      /* CRIU dump, queued behind other CRIU work (DUMP_* follows) */
        SRC_DO_CANCEL_DUMP,     /* a dump still queued never starts (DUMP_FAILED_RUNNING follows) */
        SRC_DO_START_STREAM,    /* stream the images (STREAM_SENT or STREAM_FAILED follows) */
        SRC_DO_START_ROLLBACK,  /* attempt: CRIU restores our images here (ROLLBACK_* follows) */
        SRC_DO_ROLLBACK_LATER,  /* delay_ms: TIMER then */
        SRC_DO_RECONNECT_LATER, /* delay_ms: TIMER then */
        SRC_DO_REPORT_IN_DOUBT, /* tell the operator: committed, not confirmed (exit 5); we go on */
        SRC_DO_RESUME_IN_PLACE, /* post-copy rollback: make the page server fail, CRIU resumes the tasks */
        SRC_DO_DROP_RELAY,      /* post-copy: end the page relay (CRIU ends the tasks) */
        SRC_DO_UNLOCK_NETWORK,  /* post-copy: remove CRIU's network lock of the resumed tasks */
        SRC_DO_KILL_COPY,       /* end the tasks CRIU resumed here (never two copies) */
        SRC_DO_RESUME_HELD,     /* resume the held tasks in place (RESUMED or RESUME_FAILED follows) */
        SRC_DO_END_HELD,        /* end the held tasks (the commit, or a resume that failed) */
        SRC_DO_WRITE_STATE,     /* our state file names the restored pid */
        SRC_DO_REMOVE_STATE,    /* the container is no longer ours: remove its state file */
        SRC_DO_REMOVE_IMAGES,   /* our images are no longer needed */
        SRC_DO_ANSWER,          /* outcome: the answer to QUERY */
        SRC_DO_FINISH,          /* archive the record, report the result; nothing follows */
        _SRC_ACTION_MAX,
        _SRC_ACTION_INVALID = -EINVAL,
} src_action_kind;

const char *src_action_to_string(src_action_kind a);

typedef struct src_action {
        src_action_kind kind;
        union {
                src_phase phase;         /* JOURNAL */
                src_why why;             /* NOTE_FAILURE */
                unsigned attempt;        /* START_ROLLBACK: 0, 1, ... */
                unsigned delay_ms;       /* ROLLBACK_LATER, RECONNECT_LATER */
                handoff_outcome outcome; /* ANSWER */
        };
} src_action;

#define SRC_ACTIONS_MAX 12

typedef struct src_actions {
        src_action v[SRC_ACTIONS_MAX];
        size_t n;
} src_actions;

/* Rollback: this many restore attempts, this far apart; then LOST. */
#define SRC_ROLLBACK_ATTEMPTS 3
#define SRC_ROLLBACK_RETRY_MS 1000
/* After COMMITTED, reconnecting: backoff between these. */
#define SRC_FORWARD_RETRY_MIN_MS 500
#define SRC_FORWARD_RETRY_MAX_MS 10000

/* The rules. Writes the new state and the actions; never fails: an event
 * that has no meaning in this state is IGNORED or REFUSED, and leaves the
 * state as it was, with no actions. */
handoff_verdict src_step(const src_state *s, const src_event *ev, src_state *ret_state,
                         src_actions *ret_actions);

/* What a restarted agent does with a journaled phase, given what is left
 * of the tree: a tree that still runs in DUMPING was never frozen or was
 * resumed by CRIU; one that is there (stopped, or resumed already) after a
 * good dump is resumed in place; one that is gone is restored from our
 * images. */
mig_recovery src_recovery_for(src_phase phase, src_tree tree);

/* The answer to QUERY from an archived record's phase. (An active
 * migration answers through src_step, which may also roll it back.) */
handoff_outcome src_outcome_of(src_phase phase);

/* Whether the agent may exit leaving this migration to the journal: it is
 * waiting for the other node for as long as that takes, and no CRIU call of
 * ours holds its tasks. */
bool src_parkable(const src_state *s);
