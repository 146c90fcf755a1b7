/* SPDX-License-Identifier: Apache-2.0 */
/* The destination side of a migration: the adapter between the
 * destination's rules (core/handoff-dst.h) and the world. Messages from the
 * source, the image sink, CRIU and the journal become events for the core;
 * each action it returns becomes I/O here. Nothing here decides the
 * handoff. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs-util.h"
#include "keeper.h"
#include "log.h"
#include "macro.h"
#include "metrics.h"
#include "mig-dst-lanes.h"
#include "mig.h"
#include "offer-check.h"
#include "precheck.h"

static const mig_role_ops dst_ops;
static const peer_link_ops ask_ops;

/* ---- events ---- */

/* This role's event of this kind, for mig_feed_err, mig_feed_errorf and
 * mig_act_failed. */
#define DST_EV(k) (&(mig_event){.dst = {.kind = (k)}})

static void dst_feed(mig *m, dst_event_kind kind, const nm_error *err) {
        mig_feed_err(m, DST_EV(kind), err);
}

static void dst_on_timer(uv_timer_t *t) {
        dst_feed(t->data, DST_EV_TIMER, NULL);
}

static void dst_send_error(mig *m, int code, const char *reason);

/* After VERIFIED the source owes RESTORE, which an honest one sends at
 * once. One that keeps its session alive (PINGs) but never sends it would
 * hold our staging and a slot for as long as the session lasts: past the
 * idle timeout the session is dropped, as if lost, and the move discarded. */
static void dst_restore_overdue(uv_timer_t *t) {
        mig *m = t->data;
        char why[200];
        nm_error err = {};

        if (m->finished || m->dst.phase != DST_VERIFIED || !m->peer_cc || !m->peer_cc->conn)
                return;
        snprintf(why, sizeof(why), "%s sent no RESTORE within %u s of our VERIFIED: dropping its session",
                 m->peer, m->a->cfg.idle_timeout_s);
        log_ctx_warning(m->id, "%s", why);
        dst_send_error(m, -ETIMEDOUT, why);
        nm_error_set(&err, -ETIMEDOUT, "%s", why);
        xfer_conn_close(m->peer_cc->conn, 0, &err);
}

/* ---- the source's session ---- */

/* Answers go to the session that asked (COMMIT may come on a new one after
 * a lost link), else to the one the migration came on. */
static ctl_conn *dst_to(mig *m) {
        return m->reply_cc ? m->reply_cc : m->peer_cc;
}

static void dst_send(mig *m, const proto_msg *msg) {
        ctl_conn *cc = dst_to(m);
        if (cc)
                (void)ctl_send(cc, msg);
}

static void dst_send_error(mig *m, int code, const char *reason) {
        proto_msg e = {.type = PROTO_MSG_ERROR,
                       .error = {.mig = m->id, .code = code < 0 ? code : -EIO, .reason = reason}};
        dst_send(m, &e);
}

/* The session's further frames wait in its socket until our consumer
 * caught up (dst_session_take). */
static void dst_session_hold(mig *m) {
        if (!m->peer_cc || !m->peer_cc->conn)
                return;
        m->session_read = MIG_SESSION_HELD;
        mig_dst_lanes_read(m);
}

static void dst_session_release(mig *m) {
        mig_session_read was = m->session_read;

        /* Noted first: reading on may deliver frames at once, and one of
         * them may hold the session again before this returns. */
        m->session_read = MIG_SESSION_READING;
        if (was == MIG_SESSION_HELD)
                mig_dst_lanes_read(m);
}

/* A session the migration no longer reads from is read on: a held one
 * would never hear its peer's end (a held connection has no idle timeout),
 * and would stay, with its sshd and dial-stdio, until the agent's end. */
static void dst_detach_conn(mig *m) {
        mig_dst_lanes_end(m, 1);
        dst_session_release(m);
        if (m->peer_cc && m->peer_cc->dest == m)
                m->peer_cc->dest = NULL;
        m->peer_cc = NULL;
}

static void dst_staging_maybe_complete(mig *m);

/* The session waited while a relay to our CRIU had PS_RELAY_HIGH queued,
 * or the staging writes fell behind: read on once none of them is full. */
static void dst_session_take(mig *m) {
        if ((m->relay && ps_relay_full(m->relay)) || (m->page_link && ps_link_full(m->page_link)) ||
            (m->recv && xfer_recv_full(m->recv)))
                return;
        dst_session_release(m);
}

static void dst_recv_drained(void *userdata) {
        mig *m = userdata;
        log_ctx_debug(m->id, "the writes into staging caught up: reading the session on");
        dst_session_take(m);
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

/* Destination migrations in flight that PEER offered. */
static unsigned dst_peer_in_flight(agent *a, const char *peer) {
        unsigned n = 0;
        mig *m;
        LIST_FOREACH(migs, m, a->migs)
        n += !m->finished && m->role == MIG_ROLE_DEST && m->peer && strcmp(m->peer, peer) == 0;
        return n;
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
        /* One peer's share of the slots: a holder of one node's key cannot
         * keep every other node's moves out. */
        if (a->cfg.peer_parallel && dst_peer_in_flight(a, cc->peer_node) >= a->cfg.peer_parallel)
                return *ret_code = PROTO_REJECT_BUSY,
                       snprintf(why, n,
                                "%s already holds %u migration(s) from %s, its share (limits.peer_parallel)",
                                a->cfg.node, a->cfg.peer_parallel, cc->peer_node),
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
        /* Checked at IMAGES_DONE anyway; refused here, an older source
         * is told before it freezes anything, not after it streamed. */
        if (!(cc->features & PEER_FEATURE_BINDING))
                return *ret_code = PROTO_REJECT_INCOMPATIBLE,
                       snprintf(why, n,
                                "%s does not bind its image sets to their migration (HELLO lists no "
                                "\"binding\": "
                                "an older nucleus-migrate); upgrade it to move containers to %s",
                                cc->peer_node, a->cfg.node),
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
        /* Its pages come as PS_PAGES, checked against the tags of a source
         * that listed "ps-stream"; never beside post-copy's PS_DATA. */
        if (o->ps_stream && (!(cc->features & PEER_FEATURE_PS_STREAM) || o->lazy))
                return *ret_code = PROTO_REJECT_INCOMPATIBLE,
                       snprintf(why, n,
                                o->lazy ? "pages streamed during the dump offered with post-copy"
                                        : "pages streamed during the dump offered, but the source did not "
                                          "announce \"ps-stream\" in its HELLO"),
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

/* ---- a native container: this node's side, before ACCEPT ---- */

/* [agent] cgroup_root (or $NUCLEUS_CGROUP_ROOT), else the parent of the
 * source's cgroup (nodes set up alike have the same); NULL: no cgroup. */
static int native_cgroup_root(agent *a, const ckpt_metadata *md, char **ret) {
        const char *slash;

        *ret = NULL;
        if (!md->cgroup_path)
                return 0;
        if (a->cfg.cgroup_root)
                *ret = strdup(a->cfg.cgroup_root);
        else if ((slash = strrchr(md->cgroup_path, '/')) && slash != md->cgroup_path)
                *ret = strndup(md->cgroup_path, (size_t)(slash - md->cgroup_path));
        else
                return 0;
        return *ret ? 0 : -ENOMEM;
}

static proto_reject_code native_reject_code(int r) {
        switch (r) {
        case -EADDRINUSE:
        case -EEXIST: return PROTO_REJECT_EXISTS;
        case -ENOMEM: return PROTO_REJECT_NO_SPACE;
        default: return PROTO_REJECT_INCOMPATIBLE;
        }
}

/* The container of nucleus's native runtime that o describes (its
 * metadata's nm_native, with a mount namespace of its own): 1 and both set,
 * or 0 for any other container. Metadata that does not parse describes
 * none: the images' own metadata is checked once they are in (an
 * nm_native there that the offer did not carry is refused then). */
static int dst_native_offered(const proto_offer *o, ckpt_metadata **ret_md, ckpt_native **ret_native,
                              nm_error *err) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_(ckpt_native_freep) ckpt_native *nat = NULL;
        nm_error unparsed = {};
        int r;

        if (ckpt_metadata_parse((const char *)o->metadata.ptr, o->metadata.len, &md, &unparsed) < 0 ||
            strcmp(md->container_id, o->container_id) != 0)
                return 0;
        r = ckpt_native_from_metadata(md, &nat, err);
        if (r < 0)
                return r;
        if (!nat || !nat->own_mount_ns)
                return 0;
        *ret_md = TAKE_PTR(md);
        *ret_native = TAKE_PTR(nat);
        return 1;
}

/* The native container o describes when it publishes ports, whose check
 * runs iptables (on the thread pool); NULL when there is none to check. */
static ckpt_native *dst_ports_to_check(const proto_offer *o) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        ckpt_native *nat = NULL;
        nm_error err = {};

        if (dst_native_offered(o, &md, &nat, &err) <= 0)
                return NULL; /* a bad description is refused with its reason later */
        if (nat->net == CKPT_NET_BRIDGE && nat->n_ports > 0)
                return nat;
        return ckpt_native_free(nat);
}

/* What the offer says of a native container, checked against this node
 * (bridge and subnet, the address and veth name free, the published ports
 * as the pool found them, bind sources, memory for the root, no cgroup of
 * that name), and its address reserved: before ACCEPT, so before the
 * source freezes anything. *ret_native stays NULL for any other container.
 *
 * A port published here after the pool looked is not caught, here or
 * later: the keeper appends the container's rules at the commit
 * (ckpt_native_nat_install: `iptables -A`, without looking at what is
 * there), iptables takes a second DNAT rule for the same port, and the
 * first one in PREROUTING wins. So the port keeps going to whoever took it
 * meanwhile, and reaches the moved container only once that rule goes.
 * The window is the move (stream, restore, commit); the check only spares
 * the freeze of a move that is sure to clash. */
static int dst_check_native(agent *a, const proto_offer *o, const nm_error *ports, ckpt_native **ret_native,
                            char **ret_cgroup_root, proto_reject_code *ret_code, char *why, size_t n) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_(ckpt_native_freep) ckpt_native *nat = NULL;
        _cleanup_free_ char *root = NULL, *cgroup_dir = NULL;
        nm_error err = {};
        int r;

        r = dst_native_offered(o, &md, &nat, &err);
        if (r < 0)
                return *ret_code = PROTO_REJECT_INVALID, snprintf(why, n, "%s", err.msg), -1;
        if (r == 0)
                return 0;
        if (native_cgroup_root(a, md, &root) < 0 ||
            (root && asprintf(&cgroup_dir, "%s/nucleus-%s", root, o->container_id) < 0))
                return *ret_code = PROTO_REJECT_BUSY, snprintf(why, n, "out of memory"), -1;
        ckpt_native_target t = {.id = o->container_id,
                                .state_dir = a->cfg.state_dir,
                                .bridge = a->cfg.bridge,
                                .cgroup_dir = cgroup_dir,
                                .ports = ports};
        r = ckpt_native_check_target(nat, &t, &err);
        if (r >= 0 && nat->net == CKPT_NET_BRIDGE)
                r = ckpt_native_address_reserve(a->cfg.state_dir, o->container_id, nat->address, &err);
        if (r < 0)
                return *ret_code = native_reject_code(r),
                       snprintf(why, n, "%s cannot take container %s: %s", a->cfg.node, o->container_id,
                                err.msg),
                       -1;
        *ret_native = TAKE_PTR(nat);
        *ret_cgroup_root = TAKE_PTR(root);
        return 0;
}

/* What was set aside here for a copy that will not run: the address, and
 * the cgroup its restore made. From the journal record, so that a restarted
 * agent releases it too. */
typedef struct native_here {
        char *id, *address, *cgroup_path;
} native_here;

static void native_here_free(void *ud) {
        native_here *h = ud;
        if (!h)
                return;
        free(h->id);
        free(h->address);
        free(h->cgroup_path);
        free(h);
}

static int dst_release_work(mig *m, void *ud, nm_error *err) {
        native_here *h = ud;
        ckpt_native here = {.net = h->address ? CKPT_NET_BRIDGE : CKPT_NET_NONE,
                            .address = h->address,
                            .cgroup = h->cgroup_path,
                            .cgroup_fs = (char *)""};
        /* pid 0: the state file (never written before COMMIT) stays as it is. */
        return ckpt_native_forget(m->a->cfg.state_dir, h->id, &here, 0, err);
}

static void dst_release_done(mig *m, void *ud, int r, const nm_error *err) {
        native_here *h = ud;
        if (r < 0)
                log_ctx_warning(m->id, "cannot release what was set aside for %s: %s", h->id, err->msg);
        else
                log_ctx_info(m->id, "released %s%s%s", h->address ? "the address " : "",
                             h->address ? h->address : "",
                             h->cgroup_path ? " and the cgroup made for the copy" : "");
        mig_act_done(m, NULL);
}

static mig_act_result dst_release(mig *m) {
        const char *address = mig_rec_str(m, "address"), *cgroup = mig_rec_str(m, "cgroup_path");
        native_here *h;

        if (!m->container_id || (!address && !cgroup))
                return MIG_ACT_DONE;
        h = calloc(1, sizeof(*h));
        if (h) {
                h->id = strdup(m->container_id);
                h->address = address ? strdup(address) : NULL;
                h->cgroup_path = cgroup ? strdup(cgroup) : NULL;
        }
        if (!h || !h->id || (address && !h->address) || (cgroup && !h->cgroup_path) ||
            mig_work(m, dst_release_work, dst_release_done, h, native_here_free) < 0) {
                log_ctx_error(m->id, "out of memory: %s stays reserved for %s", strna(address),
                              m->container_id);
                native_here_free(h);
                return MIG_ACT_DONE;
        }
        return MIG_ACT_WAIT;
}

static void dst_on_progress(const xfer_progress *p, void *ud) {
        mig *m = ud;
        m->bytes_done = p->bytes;
        m->files_done = p->files;
        m->rate = (uint64_t)p->rate;
}

/* The signed metadata's state names the offered container, and this node
 * can register it: no copy of it or of its name runs here, a state file
 * can be written. */
static int dst_check_registrable(mig *m, nm_error *err) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        int r = ckpt_container_from_metadata(m->md, &c, err);

        if (r < 0)
                return nm_error_prefix(err, "the images cannot be registered here"), r;
        if (strcmp(c->id, m->container_id) != 0)
                return nm_error_set(err, -EBADMSG,
                                    "the images' state is of container %s, not the offered %s", c->id,
                                    m->container_id);
        r = ckpt_state_check_restorable(m->a->cfg.state_dir, c, err);
        if (r < 0)
                nm_error_prefix(err, "refusing the images of %s before the restore", m->container_id);
        return r;
}

/* IMAGES_DONE's binding, against the one this migration's images must
 * carry (compared in constant time). */
static int dst_check_binding(mig *m, const xfer_recv_result *res, nm_error *err) {
        char want[XFER_HMAC_HEX_MAX];
        unsigned char diff;

        if (!res->binding[0])
                return nm_error_set(err, -EBADMSG,
                                    "the images carry no binding to migration %s: refusing them (a replayed "
                                    "or foreign image set?)",
                                    m->id);
        if (mig_binding(m, m->peer, m->a->cfg.node, res->hmac, want) < 0)
                return nm_error_set(err, -EIO, "cannot compute the binding of migration %s", m->id);
        diff = strlen(res->binding) != strlen(want);
        for (size_t i = 0; want[i] && res->binding[i]; i++)
                diff |= (unsigned char)(res->binding[i] ^ want[i]);
        if (diff)
                return nm_error_set(
                        err, -EBADMSG,
                        "the images are signed, but not for migration %s of container %s from %s "
                        "to %s: refusing them (replayed from another migration?)",
                        m->id, m->container_id, m->peer, m->a->cfg.node);
        return 0;
}

static void dst_on_received(xfer_recv *r, int status, const nm_error *err, const xfer_recv_result *res,
                            void *ud) {
        mig *m = ud;
        nm_error e = {};
        (void)r;

        m->recv = xfer_recv_free(m->recv);
        if (status < 0) {
                mig_feed_errorf(m, DST_EV(DST_EV_RECEIVE_FAILED), status, "receiving images failed: %s",
                                err ? err->msg : strerror(-status));
                return;
        }
        m->bytes_done = res->bytes;
        m->files_done = res->files;
        /* Signed under the cluster key is not enough: signed for this move,
         * by the peer whose key offered it, to us, for the offered
         * container. */
        if (dst_check_binding(m, res, &e) < 0) {
                mig_feed_errorf(m, DST_EV(DST_EV_RECEIVED_UNUSABLE), e.code, "%s", e.msg);
                return;
        }
        _cleanup_close_ int dfd = open_dir_nofollow(m->staging);
        if (dfd < 0 || ckpt_metadata_load(dfd, &m->md, &e) < 0) {
                mig_feed_errorf(m, DST_EV(DST_EV_RECEIVED_UNUSABLE), -EBADMSG,
                                "received images without a usable metadata.json: %s", e.msg);
                return;
        }
        /* The OFFER's id is the one checked against the containers running
         * here; the images must be of that container, or a restore would
         * register a second copy of another one under its state file. */
        if (strcmp(m->md->container_id, m->container_id) != 0) {
                mig_feed_errorf(m, DST_EV(DST_EV_RECEIVED_UNUSABLE), -EBADMSG,
                                "the images are of container %s, but the offer was for container %s: "
                                "refusing them",
                                m->md->container_id, m->container_id);
                return;
        }
        /* A native container is checked against this node and its address
         * reserved before ACCEPT, from the offer: images that are one,
         * offered as something else, were never checked. */
        _cleanup_(ckpt_native_freep) ckpt_native *nat = NULL;
        if (!m->native && (ckpt_native_from_metadata(m->md, &nat, &e) < 0 || (nat && nat->own_mount_ns))) {
                mig_feed_errorf(m, DST_EV(DST_EV_RECEIVED_UNUSABLE), -EBADMSG,
                                "the images hold a native container that the offer did not describe: "
                                "refusing them");
                return;
        }
        /* Everything the restored copy needs to be registered is checked
         * now, before VERIFIED (and so before any restore): afterwards a
         * failure would leave a copy that no state file describes. */
        if (dst_check_registrable(m, &e) < 0) {
                mig_feed_errorf(m, DST_EV(DST_EV_RECEIVED_UNUSABLE), e.code, "%s", e.msg);
                return;
        }
        log_ctx_info(m->id, "verified %llu files, %llu bytes (tree HMAC %.16s...)",
                     (unsigned long long)res->files, (unsigned long long)res->bytes, res->hmac);
        m->images = MIG_IMAGES_VERIFIED;
        dst_staging_maybe_complete(m);
}

/* The staging quota, on what lands: each FILE's size as it is announced,
 * across every migration in flight here (an offer says little: a
 * migration may send more than it offered). Past its share, the migration
 * ends with the reason. */
static int dst_reserve(void *ud, uint64_t bytes, nm_error *err) {
        mig *m = ud, *o;
        agent *a = m->a;
        uint64_t others = 0;

        LIST_FOREACH(migs, o, a->migs)
        if (o != m && !o->finished && o->role == MIG_ROLE_DEST)
                others += o->staging_held > o->offered_bytes ? o->staging_held : o->offered_bytes;
        if (!handoff_staging_admits(a->cfg.staging_max, others, m->staging_held, bytes)) {
                log_ctx_warning(m->id,
                                "staging quota: %llu more bytes refused (holding %llu, others %llu, "
                                "staging_max %llu)",
                                (unsigned long long)bytes, (unsigned long long)m->staging_held,
                                (unsigned long long)others, (unsigned long long)a->cfg.staging_max);
                return nm_error_set(
                        err, -EDQUOT,
                        "staging quota: migration %s would hold %llu MiB of staging on %s, where "
                        "staging_max is %llu MiB and other migrations hold %llu MiB: aborted",
                        m->id, (unsigned long long)((m->staging_held + bytes) >> 20), a->cfg.node,
                        (unsigned long long)(a->cfg.staging_max >> 20), (unsigned long long)(others >> 20));
        }
        m->staging_held += bytes;
        return 0;
}

/* ---- pages streamed while CRIU dumps (feature "ps-stream") ---- */

/* Every file of the staging sealed (the page server's are already, by
 * ckpt, at its exit; this covers any the receiver has not). The restore
 * signs the whole of it in the nucleus format beside CRIU (the source's MAC
 * covers the image stream only): a consuming restore's CRIU opens the page
 * files only once the signing has read them. On the pool: one ioctl a file. */
static int dst_seal_work(mig *m, void *ud, nm_error *err) {
        _cleanup_close_ int dfd = open_dir_nofollow(m->staging);
        _cleanup_close_ int ifd = -EBADF;
        (void)ud;

        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open the staging %s", m->staging);
        ifd = openat(dfd, "images", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (ifd < 0)
                return nm_error_errno(err, negative_errno(), "cannot open %s/images", m->staging);
        int r = fs_seal_dir_files(ifd);
        if (r < 0)
                return nm_error_errno(err, r, "cannot seal the pages in %s/images", m->staging);
        /* The fault tests' signing that fails: a directory where its file
         * (the source's, as received) is to be replaced. */
        if (fault_fail("staging-sign") && ((unlinkat(dfd, CKPT_HMAC_FILE, 0) < 0 && errno != ENOENT) ||
                                           mkdirat(dfd, CKPT_HMAC_FILE, 0700) < 0))
                return nm_error_errno(err, negative_errno(), "fault injection: cannot block %s",
                                      CKPT_HMAC_FILE);
        return 0;
}

static void dst_seal_done(mig *m, void *ud, int r, const nm_error *err) {
        (void)ud;
        if (r < 0) {
                mig_feed_errorf(m, DST_EV(DST_EV_RECEIVED_UNUSABLE), r, "cannot seal the staging: %s",
                                err ? err->msg : strerror(-r));
                return;
        }
        log_ctx_info(m->id,
                     "the staging, with the pages streamed during the dump, is sealed; it is signed "
                     "beside the restore%s",
                     m->a->cfg.consume_staging ? ", before CRIU may open a page file"
                                               : ", which reads its pages whole (consume_staging = no)");
        dst_feed(m, DST_EV_RECEIVED, NULL);
}

static void dst_pages_failed(mig *m, int code, const char *why);

static void dst_pages_overdue(uv_timer_t *t) {
        mig *m = t->data;
        char why[200];

        if (m->finished || m->pages == MIG_PAGES_IN)
                return;
        snprintf(why, sizeof(why), "%s within %u s of the verified images: given up",
                 m->pages == MIG_PAGES_ENDED    ? "the page server did not finish"
                 : m->pages == MIG_PAGES_SERVED ? "the source did not end the page stream"
                                                : "the source neither ended the page stream nor did its "
                                                  "page server finish",
                 m->a->cfg.idle_timeout_s);
        dst_pages_failed(m, -ETIMEDOUT, why);
}

/* Images verified means the source's dump is over: its page stream's end
 * is due now. A source that keeps its session alive but never ends that
 * stream (a bug, or a hostile peer) would otherwise hold the staging here,
 * and its container stopped there, for as long as the session lasts. The
 * bound is the idle timeout, once. */
static void dst_pages_bound(mig *m) {
        if (!uv_is_active((uv_handle_t *)&m->page_timer))
                (void)uv_timer_start(&m->page_timer, dst_pages_overdue,
                                     (uint64_t)m->a->cfg.idle_timeout_s * 1000, 0);
}

/* The staging is complete once the image stream is verified and the pages
 * are in (or came with it); streamed pages are sealed with it first. */
static void dst_staging_maybe_complete(mig *m) {
        int r;

        if (m->images != MIG_IMAGES_VERIFIED)
                return;
        if (m->pages == MIG_PAGES_WITH_IMAGES) {
                dst_feed(m, DST_EV_RECEIVED, NULL);
                return;
        }
        if (m->pages != MIG_PAGES_IN) {
                /* the end frame or the page server's exit is still to come */
                dst_pages_bound(m);
                return;
        }
        uv_timer_stop(&m->page_timer);
        r = mig_work(m, dst_seal_work, dst_seal_done, NULL, NULL);
        if (r < 0)
                mig_feed_errorf(m, DST_EV(DST_EV_RECEIVED_UNUSABLE), r, "cannot seal the staging: %s",
                                strerror(-r));
}

/* The page stream failed: the migration with it (the staging goes). */
static void dst_pages_failed(mig *m, int code, const char *why) {
        mig_feed_errorf(m, DST_EV(DST_EV_RECEIVED_UNUSABLE), code, "the pages streamed during the dump: %s",
                        why);
}

static void dst_page_server_done(ckpt_page_server *ps, int status, const char *why, void *ud) {
        mig *m = ud;

        if (status < 0) {
                char msg[PATH_MAX + 400];
                snprintf(msg, sizeof(msg), "the page server failed: %s (log: %s/%s-pages/page-server.log)",
                         why, m->a->criu_work_dir, m->id);
                m->page_server = ckpt_page_server_free(ps);
                dst_pages_failed(m, status, msg);
                return;
        }
        if (why[0])
                log_ctx_warning(m->id, "%s", why);
        m->page_server = ckpt_page_server_free(ps);
        m->pages = m->pages == MIG_PAGES_ENDED ? MIG_PAGES_IN : MIG_PAGES_SERVED;
        dst_staging_maybe_complete(m);
}

/* The page server's replies, for the source's dump. */
static void dst_pages_frame(ps_link *l, const void *buf, size_t n, uint32_t size,
                            const uint8_t tag[static PS_MAC_LEN], void *ud) {
        mig *m = ud;
        proto_msg d = {.type = PROTO_MSG_PS_PAGES,
                       .ps_pages = {.mig = m->id, .data = {buf, n}, .size = size, .has_size = size > 0}};
        (void)l;
        /* The fault tests' target that leaves the dump waiting (it answers
         * PINGs, never the page server's replies). */
        if (fault_fail("ps-replies"))
                return;
        memcpy(d.ps_pages.tag, tag, PS_MAC_LEN);
        dst_send(m, &d);
}

static void dst_pages_broken(ps_link *l, int status, const char *why, void *ud) {
        (void)l;
        dst_pages_failed(ud, status, why);
}

static void dst_pages_drained(ps_link *l, void *ud) {
        (void)l;
        dst_session_take(ud);
}

static const ps_link_ops dst_page_link_ops = {
        .frame = dst_pages_frame, .broken = dst_pages_broken, .drained = dst_pages_drained};

/* With the sink: the page server writes into the staging's images/ (the
 * receiver made it), fed by our end of the link. */
static int dst_pages_start(mig *m, nm_error *err) {
        agent *a = m->a;
        unsigned features = m->peer_cc ? m->peer_cc->features : 0;
        ps_link_binding b = {
                .mig = m->id, .source = m->peer, .target = a->cfg.node, .mac = mig_pages_mac(features)};
        char work[PATH_MAX];
        int fd = -EBADF, r;

        r = ps_link_new(a->loop, PS_LINK_TARGET, a->key, a->key_len, &b, &dst_page_link_ops, m, &fd,
                        &m->page_link);
        if (r >= 0)
                r = ps_link_set_zstd(m->page_link, mig_pages_zstd(features), XFER_ZSTD_LEVEL);
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                return nm_error_errno(err, r, "cannot set up the page stream");
        }
        snprintf(work, sizeof(work), "%s/%s-pages", a->criu_work_dir, m->id);
        return ckpt_page_server_start(a->loop, a->criu, m->staging, work, fd, dst_page_server_done, m, err,
                                      &m->page_server);
}

static void dst_pages_stop(mig *m) {
        uv_timer_stop(&m->page_timer); /* the bound on the stream's end */
        m->page_link = ps_link_free(m->page_link);
        m->page_server = ckpt_page_server_free(m->page_server);
}

/* Opens the images' way in: the tree HMAC and the sink. */
static mig_act_result dst_start_sink(mig *m, mig_event *ret) {
        agent *a = m->a;
        nm_error err = {};
        xfer_recv_options ro = {
                .key = a->key,
                .key_len = a->key_len,
                .mig = m->id,
                .expected_bytes = 0,
                .max_bytes = m->offered_bytes * 4 + (256u << 20),
                .idle_timeout_ms = (uint64_t)a->cfg.idle_timeout_s * 1000,
                /* Before its first frame the source dumps, and its dump may
                 * first wait for its node's CRIU (another move's dump, at
                 * most criu_timeout): a live source that never begins is
                 * bounded here, a dead one by its session's end. */
                .first_frame_timeout_ms = (uint64_t)a->cfg.criu_timeout_s * 2000,
                .progress = dst_on_progress,
                /* The source ends files with FILE_MAC when we both offer it. */
                .file_mac = m->peer_cc && (m->peer_cc->features & PEER_FEATURE_FILE_MAC),
                .reserve = dst_reserve,
                .drained = dst_recv_drained,
                .test_write_gate = fault_stall_gate("staging-writes"),
                .test_gate_after = fault_fail("staging-writes") ? XFER_GATE_THEN_FAIL : XFER_GATE_THEN_WRITE,
        };
        if (xfer_recv_new(a->loop, a->staging_fd, m->id, &ro, dst_on_received, m, &err, &m->recv) < 0)
                return mig_act_failed(ret, DST_EV(DST_EV_SINK_FAILED), &err);
        if (m->pages == MIG_PAGES_STREAMING && dst_pages_start(m, &err) < 0) {
                m->recv = xfer_recv_free(m->recv); /* and the staging it made */
                return mig_act_failed(ret, DST_EV(DST_EV_SINK_FAILED), &err);
        }
        return MIG_ACT_DONE;
}

/* ---- restore, stopped ---- */

static void dst_restore_failed(mig *m, int status) {
        mig_feed_errorf(m, DST_EV(DST_EV_RESTORE_FAILED), status, "restore on %s failed: %s", m->a->cfg.node,
                        m->restore.error.msg);
}

/* Pages streamed during the dump are in the staging, which the restore
 * signs beside CRIU (the nucleus format; the stream's MACs checked every
 * byte already). Pages that came with the images were signed by the source
 * and verified here. */
static bool dst_signs_staging(const mig *m) {
        return m->pages == MIG_PAGES_IN;
}

/* The restore punches the staged pages out as it reads them: not under
 * post-copy, whose daemon reads the same images. */
static bool dst_consumes(const mig *m) {
        return m->a->cfg.consume_staging && m->dst.postcopy == DST_PC_OFF;
}

static void dst_on_restore_done(ckpt_restore_req *req, int status) {
        mig *m = req->data;
        if (req->warning[0])
                log_ctx_warning(m->id, "restore: %s", req->warning);
        if (dst_consumes(m) && !req->consumed_pages)
                log_ctx_info(m->id, "CRIU cannot punch holes into the staged pages (file system or file "
                                    "flags): the restore read them as usual; they go when the move ends");
        if (status < 0) {
                dst_restore_failed(m, status);
                return;
        }
        if (dst_signs_staging(m))
                log_ctx_info(m->id,
                             "the staging was signed beside the restore in %llu ms (tree HMAC %.16s...)",
                             (unsigned long long)(req->stats.sign_usec / 1000), req->hmac);
        m->restored_pid = m->restore.pid;
        m->restored_ticks = m->restore.start_ticks;
        if (req->cgroup_path)
                mig_rec_set_str(m, "cgroup_path", req->cgroup_path);
        mig_rec_set_int(m, "restored_pid", m->restored_pid);
        mig_rec_set_int(m, "restored_ticks", (int64_t)m->restored_ticks);
        log_ctx_info(m->id, "restored container %s as pid %d, every task stopped", m->container_id,
                     (int)m->restored_pid);
        dst_feed(m, DST_EV_RESTORE_OK, NULL);
}

static void dst_restore_run(mig *m) {
        agent *a = m->a;
        bool lazy = m->dst.postcopy != DST_PC_OFF;
        char work[PATH_MAX];
        int r;

        snprintf(work, sizeof(work), "%s/%s-restore", a->criu_work_dir, m->id);
        /* Every byte was verified as it arrived (per file and the tree HMAC),
         * and the receiver named each file only after its check and sealed it
         * (transfer/recv.c): what CRIU reads is what was hashed, with no
         * second read pass in the downtime. */
        ckpt_restore_opts o = {
                .criu = {.criu = a->criu, .work_dir = work, .timeout_ms = a->cfg.criu_timeout_s * 1000ULL},
                .key = a->key,
                .key_len = a->key_len,
                .leave_stopped = true,
                .lazy_pages = lazy,
                /* The staging is restored once: what CRIU has
                 * read it frees, and the restore reuses. */
                .consume_pages = dst_consumes(m),
                .sign_beside = dst_signs_staging(m),
                /* Native: the root tmpfs under the work dir, the
                 * cgroup below ours, the veth on our bridge. */
                .cgroup_root = m->cgroup_root,
                .bridge = a->cfg.bridge};
        m->restore.data = m;
        r = fault_fail("dest-restore")
                    ? nm_error_set(&m->restore.error, -EIO, "restore failed (fault injection)")
                    : ckpt_restore(a->loop, &m->restore, m->staging, &o, dst_on_restore_done);
        if (r < 0) {
                dst_restore_failed(m, r);
                return;
        }
        mig_note_criu_turn(m, m->restore.state, "restore");
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

static void dst_ps_drained(ps_relay *r, void *ud) {
        (void)r;
        dst_session_take(ud);
}

static void dst_drop_relay(mig *m) {
        dst_session_take(m);
        m->relay = ps_relay_free(m->relay);
}

static const ps_relay_ops dst_ps_ops = {
        .data = dst_ps_data, .closed = dst_ps_closed, .drained = dst_ps_drained};

static void dst_lazy_ready(ckpt_lazy_pages *lp, int status, void *ud) {
        mig *m = ud;
        (void)lp;
        if (status < 0) {
                nm_error_set(&m->restore.error, status,
                             "the lazy-pages daemon did not start (log: %s/%s-restore)", m->a->criu_work_dir,
                             m->id);
                dst_restore_failed(m, status);
                return;
        }
        dst_restore_run(m);
}

/* The daemon exited: 0 once every page is in the restored memory. */
static void dst_lazy_done(ckpt_lazy_pages *lp, int status, void *ud) {
        mig *m = ud;
        (void)lp;

        dst_drop_relay(m);
        if (status >= 0) {
                log_ctx_info(m->id, "post-copy done: every page of %s is here", m->container_id);
                dst_feed(m, DST_EV_PAGES_COMPLETE, NULL);
                return;
        }
        mig_feed_errorf(m, DST_EV(DST_EV_PAGES_FAILED), -EIO,
                        "post-copy failed: the lazy-pages daemon ended before every page arrived (log: "
                        "%s/%s-restore)",
                        m->a->criu_work_dir, m->id);
}

/* ckpt/ runs the restore once the CRIU work before it has ended; under
 * post-copy the lazy-pages daemon comes first. */
static void dst_restore_start(mig *m) {
        agent *a = m->a;
        char work[PATH_MAX];
        nm_error err = {};
        int fd = -EBADF, r;

        if (m->dst.postcopy == DST_PC_OFF) {
                dst_restore_run(m);
                return;
        }
        /* The daemon listens in the restore's work directory, and talks to
         * the source's dump through our relay. */
        snprintf(work, sizeof(work), "%s/%s-restore", a->criu_work_dir, m->id);
        r = ps_relay_new(a->loop, &dst_ps_ops, m, &fd, &m->relay);
        if (r >= 0)
                r = ckpt_lazy_pages_start(a->loop, a->criu, m->staging, work, fd, dst_lazy_ready,
                                          dst_lazy_done, m, &err, &m->lazy_pages);
        else
                nm_error_errno(&err, r, "cannot set up the post-copy relay");
        if (r < 0) {
                m->restore.error = err;
                dst_restore_failed(m, r);
        }
}

/* A restore still waiting for its turn never starts; its callback says
 * so. */
static void dst_cancel_restore(mig *m) {
        (void)ckpt_restore_cancel(&m->restore);
}

/* ---- commit ---- */

/* Continues the stopped copy, but leaves stopped what the dump found
 * stopped. Those facts came with the restore, or, if this agent restarted
 * since, are read again from the staged images. */
static int dst_resume_tasks(mig *m, nm_error *err) {
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

static mig_act_result dst_resume(mig *m, mig_event *ret) {
        nm_error err = {};

        if (dst_resume_tasks(m, &err) < 0) {
                /* ESRCH either way: the source then restores its own images.
                 * A copy that is still here (its stopped tasks could not be
                 * told) is killed with the staging. */
                nm_error_set(&ret->err, -ESRCH, "cannot resume the stopped copy (pid %d): %s",
                             (int)m->restored_pid, err.msg);
                if (err.code == -ESRCH)
                        m->restored_pid = 0;
                ret->dst.kind = DST_EV_RESUME_FAILED;
                return MIG_ACT_FAILED;
        }
        m->t_resumed = now_usec();
        log_ctx_info(m->id, "container %s resumed as pid %d", m->container_id, (int)m->restored_pid);
        return MIG_ACT_DONE;
}

static void dst_write_state(mig *m) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        nm_error err = {};

        if (!m->md) {
                _cleanup_close_ int dfd = open_dir_nofollow(m->staging);
                if (dfd >= 0)
                        (void)ckpt_metadata_load(dfd, &m->md, &err);
        }
        const char *cgroup = mig_rec_str(m, "cgroup_path");
        if (!m->md || ckpt_container_from_metadata(m->md, &c, &err) < 0 ||
            (cgroup && ckpt_state_set_cgroup(c, cgroup, &err) < 0) ||
            ckpt_state_write_restored(m->a->cfg.state_dir, c, m->restored_pid, m->restored_ticks, &err) <
                    0) {
                log_ctx_error(m->id,
                              "container %s runs as pid %d, but its state file could not be written: %s",
                              m->container_id, (int)m->restored_pid, err.msg);
                return;
        }
        if (!json_is_true(json_object_get(m->rec, "native")))
                return;
        /* No nucleus supervisor here: we do its part, the nat rules it
         * would have made and the cleanup when the container exits. */
        _cleanup_(ckpt_native_freep) ckpt_native *parsed = NULL;
        const ckpt_native *nat = m->native;
        char subnet[64] = "";
        if (!nat && ckpt_native_from_metadata(m->md, &parsed, &err) >= 0)
                nat = parsed; /* a restarted agent: the images say it */
        nm_error_clear(&err);
        bool bridged = nat && nat->net == CKPT_NET_BRIDGE;
        if (bridged && ckpt_native_subnet(nat->bridge_net, subnet, sizeof(subnet)) < 0)
                subnet[0] = '\0';
        keeper_entry e = {.id = m->container_id,
                          .pid = m->restored_pid,
                          .start_ticks = m->restored_ticks,
                          .address = mig_rec_str(m, "address"),
                          .cgroup_path = cgroup,
                          .subnet = subnet[0] ? subnet : NULL,
                          .bridge = bridged ? (m->a->cfg.bridge ? m->a->cfg.bridge : nat->bridge) : NULL,
                          .ports = bridged ? nat->ports : NULL,
                          .n_ports = bridged ? nat->n_ports : 0};
        if (keeper_adopt(m->a, &e, &err) < 0)
                log_ctx_error(m->id, "nothing will clean up after container %s here: %s", m->container_id,
                              err.msg);
}

static mig_act_result dst_kill_copy(mig *m) {
        pid_t pid = m->restored_pid;

        m->restored_pid = 0;
        if (pid <= 0)
                return MIG_ACT_DONE;
        return mig_kill_tree(m, pid, m->restored_ticks, "our copy");
}

static void dst_remove_state(mig *m) {
        nm_error err = {};
        if (m->container_id && ckpt_state_remove(m->a->cfg.state_dir, m->container_id, &err) < 0)
                log_ctx_warning(m->id, "cannot remove the state file: %s", err.msg);
}

static void dst_answer_commit(ctl_conn *cc, const char *id, bool runs, pid_t pid) {
        proto_msg r = {.type = PROTO_MSG_RUNNING, .running = {.mig = id, .pid = (uint32_t)pid}};
        proto_msg e = {.type = PROTO_MSG_ERROR,
                       .error = {.mig = id,
                                 .code = -ESRCH,
                                 .reason = "no copy of this migration is held or running here"}};
        (void)ctl_send(cc, runs ? &r : &e);
}

/* A COMMIT for a migration that is no longer active here: the source
 * repeating itself after a lost link. Answer from the journal, or from
 * memory while the record is on its way to done/ (never "no copy" for a
 * copy that runs: the source would restore its own). */
static void dst_commit_finished(ctl_conn *cc, const char *id) {
        mig *m = mig_find_archiving(cc->a, id);
        const json_t *rec = cc->a->history ? history_get(cc->a->history, id) : NULL;

        if (m && m->role == MIG_ROLE_DEST) {
                if (mig_admits(cc, MIG_ROLE_DEST, id, m->peer, NULL, HANDOFF_MSG_COMMIT))
                        dst_answer_commit(cc, id, dst_commit_finds_copy(m->dst.phase),
                                          (pid_t)mig_rec_int(m, "restored_pid"));
                return;
        }
        if (rec && mig_role_from_string(json_string_value(json_object_get(rec, "role"))) == MIG_ROLE_DEST) {
                if (mig_admits(cc, MIG_ROLE_DEST, id, json_string_value(json_object_get(rec, "peer")), NULL,
                               HANDOFF_MSG_COMMIT))
                        dst_answer_commit(cc, id,
                                          dst_commit_finds_copy(dst_phase_from_string(
                                                  json_string_value(json_object_get(rec, "phase")))),
                                          (pid_t)json_integer_value(json_object_get(rec, "restored_pid")));
                return;
        }
        dst_answer_commit(cc, id, false, 0);
}

/* ---- in doubt: asking the source ---- */

static void ask_ready(peer_link *l, void *ud) {
        (void)l;
        dst_feed(ud, DST_EV_ASK_READY, NULL);
}

static void ask_message(peer_link *l, const proto_msg *msg, void *ud) {
        mig *m = ud;
        if (msg->type != PROTO_MSG_OUTCOME || strcmp(msg->outcome.mig, m->id) != 0)
                return;
        peer_link_answered(l);
        log_ctx_info(m->id, "the source says: %s", proto_outcome_to_string(msg->outcome.outcome));
        handoff_outcome o = msg->outcome.outcome == PROTO_OUTCOME_COMMITTED ? HANDOFF_OUTCOME_COMMITTED
                            : msg->outcome.outcome == PROTO_OUTCOME_ABORTED ? HANDOFF_OUTCOME_ABORTED
                                                                            : HANDOFF_OUTCOME_UNKNOWN;
        mig_feed(m, &(mig_event){.dst = {.kind = DST_EV_OUTCOME, .outcome = o}});
}

static void ask_closed(peer_link *l, int status, const nm_error *err, void *ud) {
        mig *m = ud;
        (void)l;
        (void)status;
        m->link = NULL;
        if (err && err->code)
                log_ctx_warning(m->id, "cannot reach the source %s: %s", m->peer, err->msg);
        dst_feed(m, DST_EV_ASK_LOST, err);
}

static const peer_link_ops ask_ops = {.ready = ask_ready, .message = ask_message, .closed = ask_closed};

static mig_act_result dst_open_ask(mig *m, mig_event *ret) {
        nm_error err = {};
        if (peer_link_open(m->a, m->peer, m->id, &ask_ops, m, &err, &m->link) >= 0)
                return MIG_ACT_DONE;
        log_ctx_error(m->id, "%s", err.msg);
        return mig_act_failed(ret, DST_EV(DST_EV_ASK_LOST), &err);
}

static void dst_drop_ask(mig *m) {
        uv_timer_stop(&m->timer);
        if (m->link) {
                peer_link *l = m->link;
                m->link = NULL;
                peer_link_detach(l);
        }
}

/* ---- the runner's side ---- */

static const char *why_text(dst_why w) {
        switch (w) {
        case DST_WHY_SOURCE_ABORTED: return "the source aborted";
        case DST_WHY_SOURCE_LEFT: return "the source left";
        case DST_WHY_RESTORE_FAILED: return "restore failed";
        case DST_WHY_CANNOT_JOURNAL: return "cannot journal";
        case DST_WHY_UNUSABLE_IMAGES: return "the images cannot be used";
        case DST_WHY_NO_COPY: return "no copy to resume";
        case DST_WHY_POSTCOPY_BEFORE_RESUME: return "post-copy failed before the resume";
        case DST_WHY_POSTCOPY_BEFORE_COMMIT: return "post-copy failed before COMMIT";
        case DST_WHY_POSTCOPY_IN_RESTORE: return "the lazy-pages daemon failed during the restore";
        case DST_WHY_ABORTED_IN_RESTORE: return "the source aborted during the restore";
        case DST_WHY_STOPPED_BEFORE_RESTORED: return "the agent stopped before RESTORED";
        case DST_WHY_COPY_VANISHED: return "the stopped copy no longer exists";
        case DST_WHY_RESOLVED: return "settled as aborted by nucleus-migrate resolve";
        case DST_WHY_EVENT:
        case DST_WHY_STOPPED_IN_POSTCOPY:
        case _DST_WHY_MAX:
        case _DST_WHY_INVALID: break;
        }
        return "failed";
}

static void dst_note(mig *m, dst_why why) {
        const nm_error *e = &m->cur.err;

        if (why == DST_WHY_STOPPED_IN_POSTCOPY)
                mig_fail_reason(m, -EIO, "the agent stopped during post-copy: container %s is lost",
                                strna(m->container_id));
        else if (why == DST_WHY_EVENT && e->code)
                mig_fail_reason(m, e->code, "%s", e->msg);
        else
                mig_fail_reason(m, -EIO, "%s", why_text(why));
}

/* Drops whatever this node holds: says why, and makes it the failure
 * unless one is known. */
static void dst_note_discard(mig *m, dst_why why) {
        log_ctx_info(m->id, "discarding: %s", why_text(why));
        if (!m->err.code)
                nm_error_set(&m->err, -ECONNABORTED, "%s", why_text(why));
}

static mig_act_result dst_journal(mig *m, dst_phase phase, mig_event *ret) {
        /* Resumed on memory that is still arriving: a restart must not take
         * the copy for complete. */
        if (m->dst.postcopy != DST_PC_OFF)
                mig_rec_set(m, "postcopy", json_boolean(m->dst.postcopy == DST_PC_RESUMED));
        return mig_journal(m, dst_phase_to_string(phase),
                           &(mig_event){.dst = {.kind = DST_EV_JOURNAL_FAILED, .phase = phase}}, ret);
}

static handoff_verdict dst_ops_step(mig *m, const mig_event *ev) {
        dst_state next;
        handoff_verdict v = dst_step(&m->dst, &ev->dst, &next, &m->dst_acts);

        if (v == HANDOFF_REFUSED)
                log_ctx_warning(m->id, "destination: %s cannot happen in phase %s; ignored",
                                dst_event_to_string(ev->dst.kind), dst_phase_to_string(m->dst.phase));
        else
                log_ctx_debug(m->id, "destination: %s in phase %s: %s, %zu action(s), now %s",
                              dst_event_to_string(ev->dst.kind), dst_phase_to_string(m->dst.phase),
                              handoff_verdict_to_string(v), m->dst_acts.n, dst_phase_to_string(next.phase));
        m->dst = next;
        m->n_acts = m->dst_acts.n;
        return v;
}

static void dst_send_simple(mig *m, proto_msg_type type) {
        proto_msg msg = {.type = type};
        switch ((int)type) {
        case PROTO_MSG_ACCEPT:
                msg.accept.mig = m->id;
                mig_dst_lanes_grant(m, &msg.accept);
                break;
        case PROTO_MSG_VERIFIED: msg.verified.mig = m->id; break;
        case PROTO_MSG_RESTORED:
                msg.restored = (proto_pid_reply){.mig = m->id, .pid = (uint32_t)m->restored_pid};
                break;
        case PROTO_MSG_RUNNING:
                msg.running = (proto_pid_reply){.mig = m->id, .pid = (uint32_t)m->restored_pid};
                break;
        default: break;
        }
        dst_send(m, &msg);
}

static mig_act_result dst_perform(mig *m, size_t i, mig_event *ret) {
        const dst_action *a = &m->dst_acts.v[i];

        switch (a->kind) {
        case DST_DO_NOTE_FAILURE: dst_note(m, a->why); return MIG_ACT_DONE;
        case DST_DO_NOTE_DISCARD: dst_note_discard(m, a->why); return MIG_ACT_DONE;
        case DST_DO_JOURNAL: return dst_journal(m, a->phase, ret);
        case DST_DO_START_SINK: return dst_start_sink(m, ret);
        case DST_DO_STOP_SINK:
                m->recv = xfer_recv_free(m->recv);
                dst_pages_stop(m);
                return MIG_ACT_DONE;
        case DST_DO_SEND_ACCEPT: dst_send_simple(m, PROTO_MSG_ACCEPT); return MIG_ACT_DONE;
        case DST_DO_SEND_REJECT: {
                proto_msg rj = {.type = PROTO_MSG_REJECT,
                                .reject = {.mig = m->id, .code = PROTO_REJECT_BUSY, .reason = m->err.msg}};
                dst_send(m, &rj);
                return MIG_ACT_DONE;
        }
        case DST_DO_SEND_VERIFIED:
                dst_send_simple(m, PROTO_MSG_VERIFIED);
                if (m->a->cfg.idle_timeout_s)
                        (void)uv_timer_start(&m->timer, dst_restore_overdue,
                                             (uint64_t)m->a->cfg.idle_timeout_s * 1000, 0);
                return MIG_ACT_DONE;
        case DST_DO_SEND_RESTORED: dst_send_simple(m, PROTO_MSG_RESTORED); return MIG_ACT_DONE;
        case DST_DO_SEND_RUNNING: dst_send_simple(m, PROTO_MSG_RUNNING); return MIG_ACT_DONE;
        case DST_DO_SEND_ERROR:
                dst_send_error(m, a->code ? a->code : m->err.code, m->err.msg);
                return MIG_ACT_DONE;
        case DST_DO_REFUSE_RESTORE:
                dst_send_error(m, -EPROTO, "RESTORE before the images were verified");
                return MIG_ACT_DONE;
        case DST_DO_REFUSE_COMMIT:
                dst_send_error(m, -EPROTO, "COMMIT before RESTORED");
                m->reply_cc = NULL; /* answered: later messages go to the migration's session */
                return MIG_ACT_DONE;
        case DST_DO_START_RESTORE: dst_restore_start(m); return MIG_ACT_DONE;
        case DST_DO_CANCEL_RESTORE: dst_cancel_restore(m); return MIG_ACT_DONE;
        case DST_DO_RESUME_COPY: return dst_resume(m, ret);
        case DST_DO_KILL_COPY: return dst_kill_copy(m);
        case DST_DO_WRITE_STATE: dst_write_state(m); return MIG_ACT_DONE;
        case DST_DO_REMOVE_STATE: dst_remove_state(m); return MIG_ACT_DONE;
        case DST_DO_REMOVE_STAGING: return m->staging ? mig_remove_dir(m, m->staging) : MIG_ACT_DONE;
        case DST_DO_RELEASE: return dst_release(m);
        case DST_DO_DROP_RELAY: dst_drop_relay(m); return MIG_ACT_DONE;
        case DST_DO_OPEN_ASK: return dst_open_ask(m, ret);
        case DST_DO_SEND_QUERY:
                if (m->link)
                        (void)peer_link_ask(m->link,
                                            &(proto_msg){.type = PROTO_MSG_QUERY, .query = {.mig = m->id}},
                                            NULL);
                return MIG_ACT_DONE;
        case DST_DO_DROP_ASK: dst_drop_ask(m); return MIG_ACT_DONE;
        case DST_DO_ASK_LATER:
                log_ctx_warning(m->id, "holding the stopped copy of %s; asking %s again in %u ms",
                                m->container_id, m->peer, a->delay_ms);
                uv_timer_start(&m->timer, dst_on_timer, a->delay_ms, 0);
                return MIG_ACT_DONE;
        case DST_DO_DETACH_SESSION: dst_detach_conn(m); return MIG_ACT_DONE;
        case DST_DO_FINISH: mig_finish(m); return MIG_ACT_DONE;
        case _DST_ACTION_MAX:
        case _DST_ACTION_INVALID: break;
        }
        return MIG_ACT_DONE;
}

/* A COMMIT that waited while the list that ended us was carried out (the
 * source repeating itself after a lost link, while we finished): answered
 * as for a migration that is over. */
static void dst_after_end(mig *m, const mig_event *ev) {
        if (ev->dst.kind != DST_EV_COMMIT || !m->reply_cc)
                return;
        dst_answer_commit(m->reply_cc, m->id, dst_commit_finds_copy(m->dst.phase),
                          (pid_t)mig_rec_int(m, "restored_pid"));
        m->reply_cc = NULL;
}

static const mig_role_ops dst_ops = {
        .step = dst_ops_step, .perform = dst_perform, .after_end = dst_after_end};

/* ---- the peer session ---- */

static void dst_reject(ctl_conn *cc, const proto_offer *o, proto_reject_code code, const char *why) {
        metrics_refusal(cc->a, "target", strna(proto_reject_code_to_string(code)));
        log_ctx_info(o->mig, "refusing container %s from %s: %s", o->container_id, cc->peer_node, why);
        proto_msg rj = {.type = PROTO_MSG_REJECT, .reject = {.mig = o->mig, .code = code, .reason = why}};
        (void)ctl_send(cc, &rj);
}

/* Every check of an OFFER that the loop makes (all but offer-check.h's);
 * false when it was answered. */
static bool dst_offer_passes(ctl_conn *cc, const proto_offer *o) {
        agent *a = cc->a;
        proto_reject_code code;
        char why[1024];

        if (cc->dest || cc->offer_check) {
                proto_msg e = {
                        .type = PROTO_MSG_ERROR,
                        .error = {.mig = o->mig, .code = -EBUSY, .reason = "one migration per session"}};
                (void)ctl_send(cc, &e);
                return false;
        }
        /* An id names one migration, for as long as its record is kept: a
         * reused one would answer later messages from another's record. */
        if (mig_find(a, o->mig) || mig_find_archiving(a, o->mig)) {
                dst_reject(cc, o, PROTO_REJECT_EXISTS, "migration id in use");
                return false;
        }
        if (a->history && history_get(a->history, o->mig)) {
                dst_reject(cc, o, PROTO_REJECT_EXISTS, "migration id used before: ids are never reused");
                return false;
        }
        if (dst_check_offer(a, cc, o, &code, why, sizeof(why)) < 0 ||
            precheck_target(a, cc, &code, why, sizeof(why)) < 0) {
                dst_reject(cc, o, code, why);
                return false;
        }
        return true;
}

static void dst_offer_accept(ctl_conn *cc, const proto_offer *o, const offer_verdict *v);

/* The pool's checks are back; meanwhile the node may have changed
 * (cordoned, busy): the loop's are made again. */
static void dst_offer_checked(ctl_conn *cc, const proto_offer *o, int status, const offer_verdict *v) {
        char why[2048];

        if (status < 0) {
                dst_reject(cc, o, PROTO_REJECT_BUSY, "the checks of the offer were called off");
                return;
        }
        if (v->cpu.code < 0) {
                snprintf(why, sizeof(why), "the CPU of %s lacks what %s's offers (%s)", cc->a->cfg.node,
                         cc->peer_node, v->cpu.msg);
                dst_reject(cc, o, v->cpu.code == -EOPNOTSUPP ? PROTO_REJECT_INCOMPATIBLE : PROTO_REJECT_BUSY,
                           why);
                return;
        }
        if (dst_offer_passes(cc, o))
                dst_offer_accept(cc, o, v);
}

void mig_dst_offer(ctl_conn *cc, const proto_offer *o) {
        static const offer_verdict nothing_asked = {};
        ckpt_native *ports_of;
        nm_error err = {};

        if (!dst_offer_passes(cc, o))
                return;
        ports_of = dst_ports_to_check(o);
        /* No CPU image: a source that cannot say (CRIU failed there, or an
         * older agent). */
        if (!o->cpuinfo.ptr && !ports_of) {
                dst_offer_accept(cc, o, &nothing_asked);
                return;
        }
        if (offer_check_start(cc, o, ports_of, dst_offer_checked, &err) < 0)
                dst_reject(cc, o, PROTO_REJECT_BUSY, err.msg);
}

/* Last, as it reserves what a native container needs here (its address).
 * v: what the pool found (nothing asked: nothing to find). */
static void dst_offer_accept(ctl_conn *cc, const proto_offer *o, const offer_verdict *v) {
        agent *a = cc->a;
        proto_reject_code code;
        char why[512], path[PATH_MAX];
        ckpt_native *native = NULL;
        char *cgroup_root = NULL;
        mig *m;

        if (dst_check_native(a, o, &v->ports, &native, &cgroup_root, &code, why, sizeof(why)) < 0) {
                dst_reject(cc, o, code, why);
                return;
        }
        m = mig_new(a, MIG_ROLE_DEST, o->mig, &dst_ops);
        if (!m) {
                nm_error e = {};
                if (native && native->net == CKPT_NET_BRIDGE)
                        (void)ckpt_native_address_release(a->cfg.state_dir, o->container_id, native->address,
                                                          &e);
                ckpt_native_free(native);
                free(cgroup_root);
                return;
        }
        m->native = native;
        m->cgroup_root = cgroup_root;
        if (native) {
                mig_rec_set(m, "native", json_true());
                if (native->net == CKPT_NET_BRIDGE)
                        mig_rec_set_str(m, "address", native->address);
                /* Journaled before the restore makes it: an agent that dies
                 * while CRIU restores releases it on its restart too. */
                if (native->cgroup && cgroup_root) {
                        _cleanup_free_ char *cg = ckpt_native_cgroup_path(cgroup_root, o->container_id);
                        if (cg)
                                mig_rec_set_str(m, "cgroup_path", cg);
                }
        }
        m->peer_cc = cc;
        cc->dest = m;
        m->container_id = strdup(o->container_id);
        m->container_name = strdup(o->container_name);
        m->peer = strdup(cc->peer_node);
        mig_rec_set_int(m, "session", (int64_t)cc->session);
        snprintf(path, sizeof(path), "%s/%s", a->staging_dir, m->id);
        m->staging = strdup(path);
        m->offered_bytes = o->image_bytes;
        m->bytes_total = o->image_bytes;
        m->dst = dst_state_new(o->lazy);
        m->pages = o->ps_stream ? MIG_PAGES_STREAMING : MIG_PAGES_WITH_IMAGES;
        handoff_lanes_init(&m->lanes);
        m->lanes_asked = o->ps_stream && o->has_lanes ? o->lanes : 0;
        mig_rec_set(m, "lazy", json_boolean(o->lazy));
        mig_rec_set(m, "ps_stream", json_boolean(o->ps_stream));
        mig_rec_set_str(m, "container_id", m->container_id);
        mig_rec_set_str(m, "container_name", m->container_name);
        mig_rec_set_str(m, "peer", m->peer);
        mig_rec_set_str(m, "staging", m->staging);
        log_ctx_info(m->id, "accepting container %s (%s) from %s", m->container_id, m->container_name,
                     m->peer);
        dst_feed(m, DST_EV_OFFER, NULL);
}

/* A message for migration id that this session does not carry: if id is
 * another's migration here, the refusal is its own (and logged). */
static bool dst_foreign(ctl_conn *cc, const char *id, handoff_msg what) {
        mig *m = id ? mig_find(cc->a, id) : NULL;
        if (!m || m == cc->dest)
                return false;
        return !mig_admits(cc, m->role, id, m->peer, m->role == MIG_ROLE_DEST ? m->peer_cc : NULL, what);
}

void mig_dst_stream(ctl_conn *cc, const proto_msg *msg) {
        mig *m = cc->dest;
        nm_error err = {};
        const char *id = proto_msg_mig(msg);

        if (dst_foreign(cc, id, HANDOFF_MSG_IMAGES))
                return;
        if (!m || !m->recv || !id || strcmp(id, m->id) != 0) {
                proto_msg e = {.type = PROTO_MSG_ERROR,
                               .error = {.mig = id,
                                         .code = -EPROTO,
                                         .reason = "image data without an accepted offer"}};
                (void)ctl_send(cc, &e);
                return;
        }
        if (xfer_recv_feed(m->recv, msg, &err) < 0) {
                /* The sink removes staging; its callback ends the migration. */
                log_ctx_error(m->id, "refusing the image stream: %s", err.msg);
                return;
        }
        /* Frames must not pile up in memory while staging writes lag. */
        if (xfer_recv_full(m->recv)) {
                log_ctx_debug(m->id, "the writes into staging lag: the session waits for them");
                dst_session_hold(m);
        }
}

void mig_dst_restore(ctl_conn *cc, const char *id) {
        mig *m = cc->dest;
        if (dst_foreign(cc, id, HANDOFF_MSG_RESTORE))
                return;
        if (!m || strcmp(m->id, id) != 0) {
                proto_msg e = {.type = PROTO_MSG_ERROR,
                               .error = {.mig = id,
                                         .code = -EPROTO,
                                         .reason = "RESTORE before the images were verified"}};
                (void)ctl_send(cc, &e);
                return;
        }
        dst_feed(m, DST_EV_RESTORE, NULL);
}

void mig_dst_commit(ctl_conn *cc, const char *id) {
        mig *m = mig_find(cc->a, id);
        if (!m) {
                dst_commit_finished(cc, id);
                return;
        }
        /* One of our own moves: nobody commits it for us (refused). */
        if (!mig_admits(cc, m->role, id, m->peer, m->role == MIG_ROLE_DEST ? m->peer_cc : NULL,
                        HANDOFF_MSG_COMMIT))
                return;
        /* The answer goes where the question came from. */
        m->reply_cc = cc;
        dst_feed(m, DST_EV_COMMIT, NULL);
}

void mig_dst_abort(ctl_conn *cc, const char *id, const char *reason) {
        mig *m = mig_find(cc->a, id);
        /* Only the session that offered it may abort it (a source aborts on
         * its own link); ABORT of anything else changes nothing. */
        if (m && !mig_admits(cc, m->role, id, m->peer, m->role == MIG_ROLE_DEST ? m->peer_cc : NULL,
                             HANDOFF_MSG_ABORT))
                return;
        if (m && m->role == MIG_ROLE_DEST)
                mig_feed_errorf(m, DST_EV(DST_EV_PEER_ABORT), -ECONNABORTED, "the source aborted: %s",
                                reason);
}

/* Post-copy: the source's page server, for our lazy-pages daemon. */
void mig_dst_ps_data(ctl_conn *cc, const proto_ps_data *d) {
        mig *m = cc->dest;

        if (dst_foreign(cc, d->mig, HANDOFF_MSG_PAGES))
                return;
        /* Pages belong to a lazy migration of this session only; anything
         * else is refused, never dropped without a word. */
        if (!m || strcmp(m->id, d->mig) != 0 || m->dst.postcopy == DST_PC_OFF) {
                ctl_send_error(cc, d->mig, -EPROTO,
                               !m || strcmp(m->id, d->mig) != 0
                                       ? "PS_DATA for a migration this session does not carry"
                                       : "PS_DATA outside a lazy (post-copy) migration");
                return;
        }
        if (!m->relay)
                return;
        (void)ps_relay_write(m->relay, d->data.ptr, d->data.len);
        /* A source that sends pages faster than the daemon takes them (or
         * pages nobody asked for) must not grow our memory: the session's
         * further frames wait in the socket until the daemon caught up. */
        if (ps_relay_full(m->relay)) {
                log_ctx_debug(m->id, "the lazy-pages daemon lags: the session waits for it");
                dst_session_hold(m);
        }
}

/* The migration of this session whose pages stream during the dump, or
 * NULL after an ERROR that says why not. */
static mig *dst_streaming(ctl_conn *cc, const char *id, const char *what) {
        mig *m = cc->dest ? cc->dest : cc->lane_of;
        char why[128];

        if (dst_foreign(cc, id, HANDOFF_MSG_PAGES))
                return NULL;
        if (!m || strcmp(m->id, id) != 0 || m->pages == MIG_PAGES_WITH_IMAGES || !m->page_link) {
                snprintf(why, sizeof(why), "%s %s", what,
                         !m || strcmp(m->id, id) != 0
                                 ? "for a migration this session does not carry"
                                 : "outside a migration whose pages stream during the dump");
                ctl_send_error(cc, id, -EPROTO, why);
                return NULL;
        }
        return m;
}

/* A frame of the pages on lane cc: only in its turn (the holds keep the
 * other lanes unread; a frame out of turn is a peer that dealt wrong). */
static bool dst_took_turn(mig *m, ctl_conn *cc, const char *what) {
        uint32_t lane = cc == m->peer_cc ? 0 : cc->lane;
        char why[200];

        if (handoff_lanes_took(&m->lanes, lane) == HANDOFF_LANE_OK)
                return true;
        snprintf(why, sizeof(why), "%s on lane %u, where lane %u's turn was: refusing the page stream", what,
                 lane, handoff_lanes_due(&m->lanes));
        dst_pages_failed(m, -EPROTO, why);
        return false;
}

/* Pages for our page server: each frame checked before it reaches CRIU,
 * and counted against the staging quota like the image stream's files. */
void mig_dst_ps_pages(ctl_conn *cc, const proto_ps_pages *p) {
        mig *m = dst_streaming(cc, p->mig, "PS_PAGES");
        uint32_t size;
        size_t len;
        nm_error e = {};
        int r;

        if (!m || !dst_took_turn(m, cc, "PS_PAGES"))
                return;
        size = p->has_size ? p->size : 0;
        len = size ? size : p->data.len;
        if (dst_reserve(m, len, &e) < 0) {
                dst_pages_failed(m, e.code, e.msg);
                return;
        }
        r = ps_link_feed(m->page_link, p->data.ptr, p->data.len, size, p->tag);
        if (r < 0) {
                char why[400];
                snprintf(why, sizeof(why), "frame %llu from %s %s%s%s: refusing the page stream",
                         (unsigned long long)ps_link_frames_in(m->page_link) + 1, m->peer,
                         r == -EBADMSG  ? "failed its check"
                         : r == -EPROTO ? "is malformed ("
                                        : "came after the end or a failure",
                         r == -EPROTO ? ps_link_why(m->page_link) : "", r == -EPROTO ? ")" : "");
                dst_pages_failed(m, r, why);
                return;
        }
        xfer_recv_progress(m->recv, len);
        if (ps_link_full(m->page_link)) {
                log_ctx_debug(m->id, "the page server lags: the session waits for it");
                dst_session_hold(m);
                return;
        }
        if (mig_dst_in_turns(m))
                mig_dst_lanes_read(m);
}

void mig_dst_ps_end(ctl_conn *cc, const proto_ps_end *p) {
        mig *m = dst_streaming(cc, p->mig, "PS_END");
        int r;

        if (!m || !dst_took_turn(m, cc, "PS_END"))
                return;
        r = ps_link_feed_end(m->page_link, p->tag);
        if (r < 0) {
                dst_pages_failed(m, r, "the end frame failed its check (frames lost, repeated or added)");
                return;
        }
        if (p->kept) {
                /* Nothing went to the page server: the pages come with the
                 * images, under the source's MAC. */
                dst_pages_stop(m);
                m->pages = MIG_PAGES_WITH_IMAGES;
                log_ctx_info(m->id,
                             "the source kept the pages in its images: they come with the image stream");
        } else {
                log_ctx_info(m->id, "the page stream ended: %llu bytes in %llu frames, each checked (%s)",
                             (unsigned long long)ps_link_bytes_in(m->page_link),
                             (unsigned long long)ps_link_frames_in(m->page_link),
                             ps_mac_alg_name(ps_link_mac(m->page_link)));
                m->pages = m->pages == MIG_PAGES_SERVED ? MIG_PAGES_IN : MIG_PAGES_ENDED;
        }
        /* Every frame was taken: the lanes have done their part, and they
         * are ours to end (the source's end of one could take frames we
         * had not read yet with it). */
        mig_dst_lanes_end(m, 1);
        mig_dst_lanes_read(m); /* out of turns: lane 0 is read on */
        dst_staging_maybe_complete(m);
}

/* A lane's session ended: before LANES it is simply gone; after, a lane
 * dealt to takes the stream with it, like the migration's own session. */
static void dst_lane_closed(ctl_conn *cc, int status, const nm_error *err) {
        mig *m = cc->lane_of;
        uint32_t lane = cc->lane;
        bool turns = mig_dst_in_turns(m);

        m->lane_cc[lane] = NULL;
        cc->lane_of = NULL;
        if (!turns && m->lanes.phase == HANDOFF_LANES_DEALT)
                return; /* the pages are over: its end is due */
        if (handoff_lanes_leave(&m->lanes, lane) == HANDOFF_LANE_OK) {
                log_ctx_info(m->id, "lane %u left before the pages were dealt", lane);
                return;
        }
        dst_pages_failed(m, status ? status : -ECONNRESET,
                         err && err->code ? err->msg : "a lane the pages were dealt over ended");
}

void mig_dst_lanes(ctl_conn *cc, const proto_lane *l) {
        mig *m = dst_streaming(cc, l->mig, "LANES");
        handoff_lane_verdict v;
        char why[200];

        if (!m)
                return;
        if (cc != m->peer_cc) {
                ctl_send_error(cc, l->mig, -EPROTO, "LANES comes on the migration's own session");
                return;
        }
        v = handoff_lanes_deal(&m->lanes, l->lane);
        if (v != HANDOFF_LANE_OK) {
                snprintf(why, sizeof(why), "LANES %u: %s", l->lane, handoff_lane_verdict_to_string(v));
                dst_pages_failed(m, -EPROTO, why);
                return;
        }
        mig_dst_lanes_end(m, l->lane); /* joined, but left out */
        log_ctx_info(m->id, "the pages come over %u lane%s", l->lane, l->lane == 1 ? "" : "s");
        mig_dst_lanes_read(m);
}

void mig_dst_conn_closed(ctl_conn *cc, int status, const nm_error *err) {
        mig *m;

        /* A session that asked a question no longer hears the answer. */
        LIST_FOREACH(migs, m, cc->a->migs)
        if (m->reply_cc == cc)
                m->reply_cc = NULL;
        if (cc->lane_of) {
                dst_lane_closed(cc, status, err);
                return;
        }
        m = cc->dest;
        if (!m)
                return;
        dst_detach_conn(m);
        log_ctx_warning(m->id, "the source's session ended in phase %s: %s",
                        dst_phase_to_string(m->dst.phase),
                        err && err->code ? err->msg
                        : status         ? strerror(-status)
                                         : "closed");
        mig_feed_errorf(m, DST_EV(DST_EV_SESSION_LOST), status ? status : -ECONNRESET,
                        "the source left before RESTORE");
}

/* ---- after a restart ---- */

static char *rec_strdup(const mig *m, const char *key) {
        const char *v = mig_rec_str(m, key);
        return v ? strdup(v) : NULL;
}

int mig_dst_recover(agent *a, json_t *rec, nm_error *err) {
        const char *id = json_string_value(json_object_get(rec, "mig"));
        dst_phase phase = dst_phase_from_string(json_string_value(json_object_get(rec, "phase")));
        mig_recovery action = dst_recovery_for(phase);
        uint64_t ticks = 0;
        bool alive;
        mig *m;

        if (action < 0)
                return nm_error_set(err, -EBADMSG, "migration %s: no destination recovery for phase %s",
                                    strna(id), strna(dst_phase_to_string(phase)));
        m = mig_new(a, MIG_ROLE_DEST, id, &dst_ops);
        if (!m)
                return nm_error_set(err, -ENOMEM, "out of memory");
        json_decref(m->rec);
        m->rec = json_incref(rec);
        m->dst = dst_state_from_journal(phase, json_is_true(json_object_get(rec, "postcopy")));
        snprintf(m->journaled, sizeof(m->journaled), "%s", dst_phase_to_string(phase));
        m->container_id = rec_strdup(m, "container_id");
        m->container_name = rec_strdup(m, "container_name");
        m->peer = rec_strdup(m, "peer");
        m->staging = rec_strdup(m, "staging");
        m->restored_pid = (pid_t)mig_rec_int(m, "restored_pid");
        m->restored_ticks = (uint64_t)mig_rec_int(m, "restored_ticks");
        alive = m->restored_pid > 0 && ckpt_proc_start_ticks(m->restored_pid, &ticks) >= 0 &&
                ticks == m->restored_ticks;
        log_ctx_info(id, "recovering destination migration of %s from %s, phase %s: %s",
                     strna(m->container_id), strna(m->peer), dst_phase_to_string(phase),
                     mig_recovery_to_string(action));
        mig_feed(m, &(mig_event){.dst = {.kind = DST_EV_RECOVER, .copy_alive = alive}});
        return 0;
}
