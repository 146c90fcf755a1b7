/* SPDX-License-Identifier: Apache-2.0 */
/* The destination's rules, built like the source's (handoff-src.c): one
 * handler per event, naming every phase. */
#include "handoff-dst.h"

#include <string.h>

#include "macro.h"

static const char *const phase_names[_DST_PHASE_MAX] = {
        [DST_RECEIVING] = "receiving", [DST_VERIFIED] = "verified", [DST_RESTORING] = "dest-restoring",
        [DST_RESTORED] = "restored",   [DST_IN_DOUBT] = "in-doubt", [DST_RUNNING] = "running",
        [DST_ABORTED] = "aborted",
};

static const char *const postcopy_names[_DST_PC_MAX] = {
        [DST_PC_OFF] = "off",           [DST_PC_PENDING] = "pending", [DST_PC_RESUMED] = "resumed",
        [DST_PC_COMPLETE] = "complete", [DST_PC_FAILED] = "failed",
};

static const char *const copy_names[_DST_COPY_MAX] = {
        [DST_COPY_NONE] = "none",
        [DST_COPY_STOPPED] = "stopped",
        [DST_COPY_RUNNING] = "running",
};

static const char *const session_names[_DST_SESSION_MAX] = {
        [DST_SESSION_UP] = "up",
        [DST_SESSION_LOST] = "lost",
        [DST_SESSION_ABORTED] = "aborted",
};

static const char *const sink_names[_DST_SINK_MAX] = {
        [DST_SINK_NONE] = "none",
        [DST_SINK_OPEN] = "open",
        [DST_SINK_OVER] = "over",
};

static const char *const ask_names[_DST_ASK_MAX] = {
        [DST_ASK_NONE] = "none",
        [DST_ASK_OPENING] = "opening",
        [DST_ASK_READY] = "ready",
};

static const char *const event_names[_DST_EVENT_MAX] = {
        [DST_EV_OFFER] = "OFFER",
        [DST_EV_RECOVER] = "recover",
        [DST_EV_SINK_FAILED] = "sink-failed",
        [DST_EV_RECEIVED] = "received",
        [DST_EV_RECEIVE_FAILED] = "receive-failed",
        [DST_EV_RECEIVED_UNUSABLE] = "received-unusable",
        [DST_EV_RESTORE] = "RESTORE",
        [DST_EV_RESTORE_OK] = "restore-ok",
        [DST_EV_RESTORE_FAILED] = "restore-failed",
        [DST_EV_PAGES_COMPLETE] = "pages-complete",
        [DST_EV_PAGES_FAILED] = "pages-failed",
        [DST_EV_COMMIT] = "COMMIT",
        [DST_EV_RESUME_FAILED] = "resume-failed",
        [DST_EV_PEER_ABORT] = "ABORT",
        [DST_EV_SESSION_LOST] = "session-lost",
        [DST_EV_ASK_READY] = "ask-ready",
        [DST_EV_ASK_LOST] = "ask-lost",
        [DST_EV_OUTCOME] = "OUTCOME",
        [DST_EV_JOURNAL_FAILED] = "journal-failed",
        [DST_EV_TIMER] = "timer",
        [DST_EV_RESOLVED] = "resolved",
};

static const char *const why_names[_DST_WHY_MAX] = {
        [DST_WHY_EVENT] = "event",
        [DST_WHY_STOPPED_IN_POSTCOPY] = "stopped-in-postcopy",
        [DST_WHY_SOURCE_ABORTED] = "source-aborted",
        [DST_WHY_SOURCE_LEFT] = "source-left",
        [DST_WHY_RESTORE_FAILED] = "restore-failed",
        [DST_WHY_CANNOT_JOURNAL] = "cannot-journal",
        [DST_WHY_UNUSABLE_IMAGES] = "unusable-images",
        [DST_WHY_NO_COPY] = "no-copy",
        [DST_WHY_POSTCOPY_BEFORE_RESUME] = "postcopy-before-resume",
        [DST_WHY_POSTCOPY_BEFORE_COMMIT] = "postcopy-before-commit",
        [DST_WHY_POSTCOPY_IN_RESTORE] = "postcopy-in-restore",
        [DST_WHY_ABORTED_IN_RESTORE] = "aborted-in-restore",
        [DST_WHY_STOPPED_BEFORE_RESTORED] = "stopped-before-restored",
        [DST_WHY_COPY_VANISHED] = "copy-vanished",
        [DST_WHY_RESOLVED] = "resolved",
};

static const char *const action_names[_DST_ACTION_MAX] = {
        [DST_DO_NOTE_FAILURE] = "note",
        [DST_DO_NOTE_DISCARD] = "note-discard",
        [DST_DO_JOURNAL] = "journal",
        [DST_DO_START_SINK] = "start-sink",
        [DST_DO_STOP_SINK] = "stop-sink",
        [DST_DO_SEND_ACCEPT] = "send-ACCEPT",
        [DST_DO_SEND_REJECT] = "send-REJECT",
        [DST_DO_SEND_VERIFIED] = "send-VERIFIED",
        [DST_DO_SEND_RESTORED] = "send-RESTORED",
        [DST_DO_SEND_RUNNING] = "send-RUNNING",
        [DST_DO_SEND_ERROR] = "send-ERROR",
        [DST_DO_REFUSE_RESTORE] = "refuse-RESTORE",
        [DST_DO_REFUSE_COMMIT] = "refuse-COMMIT",
        [DST_DO_START_RESTORE] = "start-restore",
        [DST_DO_CANCEL_RESTORE] = "cancel-restore",
        [DST_DO_RESUME_COPY] = "resume-copy",
        [DST_DO_KILL_COPY] = "kill-copy",
        [DST_DO_WRITE_STATE] = "write-state",
        [DST_DO_REMOVE_STATE] = "remove-state",
        [DST_DO_RELEASE] = "release",
        [DST_DO_REMOVE_STAGING] = "remove-staging",
        [DST_DO_DROP_RELAY] = "drop-relay",
        [DST_DO_OPEN_ASK] = "open-ask",
        [DST_DO_SEND_QUERY] = "send-QUERY",
        [DST_DO_DROP_ASK] = "drop-ask",
        [DST_DO_ASK_LATER] = "ask-later",
        [DST_DO_DETACH_SESSION] = "detach-session",
        [DST_DO_FINISH] = "finish",
};

#define NAME(table, v) ((int)(v) >= 0 && (size_t)(v) < ARRAY_SIZE(table) ? (table)[v] : NULL)

const char *dst_phase_to_string(dst_phase p) {
        return NAME(phase_names, p);
}

dst_phase dst_phase_from_string(const char *s) {
        for (int i = 0; s && i < _DST_PHASE_MAX; i++)
                if (strcmp(s, phase_names[i]) == 0)
                        return (dst_phase)i;
        return _DST_PHASE_INVALID;
}

const char *dst_postcopy_to_string(dst_postcopy p) {
        return NAME(postcopy_names, p);
}

const char *dst_copy_to_string(dst_copy c) {
        return NAME(copy_names, c);
}

const char *dst_session_to_string(dst_session s) {
        return NAME(session_names, s);
}

const char *dst_sink_to_string(dst_sink s) {
        return NAME(sink_names, s);
}

const char *dst_ask_to_string(dst_ask a) {
        return NAME(ask_names, a);
}

const char *dst_event_to_string(dst_event_kind e) {
        return NAME(event_names, e);
}

const char *dst_why_to_string(dst_why w) {
        return NAME(why_names, w);
}

const char *dst_action_to_string(dst_action_kind a) {
        return NAME(action_names, a);
}

bool dst_phase_is_final(dst_phase p) {
        return p == DST_RUNNING || p == DST_ABORTED;
}

dst_state dst_state_new(bool lazy) {
        return (dst_state){.phase = DST_RECEIVING, .postcopy = lazy ? DST_PC_PENDING : DST_PC_OFF};
}

dst_state dst_state_from_journal(dst_phase phase, bool postcopy) {
        dst_state s = {.phase = phase, .session = DST_SESSION_LOST, .sink = DST_SINK_OVER};

        switch (phase) {
        case DST_RESTORED:
        case DST_IN_DOUBT: s.copy = DST_COPY_STOPPED; break;
        case DST_RUNNING:
                s.copy = DST_COPY_RUNNING;
                /* The daemon that fetched its pages died with the agent. */
                s.postcopy = postcopy ? DST_PC_RESUMED : DST_PC_OFF;
                break;
        case DST_RECEIVING:
        case DST_VERIFIED:
        case DST_RESTORING:
        case DST_ABORTED:
        case _DST_PHASE_MAX:
        case _DST_PHASE_INVALID: break;
        }
        return s;
}

mig_recovery dst_recovery_for(dst_phase phase) {
        switch (phase) {
        case DST_RECEIVING:
        case DST_VERIFIED:
        case DST_RESTORING:
                /* No RESTORED was sent, so the source cannot have committed. A
                 * restore interrupted by our crash is cleaned up by CRIU itself
                 * (it loses its service socket). */
                return MIG_RECOVER_DISCARD;
        case DST_RESTORED:
        case DST_IN_DOUBT: return MIG_RECOVER_ASK_SOURCE;
        case DST_RUNNING: return MIG_RECOVER_COMPLETE;
        case DST_ABORTED: return MIG_RECOVER_FINISH;
        case _DST_PHASE_MAX:
        case _DST_PHASE_INVALID: break;
        }
        return _MIG_RECOVER_INVALID;
}

bool dst_commit_finds_copy(dst_phase archived) {
        return archived == DST_RUNNING;
}

bool dst_parkable(const dst_state *s) {
        return s->phase == DST_IN_DOUBT;
}

/* ---- building a step ---- */

typedef struct step {
        dst_state *s;
        dst_actions *a;
} step;

static void add(step *st, dst_action act) {
        /* DST_ACTIONS_MAX is above the longest list below; the unit tests
         * walk every state and event to prove it. */
        if (st->a->n < DST_ACTIONS_MAX)
                st->a->v[st->a->n++] = act;
}

static void act(step *st, dst_action_kind kind) {
        add(st, (dst_action){.kind = kind});
}

static void note(step *st, dst_why why) {
        add(st, (dst_action){.kind = DST_DO_NOTE_FAILURE, .why = why});
}

static void send_error(step *st, int code) {
        add(st, (dst_action){.kind = DST_DO_SEND_ERROR, .code = code});
}

/* The new phase is on disk before anything after it in the list happens. */
static void enter(step *st, dst_phase phase) {
        st->s->phase = phase;
        add(st, (dst_action){.kind = DST_DO_JOURNAL, .phase = phase});
}

static void drop_ask(step *st) {
        act(st, DST_DO_DROP_ASK);
        st->s->ask = DST_ASK_NONE;
}

static void detach_session(step *st) {
        act(st, DST_DO_DETACH_SESSION);
        if (st->s->session == DST_SESSION_UP)
                st->s->session = DST_SESSION_LOST;
}

static void end(step *st, dst_phase final) {
        /* Before the journal says so: a restart from the older phase
         * releases again (it is idempotent), never forgets it. */
        if (final == DST_ABORTED && st->s->phase != DST_ABORTED)
                act(st, DST_DO_RELEASE);
        if (st->s->phase != final)
                enter(st, final);
        if (st->s->ask != DST_ASK_NONE)
                drop_ask(st);
        detach_session(st);
        act(st, DST_DO_FINISH);
}

static void kill_copy(step *st) {
        if (st->s->copy == DST_COPY_NONE)
                return;
        act(st, DST_DO_KILL_COPY);
        st->s->copy = DST_COPY_NONE;
}

/* Drops whatever this node holds of the migration: the copy (if restored)
 * and the staging directory. */
static void discard(step *st, dst_why why) {
        add(st, (dst_action){.kind = DST_DO_NOTE_DISCARD, .why = why});
        act(st, DST_DO_STOP_SINK);
        st->s->sink = DST_SINK_OVER;
        kill_copy(st);
        act(st, DST_DO_REMOVE_STAGING);
        end(st, DST_ABORTED);
}

static void open_ask(step *st) {
        act(st, DST_DO_OPEN_ASK);
        st->s->ask = DST_ASK_OPENING;
}

/* Holding a stopped copy without the source: ask it, never guess. */
static void doubt(step *st) {
        if (st->s->phase != DST_IN_DOUBT)
                enter(st, DST_IN_DOUBT);
        open_ask(st);
}

static void ask_later(step *st) {
        add(st, (dst_action){.kind = DST_DO_ASK_LATER,
                             .delay_ms = handoff_backoff_ms(st->s->ask_tries, DST_ASK_RETRY_MIN_MS,
                                                            DST_ASK_RETRY_MAX_MS)});
        st->s->ask_tries++;
}

/* The move is complete here: answer, and let the images go. */
static void complete(step *st) {
        act(st, DST_DO_SEND_RUNNING);
        act(st, DST_DO_REMOVE_STAGING);
        end(st, DST_RUNNING);
}

/* COMMIT, or "committed" from the source: the copy runs here from now on. */
static void commit(step *st) {
        dst_state *s = st->s;

        drop_ask(st);
        if (s->postcopy == DST_PC_FAILED) {
                /* Its memory will never be complete: it must not run. */
                send_error(st, -EIO);
                discard(st, DST_WHY_POSTCOPY_BEFORE_RESUME);
                return;
        }
        act(st, DST_DO_RESUME_COPY);
        s->copy = DST_COPY_RUNNING;
        act(st, DST_DO_WRITE_STATE);
        if (s->postcopy == DST_PC_PENDING)
                /* Running on memory that is still arriving: the journal says
                 * so, for a restart must not take it for complete. */
                s->postcopy = DST_PC_RESUMED;
        enter(st, DST_RUNNING);
        if (s->postcopy != DST_PC_RESUMED)
                complete(st);
        /* else RUNNING follows the last page */
}

/* ---- the handlers, one per event ---- */

static handoff_verdict on_offer(step *st) {
        dst_state *s = st->s;

        if (s->phase != DST_RECEIVING || s->sink != DST_SINK_NONE || s->session != DST_SESSION_UP)
                return HANDOFF_REFUSED; /* one OFFER makes one migration */
        enter(st, DST_RECEIVING);
        act(st, DST_DO_START_SINK);
        s->sink = DST_SINK_OPEN;
        /* The source may dump from now on. */
        act(st, DST_DO_SEND_ACCEPT);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_recover(step *st, const dst_event *ev) {
        dst_state *s = st->s;

        switch (dst_recovery_for(s->phase)) {
        case MIG_RECOVER_FINISH: act(st, DST_DO_FINISH); return HANDOFF_TAKEN;
        case MIG_RECOVER_DISCARD: discard(st, DST_WHY_STOPPED_BEFORE_RESTORED); return HANDOFF_TAKEN;
        case MIG_RECOVER_ASK_SOURCE:
                if (!ev->copy_alive) {
                        /* The copy did not survive (a reboot?): nothing to hold;
                         * a committed source hears "no copy" and restores its
                         * own. */
                        s->copy = DST_COPY_NONE;
                        discard(st, DST_WHY_COPY_VANISHED);
                        return HANDOFF_TAKEN;
                }
                doubt(st);
                return HANDOFF_TAKEN;
        case MIG_RECOVER_COMPLETE:
                if (s->postcopy == DST_PC_RESUMED) {
                        /* Resumed while its pages were still arriving, and the
                         * daemon that fetched them died with us: the copy's
                         * memory will never be complete. */
                        s->postcopy = DST_PC_FAILED;
                        note(st, DST_WHY_STOPPED_IN_POSTCOPY);
                        kill_copy(st);
                        act(st, DST_DO_REMOVE_STATE);
                        act(st, DST_DO_REMOVE_STAGING);
                        end(st, DST_ABORTED);
                        return HANDOFF_TAKEN;
                }
                act(st, DST_DO_REMOVE_STAGING);
                act(st, DST_DO_FINISH);
                return HANDOFF_TAKEN;
        case MIG_RECOVER_MARK_FAILED:
        case MIG_RECOVER_ROLLBACK:
        case MIG_RECOVER_RESUME:
        case MIG_RECOVER_FORWARD:
        case _MIG_RECOVER_MAX:
        case _MIG_RECOVER_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

/* The sink reports once, while it is open. */
static bool sink_reports(step *st) {
        if (st->s->phase != DST_RECEIVING || st->s->sink != DST_SINK_OPEN)
                return false;
        st->s->sink = DST_SINK_OVER;
        return true;
}

static handoff_verdict on_sink_failed(step *st) {
        if (!sink_reports(st))
                return HANDOFF_REFUSED;
        note(st, DST_WHY_EVENT);
        act(st, DST_DO_SEND_REJECT);
        end(st, DST_ABORTED);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_received(step *st) {
        if (!sink_reports(st))
                return HANDOFF_REFUSED;
        enter(st, DST_VERIFIED);
        act(st, DST_DO_SEND_VERIFIED);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_receive_failed(step *st) {
        if (!sink_reports(st))
                return HANDOFF_REFUSED;
        /* The sink removed the staging itself. */
        note(st, DST_WHY_EVENT);
        send_error(st, 0);
        end(st, DST_ABORTED);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_received_unusable(step *st) {
        if (!sink_reports(st))
                return HANDOFF_REFUSED;
        note(st, DST_WHY_EVENT);
        send_error(st, 0);
        discard(st, DST_WHY_UNUSABLE_IMAGES);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_restore(step *st) {
        if (st->s->phase != DST_VERIFIED) {
                act(st, DST_DO_REFUSE_RESTORE);
                return HANDOFF_TAKEN;
        }
        enter(st, DST_RESTORING);
        act(st, DST_DO_START_RESTORE);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_restore_ok(step *st) {
        dst_state *s = st->s;

        if (s->phase != DST_RESTORING)
                return HANDOFF_REFUSED;
        s->copy = DST_COPY_STOPPED;
        if (s->postcopy == DST_PC_FAILED) {
                /* Restored, but the daemon that was to fill its memory died:
                 * this copy must never run. */
                send_error(st, 0);
                discard(st, DST_WHY_POSTCOPY_IN_RESTORE);
                return HANDOFF_TAKEN;
        }
        /* Journaled with its pid: a restart finds the copy. */
        enter(st, DST_RESTORED);
        switch (s->session) {
        case DST_SESSION_UP: act(st, DST_DO_SEND_RESTORED); return HANDOFF_TAKEN;
        case DST_SESSION_ABORTED: discard(st, DST_WHY_ABORTED_IN_RESTORE); return HANDOFF_TAKEN;
        case DST_SESSION_LOST: doubt(st); return HANDOFF_TAKEN; /* the source left while CRIU was busy */
        case _DST_SESSION_MAX:
        case _DST_SESSION_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_restore_failed(step *st) {
        if (st->s->phase != DST_RESTORING)
                return HANDOFF_REFUSED;
        note(st, DST_WHY_EVENT);
        send_error(st, 0);
        discard(st, DST_WHY_RESTORE_FAILED);
        return HANDOFF_TAKEN;
}

/* The lazy-pages daemon runs from the restore on. */
static bool daemon_runs(const dst_state *s) {
        switch (s->phase) {
        case DST_RESTORING:
        case DST_RESTORED:
        case DST_IN_DOUBT: return s->postcopy == DST_PC_PENDING;
        case DST_RUNNING: return s->postcopy == DST_PC_RESUMED;
        case DST_RECEIVING:
        case DST_VERIFIED:
        case DST_ABORTED:
        case _DST_PHASE_MAX:
        case _DST_PHASE_INVALID: break;
        }
        return false;
}

static handoff_verdict on_pages_complete(step *st) {
        dst_state *s = st->s;

        if (!daemon_runs(s))
                return HANDOFF_REFUSED;
        switch (s->postcopy) {
        case DST_PC_PENDING: s->postcopy = DST_PC_COMPLETE; return HANDOFF_TAKEN;
        case DST_PC_RESUMED:
                /* Every page arrived after the resume: now the move is over. */
                s->postcopy = DST_PC_COMPLETE;
                complete(st);
                return HANDOFF_TAKEN;
        case DST_PC_OFF:
        case DST_PC_COMPLETE:
        case DST_PC_FAILED:
        case _DST_PC_MAX:
        case _DST_PC_INVALID: break;
        }
        return HANDOFF_REFUSED; /* no daemon runs */
}

static handoff_verdict on_pages_failed(step *st) {
        dst_state *s = st->s;
        dst_postcopy was = s->postcopy;

        if (!daemon_runs(s))
                return HANDOFF_REFUSED;
        s->postcopy = DST_PC_FAILED;
        note(st, DST_WHY_EVENT);
        if (was == DST_PC_RESUMED) {
                /* It ran on memory that will never be complete: end it. */
                kill_copy(st);
                act(st, DST_DO_REMOVE_STATE);
                send_error(st, -EIO);
                act(st, DST_DO_REMOVE_STAGING);
                end(st, DST_ABORTED);
                return HANDOFF_TAKEN;
        }
        switch (s->phase) {
        case DST_RESTORED:
        case DST_IN_DOUBT:
                send_error(st, -EIO);
                discard(st, DST_WHY_POSTCOPY_BEFORE_COMMIT);
                return HANDOFF_TAKEN;
        case DST_RESTORING: return HANDOFF_TAKEN; /* RESTORE_OK sees it */
        case DST_RECEIVING:
        case DST_VERIFIED:
        case DST_RUNNING:
        case DST_ABORTED:
        case _DST_PHASE_MAX:
        case _DST_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_commit(step *st) {
        switch (st->s->phase) {
        case DST_RESTORED:
        case DST_IN_DOUBT: commit(st); return HANDOFF_TAKEN;
        case DST_RECEIVING:
        case DST_VERIFIED:
        case DST_RESTORING:
        case DST_RUNNING:
        case DST_ABORTED: act(st, DST_DO_REFUSE_COMMIT); return HANDOFF_TAKEN;
        case _DST_PHASE_MAX:
        case _DST_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_resume_failed(step *st) {
        if (st->s->copy != DST_COPY_RUNNING || st->s->phase != DST_RUNNING)
                return HANDOFF_REFUSED; /* only a resume fails so */
        st->s->copy = DST_COPY_NONE;    /* it is gone: nothing to kill */
        st->s->postcopy = st->s->postcopy == DST_PC_OFF ? DST_PC_OFF : DST_PC_FAILED;
        note(st, DST_WHY_EVENT);
        /* The source, committed, restores its own images on -ESRCH. */
        send_error(st, -ESRCH);
        discard(st, DST_WHY_NO_COPY);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_abort(step *st) {
        dst_state *s = st->s;

        switch (s->phase) {
        case DST_RESTORING:
                /* CRIU is busy; its end (or a restore that never starts)
                 * discards. */
                note(st, DST_WHY_EVENT);
                act(st, DST_DO_DETACH_SESSION);
                s->session = DST_SESSION_ABORTED;
                act(st, DST_DO_CANCEL_RESTORE);
                return HANDOFF_TAKEN;
        case DST_RECEIVING:
        case DST_VERIFIED:
        case DST_RESTORED:
        case DST_IN_DOUBT:
                note(st, DST_WHY_EVENT);
                discard(st, DST_WHY_SOURCE_ABORTED);
                return HANDOFF_TAKEN;
        case DST_RUNNING: /* committed: an ABORT cannot undo that */
        case DST_ABORTED: return HANDOFF_IGNORED;
        case _DST_PHASE_MAX:
        case _DST_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_session_lost(step *st) {
        dst_state *s = st->s;

        if (s->session != DST_SESSION_UP)
                return HANDOFF_IGNORED;
        s->session = DST_SESSION_LOST;
        switch (s->phase) {
        case DST_RECEIVING:
        case DST_VERIFIED:
                note(st, DST_WHY_EVENT);
                discard(st, DST_WHY_SOURCE_LEFT);
                return HANDOFF_TAKEN;
        case DST_RESTORING: return HANDOFF_TAKEN; /* RESTORE_OK sees no session, and asks */
        case DST_RESTORED: doubt(st); return HANDOFF_TAKEN;
        case DST_RUNNING:
                if (s->postcopy == DST_PC_RESUMED)
                        /* The pages cannot come any more: the daemon fails, and
                         * its end (PAGES_FAILED) ends the incomplete copy. */
                        act(st, DST_DO_DROP_RELAY);
                return HANDOFF_TAKEN;
        case DST_IN_DOUBT: /* asking already */
        case DST_ABORTED: return HANDOFF_TAKEN;
        case _DST_PHASE_MAX:
        case _DST_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

static handoff_verdict on_ask_ready(step *st) {
        if (st->s->phase != DST_IN_DOUBT || st->s->ask != DST_ASK_OPENING)
                return HANDOFF_REFUSED;
        st->s->ask = DST_ASK_READY;
        act(st, DST_DO_SEND_QUERY);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_ask_lost(step *st) {
        if (st->s->phase != DST_IN_DOUBT || st->s->ask == DST_ASK_NONE)
                return HANDOFF_IGNORED;
        st->s->ask = DST_ASK_NONE;
        ask_later(st);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_outcome(step *st, handoff_outcome o) {
        if (st->s->phase != DST_IN_DOUBT || st->s->ask != DST_ASK_READY)
                return HANDOFF_IGNORED; /* an answer to a question no longer asked */
        switch (o) {
        case HANDOFF_OUTCOME_COMMITTED: commit(st); return HANDOFF_TAKEN;
        case HANDOFF_OUTCOME_ABORTED: discard(st, DST_WHY_SOURCE_ABORTED); return HANDOFF_TAKEN;
        case HANDOFF_OUTCOME_UNKNOWN:
        case _HANDOFF_OUTCOME_MAX:
        case _HANDOFF_OUTCOME_INVALID: break;
        }
        /* Never guess: keep the copy stopped and ask again. */
        drop_ask(st);
        ask_later(st);
        return HANDOFF_TAKEN;
}

/* The operator's decision (dst_resolve_decide): as the source's answer
 * would be, whether or not a question is out. */
static handoff_verdict on_resolved(step *st, handoff_outcome o) {
        if (st->s->phase != DST_IN_DOUBT)
                return HANDOFF_IGNORED; /* settled meanwhile */
        if (o == HANDOFF_OUTCOME_COMMITTED) {
                commit(st);
                return HANDOFF_TAKEN;
        }
        if (o != HANDOFF_OUTCOME_ABORTED)
                return HANDOFF_REFUSED; /* "unknown" is no decision */
        if (st->s->ask != DST_ASK_NONE)
                drop_ask(st);
        discard(st, DST_WHY_RESOLVED);
        return HANDOFF_TAKEN;
}

static handoff_verdict on_timer(step *st) {
        if (st->s->phase != DST_IN_DOUBT || st->s->ask != DST_ASK_NONE)
                return HANDOFF_IGNORED; /* a timer of a step that is over */
        open_ask(st);
        return HANDOFF_TAKEN;
}

/* The phase whose write failed must be the one the last list journaled:
 * the current phase, or RESTORED for a list that went on from it. */
static bool journaled_last(dst_phase now, dst_phase failed) {
        if (failed == DST_RESTORED)
                return now == DST_RESTORED || now == DST_IN_DOUBT || now == DST_ABORTED;
        return now == failed;
}

static handoff_verdict on_journal_failed(step *st, dst_phase failed) {
        dst_state *s = st->s;

        if (!journaled_last(s->phase, failed))
                return HANDOFF_REFUSED;
        note(st, DST_WHY_EVENT);
        switch (failed) {
        case DST_RECEIVING: /* nothing was opened or accepted after it */
                s->sink = DST_SINK_NONE;
                act(st, DST_DO_SEND_REJECT);
                end(st, DST_ABORTED);
                return HANDOFF_TAKEN;
        case DST_VERIFIED:
        case DST_RESTORING: /* the restore was to start after it: it did not */
                send_error(st, 0);
                discard(st, DST_WHY_CANNOT_JOURNAL);
                return HANDOFF_TAKEN;
        case DST_RESTORED:
                /* We hold the stopped copy, and whatever the list meant to do
                 * with it after the write did not happen. */
                s->phase = DST_RESTORED;
                s->copy = DST_COPY_STOPPED;
                s->ask = DST_ASK_NONE;
                send_error(st, 0);
                discard(st, DST_WHY_CANNOT_JOURNAL);
                return HANDOFF_TAKEN;
        case DST_IN_DOUBT:
                /* The journal says RESTORED, which a restart also answers by
                 * asking: keep asking. */
                s->ask = DST_ASK_NONE;
                open_ask(st);
                return HANDOFF_TAKEN;
        case DST_RUNNING:
                /* Resumed already: the move goes on; the archive says RUNNING. */
                if (s->postcopy != DST_PC_RESUMED)
                        complete(st);
                return HANDOFF_TAKEN;
        case DST_ABORTED:
                detach_session(st);
                act(st, DST_DO_FINISH);
                return HANDOFF_TAKEN;
        case _DST_PHASE_MAX:
        case _DST_PHASE_INVALID: break;
        }
        return HANDOFF_REFUSED;
}

handoff_verdict dst_step(const dst_state *s, const dst_event *ev, dst_state *ret_state,
                         dst_actions *ret_actions) {
        dst_state next = *s;
        dst_actions acts = {};
        step st = {.s = &next, .a = &acts};
        handoff_verdict v = HANDOFF_REFUSED;

        switch (ev->kind) {
        case DST_EV_OFFER: v = on_offer(&st); break;
        case DST_EV_RECOVER: v = on_recover(&st, ev); break;
        case DST_EV_SINK_FAILED: v = on_sink_failed(&st); break;
        case DST_EV_RECEIVED: v = on_received(&st); break;
        case DST_EV_RECEIVE_FAILED: v = on_receive_failed(&st); break;
        case DST_EV_RECEIVED_UNUSABLE: v = on_received_unusable(&st); break;
        case DST_EV_RESTORE: v = on_restore(&st); break;
        case DST_EV_RESTORE_OK: v = on_restore_ok(&st); break;
        case DST_EV_RESTORE_FAILED: v = on_restore_failed(&st); break;
        case DST_EV_PAGES_COMPLETE: v = on_pages_complete(&st); break;
        case DST_EV_PAGES_FAILED: v = on_pages_failed(&st); break;
        case DST_EV_COMMIT: v = on_commit(&st); break;
        case DST_EV_RESUME_FAILED: v = on_resume_failed(&st); break;
        case DST_EV_PEER_ABORT: v = on_abort(&st); break;
        case DST_EV_SESSION_LOST: v = on_session_lost(&st); break;
        case DST_EV_ASK_READY: v = on_ask_ready(&st); break;
        case DST_EV_ASK_LOST: v = on_ask_lost(&st); break;
        case DST_EV_OUTCOME: v = on_outcome(&st, ev->outcome); break;
        case DST_EV_JOURNAL_FAILED: v = on_journal_failed(&st, ev->phase); break;
        case DST_EV_TIMER: v = on_timer(&st); break;
        case DST_EV_RESOLVED: v = on_resolved(&st, ev->outcome); break;
        case _DST_EVENT_MAX:
        case _DST_EVENT_INVALID: break;
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

/* ---- resolve ---- */

/* What the facts say, if anything: committed, aborted, or unknown. */
static handoff_outcome resolve_facts_say(const dst_resolve_facts *f, const char **why) {
        if (f->copy != DST_COPY_STOPPED)
                return *why = "the copy here is gone: there is nothing to resume", HANDOFF_OUTCOME_ABORTED;
        if (!f->source_reached)
                return *why = "the source cannot be reached: nothing there can be checked",
                       HANDOFF_OUTCOME_UNKNOWN;
        if (f->source_says == HANDOFF_OUTCOME_COMMITTED)
                return *why = "the source's journal says committed", HANDOFF_OUTCOME_COMMITTED;
        if (f->source_says == HANDOFF_OUTCOME_ABORTED)
                return *why = "the source's journal says aborted: it runs its own copy",
                       HANDOFF_OUTCOME_ABORTED;
        if (f->source_copy == DST_SOURCE_COPY_RUNS)
                return *why = "a copy of the container runs on the source", HANDOFF_OUTCOME_ABORTED;
        if (f->source_record == HANDOFF_FACT_NO && f->source_copy == DST_SOURCE_COPY_NONE)
                return *why = "the source has no record of the migration and no copy runs there: "
                              "the copy here is the only one",
                       HANDOFF_OUTCOME_COMMITTED;
        /* Its dump left it stopped, and without a record nothing there
         * resumes it or ends it: the copy here is the one that can run. */
        if (f->source_record == HANDOFF_FACT_NO && f->source_copy == DST_SOURCE_COPY_HELD)
                return *why = "the source has no record of the migration and holds its copy stopped, "
                              "where nothing resumes it: the copy here runs, the one there is to be ended",
                       HANDOFF_OUTCOME_COMMITTED;
        return *why = "the source is in the middle of a step: its answer is not known yet",
               HANDOFF_OUTCOME_UNKNOWN;
}

dst_resolve_verdict dst_resolve_decide(const dst_resolve_facts *f, handoff_outcome *ret_outcome,
                                       const char **ret_why, bool *ret_forced) {
        handoff_outcome asked = f->ask == DST_RESOLVE_COMMIT  ? HANDOFF_OUTCOME_COMMITTED
                                : f->ask == DST_RESOLVE_ABORT ? HANDOFF_OUTCOME_ABORTED
                                                              : HANDOFF_OUTCOME_UNKNOWN;
        handoff_outcome says;
        const char *why;

        *ret_forced = false;
        *ret_outcome = HANDOFF_OUTCOME_UNKNOWN;
        if (f->phase != DST_IN_DOUBT) {
                *ret_why = "the migration is not in doubt here";
                return DST_RESOLVE_REFUSED;
        }
        says = resolve_facts_say(f, &why);
        *ret_why = why;
        if (says != HANDOFF_OUTCOME_UNKNOWN) {
                /* The only copy may be given up, knowingly; a second copy
                 * beside a running one, never. */
                bool only_copy =
                        says == HANDOFF_OUTCOME_COMMITTED &&
                        (f->source_copy == DST_SOURCE_COPY_NONE || f->source_copy == DST_SOURCE_COPY_HELD) &&
                        f->source_record == HANDOFF_FACT_NO;
                if (asked != HANDOFF_OUTCOME_UNKNOWN && asked != says) {
                        if (!(only_copy && f->force))
                                return DST_RESOLVE_REFUSED;
                        *ret_forced = true;
                        *ret_outcome = asked;
                        return DST_RESOLVE_DECIDED;
                }
                *ret_outcome = says;
                return DST_RESOLVE_DECIDED;
        }
        if (asked == HANDOFF_OUTCOME_UNKNOWN || !f->force)
                return DST_RESOLVE_UNDECIDED;
        *ret_forced = true;
        *ret_outcome = asked;
        return DST_RESOLVE_DECIDED;
}
