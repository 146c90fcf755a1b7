/* SPDX-License-Identifier: Apache-2.0 */
/* The destination's rules (agent/core/handoff-dst.c), without root, CRIU or
 * SSH: a table row for every (phase, event) the core takes, and a walk of
 * every state with every event checking what must always hold (see
 * test-handoff-src.c). Above all: a stopped copy is resumed only on COMMIT
 * or "committed", killed only on an abort, and never on a guess. */
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
        { .phase = DST_##ph, __VA_ARGS__ }
/* What a restart finds (dst_state_from_journal). */
#define JOURNALED .session = DST_SESSION_LOST, .sink = DST_SINK_OVER
#define OPEN .sink = DST_SINK_OPEN
#define OVER .sink = DST_SINK_OVER
#define STOPPED .copy = DST_COPY_STOPPED
#define RUNS .copy = DST_COPY_RUNNING
#define GONE .session = DST_SESSION_LOST
#define PC(x) .postcopy = DST_PC_##x
#define ASK(x) .ask = DST_ASK_##x
#define EV(k, ...) \
        { .kind = DST_EV_##k, __VA_ARGS__ }
#define FAILED_TO(p) EV(JOURNAL_FAILED, .phase = DST_##p)

typedef struct row {
        dst_state s;
        dst_event ev;
        dst_phase phase; /* after the step */
        const char *acts;
} row;

#define END "release journal(aborted) detach-session finish"
#define DISCARD(why) "note-discard(" why ") stop-sink remove-staging " END
#define DISCARD_COPY(why) "note-discard(" why ") stop-sink kill-copy remove-staging " END
#define RUNS_HERE \
        "resume-copy write-state journal(running) send-RUNNING remove-staging detach-session finish"

static const row rows[] = {
        /* OFFER: journaled, the sink open, then ACCEPT (the source may dump) */
        {ST(RECEIVING), EV(OFFER), DST_RECEIVING, "journal(receiving) start-sink send-ACCEPT"},

        /* RECOVER: what the journal says (dst_recovery_for) */
        {ST(RECEIVING, JOURNALED), EV(RECOVER), DST_ABORTED, DISCARD("stopped-before-restored")},
        {ST(VERIFIED, JOURNALED), EV(RECOVER), DST_ABORTED, DISCARD("stopped-before-restored")},
        {ST(RESTORING, JOURNALED), EV(RECOVER), DST_ABORTED, DISCARD("stopped-before-restored")},
        {ST(RESTORED, JOURNALED, STOPPED), EV(RECOVER, .copy_alive = true), DST_IN_DOUBT,
         "journal(in-doubt) open-ask"},
        {ST(RESTORED, JOURNALED, STOPPED), EV(RECOVER), DST_ABORTED, DISCARD("copy-vanished")},
        {ST(IN_DOUBT, JOURNALED, STOPPED), EV(RECOVER, .copy_alive = true), DST_IN_DOUBT, "open-ask"},
        {ST(IN_DOUBT, JOURNALED, STOPPED), EV(RECOVER), DST_ABORTED, DISCARD("copy-vanished")},
        {ST(RUNNING, JOURNALED, RUNS), EV(RECOVER, .copy_alive = true), DST_RUNNING,
         "remove-staging finish"},
        /* Resumed while its pages still arrived: the daemon died with us. */
        {ST(RUNNING, JOURNALED, RUNS, PC(RESUMED)), EV(RECOVER, .copy_alive = true), DST_ABORTED,
         "note(stopped-in-postcopy) kill-copy remove-state remove-staging " END},
        {ST(ABORTED, JOURNALED), EV(RECOVER), DST_ABORTED, "finish"},

        /* the images */
        {ST(RECEIVING, OPEN), EV(SINK_FAILED), DST_ABORTED, "note(event) send-REJECT " END},
        {ST(RECEIVING, OPEN), EV(RECEIVED), DST_VERIFIED, "journal(verified) send-VERIFIED"},
        {ST(RECEIVING, OPEN), EV(RECEIVE_FAILED), DST_ABORTED, "note(event) send-ERROR(0) " END},
        {ST(RECEIVING, OPEN), EV(RECEIVED_UNUSABLE), DST_ABORTED,
         "note(event) send-ERROR(0) " DISCARD("unusable-images")},

        /* RESTORE: only once verified */
        {ST(VERIFIED, OVER), EV(RESTORE), DST_RESTORING, "journal(dest-restoring) start-restore"},
        {ST(RECEIVING, OPEN), EV(RESTORE), DST_RECEIVING, "refuse-RESTORE"},
        {ST(RESTORING, OVER), EV(RESTORE), DST_RESTORING, "refuse-RESTORE"},
        {ST(RESTORED, OVER, STOPPED), EV(RESTORE), DST_RESTORED, "refuse-RESTORE"},
        {ST(IN_DOUBT, OVER, STOPPED, GONE), EV(RESTORE), DST_IN_DOUBT, "refuse-RESTORE"},
        {ST(RUNNING, OVER, RUNS, PC(RESUMED)), EV(RESTORE), DST_RUNNING, "refuse-RESTORE"},
        {ST(ABORTED, OVER, GONE), EV(RESTORE), DST_ABORTED, "refuse-RESTORE"},

        /* CRIU's restore */
        {ST(RESTORING, OVER), EV(RESTORE_OK), DST_RESTORED, "journal(restored) send-RESTORED"},
        /* the source left while CRIU was busy: hold the copy, ask */
        {ST(RESTORING, OVER, GONE), EV(RESTORE_OK), DST_IN_DOUBT,
         "journal(restored) journal(in-doubt) open-ask"},
        {ST(RESTORING, OVER, .session = DST_SESSION_ABORTED), EV(RESTORE_OK), DST_ABORTED,
         "journal(restored) " DISCARD_COPY("aborted-in-restore")},
        {ST(RESTORING, OVER, PC(FAILED)), EV(RESTORE_OK), DST_ABORTED,
         "send-ERROR(0) " DISCARD_COPY("postcopy-in-restore")},
        {ST(RESTORING, OVER), EV(RESTORE_FAILED), DST_ABORTED,
         "note(event) send-ERROR(0) " DISCARD("restore-failed")},

        /* post-copy: the lazy-pages daemon's end */
        {ST(RESTORING, OVER, PC(PENDING)), EV(PAGES_COMPLETE), DST_RESTORING, ""},
        {ST(RESTORED, OVER, STOPPED, PC(PENDING)), EV(PAGES_COMPLETE), DST_RESTORED, ""},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, PC(PENDING)), EV(PAGES_COMPLETE), DST_IN_DOUBT, ""},
        {ST(RUNNING, OVER, RUNS, PC(RESUMED)), EV(PAGES_COMPLETE), DST_RUNNING,
         "send-RUNNING remove-staging detach-session finish"},
        {ST(RESTORING, OVER, PC(PENDING)), EV(PAGES_FAILED), DST_RESTORING, "note(event)"},
        {ST(RESTORED, OVER, STOPPED, PC(PENDING)), EV(PAGES_FAILED), DST_ABORTED,
         "note(event) send-ERROR(-5) " DISCARD_COPY("postcopy-before-commit")},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, PC(PENDING)), EV(PAGES_FAILED), DST_ABORTED,
         "note(event) send-ERROR(-5) " DISCARD_COPY("postcopy-before-commit")},
        /* It ran on memory that will never be complete: end it. */
        {ST(RUNNING, OVER, RUNS, PC(RESUMED)), EV(PAGES_FAILED), DST_ABORTED,
         "note(event) kill-copy remove-state send-ERROR(-5) remove-staging " END},

        /* COMMIT */
        {ST(RESTORED, OVER, STOPPED), EV(COMMIT), DST_RUNNING, "drop-ask " RUNS_HERE},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(OPENING)), EV(COMMIT), DST_RUNNING, "drop-ask " RUNS_HERE},
        {ST(RESTORED, OVER, STOPPED, PC(PENDING)), EV(COMMIT), DST_RUNNING,
         "drop-ask resume-copy write-state journal(running)"},
        {ST(RESTORED, OVER, STOPPED, PC(COMPLETE)), EV(COMMIT), DST_RUNNING, "drop-ask " RUNS_HERE},
        {ST(RESTORED, OVER, STOPPED, PC(FAILED)), EV(COMMIT), DST_ABORTED,
         "drop-ask send-ERROR(-5) " DISCARD_COPY("postcopy-before-resume")},
        {ST(RECEIVING, OPEN), EV(COMMIT), DST_RECEIVING, "refuse-COMMIT"},
        {ST(VERIFIED, OVER), EV(COMMIT), DST_VERIFIED, "refuse-COMMIT"},
        {ST(RESTORING, OVER), EV(COMMIT), DST_RESTORING, "refuse-COMMIT"},
        {ST(RUNNING, OVER, RUNS, PC(RESUMED)), EV(COMMIT), DST_RUNNING, "refuse-COMMIT"},
        {ST(ABORTED, OVER, GONE), EV(COMMIT), DST_ABORTED, "refuse-COMMIT"},
        /* The copy vanished: the committed source hears -ESRCH and restores
         * its own images. */
        {ST(RUNNING, OVER, RUNS), EV(RESUME_FAILED), DST_ABORTED,
         "note(event) send-ERROR(-3) " DISCARD("no-copy")},

        /* ABORT */
        {ST(RECEIVING, OPEN), EV(PEER_ABORT), DST_ABORTED, "note(event) " DISCARD("source-aborted")},
        {ST(VERIFIED, OVER), EV(PEER_ABORT), DST_ABORTED, "note(event) " DISCARD("source-aborted")},
        {ST(RESTORING, OVER), EV(PEER_ABORT), DST_RESTORING, "note(event) detach-session cancel-restore"},
        {ST(RESTORED, OVER, STOPPED), EV(PEER_ABORT), DST_ABORTED,
         "note(event) " DISCARD_COPY("source-aborted")},
        {ST(IN_DOUBT, OVER, STOPPED, GONE), EV(PEER_ABORT), DST_ABORTED,
         "note(event) " DISCARD_COPY("source-aborted")},

        /* the source's session ends */
        {ST(RECEIVING, OPEN), EV(SESSION_LOST), DST_ABORTED, "note(event) " DISCARD("source-left")},
        {ST(VERIFIED, OVER), EV(SESSION_LOST), DST_ABORTED, "note(event) " DISCARD("source-left")},
        {ST(RESTORING, OVER), EV(SESSION_LOST), DST_RESTORING, ""},
        {ST(RESTORED, OVER, STOPPED), EV(SESSION_LOST), DST_IN_DOUBT, "journal(in-doubt) open-ask"},
        {ST(RUNNING, OVER, RUNS, PC(RESUMED)), EV(SESSION_LOST), DST_RUNNING, "drop-relay"},

        /* in doubt: asking */
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(OPENING)), EV(ASK_READY), DST_IN_DOUBT, "send-QUERY"},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(OPENING)), EV(ASK_LOST), DST_IN_DOUBT, "ask-later(500)"},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(READY), .ask_tries = 3), EV(ASK_LOST), DST_IN_DOUBT,
         "ask-later(4000)"},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(READY)), EV(OUTCOME, .outcome = HANDOFF_OUTCOME_COMMITTED),
         DST_RUNNING, "drop-ask " RUNS_HERE},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(READY)), EV(OUTCOME, .outcome = HANDOFF_OUTCOME_ABORTED),
         DST_ABORTED,
         "note-discard(source-aborted) stop-sink kill-copy remove-staging release journal(aborted) drop-ask "
         "detach-session finish"},
        /* Never guess: keep the copy stopped and ask again. */
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(READY), .ask_tries = 9),
         EV(OUTCOME, .outcome = HANDOFF_OUTCOME_UNKNOWN), DST_IN_DOUBT, "drop-ask ask-later(10000)"},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, .ask_tries = 1), EV(TIMER), DST_IN_DOUBT, "open-ask"},
        /* resolve: the operator's decision, whether a question is out or not */
        {ST(IN_DOUBT, OVER, STOPPED, GONE, .ask_tries = 2),
         EV(RESOLVED, .outcome = HANDOFF_OUTCOME_COMMITTED), DST_RUNNING, "drop-ask " RUNS_HERE},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(OPENING)), EV(RESOLVED, .outcome = HANDOFF_OUTCOME_ABORTED),
         DST_ABORTED,
         "drop-ask note-discard(resolved) stop-sink kill-copy remove-staging release journal(aborted) "
         "detach-session finish"},
        {ST(IN_DOUBT, OVER, STOPPED, GONE), EV(RESOLVED, .outcome = HANDOFF_OUTCOME_ABORTED), DST_ABORTED,
         "note-discard(resolved) stop-sink kill-copy remove-staging release journal(aborted) detach-session "
         "finish"},

        /* a journal write that failed */
        {ST(RECEIVING, OPEN), FAILED_TO(RECEIVING), DST_ABORTED, "note(event) send-REJECT " END},
        {ST(VERIFIED, OVER), FAILED_TO(VERIFIED), DST_ABORTED,
         "note(event) send-ERROR(0) " DISCARD("cannot-journal")},
        {ST(RESTORING, OVER), FAILED_TO(RESTORING), DST_ABORTED,
         "note(event) send-ERROR(0) " DISCARD("cannot-journal")},
        {ST(RESTORED, OVER, STOPPED), FAILED_TO(RESTORED), DST_ABORTED,
         "note(event) send-ERROR(0) " DISCARD_COPY("cannot-journal")},
        /* RESTORED's write failed in a list that went on to IN_DOUBT, or to
         * a discard: we still hold the copy (nothing after the write ran). */
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(OPENING)), FAILED_TO(RESTORED), DST_ABORTED,
         "note(event) send-ERROR(0) " DISCARD_COPY("cannot-journal")},
        {ST(ABORTED, OVER, .session = DST_SESSION_LOST), FAILED_TO(RESTORED), DST_ABORTED,
         "note(event) send-ERROR(0) " DISCARD_COPY("cannot-journal")},
        {ST(IN_DOUBT, OVER, STOPPED, GONE, ASK(OPENING)), FAILED_TO(IN_DOUBT), DST_IN_DOUBT,
         "note(event) open-ask"},
        {ST(RUNNING, OVER, RUNS), FAILED_TO(RUNNING), DST_RUNNING,
         "note(event) send-RUNNING remove-staging detach-session finish"},
        {ST(RUNNING, OVER, RUNS, PC(RESUMED)), FAILED_TO(RUNNING), DST_RUNNING, "note(event)"},
        {ST(ABORTED, OVER, GONE), FAILED_TO(ABORTED), DST_ABORTED, "note(event) detach-session finish"},
};

static void test_transitions(void **state) {
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                const row *r = &rows[i];
                dst_state next;
                dst_actions acts;
                char got[ACTS_TEXT_MAX];
                handoff_verdict v = dst_step(&r->s, &r->ev, &next, &acts);

                dst_acts_text(&acts, got);
                if (v != HANDOFF_TAKEN || next.phase != r->phase || strcmp(got, r->acts) != 0)
                        fail_msg("row %zu: %s in %s (copy %s, session %s, postcopy %s): %s, now %s, \"%s\"; "
                                 "want "
                                 "%s, \"%s\"",
                                 i, dst_event_to_string(r->ev.kind), dst_phase_to_string(r->s.phase),
                                 dst_copy_to_string(r->s.copy), dst_session_to_string(r->s.session),
                                 dst_postcopy_to_string(r->s.postcopy), handoff_verdict_to_string(v),
                                 dst_phase_to_string(next.phase), got, dst_phase_to_string(r->phase),
                                 r->acts);
        }
}

static void test_state_carried(void **state) {
        dst_state s = ST(RESTORING, OVER), next;
        dst_actions acts;
        (void)state;

        /* ABORT during the restore: the session is done with, the restore
         * ends first, then the copy goes. */
        assert_int_equal(dst_step(&s, &(dst_event)EV(PEER_ABORT), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.session, DST_SESSION_ABORTED);
        s = next;
        assert_int_equal(dst_step(&s, &(dst_event)EV(SESSION_LOST), &next, &acts), HANDOFF_IGNORED);
        assert_int_equal(dst_step(&s, &(dst_event)EV(RESTORE_OK), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.phase, DST_ABORTED);
        assert_int_equal(next.copy, DST_COPY_NONE);
        /* COMMIT with pages still to come: resumed, RUNNING follows them. */
        s = (dst_state)ST(RESTORED, OVER, STOPPED, PC(PENDING));
        assert_int_equal(dst_step(&s, &(dst_event)EV(COMMIT), &next, &acts), HANDOFF_TAKEN);
        assert_int_equal(next.postcopy, DST_PC_RESUMED);
        assert_int_equal(next.copy, DST_COPY_RUNNING);
        assert_true(dst_parkable(&(dst_state)ST(IN_DOUBT)));
        assert_false(dst_parkable(&(dst_state)ST(RESTORED)));
        assert_true(dst_commit_finds_copy(DST_RUNNING));
        for (int p = 0; p < _DST_PHASE_MAX; p++)
                if (p != DST_RUNNING)
                        assert_false(dst_commit_finds_copy((dst_phase)p));
        /* What a restart finds. */
        s = dst_state_from_journal(DST_RUNNING, true);
        assert_int_equal(s.postcopy, DST_PC_RESUMED);
        assert_int_equal(s.copy, DST_COPY_RUNNING);
        s = dst_state_from_journal(DST_IN_DOUBT, false);
        assert_int_equal(s.copy, DST_COPY_STOPPED);
        assert_int_equal(s.session, DST_SESSION_LOST);
        assert_int_equal(dst_state_new(true).postcopy, DST_PC_PENDING);
}

/* ---- every state, every event ---- */

static bool consistent(const dst_state *s) {
        static const bool copy_ok[_DST_PHASE_MAX][_DST_COPY_MAX] = {
                [DST_RECEIVING] = {[DST_COPY_NONE] = true},   [DST_VERIFIED] = {[DST_COPY_NONE] = true},
                [DST_RESTORING] = {[DST_COPY_NONE] = true},   [DST_RESTORED] = {[DST_COPY_STOPPED] = true},
                [DST_IN_DOUBT] = {[DST_COPY_STOPPED] = true}, [DST_RUNNING] = {[DST_COPY_RUNNING] = true},
                [DST_ABORTED] = {[DST_COPY_NONE] = true},
        };
        bool before_resume = s->phase != DST_RUNNING && s->phase != DST_ABORTED;

        if (!copy_ok[s->phase][s->copy])
                return false;
        switch (s->postcopy) {
        case DST_PC_OFF: break;
        case DST_PC_PENDING:
                if (!before_resume)
                        return false;
                break;
        case DST_PC_RESUMED:
                if (s->phase != DST_RUNNING)
                        return false;
                break;
        case DST_PC_COMPLETE:
                if (s->phase == DST_RECEIVING || s->phase == DST_VERIFIED || s->phase == DST_ABORTED)
                        return false;
                break;
        case DST_PC_FAILED:
                if (s->phase == DST_RECEIVING || s->phase == DST_VERIFIED || s->phase == DST_RUNNING)
                        return false;
                break;
        case _DST_PC_MAX:
        case _DST_PC_INVALID: return false;
        }
        if (s->session == DST_SESSION_UP && !(before_resume && s->phase != DST_IN_DOUBT) &&
            !(s->phase == DST_RUNNING && s->postcopy == DST_PC_RESUMED))
                return false;
        if (s->session == DST_SESSION_ABORTED && s->phase != DST_RESTORING)
                return false;
        if (s->sink != DST_SINK_OVER && s->phase != DST_RECEIVING)
                return false;
        if ((s->ask != DST_ASK_NONE || s->ask_tries) && s->phase != DST_IN_DOUBT)
                return false;
        return true;
}

static bool guess_free(const dst_event *ev) {
        return ev->kind == DST_EV_SESSION_LOST || ev->kind == DST_EV_ASK_LOST ||
               ev->kind == DST_EV_ASK_READY || ev->kind == DST_EV_TIMER || ev->kind == DST_EV_RECOVER ||
               (ev->kind == DST_EV_OUTCOME && ev->outcome == HANDOFF_OUTCOME_UNKNOWN) ||
               (ev->kind == DST_EV_JOURNAL_FAILED && ev->phase == DST_IN_DOUBT);
}

static void check_step(const dst_state *s, const dst_event *ev, handoff_verdict v, const dst_state *n,
                       const dst_actions *a) {
        char text[ACTS_TEXT_MAX];
        int i, j;

        dst_acts_text(a, text);
#define CHECK(cond)                                                                                         \
        do {                                                                                                \
                if (!(cond))                                                                                \
                        fail_msg("%s (%s) in %s (copy %s, session %s, postcopy %s, sink %s, ask %s): %s, "  \
                                 "now %s, "                                                                 \
                                 "\"%s\": %s",                                                              \
                                 dst_event_to_string(ev->kind), dst_phase_to_string(ev->phase),             \
                                 dst_phase_to_string(s->phase), dst_copy_to_string(s->copy),                \
                                 dst_session_to_string(s->session), dst_postcopy_to_string(s->postcopy),    \
                                 dst_sink_to_string(s->sink), dst_ask_to_string(s->ask),                    \
                                 handoff_verdict_to_string(v), dst_phase_to_string(n->phase), text, #cond); \
        } while (0)

        CHECK(v == HANDOFF_TAKEN || v == HANDOFF_IGNORED || v == HANDOFF_REFUSED);
        if (v != HANDOFF_TAKEN) {
                CHECK(a->n == 0);
                CHECK(memcmp(s, n, sizeof(*s)) == 0);
                return;
        }
        CHECK(a->n < DST_ACTIONS_MAX);
        CHECK(n->phase == s->phase || dst_find(a, DST_DO_JOURNAL, n->phase) >= 0);
        if (s->phase == DST_ABORTED)
                CHECK(n->phase == DST_ABORTED);
        if (s->phase == DST_RUNNING && n->phase != DST_RUNNING)
                CHECK(n->phase == DST_ABORTED &&
                      ((ev->kind == DST_EV_PAGES_FAILED && s->postcopy == DST_PC_RESUMED) ||
                       ev->kind == DST_EV_RESUME_FAILED || ev->kind == DST_EV_RECOVER));
        i = dst_find(a, DST_DO_FINISH, -1);
        CHECK(i < 0 || (i == (int)a->n - 1 && dst_phase_is_final(n->phase)));
        /* The copy resumes only on COMMIT, or "committed" from the source. */
        if (dst_find(a, DST_DO_RESUME_COPY, -1) >= 0)
                CHECK((ev->kind == DST_EV_COMMIT ||
                       ((ev->kind == DST_EV_OUTCOME || ev->kind == DST_EV_RESOLVED) &&
                        ev->outcome == HANDOFF_OUTCOME_COMMITTED)) &&
                      s->copy == DST_COPY_STOPPED && s->postcopy != DST_PC_FAILED);
        /* A stopped copy is killed only when the source aborted, or it cannot
         * be the container (post-copy failed, or RESTORED not on disk). */
        if (dst_find(a, DST_DO_KILL_COPY, -1) >= 0 && s->copy == DST_COPY_STOPPED)
                CHECK(ev->kind == DST_EV_PEER_ABORT ||
                      ((ev->kind == DST_EV_OUTCOME || ev->kind == DST_EV_RESOLVED) &&
                       ev->outcome == HANDOFF_OUTCOME_ABORTED) ||
                      ev->kind == DST_EV_PAGES_FAILED ||
                      ((ev->kind == DST_EV_COMMIT || ev->kind == DST_EV_OUTCOME ||
                        ev->kind == DST_EV_RESOLVED) &&
                       s->postcopy == DST_PC_FAILED) ||
                      (ev->kind == DST_EV_JOURNAL_FAILED && ev->phase == DST_RESTORED));
        if (dst_find(a, DST_DO_KILL_COPY, -1) >= 0 && s->copy == DST_COPY_RUNNING)
                CHECK((ev->kind == DST_EV_PAGES_FAILED && s->postcopy == DST_PC_RESUMED) ||
                      (ev->kind == DST_EV_RECOVER && s->postcopy == DST_PC_RESUMED));
        /* Never guess: waiting, asking, losing the session change nothing
         * about a copy held. */
        if (guess_free(ev) && s->copy != DST_COPY_NONE && ev->kind != DST_EV_RECOVER)
                CHECK(n->copy == s->copy && dst_find(a, DST_DO_KILL_COPY, -1) < 0 &&
                      dst_find(a, DST_DO_RESUME_COPY, -1) < 0);
        if (ev->kind == DST_EV_RECOVER && ev->copy_alive && s->copy == DST_COPY_STOPPED)
                CHECK(n->copy == DST_COPY_STOPPED && n->phase == DST_IN_DOUBT);
        /* Journal before effect. */
        static const struct {
                dst_action_kind after;
                dst_phase journal;
        } order[] = {
                {DST_DO_SEND_ACCEPT, DST_RECEIVING},   {DST_DO_SEND_VERIFIED, DST_VERIFIED},
                {DST_DO_START_RESTORE, DST_RESTORING}, {DST_DO_SEND_RESTORED, DST_RESTORED},
                {DST_DO_OPEN_ASK, DST_IN_DOUBT},
        };
        for (size_t k = 0; k < ARRAY_SIZE(order); k++) {
                i = dst_find(a, order[k].after, -1);
                j = dst_find(a, DST_DO_JOURNAL, order[k].journal);
                CHECK(i < 0 || (j >= 0 && j < i) || s->phase == order[k].journal);
        }
        i = dst_find(a, DST_DO_SEND_RUNNING, -1);
        j = dst_find(a, DST_DO_JOURNAL, DST_RUNNING);
        CHECK(i < 0 || (j >= 0 && j < i) || s->phase == DST_RUNNING);
        /* The staging goes once the copy runs, or when we give up. */
        if (dst_find(a, DST_DO_REMOVE_STAGING, -1) >= 0)
                CHECK(n->phase == DST_ABORTED || (n->phase == DST_RUNNING && n->copy == DST_COPY_RUNNING));
#undef CHECK
}

static bool taken[_DST_PHASE_MAX][_DST_EVENT_MAX];

static void walk_one(const dst_state *s, const dst_event *ev) {
        dst_state n;
        dst_actions a;
        handoff_verdict v = dst_step(s, ev, &n, &a);

        if (!consistent(s)) {
                assert_true(v == HANDOFF_TAKEN || v == HANDOFF_IGNORED || v == HANDOFF_REFUSED);
                assert_true(a.n < DST_ACTIONS_MAX);
                if (v != HANDOFF_TAKEN)
                        assert_true(a.n == 0 && memcmp(s, &n, sizeof(n)) == 0);
                return;
        }
        check_step(s, ev, v, &n, &a);
        if (v == HANDOFF_TAKEN)
                taken[s->phase][ev->kind] = true;
}

static void walk_events(const dst_state *s, size_t *steps) {
        size_t n = (size_t)_DST_EVENT_MAX * _DST_PHASE_MAX * 2 * _HANDOFF_OUTCOME_MAX;

        for (size_t i = 0; i < n; i++) {
                size_t k = i;
                dst_event ev = {.kind = (dst_event_kind)digit(&k, _DST_EVENT_MAX)};
                ev.phase = (dst_phase)digit(&k, _DST_PHASE_MAX);
                ev.copy_alive = digit(&k, 2);
                ev.outcome = (handoff_outcome)digit(&k, _HANDOFF_OUTCOME_MAX);
                walk_one(s, &ev);
                (*steps)++;
        }
}

static void test_every_pair(void **state) {
        static const unsigned tries[] = {0, 1, 9};
        size_t n = (size_t)_DST_PHASE_MAX * _DST_PC_MAX * _DST_COPY_MAX * _DST_SESSION_MAX * _DST_SINK_MAX *
                   _DST_ASK_MAX * ARRAY_SIZE(tries);
        size_t steps = 0, missing = 0;
        (void)state;

        for (size_t i = 0; i < n; i++) {
                size_t k = i;
                dst_state s = {.phase = (dst_phase)digit(&k, _DST_PHASE_MAX)};
                s.postcopy = (dst_postcopy)digit(&k, _DST_PC_MAX);
                s.copy = (dst_copy)digit(&k, _DST_COPY_MAX);
                s.session = (dst_session)digit(&k, _DST_SESSION_MAX);
                s.sink = (dst_sink)digit(&k, _DST_SINK_MAX);
                s.ask = (dst_ask)digit(&k, _DST_ASK_MAX);
                s.ask_tries = tries[digit(&k, ARRAY_SIZE(tries))];
                walk_events(&s, &steps);
        }
        assert_true(steps > 100000);
        for (int p = 0; p < _DST_PHASE_MAX; p++)
                for (int e = 0; e < _DST_EVENT_MAX; e++) {
                        bool listed = false;
                        if (!taken[p][e])
                                continue;
                        for (size_t i = 0; i < ARRAY_SIZE(rows) && !listed; i++)
                                listed = (int)rows[i].s.phase == p && (int)rows[i].ev.kind == e;
                        if (!listed) {
                                print_error("no row for %s in %s, which the core takes\n",
                                            dst_event_to_string((dst_event_kind)e),
                                            dst_phase_to_string((dst_phase)p));
                                missing++;
                        }
                }
        assert_int_equal(missing, 0);
}

static void test_names(void **state) {
        (void)state;
        for (int i = 0; i < _DST_EVENT_MAX; i++)
                assert_non_null(dst_event_to_string((dst_event_kind)i));
        for (int i = 0; i < _DST_ACTION_MAX; i++)
                assert_non_null(dst_action_to_string((dst_action_kind)i));
        for (int i = 0; i < _DST_WHY_MAX; i++)
                assert_non_null(dst_why_to_string((dst_why)i));
        for (int i = 0; i < _DST_PC_MAX; i++)
                assert_non_null(dst_postcopy_to_string((dst_postcopy)i));
        for (int i = 0; i < _DST_COPY_MAX; i++)
                assert_non_null(dst_copy_to_string((dst_copy)i));
        for (int i = 0; i < _DST_SESSION_MAX; i++)
                assert_non_null(dst_session_to_string((dst_session)i));
        for (int i = 0; i < _DST_SINK_MAX; i++)
                assert_non_null(dst_sink_to_string((dst_sink)i));
        for (int i = 0; i < _DST_ASK_MAX; i++)
                assert_non_null(dst_ask_to_string((dst_ask)i));
}

/* resolve: every row a set of facts, what was asked, and the verdict. */
static void test_resolve(void **state) {
        enum { U = HANDOFF_FACT_UNKNOWN, N = HANDOFF_FACT_NO, Y = HANDOFF_FACT_YES };
        /* the copy there: unknown, none, running, held stopped */
        enum {
                CU = DST_SOURCE_COPY_UNKNOWN,
                CN = DST_SOURCE_COPY_NONE,
                CR = DST_SOURCE_COPY_RUNS,
                CH = DST_SOURCE_COPY_HELD
        };
        enum { C = HANDOFF_OUTCOME_COMMITTED, A = HANDOFF_OUTCOME_ABORTED, X = HANDOFF_OUTCOME_UNKNOWN };
        const struct {
                dst_phase phase;
                dst_copy copy;
                bool reached;
                handoff_outcome says;
                handoff_fact record;
                dst_source_copy there;
                dst_resolve_ask ask;
                bool force;
                dst_resolve_verdict verdict;
                handoff_outcome outcome;
                bool forced;
        } cases[] = {
                /* not in doubt: nothing to resolve, whatever is asked */
                {DST_RESTORED, DST_COPY_STOPPED, true, C, Y, CN, DST_RESOLVE_AUTO, false,
                 DST_RESOLVE_REFUSED, X},
                {DST_RUNNING, DST_COPY_RUNNING, true, C, Y, CN, DST_RESOLVE_COMMIT, true,
                 DST_RESOLVE_REFUSED, X},
                /* the source's journal decides */
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, C, Y, CN, DST_RESOLVE_AUTO, false,
                 DST_RESOLVE_DECIDED, C},
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, A, Y, CR, DST_RESOLVE_AUTO, false,
                 DST_RESOLVE_DECIDED, A},
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, C, Y, CN, DST_RESOLVE_COMMIT, false,
                 DST_RESOLVE_DECIDED, C},
                /* ... and is never overruled, forced or not */
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, C, Y, CN, DST_RESOLVE_ABORT, true,
                 DST_RESOLVE_REFUSED, X},
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, A, Y, CN, DST_RESOLVE_COMMIT, true,
                 DST_RESOLVE_REFUSED, X},
                /* no record there: a copy running there means abort, and a
                 * second copy is never started beside it */
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, N, CR, DST_RESOLVE_AUTO, false,
                 DST_RESOLVE_DECIDED, A},
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, N, CR, DST_RESOLVE_COMMIT, true,
                 DST_RESOLVE_REFUSED, X},
                /* no record and no copy there: ours is the only one */
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, N, CN, DST_RESOLVE_AUTO, false,
                 DST_RESOLVE_DECIDED, C},
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, N, CN, DST_RESOLVE_ABORT, false,
                 DST_RESOLVE_REFUSED, X},
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, N, CN, DST_RESOLVE_ABORT, true,
                 DST_RESOLVE_DECIDED, A, true},
                /* no record, and a copy held stopped there (its dump left it
                 * so): nothing there resumes it, ours runs; giving ours up
                 * takes force */
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, N, CH, DST_RESOLVE_AUTO, false,
                 DST_RESOLVE_DECIDED, C},
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, N, CH, DST_RESOLVE_ABORT, false,
                 DST_RESOLVE_REFUSED, X},
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, N, CH, DST_RESOLVE_ABORT, true,
                 DST_RESOLVE_DECIDED, A, true},
                /* a held copy is not a running one: with a record there, the
                 * source is mid-step (before, a held native container read as
                 * running, and resolve aborted while the source might commit) */
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, Y, CH, DST_RESOLVE_AUTO, false,
                 DST_RESOLVE_UNDECIDED, X},
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, Y, CH, DST_RESOLVE_ABORT, false,
                 DST_RESOLVE_UNDECIDED, X},
                /* the source is mid-step: wait, unless forced */
                {DST_IN_DOUBT, DST_COPY_STOPPED, true, X, Y, CN, DST_RESOLVE_AUTO, false,
                 DST_RESOLVE_UNDECIDED, X},
                /* the source cannot be reached: only a forced, explicit decision */
                {DST_IN_DOUBT, DST_COPY_STOPPED, false, X, U, CU, DST_RESOLVE_AUTO, false,
                 DST_RESOLVE_UNDECIDED, X},
                {DST_IN_DOUBT, DST_COPY_STOPPED, false, X, U, CU, DST_RESOLVE_AUTO, true,
                 DST_RESOLVE_UNDECIDED, X},
                {DST_IN_DOUBT, DST_COPY_STOPPED, false, X, U, CU, DST_RESOLVE_COMMIT, false,
                 DST_RESOLVE_UNDECIDED, X},
                {DST_IN_DOUBT, DST_COPY_STOPPED, false, X, U, CU, DST_RESOLVE_COMMIT, true,
                 DST_RESOLVE_DECIDED, C, true},
                {DST_IN_DOUBT, DST_COPY_STOPPED, false, X, U, CU, DST_RESOLVE_ABORT, true,
                 DST_RESOLVE_DECIDED, A, true},
                /* our copy is gone: abort is all there is */
                {DST_IN_DOUBT, DST_COPY_NONE, false, X, U, CU, DST_RESOLVE_AUTO, false, DST_RESOLVE_DECIDED,
                 A},
                {DST_IN_DOUBT, DST_COPY_NONE, true, C, Y, CN, DST_RESOLVE_COMMIT, true, DST_RESOLVE_REFUSED,
                 X},
        };
        (void)state;

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                dst_resolve_facts f = {.phase = cases[i].phase,
                                       .copy = cases[i].copy,
                                       .source_reached = cases[i].reached,
                                       .source_says = cases[i].says,
                                       .source_record = cases[i].record,
                                       .source_copy = cases[i].there,
                                       .ask = cases[i].ask,
                                       .force = cases[i].force};
                handoff_outcome o;
                const char *why = NULL;
                bool forced;
                dst_resolve_verdict v = dst_resolve_decide(&f, &o, &why, &forced);
                if (v != cases[i].verdict || o != cases[i].outcome || forced != cases[i].forced)
                        fail_msg("resolve row %zu: verdict %d outcome %d forced %d (%s)", i, v, o, forced,
                                 why);
                assert_non_null(why);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_resolve),       cmocka_unit_test(test_transitions),
                cmocka_unit_test(test_state_carried), cmocka_unit_test(test_every_pair),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
