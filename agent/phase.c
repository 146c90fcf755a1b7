/* SPDX-License-Identifier: Apache-2.0 */
#include "phase.h"

#include <string.h>

#include "exit-codes.h"
#include "macro.h"

static const char *const role_names[_MIG_ROLE_MAX] = {
        [MIG_ROLE_SOURCE] = "source",
        [MIG_ROLE_DEST] = "destination",
};

static const char *const phase_names[_MIG_PHASE_MAX] = {
        [MIG_PRECHECK] = "precheck",
        [MIG_DUMPING] = "dumping",
        [MIG_DUMPED] = "dumped",
        [MIG_STREAMING] = "streaming",
        [MIG_RESTORING] = "restoring",
        [MIG_COMMITTED] = "committed",
        [MIG_DONE] = "done",
        [MIG_ROLLING_BACK] = "rolling-back",
        [MIG_ROLLED_BACK] = "rolled-back",
        [MIG_FAILED] = "failed",
        [MIG_REFUSED] = "refused",
        [MIG_LOST] = "lost",
        [MIG_RECEIVING] = "receiving",
        [MIG_VERIFIED] = "verified",
        [MIG_DEST_RESTORING] = "dest-restoring",
        [MIG_RESTORED] = "restored",
        [MIG_IN_DOUBT] = "in-doubt",
        [MIG_RUNNING] = "running",
        [MIG_ABORTED] = "aborted",
};

static const char *const recovery_names[_MIG_RECOVER_MAX] = {
        [MIG_RECOVER_FINISH] = "finish",     [MIG_RECOVER_MARK_FAILED] = "mark-failed",
        [MIG_RECOVER_ROLLBACK] = "rollback", [MIG_RECOVER_FORWARD] = "forward",
        [MIG_RECOVER_DISCARD] = "discard",   [MIG_RECOVER_ASK_SOURCE] = "ask-source",
        [MIG_RECOVER_COMPLETE] = "complete",
};

const char *mig_role_to_string(mig_role r) {
        return r >= 0 && r < _MIG_ROLE_MAX ? role_names[r] : NULL;
}

mig_role mig_role_from_string(const char *s) {
        for (int i = 0; s && i < _MIG_ROLE_MAX; i++)
                if (strcmp(s, role_names[i]) == 0)
                        return (mig_role)i;
        return _MIG_ROLE_INVALID;
}

const char *mig_phase_to_string(mig_phase p) {
        return p >= 0 && p < _MIG_PHASE_MAX ? phase_names[p] : NULL;
}

mig_phase mig_phase_from_string(const char *s) {
        for (int i = 0; s && i < _MIG_PHASE_MAX; i++)
                if (strcmp(s, phase_names[i]) == 0)
                        return (mig_phase)i;
        return _MIG_PHASE_INVALID;
}

const char *mig_recovery_to_string(mig_recovery r) {
        return r >= 0 && r < _MIG_RECOVER_MAX ? recovery_names[r] : NULL;
}

bool mig_phase_is_final(mig_phase p) {
        switch (p) {
        case MIG_DONE:
        case MIG_ROLLED_BACK:
        case MIG_FAILED:
        case MIG_REFUSED:
        case MIG_LOST:
        case MIG_RUNNING:
        case MIG_ABORTED: return true;
        case MIG_PRECHECK:
        case MIG_DUMPING:
        case MIG_DUMPED:
        case MIG_STREAMING:
        case MIG_RESTORING:
        case MIG_COMMITTED:
        case MIG_ROLLING_BACK:
        case MIG_RECEIVING:
        case MIG_VERIFIED:
        case MIG_DEST_RESTORING:
        case MIG_RESTORED:
        case MIG_IN_DOUBT:
        case _MIG_PHASE_MAX:
        case _MIG_PHASE_INVALID: break;
        }
        return false;
}

static mig_recovery source_recovery(mig_phase phase, bool container_running) {
        switch (phase) {
        case MIG_PRECHECK:
        case MIG_FAILED:
        case MIG_REFUSED: return phase == MIG_PRECHECK ? MIG_RECOVER_MARK_FAILED : MIG_RECOVER_FINISH;
        case MIG_DUMPING:
                /* CRIU resumes the tasks when a dump fails; if they still run,
                 * nothing was lost and nothing moved. */
                return container_running ? MIG_RECOVER_MARK_FAILED : MIG_RECOVER_ROLLBACK;
        case MIG_DUMPED:
        case MIG_STREAMING:
        case MIG_RESTORING:
        case MIG_ROLLING_BACK: return MIG_RECOVER_ROLLBACK;
        case MIG_COMMITTED: return MIG_RECOVER_FORWARD;
        case MIG_DONE:
        case MIG_ROLLED_BACK:
        case MIG_LOST: return MIG_RECOVER_FINISH;
        case MIG_RECEIVING:
        case MIG_VERIFIED:
        case MIG_DEST_RESTORING:
        case MIG_RESTORED:
        case MIG_IN_DOUBT:
        case MIG_RUNNING:
        case MIG_ABORTED:
        case _MIG_PHASE_MAX:
        case _MIG_PHASE_INVALID: break;
        }
        return _MIG_RECOVER_INVALID;
}

static mig_recovery dest_recovery(mig_phase phase) {
        switch (phase) {
        case MIG_RECEIVING:
        case MIG_VERIFIED:
        case MIG_DEST_RESTORING:
                /* No RESTORED was sent, so the source cannot have committed. A
                 * restore interrupted by our crash is cleaned up by CRIU itself
                 * (it loses its service socket); a copy whose pid was journaled
                 * is killed by DISCARD. */
                return MIG_RECOVER_DISCARD;
        case MIG_RESTORED:
        case MIG_IN_DOUBT: return MIG_RECOVER_ASK_SOURCE;
        case MIG_RUNNING: return MIG_RECOVER_COMPLETE;
        case MIG_ABORTED: return MIG_RECOVER_FINISH;
        case MIG_PRECHECK:
        case MIG_DUMPING:
        case MIG_DUMPED:
        case MIG_STREAMING:
        case MIG_RESTORING:
        case MIG_COMMITTED:
        case MIG_DONE:
        case MIG_ROLLING_BACK:
        case MIG_ROLLED_BACK:
        case MIG_FAILED:
        case MIG_REFUSED:
        case MIG_LOST:
        case _MIG_PHASE_MAX:
        case _MIG_PHASE_INVALID: break;
        }
        return _MIG_RECOVER_INVALID;
}

mig_recovery mig_recovery_for(mig_role role, mig_phase phase, bool container_running) {
        switch (role) {
        case MIG_ROLE_SOURCE: return source_recovery(phase, container_running);
        case MIG_ROLE_DEST: return dest_recovery(phase);
        case _MIG_ROLE_MAX:
        case _MIG_ROLE_INVALID: break;
        }
        return _MIG_RECOVER_INVALID;
}

int mig_phase_exit_code(mig_phase p) {
        switch (p) {
        case MIG_DONE: return NM_EXIT_OK;
        case MIG_REFUSED: return NM_EXIT_REFUSED;
        case MIG_ROLLED_BACK: return NM_EXIT_ROLLED_BACK;
        case MIG_FAILED: return NM_EXIT_FAILURE;
        case MIG_LOST: return NM_EXIT_LOST;
        case MIG_COMMITTED: return NM_EXIT_IN_DOUBT;
        case MIG_PRECHECK:
        case MIG_DUMPING:
        case MIG_DUMPED:
        case MIG_STREAMING:
        case MIG_RESTORING:
        case MIG_ROLLING_BACK:
        case MIG_RECEIVING:
        case MIG_VERIFIED:
        case MIG_DEST_RESTORING:
        case MIG_RESTORED:
        case MIG_IN_DOUBT:
        case MIG_RUNNING:
        case MIG_ABORTED:
        case _MIG_PHASE_MAX:
        case _MIG_PHASE_INVALID: break;
        }
        return NM_EXIT_IN_DOUBT;
}
