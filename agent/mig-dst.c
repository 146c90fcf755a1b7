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
static void dst_accept(mig *m);

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

/* "4.2.1", "6.18.44-fc" -> 40201, 61844; -1 unless it starts with at least
 * two dot-separated numbers. The peer sends these: no sign, no overflow. */
static int version_num(const char *v) {
        unsigned long part[3] = {};
        size_t n = 0;

        while (v && n < 3 && *v >= '0' && *v <= '9') {
                char *end;
                errno = 0;
                part[n++] = strtoul(v, &end, 10);
                if (errno || part[n - 1] > 100000)
                        return -1;
                v = *end == '.' ? end + 1 : NULL;
        }
        if (n < 2)
                return -1;
        return (int)(part[0] * 10000 + part[1] * 100 + part[2]);
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
        /* Its pages come as PS_DATA, which only a source that listed "lazy"
         * in its HELLO sends. */
        if (o->lazy && !(cc->features & PEER_FEATURE_LAZY))
                return *ret_code = PROTO_REJECT_INCOMPATIBLE,
                       snprintf(why, n,
                                "post-copy offered, but the source did not announce \"lazy\" in its HELLO"),
                       -1;
        if (o->lazy && !a->cfg.lazy)
                return *ret_code = PROTO_REJECT_INCOMPATIBLE,
                       snprintf(why, n, "lazy (post-copy) migration is turned off on %s ([agent] lazy)",
                                a->cfg.node),
                       -1;
        if (status_staging_free(a) < need)
                return *ret_code = PROTO_REJECT_NO_SPACE,
                       snprintf(why, n, "staging has %llu MiB free, the images need about %llu MiB",
                                (unsigned long long)(status_staging_free(a) >> 20),
                                (unsigned long long)(need >> 20)),
                       -1;
        return 0;
}

static void dst_on_progress(const xfer_progress *p, void *ud) {
        mig *m = ud;
        m->bytes_done = p->bytes;
        m->files_done = p->files;
        m->rate = (uint64_t)p->rate;
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
        if (dfd < 0 || ckpt_metadata_load(dfd, &m->md, &e) < 0) {
                mig_fail_reason(m, -EBADMSG, "received images without a usable metadata.json: %s", e.msg);
                dst_send_error(m, -EBADMSG, m->err.msg);
                (void)rm_rf_path(m->staging);
                dst_end(m, MIG_ABORTED);
                return;
        }
        /* The OFFER's id is the one checked against the containers running
         * here; the images must be of that container, or a restore would
         * register a second copy of another one under its state file. */
        if (strcmp(m->md->container_id, m->container_id) != 0) {
                mig_fail_reason(
                        m, -EBADMSG,
                        "the images are of container %s, but the offer was for container %s: refusing "
                        "them",
                        m->md->container_id, m->container_id);
                dst_send_error(m, -EBADMSG, m->err.msg);
                dst_discard(m, "images of another container");
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
        m->lazy = o->lazy;
        mig_rec_set(m, "lazy", json_boolean(m->lazy));
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
        dst_accept(m);
}

/* Starts the sink and says ACCEPT: the source may dump from now on. */
static void dst_accept(mig *m) {
        agent *a = m->a;
        nm_error err = {};
        xfer_recv_options ro = {
                .hooks = &m->hooks,
                .mig = m->id,
                .expected_bytes = 0,
                .max_bytes = m->offered_bytes * 4 + (256u << 20),
                .idle_timeout_ms = (uint64_t)a->cfg.idle_timeout_s * 1000,
                .progress = dst_on_progress,
                /* The source ends files with FILE_MAC when we both offer it. */
                .file_mac = m->peer_cc && (m->peer_cc->features & PEER_FEATURE_FILE_MAC),
        };
        if (!m->peer_cc) {
                dst_discard(m, "the source left before ACCEPT");
                return;
        }
        if (xfer_recv_new(a->loop, a->staging_fd, m->id, &ro, dst_on_received, m, &err, &m->recv) < 0) {
                mig_fail_reason(m, err.code, "%s", err.msg);
                proto_msg rj = {.type = PROTO_MSG_REJECT,
                                .reject = {.mig = m->id, .code = PROTO_REJECT_BUSY, .reason = err.msg}};
                dst_send(m, &rj);
                dst_end(m, MIG_ABORTED);
                return;
        }
        proto_msg ac = {.type = PROTO_MSG_ACCEPT, .accept = {.mig = m->id}};
        dst_send(m, &ac);
}

/* ---- restore, stopped ---- */

static void dst_restored(mig *m, int status);

static void dst_on_restore_done(ckpt_restore_req *req, int status) {
        mig *m = req->data;
        criu_queue_done(m->a, &m->job);
        if (m->a->cfg.consume_staging && !m->lazy && !req->consumed_pages)
                log_ctx_info(m->id, "CRIU cannot punch holes into the staged pages (file system or file "
                                    "flags): the restore read them as usual; they go when the move ends");
        dst_restored(m, status);
}

static void dst_restore_run(mig *m) {
        agent *a = m->a;
        char work[PATH_MAX];
        int r;

        snprintf(work, sizeof(work), "%s/%s-restore", a->criu_work_dir, m->id);
        /* Every byte was verified as it arrived (per file and the tree HMAC),
         * and the receiver named each file only after its check and sealed it
         * (transfer/recv.c): what CRIU reads is what was hashed, with no
         * second read pass in the downtime. */
        ckpt_restore_opts o = {.criu = {.criu = a->criu, .work_dir = work},
                               .key = a->key,
                               .key_len = a->key_len,
                               .leave_stopped = true,
                               .lazy_pages = m->lazy,
                               /* The staging is restored once: what CRIU has
                                * read it frees, and the restore reuses. Not
                                * under post-copy, whose daemon reads the same
                                * images. */
                               .consume_pages = a->cfg.consume_staging && !m->lazy};
        m->restore.data = m;
        r = fault_fail("dest-restore")
                    ? nm_error_set(&m->restore.error, -EIO, "restore failed (fault injection)")
                    : ckpt_restore(a->loop, &m->restore, m->staging, &o, dst_on_restore_done);
        if (r < 0) {
                criu_queue_done(a, &m->job);
                dst_restored(m, r);
        }
}

/* ---- post-copy: the lazy-pages daemon and its relay ---- */

static void dst_ps_data(ps_relay *r, const void *buf, size_t n, void *ud) {
        mig *m = ud;
        proto_msg d = {.type = PROTO_MSG_PS_DATA, .ps_data = {.mig = m->id, .data = {buf, n}}};
        (void)r;
        dst_send(m, &d);
}

static void dst_ps_closed(ps_relay *r, int status, void *ud) {
        mig *m = ud;
        (void)r;
        log_ctx_debug(m->id, "the lazy-pages daemon closed its page-server socket (%d)", status);
}

static const ps_relay_ops dst_ps_ops = {.data = dst_ps_data, .closed = dst_ps_closed};

static void dst_lazy_ready(ckpt_lazy_pages *lp, int status, void *ud) {
        mig *m = ud;
        (void)lp;
        if (status < 0) {
                nm_error_set(&m->restore.error, status,
                             "the lazy-pages daemon did not start (log: %s/%s-restore)", m->a->criu_work_dir,
                             m->id);
                criu_queue_done(m->a, &m->job);
                dst_restored(m, status);
                return;
        }
        dst_restore_run(m);
}

static void dst_postcopy_over(mig *m);

/* The daemon exited: 0 once every page is in the restored memory. */
static void dst_lazy_done(ckpt_lazy_pages *lp, int status, void *ud) {
        mig *m = ud;
        nm_error err = {};
        (void)lp;

        m->lazy_status = status < 0 ? status : 1;
        m->relay = ps_relay_free(m->relay);
        if (status >= 0) {
                log_ctx_info(m->id, "post-copy done: every page of %s is here", m->container_id);
                if (m->postcopy)
                        dst_postcopy_over(m);
                return;
        }
        mig_fail_reason(m, -EIO,
                        "post-copy failed: the lazy-pages daemon ended before every page arrived (log: "
                        "%s/%s-restore)",
                        m->a->criu_work_dir, m->id);
        if (m->phase == MIG_RUNNING) {
                /* It ran on memory that will never be complete: end it. */
                if (ckpt_kill_tree(m->restored_pid, m->restored_ticks, &err) < 0)
                        log_ctx_error(m->id, "cannot end the incomplete copy (pid %d): %s",
                                      (int)m->restored_pid, err.msg);
                if (m->container_id && ckpt_state_remove(m->a->cfg.state_dir, m->container_id, &err) < 0)
                        log_ctx_warning(m->id, "cannot remove the state file: %s", err.msg);
                m->restored_pid = 0;
                dst_send_error(m, -EIO, m->err.msg);
                mig_rec_set(m, "postcopy", json_false());
                (void)rm_rf_path(m->staging);
                dst_end(m, MIG_ABORTED);
                return;
        }
        if (m->phase == MIG_RESTORED || m->phase == MIG_IN_DOUBT) {
                dst_send_error(m, -EIO, m->err.msg);
                dst_discard(m, "post-copy failed before COMMIT");
        }
        /* During the restore, dst_restored sees the failure. */
}

static void dst_restore_start(criu_job *job) {
        mig *m = container_of(job, mig, job);
        agent *a = m->a;
        char work[PATH_MAX];
        nm_error err = {};
        int fd = -EBADF, r;

        if (m->err.code) { /* aborted while waiting for CRIU: nothing to restore for */
                criu_queue_done(a, job);
                dst_discard(m, "the source aborted before the restore");
                return;
        }
        if (!m->lazy) {
                dst_restore_run(m);
                return;
        }
        /* The daemon listens in the restore's work directory, and talks to
         * the source's dump through our relay. */
        snprintf(work, sizeof(work), "%s/%s-restore", a->criu_work_dir, m->id);
        r = ps_relay_new(a->loop, false, &dst_ps_ops, m, &fd, &m->relay);
        if (r >= 0)
                r = ckpt_lazy_pages_start(a->loop, a->criu, m->staging, work, fd, dst_lazy_ready,
                                          dst_lazy_done, m, &err, &m->lazy_pages);
        else
                nm_error_errno(&err, r, "cannot set up the post-copy relay");
        if (r < 0) {
                m->restore.error = err;
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
        if (m->lazy && m->lazy_status < 0) {
                /* Restored, but the daemon that was to fill its memory died:
                 * this copy must never run. */
                dst_send_error(m, -EIO, m->err.code ? m->err.msg : "post-copy failed during the restore");
                dst_discard(m, "the lazy-pages daemon failed during the restore");
                return;
        }
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

/* Continues the stopped copy, but leaves stopped what the dump found
 * stopped. Those facts came with the restore, or, if this agent restarted
 * since, are read again from the staged images. */
static int dst_resume(mig *m, nm_error *err) {
        ckpt_stopped_tasks loaded = {};
        const ckpt_stopped_tasks *keep = &m->restore.stopped_tasks;
        int r;

        if (m->restore.pid != m->restored_pid) {
                r = ckpt_stopped_tasks_load(m->staging, &loaded, err);
                if (r < 0)
                        return r;
                keep = &loaded;
        }
        if (keep->n > 0)
                log_ctx_info(m->id, "%zu task(s) were stopped before the move and stay stopped", keep->n);
        r = ckpt_resume(m->restored_pid, m->restored_ticks, keep, err);
        ckpt_stopped_tasks_done(&loaded);
        return r;
}

static void dst_commit(mig *m, ctl_conn *reply_to) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        nm_error err = {};

        if (m->link) {
                peer_link *l = m->link;
                m->link = NULL;
                peer_link_detach(l);
        }
        if (m->lazy && m->lazy_status < 0) {
                /* Its memory will never be complete: it must not run. */
                if (reply_to) {
                        proto_msg e = {.type = PROTO_MSG_ERROR,
                                       .error = {.mig = m->id, .code = -EIO, .reason = m->err.msg}};
                        (void)ctl_send(reply_to, &e);
                }
                dst_discard(m, "post-copy failed before the resume");
                return;
        }
        if (dst_resume(m, &err) < 0) {
                /* ESRCH either way: the source then restores its own images.
                 * A copy that is still here (its stopped tasks could not be
                 * told) is killed with the staging. */
                mig_fail_reason(m, -ESRCH, "cannot resume the stopped copy (pid %d): %s",
                                (int)m->restored_pid, err.msg);
                if (reply_to) {
                        proto_msg e = {.type = PROTO_MSG_ERROR,
                                       .error = {.mig = m->id, .code = -ESRCH, .reason = m->err.msg}};
                        (void)ctl_send(reply_to, &e);
                }
                if (err.code == -ESRCH)
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
        if (m->lazy && m->lazy_status == 0)
                /* Running on memory that is still arriving: a restart must
                 * not take it for complete (mig_dst_recover). */
                mig_rec_set(m, "postcopy", json_true());
        (void)mig_set_phase(m, MIG_RUNNING);
        log_ctx_info(m->id, "container %s resumed as pid %d", m->container_id, (int)m->restored_pid);
        if (m->lazy && m->lazy_status == 0) {
                m->postcopy = true;
                log_ctx_info(m->id, "post-copy: its pages keep arriving; RUNNING follows the last one");
                return;
        }
        if (reply_to) {
                proto_msg r = {.type = PROTO_MSG_RUNNING,
                               .running = {.mig = m->id, .pid = (uint32_t)m->restored_pid}};
                (void)ctl_send(reply_to, &r);
        }
        (void)rm_rf_path(m->staging);
        dst_end(m, MIG_RUNNING);
}

/* Every page arrived after the resume: now the move is over. */
static void dst_postcopy_over(mig *m) {
        m->postcopy = false;
        mig_rec_set(m, "postcopy", json_false());
        if (m->peer_cc) {
                proto_msg r = {.type = PROTO_MSG_RUNNING,
                               .running = {.mig = m->id, .pid = (uint32_t)m->restored_pid}};
                dst_send(m, &r);
        }
        m->lazy_pages = ckpt_lazy_pages_free(m->lazy_pages);
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
        case PROTO_MSG_ZDATA:
        case PROTO_MSG_FILE_END:
        case PROTO_MSG_FILE_MAC:
        case PROTO_MSG_IMAGES_DONE: dst_on_stream_msg(cc, msg); return;
        case PROTO_MSG_RESTORE: dst_on_restore_msg(cc, id); return;
        case PROTO_MSG_PS_DATA:
                m = cc->dest;
                if (m && m->relay && strcmp(m->id, id) == 0)
                        (void)ps_relay_write(m->relay, msg->ps_data.data.ptr, msg->ps_data.data.len);
                return;
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
        } else if (m->phase == MIG_RUNNING && m->postcopy) {
                /* The pages cannot come any more: the daemon fails, and its
                 * end (dst_lazy_done) ends the incomplete copy. */
                m->relay = ps_relay_free(m->relay);
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
                if (json_is_true(json_object_get(rec, "postcopy"))) {
                        /* Resumed while its pages were still arriving, and the
                         * daemon that fetched them died with us: the copy's
                         * memory will never be complete. */
                        nm_error kerr = {};
                        mig_fail_reason(m, -EIO, "the agent stopped during post-copy: container %s is lost",
                                        strna(m->container_id));
                        if (m->restored_pid > 0 &&
                            ckpt_kill_tree(m->restored_pid, m->restored_ticks, &kerr) < 0)
                                log_ctx_error(id, "cannot end the incomplete copy: %s", kerr.msg);
                        if (m->container_id)
                                (void)ckpt_state_remove(m->a->cfg.state_dir, m->container_id, &kerr);
                        mig_rec_set(m, "postcopy", json_false());
                        (void)rm_rf_path(m->staging);
                        dst_end(m, MIG_ABORTED);
                        return 0;
                }
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
