/* SPDX-License-Identifier: Apache-2.0 */
#include "mig.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drain.h"
#include "log.h"
#include "macro.h"

static int64_t unix_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

mig *mig_new(agent *a, mig_role role, const char *id) {
        mig *m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->a = a;
        m->role = role;
        m->phase = role == MIG_ROLE_SOURCE ? MIG_PRECHECK : MIG_RECEIVING;
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
        m->timer_open = true;
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

int mig_set_phase(mig *m, mig_phase phase) {
        nm_error err = {};
        json_t *h;
        int r;

        log_ctx_info(m->id, "%s %s -> %s", mig_role_to_string(m->role), mig_phase_to_string(m->phase),
                     mig_phase_to_string(phase));
        m->phase = phase;
        mig_rec_set_str(m, "phase", mig_phase_to_string(phase));
        mig_rec_set_int(m, "updated_at", unix_ms());
        h = json_pack("{s:s, s:I}", "phase", mig_phase_to_string(phase), "at", (json_int_t)unix_ms());
        if (h)
                json_array_append_new(json_object_get(m->rec, "history"), h);
        if (m->err.code)
                mig_rec_set_str(m, "error", m->err.msg);
        r = journal_put(m->a->journal, m->id, m->rec, &err);
        if (r < 0) {
                log_ctx_error(m->id, "cannot journal phase %s: %s", mig_phase_to_string(phase), err.msg);
                mig_fail_reason(m, r, "cannot journal phase %s: %s", mig_phase_to_string(phase), err.msg);
                return r;
        }
        fault_point(m, mig_phase_to_string(phase));
        mig_progress(m, NULL);
        return 0;
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

void mig_progress(mig *m, const char *message) {
        uint64_t eta = 0;
        if (m->rate && m->bytes_total > m->bytes_done)
                eta = (m->bytes_total - m->bytes_done) * 1000 / m->rate;
        proto_msg ev = {.type = PROTO_MSG_EVENT,
                        .event = {.mig = m->id,
                                  .phase = mig_phase_to_string(m->phase),
                                  .bytes_done = m->bytes_done,
                                  .bytes_total = m->bytes_total,
                                  .files_done = m->files_done,
                                  .files_total = m->files_total,
                                  .rate = m->rate,
                                  .eta_ms = eta,
                                  .message = message}};
        if (m->cli)
                ctl_send(m->cli, &ev);
        if (m->drain)
                drain_on_progress(m->drain, m, &ev.event);
}

static const char *outcome_of(const mig *m) {
        return m->phase == MIG_COMMITTED ? "in-doubt" : mig_phase_to_string(m->phase);
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
        json_object_set_new(doc, "phase", json_string(mig_phase_to_string(m->phase)));
        json_object_set_new(doc, "outcome", json_string(outcome_of(m)));
        json_object_set_new(doc, "exit_code", json_integer(mig_phase_exit_code(m->phase)));
        json_object_set_new(doc, "new_pid",
                            m->new_pid > 0        ? json_integer(m->new_pid)
                            : m->restored_pid > 0 ? json_integer(m->restored_pid)
                                                  : json_null());
        /* Post-copy: the container runs again from COMMIT on, while its
         * pages still arrive until RUNNING. */
        uint64_t resumed = m->lazy && m->t_commit ? m->t_commit : m->t_resumed;
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
        if (m->lazy && m->t_commit && m->t_resumed && m->t_resumed > m->t_commit)
                json_object_set_new(stages, "postcopy_ms",
                                    json_integer((json_int_t)((m->t_resumed - m->t_commit) / 1000)));
        json_object_set_new(doc, "stages", stages);
        json_object_set_new(doc, "error", m->err.code ? json_string(m->err.msg) : json_null());
        return doc;
}

static void timer_closed(uv_handle_t *h) {
        mig *m = h->data;
        json_decref(m->rec);
        free(m);
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
        if (m->cli && m->cli->watch == m)
                m->cli->watch = NULL;
        m->relay = ps_relay_free(m->relay);
        m->lazy_pages = ckpt_lazy_pages_free(m->lazy_pages);
        if (m->ps_fd >= 0)
                close(m->ps_fd);
        m->ps_fd = -EBADF;
        m->ctr = ckpt_container_free(m->ctr);
        m->md = ckpt_metadata_free(m->md);
        ckpt_dump_req_done(&m->dump);
        ckpt_restore_req_done(&m->rollback);
        ckpt_restore_req_done(&m->restore);
        free(m->container_id);
        free(m->container_name);
        free(m->peer);
        free(m->images_dir);
        free(m->staging);
}

void mig_finish(mig *m) {
        nm_error err = {};
        agent *a = m->a;

        if (m->finished)
                return;
        m->finished = true;
        if (!m->t_resumed && (m->phase == MIG_DONE || m->phase == MIG_RUNNING))
                m->t_resumed = now_usec();
        if (m->cli && !m->result_sent) {
                json_t *doc = mig_result_doc(m);
                ctl_send_result(m->cli, m->id, doc);
                json_decref(doc);
                m->result_sent = true;
        }
        /* The result goes into the archived record, for `status` later. */
        mig_rec_set(m, "result", mig_result_doc(m));
        if (journal_put(a->journal, m->id, m->rec, &err) < 0 || journal_finish(a->journal, m->id, &err) < 0)
                log_ctx_error(m->id, "cannot archive journal record: %s", err.msg);
        log_ctx_info(m->id, "%s finished: %s%s%s", mig_role_to_string(m->role),
                     mig_phase_to_string(m->phase), m->err.code ? ": " : "", m->err.code ? m->err.msg : "");
        LIST_REMOVE(migs, a->migs, m);
        if (m->role == MIG_ROLE_SOURCE)
                a->n_src--;
        else
                a->n_dst--;
        /* Not at every end: the scan would compete with a move's downtime. */
        if (now_usec() - a->t_logs_pruned >= CRIU_LOGS_PRUNE_EVERY_US)
                criu_logs_prune(a);
        /* The drain may start the next move at once: after the counts. */
        if (m->drain)
                drain_on_finished(m->drain, m);
        mig_release(m);
        uv_timer_stop(&m->timer);
        uv_close((uv_handle_t *)&m->timer, timer_closed);
        agent_maybe_exit(a);
}

void mig_park(mig *m) {
        agent *a = m->a;
        if (m->finished)
                return;
        m->finished = true;
        log_ctx_info(m->id, "leaving %s migration in phase %s to the journal", mig_role_to_string(m->role),
                     mig_phase_to_string(m->phase));
        LIST_REMOVE(migs, a->migs, m);
        mig_release(m);
        uv_timer_stop(&m->timer);
        uv_close((uv_handle_t *)&m->timer, timer_closed);
}
