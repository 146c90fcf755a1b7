/* SPDX-License-Identifier: Apache-2.0 */
/* Carrying a migration's rules out: one event at a time to its role's core,
 * the actions in order, blocking work (journal writes, killing trees,
 * removing directories, archiving) on the thread pool while the list
 * waits, and the migration's end (archived, then its watchers hear) or its
 * parking at exit. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "mig-internal.h"

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
        json_t *forget; /* ARCHIVE: finished records no longer kept (history.h) */
        char what[128]; /* KILL: whose tree, for the log */
        pid_t pid;
        uint64_t ticks;
        bool archive;
        mig_event failure;   /* JOURNAL: what a failed write becomes */
        mig_work_fn work_fn; /* mig_work: the work, and its end on the loop */
        mig_work_done_fn work_done;
        void *ud;
        void (*free_ud)(void *ud);
        nm_error err;
        int r;
};

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
        json_decref(io->forget);
        free(io);
        mig__unref(m);
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

static int run_work(mig_io *io) {
        return io->work_fn(io->m, io->ud, &io->err);
}

static void work_done(mig_io *io, int r) {
        if (!io->m->finished)
                io->work_done(io->m, io->ud, r, &io->err);
        if (io->free_ud)
                io->free_ud(io->ud);
}

int mig_work(mig *m, mig_work_fn fn, mig_work_done_fn done, void *ud, void (*free_ud)(void *ud)) {
        mig_io *io = io_new(m, run_work, work_done);

        if (!io)
                return -ENOMEM;
        io->work_fn = fn;
        io->work_done = done;
        io->ud = ud;
        io->free_ud = free_ud;
        io_start(io);
        return 0;
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
        /* The list they waited for ended the migration. */
        while (m->finished && m->deferred) {
                mig_deferred *d = m->deferred;
                m->deferred = d->next;
                if (m->ops->after_end)
                        m->ops->after_end(m, &d->ev);
                free(d);
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

/* ---- the end ---- */

static int run_archive(mig_io *io) {
        int r = journal_put_text(io->m->a->journal, io->id, io->text, &io->err);
        json_t *id;
        size_t i;

        if (r < 0)
                return r;
        r = journal_finish(io->m->a->journal, io->id, &io->err);
        json_array_foreach(io->forget, i, id) {
                nm_error e = {};
                (void)journal_forget(io->m->a->journal, json_string_value(id), &e);
        }
        return r;
}

/* The record is in done/ (status shows it from there): the watchers hear
 * of the end, from the loop, then m goes. */
static void archive_done(mig_io *io, int r) {
        mig *m = io->m;
        agent *a = m->a;
        json_t *result = json_incref(m->result);

        if (r < 0)
                log_ctx_error(m->id, "cannot archive journal record: %s", io->err.msg);
        LIST_REMOVE(migs, a->migs, m);
        for (size_t i = 0; i < MIG_WATCHES_MAX; i++) {
                mig_watch w = m->watches[i];
                m->watches[i] = (mig_watch){};
                if (w.ops && w.ops->finished)
                        w.ops->finished(w.ud, m->id, m->result);
        }
        drop_deferred(m);
        mig__release(m);
        mig__free_later(m);
        if (a->on_mig_end)
                a->on_mig_end(a, result);
        json_decref(result);
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
        if (io && (!(io->text = journal_record_text(m->rec)) || !(io->forget = json_array()))) {
                free(io->text);
                free(io);
                io = NULL;
        }
        /* Late messages for it are answered from memory from now on. */
        if (a->history && history_add(a->history, m->rec, unix_ms(), io ? io->forget : NULL) < 0)
                log_ctx_warning(m->id, "cannot keep the finished record in memory");
        if (!io) {
                mig_io fallback = {.m = m, .err = {.code = -ENOMEM, .msg = "out of memory"}};
                m->refs++;
                archive_done(&fallback, -ENOMEM);
                mig__unref(m);
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
        drop_deferred(m);
        mig__release(m);
        mig__free_later(m);
}
