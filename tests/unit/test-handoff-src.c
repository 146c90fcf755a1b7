/* SPDX-License-Identifier: Apache-2.0 */
/* The source's rules (agent/core/handoff-src.c), without root, CRIU or SSH.
 *
 * test_transitions: a table with a row for every (phase, event) the core
 * takes, saying the new phase and the exact action list.
 * test_every_pair: walks every state the core can be in with every event,
 * and checks what must hold whatever the rule: nothing half-happens, the
 * journal comes before what depends on it, no rollback after COMMITTED but
 * for "the target holds no copy", final phases stay final. It also checks
 * that the table has a row for each pair the core takes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "test-handoff-util.h"

#define ST(ph, ...) \
        { .phase = SRC_##ph, __VA_ARGS__ }
#define READY .link = SRC_LINK_READY
#define OPENING .link = SRC_LINK_OPENING
#define PC(x) .postcopy = SRC_PC_##x
#define HOLD(x) .hold = SRC_HOLD_##x
#define TREE(x) .tree = SRC_TREE_##x
#define EV(k, ...) \
        { .kind = SRC_EV_##k, .settled = true, __VA_ARGS__ }

typedef struct row {
        src_state s;
        src_event ev;
        src_phase phase; /* after the step */
        const char *acts;
} row;

#define ROLLBACK "close-link journal(rolling-back) start-rollback(0)"
#define ROLLBACK_ABORT "send-ABORT " ROLLBACK
#define RESUME "close-link journal(rolling-back) resume-held"
#define RESUME_ABORT "send-ABORT " RESUME
#define END(p) "journal(" p ") close-link finish"

static const row rows[] = {
        /* START: journaled, then connect */
        {ST(PRECHECK), EV(START), SRC_PRECHECK, "journal(precheck) open-link"},

        /* RECOVER: what the journal says (src_recovery_for) */
        {ST(PRECHECK), EV(RECOVER), SRC_FAILED, "note(stopped-before-dump) remove-images " END("failed")},
        {ST(DUMPING), EV(RECOVER, TREE(RUNNING)), SRC_FAILED,
         "note(stopped-before-dump) remove-images " END("failed")},
        {ST(DUMPING), EV(RECOVER), SRC_ROLLING_BACK, "note(stopped-during-move) " ROLLBACK},
        {ST(DUMPED), EV(RECOVER), SRC_ROLLING_BACK, "note(stopped-during-move) " ROLLBACK},
        {ST(STREAMING), EV(RECOVER), SRC_ROLLING_BACK, "note(stopped-during-move) " ROLLBACK},
        {ST(RESTORING), EV(RECOVER), SRC_ROLLING_BACK, "note(stopped-during-move) " ROLLBACK},
        {ST(ROLLING_BACK), EV(RECOVER), SRC_ROLLING_BACK, "note(stopped-during-move) " ROLLBACK},
        /* The dumped tasks are still here: they resume in place (never a
         * second copy from the images beside them). */
        {ST(DUMPING), EV(RECOVER, TREE(STOPPED)), SRC_ROLLING_BACK, "note(stopped-during-move) " RESUME},
        {ST(DUMPED), EV(RECOVER, TREE(STOPPED)), SRC_ROLLING_BACK, "note(stopped-during-move) " RESUME},
        {ST(STREAMING), EV(RECOVER, TREE(STOPPED)), SRC_ROLLING_BACK, "note(stopped-during-move) " RESUME},
        {ST(RESTORING), EV(RECOVER, TREE(STOPPED)), SRC_ROLLING_BACK, "note(stopped-during-move) " RESUME},
        {ST(ROLLING_BACK), EV(RECOVER, TREE(RUNNING)), SRC_ROLLING_BACK,
         "note(stopped-during-move) " RESUME},
        {ST(COMMITTED), EV(RECOVER), SRC_COMMITTED, "open-link"},
        /* Committed before the held tasks were ended: they end first. */
        {ST(COMMITTED), EV(RECOVER, TREE(STOPPED)), SRC_COMMITTED, "end-held open-link"},
        {ST(DONE), EV(RECOVER), SRC_DONE, "finish"},
        {ST(ROLLED_BACK), EV(RECOVER), SRC_ROLLED_BACK, "finish"},
        {ST(FAILED), EV(RECOVER), SRC_FAILED, "finish"},
        {ST(REFUSED), EV(RECOVER), SRC_REFUSED, "finish"},
        {ST(LOST), EV(RECOVER), SRC_LOST, "finish"},

        /* the link */
        {ST(PRECHECK, OPENING), EV(LINK_READY), SRC_PRECHECK, "send-OFFER"},
        {ST(COMMITTED, OPENING, .forward_tries = 1), EV(LINK_READY), SRC_COMMITTED, "send-COMMIT"},
        {ST(PRECHECK, OPENING), EV(LINK_LOST), SRC_FAILED, "note(event) " END("failed")},
        {ST(DUMPING, READY), EV(LINK_LOST), SRC_DUMPING, "note(event) close-link cancel-dump"},
        {ST(DUMPED, READY), EV(LINK_LOST), SRC_ROLLING_BACK, "note(event) " ROLLBACK},
        {ST(STREAMING, READY, .stream = SRC_STREAM_SENDING), EV(LINK_LOST), SRC_ROLLING_BACK,
         "note(event) " ROLLBACK},
        {ST(STREAMING, READY, PC(SERVING)), EV(LINK_LOST), SRC_ROLLING_BACK,
         "note(event) close-link journal(rolling-back) resume-in-place"},
        {ST(RESTORING, READY), EV(LINK_LOST), SRC_ROLLING_BACK, "note(event) " ROLLBACK},
        {ST(COMMITTED, READY), EV(LINK_LOST), SRC_COMMITTED, "open-link"},
        {ST(COMMITTED, .forward_tries = 1), EV(LINK_LOST), SRC_COMMITTED,
         "report-in-doubt reconnect-later(1000)"},
        {ST(COMMITTED, .forward_tries = 2), EV(LINK_LOST), SRC_COMMITTED, "reconnect-later(2000)"},
        {ST(COMMITTED, .forward_tries = 9), EV(LINK_LOST), SRC_COMMITTED, "reconnect-later(10000)"},
        {ST(COMMITTED, READY, PC(SERVING)), EV(LINK_LOST), SRC_COMMITTED, "drop-relay open-link"},
        {ST(COMMITTED, READY, PC(RUNNING_HEARD)), EV(LINK_LOST), SRC_COMMITTED, "drop-relay open-link"},
        {ST(COMMITTED, READY, PC(RETURNED)), EV(LINK_LOST), SRC_COMMITTED, "open-link"},

        /* the offer */
        {ST(PRECHECK, READY), EV(OFFER_FAILED), SRC_FAILED, "note(event) " END("failed")},
        {ST(PRECHECK, READY), EV(OFFER_REFUSED), SRC_REFUSED, "note(event) " END("refused")},
        {ST(PRECHECK, READY), EV(REJECT), SRC_REFUSED, "note(event) " END("refused")},
        {ST(PRECHECK, READY), EV(ACCEPT), SRC_DUMPING, "journal(dumping) start-dump"},

        /* the dump */
        {ST(DUMPING, READY), EV(DUMP_OK), SRC_STREAMING, "journal(dumped) start-stream journal(streaming)"},
        {ST(DUMPING, READY), EV(DUMP_OK, .held = true), SRC_STREAMING,
         "journal(dumped) start-stream journal(streaming)"},
        {ST(DUMPING), EV(DUMP_OK, .held = true), SRC_ROLLING_BACK,
         "journal(dumped) note(target-gone-in-dump) " RESUME},
        {ST(DUMPING), EV(DUMP_OK), SRC_ROLLING_BACK, "journal(dumped) note(target-gone-in-dump) " ROLLBACK},
        {ST(DUMPING, READY, PC(PENDING)), EV(IMAGES_READY), SRC_STREAMING,
         "journal(dumped) start-stream journal(streaming)"},
        {ST(DUMPING, PC(PENDING)), EV(IMAGES_READY), SRC_ROLLING_BACK,
         "journal(dumped) note(target-gone-in-dump) close-link journal(rolling-back) resume-in-place"},
        {ST(DUMPING, READY), EV(DUMP_FAILED_RUNNING), SRC_FAILED, "note(event) send-ABORT " END("failed")},
        {ST(DUMPING), EV(DUMP_FAILED_RUNNING), SRC_FAILED, "note(event) " END("failed")},
        {ST(DUMPING, READY), EV(DUMP_FAILED_GONE), SRC_LOST, "note(event) send-ABORT " END("lost")},
        /* CRIU died after its images were complete, the tasks are gone:
         * the images (verified and signed by ckpt) bring it back here. */
        {ST(DUMPING, READY), EV(DUMP_FAILED_IMAGES), SRC_ROLLING_BACK,
         "note(event) journal(dumped) " ROLLBACK_ABORT},
        {ST(DUMPING), EV(DUMP_FAILED_IMAGES), SRC_ROLLING_BACK, "note(event) journal(dumped) " ROLLBACK},

        /* the lazy dump's end, by phase and post-copy state */
        {ST(DUMPED, READY, PC(SERVING)), EV(DUMP_OK), SRC_DUMPED, ""},
        {ST(STREAMING, READY, PC(SERVING)), EV(DUMP_OK), SRC_STREAMING, ""},
        {ST(RESTORING, READY, PC(SERVING)), EV(DUMP_OK), SRC_RESTORING, ""},
        {ST(STREAMING, READY, PC(CUT)), EV(DUMP_OK), SRC_LOST, "note(lazy-ended-early) " END("lost")},
        {ST(COMMITTED, READY, PC(SERVING)), EV(DUMP_OK), SRC_COMMITTED, ""},
        {ST(COMMITTED, PC(CUT)), EV(DUMP_OK), SRC_COMMITTED, ""},
        {ST(COMMITTED, READY, PC(RUNNING_HEARD)), EV(DUMP_OK), SRC_DONE,
         "remove-images remove-state " END("done")},
        {ST(COMMITTED, READY, PC(TARGET_LOST)), EV(DUMP_OK), SRC_LOST, END("lost")},
        /* The rollback came after every page had left: nothing runs here
         * any more, and the target was told to abort. */
        {ST(ROLLING_BACK, PC(RESUMING)), EV(DUMP_OK), SRC_LOST, "note(postcopy-served) " END("lost")},
        {ST(DUMPED, READY, PC(SERVING)), EV(DUMP_FAILED_RUNNING), SRC_ROLLED_BACK,
         "unlock-network remove-images " END("rolled-back")},
        {ST(STREAMING, READY, PC(SERVING)), EV(DUMP_FAILED_RUNNING), SRC_ROLLED_BACK,
         "unlock-network remove-images " END("rolled-back")},
        {ST(RESTORING, READY, PC(SERVING)), EV(DUMP_FAILED_GONE), SRC_ROLLED_BACK,
         "unlock-network remove-images " END("rolled-back")},
        {ST(ROLLING_BACK, PC(RESUMING)), EV(DUMP_FAILED_RUNNING), SRC_ROLLED_BACK,
         "unlock-network remove-images " END("rolled-back")},
        /* (CRIU lets the tasks run on when a lazy dump fails: both failures
         * mean the same there.) */
        {ST(DUMPED, READY, PC(SERVING)), EV(DUMP_FAILED_GONE), SRC_ROLLED_BACK,
         "unlock-network remove-images " END("rolled-back")},
        {ST(STREAMING, READY, PC(SERVING)), EV(DUMP_FAILED_GONE), SRC_ROLLED_BACK,
         "unlock-network remove-images " END("rolled-back")},
        {ST(RESTORING, READY, PC(SERVING)), EV(DUMP_FAILED_RUNNING), SRC_ROLLED_BACK,
         "unlock-network remove-images " END("rolled-back")},
        {ST(ROLLING_BACK, PC(RESUMING)), EV(DUMP_FAILED_GONE), SRC_ROLLED_BACK,
         "unlock-network remove-images " END("rolled-back")},
        /* Nobody serves the target's pages any more: the link's end tells
         * it, a new link asks for the verdict. */
        {ST(COMMITTED, READY, PC(SERVING)), EV(DUMP_FAILED_RUNNING), SRC_COMMITTED,
         "note(postcopy-after-commit) kill-copy close-link open-link"},
        {ST(COMMITTED, READY, PC(SERVING), .forward_tries = 2), EV(DUMP_FAILED_GONE), SRC_COMMITTED,
         "note(postcopy-after-commit) kill-copy close-link reconnect-later(2000)"},
        /* Cut already: the target heard the link's end. */
        {ST(COMMITTED, PC(CUT), .forward_tries = 1), EV(DUMP_FAILED_RUNNING), SRC_COMMITTED,
         "note(postcopy-after-commit) kill-copy"},
        {ST(COMMITTED, READY, PC(TARGET_LOST)), EV(DUMP_FAILED_GONE), SRC_LOST, "kill-copy " END("lost")},
        /* RUNNING came first: the target has every page and runs. */
        {ST(COMMITTED, READY, PC(RUNNING_HEARD)), EV(DUMP_FAILED_RUNNING), SRC_DONE,
         "note(postcopy-after-commit) kill-copy remove-images remove-state " END("done")},

        /* the stream */
        {ST(STREAMING, READY, .stream = SRC_STREAM_SENDING), EV(STREAM_SENT), SRC_STREAMING, ""},
        {ST(STREAMING, READY, .stream = SRC_STREAM_SENDING), EV(STREAM_FAILED), SRC_ROLLING_BACK,
         "note(event) " ROLLBACK_ABORT},
        {ST(DUMPED, READY), EV(STREAM_FAILED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},

        /* the target's answers */
        {ST(STREAMING, READY, .stream = SRC_STREAM_SENT), EV(VERIFIED), SRC_RESTORING,
         "journal(restoring) send-RESTORE"},
        {ST(STREAMING, READY, .stream = SRC_STREAM_SENDING), EV(VERIFIED), SRC_ROLLING_BACK,
         "note(event) " ROLLBACK_ABORT},
        {ST(PRECHECK, READY), EV(VERIFIED), SRC_FAILED, "note(event) " END("failed")},
        {ST(DUMPING, READY), EV(VERIFIED), SRC_DUMPING, "note(event) close-link cancel-dump"},
        {ST(DUMPED, READY), EV(VERIFIED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(RESTORING, READY), EV(VERIFIED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(COMMITTED, READY), EV(VERIFIED), SRC_COMMITTED, "note(event) close-link open-link"},
        {ST(RESTORING, READY), EV(RESTORED), SRC_COMMITTED, "journal(committed) send-COMMIT"},
        /* The commit ends the held tasks, before the target may resume. */
        {ST(RESTORING, READY, HOLD(STOPPED)), EV(RESTORED), SRC_COMMITTED,
         "journal(committed) end-held send-COMMIT"},
        {ST(COMMITTED, READY), EV(RUNNING), SRC_DONE, "remove-images remove-state " END("done")},
        {ST(COMMITTED, READY, PC(SERVING)), EV(RUNNING), SRC_COMMITTED, ""},
        {ST(COMMITTED, READY, PC(RETURNED)), EV(RUNNING), SRC_DONE,
         "remove-images remove-state " END("done")},

        /* ABORT, ERROR, and messages out of place */
        {ST(PRECHECK, READY), EV(PEER_ABORT), SRC_FAILED, "note(event) " END("failed")},
        {ST(DUMPING, READY), EV(PEER_ABORT), SRC_DUMPING, "note(event) close-link cancel-dump"},
        {ST(DUMPED, READY), EV(PEER_ABORT), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(STREAMING, READY), EV(PEER_ABORT), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(RESTORING, READY), EV(PEER_ABORT), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(COMMITTED, READY), EV(PEER_ABORT), SRC_COMMITTED, "note(event) close-link open-link"},
        {ST(PRECHECK, READY), EV(PEER_ERROR, .code = -EIO), SRC_FAILED, "note(event) " END("failed")},
        {ST(DUMPING, READY), EV(PEER_ERROR, .code = -EIO), SRC_DUMPING,
         "note(event) close-link cancel-dump"},
        {ST(DUMPED, READY), EV(PEER_ERROR, .code = -EIO), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(STREAMING, READY), EV(PEER_ERROR, .code = -ENOSPC), SRC_ROLLING_BACK,
         "note(event) " ROLLBACK_ABORT},
        {ST(RESTORING, READY), EV(PEER_ERROR, .code = -EIO), SRC_ROLLING_BACK,
         "note(event) " ROLLBACK_ABORT},
        /* Held stopped: the rollback is a resume in place. */
        {ST(STREAMING, READY, HOLD(STOPPED)), EV(PEER_ERROR, .code = -EIO), SRC_ROLLING_BACK,
         "note(event) " RESUME_ABORT},
        {ST(RESTORING, READY, HOLD(STOPPED)), EV(PEER_ERROR, .code = -EIO), SRC_ROLLING_BACK,
         "note(event) " RESUME_ABORT},
        {ST(DUMPED, READY, HOLD(STOPPED)), EV(LINK_LOST), SRC_ROLLING_BACK, "note(event) " RESUME},
        {ST(COMMITTED, READY), EV(PEER_ERROR, .code = -EIO), SRC_COMMITTED,
         "note(event) close-link open-link"},
        /* -ESRCH after COMMITTED: the target holds no copy and never resumed
         * one: our images bring the container back. */
        {ST(COMMITTED, READY, .forward_tries = 3), EV(PEER_ERROR, .code = -ESRCH), SRC_ROLLING_BACK,
         "note(event) " ROLLBACK},
        {ST(COMMITTED, READY, PC(SERVING)), EV(PEER_ERROR, .code = -EIO), SRC_COMMITTED,
         "note(postcopy-undoable) drop-relay"},
        {ST(COMMITTED, READY, PC(SERVING)), EV(PEER_ERROR, .code = -ESRCH), SRC_COMMITTED,
         "note(postcopy-undoable) drop-relay"},
        {ST(COMMITTED, READY, PC(RETURNED)), EV(PEER_ERROR, .code = -EIO), SRC_LOST,
         "note(postcopy-undoable) " END("lost")},
        {ST(PRECHECK, READY), EV(PEER_UNEXPECTED), SRC_FAILED, "note(event) " END("failed")},
        {ST(DUMPING, READY), EV(PEER_UNEXPECTED), SRC_DUMPING, "note(event) close-link cancel-dump"},
        {ST(DUMPED, READY), EV(PEER_UNEXPECTED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(STREAMING, READY), EV(PEER_UNEXPECTED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(RESTORING, READY), EV(PEER_UNEXPECTED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(COMMITTED, READY), EV(PEER_UNEXPECTED), SRC_COMMITTED, "note(event) close-link open-link"},

        /* a journal write that failed: the phase is not on disk */
        {ST(PRECHECK), EV(JOURNAL_FAILED), SRC_FAILED, "note(event) " END("failed")},
        {ST(DUMPING, READY), EV(JOURNAL_FAILED), SRC_FAILED, "note(event) " END("failed")},
        {ST(DUMPED, READY), EV(JOURNAL_FAILED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(STREAMING, READY), EV(JOURNAL_FAILED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        {ST(RESTORING, READY), EV(JOURNAL_FAILED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        /* COMMITTED not on disk: we never committed. */
        {ST(COMMITTED, READY), EV(JOURNAL_FAILED), SRC_ROLLING_BACK, "note(event) " ROLLBACK_ABORT},
        /* ... and the held tasks were not ended: they resume. */
        {ST(COMMITTED, READY, HOLD(ENDED)), EV(JOURNAL_FAILED), SRC_ROLLING_BACK,
         "note(event) " RESUME_ABORT},
        {ST(ROLLING_BACK, HOLD(STOPPED)), EV(JOURNAL_FAILED), SRC_ROLLING_BACK, "note(event) resume-held"},
        {ST(COMMITTED, READY, PC(SERVING)), EV(JOURNAL_FAILED), SRC_ROLLING_BACK,
         "note(event) send-ABORT close-link journal(rolling-back) resume-in-place"},
        {ST(ROLLING_BACK), EV(JOURNAL_FAILED), SRC_ROLLING_BACK, "note(event) start-rollback(0)"},
        {ST(ROLLING_BACK, PC(RESUMING)), EV(JOURNAL_FAILED), SRC_ROLLING_BACK,
         "note(event) resume-in-place"},
        {ST(DONE), EV(JOURNAL_FAILED), SRC_DONE, "note(event) close-link finish"},
        {ST(ROLLED_BACK), EV(JOURNAL_FAILED), SRC_ROLLED_BACK, "note(event) close-link finish"},
        {ST(FAILED), EV(JOURNAL_FAILED), SRC_FAILED, "note(event) close-link finish"},
        {ST(REFUSED), EV(JOURNAL_FAILED), SRC_REFUSED, "note(event) close-link finish"},
        {ST(LOST), EV(JOURNAL_FAILED), SRC_LOST, "note(event) close-link finish"},

        /* the rollback */
        {ST(ROLLING_BACK), EV(ROLLBACK_OK), SRC_ROLLED_BACK,
         "write-state remove-images " END("rolled-back")},
        {ST(ROLLING_BACK), EV(ROLLBACK_FAILED), SRC_ROLLING_BACK, "rollback-later(1000)"},
        {ST(ROLLING_BACK, .rollback_failures = 1), EV(ROLLBACK_FAILED), SRC_ROLLING_BACK,
         "rollback-later(1000)"},
        {ST(ROLLING_BACK, .rollback_failures = 2), EV(ROLLBACK_FAILED), SRC_LOST,
         "note(rollback-exhausted) " END("lost")},
        {ST(ROLLING_BACK, .rollback_failures = 1), EV(TIMER), SRC_ROLLING_BACK, "start-rollback(1)"},
        /* the resume in place; a failed one ends what is left, then restores */
        {ST(ROLLING_BACK, HOLD(STOPPED)), EV(RESUMED), SRC_ROLLED_BACK, "remove-images " END("rolled-back")},
        {ST(ROLLING_BACK, HOLD(STOPPED)), EV(RESUME_FAILED), SRC_ROLLING_BACK,
         "note(event) end-held start-rollback(0)"},
        {ST(COMMITTED, .forward_tries = 2), EV(TIMER), SRC_COMMITTED, "open-link"},

        /* QUERY: answered from the phase; "aborted" is made true first */
        {ST(PRECHECK, READY), EV(QUERY), SRC_FAILED,
         "answer(aborted) note(answered-aborted) " END("failed")},
        {ST(DUMPING, READY), EV(QUERY), SRC_DUMPING,
         "answer(aborted) note(answered-aborted) close-link cancel-dump"},
        {ST(DUMPED, READY), EV(QUERY), SRC_ROLLING_BACK,
         "answer(aborted) note(answered-aborted) " ROLLBACK_ABORT},
        {ST(STREAMING, READY), EV(QUERY), SRC_ROLLING_BACK,
         "answer(aborted) note(answered-aborted) " ROLLBACK_ABORT},
        {ST(RESTORING, READY), EV(QUERY), SRC_ROLLING_BACK,
         "answer(aborted) note(answered-aborted) " ROLLBACK_ABORT},
        {ST(COMMITTED), EV(QUERY), SRC_COMMITTED, "answer(committed)"},
        {ST(DONE), EV(QUERY), SRC_DONE, "answer(committed)"},
        {ST(LOST), EV(QUERY), SRC_LOST, "answer(committed)"},
        {ST(ROLLING_BACK), EV(QUERY), SRC_ROLLING_BACK, "answer(aborted)"},
        {ST(ROLLED_BACK), EV(QUERY), SRC_ROLLED_BACK, "answer(aborted)"},
        {ST(FAILED), EV(QUERY), SRC_FAILED, "answer(aborted)"},
        {ST(REFUSED), EV(QUERY), SRC_REFUSED, "answer(aborted)"},
        /* Busy with a step (a journal write in flight): "ask again". */
        {ST(RESTORING, READY), {.kind = SRC_EV_QUERY, .settled = false}, SRC_RESTORING, "answer(unknown)"},
        {ST(COMMITTED, READY), {.kind = SRC_EV_QUERY, .settled = false}, SRC_COMMITTED, "answer(unknown)"},
};

static void test_transitions(void **state) {
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                const row *r = &rows[i];
                src_state next;
                src_actions acts;
                char got[ACTS_TEXT_MAX];
                handoff_verdict v = src_step(&r->s, &r->ev, &next, &acts);

                src_acts_text(&acts, got);
                if (v != HANDOFF_TAKEN || next.phase != r->phase || strcmp(got, r->acts) != 0)
                        fail_msg("row %zu: %s in %s (postcopy %s, link %s): %s, now %s, \"%s\"; want %s, "
                                 "\"%s\"",
                                 i, src_event_to_string(r->ev.kind), src_phase_to_string(r->s.phase),
                                 src_postcopy_to_string(r->s.postcopy), src_link_to_string(r->s.link),
                                 handoff_verdict_to_string(v), src_phase_to_string(next.phase), got,
                                 src_phase_to_string(r->phase), r->acts);
        }
}

/* Some states beyond the phase matter to a rule: the state after a step
 * carries them forward. */
static void test_state_carried(void **state) {
        src_state s = ST(RESTORING, READY), next;
        src_actions acts;
        (void)state;

        /* COMMITTED starts its reconnection count afresh. */
        s.forward_tries = 4;
        assert_int_equal(src_step(&s, &(src_event)EV(RESTORED), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.forward_tries, 0);
        /* A lost link after COMMITTED: tries count, the link is gone. */
        s = next;
        assert_int_equal(src_step(&s, &(src_event)EV(LINK_LOST), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.link, SRC_LINK_OPENING);
        assert_int_equal(next.forward_tries, 1);
        /* A rollback attempt that failed is counted; the next one says so. */
        s = (src_state)ST(ROLLING_BACK);
        assert_int_equal(src_step(&s, &(src_event)EV(ROLLBACK_FAILED), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.rollback_failures, 1);
        /* Post-copy: the relay cut after COMMITTED, then RUNNING, then the
         * dump's end: done. */
        s = (src_state)ST(COMMITTED, READY, PC(SERVING));
        assert_int_equal(src_step(&s, &(src_event)EV(LINK_LOST), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.postcopy, SRC_PC_CUT);
        s = next;
        s.link = SRC_LINK_READY;
        assert_int_equal(src_step(&s, &(src_event)EV(RUNNING), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.postcopy, SRC_PC_RUNNING_HEARD);
        s = next;
        assert_int_equal(src_step(&s, &(src_event)EV(DUMP_OK), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.phase, SRC_DONE);
        /* The lazy dump's images: post-dump makes them ready, once. */
        s = (src_state)ST(DUMPING, READY, PC(PENDING));
        assert_int_equal(src_step(&s, &(src_event)EV(IMAGES_READY), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.postcopy, SRC_PC_SERVING);
        assert_int_equal(next.stream, SRC_STREAM_SENDING);
        s = next;
        assert_int_equal(src_step(&s, &(src_event)EV(IMAGES_READY), &next, &acts), HANDOFF_IGNORED);
        /* Held stopped: the commit ends them (and a failed COMMITTED write
         * takes that back), a resume releases them. */
        s = (src_state)ST(DUMPING, READY);
        assert_int_equal(src_step(&s, &(src_event)EV(DUMP_OK, .held = true), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.hold, SRC_HOLD_STOPPED);
        s = (src_state)ST(DUMPING, READY, PC(PENDING));
        assert_int_equal(src_step(&s, &(src_event)EV(IMAGES_READY), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.hold, SRC_HOLD_NONE);
        s = (src_state)ST(RESTORING, READY, HOLD(STOPPED));
        assert_int_equal(src_step(&s, &(src_event)EV(RESTORED), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.hold, SRC_HOLD_ENDED);
        s = next;
        assert_int_equal(src_step(&s, &(src_event)EV(JOURNAL_FAILED), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.hold, SRC_HOLD_STOPPED);
        s = next;
        assert_int_equal(src_step(&s, &(src_event)EV(RESUMED), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.hold, SRC_HOLD_NONE);
        assert_int_equal(next.phase, SRC_ROLLED_BACK);
        s = (src_state)ST(ROLLING_BACK, HOLD(STOPPED));
        assert_int_equal(src_step(&s, &(src_event)EV(ROLLBACK_OK), &next, &acts), HANDOFF_REFUSED);
        /* A new migration: post-copy or not. */
        assert_int_equal(src_state_new(true).postcopy, SRC_PC_PENDING);
        assert_int_equal(src_state_new(false).postcopy, SRC_PC_OFF);
        assert_int_equal(src_state_from_journal(SRC_COMMITTED).postcopy, SRC_PC_OFF);
}

static void test_outcome_and_parking(void **state) {
        (void)state;
        for (int p = 0; p < _SRC_PHASE_MAX; p++) {
                handoff_outcome o = src_outcome_of((src_phase)p);
                bool committed = p == SRC_COMMITTED || p == SRC_DONE || p == SRC_LOST;
                assert_int_equal(o, committed ? HANDOFF_OUTCOME_COMMITTED : HANDOFF_OUTCOME_ABORTED);
        }
        assert_int_equal(src_outcome_of(_SRC_PHASE_INVALID), HANDOFF_OUTCOME_UNKNOWN);
        /* Only a committed source waits for as long as it takes, and not
         * while CRIU's lazy dump holds its tasks. */
        for (int p = 0; p < _SRC_PHASE_MAX; p++)
                for (int pc = 0; pc < _SRC_PC_MAX; pc++) {
                        src_state s = {.phase = (src_phase)p, .postcopy = (src_postcopy)pc};
                        bool holds = pc == SRC_PC_SERVING || pc == SRC_PC_RESUMING || pc == SRC_PC_CUT ||
                                     pc == SRC_PC_TARGET_LOST || pc == SRC_PC_RUNNING_HEARD;
                        assert_int_equal(src_parkable(&s), p == SRC_COMMITTED && !holds);
                }
        assert_int_equal(handoff_backoff_ms(0, 500, 10000), 500);
        assert_int_equal(handoff_backoff_ms(1, 500, 10000), 1000);
        assert_int_equal(handoff_backoff_ms(4, 500, 10000), 8000);
        assert_int_equal(handoff_backoff_ms(5, 500, 10000), 10000);
        assert_int_equal(handoff_backoff_ms(1000, 500, 10000), 10000);
}

/* ---- every state, every event ---- */

static bool precommit(src_phase p) {
        return p == SRC_PRECHECK || p == SRC_DUMPING || p == SRC_DUMPED || p == SRC_STREAMING ||
               p == SRC_RESTORING;
}

static bool only_kinds(const src_actions *a, const src_action_kind *ok, size_t n) {
        for (size_t i = 0; i < a->n; i++) {
                bool found = false;
                for (size_t j = 0; j < n; j++)
                        found = found || a->v[i].kind == ok[j];
                if (!found)
                        return false;
        }
        return true;
}

/* What must hold after any step, whatever the rule. */
static void check_step(const src_state *s, const src_event *ev, handoff_verdict v, const src_state *n,
                       const src_actions *a) {
        char text[ACTS_TEXT_MAX];
        int i;

        src_acts_text(a, text);
#define CHECK(cond)                                                                                         \
        do {                                                                                                \
                if (!(cond))                                                                                \
                        fail_msg("%s in %s (postcopy %s, hold %s, link %s, stream %s, failures %u, "        \
                                 "tries %u%s): %s, now %s, \"%s\": %s",                                     \
                                 src_event_to_string(ev->kind), src_phase_to_string(s->phase),              \
                                 src_postcopy_to_string(s->postcopy), src_hold_to_string(s->hold),          \
                                 src_link_to_string(s->link), src_stream_to_string(s->stream),              \
                                 s->rollback_failures, s->forward_tries, ev->settled ? "" : ", busy",       \
                                 handoff_verdict_to_string(v), src_phase_to_string(n->phase), text, #cond); \
        } while (0)

        CHECK(v == HANDOFF_TAKEN || v == HANDOFF_IGNORED || v == HANDOFF_REFUSED);
        /* Nothing half-happens. */
        if (v != HANDOFF_TAKEN) {
                CHECK(a->n == 0);
                CHECK(memcmp(s, n, sizeof(*s)) == 0);
                return;
        }
        /* The list fits (the cap would cut it). */
        CHECK(a->n < SRC_ACTIONS_MAX);
        /* A new phase is journaled in the same list. */
        CHECK(n->phase == s->phase || src_find(a, SRC_DO_JOURNAL, n->phase) >= 0);
        /* Final stays final. */
        if (src_phase_is_final(s->phase)) {
                static const src_action_kind ok[] = {SRC_DO_ANSWER, SRC_DO_NOTE_FAILURE, SRC_DO_CLOSE_LINK,
                                                     SRC_DO_FINISH};
                CHECK(n->phase == s->phase);
                CHECK(only_kinds(a, ok, ARRAY_SIZE(ok)));
        }
        /* FINISH ends a list, in a final phase. */
        i = src_find(a, SRC_DO_FINISH, -1);
        CHECK(i < 0 || (i == (int)a->n - 1 && src_phase_is_final(n->phase)));
        /* After COMMITTED (on disk) never a rollback, but for a target that
         * holds no copy and never resumed one. */
        if (s->phase == SRC_COMMITTED && n->phase == SRC_ROLLING_BACK)
                CHECK((ev->kind == SRC_EV_PEER_ERROR && ev->code == -ESRCH && s->postcopy == SRC_PC_OFF) ||
                      ev->kind == SRC_EV_JOURNAL_FAILED);
        if (s->phase == SRC_DONE)
                CHECK(n->phase == SRC_DONE);
        /* Journal before effect. */
        i = src_find(a, SRC_DO_SEND_COMMIT, -1);
        CHECK(i < 0 || s->phase == SRC_COMMITTED ||
              (src_find(a, SRC_DO_JOURNAL, SRC_COMMITTED) >= 0 &&
               src_find(a, SRC_DO_JOURNAL, SRC_COMMITTED) < i));
        i = src_find(a, SRC_DO_START_DUMP, -1);
        CHECK(i < 0 || (src_find(a, SRC_DO_JOURNAL, SRC_DUMPING) >= 0 &&
                        src_find(a, SRC_DO_JOURNAL, SRC_DUMPING) < i));
        i = src_find(a, SRC_DO_SEND_RESTORE, -1);
        CHECK(i < 0 || (src_find(a, SRC_DO_JOURNAL, SRC_RESTORING) >= 0 &&
                        src_find(a, SRC_DO_JOURNAL, SRC_RESTORING) < i));
        i = src_find(a, SRC_DO_START_STREAM, -1);
        CHECK(i < 0 ||
              (src_find(a, SRC_DO_JOURNAL, SRC_DUMPED) >= 0 && src_find(a, SRC_DO_JOURNAL, SRC_DUMPED) < i));
        i = src_find(a, SRC_DO_START_ROLLBACK, -1);
        CHECK(i < 0 || s->phase == SRC_ROLLING_BACK ||
              (src_find(a, SRC_DO_JOURNAL, SRC_ROLLING_BACK) >= 0 &&
               src_find(a, SRC_DO_JOURNAL, SRC_ROLLING_BACK) < i));
        /* Our images go only once the container runs somewhere for sure. */
        if (src_find(a, SRC_DO_REMOVE_IMAGES, -1) >= 0)
                CHECK(n->phase == SRC_DONE || n->phase == SRC_ROLLED_BACK ||
                      (n->phase == SRC_FAILED && ev->kind == SRC_EV_RECOVER));
        /* Held tasks resume only in a rollback, and end only at the commit
         * (before COMMIT goes out) or when their resume failed. */
        i = src_find(a, SRC_DO_RESUME_HELD, -1);
        CHECK(i < 0 ||
              (n->phase == SRC_ROLLING_BACK && n->hold == SRC_HOLD_STOPPED &&
               (s->phase == SRC_ROLLING_BACK || (src_find(a, SRC_DO_JOURNAL, SRC_ROLLING_BACK) >= 0 &&
                                                 src_find(a, SRC_DO_JOURNAL, SRC_ROLLING_BACK) < i))));
        i = src_find(a, SRC_DO_END_HELD, -1);
        CHECK(i < 0 || ev->kind == SRC_EV_RESUME_FAILED ||
              (n->phase == SRC_COMMITTED &&
               (s->phase == SRC_COMMITTED || (src_find(a, SRC_DO_JOURNAL, SRC_COMMITTED) >= 0 &&
                                              src_find(a, SRC_DO_JOURNAL, SRC_COMMITTED) < i))));
        if (i >= 0 && src_find(a, SRC_DO_SEND_COMMIT, -1) >= 0)
                CHECK(i < src_find(a, SRC_DO_SEND_COMMIT, -1));
        /* Never a restore from our images beside tasks held here. */
        if (src_find(a, SRC_DO_START_ROLLBACK, -1) >= 0)
                CHECK(n->hold != SRC_HOLD_STOPPED);
        /* COMMIT never goes out while tasks are held stopped here. */
        if (src_find(a, SRC_DO_SEND_COMMIT, -1) >= 0)
                CHECK(n->hold != SRC_HOLD_STOPPED);
        /* Our resumed copy is killed only when the target's runs. */
        if (src_find(a, SRC_DO_KILL_COPY, -1) >= 0)
                CHECK(s->phase == SRC_COMMITTED);
        /* ABORT goes only on a live link, and never after COMMITTED. */
        if (src_find(a, SRC_DO_SEND_ABORT, -1) >= 0)
                CHECK(s->link == SRC_LINK_READY &&
                      (precommit(s->phase) || ev->kind == SRC_EV_JOURNAL_FAILED));
        /* Answers: "committed" only from a committed phase; "aborted" only
         * when this step makes committing impossible. */
        i = src_find(a, SRC_DO_ANSWER, -1);
        CHECK(i < 0 || ev->kind == SRC_EV_QUERY);
        if (i >= 0 && a->v[i].outcome == HANDOFF_OUTCOME_COMMITTED)
                CHECK(ev->settled &&
                      (s->phase == SRC_COMMITTED || s->phase == SRC_DONE || s->phase == SRC_LOST));
        if (i >= 0 && a->v[i].outcome == HANDOFF_OUTCOME_ABORTED)
                CHECK(ev->settled && n->phase != SRC_COMMITTED && n->phase != SRC_DONE &&
                      n->link == SRC_LINK_NONE &&
                      (src_phase_is_final(n->phase) || n->phase == SRC_ROLLING_BACK ||
                       (n->phase == SRC_DUMPING && src_find(a, SRC_DO_CANCEL_DUMP, -1) >= 0)));
        if (ev->kind == SRC_EV_QUERY && !ev->settled)
                CHECK(a->n == 1 && a->v[0].outcome == HANDOFF_OUTCOME_UNKNOWN &&
                      memcmp(s, n, sizeof(*s)) == 0);
#undef CHECK
}

/* States a migration can be in: post-copy sub-states and the stream
 * belong to phases. (The walk gives the others every event too, and checks
 * that nothing half-happens.) */
static bool consistent(const src_state *s) {
        switch (s->postcopy) {
        case SRC_PC_OFF: break;
        case SRC_PC_PENDING:
                if (s->phase != SRC_PRECHECK && s->phase != SRC_DUMPING && !src_phase_is_final(s->phase))
                        return false;
                break;
        case SRC_PC_SERVING:
                if (s->phase != SRC_DUMPED && s->phase != SRC_STREAMING && s->phase != SRC_RESTORING &&
                    s->phase != SRC_COMMITTED)
                        return false;
                break;
        case SRC_PC_RESUMING:
                if (s->phase != SRC_ROLLING_BACK)
                        return false;
                break;
        case SRC_PC_CUT:
        case SRC_PC_TARGET_LOST:
        case SRC_PC_RUNNING_HEARD:
                if (s->phase != SRC_COMMITTED)
                        return false;
                break;
        case SRC_PC_RETURNED:
                if (s->phase == SRC_PRECHECK || s->phase == SRC_DUMPING)
                        return false;
                break;
        case _SRC_PC_MAX:
        case _SRC_PC_INVALID: return false;
        }
        if (s->stream != SRC_STREAM_NONE && s->phase != SRC_STREAMING)
                return false;
        /* Tasks are held from a good dump (not post-copy) until the commit
         * ends them or a rollback resumes them. */
        if (s->hold == SRC_HOLD_STOPPED &&
            (s->postcopy != SRC_PC_OFF || s->phase == SRC_PRECHECK || s->phase == SRC_DUMPING ||
             s->phase == SRC_COMMITTED || src_phase_is_final(s->phase)))
                return false;
        if (s->hold == SRC_HOLD_ENDED && (s->postcopy != SRC_PC_OFF || precommit(s->phase)))
                return false;
        /* Links open in PRECHECK and COMMITTED; rollbacks and ends close
         * them. */
        if (s->link == SRC_LINK_OPENING && s->phase != SRC_PRECHECK && s->phase != SRC_COMMITTED)
                return false;
        if (s->link == SRC_LINK_READY && !precommit(s->phase) && s->phase != SRC_COMMITTED)
                return false;
        if (s->rollback_failures >= SRC_ROLLBACK_ATTEMPTS)
                return false;
        if (s->rollback_failures && s->phase != SRC_ROLLING_BACK)
                return false;
        return true;
}

/* (phase, event) pairs the core takes in some state: the table must have a
 * row for each. */
static bool taken[_SRC_PHASE_MAX][_SRC_EVENT_MAX];

static void walk_one(const src_state *s, const src_event *ev) {
        src_state n;
        src_actions a;
        handoff_verdict v = src_step(s, ev, &n, &a);

        if (!consistent(s)) {
                assert_true(v == HANDOFF_TAKEN || v == HANDOFF_IGNORED || v == HANDOFF_REFUSED);
                assert_true(a.n < SRC_ACTIONS_MAX);
                if (v != HANDOFF_TAKEN)
                        assert_true(a.n == 0 && memcmp(s, &n, sizeof(n)) == 0);
                return;
        }
        check_step(s, ev, v, &n, &a);
        if (v == HANDOFF_TAKEN)
                taken[s->phase][ev->kind] = true;
}

static void walk_events(const src_state *s, size_t *steps) {
        static const int codes[] = {0, -EIO, -ESRCH};
        size_t n = (size_t)_SRC_EVENT_MAX * ARRAY_SIZE(codes) * _SRC_TREE_MAX * 2 * 2;

        for (size_t i = 0; i < n; i++) {
                size_t k = i;
                src_event ev = {.kind = (src_event_kind)digit(&k, _SRC_EVENT_MAX)};
                ev.code = codes[digit(&k, ARRAY_SIZE(codes))];
                ev.tree = (src_tree)digit(&k, _SRC_TREE_MAX);
                ev.held = digit(&k, 2);
                ev.settled = digit(&k, 2);
                walk_one(s, &ev);
                (*steps)++;
        }
}

static void test_every_pair(void **state) {
        static const unsigned counts[] = {0, 1, 2, 3, 9};
        size_t n = (size_t)_SRC_PHASE_MAX * _SRC_PC_MAX * _SRC_HOLD_MAX * _SRC_LINK_MAX * _SRC_STREAM_MAX *
                   ARRAY_SIZE(counts) * ARRAY_SIZE(counts);
        size_t steps = 0, missing = 0;
        (void)state;

        for (size_t i = 0; i < n; i++) {
                size_t k = i;
                src_state s = {.phase = (src_phase)digit(&k, _SRC_PHASE_MAX)};
                s.postcopy = (src_postcopy)digit(&k, _SRC_PC_MAX);
                s.hold = (src_hold)digit(&k, _SRC_HOLD_MAX);
                s.link = (src_link)digit(&k, _SRC_LINK_MAX);
                s.stream = (src_stream)digit(&k, _SRC_STREAM_MAX);
                s.rollback_failures = counts[digit(&k, ARRAY_SIZE(counts))];
                s.forward_tries = counts[digit(&k, ARRAY_SIZE(counts))];
                walk_events(&s, &steps);
        }
        assert_true(steps > 100000);
        for (int p = 0; p < _SRC_PHASE_MAX; p++)
                for (int e = 0; e < _SRC_EVENT_MAX; e++) {
                        bool listed = false;
                        if (!taken[p][e])
                                continue;
                        for (size_t i = 0; i < ARRAY_SIZE(rows) && !listed; i++)
                                listed = (int)rows[i].s.phase == p && (int)rows[i].ev.kind == e;
                        if (!listed) {
                                print_error("no row for %s in %s, which the core takes\n",
                                            src_event_to_string((src_event_kind)e),
                                            src_phase_to_string((src_phase)p));
                                missing++;
                        }
                }
        assert_int_equal(missing, 0);
}

/* Every name is there: logs and tables never print "(null)". */
static void test_names(void **state) {
        (void)state;
        for (int i = 0; i < _SRC_EVENT_MAX; i++)
                assert_non_null(src_event_to_string((src_event_kind)i));
        for (int i = 0; i < _SRC_ACTION_MAX; i++)
                assert_non_null(src_action_to_string((src_action_kind)i));
        for (int i = 0; i < _SRC_WHY_MAX; i++)
                assert_non_null(src_why_to_string((src_why)i));
        for (int i = 0; i < _SRC_PC_MAX; i++)
                assert_non_null(src_postcopy_to_string((src_postcopy)i));
        for (int i = 0; i < _SRC_LINK_MAX; i++)
                assert_non_null(src_link_to_string((src_link)i));
        for (int i = 0; i < _SRC_HOLD_MAX; i++)
                assert_non_null(src_hold_to_string((src_hold)i));
        for (int i = 0; i < _SRC_TREE_MAX; i++)
                assert_non_null(src_tree_to_string((src_tree)i));
        for (int i = 0; i < _SRC_STREAM_MAX; i++)
                assert_non_null(src_stream_to_string((src_stream)i));
        for (int i = 0; i < _HANDOFF_VERDICT_MAX; i++)
                assert_non_null(handoff_verdict_to_string((handoff_verdict)i));
        assert_null(src_event_to_string(_SRC_EVENT_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_transitions),
                cmocka_unit_test(test_state_carried),
                cmocka_unit_test(test_outcome_and_parking),
                cmocka_unit_test(test_every_pair),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
