/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The phases of a migration, on each side, and what an agent must do with a
 * journaled phase after a crash. Kept free of I/O so that the rules of the
 * handoff can be tested on their own.
 *
 * The one rule everything follows: exactly one copy runs, and a copy never
 * vanishes. The source decides. Before it journals COMMITTED, any failure
 * rolls back (the source restores its own images, the destination kills its
 * stopped copy). Once COMMITTED is on disk the source never rolls back, and
 * a destination holding a stopped copy never resumes it without hearing
 * COMMIT (or "committed" when it asks). */

#include <errno.h>
#include <stdbool.h>

typedef enum mig_role {
        MIG_ROLE_SOURCE,
        MIG_ROLE_DEST,
        _MIG_ROLE_MAX,
        _MIG_ROLE_INVALID = -EINVAL,
} mig_role;

typedef enum mig_phase {
        /* source */
        MIG_PRECHECK,     /* resolving, connecting, offering: nothing changed yet */
        MIG_DUMPING,      /* journaled before CRIU starts */
        MIG_DUMPED,       /* images on disk; the source copy is gone */
        MIG_STREAMING,    /* images on their way; waiting for VERIFIED at the end */
        MIG_RESTORING,    /* RESTORE sent, waiting for RESTORED */
        MIG_COMMITTED,    /* journaled: from here on only forward */
        MIG_DONE,         /* RUNNING received, source images and state removed */
        MIG_ROLLING_BACK, /* restoring the source copy from its own images */
        MIG_ROLLED_BACK,  /* the container runs here again */
        MIG_FAILED,       /* failed before anything changed (container untouched) */
        MIG_REFUSED,      /* the target said no before anything changed */
        MIG_LOST,         /* no copy could be brought back: needs an operator */
        /* destination */
        MIG_RECEIVING,      /* staging filling up */
        MIG_VERIFIED,       /* HMAC checked */
        MIG_DEST_RESTORING, /* CRIU restoring, tasks to be left stopped */
        MIG_RESTORED,       /* a stopped copy is held here */
        MIG_IN_DOUBT,       /* holding a stopped copy without a source: asking it */
        MIG_RUNNING,        /* resumed here: the move is complete on this side */
        MIG_ABORTED,        /* nothing kept here */
        _MIG_PHASE_MAX,
        _MIG_PHASE_INVALID = -EINVAL,
} mig_phase;

const char *mig_role_to_string(mig_role r);
mig_role mig_role_from_string(const char *s);
const char *mig_phase_to_string(mig_phase p);
mig_phase mig_phase_from_string(const char *s);

/* A phase after which nothing more happens to this migration. */
bool mig_phase_is_final(mig_phase p);

/* What a restarted agent does with a journaled migration. */
typedef enum mig_recovery {
        MIG_RECOVER_FINISH,      /* final already: archive the record */
        MIG_RECOVER_MARK_FAILED, /* nothing changed: record the failure, clean images */
        MIG_RECOVER_ROLLBACK,    /* source: restore own images, tell the destination to abort */
        MIG_RECOVER_FORWARD,     /* source: (re)send COMMIT until RUNNING */
        MIG_RECOVER_DISCARD,     /* destination: delete staging (and kill a copy if any) */
        MIG_RECOVER_ASK_SOURCE,  /* destination: hold the stopped copy, ask the source */
        MIG_RECOVER_COMPLETE,    /* destination: resumed; make sure the state file is written */
        _MIG_RECOVER_MAX,
        _MIG_RECOVER_INVALID = -EINVAL,
} mig_recovery;

const char *mig_recovery_to_string(mig_recovery r);

/* container_running: for a source in DUMPING, whether the container still
 * runs (start ticks match): CRIU either never started or resumed it. */
mig_recovery mig_recovery_for(mig_role role, mig_phase phase, bool container_running);

/* The exit code nucleus-migrate reports for a source migration's final
 * phase (see exit-codes.h). */
int mig_phase_exit_code(mig_phase p);
