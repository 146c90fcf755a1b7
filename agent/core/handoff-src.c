/* SPDX-License-Identifier: Apache-2.0 */
/* The source's rules. One handler per event; each names every phase, so
 * that a new phase or event breaks the build until its rule is written
 * (-Wswitch-enum). A handler either takes the event (new state, actions),
 * ignores it (late or repeated: nothing changes) or refuses it (it cannot
 * happen here: nothing changes, and the agent logs its own bug). */
#include "handoff-src.h"

#include <string.h>

#include "exit-codes.h"
#include "macro.h"

static const char *const phase_names[_SRC_PHASE_MAX] = {
        [SRC_PRECHECK] = "precheck",
        [SRC_DUMPING] = "dumping",
        [SRC_DUMPED] = "dumped",
        [SRC_STREAMING] = "streaming",
        [SRC_RESTORING] = "restoring",
        [SRC_COMMITTED] = "committed",
        [SRC_DONE] = "done",
        [SRC_ROLLING_BACK] = "rolling-back",
        [SRC_ROLLED_BACK] = "rolled-back",
        [SRC_FAILED] = "failed",
        [SRC_REFUSED] = "refused",
        [SRC_LOST] = "lost",
};

static const char *const postcopy_names[_SRC_PC_MAX] = {
        [SRC_PC_OFF] = "off",
        [SRC_PC_PENDING] = "pending",
        [SRC_PC_SERVING] = "serving",
        [SRC_PC_RESUMING] = "resuming",
        [SRC_PC_CUT] = "cut",
        [SRC_PC_TARGET_LOST] = "target-lost",
        [SRC_PC_RUNNING_HEARD] = "running-heard",
        [SRC_PC_RETURNED] = "returned",
};

static const char *const hold_names[_SRC_HOLD_MAX] = {
        [SRC_HOLD_NONE] = "none",
        [SRC_HOLD_STOPPED] = "stopped",
        [SRC_HOLD_ENDED] = "ended",
};

static const char *const tree_names[_SRC_TREE_MAX] = {
        [SRC_TREE_GONE] = "gone",
        [SRC_TREE_RUNNING] = "running",
        [SRC_TREE_STOPPED] = "stopped",
};

static const char *const link_names[_SRC_LINK_MAX] = {
        [SRC_LINK_NONE] = "none",
        [SRC_LINK_OPENING] = "opening",
        [SRC_LINK_READY] = "ready",
};

static const char *const stream_names[_SRC_STREAM_MAX] = {
        [SRC_STREAM_NONE] = "none",
        [SRC_STREAM_SENDING] = "sending",
        [SRC_STREAM_SENT] = "sent",
};

static const char *const event_names[_SRC_EVENT_MAX] = {
        [SRC_EV_START] = "start",
        [SRC_EV_RECOVER] = "recover",
        [SRC_EV_LINK_READY] = "link-ready",
        [SRC_EV_LINK_LOST] = "link-lost",
        [SRC_EV_OFFER_FAILED] = "offer-failed",
        [SRC_EV_OFFER_REFUSED] = "offer-refused",
        [SRC_EV_ACCEPT] = "ACCEPT",
        [SRC_EV_REJECT] = "REJECT",
        [SRC_EV_IMAGES_READY] = "images-ready",
        [SRC_EV_DUMP_OK] = "dump-ok",
        [SRC_EV_DUMP_FAILED_RUNNING] = "dump-failed-running",
        [SRC_EV_DUMP_FAILED_GONE] = "dump-failed-gone",
        [SRC_EV_DUMP_FAILED_IMAGES] = "dump-failed-images",
        [SRC_EV_STREAM_SENT] = "stream-sent",
        [SRC_EV_STREAM_FAILED] = "stream-failed",
        [SRC_EV_VERIFIED] = "VERIFIED",
        [SRC_EV_RESTORED] = "RESTORED",
        [SRC_EV_RUNNING] = "RUNNING",
        [SRC_EV_PEER_ABORT] = "ABORT",
        [SRC_EV_PEER_ERROR] = "ERROR",
        [SRC_EV_PEER_UNEXPECTED] = "unexpected-message",
        [SRC_EV_JOURNAL_FAILED] = "journal-failed",
        [SRC_EV_ROLLBACK_OK] = "rollback-ok",
        [SRC_EV_ROLLBACK_FAILED] = "rollback-failed",
        [SRC_EV_RESUMED] = "resumed",
        [SRC_EV_RESUME_FAILED] = "resume-failed",
        [SRC_EV_TIMER] = "timer",
        [SRC_EV_QUERY] = "QUERY",
};

static const char *const why_names[_SRC_WHY_MAX] = {
        [SRC_WHY_EVENT] = "event",
        [SRC_WHY_TARGET_GONE_IN_DUMP] = "target-gone-in-dump",
        [SRC_WHY_LAZY_ENDED_EARLY] = "lazy-ended-early",
        [SRC_WHY_POSTCOPY_AFTER_COMMIT] = "postcopy-after-commit",
        [SRC_WHY_POSTCOPY_SERVED] = "postcopy-served",
        [SRC_WHY_POSTCOPY_UNDOABLE] = "postcopy-undoable",
        [SRC_WHY_ROLLBACK_EXHAUSTED] = "rollback-exhausted",
        [SRC_WHY_STOPPED_BEFORE_DUMP] = "stopped-before-dump",
        [SRC_WHY_STOPPED_DURING_MOVE] = "stopped-during-move",
        [SRC_WHY_ANSWERED_ABORTED] = "answered-aborted",
};

static const char *const action_names[_SRC_ACTION_MAX] = {
        [SRC_DO_NOTE_FAILURE] = "note",
        [SRC_DO_JOURNAL] = "journal",
        [SRC_DO_OPEN_LINK] = "open-link",
        [SRC_DO_CLOSE_LINK] = "close-link",
        [SRC_DO_SEND_OFFER] = "send-OFFER",
        [SRC_DO_SEND_ABORT] = "send-ABORT",
        [SRC_DO_SEND_RESTORE] = "send-RESTORE",
        [SRC_DO_SEND_COMMIT] = "send-COMMIT",
        [SRC_DO_START_DUMP] = "start-dump",
        [SRC_DO_CANCEL_DUMP] = "cancel-dump",
        [SRC_DO_START_STREAM] = "start-stream",
        [SRC_DO_START_ROLLBACK] = "start-rollback",
        [SRC_DO_ROLLBACK_LATER] = "rollback-later",
        [SRC_DO_RECONNECT_LATER] = "reconnect-later",
        [SRC_DO_REPORT_IN_DOUBT] = "report-in-doubt",
        [SRC_DO_RESUME_IN_PLACE] = "resume-in-place",
        [SRC_DO_DROP_RELAY] = "drop-relay",
        [SRC_DO_UNLOCK_NETWORK] = "unlock-network",
        [SRC_DO_KILL_COPY] = "kill-copy",
        [SRC_DO_RESUME_HELD] = "resume-held",
        [SRC_DO_END_HELD] = "end-held",
        [SRC_DO_WRITE_STATE] = "write-state",
        [SRC_DO_REMOVE_STATE] = "remove-state",
        [SRC_DO_REMOVE_IMAGES] = "remove-images",
        [SRC_DO_ANSWER] = "answer",
        [SRC_DO_FINISH] = "finish",
};

#define NAME(table, v) ((int)(v) >= 0 && (size_t)(v) < ARRAY_SIZE(table) ? (table)[v] : NULL)

const char *src_phase_to_string(src_phase p) {
        return NAME(phase_names, p);
}

src_phase src_phase_from_string(const char *s) {
        for (int i = 0; s && i < _SRC_PHASE_MAX; i++)
                if (strcmp(s, phase_names[i]) == 0)
                        return (src_phase)i;
        return _SRC_PHASE_INVALID;
}

const char *src_postcopy_to_string(src_postcopy p) {
        return NAME(postcopy_names, p);
}

const char *src_hold_to_string(src_hold h) {
        return NAME(hold_names, h);
}

const char *src_tree_to_string(src_tree t) {
        return NAME(tree_names, t);
}

const char *src_link_to_string(src_link l) {
        return NAME(link_names, l);
}

const char *src_stream_to_string(src_stream s) {
        return NAME(stream_names, s);
}

const char *src_event_to_string(src_event_kind e) {
        return NAME(event_names, e);
}

const char *src_why_to_string(src_why w) {
        return NAME(why_names, w);
}

const char *src_action_to_string(src_action_kind a) {
        return NAME(action_names, a);
}

bool src_phase_is_final(src_phase p) {
        switch (p) {
        case SRC_DONE:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST: return true;
        case SRC_PRECHECK:
        case SRC_DUMPING:
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING:
        case SRC_COMMITTED:
        case SRC_ROLLING_BACK:
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return false;
}

int src_phase_exit_code(src_phase p) {
        switch (p) {
        case SRC_DONE: return NM_EXIT_OK;
        case SRC_REFUSED: return NM_EXIT_REFUSED;
        case SRC_ROLLED_BACK: return NM_EXIT_ROLLED_BACK;
        case SRC_FAILED: return NM_EXIT_FAILURE;
        case SRC_LOST: return NM_EXIT_LOST;
        case SRC_COMMITTED: /* not confirmed by the target yet */
        case SRC_PRECHECK:
        case SRC_DUMPING:
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING:
        case SRC_ROLLING_BACK:
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return NM_EXIT_IN_DOUBT;
}

src_state src_state_new(bool lazy) {
        return (src_state){.phase = SRC_PRECHECK, .postcopy = lazy ? SRC_PC_PENDING : SRC_PC_OFF};
}

src_state src_state_from_journal(src_phase phase) {
        /* A source record does not say post-copy: a lazy dump lives in the
         * agent's CRIU call and died with it. */
        return (src_state){.phase = phase};
}

/* ---- recovery ---- */

mig_recovery src_recovery_for(src_phase phase, src_tree tree) {
        if (tree < 0 || tree >= _SRC_TREE_MAX)
                return _MIG_RECOVER_INVALID;
        switch (phase) {
        case SRC_PRECHECK: return MIG_RECOVER_MARK_FAILED;
        case SRC_DUMPING:
                /* CRIU resumes the tasks when a dump fails; if they still run,
                 * nothing was lost and nothing moved. Stopped, the dump left
                 * them so (or died with them frozen). */
                return tree == SRC_TREE_RUNNING   ? MIG_RECOVER_MARK_FAILED
                       : tree == SRC_TREE_STOPPED ? MIG_RECOVER_RESUME
                                                  : MIG_RECOVER_ROLLBACK;
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING:
        case SRC_ROLLING_BACK:
                /* The dumped tasks are still here (held stopped, or resumed
                 * already): resuming them is the rollback, and restoring our
                 * images beside them would make two copies. */
                return tree == SRC_TREE_GONE ? MIG_RECOVER_ROLLBACK : MIG_RECOVER_RESUME;
        case SRC_COMMITTED: return MIG_RECOVER_FORWARD;
        case SRC_DONE:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST: return MIG_RECOVER_FINISH;
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return _MIG_RECOVER_INVALID;
}

handoff_outcome src_outcome_of(src_phase phase) {
        switch (phase) {
        case SRC_COMMITTED:
        case SRC_DONE:
        case SRC_LOST: /* nothing runs here: the target's copy is the container now */
                return HANDOFF_OUTCOME_COMMITTED;
        case SRC_PRECHECK:
        case SRC_DUMPING:
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING:
        case SRC_ROLLING_BACK:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED: return HANDOFF_OUTCOME_ABORTED;
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return HANDOFF_OUTCOME_UNKNOWN;
}

/* CRIU's lazy dump still holds our tasks, frozen or being resumed. */
static bool postcopy_holds_tasks(src_postcopy p) {
        switch (p) {
        case SRC_PC_SERVING:
        case SRC_PC_RESUMING:
        case SRC_PC_CUT:
        case SRC_PC_TARGET_LOST:
        case SRC_PC_RUNNING_HEARD: return true;
        case SRC_PC_OFF:
        case SRC_PC_PENDING:
        case SRC_PC_RETURNED:
        case _SRC_PC_MAX:
        case _SRC_PC_INVALID: break;
        }
        return false;
}

bool src_parkable(const src_state *s) {
        /* A lazy dump lives in this process's CRIU call: the journal cannot
         * carry it. */
        return s->phase == SRC_COMMITTED && !postcopy_holds_tasks(s->postcopy);
}

/* Before COMMITTED: a failure still rolls back. */
static bool before_commit(src_phase p) {
        switch (p) {
        case SRC_PRECHECK:
        case SRC_DUMPING:
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING: return true;
        case SRC_COMMITTED:
        case SRC_DONE:
        case SRC_ROLLING_BACK:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST:
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return false;
}

/* ---- building a step ---- */

typedef struct step {
        src_state *s;
        src_actions *a;
} step;

static void add(step *st, src_action act) {
        /* SRC_ACTIONS_MAX is above the longest list below; the unit tests
         * walk every state and event to prove it. */
        if (st->a->n < SRC_ACTIONS_MAX)
                st->a->v[st->a->n++] = act;
}

static void act(step *st, src_action_kind kind) {
        add(st, (src_action){.kind = kind});
}

static void note(step *st, src_why why) {
        add(st, (src_action){.kind = SRC_DO_NOTE_FAILURE, .why = why});
}

/* The new phase is on disk before anything after it in the list happens. */
static void enter(step *st, src_phase phase) {
        st->s->phase = phase;
        add(st, (src_action){.kind = SRC_DO_JOURNAL, .phase = phase});
}

static void close_link(step *st) {
        act(st, SRC_DO_CLOSE_LINK);
        st->s->link = SRC_LINK_NONE;
        st->s->stream = SRC_STREAM_NONE;
}

static void tell_target_abort(step *st) {
        if (st->s->link == SRC_LINK_READY)
                act(st, SRC_DO_SEND_ABORT);
}

static void end(step *st, src_phase final) {
        enter(st, final);
        close_link(st);
        act(st, SRC_DO_FINISH);
}

static void open_link(step *st) {
        act(st, SRC_DO_OPEN_LINK);
        st->s->link = SRC_LINK_OPENING;
}

static void start_rollback(step *st) {
        st->s->rollback_failures = 0;
        add(st, (src_action){.kind = SRC_DO_START_ROLLBACK, .attempt = 0});
}

static void resume_held(step *st) {
        st->s->hold = SRC_HOLD_STOPPED;
        act(st, SRC_DO_RESUME_HELD);
}

/* Any failure before COMMITTED: the target is told to abort, and our copy
 * comes back: the held tasks resume in place, or it is restored from our
 * images, or (post-copy) the frozen tasks run on. */
static void rollback(step *st) {
        src_state *s = st->s;

        if (s->phase == SRC_ROLLING_BACK)
                return;
        if (s->postcopy == SRC_PC_RETURNED && before_commit(s->phase)) {
                /* Every page left with the tasks: nothing to restore here.
                 * LOST answers a target's QUERY with committed, so a complete
                 * stopped copy there still resumes. */
                note(st, SRC_WHY_POSTCOPY_SERVED);
                end(st, SRC_LOST);
                return;
        }
        tell_target_abort(st);
        close_link(st);
        enter(st, SRC_ROLLING_BACK);
        if (postcopy_holds_tasks(s->postcopy)) {
                /* The memory is still in the frozen tasks, not in images. */
                s->postcopy = SRC_PC_RESUMING;
                act(st, SRC_DO_RESUME_IN_PLACE);
                return;
        }
        if (s->hold == SRC_HOLD_STOPPED) {
                resume_held(st);
                return;
        }
        start_rollback(st);
}

/* After COMMITTED: reach the target again, now or after a backoff, for as
 * long as it takes. The operator hears "in doubt" after the second try. */
static void forward(step *st) {
        src_state *s = st->s;

        if (s->forward_tries == 0) {
                s->forward_tries = 1;
                open_link(st);
                return;
        }
        if (s->forward_tries == 1)
                act(st, SRC_DO_REPORT_IN_DOUBT);
        add(st, (src_action){.kind = SRC_DO_RECONNECT_LATER,
                             .delay_ms = handoff_backoff_ms(s->forward_tries, SRC_FORWARD_RETRY_MIN_MS,
                                                            SRC_FORWARD_RETRY_MAX_MS)});
        s->forward_tries++;
}

/* A failure whose reason is already noted, by phase. */
static handoff_verdict fail(step *st) {
        switch (st->s->phase) {
        case SRC_PRECHECK: end(st, SRC_FAILED); return HANDOFF_TAKEN;
        case SRC_DUMPING:
                /* CRIU decides when it returns (the images, if any, roll back);
                 * a dump still waiting for its turn never starts. */
                close_link(st);
                act(st, SRC_DO_CANCEL_DUMP);
                return HANDOFF_TAKEN;
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING: rollback(st); return HANDOFF_TAKEN;
        case SRC_COMMITTED:
                close_link(st);
                forward(st);
                return HANDOFF_TAKEN;
        case SRC_ROLLING_BACK:
        case SRC_DONE:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST: return HANDOFF_IGNORED;
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict fail_with(step *st, src_why why) {
        handoff_verdict v;
        size_t n = st->a->n;

        note(st, why);
        v = fail(st);
        if (v != HANDOFF_TAKEN)
                st->a->n = n; /* nothing to note it for */
        return v;
}

/* The images are complete (and the container gone, or for post-copy frozen
 * until its last page has moved): stream them. */
static void images_ready(step *st) {
        src_state *s = st->s;

        if (s->postcopy == SRC_PC_PENDING)
                s->postcopy = SRC_PC_SERVING;
        enter(st, SRC_DUMPED);
        if (s->link != SRC_LINK_READY) {
                /* The target went away (or aborted) while CRIU was busy. */
                note(st, SRC_WHY_TARGET_GONE_IN_DUMP);
                rollback(st);
                return;
        }
        act(st, SRC_DO_START_STREAM);
        s->stream = SRC_STREAM_SENDING;
        /* The sender reads through its own descriptors from here on. */
        enter(st, SRC_STREAMING);
}

/* The target's copy runs with every page: the move is over. */
static void target_runs(step *st) {
        if (postcopy_holds_tasks(st->s->postcopy)) {
                /* RUNNING says every page arrived; CRIU returns right after. */
                if (st->s->postcopy != SRC_PC_TARGET_LOST)
                        st->s->postcopy = SRC_PC_RUNNING_HEARD;
                return;
        }
        act(st, SRC_DO_REMOVE_IMAGES);
        act(st, SRC_DO_REMOVE_STATE);
        end(st, SRC_DONE);
}

/* ---- the handlers, one per event ---- */

static handoff_verdict on_start(step *st) {
        if (st->s->phase != SRC_PRECHECK || st->s->link != SRC_LINK_NONE)
                return HANDOFF_REFUSED;
        enter(st, SRC_PRECHECK);
        open_link(st);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_recover(step *st, const src_event *ev) {
        /* A restart knows of held tasks only what it finds (ev->tree). */
        st->s->hold = SRC_HOLD_NONE;
        switch (src_recovery_for(st->s->phase, ev->tree)) {
        case MIG_RECOVER_FINISH: act(st, SRC_DO_FINISH); return HANDOFF_TAKEN;
        case MIG_RECOVER_MARK_FAILED:
                note(st, SRC_WHY_STOPPED_BEFORE_DUMP);
                act(st, SRC_DO_REMOVE_IMAGES);
                end(st, SRC_FAILED);
                return HANDOFF_TAKEN;
        case MIG_RECOVER_ROLLBACK:
                /* No session survived the restart: the target learnt of our
                 * end from its own. */
                note(st, SRC_WHY_STOPPED_DURING_MOVE);
                close_link(st);
                enter(st, SRC_ROLLING_BACK);
                start_rollback(st);
                return HANDOFF_TAKEN;
        case MIG_RECOVER_RESUME:
                note(st, SRC_WHY_STOPPED_DURING_MOVE);
                close_link(st);
                enter(st, SRC_ROLLING_BACK);
                resume_held(st);
                return HANDOFF_TAKEN;
        case MIG_RECOVER_FORWARD:
                if (ev->tree != SRC_TREE_GONE) {
                        /* Committed, but the agent stopped before it ended
                         * the held tasks: the target's copy is the
                         * container now. */
                        act(st, SRC_DO_END_HELD);
                        st->s->hold = SRC_HOLD_ENDED;
                }
                st->s->forward_tries = 0;
                forward(st);
                return HANDOFF_TAKEN;
        case MIG_RECOVER_DISCARD:
        case MIG_RECOVER_ASK_SOURCE:
        case MIG_RECOVER_COMPLETE:
        case _MIG_RECOVER_MAX:
        case _MIG_RECOVER_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_link_ready(step *st) {
        switch (st->s->phase) {
        case SRC_PRECHECK:
                st->s->link = SRC_LINK_READY;
                act(st, SRC_DO_SEND_OFFER);
                return HANDOFF_TAKEN;
        case SRC_COMMITTED:
                st->s->link = SRC_LINK_READY;
                act(st, SRC_DO_SEND_COMMIT);
                return HANDOFF_TAKEN;
        case SRC_DUMPING:
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING:
        case SRC_ROLLING_BACK:
        case SRC_DONE:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST: return HANDOFF_IGNORED; /* links open only in PRECHECK and COMMITTED */
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_link_lost(step *st) {
        src_state *s = st->s;

        switch (s->phase) {
        case SRC_PRECHECK:
        case SRC_DUMPING:
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING: s->link = SRC_LINK_NONE; return fail_with(st, SRC_WHY_EVENT);
        case SRC_COMMITTED:
                /* Not a failure: we only go forward, and reconnect. */
                s->link = SRC_LINK_NONE;
                if (s->postcopy == SRC_PC_SERVING || s->postcopy == SRC_PC_RUNNING_HEARD) {
                        /* Post-copy cut short: CRIU ends the tasks here (the
                         * target's copy is the container now, if it has its
                         * pages; it says so when we reach it again). */
                        act(st, SRC_DO_DROP_RELAY);
                        if (s->postcopy == SRC_PC_SERVING)
                                s->postcopy = SRC_PC_CUT;
                }
                forward(st);
                return HANDOFF_TAKEN;
        case SRC_ROLLING_BACK:
        case SRC_DONE:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST: return HANDOFF_IGNORED;
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

/* OFFER_FAILED, OFFER_REFUSED, REJECT: the move ends before anything
 * changed. */
static handoff_verdict on_not_offered(step *st, src_phase final) {
        switch (st->s->phase) {
        case SRC_PRECHECK:
                note(st, SRC_WHY_EVENT);
                end(st, final);
                return HANDOFF_TAKEN;
        case SRC_DUMPING:
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING:
        case SRC_COMMITTED:
        case SRC_ROLLING_BACK:
        case SRC_DONE:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST: return HANDOFF_IGNORED; /* a late or repeated answer */
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_accept(step *st) {
        switch (st->s->phase) {
        case SRC_PRECHECK:
                /* Journaled before CRIU starts: a restart knows a dump may
                 * have happened. */
                enter(st, SRC_DUMPING);
                act(st, SRC_DO_START_DUMP);
                return HANDOFF_TAKEN;
        case SRC_DUMPING:
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING:
        case SRC_COMMITTED:
        case SRC_ROLLING_BACK:
        case SRC_DONE:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST: return HANDOFF_IGNORED;
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_images_ready(step *st) {
        if (st->s->phase == SRC_DUMPING && st->s->postcopy == SRC_PC_PENDING) {
                /* CRIU flushed every image and now serves the lazy pages from
                 * the frozen tasks until the target has them all. */
                images_ready(st);
                return HANDOFF_TAKEN;
        }
        /* Only a lazy dump says post-dump, once. */
        return st->s->postcopy == SRC_PC_OFF ? HANDOFF_REFUSED : HANDOFF_IGNORED;
}

/* CRIU's lazy dump returned, every page served (ok) or not. */
static handoff_verdict on_lazy_dump_ended(step *st, bool ok) {
        src_state *s = st->s;
        src_postcopy was = s->postcopy;

        s->postcopy = SRC_PC_RETURNED;
        if (was == SRC_PC_TARGET_LOST) {
                if (!ok)
                        act(st, SRC_DO_KILL_COPY);
                end(st, SRC_LOST);
                return HANDOFF_TAKEN;
        }
        if (s->phase == SRC_COMMITTED) {
                if (ok) {
                        if (was == SRC_PC_RUNNING_HEARD)
                                target_runs(st);
                        return HANDOFF_TAKEN; /* else RUNNING (or the target's error) decides */
                }
                /* CRIU resumed the tasks here, but the target's copy runs:
                 * never two copies. */
                note(st, SRC_WHY_POSTCOPY_AFTER_COMMIT);
                act(st, SRC_DO_KILL_COPY);
                if (was == SRC_PC_RUNNING_HEARD) {
                        /* It said RUNNING (every page there) already: that
                         * was the answer. */
                        target_runs(st);
                        return HANDOFF_TAKEN;
                }
                if (was == SRC_PC_SERVING) {
                        /* Nobody serves the target's daemon any more: it
                         * would wait for its pages, and we for its answer,
                         * for good. The link's end tells it (its relay goes,
                         * the daemon fails, an incomplete copy ends), and a
                         * new link's COMMIT asks for the verdict. */
                        close_link(st);
                        forward(st);
                }
                return HANDOFF_TAKEN; /* the target's answer (RUNNING or ERROR) decides */
        }
        if (ok && was == SRC_PC_RESUMING) {
                /* The rollback came too late: every page had left with the
                 * tasks, and the target was told to abort. */
                note(st, SRC_WHY_POSTCOPY_SERVED);
                end(st, SRC_LOST);
                return HANDOFF_TAKEN;
        }
        if (ok && was != SRC_PC_CUT)
                /* The target's daemon fetched every page before COMMITTED (a
                 * small container) and closed the session: CRIU ended the
                 * tasks here. Only forward now: the target's copy is
                 * complete, and no rollback can undo this. */
                return HANDOFF_TAKEN;
        if (ok) {
                note(st, SRC_WHY_LAZY_ENDED_EARLY);
                end(st, SRC_LOST);
                return HANDOFF_TAKEN;
        }
        /* Before COMMITTED: CRIU let the frozen tasks run on; only the
         * network lock is left to undo. */
        act(st, SRC_DO_UNLOCK_NETWORK);
        act(st, SRC_DO_REMOVE_IMAGES);
        end(st, SRC_ROLLED_BACK);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_dump_ended(step *st, const src_event *ev) {
        src_state *s = st->s;
        src_event_kind kind = ev->kind;

        if (kind == SRC_EV_DUMP_FAILED_IMAGES && s->postcopy != SRC_PC_OFF)
                return HANDOFF_REFUSED; /* a lazy dump's images never stand alone */
        if (postcopy_holds_tasks(s->postcopy))
                return on_lazy_dump_ended(st, kind == SRC_EV_DUMP_OK);
        if (s->phase != SRC_DUMPING)
                return HANDOFF_REFUSED; /* one dump, and it ends once */
        if (kind == SRC_EV_DUMP_OK) {
                if (ev->held && s->postcopy == SRC_PC_OFF)
                        s->hold = SRC_HOLD_STOPPED;
                images_ready(st);
                return HANDOFF_TAKEN;
        }
        if (kind == SRC_EV_DUMP_FAILED_IMAGES) {
                /* CRIU died after its images were complete and the tasks
                 * are gone: those images are the container now. They are
                 * journaled, then restored here (a failed dump does not
                 * move it on). */
                note(st, SRC_WHY_EVENT);
                enter(st, SRC_DUMPED);
                rollback(st);
                return HANDOFF_TAKEN;
        }
        /* CRIU failed before the images were complete. */
        note(st, SRC_WHY_EVENT);
        tell_target_abort(st);
        end(st, kind == SRC_EV_DUMP_FAILED_RUNNING ? SRC_FAILED : SRC_LOST);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_stream_sent(step *st) {
        if (st->s->phase != SRC_STREAMING || st->s->stream != SRC_STREAM_SENDING)
                return HANDOFF_REFUSED;
        st->s->stream = SRC_STREAM_SENT;
        return HANDOFF_TAKEN;
}

static handoff_verdict on_stream_failed(step *st) {
        switch (st->s->phase) {
        case SRC_DUMPED: /* it could not even start */
        case SRC_STREAMING: return fail_with(st, SRC_WHY_EVENT);
        case SRC_PRECHECK:
        case SRC_DUMPING:
        case SRC_RESTORING:
        case SRC_COMMITTED:
        case SRC_ROLLING_BACK:
        case SRC_DONE:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST: return HANDOFF_REFUSED; /* no stream runs then */
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

/* ABORT, ERROR, or a message that has no place here. */
static handoff_verdict on_peer_error(step *st, int code) {
        src_state *s = st->s;

        if (s->phase != SRC_COMMITTED)
                return fail_with(st, SRC_WHY_EVENT);
        if (s->postcopy != SRC_PC_OFF) {
                /* The target lost its copy during post-copy; ours goes with
                 * the pages it served: nothing can run the container. */
                note(st, SRC_WHY_POSTCOPY_UNDOABLE);
                if (s->postcopy == SRC_PC_RETURNED) {
                        end(st, SRC_LOST);
                        return HANDOFF_TAKEN;
                }
                act(st, SRC_DO_DROP_RELAY); /* CRIU ends its tasks; its return ends the move */
                s->postcopy = SRC_PC_TARGET_LOST;
                return HANDOFF_TAKEN;
        }
        if (code == -ESRCH) {
                /* The target holds no copy and never resumed one: our images
                 * (still here until RUNNING) are the only way the container
                 * keeps running. */
                note(st, SRC_WHY_EVENT);
                close_link(st);
                enter(st, SRC_ROLLING_BACK);
                start_rollback(st);
                return HANDOFF_TAKEN;
        }
        return fail_with(st, SRC_WHY_EVENT);
}

static handoff_verdict on_verified(step *st) {
        if (st->s->phase != SRC_STREAMING || st->s->stream != SRC_STREAM_SENT)
                return on_peer_error(st, -EPROTO); /* VERIFIED of what? */
        enter(st, SRC_RESTORING);
        act(st, SRC_DO_SEND_RESTORE);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_restored(step *st) {
        if (st->s->phase != SRC_RESTORING)
                return HANDOFF_IGNORED;
        /* The point of no return: once this is on disk we never roll back,
         * and the tasks held here end before the target's copy may run. */
        enter(st, SRC_COMMITTED);
        st->s->forward_tries = 0;
        if (st->s->hold == SRC_HOLD_STOPPED) {
                act(st, SRC_DO_END_HELD);
                st->s->hold = SRC_HOLD_ENDED;
        }
        act(st, SRC_DO_SEND_COMMIT);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_running(step *st) {
        if (st->s->phase != SRC_COMMITTED)
                return HANDOFF_IGNORED;
        target_runs(st);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_journal_failed(step *st) {
        src_state *s = st->s;

        note(st, SRC_WHY_EVENT);
        switch (s->phase) {
        case SRC_PRECHECK:
        case SRC_DUMPING: /* the dump was to start after it: it did not */
                end(st, SRC_FAILED);
                return HANDOFF_TAKEN;
        case SRC_DUMPED:
        case SRC_STREAMING:
        case SRC_RESTORING: rollback(st); return HANDOFF_TAKEN;
        case SRC_COMMITTED:
                /* COMMITTED is not on disk, so we never committed: the disk
                 * says RESTORING, and so does the rollback. The list ended
                 * at that write: the held tasks were not ended. */
                s->phase = SRC_RESTORING;
                if (s->hold == SRC_HOLD_ENDED)
                        s->hold = SRC_HOLD_STOPPED;
                rollback(st);
                return HANDOFF_TAKEN;
        case SRC_ROLLING_BACK:
                /* The journal keeps the older phase, which recovers to a
                 * rollback too: go on with it. */
                if (s->postcopy == SRC_PC_RESUMING)
                        act(st, SRC_DO_RESUME_IN_PLACE);
                else if (s->hold == SRC_HOLD_STOPPED)
                        act(st, SRC_DO_RESUME_HELD);
                else
                        add(st,
                            (src_action){.kind = SRC_DO_START_ROLLBACK, .attempt = s->rollback_failures});
                return HANDOFF_TAKEN;
        case SRC_DONE:
        case SRC_ROLLED_BACK:
        case SRC_FAILED:
        case SRC_REFUSED:
        case SRC_LOST:
                /* The final phase is not on disk; the archive says it. */
                close_link(st);
                act(st, SRC_DO_FINISH);
                return HANDOFF_TAKEN;
        case _SRC_PHASE_MAX:
        case _SRC_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_rollback_ended(step *st, bool ok) {
        src_state *s = st->s;

        if (s->phase != SRC_ROLLING_BACK || s->postcopy == SRC_PC_RESUMING || s->hold == SRC_HOLD_STOPPED)
                return HANDOFF_REFUSED;
        if (ok) {
                act(st, SRC_DO_WRITE_STATE);
                act(st, SRC_DO_REMOVE_IMAGES);
                end(st, SRC_ROLLED_BACK);
                return HANDOFF_TAKEN;
        }
        if (++s->rollback_failures < SRC_ROLLBACK_ATTEMPTS) {
                add(st, (src_action){.kind = SRC_DO_ROLLBACK_LATER, .delay_ms = SRC_ROLLBACK_RETRY_MS});
                return HANDOFF_TAKEN;
        }
        /* Images kept: an operator may still restore them by hand. */
        note(st, SRC_WHY_ROLLBACK_EXHAUSTED);
        end(st, SRC_LOST);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_timer(step *st) {
        src_state *s = st->s;

        if (s->phase == SRC_ROLLING_BACK && s->rollback_failures > 0 && s->postcopy != SRC_PC_RESUMING &&
            s->hold != SRC_HOLD_STOPPED) {
                add(st, (src_action){.kind = SRC_DO_START_ROLLBACK, .attempt = s->rollback_failures});
                return HANDOFF_TAKEN;
        }
        if (s->phase == SRC_COMMITTED && s->link == SRC_LINK_NONE) {
                open_link(st);
                return HANDOFF_TAKEN;
        }
        return HANDOFF_IGNORED; /* a timer of a step that is over */
}

/* The held tasks run again in place: nothing was restored, so the state
 * file still names them. */
static handoff_verdict on_resumed(step *st) {
        if (st->s->phase != SRC_ROLLING_BACK || st->s->hold != SRC_HOLD_STOPPED)
                return HANDOFF_REFUSED;
        st->s->hold = SRC_HOLD_NONE;
        act(st, SRC_DO_REMOVE_IMAGES);
        end(st, SRC_ROLLED_BACK);
        return HANDOFF_TAKEN;
}

/* They could not be resumed (gone, or a step of the resume failed): what
 * is left of them ends (never two copies), and our images bring the
 * container back. */
static handoff_verdict on_resume_failed(step *st) {
        if (st->s->phase != SRC_ROLLING_BACK || st->s->hold != SRC_HOLD_STOPPED)
                return HANDOFF_REFUSED;
        note(st, SRC_WHY_EVENT);
        act(st, SRC_DO_END_HELD);
        st->s->hold = SRC_HOLD_NONE;
        start_rollback(st);
        return HANDOFF_TAKEN;
}

/* A destination holding a stopped copy asks how we ended. */
static handoff_verdict on_query(step *st, const src_event *ev) {
        handoff_outcome o = ev->settled ? src_outcome_of(st->s->phase) : HANDOFF_OUTCOME_UNKNOWN;

        /* Busy carrying out a step (a journal write in flight), the phase in
         * memory may not be on disk yet: no answer is safe but "ask again". */
        add(st, (src_action){.kind = SRC_DO_ANSWER, .outcome = o});
        if (o == HANDOFF_OUTCOME_ABORTED && before_commit(st->s->phase))
                /* We say "aborted": this step makes it true before anything
                 * else can happen to this migration. */
                (void)fail_with(st, SRC_WHY_ANSWERED_ABORTED);
        return HANDOFF_TAKEN;
}

handoff_verdict src_step(const src_state *s, const src_event *ev, src_state *ret_state,
                         src_actions *ret_actions) {
        src_state next = *s;
        src_actions acts = {};
        step st = {.s = &next, .a = &acts};
        handoff_verdict v = HANDOFF_REFUSED;

        switch (ev->kind) {
        case SRC_EV_START: v = on_start(&st); break;
        case SRC_EV_RECOVER: v = on_recover(&st, ev); break;
        case SRC_EV_LINK_READY: v = on_link_ready(&st); break;
        case SRC_EV_LINK_LOST: v = on_link_lost(&st); break;
        case SRC_EV_OFFER_FAILED: v = on_not_offered(&st, SRC_FAILED); break;
        case SRC_EV_OFFER_REFUSED:
        case SRC_EV_REJECT: v = on_not_offered(&st, SRC_REFUSED); break;
        case SRC_EV_ACCEPT: v = on_accept(&st); break;
        case SRC_EV_IMAGES_READY: v = on_images_ready(&st); break;
        case SRC_EV_DUMP_OK:
        case SRC_EV_DUMP_FAILED_RUNNING:
        case SRC_EV_DUMP_FAILED_GONE:
        case SRC_EV_DUMP_FAILED_IMAGES: v = on_dump_ended(&st, ev); break;
        case SRC_EV_STREAM_SENT: v = on_stream_sent(&st); break;
        case SRC_EV_STREAM_FAILED: v = on_stream_failed(&st); break;
        case SRC_EV_VERIFIED: v = on_verified(&st); break;
        case SRC_EV_RESTORED: v = on_restored(&st); break;
        case SRC_EV_RUNNING: v = on_running(&st); break;
        case SRC_EV_PEER_ABORT: v = on_peer_error(&st, -ECONNABORTED); break;
        case SRC_EV_PEER_ERROR: v = on_peer_error(&st, ev->code); break;
        case SRC_EV_PEER_UNEXPECTED: v = on_peer_error(&st, -EPROTO); break;
        case SRC_EV_JOURNAL_FAILED: v = on_journal_failed(&st); break;
        case SRC_EV_ROLLBACK_OK: v = on_rollback_ended(&st, true); break;
        case SRC_EV_ROLLBACK_FAILED: v = on_rollback_ended(&st, false); break;
        case SRC_EV_RESUMED: v = on_resumed(&st); break;
        case SRC_EV_RESUME_FAILED: v = on_resume_failed(&st); break;
        case SRC_EV_TIMER: v = on_timer(&st); break;
        case SRC_EV_QUERY: v = on_query(&st, ev); break;
        case _SRC_EVENT_MAX:
        case _SRC_EVENT_INVALID: break;
        }
        if (v != HANDOFF_TAKEN) {
                /* Nothing happens: not even half a step. */
                next = *s;
                acts.n = 0;
        }
        *ret_state = next;
        *ret_actions = acts;
        return v;
}
