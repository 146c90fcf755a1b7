/* SPDX-License-Identifier: Apache-2.0 */
/* The source side of a migration.
 *
 *   PRECHECK   connect to the target, HELLO, OFFER; nothing touched yet
 *   DUMPING    journaled, then CRIU dumps (leave-running off)
 *   DUMPED     the images are complete here; the container is gone
 *   STREAMING  images on the wire, hashed as they pass; then VERIFIED
 *   RESTORING  RESTORE sent; the target restores with tasks stopped
 *   COMMITTED  journaled on RESTORED: from here on there is no way back
 *   DONE       RUNNING heard; images and our state file removed
 *
 * Any failure before COMMITTED rolls back: ABORT to the target, then CRIU
 * restores the container here from our own images (ROLLING_BACK ->
 * ROLLED_BACK). After COMMITTED we only go forward: if the link is lost we
 * reconnect until the target confirms RUNNING, however long it takes. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drain.h"
#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "mig.h"

#define ROLLBACK_ATTEMPTS 3
#define ROLLBACK_RETRY_MS 1000
#define FORWARD_RETRY_MIN_MS 500
#define FORWARD_RETRY_MAX_MS 10000
/* Post-copy: page-server bytes queued for the link before CRIU must wait,
 * and the level at which it may go on. */
#define SRC_PS_HIGH_WATER (8u << 20)
#define SRC_PS_LOW_WATER (2u << 20)

static void src_fail(mig *m, int code, const nm_error *err);
static void src_rollback(mig *m);
static void src_forward(mig *m);
static const peer_link_ops src_link_ops;

static void src_send(mig *m, const proto_msg *msg) {
        nm_error err = {};
        if (!m->link || peer_link_send(m->link, msg, &err) < 0)
                src_fail(m, err.code ? err.code : -ENOTCONN, err.code ? &err : NULL);
}

static void src_close_link(mig *m) {
        if (m->send)
                m->send = xfer_send_free(m->send);
        if (m->link) {
                peer_link *l = m->link;
                m->link = NULL;
                peer_link_detach(l);
        }
}

static void src_done(mig *m, mig_phase final) {
        if (m->phase != final)
                (void)mig_set_phase(m, final);
        src_close_link(m);
        mig_finish(m);
}

/* ---- OFFER ---- */

/* What the images will weigh: the resident memory of the whole tree, plus
 * room for the non-page images. */
static uint64_t estimate_image_bytes(const ckpt_container *c) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        uint64_t total = 1 << 20;

        if (ckpt_tree_pids(c->pid, &pids, &n) < 0)
                return total;
        for (size_t i = 0; i < n; i++) {
                char path[64];
                _cleanup_free_ char *text = NULL;
                snprintf(path, sizeof(path), "/proc/%d/status", (int)pids[i]);
                if (read_file_at(AT_FDCWD, path, 1 << 16, &text, NULL) < 0)
                        continue;
                const char *rss = strstr(text, "\nVmRSS:");
                if (rss)
                        total += strtoull(rss + 7, NULL, 10) * 1024; /* the kernel's own number */
        }
        return total;
}

static void src_send_offer(mig *m) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_free_ char *text = NULL;
        agent *a = m->a;
        nm_error err = {};
        ckpt_capture_info info = {.criu_version = a->criu->version, .node_name = a->cfg.node};

        if (ckpt_metadata_capture(m->ctr, &info, &md, &err) < 0 ||
            ckpt_metadata_format(md, &text, &err) < 0) {
                nm_error_prefix(&err, "cannot describe container %s", m->container_id);
                src_fail(m, err.code, &err);
                return;
        }
        if (m->lazy && !(peer_link_features(m->link) & PEER_FEATURE_LAZY)) {
                mig_fail_reason(m, -EOPNOTSUPP, "%s does not offer post-copy (--lazy) migration", m->peer);
                src_done(m, MIG_REFUSED);
                return;
        }
        if (m->lazy && ckpt_lazy_dump_check(&err) < 0) {
                mig_fail_reason(m, err.code, "%s", err.msg);
                src_done(m, MIG_REFUSED);
                return;
        }
        m->bytes_total = estimate_image_bytes(m->ctr);
        proto_msg offer = {.type = PROTO_MSG_OFFER,
                           .offer = {.mig = m->id,
                                     .container_id = m->container_id,
                                     .container_name = m->container_name ? m->container_name : "",
                                     .metadata = {(const uint8_t *)text, strlen(text)},
                                     .image_bytes = m->bytes_total,
                                     .criu_version = a->criu->version,
                                     .kernel = a->kernel,
                                     .lazy = m->lazy}};
        mig_progress(m, "offering to the target");
        src_send(m, &offer);
}

/* ---- streaming ---- */

static void src_ps_drained(xfer_conn *c, void *ud);

static void src_on_progress(const xfer_progress *p, void *ud) {
        mig *m = ud;
        m->bytes_done = p->bytes;
        m->files_done = p->files;
        if (p->total_bytes)
                m->bytes_total = p->total_bytes;
        m->files_total = p->total_files;
        m->rate = (uint64_t)p->rate;
        mig_progress(m, NULL);
}

static void src_on_sent(xfer_send *x, int status, const nm_error *err, const xfer_send_result *res,
                        void *ud) {
        mig *m = ud;
        (void)x;
        if (status < 0) {
                src_fail(m, status, err);
                return;
        }
        m->t_streamed = now_usec();
        m->bytes_done = res->bytes;
        m->files_done = res->files;
        if (m->lazy && m->link && peer_link_conn(m->link))
                /* The connection's drain is free again: the relay takes it. */
                xfer_conn_set_drain(peer_link_conn(m->link), SRC_PS_LOW_WATER, src_ps_drained, m);
        log_ctx_info(
                m->id,
                "sent %llu files, %llu bytes (%llu on the wire) in %llu ms, tree HMAC %.16s...; waiting "
                "for the target to verify",
                (unsigned long long)res->files, (unsigned long long)res->bytes,
                (unsigned long long)res->wire_bytes,
                (unsigned long long)((m->t_streamed - m->t_dumped) / 1000), res->hmac);
}

static void src_start_stream(mig *m) {
        _cleanup_close_ int dfd = -EBADF;
        nm_error err = {};
        int r;

        dfd = open_dir_nofollow(m->images_dir);
        if (dfd < 0) {
                nm_error_errno(&err, dfd, "cannot open %s", m->images_dir);
                src_fail(m, dfd, &err);
                return;
        }
        r = mig_hooks_init(m, &err);
        xfer_conn *c = m->link ? peer_link_conn(m->link) : NULL;
        if (r >= 0 && !c)
                r = nm_error_set(&err, -ENOTCONN, "the link to %s was lost before streaming", m->peer);
        if (r >= 0) {
                xfer_send_options so = {
                        .hooks = &m->hooks,
                        .mig = m->id,
                        .progress = src_on_progress,
                        .progress_interval_ms = 500,
                        .rate_limit = m->a->cfg.bandwidth,
                };
                unsigned f = peer_link_features(m->link);
                so.zstd = m->a->cfg.compress && (f & PEER_FEATURE_ZSTD);
                so.file_mac = f & PEER_FEATURE_FILE_MAC;
                r = xfer_send_dir(c, dfd, &so, src_on_sent, m, &err, &m->send);
        }
        if (r < 0) {
                src_fail(m, r, &err);
                return;
        }
        /* The sender reads through its own descriptors from here on. */
        if (mig_set_phase(m, MIG_STREAMING) < 0)
                src_fail(m, m->err.code, NULL);
}

/* ---- dump ---- */

/* The images are complete (and the container is gone, or for post-copy
 * frozen until its last page has moved): stream them. */
static void src_images_ready(mig *m, uint64_t image_bytes) {
        m->t_dumped = now_usec();
        m->images_ready = true;
        m->bytes_total = image_bytes;
        if (mig_set_phase(m, MIG_DUMPED) < 0) {
                src_rollback(m);
                return;
        }
        if (m->err.code || !m->link || !peer_link_conn(m->link)) {
                /* The target went away (or aborted) while CRIU was busy. */
                if (!m->err.code)
                        mig_fail_reason(m, -ECONNRESET, "lost the target %s during the dump", m->peer);
                src_rollback(m);
                return;
        }
        src_start_stream(m);
}

static void src_lazy_dump_ended(mig *m, ckpt_dump_req *req, int status);
static void src_on_running(mig *m, pid_t pid);

static void src_on_dumped(ckpt_dump_req *req, int status) {
        mig *m = req->data;
        criu_queue_done(m->a, &m->job);
        if (m->ps_fd >= 0)
                close(TAKE_FD(m->ps_fd));
        if (m->lazy && m->images_ready) {
                src_lazy_dump_ended(m, req, status);
                return;
        }
        if (status < 0 && !req->dumped) {
                /* CRIU failed and resumed the tasks: nothing moved. */
                m->t_dumped = now_usec();
                mig_fail_reason(m, status, "dump failed: %s", req->error.msg);
                if (m->link && peer_link_conn(m->link)) {
                        proto_msg ab = {.type = PROTO_MSG_ABORT,
                                        .abort = {.mig = m->id, .reason = m->err.msg}};
                        (void)peer_link_send(m->link, &ab, NULL);
                }
                src_done(m, req->source_running ? MIG_FAILED : MIG_LOST);
                return;
        }
        if (status < 0)
                log_ctx_warning(m->id, "CRIU dumped the images but then failed: %s", req->error.msg);
        log_ctx_info(m->id, "dumped %llu bytes of images; frozen for %llu ms (%s)",
                     (unsigned long long)req->stats.image_bytes,
                     (unsigned long long)req->stats.frozen_usec / 1000, req->criu_path);
        src_images_ready(m, req->stats.image_bytes);
}

/* ---- post-copy ---- */

/* Bytes from our lazy dump's page server, for the target's daemon. */
static void src_ps_data(ps_relay *r, const void *buf, size_t n, void *ud) {
        mig *m = ud;
        xfer_conn *c = m->link ? peer_link_conn(m->link) : NULL;
        proto_msg d = {.type = PROTO_MSG_PS_DATA, .ps_data = {.mig = m->id, .data = {buf, n}}};

        if (!c || xfer_conn_send(c, &d, NULL) < 0)
                return; /* the link's end decides what happens to the dump */
        /* Pages outpace one SSH channel: let CRIU wait rather than queue. */
        if (!m->send && xfer_conn_queued(c) > SRC_PS_HIGH_WATER)
                ps_relay_pause(r, true);
}

static void src_ps_drained(xfer_conn *c, void *ud) {
        mig *m = ud;
        (void)c;
        ps_relay_pause(m->relay, false);
}

static void src_ps_closed(ps_relay *r, int status, void *ud) {
        mig *m = ud;
        (void)r;
        log_ctx_debug(m->id, "the lazy dump's page server closed its socket (%d)", status);
}

static const ps_relay_ops src_ps_ops = {.data = src_ps_data, .closed = src_ps_closed};

static void src_dump_event(void *data, const char *event, uint64_t at_usec) {
        mig *m = data;
        (void)at_usec;
        if (!m->lazy || m->images_ready || strcmp(event, "post-dump") != 0)
                return;
        /* CRIU flushed every image and now serves the lazy pages from the
         * frozen tasks until the target has them all. */
        log_ctx_info(m->id, "dumped everything but the lazy pages; frozen for %llu ms so far",
                     (unsigned long long)((now_usec() - m->t_frozen) / 1000));
        src_images_ready(m, 0);
}

/* Ends the page server so that CRIU lets the tasks run again here: before
 * COMMITTED, that is the rollback of a post-copy move. */
static void src_lazy_rollback(mig *m) {
        log_ctx_info(m->id, "making the lazy dump fail so that the container resumes here");
        ps_relay_poison(m->relay);
        m->relay = ps_relay_free(m->relay);
}

/* CRIU's lazy dump returned: every page was served (0), or the transfer
 * failed and CRIU let the tasks run again (< 0). */
static void src_lazy_dump_ended(mig *m, ckpt_dump_req *req, int status) {
        nm_error err = {};

        m->lazy_served = true;
        m->relay = ps_relay_free(m->relay);
        if (m->postcopy_failed) {
                if (status < 0 && m->ctr && ckpt_kill_tree(m->ctr->pid, m->ctr->start_ticks, &err) < 0)
                        log_ctx_error(m->id, "cannot end the copy CRIU resumed here: %s", err.msg);
                src_done(m, MIG_LOST);
                return;
        }
        if (status >= 0 && m->phase == MIG_COMMITTED) {
                log_ctx_info(m->id, "the lazy dump served its last page");
                if (m->running_heard)
                        src_on_running(m, m->new_pid);
                return; /* RUNNING (or the target's error) decides */
        }
        if (status >= 0 && !m->relay_dropped) {
                /* The target's daemon fetched every page before COMMITTED (a
                 * small container) and closed the session: CRIU ended the
                 * tasks here. Only forward now: the target's copy is
                 * complete, and src_rollback cannot undo this. */
                log_ctx_info(m->id, "the lazy dump served its last page before the commit");
                return;
        }
        if (status >= 0) {
                mig_fail_reason(m, -EIO, "the lazy dump ended before COMMITTED; the container is lost");
                src_done(m, MIG_LOST);
                return;
        }
        if (m->phase == MIG_COMMITTED) {
                /* CRIU resumed the tasks here, but the target's copy runs:
                 * never two copies. */
                mig_fail_reason(m, status, "post-copy failed after COMMITTED: %s", req->error.msg);
                if (m->ctr && ckpt_kill_tree(m->ctr->pid, m->ctr->start_ticks, &err) < 0)
                        log_ctx_error(m->id, "cannot end the copy CRIU resumed here: %s", err.msg);
                return; /* the target's answer (RUNNING or ERROR) decides */
        }
        /* Before COMMITTED: CRIU let the frozen tasks run on; only the
         * network lock is left to undo. */
        if (m->ctr && ckpt_lazy_unlock_network(m->ctr->pid, &err) < 0)
                log_ctx_warning(m->id, "%s", err.msg);
        else
                log_ctx_info(m->id, "removed CRIU's network lock of pid %d", m->ctr ? (int)m->ctr->pid : 0);
        m->t_resumed = now_usec();
        m->new_pid = m->ctr ? m->ctr->pid : 0;
        log_ctx_info(m->id,
                     "rolled back: the container runs here again as pid %d (it never stopped being it)",
                     (int)m->new_pid);
        (void)rm_rf_path(m->images_dir);
        src_done(m, MIG_ROLLED_BACK);
}

static void src_dump_start(criu_job *job) {
        mig *m = container_of(job, mig, job);
        agent *a = m->a;
        char work[PATH_MAX];
        int r;

        if (m->err.code) { /* aborted while waiting for CRIU */
                criu_queue_done(a, job);
                src_done(m, MIG_FAILED);
                return;
        }
        snprintf(work, sizeof(work), "%s/%s-dump", a->criu_work_dir, m->id);
        ckpt_dump_opts o = {
                .criu = {.criu = a->criu, .work_dir = work, .tcp = m->tcp},
                .key = a->key,
                .key_len = a->key_len,
                .node_name = a->cfg.node,
        };
        m->dump.data = m;
        if (m->lazy) {
                r = ps_relay_new(a->loop, true, &src_ps_ops, m, &m->ps_fd, &m->relay);
                if (r < 0) {
                        criu_queue_done(a, job);
                        mig_fail_reason(m, r, "cannot set up the post-copy relay: %s", strerror(-r));
                        src_done(m, MIG_FAILED);
                        return;
                }
                o.lazy = true;
                o.lazy_ps_fd = m->ps_fd;
                m->dump.event_cb = src_dump_event;
        }
        m->t_frozen = now_usec();
        mig_progress(m, "dumping with CRIU");
        r = fault_fail("dump") ? nm_error_set(&m->dump.error, -EIO, "dump failed (fault injection)")
                               : ckpt_dump(a->loop, &m->dump, m->ctr, m->images_dir, &o, src_on_dumped);
        if (r < 0) {
                /* Nothing was touched: checks and captures come before CRIU. */
                criu_queue_done(a, job);
                mig_fail_reason(m, r, "cannot dump: %s", m->dump.error.msg);
                if (m->link && peer_link_conn(m->link)) {
                        proto_msg ab = {.type = PROTO_MSG_ABORT,
                                        .abort = {.mig = m->id, .reason = m->err.msg}};
                        (void)peer_link_send(m->link, &ab, NULL);
                }
                src_done(m, MIG_FAILED);
        }
}

static void src_on_accept(mig *m) {
        if (mig_set_phase(m, MIG_DUMPING) < 0) {
                src_done(m, MIG_FAILED);
                return;
        }
        m->job.start = src_dump_start;
        criu_queue_push(m->a, &m->job);
}

/* ---- rollback ---- */

static void src_rolled_back(mig *m, int status);
static void src_on_rolled_back(ckpt_restore_req *req, int status);

static void src_rollback_start(criu_job *job) {
        mig *m = container_of(job, mig, job);
        agent *a = m->a;
        char work[PATH_MAX];
        int r;

        snprintf(work, sizeof(work), "%s/%s-rollback-%u", a->criu_work_dir, m->id, m->retries);
        ckpt_restore_opts o = {
                .criu = {.criu = a->criu, .work_dir = work}, .key = a->key, .key_len = a->key_len};
        ckpt_restore_req_done(&m->rollback);
        memset(&m->rollback, 0, sizeof(m->rollback));
        m->rollback.data = m;
        r = ckpt_restore(a->loop, &m->rollback, m->images_dir, &o, src_on_rolled_back);
        if (r < 0) {
                criu_queue_done(a, job);
                src_rolled_back(m, r);
        }
}

static void src_retry_rollback(uv_timer_t *t) {
        mig *m = t->data;
        m->job.start = src_rollback_start;
        criu_queue_push(m->a, &m->job);
}

static void src_on_rolled_back(ckpt_restore_req *req, int status) {
        mig *m = req->data;
        criu_queue_done(m->a, &m->job);
        src_rolled_back(m, status);
}

static void src_rolled_back(mig *m, int status) {
        ckpt_restore_req *req = &m->rollback;
        agent *a = m->a;
        nm_error err = {};

        if (status < 0) {
                log_ctx_error(m->id, "rollback attempt %u failed: %s", m->retries + 1, req->error.msg);
                if (++m->retries < ROLLBACK_ATTEMPTS) {
                        uv_timer_start(&m->timer, src_retry_rollback, ROLLBACK_RETRY_MS, 0);
                        return;
                }
                mig_fail_reason(m, status, "rollback failed %u times (last: %s); images kept in %s",
                                ROLLBACK_ATTEMPTS, req->error.msg, m->images_dir);
                src_done(m, MIG_LOST);
                return;
        }
        m->new_pid = req->pid;
        m->t_resumed = now_usec();
        if (m->ctr && !m->ctr->bare &&
            ckpt_state_write_restored(a->cfg.state_dir, m->ctr, req->pid, req->start_ticks, &err) < 0)
                log_ctx_error(m->id, "restored as pid %d but cannot rewrite its state file: %s",
                              (int)req->pid, err.msg);
        log_ctx_info(m->id, "rolled back: container %s runs here again as pid %d", m->container_id,
                     (int)req->pid);
        (void)rm_rf_path(m->images_dir);
        src_done(m, MIG_ROLLED_BACK);
}

static void src_rollback(mig *m) {
        if (m->phase == MIG_ROLLING_BACK)
                return;
        if (m->lazy && m->lazy_served && m->phase < MIG_COMMITTED) {
                /* Every page left with the tasks: nothing to restore here.
                 * "lost" answers a target's QUERY with committed, so a
                 * complete stopped copy there still resumes. */
                mig_fail_reason(m, -EIO, "post-copy failed after the last page was served: %s",
                                m->err.code ? m->err.msg : "no copy left here");
                src_done(m, MIG_LOST);
                return;
        }
        if (m->lazy && m->images_ready && !m->lazy_served) {
                /* The memory is still in the frozen tasks, not in images. */
                if (m->link && peer_link_conn(m->link)) {
                        proto_msg ab = {.type = PROTO_MSG_ABORT,
                                        .abort = {.mig = m->id,
                                                  .reason = m->err.code ? m->err.msg : "source rolls back"}};
                        (void)peer_link_send(m->link, &ab, NULL);
                }
                src_close_link(m);
                (void)mig_set_phase(m, MIG_ROLLING_BACK);
                mig_progress(m, "rolling back: the container resumes here");
                src_lazy_rollback(m); /* src_lazy_dump_ended finishes */
                return;
        }
        if (m->link && peer_link_conn(m->link)) {
                proto_msg ab = {
                        .type = PROTO_MSG_ABORT,
                        .abort = {.mig = m->id, .reason = m->err.code ? m->err.msg : "source rolls back"}};
                (void)peer_link_send(m->link, &ab, NULL);
        }
        src_close_link(m);
        (void)mig_set_phase(m, MIG_ROLLING_BACK);
        mig_progress(m, "rolling back: restoring the container here");
        m->retries = 0;
        m->job.start = src_rollback_start;
        criu_queue_push(m->a, &m->job);
}

/* ---- failures ---- */

static void src_fail(mig *m, int code, const nm_error *err) {
        if (err && err->code)
                mig_fail_reason(m, code, "%s", err->msg);
        else
                mig_fail_reason(m, code, "migration to %s failed (%s)", strna(m->peer), strerror(-code));
        switch (m->phase) {
        case MIG_PRECHECK: src_done(m, MIG_FAILED); return;
        case MIG_DUMPING:
                /* CRIU is running: src_on_dumped decides, seeing m->err. */
                src_close_link(m);
                return;
        case MIG_DUMPED:
        case MIG_STREAMING:
        case MIG_RESTORING: src_rollback(m); return;
        case MIG_COMMITTED:
                src_close_link(m);
                src_forward(m);
                return;
        case MIG_ROLLING_BACK:
        case MIG_DONE:
        case MIG_ROLLED_BACK:
        case MIG_FAILED:
        case MIG_REFUSED:
        case MIG_LOST:
        case MIG_RECEIVING:
        case MIG_VERIFIED:
        case MIG_DEST_RESTORING:
        case MIG_RESTORED:
        case MIG_IN_DOUBT:
        case MIG_RUNNING:
        case MIG_ABORTED:
        case _MIG_PHASE_MAX:
        case _MIG_PHASE_INVALID: break;
        }
}

/* ---- commit and forward ---- */

static void src_on_running(mig *m, pid_t pid) {
        nm_error err = {};
        if (m->lazy && !m->lazy_served) {
                /* RUNNING says every page arrived; CRIU returns right after. */
                m->running_heard = true;
                m->new_pid = pid;
                return;
        }
        m->new_pid = pid;
        m->t_resumed = now_usec();
        m->t_restored = m->t_restored ? m->t_restored : m->t_resumed;
        if (m->images_dir)
                (void)rm_rf_path(m->images_dir);
        if (m->container_id && !(m->ctr && m->ctr->bare) &&
            ckpt_state_remove(m->a->cfg.state_dir, m->container_id, &err) < 0)
                log_ctx_warning(m->id, "cannot remove our state file: %s", err.msg);
        log_ctx_info(m->id, "container %s runs on %s as pid %d", m->container_id, m->peer, (int)pid);
        src_done(m, MIG_DONE);
}

static void src_on_restored(mig *m, pid_t pid) {
        fault_point(m, "got-restored");
        m->t_restored = now_usec();
        m->new_pid = pid;
        mig_rec_set_int(m, "dest_pid", pid);
        /* The point of no return: once this is on disk we never roll back. */
        if (mig_set_phase(m, MIG_COMMITTED) < 0) {
                src_rollback(m);
                return;
        }
        proto_msg c = {.type = PROTO_MSG_COMMIT, .commit = {.mig = m->id}};
        m->t_commit = now_usec();
        src_send(m, &c);
}

static void src_forward_retry(uv_timer_t *t);

static void src_forward(mig *m) {
        nm_error err = {};
        uint64_t delay = FORWARD_RETRY_MIN_MS << (m->retries < 6 ? m->retries : 6);

        if (m->retries == 1 && m->cli && !m->result_sent) {
                /* Tell the operator now, and why; we keep trying in the
                 * background. */
                json_t *doc = mig_result_doc(m);
                if (!m->err.code && m->doubt.code)
                        json_object_set_new(
                                doc, "error",
                                json_sprintf("%s has not confirmed that the container runs there: %s",
                                             m->peer, m->doubt.msg));
                ctl_send_result(m->cli, m->id, doc);
                json_decref(doc);
                m->result_sent = true;
        }
        if (m->retries > 0) {
                log_ctx_warning(
                        m->id, "committed, but %s has not confirmed RUNNING yet: retrying in %llu ms",
                        m->peer,
                        (unsigned long long)(delay > FORWARD_RETRY_MAX_MS ? FORWARD_RETRY_MAX_MS : delay));
                uv_timer_start(&m->timer, src_forward_retry,
                               delay > FORWARD_RETRY_MAX_MS ? FORWARD_RETRY_MAX_MS : delay, 0);
                m->retries++;
                return;
        }
        m->retries++;
        if (peer_link_open(m->a, m->peer, m->id, &src_link_ops, m, &err, &m->link) < 0) {
                log_ctx_error(m->id, "%s", err.msg);
                m->doubt = err;
                src_forward(m);
        }
}

static void src_forward_retry(uv_timer_t *t) {
        mig *m = t->data;
        nm_error err = {};
        if (peer_link_open(m->a, m->peer, m->id, &src_link_ops, m, &err, &m->link) < 0) {
                log_ctx_error(m->id, "%s", err.msg);
                m->doubt = err;
                src_forward(m);
        }
}

/* ---- messages from the target ---- */

static void src_link_ready(peer_link *l, void *ud) {
        mig *m = ud;
        (void)l;
        if (m->phase == MIG_PRECHECK) {
                src_send_offer(m);
        } else if (m->phase == MIG_COMMITTED) {
                proto_msg c = {.type = PROTO_MSG_COMMIT, .commit = {.mig = m->id}};
                src_send(m, &c);
        }
}

static void src_on_reject(mig *m, const proto_reject *rj) {
        mig_fail_reason(m, -EPERM, "%s refused: %s (%s)", m->peer, rj->reason,
                        strna(proto_reject_code_to_string(rj->code)));
        src_done(m, MIG_REFUSED);
}

static void src_on_peer_error(mig *m, const char *what, int code, const char *reason) {
        nm_error err = {};
        nm_error_set(&err, code < 0 ? code : -EIO, "%s %s: %s", m->peer, what, reason);
        if (m->phase == MIG_COMMITTED && m->lazy) {
                /* The target lost its copy during post-copy; ours goes with
                 * the pages it served: nothing can run the container. */
                mig_fail_reason(m, code, "%s; post-copy cannot be undone: the container is lost", err.msg);
                m->postcopy_failed = m->relay_dropped = true;
                m->relay = ps_relay_free(m->relay); /* CRIU ends its tasks */
                if (m->lazy_served)
                        src_done(m, MIG_LOST);
                return; /* else once CRIU has returned (src_lazy_dump_ended) */
        }
        if (m->phase == MIG_COMMITTED && code == -ESRCH) {
                /* The target holds no copy and never resumed one: bringing
                 * ours back is the only way the container keeps running. */
                mig_fail_reason(m, code, "%s", err.msg);
                src_close_link(m);
                m->phase = MIG_STREAMING; /* in memory only: allows the rollback */
                src_rollback(m);
                return;
        }
        src_fail(m, err.code, &err);
}

static void src_link_message(peer_link *l, const proto_msg *msg, void *ud) {
        mig *m = ud;
        const char *mig_id = proto_msg_mig(msg);
        (void)l;

        if (mig_id && strcmp(mig_id, m->id) != 0)
                return;
        switch ((int)msg->type) { /* most types are invalid here: default handles them */
        case PROTO_MSG_ACCEPT:
                if (m->phase == MIG_PRECHECK)
                        src_on_accept(m);
                return;
        case PROTO_MSG_REJECT:
                if (m->phase == MIG_PRECHECK)
                        src_on_reject(m, &msg->reject);
                return;
        case PROTO_MSG_VERIFIED:
                if (m->phase != MIG_STREAMING || !m->t_streamed)
                        break;
                if (mig_set_phase(m, MIG_RESTORING) < 0) {
                        src_rollback(m);
                        return;
                }
                proto_msg r = {.type = PROTO_MSG_RESTORE, .restore = {.mig = m->id}};
                mig_progress(m, "the target verified every byte; restoring there");
                src_send(m, &r);
                return;
        case PROTO_MSG_RESTORED:
                if (m->phase == MIG_RESTORING)
                        src_on_restored(m, (pid_t)msg->restored.pid);
                return;
        case PROTO_MSG_RUNNING:
                if (m->phase == MIG_COMMITTED)
                        src_on_running(m, (pid_t)msg->running.pid);
                return;
        case PROTO_MSG_PS_DATA:
                if (m->relay)
                        (void)ps_relay_write(m->relay, msg->ps_data.data.ptr, msg->ps_data.data.len);
                return;
        case PROTO_MSG_ABORT: src_on_peer_error(m, "aborted", -ECONNABORTED, msg->abort.reason); return;
        case PROTO_MSG_ERROR:
                src_on_peer_error(m, "reported an error", msg->error.code, msg->error.reason);
                return;
        default: break;
        }
        src_on_peer_error(m, "sent", -EPROTO, proto_msg_type_to_string(msg->type));
}

static void src_link_closed(peer_link *l, int status, const nm_error *err, void *ud) {
        mig *m = ud;
        nm_error e = {};
        (void)l;
        m->link = NULL;
        if (m->send) {
                nm_error_set(&e, status ? status : -ECONNRESET, "the link to %s was lost while streaming",
                             m->peer);
                xfer_send_abort(m->send, e.code, err && err->code ? err : &e);
        }
        if (mig_phase_is_final(m->phase) || m->phase == MIG_ROLLING_BACK)
                return;
        if (m->phase == MIG_COMMITTED) {
                log_ctx_warning(m->id, "link to %s lost after COMMITTED: %s", m->peer,
                                err && err->code ? err->msg : "closed");
                if (err && err->code)
                        m->doubt = *err;
                else
                        nm_error_set(&m->doubt, -ECONNRESET, "the link to %s closed", m->peer);
                if (m->relay) {
                        /* Post-copy cut short: CRIU ends the tasks here (the
                         * target's copy is the container now, if it has its
                         * pages; it says so when we reach it again). */
                        m->relay_dropped = true;
                        m->relay = ps_relay_free(m->relay);
                }
                src_forward(m);
                return;
        }
        if (!err || !err->code) {
                nm_error_set(&e, status ? status : -ECONNRESET, "the link to %s closed", m->peer);
                err = &e;
        }
        src_fail(m, err->code, err);
}

static const peer_link_ops src_link_ops = {
        .ready = src_link_ready,
        .message = src_link_message,
        .closed = src_link_closed,
};

/* ---- start ---- */

static int src_prepare(agent *a, const proto_migrate *req, ckpt_container **ret, const agent_peer **ret_peer,
                       nm_error *err) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        const agent_peer *p;
        mig *other;
        int r;

        if (a->stopping)
                return nm_error_set(err, -ESHUTDOWN, "the agent is shutting down");
        r = req->has_pid ? ckpt_container_from_pid((pid_t)req->pid, &c, err)
                         : ckpt_container_find(a->cfg.state_dir, req->container, &c, err);
        if (r < 0)
                return r;
        r = ckpt_container_check_movable(c, err);
        if (r < 0)
                return r;
        p = agent_config_peer(&a->cfg, req->target);
        if (!p)
                return nm_error_set(err, -ENXIO, "unknown target \"%s\": no [peer %s] section in %s",
                                    req->target, req->target, "the agent's configuration");
        if (strcmp(p->name, a->cfg.node) == 0)
                return nm_error_set(err, -EINVAL, "\"%s\" is this node", req->target);
        LIST_FOREACH(migs, other, a->migs)
        if (!other->finished && other->role == MIG_ROLE_SOURCE && other->container_id &&
            strcmp(other->container_id, c->id) == 0)
                return nm_error_set(err, -EBUSY, "container %s is already being moved (migration %s)", c->id,
                                    other->id);
        if (a->n_src >= a->cfg.parallel)
                return nm_error_set(err, -EBUSY, "%u migrations are in flight already (limits.parallel)",
                                    a->n_src);
        *ret = TAKE_PTR(c);
        *ret_peer = p;
        return 0;
}

/* The move's --tcp, else [agent] tcp; auto: what suits the container. */
static int src_tcp_mode(agent *a, const proto_migrate *req, const ckpt_container *c, ckpt_tcp_mode *ret,
                        nm_error *err) {
        const proto_opt *o = proto_opts_get(&req->opts, "tcp");
        agent_tcp_policy p = a->cfg.tcp;

        if (o) {
                p = o->kind == PROTO_OPT_STR ? agent_tcp_policy_from_string(o->s)
                                             : _AGENT_TCP_POLICY_INVALID;
                if (p < 0)
                        return nm_error_set(err, -EINVAL, "--tcp wants auto, move or close");
        }
        switch (p) {
        case AGENT_TCP_MOVE: *ret = CKPT_TCP_MOVE; return 0;
        case AGENT_TCP_CLOSE: *ret = CKPT_TCP_CLOSE; return 0;
        case AGENT_TCP_AUTO:
        case _AGENT_TCP_POLICY_MAX:
        case _AGENT_TCP_POLICY_INVALID: break;
        }
        *ret = ckpt_tcp_mode_auto(c);
        return 0;
}

int mig_src_start(agent *a, ctl_conn *cli, drain *d, const proto_migrate *req, char ret_id[PROTO_ID_MAX + 1],
                  nm_error *err) {
        ckpt_container *c = NULL;
        const agent_peer *p = NULL;
        const proto_opt *lazy;
        ckpt_tcp_mode tcp = CKPT_TCP_CLOSE;
        char id[33], path[PATH_MAX];
        mig *m;
        int r;

        r = src_prepare(a, req, &c, &p, err);
        if (r >= 0)
                r = src_tcp_mode(a, req, c, &tcp, err);
        if (r < 0) {
                ckpt_container_free(c);
                return r;
        }
        agent_new_id(id);
        m = mig_new(a, MIG_ROLE_SOURCE, id);
        if (!m) {
                ckpt_container_free(c);
                return nm_error_set(err, -ENOMEM, "out of memory");
        }
        m->ctr = c;
        m->container_id = strdup(c->id);
        m->container_name = c->name ? strdup(c->name) : NULL;
        m->peer = strdup(p->name);
        snprintf(path, sizeof(path), "%s/%s", a->checkpoints_dir, id);
        m->images_dir = strdup(path);
        lazy = proto_opts_get(&req->opts, "lazy");
        m->lazy = lazy && lazy->kind == PROTO_OPT_BOOL && lazy->b;
        m->tcp = tcp;
        m->cli = cli;
        m->drain = d;
        mig_rec_set_str(m, "container_id", c->id);
        mig_rec_set_str(m, "container_name", c->name);
        mig_rec_set_int(m, "pid", c->pid);
        mig_rec_set_int(m, "start_ticks", (int64_t)c->start_ticks);
        mig_rec_set(m, "bare", json_boolean(c->bare));
        mig_rec_set_str(m, "peer", p->name);
        mig_rec_set_str(m, "images_dir", m->images_dir);
        mig_rec_set_str(m, "tcp", ckpt_tcp_mode_to_string(tcp));
        log_ctx_info(id, "moving container %s (%s, pid %d) to %s; established TCP connections: %s", c->id,
                     strna(c->name), (int)c->pid, p->name, ckpt_tcp_mode_to_string(tcp));
        if (mig_set_phase(m, MIG_PRECHECK) < 0) {
                *err = m->err;
                mig_finish(m);
                return err->code;
        }
        snprintf(ret_id, PROTO_ID_MAX + 1, "%s", id);
        if (peer_link_open(a, m->peer, m->id, &src_link_ops, m, err, &m->link) < 0) {
                mig_fail_reason(m, err->code, "%s", err->msg);
                src_done(m, MIG_FAILED);
                return 0; /* the result went to the CLI already */
        }
        return 0;
}

void mig_src_cli_gone(mig *m) {
        m->cli = NULL;
}

/* ---- the answer to a destination holding a stopped copy ---- */

static proto_outcome outcome_of_phase(mig_phase p) {
        switch (p) {
        case MIG_COMMITTED:
        case MIG_DONE:
        case MIG_LOST: /* nothing runs here: the target's copy is the container now */
                return PROTO_OUTCOME_COMMITTED;
        case MIG_PRECHECK:
        case MIG_DUMPING:
        case MIG_DUMPED:
        case MIG_STREAMING:
        case MIG_RESTORING:
        case MIG_ROLLING_BACK:
        case MIG_ROLLED_BACK:
        case MIG_FAILED:
        case MIG_REFUSED: return PROTO_OUTCOME_ABORTED;
        case MIG_RECEIVING:
        case MIG_VERIFIED:
        case MIG_DEST_RESTORING:
        case MIG_RESTORED:
        case MIG_IN_DOUBT:
        case MIG_RUNNING:
        case MIG_ABORTED:
        case _MIG_PHASE_MAX:
        case _MIG_PHASE_INVALID: break;
        }
        return PROTO_OUTCOME_UNKNOWN;
}

proto_outcome mig_src_outcome(agent *a, const char *id) {
        mig *m = mig_find(a, id);
        json_t *done = NULL, *rec;
        nm_error err = {};
        size_t i;
        proto_outcome o = PROTO_OUTCOME_UNKNOWN;

        if (m && m->role == MIG_ROLE_SOURCE) {
                o = outcome_of_phase(m->phase);
                if (o == PROTO_OUTCOME_ABORTED && m->phase < MIG_COMMITTED && m->phase != MIG_ROLLING_BACK) {
                        /* We answer "aborted": make it true before anything
                         * else can happen to this migration. */
                        src_fail(m, -ECONNRESET, NULL);
                }
                if (m->phase == MIG_LOST) {
                        mig_fail_reason(m, -EIO, "handed over to %s after a failed rollback", m->peer);
                }
                return o;
        }
        if (journal_load_done(a->journal, JOURNAL_KEEP_DONE, &done, &err) < 0)
                return PROTO_OUTCOME_UNKNOWN;
        json_array_foreach(done, i, rec) {
                const char *rid = json_string_value(json_object_get(rec, "mig"));
                if (rid && strcmp(rid, id) == 0 &&
                    mig_role_from_string(json_string_value(json_object_get(rec, "role"))) ==
                            MIG_ROLE_SOURCE) {
                        o = outcome_of_phase(
                                mig_phase_from_string(json_string_value(json_object_get(rec, "phase"))));
                        break;
                }
        }
        json_decref(done);
        return o;
}

/* ---- after a restart ---- */

static int src_load_container(mig *m, nm_error *err) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_close_ int dfd = open_dir_nofollow(m->images_dir);
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open %s", m->images_dir);
        if (ckpt_metadata_load(dfd, &md, err) < 0)
                return err->code;
        return ckpt_container_from_metadata(md, &m->ctr, err);
}

int mig_src_recover(agent *a, json_t *rec, mig_recovery action, nm_error *err) {
        const char *id = json_string_value(json_object_get(rec, "mig"));
        mig *m = mig_new(a, MIG_ROLE_SOURCE, id);

        if (!m)
                return nm_error_set(err, -ENOMEM, "out of memory");
        json_decref(m->rec);
        m->rec = json_incref(rec);
        m->phase = mig_phase_from_string(json_string_value(json_object_get(rec, "phase")));
        m->container_id = json_string_value(json_object_get(rec, "container_id"))
                                  ? strdup(json_string_value(json_object_get(rec, "container_id")))
                                  : NULL;
        m->container_name =
                mig_rec_str(m, "container_name") ? strdup(mig_rec_str(m, "container_name")) : NULL;
        m->peer = mig_rec_str(m, "peer") ? strdup(mig_rec_str(m, "peer")) : NULL;
        m->images_dir = mig_rec_str(m, "images_dir") ? strdup(mig_rec_str(m, "images_dir")) : NULL;
        log_ctx_info(id, "recovering source migration of %s to %s from phase %s: %s", strna(m->container_id),
                     strna(m->peer), mig_phase_to_string(m->phase), mig_recovery_to_string(action));
        switch (action) {
        case MIG_RECOVER_FINISH: mig_finish(m); return 0;
        case MIG_RECOVER_MARK_FAILED:
                mig_fail_reason(m, -EINTR,
                                "the agent stopped before the dump; the container was not touched");
                if (m->images_dir)
                        (void)rm_rf_path(m->images_dir);
                src_done(m, MIG_FAILED);
                return 0;
        case MIG_RECOVER_ROLLBACK:
                mig_fail_reason(m, -EINTR, "the agent stopped during the move (phase %s); rolling back",
                                mig_phase_to_string(m->phase));
                if (src_load_container(m, err) < 0)
                        log_ctx_warning(id, "no state to rewrite after rollback: %s", err->msg);
                nm_error_clear(err);
                m->phase = MIG_DUMPED; /* in memory: let the rollback start afresh */
                src_rollback(m);
                return 0;
        case MIG_RECOVER_FORWARD:
                (void)src_load_container(m, err);
                nm_error_clear(err);
                m->retries = 0;
                src_forward(m);
                return 0;
        case MIG_RECOVER_DISCARD:
        case MIG_RECOVER_ASK_SOURCE:
        case MIG_RECOVER_COMPLETE:
        case _MIG_RECOVER_MAX:
        case _MIG_RECOVER_INVALID: break;
        }
        nm_error_set(err, -EINVAL, "migration %s: no source recovery for phase %s", id,
                     strna(mig_phase_to_string(m->phase)));
        mig_finish(m);
        return err->code;
}
