/* SPDX-License-Identifier: Apache-2.0 */
/* The source side of a migration: the adapter between the source's rules
 * (core/handoff-src.h, which says what happens next) and the world. What
 * the target, CRIU, the stream and the journal do becomes an event for the
 * core; each action the core returns becomes I/O here. Nothing here
 * decides the handoff. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "metrics.h"
#include "mig-src-lanes.h"
#include "mig.h"
#include "precheck.h"

/* Post-copy: page-server bytes queued for the link before CRIU must wait,
 * and the level at which it may go on. */
#define SRC_PS_HIGH_WATER (8u << 20)
#define SRC_PS_LOW_WATER (2u << 20)

/* Whether the pages go to the target while CRIU dumps: asked for here
 * ([agent] stream_pages), announced by the target, and not a post-copy
 * move (whose pages come after the resume). */
static bool src_wants_ps_stream(const mig *m) {
        return m->a->cfg.stream_pages && m->src.postcopy == SRC_PC_OFF && m->link &&
               (peer_link_features(m->link) & PEER_FEATURE_PS_STREAM);
}

static const peer_link_ops src_link_ops;
static const mig_role_ops src_ops;

/* ---- events ---- */

/* This role's event of this kind, for mig_feed_err, mig_feed_errorf and
 * mig_act_failed. */
#define SRC_EV(k) (&(mig_event){.src = {.kind = (k)}})

static void src_feed(mig *m, src_event_kind kind, const nm_error *err) {
        mig_feed_err(m, SRC_EV(kind), err);
}

static void src_on_timer(uv_timer_t *t) {
        src_feed(t->data, SRC_EV_TIMER, NULL);
}

/* ---- the link to the target ---- */

static void src_stream_ended(mig *m) {
        if (!m->streaming)
                return;
        m->streaming = false;
        mig_share_bandwidth(m->a);
}

static void src_close_link(mig *m) {
        src_stream_ended(m);
        if (m->send)
                m->send = xfer_send_free(m->send);
        if (m->link) {
                peer_link *l = m->link;
                m->link = NULL;
                peer_link_detach(l);
        }
}

static mig_act_result src_open_link(mig *m, mig_event *ret) {
        nm_error err = {};

        if (peer_link_open(m->a, m->peer, m->id, &src_link_ops, m, &err, &m->link) >= 0)
                return MIG_ACT_DONE;
        log_ctx_warning(m->id, "%s", err.msg);
        m->doubt = err;
        return mig_act_failed(ret, SRC_EV(SRC_EV_LINK_LOST), &err);
}

/* A message the link would not take: the link is gone for us. With no
 * link at all its loss has been told already (the link's end is an event
 * of its own, which may still wait behind this list): the message is
 * dropped, or the core would hear of one loss twice. */
static mig_act_result src_send(mig *m, const proto_msg *msg, mig_event *ret) {
        nm_error err = {};

        if (!m->link) {
                log_ctx_debug(m->id, "not sending %s: the link to %s is gone",
                              strna(proto_msg_type_to_string(msg->type)), m->peer);
                return MIG_ACT_DONE;
        }
        if (peer_link_send(m->link, msg, &err) >= 0)
                return MIG_ACT_DONE;
        if (!err.code)
                nm_error_set(&err, -ENOTCONN, "the link to %s is not open", m->peer);
        src_close_link(m);
        m->doubt = err;
        return mig_act_failed(ret, SRC_EV(SRC_EV_LINK_LOST), &err);
}

static void src_send_abort(mig *m) {
        proto_msg ab = {.type = PROTO_MSG_ABORT,
                        .abort = {.mig = m->id, .reason = m->err.code ? m->err.msg : "source rolls back"}};
        if (m->link)
                (void)peer_link_send(m->link, &ab, NULL);
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

/* Post-copy needs the target's "lazy" and room for CRIU's page-server pipe
 * here: refused before anything is frozen otherwise. */
static int src_check_lazy(mig *m, nm_error *err) {
        if (m->src.postcopy == SRC_PC_OFF)
                return 0;
        if (!(peer_link_features(m->link) & PEER_FEATURE_LAZY))
                return nm_error_set(err, -EOPNOTSUPP, "%s does not offer post-copy (--lazy) migration",
                                    m->peer);
        return ckpt_lazy_dump_check(err);
}

/* A container of nucleus's native runtime: what this node alone can judge
 * is checked before anything is frozen (-EOPNOTSUPP: refused, with the
 * reason), and the description goes into the offer's metadata, so that
 * the target checks its side before it accepts. */
static int src_describe_native(mig *m, ckpt_metadata *md, nm_error *err) {
        _cleanup_(ckpt_native_freep) ckpt_native *n = NULL;
        json_t *j = NULL;
        int r;

        r = ckpt_native_describe(m->ctr, &n, err);
        if (r < 0)
                return nm_error_prefix(err, "describing %s (nothing was frozen)", m->container_id), -EIO;
        r = ckpt_native_check_source(n, &m->policy, err);
        if (r < 0 && !m->policy.accept_landlock_loss &&
            ckpt_native_check_source(n, &(ckpt_native_policy){.accept_landlock_loss = true}, NULL) >= 0) {
                /* Landlock was the only reason: say how to accept it. */
                char why[NM_ERROR_MSG_MAX];
                memcpy(why, err->msg, sizeof(why));
                nm_error_clear(err);
                nm_error_set(err, r, "%s: nucleus-migrate --accept-landlock-loss", why);
        }
        if (r < 0)
                return nm_error_prefix(err, "cannot move container %s", m->container_id), r;
        if (!n->own_mount_ns)
                return 0;
        mig_rec_set(m, "native", json_true());
        if (n->landlock == CKPT_LANDLOCK_ASSUMED) {
                /* check_source let it through: the operator accepted it. */
                n->landlock = CKPT_LANDLOCK_ACCEPTED_LOSS;
                mig_rec_set_str(m, "landlock", "accepted-loss");
                log_ctx_warning(m->id, "container %s moves without Landlock (--accept-landlock-loss)",
                                m->container_id);
        }
        n->tcp_established = m->tcp == CKPT_TCP_MOVE;
        n->file_locks = true;
        if (ckpt_native_to_json(n, &j) < 0 || json_object_set_new(md->json, "nm_native", j) < 0)
                return nm_error_set(err, -ENOMEM, "cannot describe container %s: out of memory",
                                    m->container_id);
        if (n->net == CKPT_NET_BRIDGE)
                mig_rec_set_str(m, "address", n->address);
        return 0;
}

static mig_act_result src_send_offer(mig *m, mig_event *ret) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_free_ char *text = NULL;
        agent *a = m->a;
        nm_error err = {};
        ckpt_capture_info info = {.criu_version = a->criu->version, .node_name = a->cfg.node};
        int r;

        if (ckpt_metadata_capture(m->ctr, &info, &md, &err) < 0) {
                nm_error_prefix(&err, "cannot describe container %s", m->container_id);
                return mig_act_failed(ret, SRC_EV(SRC_EV_OFFER_FAILED), &err);
        }
        r = m->ctr->bare ? 0 : src_describe_native(m, md, &err);
        if (r < 0)
                return mig_act_failed(
                        ret, SRC_EV(r == -EOPNOTSUPP ? SRC_EV_OFFER_REFUSED : SRC_EV_OFFER_FAILED), &err);
        if (ckpt_metadata_format(md, &text, &err) < 0) {
                nm_error_prefix(&err, "cannot describe container %s", m->container_id);
                return mig_act_failed(ret, SRC_EV(SRC_EV_OFFER_FAILED), &err);
        }
        if (src_check_lazy(m, &err) < 0 ||
            precheck_source(a, m->peer, peer_link_key_id(m->link), &err) < 0) {
                metrics_refusal(a, "source", err.code == -EBUSY ? "busy" : "precheck");
                return mig_act_failed(ret, SRC_EV(SRC_EV_OFFER_REFUSED), &err);
        }
        m->bytes_total = estimate_image_bytes(m->ctr);
        m->pages = src_wants_ps_stream(m) ? MIG_PAGES_STREAMING : MIG_PAGES_WITH_IMAGES;
        mig_src_lanes_choose(m);
        mig_rec_set(m, "ps_stream", json_boolean(m->pages == MIG_PAGES_STREAMING));
        size_t cpuinfo_len;
        const uint8_t *cpuinfo = precheck_cpuinfo(a, &cpuinfo_len);
        proto_msg offer = {.type = PROTO_MSG_OFFER,
                           .offer = {.mig = m->id,
                                     .container_id = m->container_id,
                                     .container_name = m->container_name ? m->container_name : "",
                                     .metadata = {(const uint8_t *)text, strlen(text)},
                                     .image_bytes = m->bytes_total,
                                     .criu_version = a->criu->version,
                                     .kernel = a->kernel,
                                     .lazy = m->src.postcopy != SRC_PC_OFF,
                                     .cpuinfo = {cpuinfo, cpuinfo_len},
                                     .ps_stream = m->pages == MIG_PAGES_STREAMING,
                                     .has_ps_stream = m->pages == MIG_PAGES_STREAMING,
                                     .lanes = mig_src_lanes_wanted(m),
                                     .has_lanes = mig_src_lanes_wanted(m) > 1}};
        mig_progress(m, "offering to the target");
        return src_send(m, &offer, ret);
}

/* ---- streaming ---- */

static void src_ps_drained(xfer_conn *c, void *ud);

static void src_on_progress(const xfer_progress *p, void *ud) {
        mig *m = ud;
        bool first_file = p->files > 0 && m->files_done == 0;
        m->bytes_done = p->bytes;
        m->files_done = p->files;
        if (p->total_bytes)
                m->bytes_total = p->total_bytes;
        m->files_total = p->total_files;
        m->rate = (uint64_t)p->rate;
        mig_progress(m, NULL);
        /* The fault tests' mid-stream point: a file is on its way, or
         * there, and the rest is not. */
        if (first_file)
                fault_point(m, "first-file-sent");
}

static void src_on_sent(xfer_send *x, int status, const nm_error *err, const xfer_send_result *res,
                        void *ud) {
        mig *m = ud;
        nm_error e = {};
        (void)x;
        src_stream_ended(m);
        if (status < 0) {
                if (!err || !err->code)
                        nm_error_set(&e, status, "sending the images failed");
                src_feed(m, SRC_EV_STREAM_FAILED, err && err->code ? err : &e);
                return;
        }
        m->t_streamed = now_usec();
        m->bytes_done = res->bytes;
        m->files_done = res->files;
        /* The page stream ends on its own (PS_END once CRIU's socket is
         * closed, which may come after these few images went): only one
         * that is over goes here. */
        if (ps_link_get_state(m->page_link) != PS_LINK_OPEN)
                m->page_link = ps_link_free(m->page_link);
        if (m->src.postcopy != SRC_PC_OFF && m->link && peer_link_conn(m->link))
                /* The connection's drain is free again: the relay takes it. */
                xfer_conn_set_drain(peer_link_conn(m->link), SRC_PS_LOW_WATER, src_ps_drained, m);
        log_ctx_info(
                m->id,
                "sent %llu files, %llu bytes (%llu on the wire; %llu chunks left untried by zstd) in %llu "
                "ms, tree HMAC %.16s...; waiting for the target to verify",
                (unsigned long long)res->files, (unsigned long long)res->bytes,
                (unsigned long long)res->wire_bytes, (unsigned long long)res->zstd_untried,
                (unsigned long long)((m->t_streamed - m->t_dumped) / 1000), res->hmac);
        src_feed(m, SRC_EV_STREAM_SENT, NULL);
}

/* The images are for this move only: its id, us, the target, the
 * container (IMAGES_DONE's binding). */
static int src_bind(void *ud, const char *tree_hex, char ret_hex[XFER_HMAC_HEX_MAX]) {
        mig *m = ud;
        return mig_binding(m, m->a->cfg.node, m->peer, tree_hex, ret_hex);
}

static mig_act_result src_start_stream(mig *m, mig_event *ret) {
        _cleanup_close_ int dfd = -EBADF;
        _cleanup_free_ char *signed_hmac = NULL;
        nm_error err = {};
        int r;

        dfd = open_dir_nofollow(m->images_dir);
        if (dfd < 0) {
                nm_error_errno(&err, dfd, "cannot open %s", m->images_dir);
                return mig_act_failed(ret, SRC_EV(SRC_EV_STREAM_FAILED), &err);
        }
        if (read_file_at(dfd, CKPT_HMAC_FILE, 256, &signed_hmac, NULL) >= 0)
                signed_hmac[strcspn(signed_hmac, " \n")] = '\0';
        xfer_conn *c = m->link ? peer_link_conn(m->link) : NULL;
        r = c ? 0 : nm_error_set(&err, -ENOTCONN, "the link to %s was lost before streaming", m->peer);
        if (r >= 0) {
                xfer_send_options so = {
                        .key = m->a->key,
                        .key_len = m->a->key_len,
                        .mig = m->id,
                        .progress = src_on_progress,
                        .progress_interval_ms = 500,
                        .binding = src_bind,
                };
                unsigned f = peer_link_features(m->link);
                so.zstd = m->a->cfg.compress && (f & PEER_FEATURE_ZSTD);
                so.file_mac = f & PEER_FEATURE_FILE_MAC;
                /* A signed tree's bytes must hash as they did when it was
                 * signed. Our own dumps are sealed, not signed (DESIGN.md
                 * "Sealed; signed where asked"): for them there is nothing
                 * to compare, and the target checks what we hash as we
                 * read. */
                so.expect_hmac = signed_hmac;
                r = xfer_send_dir(c, dfd, &so, src_on_sent, m, &err, &m->send);
        }
        if (r < 0)
                return mig_act_failed(ret, SRC_EV(SRC_EV_STREAM_FAILED), &err);
        /* Its share is set before it sends a byte: the send starts from the
         * loop. The page stream may have had it already. */
        xfer_send_set_rate(m->send, m->rate_limit);
        m->streaming = true;
        mig_share_bandwidth(m->a);
        return MIG_ACT_DONE;
}

/* ---- dump ---- */

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

static void src_pages_resume(mig *m);

static void src_pages_paced(uv_timer_t *t) {
        src_pages_resume(t->data);
}

/* A dump the node's bandwidth share holds back waits on the clock, not on
 * this machine's cores: a restore coming into this node, its container
 * frozen on its source, runs beside it instead of waiting for all of its
 * pages to leave. (This node's other dumps still wait: ckpt keeps them
 * from splitting the share.) One dump aside at a time; one that finds
 * another aside goes aside when that one ends. */
static void src_dump_step_aside(mig *m) {
        if (m->dump.state != CKPT_OP_RUNNING)
                return;
        int r = ckpt_dump_step_aside(&m->dump);
        if (r == 0)
                log_ctx_info(m->id, "the node's bandwidth share holds the dump back: a restore into this "
                                    "node runs beside it while its pages leave at that pace");
        else if (r != -EALREADY) /* said at the first refusal */
                log_ctx_debug(m->id, "the dump, held back by the bandwidth share, keeps its CRIU turn: %s",
                              r == -EBUSY ? "another dump runs aside; it steps aside when that one ends"
                                          : strerror(-r));
}

/* [limits] bandwidth paces the page stream as it does the image stream:
 * once what went outruns the migration's share, the dump waits (CRIU's
 * writes to its socket block) until the average fits again. */
static bool src_pages_pacing(mig *m) {
        uint64_t now, wait;

        if (!m->rate_limit)
                return false;
        if (uv_is_active((uv_handle_t *)&m->page_timer))
                return true;
        now = uv_now(m->a->loop);
        (void)xfer_pace_set(&m->page_avg, m->rate_limit, now, m->page_wire);
        wait = xfer_pace_wait_ms(&m->page_avg, now, m->page_wire);
        if (!wait)
                return false;
        (void)uv_timer_start(&m->page_timer, src_pages_paced, wait, 0);
        src_dump_step_aside(m);
        return true;
}

/* The dump goes on once the connection has room and the pace allows. */
static void src_pages_resume(mig *m) {
        if (!m->page_link || mig_src_lanes_queued_max(m) > SRC_PS_HIGH_WATER || src_pages_pacing(m))
                return;
        ps_link_pause(m->page_link, false);
}

/* Pages for the target's page server, tagged (feature "ps-stream"), and
 * compressed where it paid (ps_link_set_zstd). */
static void src_pages_frame(ps_link *l, const void *buf, size_t n, uint32_t size,
                            const uint8_t tag[static PS_MAC_LEN], void *ud) {
        mig *m = ud;
        xfer_conn *c = mig_src_deal(m);
        proto_msg d = {.type = PROTO_MSG_PS_PAGES,
                       .ps_pages = {.mig = m->id, .data = {buf, n}, .size = size, .has_size = size > 0}};
        _cleanup_free_ uint8_t *bent = NULL;

        memcpy(d.ps_pages.tag, tag, PS_MAC_LEN);
        /* The fault tests' bent frame: a byte flipped on its way, as a
         * broken or hostile link would (the tag is of the true bytes). */
        if (ps_link_frames_out(l) == 2 && fault_fail("ps-frame") && (bent = malloc(n))) {
                memcpy(bent, buf, n);
                bent[n / 2] ^= 0x01;
                d.ps_pages.data.ptr = bent;
        }
        if (!c || xfer_conn_send(c, &d, NULL) < 0)
                return; /* the link's end decides what happens to the dump */
        m->page_wire += d.ps_pages.data.len;
        if (m->pages_dealt == 16 && m->lanes_dealt > 1 && fault_fail("lane-lost"))
                mig_src_lane_cut(m, 1);
        /* The dump waits rather than the queue growing, or than the
         * stream outrunning its share of the bandwidth. */
        if (xfer_conn_queued(c) > SRC_PS_HIGH_WATER || src_pages_pacing(m))
                ps_link_pause(l, true);
}

static void src_pages_drained(xfer_conn *c, void *ud) {
        (void)c;
        src_pages_resume(ud);
}

/* The dump's CRIU closed its socket (and the dump has returned: our copy
 * of its end is closed then): the end, and whether the pages went at all. */
static void src_pages_end(ps_link *l, const uint8_t tag[static PS_MAC_LEN], void *ud) {
        mig *m = ud;
        xfer_conn *c = mig_src_deal(m);
        bool kept = m->dump.pages == CKPT_PAGES_HERE;
        proto_msg e = {.type = PROTO_MSG_PS_END, .ps_end = {.mig = m->id, .kept = kept}};

        memcpy(e.ps_end.tag, tag, PS_MAC_LEN);
        if (kept)
                log_ctx_info(m->id, "the dump kept the pages in its images (the tree was not held): they go "
                                    "with the images");
        else
                log_ctx_info(
                        m->id,
                        "sent %llu bytes of the page server's session while CRIU dumped (%llu frames, "
                        "%llu bytes as sent, tagged with %s, %llu left untried by zstd; the dump waited "
                        "on %llu replies)",
                        (unsigned long long)ps_link_bytes_out(l), (unsigned long long)ps_link_frames_out(l),
                        (unsigned long long)m->page_wire, ps_mac_alg_name(ps_link_mac(l)),
                        (unsigned long long)ps_link_frames_untried(l),
                        (unsigned long long)ps_link_replies_asked(l));
        if (c)
                (void)xfer_conn_send(c, &e, NULL);
        /* The lanes stay until the target ends them, once it took the end:
         * a session ended here takes its dial-stdio with it there, and with
         * it what the target has not read yet. */
}

static void src_pages_broken(ps_link *l, int status, const char *why, void *ud) {
        mig *m = ud;
        (void)l;
        log_ctx_warning(m->id, "the page stream broke (%s: %s): the dump is made to fail", why,
                        strerror(-status));
}

/* A reply the dump waits for is overdue: the target may still be taking
 * the pages queued before the request (a slow link); once nothing of ours
 * waits, or nothing of it moves, the target has had the request. */
static bool src_pages_overdue(ps_link *l, void *ud) {
        mig *m = ud;
        uint64_t taken = mig_src_lanes_written(m);
        bool moving = mig_src_lanes_queued_max(m) > 0 && taken != m->page_taken;
        (void)l;

        m->page_taken = taken;
        return moving;
}

static const ps_link_ops src_page_link_ops = {.frame = src_pages_frame,
                                              .end = src_pages_end,
                                              .broken = src_pages_broken,
                                              .overdue = src_pages_overdue};

static int src_pages_start(mig *m) {
        agent *a = m->a;
        ps_link_binding b = {.mig = m->id, .source = a->cfg.node, .target = m->peer};
        xfer_conn *c = m->link ? peer_link_conn(m->link) : NULL;
        int r;

        if (!c)
                return -ENOTCONN;
        b.mac = mig_pages_mac(peer_link_features(m->link));
        r = ps_link_new(a->loop, PS_LINK_SOURCE, a->key, a->key_len, &b, &src_page_link_ops, m, &m->ps_fd,
                        &m->page_link);
        if (r < 0)
                return r;
        /* A frame is at most what the link reads at once (256 KiB), far
         * below PROTO_DATA_MAX. */
        r = ps_link_set_zstd(m->page_link,
                             a->cfg.compress ? mig_pages_zstd(peer_link_features(m->link)) : PS_ZSTD_OFF,
                             XFER_ZSTD_LEVEL);
        if (r < 0)
                return r;
        /* A target that leaves the dump waiting for a reply gets as long as
         * a silent peer does, not CRIU's whole timeout. */
        ps_link_set_reply_timeout(m->page_link, (uint64_t)a->cfg.idle_timeout_s * 1000);
        m->page_taken = mig_src_lanes_written(m);
        xfer_conn_set_drain(c, SRC_PS_LOW_WATER, src_pages_drained, m);
        for (uint32_t i = 1; i < m->lanes_dealt; i++)
                if (mig_src_lane_conn(m, i))
                        xfer_conn_set_drain(mig_src_lane_conn(m, i), SRC_PS_LOW_WATER, src_pages_drained, m);
        /* The bulk of the bytes: it takes its share of [limits] bandwidth
         * from here, and keeps it for the image stream after. */
        m->streaming = true;
        mig_share_bandwidth(a);
        return 0;
}

static void src_dump_event(void *data, const char *event, uint64_t at_usec) {
        mig *m = data;
        if (strcmp(event, CKPT_EVENT_ASIDE_LATE) == 0) {
                log_ctx_info(m->id,
                             "the dump aside before this one has ended: this one gives up its CRIU "
                             "turn now, and %s may run beside it",
                             m->src.postcopy != SRC_PC_OFF ? "the node's other dumps and restores"
                                                           : "restores into this node");
                return;
        }
        if (strcmp(event, "pre-dump") == 0 && !m->t_frozen) {
                /* A dump that waited for its turn freezes only now. */
                m->t_frozen = at_usec;
                return;
        }
        if (strcmp(event, "post-dump") != 0 || m->src.postcopy == SRC_PC_OFF)
                return;
        /* CRIU flushed every image and now serves the lazy pages from the
         * frozen tasks until the target has them all; ckpt lets this node's
         * next dump or restore run beside it, once no other dump runs
         * aside. */
        log_ctx_info(m->id, "dumped everything but the lazy pages (frozen for %llu ms so far); %s",
                     (unsigned long long)((now_usec() - m->t_frozen) / 1000),
                     m->dump.state == CKPT_OP_ASIDE
                             ? "the dump gives up its CRIU turn while it serves them"
                             : "the dump keeps its CRIU turn while another dump runs aside, and gives it "
                               "up when that one ends");
        m->t_dumped = now_usec();
        m->bytes_total = 0;
        src_feed(m, SRC_EV_IMAGES_READY, NULL);
}

static void src_on_dumped(ckpt_dump_req *req, int status) {
        mig *m = req->data;
        bool lazy_ended = m->t_dumped && m->src.postcopy != SRC_PC_OFF;

        if (m->ps_fd >= 0)
                close(TAKE_FD(m->ps_fd));
        if (lazy_ended)
                m->relay = ps_relay_free(m->relay);
        if (status < 0 && !req->dumped) {
                /* CRIU's own words for a page stream we broke would be
                 * only that its page server went away. */
                char why[256] = "";
                if (ps_link_why(m->page_link)[0])
                        snprintf(why, sizeof(why),
                                 "the page stream broke: %s; CRIU: ", ps_link_why(m->page_link));
                /* No end for a page stream whose dump failed. */
                m->page_link = ps_link_free(m->page_link);
                src_stream_ended(m);
                if (!m->t_dumped)
                        m->t_dumped = now_usec();
                if (lazy_ended)
                        log_ctx_warning(m->id, "the lazy dump failed: %s", req->error.msg);
                if (req->outcome == CKPT_DUMP_FAILED_IMAGES) {
                        /* The tasks are gone but CRIU had completed (and ckpt
                         * signed) the images: they bring it back here. */
                        log_ctx_warning(m->id,
                                        "CRIU failed after its images were complete and the container's "
                                        "tasks are gone; restoring it here from them: %s",
                                        req->error.msg);
                        mig_feed_errorf(m, SRC_EV(SRC_EV_DUMP_FAILED_IMAGES), status, "dump failed: %s",
                                        req->error.msg);
                        return;
                }
                mig_feed_errorf(
                        m,
                        SRC_EV(req->source_running ? SRC_EV_DUMP_FAILED_RUNNING : SRC_EV_DUMP_FAILED_GONE),
                        status, "%s%s%s", lazy_ended ? "" : "dump failed: ", why, req->error.msg);
                return;
        }
        if (lazy_ended) {
                log_ctx_info(m->id, "the lazy dump served its last page");
                src_feed(m, SRC_EV_DUMP_OK, NULL);
                return;
        }
        if (status < 0)
                log_ctx_warning(m->id, "CRIU dumped the images but then failed: %s", req->error.msg);
        log_ctx_info(m->id, "dumped %llu bytes of images; frozen for %llu ms (%s)",
                     (unsigned long long)req->stats.image_bytes,
                     (unsigned long long)req->stats.frozen_usec / 1000, req->criu_path);
        if (req->hold_why[0])
                log_ctx_info(m->id,
                             "the dump ended the tree instead of holding it stopped until the commit: %s",
                             req->hold_why);
        m->t_dumped = now_usec();
        m->bytes_total = req->stats.image_bytes;
        /* Every page went before the dump returned (CRIU waits for the page
         * server's answer to its flush), but a paused link would never read
         * the socket's end, and so never send the end frame; the image
         * stream takes the connection's drain from here. */
        ps_link_pause(m->page_link, false);
        mig_feed(m, &(mig_event){.src = {.kind = SRC_EV_DUMP_OK, .held = req->stopped}});
}

/* Whether the dump leaves the tasks stopped until the commit ends them:
 * a rollback then only resumes them in place (milliseconds, and it cannot
 * fail on the way back), where a tree the dump ended must be restored from
 * its images. A native container always is: its supervisor must not see
 * it die before the commit. Another tree is, unless its copy needs what
 * the stopped original still holds on a target that shares this kernel
 * (its pids, a terminal's index, a file lock): ckpt/ looks right before
 * the freeze, on the pool. Not under post-copy: the lazy dump serves the
 * pages from the tasks. */
static ckpt_dump_hold src_dump_hold(const mig *m) {
        if (m->src.postcopy != SRC_PC_OFF)
                return CKPT_HOLD_END;
        if (json_is_true(json_object_get(m->rec, "native")))
                return CKPT_HOLD_ALWAYS;
        return CKPT_HOLD_IF_SAFE;
}

/* ckpt/ runs it once the CRIU work before it has ended. */
static void src_dump_start(mig *m) {
        agent *a = m->a;
        char work[PATH_MAX];
        int r;

        snprintf(work, sizeof(work), "%s/%s-dump", a->criu_work_dir, m->id);
        ckpt_dump_opts o = {
                .criu = {.criu = a->criu,
                         .work_dir = work,
                         .tcp = m->tcp,
                         .timeout_ms = a->cfg.criu_timeout_s * 1000ULL},
                .key = a->key,
                .key_len = a->key_len,
                .node_name = a->cfg.node,
                .hold = src_dump_hold(m),
                .policy = m->policy,
                /* What is signed stays: nothing changes the images before
                 * they are sent. */
                .seal = true,
        };
        m->dump.data = m;
        if (m->src.postcopy != SRC_PC_OFF) {
                r = ps_relay_new(a->loop, &src_ps_ops, m, &m->ps_fd, &m->relay);
                if (r < 0) {
                        mig_feed_errorf(m, SRC_EV(SRC_EV_DUMP_FAILED_RUNNING), r,
                                        "cannot set up the post-copy relay: %s", strerror(-r));
                        return;
                }
                o.lazy = true;
                o.lazy_ps_fd = m->ps_fd;
        } else if (m->pages == MIG_PAGES_STREAMING) {
                r = src_pages_start(m);
                if (r < 0) {
                        mig_feed_errorf(m, SRC_EV(SRC_EV_DUMP_FAILED_RUNNING), r,
                                        "cannot set up the page stream: %s", strerror(-r));
                        return;
                }
                o.pages = CKPT_PAGES_TO_SERVER;
                o.pages_ps_fd = m->ps_fd;
        }
        m->dump.event_cb = src_dump_event;
        m->t_frozen = now_usec();
        mig_progress(m, "dumping with CRIU");
        r = fault_fail("dump") ? nm_error_set(&m->dump.error, -EIO, "dump failed (fault injection)")
                               : ckpt_dump(a->loop, &m->dump, m->ctr, m->images_dir, &o, src_on_dumped);
        if (r < 0) {
                /* Nothing was touched: checks and captures come before CRIU. */
                mig_feed_errorf(m, SRC_EV(SRC_EV_DUMP_FAILED_RUNNING), r, "cannot dump: %s",
                                m->dump.error.msg);
                return;
        }
        mig_note_criu_turn(m, m->dump.state, "dump");
        if (m->dump.state == CKPT_OP_QUEUED)
                m->t_frozen = 0; /* the wait freezes nothing: CRIU's pre-dump sets it */
}

/* A dump still waiting for its turn never starts; its callback says so.
 * One that sends its pages to the target cannot end well without it: its
 * page stream is made to fail now, and CRIU lets the tasks run on. */
static void src_cancel_dump(mig *m) {
        ps_link_break(m->page_link);
        (void)ckpt_dump_cancel(&m->dump);
}

/* ---- rollback ---- */

static void src_on_rolled_back(ckpt_restore_req *req, int status) {
        mig *m = req->data;

        if (status < 0) {
                log_ctx_error(m->id, "rollback attempt %u failed: %s", m->src.rollback_failures + 1,
                              req->error.msg);
                src_feed(m, SRC_EV_ROLLBACK_FAILED, &req->error);
                return;
        }
        m->new_pid = req->pid;
        m->t_resumed = now_usec();
        log_ctx_info(m->id, "rolled back: container %s runs here again as pid %d", m->container_id,
                     (int)req->pid);
        src_feed(m, SRC_EV_ROLLBACK_OK, NULL);
}

static void src_start_rollback(mig *m, unsigned attempt) {
        agent *a = m->a;
        char work[PATH_MAX];
        int r;

        if (attempt == 0)
                mig_progress(m, "rolling back: restoring the container here");
        snprintf(work, sizeof(work), "%s/%s-rollback-%u", a->criu_work_dir, m->id, attempt);
        ckpt_restore_opts o = {
                .criu = {.criu = a->criu, .work_dir = work, .timeout_ms = a->cfg.criu_timeout_s * 1000ULL},
                .key = a->key,
                .key_len = a->key_len};
        ckpt_restore_req_done(&m->rollback);
        memset(&m->rollback, 0, sizeof(m->rollback));
        m->rollback.data = m;
        r = ckpt_restore(a->loop, &m->rollback, m->images_dir, &o, src_on_rolled_back);
        if (r < 0) {
                log_ctx_error(m->id, "rollback attempt %u failed: %s", m->src.rollback_failures + 1,
                              m->rollback.error.msg);
                src_feed(m, SRC_EV_ROLLBACK_FAILED, &m->rollback.error);
                return;
        }
        mig_note_criu_turn(m, m->rollback.state, "rollback's restore");
}

/* ---- the tasks the dump holds stopped ---- */

/* The dump's facts (its description, the tasks it found stopped), or,
 * after a restart, the same read from our images. */
static int src_hold_facts(mig *m, nm_error *err) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_close_ int dfd = -EBADF;
        int r;

        if (m->dump.native || !m->images_dir)
                return 0;
        dfd = open_dir_nofollow(m->images_dir);
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open %s", m->images_dir);
        r = ckpt_metadata_load(dfd, &md, err);
        if (r >= 0)
                r = ckpt_native_from_metadata(md, &m->dump.native, err);
        if (r >= 0 && m->dump.stopped_tasks.n == 0)
                /* Images CRIU did not complete name no stopped task: then
                 * none stays stopped. */
                (void)ckpt_stopped_tasks_load(m->images_dir, &m->dump.stopped_tasks, &(nm_error){});
        return r;
}

static int src_resume_work(mig *m, void *ud, nm_error *err) {
        (void)ud;
        int r = src_hold_facts(m, err);
        if (r < 0)
                return r;
        return ckpt_source_resume(m->dump.native, m->ctr->pid, m->ctr->start_ticks, &m->dump.stopped_tasks,
                                  err);
}

static void src_resume_done(mig *m, void *ud, int r, const nm_error *err) {
        (void)ud;
        if (r < 0) {
                log_ctx_error(m->id, "cannot resume the stopped tasks in place: %s", err->msg);
                src_feed(m, SRC_EV_RESUME_FAILED, err);
                return;
        }
        m->t_resumed = now_usec();
        m->new_pid = m->ctr->pid;
        log_ctx_info(m->id, "rolled back: container %s runs on in place as pid %d", m->container_id,
                     (int)m->ctr->pid);
        src_feed(m, SRC_EV_RESUMED, NULL);
}

/* Resumes the held tasks where they are: their cgroup, TCP sockets out of
 * repair mode, the network lock gone, SIGCONT (but for what was stopped
 * before the move). */
static void src_resume_held(mig *m) {
        nm_error err = {};

        mig_progress(m, "rolling back: the container resumes in place");
        if (!m->ctr) {
                nm_error_set(&err, -ESRCH, "the container's tasks are not known here");
                src_feed(m, SRC_EV_RESUME_FAILED, &err);
                return;
        }
        if (mig_work(m, src_resume_work, src_resume_done, NULL, NULL) < 0) {
                nm_error_set(&err, -ENOMEM, "cannot resume the stopped tasks: out of memory");
                src_feed(m, SRC_EV_RESUME_FAILED, &err);
        }
}

static int src_end_work(mig *m, void *ud, nm_error *err) {
        (void)ud;
        (void)src_hold_facts(m, &(nm_error){}); /* without them the tree still ends */
        return ckpt_source_end(m->dump.native, m->ctr->pid, m->ctr->start_ticks, err);
}

static void src_end_done(mig *m, void *ud, int r, const nm_error *err) {
        (void)ud;
        if (r < 0)
                log_ctx_error(m->id, "cannot end the stopped tasks of %s (pid %d): %s", m->container_id,
                              (int)m->ctr->pid, err->msg);
        else
                log_ctx_info(m->id, "ended the stopped tasks of %s here", m->container_id);
        mig_act_done(m, NULL);
}

/* The commit (or a resume that failed): the held tasks end here. Never a
 * failure for the list: after COMMITTED we only go forward, and a tree
 * that cannot be killed stays stopped, never runs. */
static mig_act_result src_end_held(mig *m) {
        if (!m->ctr)
                return MIG_ACT_DONE;
        if (mig_work(m, src_end_work, src_end_done, NULL, NULL) < 0) {
                nm_error err = {};
                if (ckpt_source_end(m->dump.native, m->ctr->pid, m->ctr->start_ticks, &err) < 0)
                        log_ctx_error(m->id, "cannot end the stopped tasks: %s", err.msg);
                return MIG_ACT_DONE;
        }
        return MIG_ACT_WAIT;
}

/* ---- post-copy ---- */

/* Ends the page server so that CRIU lets the tasks run again here: before
 * COMMITTED, that is the rollback of a post-copy move. */
static void src_resume_in_place(mig *m) {
        mig_progress(m, "rolling back: the container resumes here");
        log_ctx_info(m->id, "making the lazy dump fail so that the container resumes here");
        ps_relay_poison(m->relay);
        m->relay = ps_relay_free(m->relay);
}

/* CRIU let the frozen tasks run on; only the network lock is left. */
static void src_unlock_network(mig *m) {
        nm_error err = {};

        if (m->ctr && ckpt_lazy_unlock_network(m->ctr->pid, &err) < 0)
                log_ctx_warning(m->id, "%s", err.msg);
        else
                log_ctx_info(m->id, "removed CRIU's network lock of pid %d", m->ctr ? (int)m->ctr->pid : 0);
        m->t_resumed = now_usec();
        m->new_pid = m->ctr ? m->ctr->pid : 0;
        log_ctx_info(m->id,
                     "rolled back: the container runs here again as pid %d (it never stopped being it)",
                     (int)m->new_pid);
}

/* ---- the end ---- */

static void src_write_state(mig *m) {
        nm_error err = {};
        if (m->ctr && !m->ctr->bare &&
            ckpt_state_write_restored(m->a->cfg.state_dir, m->ctr, m->rollback.pid, m->rollback.start_ticks,
                                      &err) < 0)
                log_ctx_error(m->id, "restored as pid %d but cannot rewrite its state file: %s",
                              (int)m->rollback.pid, err.msg);
}

/* The container runs on the target: it is no longer ours. */
static void src_remove_state(mig *m) {
        nm_error err = {};

        m->t_resumed = now_usec();
        m->t_restored = m->t_restored ? m->t_restored : m->t_resumed;
        if (m->container_id && !(m->ctr && m->ctr->bare) &&
            ckpt_state_remove(m->a->cfg.state_dir, m->container_id, &err) < 0)
                log_ctx_warning(m->id, "cannot remove our state file: %s", err.msg);
        log_ctx_info(m->id, "container %s runs on %s as pid %d", m->container_id, m->peer, (int)m->new_pid);
}

/* Committed, not confirmed: tell the operator now, and why; we keep trying
 * in the background. */
static void src_report_in_doubt(mig *m) {
        json_t *doc = mig_result_doc(m);

        if (!m->err.code && m->doubt.code)
                json_object_set_new(doc, "error",
                                    json_sprintf("%s has not confirmed that the container runs there: %s",
                                                 m->peer, m->doubt.msg));
        mig_answer(m, doc);
        json_decref(doc);
}

static void src_note(mig *m, src_why why) {
        const nm_error *e = &m->cur.err;

        switch (why) {
        case SRC_WHY_EVENT:
                if (e->code)
                        mig_fail_reason(m, e->code, "%s", e->msg);
                else
                        mig_fail_reason(m, -EIO, "migration to %s failed", strna(m->peer));
                return;
        case SRC_WHY_TARGET_GONE_IN_DUMP:
                mig_fail_reason(m, -ECONNRESET, "lost the target %s during the dump", m->peer);
                return;
        case SRC_WHY_LAZY_ENDED_EARLY:
                mig_fail_reason(m, -EIO, "the lazy dump ended before COMMITTED; the container is lost");
                return;
        case SRC_WHY_POSTCOPY_AFTER_COMMIT:
                mig_fail_reason(m, e->code, "post-copy failed after COMMITTED: %s", e->msg);
                return;
        case SRC_WHY_POSTCOPY_SERVED:
                mig_fail_reason(m, -EIO, "post-copy failed after the last page was served: %s",
                                m->err.code ? m->err.msg : "no copy left here");
                return;
        case SRC_WHY_POSTCOPY_UNDOABLE:
                mig_fail_reason(m, e->code, "%s; post-copy cannot be undone: the container is lost", e->msg);
                return;
        case SRC_WHY_ROLLBACK_EXHAUSTED:
                mig_fail_reason(m, e->code, "rollback failed %u times (last: %s); images kept in %s",
                                SRC_ROLLBACK_ATTEMPTS, e->msg, m->images_dir);
                return;
        case SRC_WHY_STOPPED_BEFORE_DUMP:
                /* Journaled `precheck` or `dumping`, and the tree runs:
                 * CRIU never started, or its keeper killed it with us. */
                mig_fail_reason(
                        m, -EINTR,
                        "the agent stopped before its dump completed (phase %s); the container runs on here",
                        m->journaled);
                return;
        case SRC_WHY_STOPPED_DURING_MOVE:
                mig_fail_reason(m, -EINTR, "the agent stopped during the move (phase %s); rolling back",
                                m->journaled);
                return;
        case SRC_WHY_ANSWERED_ABORTED:
                mig_fail_reason(m, -ECONNRESET, "migration to %s failed (%s)", strna(m->peer),
                                strerror(ECONNRESET));
                return;
        case _SRC_WHY_MAX:
        case _SRC_WHY_INVALID: break;
        }
}

/* ---- the runner's side ---- */

static handoff_verdict src_ops_step(mig *m, const mig_event *ev) {
        src_state next;
        handoff_verdict v = src_step(&m->src, &ev->src, &next, &m->src_acts);

        if (v == HANDOFF_REFUSED)
                log_ctx_warning(m->id, "source: %s cannot happen in phase %s; ignored",
                                src_event_to_string(ev->src.kind), src_phase_to_string(m->src.phase));
        else
                log_ctx_debug(m->id, "source: %s in phase %s: %s, %zu action(s), now %s",
                              src_event_to_string(ev->src.kind), src_phase_to_string(m->src.phase),
                              handoff_verdict_to_string(v), m->src_acts.n, src_phase_to_string(next.phase));
        m->src = next;
        m->n_acts = m->src_acts.n;
        return v;
}

static mig_act_result src_perform(mig *m, size_t i, mig_event *ret) {
        const src_action *a = &m->src_acts.v[i];

        switch (a->kind) {
        case SRC_DO_NOTE_FAILURE: src_note(m, a->why); return MIG_ACT_DONE;
        case SRC_DO_JOURNAL:
                return mig_journal(m, src_phase_to_string(a->phase),
                                   &(mig_event){.src = {.kind = SRC_EV_JOURNAL_FAILED}}, ret);
        case SRC_DO_OPEN_LINK: return src_open_link(m, ret);
        case SRC_DO_CLOSE_LINK: src_close_link(m); return MIG_ACT_DONE;
        case SRC_DO_SEND_OFFER: return src_send_offer(m, ret);
        case SRC_DO_SEND_ABORT: src_send_abort(m); return MIG_ACT_DONE;
        case SRC_DO_SEND_RESTORE:
                mig_progress(m, "the target verified every byte; restoring there");
                return src_send(m, &(proto_msg){.type = PROTO_MSG_RESTORE, .restore = {.mig = m->id}}, ret);
        case SRC_DO_SEND_COMMIT:
                if (!m->t_commit)
                        m->t_commit = now_usec();
                return src_send(m, &(proto_msg){.type = PROTO_MSG_COMMIT, .commit = {.mig = m->id}}, ret);
        case SRC_DO_START_DUMP: src_dump_start(m); return MIG_ACT_DONE;
        case SRC_DO_CANCEL_DUMP: src_cancel_dump(m); return MIG_ACT_DONE;
        case SRC_DO_START_STREAM: return src_start_stream(m, ret);
        case SRC_DO_START_ROLLBACK: src_start_rollback(m, a->attempt); return MIG_ACT_DONE;
        case SRC_DO_ROLLBACK_LATER:
                uv_timer_start(&m->timer, src_on_timer, a->delay_ms, 0);
                return MIG_ACT_DONE;
        case SRC_DO_RECONNECT_LATER:
                log_ctx_warning(m->id, "committed, but %s has not confirmed RUNNING yet: retrying in %u ms",
                                m->peer, a->delay_ms);
                uv_timer_start(&m->timer, src_on_timer, a->delay_ms, 0);
                return MIG_ACT_DONE;
        case SRC_DO_REPORT_IN_DOUBT: src_report_in_doubt(m); return MIG_ACT_DONE;
        case SRC_DO_RESUME_IN_PLACE: src_resume_in_place(m); return MIG_ACT_DONE;
        case SRC_DO_DROP_RELAY: m->relay = ps_relay_free(m->relay); return MIG_ACT_DONE;
        case SRC_DO_UNLOCK_NETWORK: src_unlock_network(m); return MIG_ACT_DONE;
        case SRC_DO_KILL_COPY:
                if (!m->ctr)
                        return MIG_ACT_DONE;
                return mig_kill_tree(m, m->ctr->pid, m->ctr->start_ticks, "the copy CRIU resumed here");
        case SRC_DO_RESUME_HELD: src_resume_held(m); return MIG_ACT_DONE;
        case SRC_DO_END_HELD: return src_end_held(m);
        case SRC_DO_WRITE_STATE: src_write_state(m); return MIG_ACT_DONE;
        case SRC_DO_REMOVE_STATE: src_remove_state(m); return MIG_ACT_DONE;
        case SRC_DO_REMOVE_IMAGES: return m->images_dir ? mig_remove_dir(m, m->images_dir) : MIG_ACT_DONE;
        case SRC_DO_ANSWER: m->answer = a->outcome; return MIG_ACT_DONE;
        case SRC_DO_FINISH: mig_finish(m); return MIG_ACT_DONE;
        case _SRC_ACTION_MAX:
        case _SRC_ACTION_INVALID: break;
        }
        return MIG_ACT_DONE;
}

static const mig_role_ops src_ops = {.step = src_ops_step, .perform = src_perform};

/* ---- messages from the target ---- */

static void src_link_ready(peer_link *l, void *ud) {
        (void)l;
        src_feed(ud, SRC_EV_LINK_READY, NULL);
}

static void src_link_message(peer_link *l, const proto_msg *msg, void *ud) {
        mig *m = ud;
        const char *mig_id = proto_msg_mig(msg);
        (void)l;

        if (mig_id && strcmp(mig_id, m->id) != 0)
                return;
        switch ((int)msg->type) { /* most types are invalid here: default handles them */
        case PROTO_MSG_ACCEPT:
                if (!mig_src_lanes_dial(m, &msg->accept))
                        src_feed(m, SRC_EV_ACCEPT, NULL);
                return;
        case PROTO_MSG_REJECT:
                metrics_refusal(m->a, "source", strna(proto_reject_code_to_string(msg->reject.code)));
                mig_feed_errorf(m, SRC_EV(SRC_EV_REJECT), -EPERM, "%s refused: %s (%s)", m->peer,
                                msg->reject.reason, strna(proto_reject_code_to_string(msg->reject.code)));
                return;
        case PROTO_MSG_VERIFIED:
                /* Worded for the case it comes out of turn. */
                mig_feed_errorf(m, SRC_EV(SRC_EV_VERIFIED), -EPROTO, "%s sent: VERIFIED", m->peer);
                return;
        case PROTO_MSG_RESTORED:
                fault_point(m, "got-restored");
                m->t_restored = now_usec();
                m->new_pid = (pid_t)msg->restored.pid;
                mig_rec_set_int(m, "dest_pid", m->new_pid);
                src_feed(m, SRC_EV_RESTORED, NULL);
                return;
        case PROTO_MSG_RUNNING:
                m->new_pid = (pid_t)msg->running.pid;
                src_feed(m, SRC_EV_RUNNING, NULL);
                return;
        case PROTO_MSG_PS_DATA:
                if (m->relay)
                        (void)ps_relay_write(m->relay, msg->ps_data.data.ptr, msg->ps_data.data.len);
                return;
        case PROTO_MSG_PS_PAGES:
                /* The target's page server answering our dump. */
                if (m->page_link &&
                    ps_link_feed(m->page_link, msg->ps_pages.data.ptr, msg->ps_pages.data.len,
                                 msg->ps_pages.has_size ? msg->ps_pages.size : 0, msg->ps_pages.tag) < 0)
                        log_ctx_warning(
                                m->id,
                                "a reply of %s's page server failed its check: the dump is made to fail",
                                m->peer);
                return;
        case PROTO_MSG_ABORT:
                mig_feed_errorf(m, SRC_EV(SRC_EV_PEER_ABORT), -ECONNABORTED, "%s aborted: %s", m->peer,
                                msg->abort.reason);
                return;
        case PROTO_MSG_ERROR: {
                mig_event ev = {.src = {.kind = SRC_EV_PEER_ERROR, .code = msg->error.code}};
                nm_error_set(&ev.err, msg->error.code < 0 ? msg->error.code : -EIO,
                             "%s reported an error: %s", m->peer, msg->error.reason);
                mig_feed(m, &ev);
                return;
        }
        default: break;
        }
        mig_feed_errorf(m, SRC_EV(SRC_EV_PEER_UNEXPECTED), -EPROTO, "%s sent: %s", m->peer,
                        strna(proto_msg_type_to_string(msg->type)));
}

static void src_link_closed(peer_link *l, int status, const nm_error *err, void *ud) {
        mig *m = ud;
        nm_error e = {};
        (void)l;

        m->link = NULL;
        if (!err || !err->code) {
                nm_error_set(&e, status ? status : -ECONNRESET, "the link to %s closed", m->peer);
                err = &e;
        }
        /* The sender must be stopped before the connection goes. */
        if (m->send)
                xfer_send_abort(m->send, err->code, err);
        m->doubt = *err;
        if (m->src.phase == SRC_COMMITTED)
                log_ctx_warning(m->id, "link to %s lost after COMMITTED: %s", m->peer, err->msg);
        src_feed(m, SRC_EV_LINK_LOST, err);
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

/* The move's --lanes, else [ssh] lanes (0: auto, chosen at the OFFER
 * from the size and the cores). */
static int src_lanes_of(agent *a, const proto_migrate *req, uint32_t *ret, nm_error *err) {
        const proto_opt *o = proto_opts_get(&req->opts, "lanes");

        *ret = a->cfg.lanes;
        if (!o)
                return 0;
        if (o->kind != PROTO_OPT_UINT || o->u < 1 || o->u > PROTO_LANES_MAX)
                return nm_error_set(err, -EINVAL, "--lanes wants 1 to %u", PROTO_LANES_MAX);
        *ret = (uint32_t)o->u;
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

int mig_src_start(agent *a, const proto_migrate *req, const mig_watch_ops *watch, void *ud,
                  char ret_id[PROTO_ID_MAX + 1], nm_error *err) {
        ckpt_container *c = NULL;
        const agent_peer *p = NULL;
        const proto_opt *lazy;
        ckpt_tcp_mode tcp = CKPT_TCP_CLOSE;
        uint32_t lanes = 1;
        char id[33], path[PATH_MAX];
        mig *m;
        int r;

        r = src_prepare(a, req, &c, &p, err);
        if (r >= 0)
                r = src_tcp_mode(a, req, c, &tcp, err);
        if (r >= 0)
                r = src_lanes_of(a, req, &lanes, err);
        if (r < 0) {
                ckpt_container_free(c);
                return r;
        }
        agent_new_id(id);
        m = mig_new(a, MIG_ROLE_SOURCE, id, &src_ops);
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
        m->src = src_state_new(lazy && lazy->kind == PROTO_OPT_BOOL && lazy->b);
        m->tcp = tcp;
        m->lanes_wanted = lanes;
        const proto_opt *ll = proto_opts_get(&req->opts, "accept_landlock_loss");
        m->policy.accept_landlock_loss = ll && ll->kind == PROTO_OPT_BOOL && ll->b;
        if (watch)
                (void)mig_watch_add(m, watch, ud);
        mig_rec_set_str(m, "container_id", c->id);
        mig_rec_set_str(m, "container_name", c->name);
        mig_rec_set_int(m, "pid", c->pid);
        mig_rec_set_int(m, "start_ticks", (int64_t)c->start_ticks);
        mig_rec_set(m, "bare", json_boolean(c->bare));
        mig_rec_set_str(m, "peer", p->name);
        mig_rec_set_str(m, "images_dir", m->images_dir);
        mig_rec_set_str(m, "tcp", ckpt_tcp_mode_to_string(tcp));
        mig_rec_set_int(m, "lanes", lanes);
        mig_rec_set(m, "accept_landlock_loss", json_boolean(m->policy.accept_landlock_loss));
        log_ctx_info(id, "moving container %s (%s, pid %d) to %s; established TCP connections: %s", c->id,
                     strna(c->name), (int)c->pid, p->name, ckpt_tcp_mode_to_string(tcp));
        snprintf(ret_id, PROTO_ID_MAX + 1, "%s", id);
        src_feed(m, SRC_EV_START, NULL);
        return 0;
}

/* ---- the answer to a destination holding a stopped copy ---- */

static proto_outcome proto_outcome_of(handoff_outcome o) {
        switch (o) {
        case HANDOFF_OUTCOME_COMMITTED: return PROTO_OUTCOME_COMMITTED;
        case HANDOFF_OUTCOME_ABORTED: return PROTO_OUTCOME_ABORTED;
        case HANDOFF_OUTCOME_UNKNOWN:
        case _HANDOFF_OUTCOME_MAX:
        case _HANDOFF_OUTCOME_INVALID: break;
        }
        return PROTO_OUTCOME_UNKNOWN;
}

/* An active migration answers through its core (which may roll it back to
 * make "aborted" true); busy carrying out a step, it cannot be stepped, and
 * the core's answer for that ("ask again") changes nothing. */
static handoff_outcome src_query(mig *m) {
        mig_event ev = {.src = {.kind = SRC_EV_QUERY, .settled = m->run == MIG_RUN_IDLE}};
        src_state ignored;
        src_actions acts;

        if (!ev.src.settled) {
                (void)src_step(&m->src, &ev.src, &ignored, &acts);
                return acts.n > 0 && acts.v[0].kind == SRC_DO_ANSWER ? acts.v[0].outcome
                                                                     : HANDOFF_OUTCOME_UNKNOWN;
        }
        m->answer = HANDOFF_OUTCOME_UNKNOWN;
        mig_feed(m, &ev);
        return m->answer;
}

/* The answer to QUERY, once the asker is known to be the target. */
static proto_outcome src_outcome(agent *a, mig *m, json_t *archived) {
        if (m && !m->finished)
                return proto_outcome_of(src_query(m));
        /* Over, its record not in done/ yet: its phase is final already. */
        if (m)
                return proto_outcome_of(src_outcome_of(m->src.phase));
        (void)a;
        return proto_outcome_of(src_outcome_of(
                src_phase_from_string(json_string_value(json_object_get(archived, "phase")))));
}

/* Our source migration id: active, being archived, or finished (its
 * summary in *ret_rec, a new reference). */
static mig *src_lookup(agent *a, const char *id, json_t **ret_rec) {
        mig *m = mig_find(a, id);
        const json_t *rec = a->history ? history_get(a->history, id) : NULL;

        *ret_rec = NULL;
        if (!m)
                m = mig_find_archiving(a, id);
        if (m)
                return m->role == MIG_ROLE_SOURCE ? m : NULL;
        if (rec && mig_role_from_string(json_string_value(json_object_get(rec, "role"))) == MIG_ROLE_SOURCE)
                *ret_rec = json_incref((json_t *)rec);
        return NULL;
}

bool mig_src_answer(ctl_conn *cc, const char *id, proto_outcome *ret) {
        json_t *rec = NULL;
        mig *m = src_lookup(cc->a, id, &rec);

        *ret = PROTO_OUTCOME_UNKNOWN;
        /* Only the target asks: anyone else's question changes nothing, and
         * hears nothing about the move. */
        if ((m || rec) && !mig_admits(cc, MIG_ROLE_SOURCE, id,
                                      m ? m->peer : json_string_value(json_object_get(rec, "peer")), NULL,
                                      HANDOFF_MSG_QUERY)) {
                json_decref(rec);
                return false;
        }
        if (m || rec)
                *ret = src_outcome(cc->a, m, rec);
        json_decref(rec);
        return true;
}

void mig_src_query(ctl_conn *cc, const char *id) {
        proto_msg r = {.type = PROTO_MSG_OUTCOME, .outcome = {.mig = id, .outcome = PROTO_OUTCOME_UNKNOWN}};

        if (mig_src_answer(cc, id, &r.outcome.outcome))
                (void)ctl_send(cc, &r);
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

static char *rec_strdup(const mig *m, const char *key) {
        const char *v = mig_rec_str(m, key);
        return v ? strdup(v) : NULL;
}

int mig_src_recover(agent *a, json_t *rec, src_tree tree, nm_error *err) {
        const char *id = json_string_value(json_object_get(rec, "mig"));
        src_phase phase = src_phase_from_string(json_string_value(json_object_get(rec, "phase")));
        mig_recovery action = src_recovery_for(phase, tree);
        mig *m;

        if (action < 0)
                return nm_error_set(err, -EBADMSG, "migration %s: no source recovery for phase %s",
                                    strna(id), strna(src_phase_to_string(phase)));
        m = mig_new(a, MIG_ROLE_SOURCE, id, &src_ops);
        if (!m)
                return nm_error_set(err, -ENOMEM, "out of memory");
        json_decref(m->rec);
        m->rec = json_incref(rec);
        m->src = src_state_from_journal(phase);
        snprintf(m->journaled, sizeof(m->journaled), "%s", src_phase_to_string(phase));
        m->container_id = rec_strdup(m, "container_id");
        m->container_name = rec_strdup(m, "container_name");
        m->peer = rec_strdup(m, "peer");
        m->images_dir = rec_strdup(m, "images_dir");
        log_ctx_info(id, "recovering source migration of %s to %s from phase %s: %s", strna(m->container_id),
                     strna(m->peer), src_phase_to_string(phase), mig_recovery_to_string(action));
        if (action == MIG_RECOVER_ROLLBACK || action == MIG_RECOVER_FORWARD ||
            action == MIG_RECOVER_RESUME) {
                /* The state file to rewrite after a rollback, or to remove
                 * once the target runs it; the tasks to resume or end. */
                nm_error e = {};
                if (src_load_container(m, &e) < 0 && action != MIG_RECOVER_FORWARD)
                        log_ctx_warning(id, "cannot read the container from its images: %s", e.msg);
        }
        if (phase == SRC_DUMPING && tree == SRC_TREE_RUNNING) {
                /* The dump died with the agent (its keeper killed CRIU):
                 * CRIU's lock on the container's network may be left. */
                nm_error e = {};
                pid_t pid = (pid_t)json_integer_value(json_object_get(rec, "pid"));
                int r = pid > 0 ? ckpt_unlock_network_left(pid, &e) : 0;
                if (r < 0)
                        log_ctx_warning(id, "%s", e.msg);
                else if (r > 0)
                        log_ctx_info(id, "removed the network lock CRIU left in the container's namespace");
        }
        mig_feed(m, &(mig_event){.src = {.kind = SRC_EV_RECOVER, .tree = tree}});
        return 0;
}
