/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The handoff's rules, without I/O: what is shared by the source's core
 * (handoff-src.h) and the destination's (handoff-dst.h).
 *
 * The one rule everything follows: exactly one copy runs, and a copy never
 * vanishes. The source decides. Before it journals COMMITTED, any failure
 * rolls back (the source restores its own images, the destination kills its
 * stopped copy). Once COMMITTED is on disk the source never rolls back, and
 * a destination holding a stopped copy never resumes it without hearing
 * COMMIT (or "committed" when it asks).
 *
 * Each core is a pure function: (state, event) -> (new state, actions). An
 * event is something that happened (a message, the end of a CRIU call, a
 * lost link, a failed journal write); an action is something for the agent
 * to do (journal a phase, send a message, start CRIU). The agent carries the
 * actions out in order; an action that must be durable or finished before
 * the next (a journal write, killing a tree, removing a directory) holds the
 * rest of the list until it is, and one that fails ends the list and comes
 * back as an event. So "journal X" before "send Y" in a list means Y is sent
 * only once X is on disk. */

#include <errno.h>
#include <stdbool.h>

typedef enum mig_role {
        MIG_ROLE_SOURCE,
        MIG_ROLE_DEST,
        _MIG_ROLE_MAX,
        _MIG_ROLE_INVALID = -EINVAL,
} mig_role;

const char *mig_role_to_string(mig_role r);
mig_role mig_role_from_string(const char *s);

/* What a step made of an event. */
typedef enum handoff_verdict {
        HANDOFF_TAKEN,   /* the event moved the migration (state and/or actions) */
        HANDOFF_IGNORED, /* late or repeated: it means nothing in this state */
        HANDOFF_REFUSED, /* it cannot happen in this state: the caller has a bug */
        _HANDOFF_VERDICT_MAX,
        _HANDOFF_VERDICT_INVALID = -EINVAL,
} handoff_verdict;

const char *handoff_verdict_to_string(handoff_verdict v);

/* A source's answer to a destination that asks (QUERY -> OUTCOME). */
typedef enum handoff_outcome {
        HANDOFF_OUTCOME_COMMITTED, /* resume your copy: ours is gone for good */
        HANDOFF_OUTCOME_ABORTED,   /* kill your copy: ours runs (or will) */
        HANDOFF_OUTCOME_UNKNOWN,   /* ask again later; never guess */
        _HANDOFF_OUTCOME_MAX,
        _HANDOFF_OUTCOME_INVALID = -EINVAL,
} handoff_outcome;

const char *handoff_outcome_to_string(handoff_outcome o);

/* What a restarted agent does with a journaled migration (see
 * src_recovery_for and dst_recovery_for). */
typedef enum mig_recovery {
        MIG_RECOVER_FINISH,      /* final already: archive the record */
        MIG_RECOVER_MARK_FAILED, /* nothing changed: record the failure, clean images */
        MIG_RECOVER_ROLLBACK,    /* source: restore own images, tell the destination to abort */
        MIG_RECOVER_RESUME,      /* source: the dumped tasks are still here: resume them in place */
        MIG_RECOVER_FORWARD,     /* source: (re)send COMMIT until RUNNING */
        MIG_RECOVER_DISCARD,     /* destination: delete staging (and kill a copy if any) */
        MIG_RECOVER_ASK_SOURCE,  /* destination: hold the stopped copy, ask the source */
        MIG_RECOVER_COMPLETE,    /* destination: resumed; make sure the state file is written */
        _MIG_RECOVER_MAX,
        _MIG_RECOVER_INVALID = -EINVAL,
} mig_recovery;

const char *mig_recovery_to_string(mig_recovery r);

/* Backoff for retries that may go on for as long as the other node takes:
 * min_ms doubled per try, at most max_ms. */
unsigned handoff_backoff_ms(unsigned tries, unsigned min_ms, unsigned max_ms);
