/* SPDX-License-Identifier: Apache-2.0 */
#include "handoff.h"

#include <string.h>

#include "macro.h"

static const char *const role_names[_MIG_ROLE_MAX] = {
        [MIG_ROLE_SOURCE] = "source",
        [MIG_ROLE_DEST] = "destination",
};

static const char *const verdict_names[_HANDOFF_VERDICT_MAX] = {
        [HANDOFF_TAKEN] = "taken",
        [HANDOFF_IGNORED] = "ignored",
        [HANDOFF_REFUSED] = "refused",
};

static const char *const outcome_names[_HANDOFF_OUTCOME_MAX] = {
        [HANDOFF_OUTCOME_COMMITTED] = "committed",
        [HANDOFF_OUTCOME_ABORTED] = "aborted",
        [HANDOFF_OUTCOME_UNKNOWN] = "unknown",
};

static const char *const recovery_names[_MIG_RECOVER_MAX] = {
        [MIG_RECOVER_FINISH] = "finish",     [MIG_RECOVER_MARK_FAILED] = "mark-failed",
        [MIG_RECOVER_ROLLBACK] = "rollback", [MIG_RECOVER_FORWARD] = "forward",
        [MIG_RECOVER_DISCARD] = "discard",   [MIG_RECOVER_ASK_SOURCE] = "ask-source",
        [MIG_RECOVER_COMPLETE] = "complete", [MIG_RECOVER_RESUME] = "resume",
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

const char *handoff_verdict_to_string(handoff_verdict v) {
        return v >= 0 && v < _HANDOFF_VERDICT_MAX ? verdict_names[v] : NULL;
}

const char *handoff_outcome_to_string(handoff_outcome o) {
        return o >= 0 && o < _HANDOFF_OUTCOME_MAX ? outcome_names[o] : NULL;
}

const char *mig_recovery_to_string(mig_recovery r) {
        return r >= 0 && r < _MIG_RECOVER_MAX ? recovery_names[r] : NULL;
}

unsigned handoff_backoff_ms(unsigned tries, unsigned min_ms, unsigned max_ms) {
        /* Past 2^6 the cap has long taken over; the shift stays defined. */
        unsigned long long d = (unsigned long long)min_ms << (tries < 6 ? tries : 6);
        return d > max_ms ? max_ms : (unsigned)d;
}
