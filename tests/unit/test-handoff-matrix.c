/* SPDX-License-Identifier: Apache-2.0 */
/* The fault matrix (tests/integration/fault-matrix.sh) as the two cores see
 * it: one test per cell (7 points of the handoff x 7 faults). A small model
 * of two nodes carries out both cores' actions the way the agents do: the
 * journal (what survives a killed agent), the session between them (which a
 * cut link stalls until the idle timeout, and a killed sshd or agent ends at
 * once), CRIU (a dump kills the container's tasks, or, in the held variant
 * of every cell, leaves them stopped until the commit ends or a rollback
 * resumes them; a restore leaves a stopped copy), the retry timers, and
 * the CLI's answer. Each fault lands
 * where the integration test lands it (right after the journal write, or
 * on RESTORED, that its row names); what stays broken is mended once the CLI
 * has answered, as the test does. Then both nodes must have settled with
 * exactly one copy running, no stopped copy, and the source's outcome and
 * the CLI's exit code the matrix expects.
 *
 * The integration test proves the agents on real CRIU and sshd; this one
 * proves the rules, and runs in milliseconds without root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "exit-codes.h"
#include "macro.h"
#include "test-handoff-util.h"

typedef enum fault { LINK_CUT, SRC_KILL, DST_KILL, DST_SSHD, FLIP, RESTORE_FAIL, DISK_FULL, N_FAULTS } fault;
static const char *const fault_names[N_FAULTS] = {"link-cut", "src-kill",     "dst-kill", "dst-sshd",
                                                  "flip",     "restore-fail", "disk-full"};

typedef enum node { SRC, DST } node;

/* Where a row stops the handoff (PAUSE in fault-matrix.sh). mid-stream: the
 * stream is under way, STREAMING journaled. */
typedef struct point {
        const char *row;
        node at;
        const char *name; /* a journaled phase, or "got-restored" */
} point;

static const point points[] = {
        {"precheck", SRC, "precheck"},
        {"after-dump", SRC, "dumped"},
        {"mid-stream", SRC, "streaming"},
        {"after-verify", DST, "verified"},
        {"during-restore", DST, "dest-restoring"},
        {"after-restored", SRC, "got-restored"},
        {"after-committed", SRC, "committed"},
};

/* EXPECT in fault-matrix.sh: the source's outcome and the CLI's exit code;
 * NULL where the cell does not apply. */
typedef struct expect {
        const char *outcome;
        int rc;
} expect;

static const expect expected[ARRAY_SIZE(points)][N_FAULTS] = {
        /* link-cut, src-kill, dst-kill, dst-sshd, flip, restore-fail, disk-full */
        {{"failed", 1}, {"failed", 5}, {"done", 0}, {"failed", 1}, {}, {}, {"refused", 3}},
        {{"rolled-back", 4},
         {"rolled-back", 5},
         {"rolled-back", 4},
         {"rolled-back", 4},
         {},
         {},
         {"rolled-back", 4}},
        {{"rolled-back", 4},
         {"rolled-back", 5},
         {"rolled-back", 4},
         {"rolled-back", 4},
         {"done", 0},
         {},
         {"rolled-back", 4}},
        {{"rolled-back", 4},
         {"rolled-back", 5},
         {"rolled-back", 4},
         {"rolled-back", 4},
         {"done", 0},
         {},
         {"done", 0}},
        {{"rolled-back", 4},
         {"rolled-back", 5},
         {"rolled-back", 4},
         {"rolled-back", 4},
         {"done", 0},
         {"rolled-back", 4},
         {"done", 0}},
        {{"done", 5}, {"rolled-back", 5}, {"done", 0}, {"done", 5}, {"done", 0}, {}, {"done", 0}},
        {{"done", 5}, {"done", 5}, {"done", 0}, {"done", 5}, {"done", 0}, {}, {"done", 0}},
};

/* ---- the model ---- */

typedef enum copy { NO_COPY, STOPPED_COPY, RUNNING_COPY } copy;

/* Something that happens to one node: a message that arrived (on session,
 * lost if that session ended first), or a local event of one incarnation of
 * its agent (lost if the agent died first). */
typedef struct item {
        node to;
        unsigned session;
        unsigned incarnation;
        union {
                src_event src;
                dst_event dst;
        };
        enum { EVENT, MSG_OFFER, MSG_STREAM, MSG_RESTORE, MSG_COMMIT, MSG_ABORT, MSG_QUERY } what;
} item;

#define QUEUE_MAX 64

typedef struct world {
        const point *at;
        fault fault;
        bool injected, cut, sshd_down, disk_full, restore_fails;
        bool held; /* the dump leaves the tasks stopped (leave-stopped) */
        char trace[4096];

        /* source node */
        bool src_up, src_active, src_tasks, images;
        bool src_held; /* the dumped tasks, stopped here */
        unsigned src_incarnation;
        src_state src;
        int src_journal; /* durable phase, -1: none */
        bool src_archived;
        bool src_timer;
        unsigned link; /* the session to the destination, 0: none */
        handoff_outcome answer;

        /* destination node */
        bool dst_up, dst_active;
        unsigned dst_incarnation;
        dst_state dst;
        int dst_journal;
        bool dst_archived;
        bool dst_timer;
        unsigned dst_session, reply; /* the session the migration came on; a COMMIT's */
        unsigned ask;                /* our session to the source */
        copy dst_copy;
        bool restoring;

        unsigned next_session;
        int cli_rc; /* -1 until the CLI has its answer */
        item q[QUEUE_MAX];
        size_t qn;
} world;

static void trace(world *w, const char *fmt, ...) _printf_(2, 3);
static void trace(world *w, const char *fmt, ...) {
        size_t n = strlen(w->trace);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->trace + n, sizeof(w->trace) - n, fmt, ap);
        va_end(ap);
}

static void push(world *w, item it) {
        assert_true(w->qn < QUEUE_MAX);
        w->q[w->qn++] = it;
}

static void src_local(world *w, src_event ev) {
        push(w, (item){.to = SRC, .incarnation = w->src_incarnation, .src = ev});
}

static void dst_local(world *w, dst_event ev) {
        push(w, (item){.to = DST, .incarnation = w->dst_incarnation, .dst = ev});
}

/* Sessions to the destination go through its sshd; ours to the source do
 * not (only a cut link stops them). */
static bool reaches_dst(const world *w) {
        return !w->cut && !w->sshd_down && w->dst_up;
}

static bool reaches_src(const world *w) {
        return !w->cut && w->src_up;
}

static void to_dst(world *w, unsigned session, int what, dst_event ev) {
        if (session && !w->cut)
                push(w, (item){.to = DST, .session = session, .what = what, .dst = ev});
}

static void to_src(world *w, unsigned session, src_event ev) {
        if (session && !w->cut)
                push(w, (item){.to = SRC, .session = session, .src = ev});
}

static void end_link(world *w, bool tell_src) {
        unsigned l = w->link;
        if (!l)
                return;
        w->link = 0;
        if (tell_src)
                src_local(w, (src_event){.kind = SRC_EV_LINK_LOST});
        if (w->dst_session == l) {
                w->dst_session = 0;
                dst_local(w, (dst_event){.kind = DST_EV_SESSION_LOST});
        }
        if (w->reply == l)
                w->reply = 0;
}

static void inject(world *w);

static void hook(world *w, node at, const char *name) {
        if (!w->injected && w->at->at == at && strcmp(w->at->name, name) == 0)
                inject(w);
}

/* ---- the source agent ---- */

static void src_feed(world *w, src_event ev);

static void src_perform(world *w, const src_action *a, src_event *failure, bool *failed) {
        switch (a->kind) {
        case SRC_DO_JOURNAL:
                w->src_journal = a->phase;
                hook(w, SRC, src_phase_to_string(a->phase));
                return;
        case SRC_DO_OPEN_LINK:
                if (reaches_dst(w)) {
                        w->link = ++w->next_session;
                        push(w, (item){.to = SRC, .session = w->link, .src = {.kind = SRC_EV_LINK_READY}});
                        return;
                }
                *failure = (src_event){.kind = SRC_EV_LINK_LOST};
                *failed = true;
                return;
        case SRC_DO_CLOSE_LINK: end_link(w, false); return;
        case SRC_DO_SEND_OFFER: to_dst(w, w->link, MSG_OFFER, (dst_event){.kind = DST_EV_OFFER}); return;
        case SRC_DO_SEND_ABORT:
                to_dst(w, w->link, MSG_ABORT, (dst_event){.kind = DST_EV_PEER_ABORT});
                return;
        case SRC_DO_SEND_RESTORE:
                to_dst(w, w->link, MSG_RESTORE, (dst_event){.kind = DST_EV_RESTORE});
                return;
        case SRC_DO_SEND_COMMIT: to_dst(w, w->link, MSG_COMMIT, (dst_event){.kind = DST_EV_COMMIT}); return;
        case SRC_DO_START_DUMP: src_local(w, (src_event){.kind = SRC_EV_DUMP_OK, .held = w->held}); return;
        case SRC_DO_START_STREAM:
                /* The images, then IMAGES_DONE queued: both need the link. */
                to_dst(w, w->link, MSG_STREAM, (dst_event){.kind = DST_EV_RECEIVED});
                if (w->link && !w->cut)
                        push(w, (item){.to = SRC, .session = w->link, .src = {.kind = SRC_EV_STREAM_SENT}});
                return;
        case SRC_DO_START_ROLLBACK:
                src_local(w, (src_event){.kind = w->images ? SRC_EV_ROLLBACK_OK : SRC_EV_ROLLBACK_FAILED});
                return;
        case SRC_DO_ROLLBACK_LATER:
        case SRC_DO_RECONNECT_LATER: w->src_timer = true; return;
        case SRC_DO_REPORT_IN_DOUBT:
                if (w->cli_rc < 0)
                        w->cli_rc = NM_EXIT_IN_DOUBT;
                return;
        case SRC_DO_KILL_COPY: w->src_tasks = false; return;
        case SRC_DO_RESUME_HELD:
                if (w->src_held) {
                        w->src_held = false;
                        w->src_tasks = true;
                }
                src_local(w, (src_event){.kind = w->src_tasks ? SRC_EV_RESUMED : SRC_EV_RESUME_FAILED});
                return;
        case SRC_DO_END_HELD: w->src_held = false; return;
        case SRC_DO_REMOVE_IMAGES: w->images = false; return;
        case SRC_DO_ANSWER: w->answer = a->outcome; return;
        case SRC_DO_FINISH:
                w->src_active = false;
                w->src_archived = true;
                w->src_timer = false;
                if (w->cli_rc < 0)
                        w->cli_rc = src_phase_exit_code(w->src.phase);
                return;
        case SRC_DO_NOTE_FAILURE:
        case SRC_DO_CANCEL_DUMP: /* dumps start at once here */
        case SRC_DO_RESUME_IN_PLACE:
        case SRC_DO_DROP_RELAY:
        case SRC_DO_UNLOCK_NETWORK:
        case SRC_DO_WRITE_STATE:
        case SRC_DO_REMOVE_STATE:
        case _SRC_ACTION_MAX:
        case _SRC_ACTION_INVALID: return;
        }
}

static void src_feed(world *w, src_event ev) {
        unsigned inc = w->src_incarnation;

        for (;;) {
                src_state next;
                src_actions acts;
                src_event failure = {};
                bool failed = false;
                char text[ACTS_TEXT_MAX];

                if (!w->src_active)
                        return;
                (void)src_step(&w->src, &ev, &next, &acts);
                trace(w, "  n1 %s %s -> %s: %s\n", src_event_to_string(ev.kind),
                      src_phase_to_string(w->src.phase), src_phase_to_string(next.phase),
                      src_acts_text(&acts, text));
                w->src = next;
                /* An agent killed halfway through a list does no more of it. */
                for (size_t i = 0; i < acts.n && !failed && w->src_incarnation == inc; i++)
                        src_perform(w, &acts.v[i], &failure, &failed);
                if (!failed || w->src_incarnation != inc)
                        return;
                ev = failure; /* the list ends; its failure is the next event */
        }
}

/* ---- the destination agent ---- */

static void dst_perform(world *w, const dst_action *a, dst_event *failure, bool *failed) {
        unsigned to = w->reply ? w->reply : w->dst_session;

        switch (a->kind) {
        case DST_DO_JOURNAL:
                w->dst_journal = a->phase;
                hook(w, DST, dst_phase_to_string(a->phase));
                return;
        case DST_DO_SEND_ACCEPT: to_src(w, to, (src_event){.kind = SRC_EV_ACCEPT}); return;
        case DST_DO_SEND_REJECT: to_src(w, to, (src_event){.kind = SRC_EV_REJECT}); return;
        case DST_DO_SEND_VERIFIED: to_src(w, to, (src_event){.kind = SRC_EV_VERIFIED}); return;
        case DST_DO_SEND_RESTORED: to_src(w, to, (src_event){.kind = SRC_EV_RESTORED}); return;
        case DST_DO_SEND_RUNNING: to_src(w, to, (src_event){.kind = SRC_EV_RUNNING}); return;
        case DST_DO_SEND_ERROR:
                to_src(w, to, (src_event){.kind = SRC_EV_PEER_ERROR, .code = a->code ? a->code : -EIO});
                return;
        case DST_DO_REFUSE_RESTORE:
        case DST_DO_REFUSE_COMMIT:
                to_src(w, to, (src_event){.kind = SRC_EV_PEER_ERROR, .code = -EPROTO});
                return;
        case DST_DO_START_RESTORE:
                w->restoring = true;
                dst_local(w,
                          (dst_event){.kind = w->restore_fails ? DST_EV_RESTORE_FAILED : DST_EV_RESTORE_OK});
                return;
        case DST_DO_RESUME_COPY:
                if (w->dst_copy == STOPPED_COPY) {
                        w->dst_copy = RUNNING_COPY;
                        return;
                }
                *failure = (dst_event){.kind = DST_EV_RESUME_FAILED};
                *failed = true;
                return;
        case DST_DO_KILL_COPY: w->dst_copy = NO_COPY; return;
        case DST_DO_OPEN_ASK:
                if (reaches_src(w)) {
                        w->ask = ++w->next_session;
                        push(w, (item){.to = DST, .session = w->ask, .dst = {.kind = DST_EV_ASK_READY}});
                        return;
                }
                *failure = (dst_event){.kind = DST_EV_ASK_LOST};
                *failed = true;
                return;
        case DST_DO_SEND_QUERY:
                if (w->ask && !w->cut)
                        push(w, (item){.to = SRC, .session = w->ask, .what = MSG_QUERY});
                return;
        case DST_DO_DROP_ASK:
                w->ask = 0;
                w->dst_timer = false;
                return;
        case DST_DO_ASK_LATER: w->dst_timer = true; return;
        case DST_DO_DETACH_SESSION:
                w->dst_session = 0;
                w->reply = 0;
                return;
        case DST_DO_FINISH:
                w->dst_active = false;
                w->dst_archived = true;
                w->dst_timer = false;
                w->ask = 0;
                return;
        case DST_DO_NOTE_FAILURE:
        case DST_DO_NOTE_DISCARD:
        case DST_DO_START_SINK:
        case DST_DO_STOP_SINK:
        case DST_DO_CANCEL_RESTORE:
        case DST_DO_WRITE_STATE:
        case DST_DO_REMOVE_STATE:
        case DST_DO_REMOVE_STAGING:
        case DST_DO_RELEASE:
        case DST_DO_DROP_RELAY:
        case _DST_ACTION_MAX:
        case _DST_ACTION_INVALID: return;
        }
}

static void dst_feed(world *w, dst_event ev) {
        unsigned inc = w->dst_incarnation;

        for (;;) {
                dst_state next;
                dst_actions acts;
                dst_event failure = {};
                bool failed = false;
                char text[ACTS_TEXT_MAX];

                if (!w->dst_active)
                        return;
                (void)dst_step(&w->dst, &ev, &next, &acts);
                trace(w, "  n2 %s %s -> %s: %s\n", dst_event_to_string(ev.kind),
                      dst_phase_to_string(w->dst.phase), dst_phase_to_string(next.phase),
                      dst_acts_text(&acts, text));
                w->dst = next;
                for (size_t i = 0; i < acts.n && !failed && w->dst_incarnation == inc; i++)
                        dst_perform(w, &acts.v[i], &failure, &failed);
                if (!failed || w->dst_incarnation != inc)
                        return;
                ev = failure;
        }
}

/* ---- agents dying and starting ---- */

static void src_kill(world *w) {
        w->src_up = false;
        w->src_active = false;
        w->src_timer = false;
        if (w->cli_rc < 0)
                w->cli_rc = NM_EXIT_IN_DOUBT; /* the agent went away before answering */
        end_link(w, false);
        if (w->ask) {
                w->ask = 0;
                dst_local(w, (dst_event){.kind = DST_EV_ASK_LOST});
        }
}

static void src_start(world *w) {
        w->src_up = true;
        w->src_incarnation++;
        if (w->src_journal < 0 || w->src_archived)
                return;
        w->src_active = true;
        w->src = src_state_from_journal((src_phase)w->src_journal);
        src_feed(w, (src_event){.kind = SRC_EV_RECOVER,
                                .tree = w->src_tasks  ? SRC_TREE_RUNNING
                                        : w->src_held ? SRC_TREE_STOPPED
                                                      : SRC_TREE_GONE});
}

static void dst_kill(world *w) {
        w->dst_up = false;
        w->dst_active = false;
        w->dst_timer = false;
        w->ask = 0;
        /* CRIU's restore dies with the agent that drives it. */
        if (w->restoring && w->dst_copy == NO_COPY)
                w->restoring = false;
        w->dst_session = w->reply = 0;
        end_link(w, true);
}

static void dst_start(world *w) {
        w->dst_up = true;
        w->dst_incarnation++;
        if (w->dst_journal < 0 || w->dst_archived)
                return;
        w->dst_active = true;
        w->dst = dst_state_from_journal((dst_phase)w->dst_journal, false);
        dst_feed(w, (dst_event){.kind = DST_EV_RECOVER, .copy_alive = w->dst_copy != NO_COPY});
}

static void inject(world *w) {
        w->injected = true;
        trace(w, "  -- %s at %s\n", fault_names[w->fault], w->at->row);
        switch (w->fault) {
        case LINK_CUT: w->cut = true; return;
        case SRC_KILL:
                src_kill(w);
                src_start(w);
                return;
        case DST_KILL:
                dst_kill(w);
                dst_start(w);
                return;
        case DST_SSHD:
                /* The sessions through it end; new ones cannot start. */
                w->sshd_down = true;
                end_link(w, true);
                return;
        case FLIP: return; /* the kernel refuses writes to sealed files: nothing changes */
        case DISK_FULL: w->disk_full = true; return;
        case RESTORE_FAIL:
        case N_FAULTS: return;
        }
}

/* ---- messages ---- */

static void deliver_to_dst(world *w, const item *it) {
        switch (it->what) {
        case MSG_OFFER:
                if (w->disk_full) { /* dst_check_offer: no room */
                        to_src(w, it->session, (src_event){.kind = SRC_EV_REJECT});
                        return;
                }
                w->dst_active = true;
                w->dst = dst_state_new(false);
                w->dst_session = it->session;
                break;
        case MSG_STREAM:
                if (w->dst_session != it->session)
                        return;
                if (w->disk_full) {
                        dst_feed(w, (dst_event){.kind = DST_EV_RECEIVE_FAILED});
                        return;
                }
                break;
        case MSG_RESTORE:
                if (w->dst_session != it->session)
                        return;
                break;
        case MSG_COMMIT:
                if (!w->dst_active) {
                        /* No longer active: answered from the archive. */
                        bool runs = w->dst_archived && dst_commit_finds_copy((dst_phase)w->dst_journal);
                        to_src(w, it->session,
                               runs ? (src_event){.kind = SRC_EV_RUNNING}
                                    : (src_event){.kind = SRC_EV_PEER_ERROR, .code = -ESRCH});
                        return;
                }
                w->reply = it->session;
                break;
        case MSG_ABORT:
        case EVENT: break;
        case MSG_QUERY: return;
        }
        if (it->what == EVENT && it->session && it->session != w->ask && it->dst.kind == DST_EV_ASK_READY)
                return;
        if (it->dst.kind == DST_EV_RESTORE_OK) {
                w->restoring = false;
                w->dst_copy = STOPPED_COPY;
        }
        dst_feed(w, it->dst);
}

static void deliver_to_src(world *w, const item *it) {
        if (it->what == MSG_QUERY) {
                handoff_outcome o;
                if (w->src_active) {
                        w->answer = HANDOFF_OUTCOME_UNKNOWN;
                        src_feed(w, (src_event){.kind = SRC_EV_QUERY, .settled = true});
                        o = w->answer;
                } else {
                        o = w->src_archived ? src_outcome_of((src_phase)w->src_journal)
                                            : HANDOFF_OUTCOME_UNKNOWN;
                }
                if (!w->cut && w->ask == it->session)
                        push(w, (item){.to = DST,
                                       .session = it->session,
                                       .dst = {.kind = DST_EV_OUTCOME, .outcome = o}});
                return;
        }
        /* Messages of a link we no longer hold are not ours. */
        if (it->session && it->session != w->link)
                return;
        if (it->src.kind == SRC_EV_RESTORED)
                hook(w, SRC, "got-restored");
        if (it->src.kind == SRC_EV_DUMP_OK) {
                w->src_tasks = false; /* leave-running off */
                w->src_held = it->src.held;
                w->images = true;
        }
        if (it->src.kind == SRC_EV_ROLLBACK_OK)
                w->src_tasks = true;
        src_feed(w, it->src);
}

static void deliver(world *w, const item *it) {
        if (it->to == SRC) {
                if (!w->src_up || (!it->session && it->incarnation != w->src_incarnation))
                        return;
                if (it->session && it->what == EVENT && it->session != w->link)
                        return;
                deliver_to_src(w, it);
                return;
        }
        if (!w->dst_up || (!it->session && it->incarnation != w->dst_incarnation))
                return;
        if (it->dst.kind == DST_EV_OUTCOME && it->session != w->ask)
                return;
        deliver_to_dst(w, it);
}

/* ---- time passing ---- */

/* A cut link: every session notices its silence (the idle timeout). */
static bool time_out(world *w) {
        bool any = false;
        if (!w->cut)
                return false;
        if (w->link) {
                end_link(w, true);
                any = true;
        }
        if (w->dst_session) {
                w->dst_session = 0;
                dst_local(w, (dst_event){.kind = DST_EV_SESSION_LOST});
                any = true;
        }
        if (w->ask) {
                w->ask = 0;
                dst_local(w, (dst_event){.kind = DST_EV_ASK_LOST});
                any = true;
        }
        return any;
}

/* After the CLI's answer the test mends what stays broken. */
static bool heal(world *w) {
        if (w->cli_rc < 0 || (!w->cut && !w->sshd_down))
                return false;
        trace(w, "  -- healed\n");
        w->cut = w->sshd_down = false;
        return true;
}

static void run(world *w) {
        for (unsigned steps = 0; steps < 2000; steps++) {
                if (w->qn) {
                        item it = w->q[0];
                        memmove(w->q, w->q + 1, --w->qn * sizeof(item));
                        deliver(w, &it);
                        continue;
                }
                if (time_out(w) || heal(w))
                        continue;
                if (w->src_timer && w->src_active) {
                        w->src_timer = false;
                        src_feed(w, (src_event){.kind = SRC_EV_TIMER});
                        continue;
                }
                if (w->dst_timer && w->dst_active) {
                        w->dst_timer = false;
                        dst_feed(w, (dst_event){.kind = DST_EV_TIMER});
                        continue;
                }
                return;
        }
        fail_msg("no end after 2000 steps:\n%s", w->trace);
}

/* ---- one cell ---- */

typedef struct cell {
        const point *at;
        fault fault;
        bool held;
        expect want;
        char name[64];
} cell;

static void test_cell(void **state) {
        const cell *c = *state;
        world w = {.at = c->at,
                   .fault = c->fault,
                   .src_up = true,
                   .dst_up = true,
                   .src_active = true,
                   .src_tasks = true,
                   .held = c->held,
                   .src_journal = -1,
                   .dst_journal = -1,
                   .cli_rc = -1};
        int running, stopped;

        /* Faults present from the start (NM_FAULT=fail=dest-restore, a
         * staging too small for the offer). */
        w.restore_fails = c->fault == RESTORE_FAIL;
        w.disk_full = c->fault == DISK_FULL && strcmp(c->at->row, "precheck") == 0;
        w.src = src_state_new(false);
        src_feed(&w, (src_event){.kind = SRC_EV_START});
        run(&w);

        running = w.src_tasks + (w.dst_copy == RUNNING_COPY);
        stopped = (w.dst_copy == STOPPED_COPY) + w.src_held;
        if (!w.injected || w.src_active || w.dst_active || running != 1 || stopped != 0 ||
            strcmp(src_phase_to_string(w.src.phase), c->want.outcome) != 0 || w.cli_rc != c->want.rc ||
            (strcmp(c->want.outcome, "done") == 0) != (w.dst_copy == RUNNING_COPY))
                fail_msg(
                        "%s: source %s%s, destination %s%s, %d running, %d stopped, CLI exit %d%s; want %s, "
                        "exit %d\n%s",
                        c->name, src_phase_to_string(w.src.phase), w.src_active ? " (active)" : "",
                        w.dst_journal < 0 ? "none" : dst_phase_to_string(w.dst.phase),
                        w.dst_active ? " (active)" : "", running, stopped, w.cli_rc,
                        w.injected ? "" : ", fault never injected", c->want.outcome, c->want.rc, w.trace);
        /* Nothing of the source's images outlives a move that ended. */
        assert_false(w.images && w.src.phase != SRC_LOST);
}

int main(void) {
        static cell cells[ARRAY_SIZE(points) * N_FAULTS * 2];
        static struct CMUnitTest tests[ARRAY_SIZE(points) * N_FAULTS * 2];
        size_t n = 0;

        /* The same outcomes whether the dump kills the tasks or holds them
         * stopped: only the way back differs. */
        for (int held = 0; held < 2; held++)
                for (size_t r = 0; r < ARRAY_SIZE(points); r++)
                        for (int f = 0; f < N_FAULTS; f++) {
                                if (!expected[r][f].outcome)
                                        continue; /* n/a in the matrix too */
                                cells[n] = (cell){.at = &points[r],
                                                  .fault = (fault)f,
                                                  .held = held,
                                                  .want = expected[r][f]};
                                snprintf(cells[n].name, sizeof(cells[n].name), "%s/%s%s", points[r].row,
                                         fault_names[f], held ? "/held" : "");
                                tests[n] = (struct CMUnitTest){.name = cells[n].name,
                                                               .test_func = test_cell,
                                                               .initial_state = &cells[n]};
                                n++;
                        }
        return _cmocka_run_group_tests("handoff-matrix", tests, n, NULL, NULL);
}
