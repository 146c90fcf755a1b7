/* SPDX-License-Identifier: Apache-2.0 */
/* The destination side of a migration.
 *
 *   RECEIVING       OFFER accepted; images arrive into a fresh staging
 *                   directory, hashed as they land
 *   VERIFIED        every byte checked (per-file SHA-256, tree HMAC)
 *   DEST_RESTORING  CRIU restores with every task left stopped
 *   RESTORED        a stopped copy is held here; RESTORED sent
 *   RUNNING         COMMIT heard: the copy resumed, its state file written
 *
 * Before RESTORED, losing the source means discarding everything. With a
 * stopped copy held, we never decide alone: the copy stays stopped
 * (IN_DOUBT) and we ask the source until it says committed (resume) or
 * aborted (kill the copy). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "mig.h"

#define ASK_RETRY_MIN_MS 500
#define ASK_RETRY_MAX_MS 10000

static void dst_ask_source(mig *m);

static void dst_send(mig *m, const proto_msg *msg) {
        if (m->peer_cc)
                (void)ctl_send(m->peer_cc, msg);
}

static void dst_send_error(mig *m, int code, const char *reason) {
        proto_msg e = {.type = PROTO_MSG_ERROR,
                       .error = {.mig = m->id, .code = code < 0 ? code : -EIO, .reason = reason}};
        dst_send(m, &e);
}

static void dst_detach_conn(mig *m) {
        if (m->peer_cc && m->peer_cc->dest == m)
                m->peer_cc->dest = NULL;
        m->peer_cc = NULL;
}

static void dst_end(mig *m, mig_phase final) {
        if (m->phase != final)
                (void)mig_set_phase(m, final);
        if (m->link) {
                peer_link *l = m->link;
                m->link = NULL;
                peer_link_detach(l);
        }
        dst_detach_conn(m);
        mig_finish(m);
}

/* Drops whatever this node holds of the migration: the stopped copy (if
 * restored) and the staging directory. */
static void dst_discard(mig *m, const char *why) {
        nm_error err = {};
        log_ctx_info(m->id, "discarding: %s", why);
        if (!m->err.code)
                nm_error_set(&m->err, -ECONNABORTED, "%s", why);
        if (m->recv)
                m->recv = xfer_recv_free(m->recv);
        if (m->restored_pid > 0 && ckpt_kill_tree(m->restored_pid, m->restored_ticks, &err) < 0)
                log_ctx_error(m->id, "cannot kill the stopped copy (pid %d): %s", (int)m->restored_pid,
                              err.msg);
        if (m->staging)
                (void)rm_rf_path(m->staging);
        dst_end(m, MIG_ABORTED);
}

/* ---- OFFER ---- */

static int version_num(const char *v) {
        unsigned a = 0, b = 0, c = 0;
        if (!v || sscanf(v, "%u.%u.%u", &a, &b, &c) < 2)
                return -1;
        return (int)(a * 10000 + b * 100 + c);
}

static int dst_check_offer(agent *a, ctl_conn *cc, const proto_offer *o, proto_reject_code *ret_code,
                           char *why, size_t n) {
        nm_error err = {};
        uint64_t need = o->image_bytes + o->image_bytes / 8 + (16u << 20);
        mig *m;

        if (a->cordoned)
                return *ret_code = PROTO_REJECT_CORDONED, snprintf(why, n, "%s is cordoned", a->cfg.node),
                       -1;
        if (a->stopping || a->n_dst >= a->cfg.parallel)
                return *ret_code = PROTO_REJECT_BUSY,
                       snprintf(why, n, "%s is %s", a->cfg.node,
                                a->stopping ? "shutting down" : "at its limit of parallel migrations"),
                       -1;
        if (!ckpt_container_id_valid(o->container_id))
                return *ret_code = PROTO_REJECT_INVALID, snprintf(why, n, "invalid container id"), -1;
        if (ckpt_state_check_not_running(a->cfg.state_dir, o->container_id, &err) < 0)
                return *ret_code = PROTO_REJECT_EXISTS, snprintf(why, n, "%s", err.msg), -1;
        LIST_FOREACH(migs, m, a->migs)
        if (!m->finished && m->container_id && strcmp(m->container_id, o->container_id) == 0)
                return *ret_code = PROTO_REJECT_EXISTS,
                       snprintf(why, n, "container %s is already being moved here (migration %s)",
                                o->container_id, m->id),
                       -1;
        if (version_num(o->criu_version) > (int)a->criu->version_num)
                return *ret_code = PROTO_REJECT_INCOMPATIBLE,
                       snprintf(why, n, "images from CRIU %s cannot be restored by CRIU %s here",
                                o->criu_version, a->criu->version),
                       -1;
        if (version_num(o->kernel) > version_num(a->kernel) &&
            version_num(o->kernel) / 100 != version_num(a->kernel) / 100)
                return *ret_code = PROTO_REJECT_INCOMPATIBLE,
                       snprintf(why, n, "the source runs kernel %s, newer than %s here", o->kernel,
                                a->kernel),
                       -1;
        if (o->lazy)
                return *ret_code = PROTO_REJECT_INCOMPATIBLE,
                       snprintf(why, n, "lazy (post-copy) migration is not supported by %s", a->cfg.node),
                       -1;
        if (status_staging_free(a) < need)
                return *ret_code = PROTO_REJECT_NO_SPACE,
                       snprintf(why, n, "staging has %llu MiB free, the images need about %llu MiB",
                                (unsigned long long)(status_staging_free(a) >> 20),
                                (unsigned long long)(need >> 20)),
                       -1;
        (void)cc;
        return 0;
}

static void dst_on_progress(const xfer_progress *p, void *ud) {
        mig *m = ud;
        m->bytes_done = p->bytes;
        m->files_done = p->files;
        m->rate = (uint64_t)p->rate;
}

/* Once verified, the images are sealed (immutable): nothing, not even a
 * stray root process, can change a byte between the check and CRIU reading
 * them. Where the file system has no such flag, the check as bytes arrived
 * is all there is (logged). */
static void dst_seal(mig *m, int dfd) {
        ckpt_tree_entry *e = NULL;
        size_t n = 0;
        nm_error err = {};
        int r = 0;

        if (ckpt_tree_walk(dfd, &e, &n, &err) < 0) {
                log_ctx_warning(m->id, "cannot seal the images: %s", err.msg);
                return;
        }
        for (size_t i = 0; i < n && r >= 0; i++) {
                if (e[i].type != CKPT_ENTRY_FILE)
                        continue;
                int fd = ckpt_tree_open_file(dfd, e[i].relpath, UINT64_MAX, NULL);
                r = fd < 0 ? fd : fs_set_immutable(fd, true);
                if (fd >= 0)
                        close(fd);
        }
        ckpt_tree_entries_free(e, n);
        if (r < 0)
                log_ctx_warning(
                        m->id, "images verified but not sealed (%s): the file system has no immutable flag?",
                        strerror(-r));
}

static void dst_on_received(xfer_recv *r, int status, const nm_error *err, const xfer_recv_result *res,
                            void *ud) {
        mig *m = ud;
        nm_error e = {};
        (void)r;
        if (status < 0) {
                mig_fail_reason(m, status, "receiving images failed: %s",
                                err ? err->msg : strerror(-status));
                dst_send_error(m, status, m->err.msg);
                m->recv = xfer_recv_free(m->recv);
                dst_end(m, MIG_ABORTED);
                return;
        }
        m->recv = xfer_recv_free(m->recv);
        m->bytes_done = res->bytes;
        m->files_done = res->files;
        _cleanup_close_ int dfd = open_dir_nofollow(m->staging);
        if (dfd >= 0)
                dst_seal(m, dfd);
        if (dfd < 0 || ckpt_metadata_load(dfd, &m->md, &e) < 0) {
                mig_fail_reason(m, -EBADMSG, "received images without a usable metadata.json: %s", e.msg);
                dst_send_error(m, -EBADMSG, m->err.msg);
                (void)rm_rf_path(m->staging);
                dst_end(m, MIG_ABORTED);
                return;
        }
        log_ctx_info(m->id, "verified %llu files, %llu bytes (tree HMAC %.16s...)",
                     (unsigned long long)res->files, (unsigned long long)res->bytes, res->hmac);
        if (mig_set_phase(m, MIG_VERIFIED) < 0) {
                dst_send_error(m, m->err.code, m->err.msg);
                dst_discard(m, "cannot journal");
                return;
        }
        proto_msg v = {.type = PROTO_MSG_VERIFIED, .verified = {.mig = m->id}};
        dst_send(m, &v);
}

static void dst_on_offer(ctl_conn *cc, const proto_offer *o) {
        agent *a = cc->a;
        proto_reject_code code;
        char why[512], path[PATH_MAX];
        nm_error err = {};
        mig *m;

        if (cc->dest) {
                proto_msg e = {
                        .type = PROTO_MSG_ERROR,
                        .error = {.mig = o->mig, .code = -EBUSY, .reason = "one migration per session"}};
                (void)ctl_send(cc, &e);
                return;
        }
        if (mig_find(a, o->mig)) {
                proto_msg rj = {.type = PROTO_MSG_REJECT,
                                .reject = {.mig = o->mig,
                                           .code = PROTO_REJECT_EXISTS,
                                           .reason = "migration id in use"}};
                (void)ctl_send(cc, &rj);
                return;
        }
        if (dst_check_offer(a, cc, o, &code, why, sizeof(why)) < 0) {
                log_ctx_info(o->mig, "refusing container %s from %s: %s", o->container_id, cc->peer_node,
                             why);
                proto_msg rj = {.type = PROTO_MSG_REJECT,
                                .reject = {.mig = o->mig, .code = code, .reason = why}};
                (void)ctl_send(cc, &rj);
                return;
        }
        m = mig_new(a, MIG_ROLE_DEST, o->mig);
        if (!m)
                return;
        m->peer_cc = cc;
        cc->dest = m;
        m->container_id = strdup(o->container_id);
        m->container_name = strdup(o->container_name);
        m->peer = strdup(cc->peer_node);
        snprintf(path, sizeof(path), "%s/%s", a->staging_dir, m->id);
        m->staging = strdup(path);
        m->offered_bytes = o->image_bytes;
        m->bytes_total = o->image_bytes;
        mig_rec_set_str(m, "container_id", m->container_id);
        mig_rec_set_str(m, "container_name", m->container_name);
        mig_rec_set_str(m, "peer", m->peer);
        mig_rec_set_str(m, "staging", m->staging);
        log_ctx_info(m->id, "accepting container %s (%s) from %s", m->container_id, m->container_name,
                     m->peer);
        if (mig_set_phase(m, MIG_RECEIVING) < 0 || mig_hooks_init(m, &err) < 0) {
                proto_msg rj = {.type = PROTO_MSG_REJECT,
                                .reject = {.mig = o->mig,
                                           .code = PROTO_REJECT_BUSY,
                                           .reason = m->err.code ? m->err.msg : err.msg}};
                (void)ctl_send(cc, &rj);
                dst_end(m, MIG_ABORTED);
                return;
        }
        xfer_recv_options ro = {
                .hooks = &m->hooks,
                .mig = m->id,
                .expected_bytes = 0,
                .max_bytes = o->image_bytes * 4 + (256u << 20),
                .idle_timeout_ms = (uint64_t)a->cfg.idle_timeout_s * 1000,
                .progress = dst_on_progress,
        };
        if (xfer_recv_new(a->loop, a->staging_fd, m->id, &ro, dst_on_received, m, &err, &m->recv) < 0) {
                mig_fail_reason(m, err.code, "%s", err.msg);
                proto_msg rj = {.type = PROTO_MSG_REJECT,
                                .reject = {.mig = o->mig, .code = PROTO_REJECT_BUSY, .reason = err.msg}};
                (void)ctl_send(cc, &rj);
                dst_end(m, MIG_ABORTED);
                return;
        }
        proto_msg ac = {.type = PROTO_MSG_ACCEPT, .accept = {.mig = m->id}};
        (void)ctl_send(cc, &ac);
}

/* ---- restore, stopped ---- */

static void dst_restored(mig *m, int status);

static void dst_on_restore_done(ckpt_restore_req *req, int status) {
        mig *m = req->data;
        criu_queue_done(m->a, &m->job);
        dst_restored(m, status);
}

static void dst_restore_start(criu_job *job) {
        mig *m = container_of(job, mig, job);
        agent *a = m->a;
        char work[PATH_MAX];
        int r;

        snprintf(work, sizeof(work), "%s/%s-restore", a->criu_work_dir, m->id);
        /* The bytes were hashed as they arrived, but that proves nothing
         * about the files: a byte changed on disk after it was written and
         * before the seal (a failing disk, a stray writer) slips past. Now
         * that they are sealed, check the tree HMAC of exactly what CRIU is
         * about to read. */
        ckpt_restore_opts o = {.criu = {.criu = a->criu, .work_dir = work},
                               .verify = true,
                               .key = a->key,
                               .key_len = a->key_len,
                               .leave_stopped = true};
        m->restore.data = m;
        r = fault_fail("dest-restore")
                    ? nm_error_set(&m->restore.error, -EIO, "restore failed (fault injection)")
                    : ckpt_restore(a->loop, &m->restore, m->staging, &o, dst_on_restore_done);
        if (r < 0) {
                criu_queue_done(a, job);
                dst_restored(m, r);
        }
}

static void dst_restored(mig *m, int status) {
        if (status < 0) {
                mig_fail_reason(m, status, "restore on %s failed: %s", m->a->cfg.node, m->restore.error.msg);
                dst_send_error(m, status, m->err.msg);
                dst_discard(m, "restore failed");
                return;
        }
        m->restored_pid = m->restore.pid;
        m->restored_ticks = m->restore.start_ticks;
        mig_rec_set_int(m, "restored_pid", m->restored_pid);
        mig_rec_set_int(m, "restored_ticks", (int64_t)m->restored_ticks);
        if (mig_set_phase(m, MIG_RESTORED) < 0) {
                dst_send_error(m, m->err.code, m->err.msg);
                dst_discard(m, "cannot journal RESTORED");
                return;
        }
        log_ctx_info(m->id, "restored container %s as pid %d, every task stopped; waiting for COMMIT",
                     m->container_id, (int)m->restored_pid);
        if (!m->peer_cc && m->err.code == -ECONNABORTED) {
                dst_discard(m, "the source aborted during the restore");
                return;
        }
        if (!m->peer_cc) {
                /* The source left while CRIU was busy. */
                (void)mig_set_phase(m, MIG_IN_DOUBT);
                dst_ask_source(m);
                return;
        }
        proto_msg r = {.type = PROTO_MSG_RESTORED,
                       .restored = {.mig = m->id, .pid = (uint32_t)m->restored_pid}};
        dst_send(m, &r);
}

/* ---- commit ---- */

static void dst_commit(mig *m, ctl_conn *reply_to) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        nm_error err = {};

        if (m->link) {
                peer_link *l = m->link;
                m->link = NULL;
                peer_link_detach(l);
        }
        if (ckpt_resume(m->restored_pid, m->restored_ticks, &err) < 0) {
                mig_fail_reason(m, -ESRCH, "the stopped copy (pid %d) is gone: %s", (int)m->restored_pid,
                                err.msg);
                if (reply_to) {
                        proto_msg e = {.type = PROTO_MSG_ERROR,
                                       .error = {.mig = m->id, .code = -ESRCH, .reason = m->err.msg}};
                        (void)ctl_send(reply_to, &e);
                }
                m->restored_pid = 0;
                dst_discard(m, "no copy to resume");
                return;
        }
        m->t_resumed = now_usec();
        if (!m->md) {
                _cleanup_close_ int dfd = open_dir_nofollow(m->staging);
                if (dfd >= 0)
                        (void)ckpt_metadata_load(dfd, &m->md, &err);
        }
        if (!m->md || ckpt_container_from_metadata(m->md, &c, &err) < 0 ||
            ckpt_state_write_restored(m->a->cfg.state_dir, c, m->restored_pid, m->restored_ticks, &err) < 0)
                log_ctx_error(m->id,
                              "container %s runs as pid %d, but its state file could not be written: %s",
                              m->container_id, (int)m->restored_pid, err.msg);
        (void)mig_set_phase(m, MIG_RUNNING);
        log_ctx_info(m->id, "container %s resumed as pid %d", m->container_id, (int)m->restored_pid);
        if (reply_to) {
                proto_msg r = {.type = PROTO_MSG_RUNNING,
                               .running = {.mig = m->id, .pid = (uint32_t)m->restored_pid}};
                (void)ctl_send(reply_to, &r);
        }
        (void)rm_rf_path(m->staging);
        dst_end(m, MIG_RUNNING);
}

/* A COMMIT for a migration that is no longer active here: the source
 * repeating itself after a lost link. Answer from the journal. */
static void dst_commit_finished(ctl_conn *cc, const char *id) {
        json_t *done = NULL, *rec;
        nm_error err = {};
        size_t i;

        if (journal_load_done(cc->a->journal, JOURNAL_KEEP_DONE, &done, &err) >= 0)
                json_array_foreach(done, i, rec) {
                        const char *rid = json_string_value(json_object_get(rec, "mig"));
                        if (!rid || strcmp(rid, id) != 0 ||
                            mig_role_from_string(json_string_value(json_object_get(rec, "role"))) !=
                                    MIG_ROLE_DEST)
                                continue;
                        if (mig_phase_from_string(json_string_value(json_object_get(rec, "phase"))) ==
                            MIG_RUNNING) {
                                proto_msg r = {.type = PROTO_MSG_RUNNING,
                                               .running = {.mig = id,
                                                           .pid = (uint32_t)json_integer_value(
                                                                   json_object_get(rec, "restored_pid"))}};
                                (void)ctl_send(cc, &r);
                                json_decref(done);
                                return;
                        }
                        break;
                }
        json_decref(done);
        proto_msg e = {.type = PROTO_MSG_ERROR,
                       .error = {.mig = id,
                                 .code = -ESRCH,
                                 .reason = "no copy of this migration is held or running here"}};
        (void)ctl_send(cc, &e);
}

/* ---- in doubt: asking the source ---- */

static void dst_ask_retry(uv_timer_t *t);

static void dst_ask_later(mig *m) {
        uint64_t delay = ASK_RETRY_MIN_MS << (m->retries < 5 ? m->retries : 5);
        if (delay > ASK_RETRY_MAX_MS)
                delay = ASK_RETRY_MAX_MS;
        m->retries++;
        log_ctx_warning(m->id, "holding the stopped copy of %s; asking %s again in %llu ms", m->container_id,
                        m->peer, (unsigned long long)delay);
        uv_timer_start(&m->timer, dst_ask_retry, delay, 0);
}

static void ask_ready(peer_link *l, void *ud) {
        mig *m = ud;
        proto_msg q = {.type = PROTO_MSG_QUERY, .query = {.mig = m->id}};
        (void)peer_link_send(l, &q, NULL);
}

static void ask_message(peer_link *l, const proto_msg *msg, void *ud) {
        mig *m = ud;
        (void)l;
        if (msg->type != PROTO_MSG_OUTCOME || strcmp(msg->outcome.mig, m->id) != 0)
                return;
        log_ctx_info(m->id, "the source says: %s", proto_outcome_to_string(msg->outcome.outcome));
        switch (msg->outcome.outcome) {
        case PROTO_OUTCOME_COMMITTED: dst_commit(m, NULL); return;
        case PROTO_OUTCOME_ABORTED: dst_discard(m, "the source aborted"); return;
        case PROTO_OUTCOME_UNKNOWN:
        case _PROTO_OUTCOME_MAX:
        case _PROTO_OUTCOME_INVALID: break;
        }
        /* Never guess: keep the copy stopped and ask again. */
        peer_link_close(m->link, 0, NULL);
}

static void ask_closed(peer_link *l, int status, const nm_error *err, void *ud) {
        mig *m = ud;
        (void)l;
        (void)status;
        m->link = NULL;
        if (m->finished || m->phase != MIG_IN_DOUBT)
                return;
        if (err && err->code)
                log_ctx_warning(m->id, "cannot reach the source %s: %s", m->peer, err->msg);
        dst_ask_later(m);
}

static const peer_link_ops ask_ops = {.ready = ask_ready, .message = ask_message, .closed = ask_closed};

static void dst_ask_source(mig *m) {
        nm_error err = {};
        if (m->link || m->finished)
                return;
        if (peer_link_open(m->a, m->peer, m->id, &ask_ops, m, &err, &m->link) < 0) {
                log_ctx_error(m->id, "%s", err.msg);
                dst_ask_later(m);
        }
}

static void dst_ask_retry(uv_timer_t *t) {
        dst_ask_source(t->data);
}

/* ---- the peer session ---- */

static void dst_on_stream_msg(ctl_conn *cc, const proto_msg *msg) {
        mig *m = cc->dest;
        nm_error err = {};
        const char *id = proto_msg_mig(msg);

        if (!m || !m->recv || !id || strcmp(id, m->id) != 0) {
                proto_msg e = {.type = PROTO_MSG_ERROR,
                               .error = {.mig = id,
                                         .code = -EPROTO,
                                         .reason = "image data without an accepted offer"}};
                (void)ctl_send(cc, &e);
                return;
        }
        if (xfer_recv_feed(m->recv, msg, &err) < 0) {
                /* The sink removed staging; its callback ends the migration. */
                log_ctx_error(m->id, "refusing the image stream: %s", err.msg);
        }
}

static void dst_on_restore_msg(ctl_conn *cc, const char *id) {
        mig *m = cc->dest;
        if (!m || strcmp(m->id, id) != 0 || m->phase != MIG_VERIFIED) {
                proto_msg e = {.type = PROTO_MSG_ERROR,
                               .error = {.mig = id,
                                         .code = -EPROTO,
                                         .reason = "RESTORE before the images were verified"}};
                (void)ctl_send(cc, &e);
                return;
        }
        if (mig_set_phase(m, MIG_DEST_RESTORING) < 0) {
                dst_send_error(m, m->err.code, m->err.msg);
                dst_discard(m, "cannot journal");
                return;
        }
        m->job.start = dst_restore_start;
        criu_queue_push(m->a, &m->job);
}

static void dst_on_commit_msg(ctl_conn *cc, const char *id) {
        mig *m = mig_find(cc->a, id);
        if (!m || m->role != MIG_ROLE_DEST) {
                dst_commit_finished(cc, id);
                return;
        }
        if (m->phase != MIG_RESTORED && m->phase != MIG_IN_DOUBT) {
                proto_msg e = {.type = PROTO_MSG_ERROR,
                               .error = {.mig = id, .code = -EPROTO, .reason = "COMMIT before RESTORED"}};
                (void)ctl_send(cc, &e);
                return;
        }
        uv_timer_stop(&m->timer);
        dst_commit(m, cc);
}

void mig_dst_on_message(ctl_conn *cc, const proto_msg *msg) {
        const char *id = proto_msg_mig(msg);
        mig *m;

        switch ((int)msg->type) { /* most types are invalid here: default handles them */
        case PROTO_MSG_NODE_INFO_REQ: {
                proto_msg r = {.type = PROTO_MSG_NODE_INFO};
                status_node_info(cc->a, &r.node_info);
                (void)ctl_send(cc, &r);
                return;
        }
        case PROTO_MSG_OFFER: dst_on_offer(cc, &msg->offer); return;
        case PROTO_MSG_FILE:
        case PROTO_MSG_DATA:
        case PROTO_MSG_FILE_END:
        case PROTO_MSG_IMAGES_DONE: dst_on_stream_msg(cc, msg); return;
        case PROTO_MSG_RESTORE: dst_on_restore_msg(cc, id); return;
        case PROTO_MSG_COMMIT: dst_on_commit_msg(cc, id); return;
        case PROTO_MSG_ABORT:
                m = mig_find(cc->a, id);
                if (m && m->role == MIG_ROLE_DEST && m->phase != MIG_RUNNING) {
                        mig_fail_reason(m, -ECONNABORTED, "the source aborted: %s", msg->abort.reason);
                        if (m->phase == MIG_DEST_RESTORING) {
                                dst_detach_conn(m); /* dst_restored discards */
                                return;
                        }
                        dst_discard(m, "the source aborted");
                }
                return;
        case PROTO_MSG_QUERY: {
                proto_msg r = {.type = PROTO_MSG_OUTCOME,
                               .outcome = {.mig = id, .outcome = mig_src_outcome(cc->a, id)}};
                (void)ctl_send(cc, &r);
                return;
        }
        default: break;
        }
        proto_msg e = {
                .type = PROTO_MSG_ERROR,
                .error = {.mig = id, .code = -EPROTO, .reason = "unexpected message on a peer session"}};
        (void)ctl_send(cc, &e);
}

void mig_dst_conn_closed(ctl_conn *cc, int status, const nm_error *err) {
        mig *m = cc->dest;
        if (!m)
                return;
        dst_detach_conn(m);
        log_ctx_warning(m->id, "the source's session ended in phase %s: %s", mig_phase_to_string(m->phase),
                        err && err->code ? err->msg
                        : status         ? strerror(-status)
                                         : "closed");
        if (m->phase == MIG_RECEIVING || m->phase == MIG_VERIFIED) {
                mig_fail_reason(m, status ? status : -ECONNRESET, "the source left before RESTORE");
                dst_discard(m, "the source left");
        } else if (m->phase == MIG_RESTORED) {
                /* Holding a stopped copy: ask, never guess. (During
                 * DEST_RESTORING, dst_restored sees no session and asks.) */
                if (mig_set_phase(m, MIG_IN_DOUBT) >= 0)
                        dst_ask_source(m);
        }
}

/* ---- after a restart ---- */

int mig_dst_recover(agent *a, json_t *rec, mig_recovery action, nm_error *err) {
        const char *id = json_string_value(json_object_get(rec, "mig"));
        mig *m = mig_new(a, MIG_ROLE_DEST, id);
        uint64_t ticks = 0;

        if (!m)
                return nm_error_set(err, -ENOMEM, "out of memory");
        json_decref(m->rec);
        m->rec = json_incref(rec);
        m->phase = mig_phase_from_string(mig_rec_str(m, "phase"));
        m->container_id = mig_rec_str(m, "container_id") ? strdup(mig_rec_str(m, "container_id")) : NULL;
        m->container_name =
                mig_rec_str(m, "container_name") ? strdup(mig_rec_str(m, "container_name")) : NULL;
        m->peer = mig_rec_str(m, "peer") ? strdup(mig_rec_str(m, "peer")) : NULL;
        m->staging = mig_rec_str(m, "staging") ? strdup(mig_rec_str(m, "staging")) : NULL;
        m->restored_pid = (pid_t)mig_rec_int(m, "restored_pid");
        m->restored_ticks = (uint64_t)mig_rec_int(m, "restored_ticks");
        log_ctx_info(id, "recovering destination migration of %s from %s, phase %s: %s",
                     strna(m->container_id), strna(m->peer), mig_phase_to_string(m->phase),
                     mig_recovery_to_string(action));
        switch (action) {
        case MIG_RECOVER_FINISH: mig_finish(m); return 0;
        case MIG_RECOVER_DISCARD: dst_discard(m, "the agent stopped before RESTORED"); return 0;
        case MIG_RECOVER_ASK_SOURCE:
                if (m->restored_pid <= 0 || ckpt_proc_start_ticks(m->restored_pid, &ticks) < 0 ||
                    ticks != m->restored_ticks) {
                        /* The copy did not survive (a reboot?): nothing to hold;
                         * a committed source hears "no copy" and restores its own. */
                        m->restored_pid = 0;
                        dst_discard(m, "the stopped copy no longer exists");
                        return 0;
                }
                if (m->phase != MIG_IN_DOUBT)
                        (void)mig_set_phase(m, MIG_IN_DOUBT);
                dst_ask_source(m);
                return 0;
        case MIG_RECOVER_COMPLETE:
                (void)rm_rf_path(m->staging);
                mig_finish(m);
                return 0;
        case MIG_RECOVER_MARK_FAILED:
        case MIG_RECOVER_ROLLBACK:
        case MIG_RECOVER_FORWARD:
        case _MIG_RECOVER_MAX:
        case _MIG_RECOVER_INVALID: break;
        }
        nm_error_set(err, -EINVAL, "migration %s: no destination recovery for phase %s", id,
                     strna(mig_phase_to_string(m->phase)));
        mig_finish(m);
        return err->code;
}
