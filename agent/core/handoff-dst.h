/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The destination's side of the handoff as a pure function (see
 * handoff.h): dst_step(state, event) -> (new state, actions).
 * agent/daemon/mig-dst.c turns I/O into events and carries the actions out.
 * DESIGN.md has the rules as a table; tests/unit/test-handoff-dst.c checks
 * every one.
 *
 *   RECEIVING       OFFER accepted; images arrive into a fresh staging
 *                   directory, hashed as they land
 *   VERIFIED        every byte checked (per-file SHA-256, tree HMAC)
 *   DEST_RESTORING  CRIU restores with every task left stopped
 *   RESTORED        a stopped copy is held here; RESTORED sent
 *   RUNNING         COMMIT heard: the copy resumed, its state file written
 *
 * Before RESTORED, losing the source means discarding everything. With a
 * stopped copy held, we never decide alone: the copy stays stopped
 * (IN_DOUBT) and we ask the source until it says committed (resume) or
 * aborted (kill the copy). */

#include <stddef.h>

#include "handoff.h"

typedef enum dst_phase {
        DST_RECEIVING, /* staging filling up */
        DST_VERIFIED,  /* HMAC checked */
        DST_RESTORING, /* CRIU restoring, tasks to be left stopped ("dest-restoring") */
        DST_RESTORED,  /* a stopped copy is held here */
        DST_IN_DOUBT,  /* holding a stopped copy without a source: asking it */
        DST_RUNNING,   /* resumed here: the move is complete on this side */
        DST_ABORTED,   /* nothing kept here */
        _DST_PHASE_MAX,
        _DST_PHASE_INVALID = -EINVAL,
} dst_phase;

/* The names are the journal's and `status`'s: they never change. */
const char *dst_phase_to_string(dst_phase p);
dst_phase dst_phase_from_string(const char *s);
bool dst_phase_is_final(dst_phase p);

/* Post-copy: the restored copy's memory comes from the `criu lazy-pages`
 * daemon, fed by the source's page server over the peer session. */
typedef enum dst_postcopy {
        DST_PC_OFF,      /* not a post-copy move */
        DST_PC_PENDING,  /* pages still to come; the copy has not resumed */
        DST_PC_RESUMED,  /* resumed while its pages still arrive: RUNNING follows the last one */
        DST_PC_COMPLETE, /* every page is here */
        DST_PC_FAILED,   /* the daemon ended before every page arrived: the copy must never run */
        _DST_PC_MAX,
        _DST_PC_INVALID = -EINVAL,
} dst_postcopy;

const char *dst_postcopy_to_string(dst_postcopy p);

/* The copy of the container this node holds. */
typedef enum dst_copy {
        DST_COPY_NONE,    /* none (not restored yet, killed, or gone) */
        DST_COPY_STOPPED, /* restored, every task stopped */
        DST_COPY_RUNNING, /* resumed */
        _DST_COPY_MAX,
        _DST_COPY_INVALID = -EINVAL,
} dst_copy;

const char *dst_copy_to_string(dst_copy c);

/* The peer session the source offered on. */
typedef enum dst_session {
        DST_SESSION_UP,      /* messages to the source go there */
        DST_SESSION_LOST,    /* it ended */
        DST_SESSION_ABORTED, /* the source said ABORT while CRIU was restoring */
        _DST_SESSION_MAX,
        _DST_SESSION_INVALID = -EINVAL,
} dst_session;

const char *dst_session_to_string(dst_session s);

/* The images' way in. */
typedef enum dst_sink {
        DST_SINK_NONE, /* not open yet */
        DST_SINK_OPEN, /* images arriving */
        DST_SINK_OVER, /* every byte in and checked, or it failed */
        _DST_SINK_MAX,
        _DST_SINK_INVALID = -EINVAL,
} dst_sink;

const char *dst_sink_to_string(dst_sink s);

/* Our own link to the source, to ask it (IN_DOUBT). */
typedef enum dst_ask {
        DST_ASK_NONE,
        DST_ASK_OPENING,
        DST_ASK_READY,
        _DST_ASK_MAX,
        _DST_ASK_INVALID = -EINVAL,
} dst_ask;

const char *dst_ask_to_string(dst_ask a);

typedef struct dst_state {
        dst_phase phase;
        dst_postcopy postcopy;
        dst_copy copy;
        dst_session session;
        dst_sink sink;
        dst_ask ask;
        unsigned ask_tries; /* IN_DOUBT: questions the source left unanswered */
} dst_state;

/* The state in which an accepted OFFER starts. */
dst_state dst_state_new(bool lazy);
/* The state a restarted agent finds in a journal record: its phase, and
 * whether it was resumed while its pages still arrived ("postcopy"). */
dst_state dst_state_from_journal(dst_phase phase, bool postcopy);

typedef enum dst_event_kind {
        DST_EV_OFFER,             /* an OFFER passed every check: take it */
        DST_EV_RECOVER,           /* the agent restarted with this journaled phase */
        DST_EV_SINK_FAILED,       /* the images' way in could not be opened */
        DST_EV_RECEIVED,          /* every byte in, checked, and of the offered container */
        DST_EV_RECEIVE_FAILED,    /* the stream failed (the sink removed the staging) */
        DST_EV_RECEIVED_UNUSABLE, /* checked bytes, but no usable metadata, or another container's */
        DST_EV_RESTORE,           /* RESTORE */
        DST_EV_RESTORE_OK,        /* CRIU restored the copy, every task stopped */
        DST_EV_RESTORE_FAILED,    /* it did not */
        DST_EV_PAGES_COMPLETE,    /* the lazy-pages daemon ended: every page is here */
        DST_EV_PAGES_FAILED,      /* it ended before */
        DST_EV_COMMIT,            /* COMMIT */
        DST_EV_RESUME_FAILED,     /* the stopped copy could not be resumed: it is gone */
        DST_EV_PEER_ABORT,        /* ABORT */
        DST_EV_SESSION_LOST,      /* the source's session ended */
        DST_EV_ASK_READY,         /* our link to the source is up */
        DST_EV_ASK_LOST,          /* it ended, or could not be opened */
        DST_EV_OUTCOME,           /* the source's answer to QUERY (outcome) */
        DST_EV_JOURNAL_FAILED,    /* a journal write failed (phase: the one not written) */
        DST_EV_TIMER,             /* a retry is due */
        DST_EV_RESOLVED,          /* an operator settled it (nucleus-migrate resolve): outcome */
        _DST_EVENT_MAX,
        _DST_EVENT_INVALID = -EINVAL,
} dst_event_kind;

const char *dst_event_to_string(dst_event_kind e);

typedef struct dst_event {
        dst_event_kind kind;
        handoff_outcome outcome; /* OUTCOME, RESOLVED */
        dst_phase phase;         /* JOURNAL_FAILED: the phase that is not on disk */
        bool copy_alive;         /* RECOVER: the journaled copy still exists (start ticks match) */
} dst_event;

/* Why, when the core decides it (the agent words it). */
typedef enum dst_why {
        DST_WHY_EVENT,                   /* failure: the event's own error */
        DST_WHY_STOPPED_IN_POSTCOPY,     /* failure: the agent stopped while the pages still arrived */
        DST_WHY_SOURCE_ABORTED,          /* discard: the source aborted */
        DST_WHY_SOURCE_LEFT,             /* discard: the source left before RESTORE */
        DST_WHY_RESTORE_FAILED,          /* discard: CRIU could not restore */
        DST_WHY_CANNOT_JOURNAL,          /* discard: a phase could not be journaled */
        DST_WHY_UNUSABLE_IMAGES,         /* discard: checked images we cannot use */
        DST_WHY_NO_COPY,                 /* discard: the stopped copy is gone */
        DST_WHY_POSTCOPY_BEFORE_RESUME,  /* discard: post-copy failed before the resume */
        DST_WHY_POSTCOPY_BEFORE_COMMIT,  /* discard: post-copy failed before COMMIT */
        DST_WHY_POSTCOPY_IN_RESTORE,     /* discard: the lazy-pages daemon failed during the restore */
        DST_WHY_ABORTED_IN_RESTORE,      /* discard: the source aborted during the restore */
        DST_WHY_STOPPED_BEFORE_RESTORED, /* discard: the agent stopped before RESTORED */
        DST_WHY_COPY_VANISHED,           /* discard: the journaled stopped copy no longer exists */
        DST_WHY_RESOLVED,                /* discard: `resolve` decided abort */
        _DST_WHY_MAX,
        _DST_WHY_INVALID = -EINVAL,
} dst_why;

const char *dst_why_to_string(dst_why w);

typedef enum dst_action_kind {
        DST_DO_NOTE_FAILURE,   /* why: record the first failure (for the journal and the log) */
        DST_DO_NOTE_DISCARD,   /* why: say why we discard (the failure, unless one is noted) */
        DST_DO_JOURNAL,        /* phase: write the record; the rest of the list waits for it */
        DST_DO_START_SINK,     /* open the images' way in (SINK_FAILED, or RECEIVED* follows) */
        DST_DO_STOP_SINK,      /* close it, if open */
        DST_DO_SEND_ACCEPT,    /* ACCEPT: the source may dump now */
        DST_DO_SEND_REJECT,    /* REJECT (busy): we cannot take it after all */
        DST_DO_SEND_VERIFIED,  /* VERIFIED */
        DST_DO_SEND_RESTORED,  /* RESTORED (pid) */
        DST_DO_SEND_RUNNING,   /* RUNNING (pid) */
        DST_DO_SEND_ERROR,     /* code: ERROR with the noted failure (code 0: its own code) */
        DST_DO_REFUSE_RESTORE, /* ERROR: RESTORE before the images were verified */
        DST_DO_REFUSE_COMMIT,  /* ERROR: COMMIT before RESTORED */
        DST_DO_START_RESTORE,  /* CRIU restores, tasks stopped (RESTORE_OK or RESTORE_FAILED follows) */
        DST_DO_CANCEL_RESTORE, /* a restore still queued never starts (RESTORE_FAILED follows) */
        DST_DO_RESUME_COPY,    /* SIGCONT the stopped copy (RESUME_FAILED if it is gone) */
        DST_DO_KILL_COPY,      /* end our copy, stopped or not */
        DST_DO_WRITE_STATE,    /* the container's state file, naming our copy */
        DST_DO_REMOVE_STATE,   /* our copy is no more: remove its state file */
        DST_DO_REMOVE_STAGING, /* the images are no longer needed */
        DST_DO_RELEASE,        /* what was set aside for the container (its address, a cgroup made for
                                * the copy) goes: it will not run here */
        DST_DO_DROP_RELAY,     /* post-copy: the pages cannot come any more (the daemon fails) */
        DST_DO_OPEN_ASK,       /* connect to the source (ASK_READY or ASK_LOST follows) */
        DST_DO_SEND_QUERY,     /* QUERY on that link */
        DST_DO_DROP_ASK,       /* end that link and any retry (no ASK_LOST follows) */
        DST_DO_ASK_LATER,      /* delay_ms: TIMER then */
        DST_DO_DETACH_SESSION, /* the session no longer carries this migration */
        DST_DO_FINISH,         /* archive the record; nothing follows */
        _DST_ACTION_MAX,
        _DST_ACTION_INVALID = -EINVAL,
} dst_action_kind;

const char *dst_action_to_string(dst_action_kind a);

typedef struct dst_action {
        dst_action_kind kind;
        union {
                dst_phase phase;   /* JOURNAL */
                dst_why why;       /* NOTE_FAILURE, NOTE_DISCARD */
                int code;          /* SEND_ERROR */
                unsigned delay_ms; /* ASK_LATER */
        };
} dst_action;

#define DST_ACTIONS_MAX 14

typedef struct dst_actions {
        dst_action v[DST_ACTIONS_MAX];
        size_t n;
} dst_actions;

/* IN_DOUBT: asking again, with a backoff between these. */
#define DST_ASK_RETRY_MIN_MS 500
#define DST_ASK_RETRY_MAX_MS 10000

/* The rules; see src_step. */
handoff_verdict dst_step(const dst_state *s, const dst_event *ev, dst_state *ret_state,
                         dst_actions *ret_actions);

/* What a restarted agent does with a journaled phase. */
mig_recovery dst_recovery_for(dst_phase phase);

/* A COMMIT for a migration that is no longer active here (the source
 * repeating itself after a lost link), answered from the archived record:
 * RUNNING if it ran here (true), else "no copy" (-ESRCH), which makes a
 * committed source restore its own images. */
bool dst_commit_finds_copy(dst_phase archived);

/* Whether the agent may exit leaving this migration to the journal. */
bool dst_parkable(const dst_state *s);

/* `nucleus-migrate resolve`: an operator settles a migration held in doubt
 * here. What can be known, and what the operator asked for. */
typedef enum dst_resolve_ask {
        DST_RESOLVE_AUTO,   /* decide from the facts, or not at all */
        DST_RESOLVE_COMMIT, /* --commit */
        DST_RESOLVE_ABORT,  /* --abort */
        _DST_RESOLVE_ASK_MAX,
        _DST_RESOLVE_ASK_INVALID = -EINVAL,
} dst_resolve_ask;

/* A fact that may not be known (the source could not be reached). */
typedef enum handoff_fact {
        HANDOFF_FACT_UNKNOWN,
        HANDOFF_FACT_NO,
        HANDOFF_FACT_YES,
        _HANDOFF_FACT_MAX,
        _HANDOFF_FACT_INVALID = -EINVAL,
} handoff_fact;

/* The container's copy on the source, as its QUERY answer says. */
typedef enum dst_source_copy {
        DST_SOURCE_COPY_UNKNOWN, /* not reached, or it did not say */
        DST_SOURCE_COPY_NONE,
        DST_SOURCE_COPY_RUNS,
        DST_SOURCE_COPY_HELD, /* stopped, as a dump holds it: not running */
        _DST_SOURCE_COPY_MAX,
        _DST_SOURCE_COPY_INVALID = -EINVAL,
} dst_source_copy;

typedef struct dst_resolve_facts {
        dst_phase phase;             /* ours */
        dst_copy copy;               /* ours: still held stopped (DST_COPY_STOPPED) or gone (NONE) */
        bool source_reached;         /* the source answered the QUERY */
        handoff_outcome source_says; /* its answer */
        handoff_fact source_record;  /* it has a record of the migration */
        dst_source_copy source_copy; /* the container's copy there */
        dst_resolve_ask ask;
        bool force; /* decide as asked although the facts cannot tell */
} dst_resolve_facts;

typedef enum dst_resolve_verdict {
        DST_RESOLVE_DECIDED,   /* carry out the decision (OUTCOME to the core) */
        DST_RESOLVE_UNDECIDED, /* the facts cannot tell, and nothing was forced: still in doubt */
        DST_RESOLVE_REFUSED,   /* not in doubt, or the operator asked against the facts */
        _DST_RESOLVE_VERDICT_MAX,
        _DST_RESOLVE_VERDICT_INVALID = -EINVAL,
} dst_resolve_verdict;

/* Decides only when the facts allow it, or the operator forces it where
 * they cannot tell; never against a fact (a copy running on the source is
 * never joined by a second one, the only copy is never killed unless
 * forced). *ret_outcome: committed or aborted when DECIDED; *ret_why says
 * why in words, for the operator and both journals. */
dst_resolve_verdict dst_resolve_decide(const dst_resolve_facts *f, handoff_outcome *ret_outcome,
                                       const char **ret_why, bool *ret_forced);
