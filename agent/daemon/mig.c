/* SPDX-License-Identifier: Apache-2.0 */
#include "mig.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "exit-codes.h"
#include "fs-util.h"
#include "log.h"
#include "macro.h"

static int64_t unix_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

mig *mig_new(agent *a, mig_role role, const char *id, const mig_role_ops *ops) {
        mig *m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->a = a;
        m->role = role;
        m->ops = ops;
        m->src = src_state_new(false);
        m->dst = dst_state_new(false);
        snprintf(m->id, sizeof(m->id), "%s", id);
        m->t_start = now_usec();
        m->ps_fd = -EBADF;
        m->rec = json_pack("{s:i, s:s, s:s, s:s, s:I, s:[]}", "version", 1, "mig", m->id, "role",
                           mig_role_to_string(role), "node", a->cfg.node, "created_at",
                           (json_int_t)unix_ms(), "history");
        if (!m->rec) {
                free(m);
                return NULL;
        }
        uv_timer_init(a->loop, &m->timer);
        m->timer.data = m;
        m->refs = 1; /* the timer's, until it is closed */
        LIST_PREPEND(migs, a->migs, m);
        if (role == MIG_ROLE_SOURCE)
                a->n_src++;
        else
                a->n_dst++;
        return m;
}

mig *mig_find(agent *a, const char *id) {
        mig *m;
        LIST_FOREACH(migs, m, a->migs)
        if (!m->finished && strcmp(m->id, id) == 0)
                return m;
        return NULL;
}

void mig_rec_set(mig *m, const char *key, json_t *value) {
        json_object_set_new(m->rec, key, value ? value : json_null());
}

void mig_rec_set_str(mig *m, const char *key, const char *value) {
        mig_rec_set(m, key, value ? json_string(value) : json_null());
}

void mig_rec_set_int(mig *m, const char *key, int64_t value) {
        mig_rec_set(m, key, json_integer(value));
}

mig *mig_find_archiving(agent *a, const char *id) {
        mig *m;
        LIST_FOREACH(migs, m, a->migs)
        if (m->finished && strcmp(m->id, id) == 0)
                return m;
        return NULL;
}

const char *mig_phase_name(const mig *m) {
        return m->role == MIG_ROLE_SOURCE ? src_phase_to_string(m->src.phase)
                                          : dst_phase_to_string(m->dst.phase);
}

bool mig_parkable(const mig *m) {
        return m->role == MIG_ROLE_SOURCE ? src_parkable(&m->src) : dst_parkable(&m->dst);
}

const char *mig_rec_str(const mig *m, const char *key) {
        return json_string_value(json_object_get(m->rec, key));
}

int64_t mig_rec_int(const mig *m, const char *key) {
        return json_integer_value(json_object_get(m->rec, key));
}

/* ---- fault injection (tests only; inert unless NM_FAULT is set) ---- */

static bool fault_has(const char *kind, const char *what) {
        const char *spec = getenv("NM_FAULT");
        char want[96];
        size_t n;
        if (!spec || !*spec)
                return false;
        n = (size_t)snprintf(want, sizeof(want), "%s=%s", kind, what);
        for (const char *p = spec; (p = strstr(p, want)); p += n)
                if ((p == spec || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
                        return true;
        return false;
}

bool fault_fail(const char *point) {
        if (!fault_has("fail", point))
                return false;
        log_warning("fault injection: failing %s (NM_FAULT)", point);
        return true;
}

void fault_point(mig *m, const char *point) {
        const char *gate = getenv("NM_FAULT_GATE");
        if (fault_has("crash-after", point)) {
                log_ctx_warning(m->id, "fault injection: killing this agent at %s", point);
                raise(SIGKILL);
        }
        if (fault_has("hang-after", point)) {
                log_ctx_warning(m->id, "fault injection: this agent stops at %s", point);
                /* Stop everything, as a wedged agent would, until killed. */
                for (;;)
                        pause();
        }
        if (fault_has("pause-after", point) && gate) {
                /* The whole agent stands still at this exact point (as a slow
                 * or stuck node would) until the test removes the gate file:
                 * that is when it injects its fault. */
                log_ctx_warning(m->id, "fault injection: paused at %s until %s is removed", point, gate);
                while (access(gate, F_OK) == 0)
                        usleep(20000);
                log_ctx_warning(m->id, "fault injection: going on from %s", point);
        }
}

/* ---- blocking work, on the thread pool ---- */

/* One piece of blocking work for a migration: its inputs are copies (the
 * loop goes on changing the migration meanwhile), its end comes back on
 * the loop. The migration stays allocated until every piece has ended. */
typedef struct mig_io mig_io;
struct mig_io {
        uv_work_t work;
        mig *m;
        int (*run)(mig_io *io); /* on a pool thread */
        void (*done)(mig_io *io, int r);
        char id[PROTO_ID_MAX + 1];
        char phase[32];
        char *text, *path;
        char what[128]; /* KILL: whose tree, for the log */
        pid_t pid;
        uint64_t ticks;
        bool archive;
        mig_event failure; /* JOURNAL: what a failed write becomes */
        nm_error err;
        int r;
};

static void mig_unref(mig *m) {
        if (--m->refs > 0)
                return;
        json_decref(m->rec);
        json_decref(m->result);
        free(m);
}

static void io_work(uv_work_t *w) {
        mig_io *io = container_of(w, mig_io, work);
        io->r = io->run(io);
}

static void io_after(uv_work_t *w, int status) {
        mig_io *io = container_of(w, mig_io, work);
        mig *m = io->m;

        if (status < 0 && io->r >= 0)
                io->r = nm_error_set(&io->err, status, "%s", uv_strerror(status));
        io->done(io, io->r);
        free(io->text);
        free(io->path);
        free(io);
        mig_unref(m);
}

static mig_io *io_new(mig *m, int (*run)(mig_io *io), void (*done)(mig_io *io, int r)) {
        mig_io *io = calloc(1, sizeof(*io));
        if (!io)
                return NULL;
        io->m = m;
        io->run = run;
        io->done = done;
        snprintf(io->id, sizeof(io->id), "%s", m->id);
        return io;
}

/* Queues io; a failure to queue runs it here (it cannot happen with a work
 * callback, but then the end still comes once). */
static void io_start(mig_io *io) {
        io->m->refs++;
        if (uv_queue_work(io->m->a->loop, &io->work, io_work, io_after) < 0) {
                io_work(&io->work);
                io_after(&io->work, 0);
        }
}

/* An action's blocking work ended: the list goes on (or ends, failed). */
static void io_continue(mig_io *io, const mig_event *failure) {
        if (!io->m->finished)
                mig_act_done(io->m, failure);
}

static int run_journal(mig_io *io) {
        return journal_put_text(io->m->a->journal, io->id, io->text, &io->err);
}

static void journal_done(mig_io *io, int r) {
        mig *m = io->m;

        if (r < 0) {
                nm_error_prefix(&io->err, "cannot journal phase %s", io->phase);
                log_ctx_error(m->id, "%s", io->err.msg);
                io->failure.err = io->err;
                io_continue(io, &io->failure);
                return;
        }
        if (m->finished) /* parked meanwhile: the next start reads it */
                return;
        log_ctx_info(m->id, "%s %s -> %s", mig_role_to_string(m->role),
                     m->journaled[0] ? m->journaled : "new", io->phase);
        snprintf(m->journaled, sizeof(m->journaled), "%s", io->phase);
        fault_point(m, io->phase);
        mig_progress(m, NULL);
        io_continue(io, NULL);
}

mig_act_result mig_journal(mig *m, const char *phase, const mig_event *on_failure, mig_event *ret) {
        mig_io *io = io_new(m, run_journal, journal_done);
        json_t *h;

        mig_rec_set_str(m, "phase", phase);
        mig_rec_set_int(m, "updated_at", unix_ms());
        h = json_pack("{s:s, s:I}", "phase", phase, "at", (json_int_t)unix_ms());
        if (h)
                json_array_append_new(json_object_get(m->rec, "history"), h);
        if (m->err.code)
                mig_rec_set_str(m, "error", m->err.msg);
        if (io)
                io->text = journal_record_text(m->rec);
        if (!io || !io->text) {
                if (io)
                        free(io);
                *ret = *on_failure;
                nm_error_set(&ret->err, -ENOMEM, "cannot journal phase %s: out of memory", phase);
                return MIG_ACT_FAILED;
        }
        snprintf(io->phase, sizeof(io->phase), "%s", phase);
        io->failure = *on_failure;
        io_start(io);
        return MIG_ACT_WAIT;
}

static int run_kill(mig_io *io) {
        return ckpt_kill_tree(io->pid, io->ticks, &io->err);
}

static void kill_done(mig_io *io, int r) {
        if (r < 0)
                log_ctx_error(io->id, "cannot end %s (pid %d): %s", io->what, (int)io->pid, io->err.msg);
        io_continue(io, NULL);
}

mig_act_result mig_kill_tree(mig *m, pid_t pid, uint64_t ticks, const char *what) {
        mig_io *io = io_new(m, run_kill, kill_done);
        nm_error err = {};

        if (!io) {
                /* Killing must not wait for memory: do it here. */
                if (ckpt_kill_tree(pid, ticks, &err) < 0)
                        log_ctx_error(m->id, "cannot end %s (pid %d): %s", what, (int)pid, err.msg);
                return MIG_ACT_DONE;
        }
        snprintf(io->what, sizeof(io->what), "%s", what);
        io->pid = pid;
        io->ticks = ticks;
        io_start(io);
        return MIG_ACT_WAIT;
}

static int run_remove(mig_io *io) {
        return rm_rf_path(io->path);
}

static void remove_done(mig_io *io, int r) {
        if (r < 0 && r != -ENOENT)
                log_ctx_warning(io->id, "cannot remove %s: %s", io->path, strerror(-r));
        io_continue(io, NULL);
}

mig_act_result mig_remove_dir(mig *m, const char *path) {
        mig_io *io = io_new(m, run_remove, remove_done);

        if (!io || !(io->path = strdup(path))) {
                if (io)
                        free(io);
                (void)rm_rf_path(path);
                return MIG_ACT_DONE;
        }
        io_start(io);
        return MIG_ACT_WAIT;
}

/* ---- the runner: one event at a time, its actions in order ---- */

struct mig_deferred {
        mig_event ev;
        mig_deferred *next;
};

static void defer(mig *m, const mig_event *ev) {
        mig_deferred *d = malloc(sizeof(*d)), **tail = &m->deferred;
        if (!d) {
                log_ctx_error(m->id, "out of memory: an event of this migration is lost");
                return;
        }
        d->ev = *ev;
        d->next = NULL;
        while (*tail)
                tail = &(*tail)->next;
        *tail = d;
}

static void drop_deferred(mig *m) {
        while (m->deferred) {
                mig_deferred *d = m->deferred;
                m->deferred = d->next;
                free(d);
        }
}

/* Steps the core with ev (kept while its list is carried out: NOTE_FAILURE
 * words it). */
static void load(mig *m, const mig_event *ev) {
        m->cur = *ev;
        m->n_acts = m->next_act = 0;
        (void)m->ops->step(m, &m->cur);
}

/* Carries out the loaded list until its end or an action that waits. An
 * action that fails ends its list; the failure is the next event. */
static void run(mig *m) {
        m->run = MIG_RUN_ACTING;
        while (m->next_act < m->n_acts && !m->finished) {
                mig_event failure = {};
                switch (m->ops->perform(m, m->next_act++, &failure)) {
                case MIG_ACT_DONE: break;
                case MIG_ACT_WAIT: m->run = MIG_RUN_WAITING; return;
                case MIG_ACT_FAILED: load(m, &failure); break;
                }
        }
        m->run = MIG_RUN_IDLE;
}

/* Events that waited for a list, in their order. */
static void run_deferred(mig *m) {
        while (m->run == MIG_RUN_IDLE && !m->finished && m->deferred) {
                mig_deferred *d = m->deferred;
                m->deferred = d->next;
                load(m, &d->ev);
                free(d);
                run(m);
        }
}

void mig_feed(mig *m, const mig_event *ev) {
        if (m->finished)
                return;
        if (m->run != MIG_RUN_IDLE) {
                defer(m, ev);
                return;
        }
        load(m, ev);
        run(m);
        run_deferred(m);
}

void mig_feed_err(mig *m, mig_event *ev, const nm_error *err) {
        if (err)
                ev->err = *err;
        mig_feed(m, ev);
}

void mig_feed_errorf(mig *m, mig_event *ev, int code, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(ev->err.msg, sizeof(ev->err.msg), fmt, ap);
        va_end(ap);
        ev->err.code = code < 0 ? code : -EIO;
        mig_feed(m, ev);
}

mig_act_result mig_act_failed(mig_event *ret, const mig_event *ev, const nm_error *err) {
        *ret = *ev;
        ret->err = *err;
        return MIG_ACT_FAILED;
}

void mig_act_done(mig *m, const mig_event *failure) {
        if (m->finished || m->run != MIG_RUN_WAITING)
                return;
        if (failure)
                load(m, failure);
        run(m);
        run_deferred(m);
}

void mig_fail_reason(mig *m, int code, const char *fmt, ...) {
        char buf[NM_ERROR_MSG_MAX];
        va_list ap;
        if (m->err.code)
                return;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        nm_error_set(&m->err, code < 0 ? code : -EIO, "%s", buf);
        log_ctx_error(m->id, "%s", buf);
}

int mig_watch_add(mig *m, const mig_watch_ops *ops, void *ud) {
        for (size_t i = 0; i < MIG_WATCHES_MAX; i++)
                if (!m->watches[i].ops) {
                        m->watches[i] = (mig_watch){.ops = ops, .ud = ud};
                        return 0;
                }
        return -ENOSPC;
}

void mig_watch_remove(mig *m, void *ud) {
        for (size_t i = 0; i < MIG_WATCHES_MAX; i++)
                if (m->watches[i].ud == ud)
                        m->watches[i] = (mig_watch){};
}

void mig_progress(mig *m, const char *message) {
        uint64_t eta = 0;
        if (m->rate && m->bytes_total > m->bytes_done)
                eta = (m->bytes_total - m->bytes_done) * 1000 / m->rate;
        proto_event ev = {.mig = m->id,
                          .phase = m->journaled[0] ? m->journaled : mig_phase_name(m),
                          .bytes_done = m->bytes_done,
                          .bytes_total = m->bytes_total,
                          .files_done = m->files_done,
                          .files_total = m->files_total,
                          .rate = m->rate,
                          .eta_ms = eta,
                          .message = message};
        for (size_t i = 0; i < MIG_WATCHES_MAX; i++)
                if (m->watches[i].ops && m->watches[i].ops->progress)
                        m->watches[i].ops->progress(m->watches[i].ud, &ev);
}

void mig_answer(mig *m, json_t *doc) {
        for (size_t i = 0; i < MIG_WATCHES_MAX; i++)
                if (m->watches[i].ops && m->watches[i].ops->answer)
                        m->watches[i].ops->answer(m->watches[i].ud, m->id, doc);
}

static const char *outcome_of(const mig *m) {
        return m->role == MIG_ROLE_SOURCE && m->src.phase == SRC_COMMITTED ? "in-doubt" : mig_phase_name(m);
}

/* The exit code is the source's to tell: nucleus-migrate runs there. A
 * destination's record says "not known here". */
static int exit_code_of(const mig *m) {
        return m->role == MIG_ROLE_SOURCE ? src_phase_exit_code(m->src.phase) : NM_EXIT_IN_DOUBT;
}

json_t *mig_result_doc(const mig *m) {
        json_t *doc = json_object();
        uint64_t end = m->t_resumed ? m->t_resumed : now_usec();

        json_object_set_new(doc, "mig", json_string(m->id));
        json_object_set_new(doc, "role", json_string(mig_role_to_string(m->role)));
        json_object_set_new(doc, "container", m->container_id ? json_string(m->container_id) : json_null());
        json_object_set_new(doc, "name", m->container_name ? json_string(m->container_name) : json_null());
        json_object_set_new(doc, m->role == MIG_ROLE_SOURCE ? "source" : "target",
                            json_string(m->a->cfg.node));
        json_object_set_new(doc, m->role == MIG_ROLE_SOURCE ? "target" : "source",
                            m->peer ? json_string(m->peer) : json_null());
        json_object_set_new(doc, "phase", json_string(mig_phase_name(m)));
        json_object_set_new(doc, "outcome", json_string(outcome_of(m)));
        json_object_set_new(doc, "exit_code", json_integer(exit_code_of(m)));
        json_object_set_new(doc, "new_pid",
                            m->new_pid > 0        ? json_integer(m->new_pid)
                            : m->restored_pid > 0 ? json_integer(m->restored_pid)
                                                  : json_null());
        /* Post-copy: the container runs again from COMMIT on, while its
         * pages still arrive until RUNNING. */
        bool lazy =
                m->role == MIG_ROLE_SOURCE ? m->src.postcopy != SRC_PC_OFF : m->dst.postcopy != DST_PC_OFF;
        uint64_t resumed = lazy && m->t_commit ? m->t_commit : m->t_resumed;
        json_object_set_new(doc, "downtime_ms",
                            m->t_frozen && resumed
                                    ? json_integer((json_int_t)((resumed - m->t_frozen) / 1000))
                                    : json_null());
        json_object_set_new(doc, "bytes", json_integer((json_int_t)m->bytes_done));
        json_object_set_new(doc, "files", json_integer((json_int_t)m->files_done));
        json_object_set_new(doc, "duration_ms", json_integer((json_int_t)((end - m->t_start) / 1000)));
        json_t *stages = json_object();
        if (m->t_frozen && m->t_dumped)
                json_object_set_new(stages, "dump_ms",
                                    json_integer((json_int_t)((m->t_dumped - m->t_frozen) / 1000)));
        if (m->t_dumped && m->t_streamed)
                json_object_set_new(stages, "stream_ms",
                                    json_integer((json_int_t)((m->t_streamed - m->t_dumped) / 1000)));
        if (m->t_streamed && m->t_restored)
                json_object_set_new(stages, "restore_ms",
                                    json_integer((json_int_t)((m->t_restored - m->t_streamed) / 1000)));
        if (m->t_restored && resumed)
                json_object_set_new(stages, "commit_ms",
                                    json_integer((json_int_t)((resumed - m->t_restored) / 1000)));
        if (lazy && m->t_commit && m->t_resumed && m->t_resumed > m->t_commit)
                json_object_set_new(stages, "postcopy_ms",
                                    json_integer((json_int_t)((m->t_resumed - m->t_commit) / 1000)));
        json_object_set_new(doc, "stages", stages);
        json_object_set_new(doc, "error", m->err.code ? json_string(m->err.msg) : json_null());
        return doc;
}

static void timer_closed(uv_handle_t *h) {
        mig_unref(h->data);
}

static void mig_release(mig *m) {
        if (m->send)
                m->send = xfer_send_free(m->send);
        if (m->recv)
                m->recv = xfer_recv_free(m->recv);
        if (m->link) {
                peer_link_detach(m->link);
                m->link = NULL;
        }
        if (m->peer_cc && m->peer_cc->dest == m)
                m->peer_cc->dest = NULL;
        m->relay = ps_relay_free(m->relay);
        m->lazy_pages = ckpt_lazy_pages_free(m->lazy_pages);
        if (m->ps_fd >= 0)
                close(m->ps_fd);
        m->ps_fd = -EBADF;
        m->hmac = ckpt_hmac_free(m->hmac);
        m->ctr = ckpt_container_free(m->ctr);
        m->md = ckpt_metadata_free(m->md);
        drop_deferred(m);
        ckpt_dump_req_done(&m->dump);
        ckpt_restore_req_done(&m->rollback);
        ckpt_restore_req_done(&m->restore);
        free(m->container_id);
        free(m->container_name);
        free(m->peer);
        free(m->images_dir);
        free(m->staging);
}

static int run_archive(mig_io *io) {
        int r = journal_put_text(io->m->a->journal, io->id, io->text, &io->err);
        return r < 0 ? r : journal_finish(io->m->a->journal, io->id, &io->err);
}

/* The record is in done/ (status shows it from there): the watchers hear
 * of the end, from the loop, then m goes. */
static void archive_done(mig_io *io, int r) {
        mig *m = io->m;
        agent *a = m->a;

        if (r < 0)
                log_ctx_error(m->id, "cannot archive journal record: %s", io->err.msg);
        LIST_REMOVE(migs, a->migs, m);
        for (size_t i = 0; i < MIG_WATCHES_MAX; i++) {
                mig_watch w = m->watches[i];
                m->watches[i] = (mig_watch){};
                if (w.ops && w.ops->finished)
                        w.ops->finished(w.ud, m->id, m->result);
        }
        mig_release(m);
        uv_close((uv_handle_t *)&m->timer, timer_closed);
        if (a->on_mig_end)
                a->on_mig_end(a);
}

void mig_finish(mig *m) {
        agent *a = m->a;
        mig_io *io;

        if (m->finished)
                return;
        m->finished = true;
        uv_timer_stop(&m->timer);
        if (!m->t_resumed && ((m->role == MIG_ROLE_SOURCE && m->src.phase == SRC_DONE) ||
                              (m->role == MIG_ROLE_DEST && m->dst.phase == DST_RUNNING)))
                m->t_resumed = now_usec();
        /* The result goes into the archived record, for `status` later. */
        m->result = mig_result_doc(m);
        mig_rec_set(m, "result", json_incref(m->result));
        log_ctx_info(m->id, "%s finished: %s%s%s", mig_role_to_string(m->role), mig_phase_name(m),
                     m->err.code ? ": " : "", m->err.code ? m->err.msg : "");
        /* Counted out now: a drain may start the next move when it hears. */
        if (m->role == MIG_ROLE_SOURCE)
                a->n_src--;
        else
                a->n_dst--;
        io = io_new(m, run_archive, archive_done);
        if (io && !(io->text = journal_record_text(m->rec))) {
                free(io);
                io = NULL;
        }
        if (!io) {
                mig_io fallback = {.m = m, .err = {.code = -ENOMEM, .msg = "out of memory"}};
                m->refs++;
                archive_done(&fallback, -ENOMEM);
                mig_unref(m);
                return;
        }
        io_start(io);
}

void mig_park(mig *m) {
        agent *a = m->a;
        if (m->finished)
                return;
        m->finished = true;
        /* No result: the next start goes on from the journal. */
        for (size_t i = 0; i < MIG_WATCHES_MAX; i++) {
                mig_watch w = m->watches[i];
                m->watches[i] = (mig_watch){};
                if (w.ops && w.ops->finished)
                        w.ops->finished(w.ud, m->id, NULL);
        }
        log_ctx_info(m->id, "leaving %s migration in phase %s to the journal", mig_role_to_string(m->role),
                     mig_phase_name(m));
        LIST_REMOVE(migs, a->migs, m);
        mig_release(m);
        uv_timer_stop(&m->timer);
        uv_close((uv_handle_t *)&m->timer, timer_closed);
}

/* ---- the tree HMAC, fed as bytes pass ---- */

static int hook_dir(void *ud, const char *relpath, nm_error *err) {
        return ckpt_hmac_dir(ud, relpath, err);
}

static int hook_file(void *ud, const char *relpath, uint64_t size, nm_error *err) {
        return ckpt_hmac_file_begin(ud, relpath, size, err);
}

static int hook_data(void *ud, const void *buf, size_t n, nm_error *err) {
        return ckpt_hmac_update(ud, buf, n, err);
}

static int hook_finish(void *ud, char hex[XFER_HMAC_HEX_MAX], nm_error *err) {
        return ckpt_hmac_final(ud, hex, err);
}

static int hook_mark(void *ud, uint8_t mac[PROTO_SHA256_LEN], nm_error *err) {
        return ckpt_hmac_mark(ud, mac, err);
}

int mig_hooks_init(mig *m, nm_error *err) {
        int r = ckpt_hmac_new(m->a->key, m->a->key_len, &m->hmac);
        if (r < 0)
                return nm_error_errno(err, r, "cannot set up the tree HMAC");
        m->hooks = (xfer_tree_hooks){
                .userdata = m->hmac,
                .dir = hook_dir,
                .file_begin = hook_file,
                .data = hook_data,
                .finish = hook_finish,
                .mark = hook_mark,
        };
        return 0;
}
