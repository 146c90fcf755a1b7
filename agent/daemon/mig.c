/* SPDX-License-Identifier: Apache-2.0 */
#include "mig-internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exit-codes.h"
#include "log.h"
#include "macro.h"
#include "mig-dst-lanes.h"

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
        uv_timer_init(a->loop, &m->page_timer);
        m->page_timer.data = m;
        uv_timer_init(a->loop, &m->lane_timer);
        m->lane_timer.data = m;
        m->refs = 3; /* the timers', until they are closed */
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

bool mig_admits(ctl_conn *cc, mig_role role, const char *id, const char *peer, const ctl_conn *peer_cc,
                handoff_msg what) {
        handoff_session session = HANDOFF_SESSION_OTHER;
        handoff_sender from;
        char reason[256];

        if (peer_cc && peer_cc == cc)
                session = HANDOFF_SESSION_OWN;
        else if (cc->lane_of && strcmp(cc->lane_of->id, id) == 0)
                session = HANDOFF_SESSION_LANE;
        from = handoff_sender_of(peer, cc->peer_node, session);

        if (handoff_admits(role, what, from))
                return true;
        if (cc->refusals < MIG_REFUSALS_LOGGED)
                log_ctx_warning(id, "%s: refusing %s from %s (session %llu, %s): the migration's %s is %s%s",
                                mig_role_to_string(role), handoff_msg_to_string(what), cc->peer_node,
                                (unsigned long long)cc->session, handoff_sender_to_string(from),
                                role == MIG_ROLE_SOURCE ? "target" : "source", strna(peer),
                                peer_cc ? " on another session" : "");
        else if (cc->refusals == MIG_REFUSALS_LOGGED)
                log_warning("session %llu from %s: more refusals, no longer logged",
                            (unsigned long long)cc->session, cc->peer_node);
        cc->refusals++;
        snprintf(reason, sizeof(reason), "%s for migration %s refused: %s is not its %s%s",
                 handoff_msg_to_string(what), id, cc->peer_node,
                 role == MIG_ROLE_SOURCE ? "target" : "source",
                 from == HANDOFF_FROM_PEER ? "'s session" : "");
        ctl_send_error(cc, id, -EPERM, reason);
        return false;
}

ps_link_zstd mig_pages_zstd(unsigned peer_features) {
        if (!(peer_features & PEER_FEATURE_ZSTD))
                return PS_ZSTD_OFF;
        return peer_features & PEER_FEATURE_PS_ZTAG ? PS_ZSTD_WIRE : PS_ZSTD_RAW;
}

ps_mac_alg mig_pages_mac(unsigned peer_features) {
        return peer_features & PEER_FEATURE_PS_POLY ? PS_MAC_POLY1305 : PS_MAC_HMAC_SHA256;
}

int mig_binding(const mig *m, const char *source, const char *target, const char *tree_hex,
                char ret_hex[XFER_HMAC_HEX_MAX]) {
        const char *parts[] = {m->id, source, target, m->container_id};

        if (!source || !target || !m->container_id)
                return -EINVAL;
        return ckpt_binding(m->a->key, m->a->key_len, parts, ARRAY_SIZE(parts), tree_hex, ret_hex);
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

void mig_note_criu_turn(mig *m, ckpt_op_state state, const char *what) {
        char msg[160];

        if (state != CKPT_OP_QUEUED)
                return;
        /* A move that seems to stand still says why: CRIU runs one
         * operation at a time on a node. */
        snprintf(msg, sizeof(msg),
                 "the %s waits for its turn: this node's CRIU runs another migration's dump or restore",
                 what);
        log_ctx_info(m->id, "%s", msg);
        mig_progress(m, msg);
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
        if (mig_rec_str(m, "landlock")) /* what the move gave up, accepted by the operator */
                json_object_set_new(doc, "landlock", json_string(mig_rec_str(m, "landlock")));
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
        if (m->rate_limit) /* its share of [limits] bandwidth, while it streamed */
                json_object_set_new(doc, "rate_limit", json_integer((json_int_t)m->rate_limit));
        if (m->streaming)
                json_object_set_new(doc, "streaming", json_true());
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

void mig__unref(mig *m) {
        if (--m->refs > 0)
                return;
        json_decref(m->rec);
        json_decref(m->result);
        free(m);
}

static void timer_closed(uv_handle_t *h) {
        mig__unref(h->data);
}

void mig__free_later(mig *m) {
        uv_timer_stop(&m->timer);
        uv_close((uv_handle_t *)&m->timer, timer_closed);
        uv_timer_stop(&m->page_timer);
        uv_close((uv_handle_t *)&m->page_timer, timer_closed);
        uv_timer_stop(&m->lane_timer);
        uv_close((uv_handle_t *)&m->lane_timer, timer_closed);
}

/* Lets a link of ours go. A page relay or link of ours may hold its
 * connection's drain; the connection outlives us by its goodbye. */
static void detach_link(peer_link **l) {
        if (!*l)
                return;
        if (peer_link_conn(*l))
                xfer_conn_set_drain(peer_link_conn(*l), 0, NULL, NULL);
        peer_link_detach(*l);
        *l = NULL;
}

void mig__release(mig *m) {
        if (m->streaming) {
                m->streaming = false;
                mig_share_bandwidth(m->a);
        }
        if (m->send)
                m->send = xfer_send_free(m->send);
        if (m->recv)
                m->recv = xfer_recv_free(m->recv);
        detach_link(&m->link);
        for (size_t i = 0; i < ARRAY_SIZE(m->lanes_out); i++)
                detach_link(&m->lanes_out[i].link);
        /* A destination detaches its session, and so reads it on, before it
         * ends (mig-dst.c, dst_detach_conn); one that did not must not leave
         * the session held either. */
        if (m->session_read == MIG_SESSION_HELD && m->peer_cc && m->peer_cc->conn)
                xfer_conn_hold_reading(m->peer_cc->conn, false);
        if (m->peer_cc && m->peer_cc->dest == m)
                m->peer_cc->dest = NULL;
        /* The same for its lanes, which carry nothing else: read on (a held
         * one would stay) and ended. */
        mig_dst_lanes_end(m, 1);
        m->relay = ps_relay_free(m->relay);
        m->page_link = ps_link_free(m->page_link);
        m->page_server = ckpt_page_server_free(m->page_server);
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
        m->native = ckpt_native_free(m->native);
        free(m->cgroup_root);
}

void mig_share_bandwidth(agent *a) {
        unsigned n = 0;
        mig *m;

        LIST_FOREACH(migs, m, a->migs) {
                if (m->streaming)
                        n++;
        }
        if (!n)
                return;
        uint64_t share = !a->cfg.bandwidth ? 0 : a->cfg.bandwidth / n ? a->cfg.bandwidth / n : 1;
        LIST_FOREACH(migs, m, a->migs) {
                if (!m->streaming || m->rate_limit == share)
                        continue;
                m->rate_limit = share;
                xfer_send_set_rate(m->send, share);
                log_ctx_info(m->id,
                             "streaming at up to %llu bytes/s: %u stream(s) share limits.bandwidth %llu",
                             (unsigned long long)share, n, (unsigned long long)a->cfg.bandwidth);
        }
}
