/* SPDX-License-Identifier: Apache-2.0 */
/* A page stream's end on one agent (ps-link.h): a ps_relay to our CRIU and
 * two ps_macs, one signing what our CRIU writes, one checking what the peer
 * sends it; at the source, a ps_owed reading what the dump asks, and a
 * timer on the replies it waits for. */
#include "ps-link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "macro.h"
#include "proto.h"
#include "ps-owed.h"
#include "ps-relay.h"

/* Each direction's MAC is bound to the direction too, so that a frame of
 * one can never pass for the other. */
static const char *const direction_name[] = {"pages", "replies"};

typedef enum ps_direction {
        PS_DIR_PAGES,   /* source to target */
        PS_DIR_REPLIES, /* target to source */
} ps_direction;

/* The reply timer lives apart from the link: its handle is closed on the
 * loop's time, and may outlive the link it watched. */
typedef struct ps_watch {
        uv_timer_t timer;
        ps_link *l; /* NULL once the link is freed */
} ps_watch;

struct ps_link {
        uv_loop_t *loop;
        ps_link_role role;
        ps_link_state state;
        ps_relay *relay;
        ps_mac *out, *in; /* signs what our CRIU writes; checks what the peer sends it */
        ps_link_ops ops;
        void *ud;
        char mig[PROTO_ID_MAX + 1]; /* for the log */
        char why[160];              /* what broke it, through the broken callback */
        ps_owed owed;               /* source: the replies the dump waits for */
        uint64_t reply_timeout_ms;
        ps_watch *watch; /* source, with a reply timeout: armed while a reply is owed */
        ps_link_zstd zstd;
        proto_zctx *z;     /* with zstd: its context, and */
        uint8_t *zbuf;     /* its buffer (PROTO_DATA_MAX), for a frame in or out */
        proto_zbackoff zb; /* source: which frames zstd tries */
};

static int mac_for(ps_direction d, const void *key, size_t key_len, const ps_link_binding *b, ps_mac **ret) {
        const char *parts[] = {direction_name[d], b->mig, b->source, b->target};
        return ps_mac_new(key, key_len, b->mac, parts, sizeof(parts) / sizeof(parts[0]), ret);
}

static void watch_stop(ps_link *l) {
        if (l->watch)
                (void)uv_timer_stop(&l->watch->timer);
}

static void link_break(ps_link *l) {
        if (l->state == PS_LINK_BROKEN)
                return;
        l->state = PS_LINK_BROKEN;
        watch_stop(l);
        ps_relay_poison(l->relay);
}

/* Broken from within: our CRIU fails, the owner hears why. */
static void link_fail(ps_link *l, int status, const char *why) {
        link_break(l);
        snprintf(l->why, sizeof(l->why), "%s", why);
        if (l->ops.broken)
                l->ops.broken(l, status, l->why, l->ud);
}

static void watch_fired(uv_timer_t *t);

/* The wait for a reply: starts when one becomes owed, starts again with
 * each reply byte (fresh), ends when none is owed. */
static void watch_update(ps_link *l, bool fresh) {
        if (!l->watch || l->state != PS_LINK_OPEN)
                return;
        if (!ps_owed_bytes(&l->owed)) {
                watch_stop(l);
                return;
        }
        if (fresh || !uv_is_active((uv_handle_t *)&l->watch->timer))
                (void)uv_timer_start(&l->watch->timer, watch_fired, l->reply_timeout_ms, 0);
}

static void watch_fired(uv_timer_t *t) {
        ps_watch *w = container_of(t, ps_watch, timer);
        ps_link *l = w->l;
        char why[160];

        if (!l || l->state != PS_LINK_OPEN)
                return;
        if (l->ops.overdue && l->ops.overdue(l, l->ud)) {
                watch_update(l, true);
                return;
        }
        snprintf(why, sizeof(why), "the target left the dump's page-server request unanswered for %llu ms",
                 (unsigned long long)l->reply_timeout_ms);
        link_fail(l, -ETIMEDOUT, why);
}

/* What the dump asks, read as it goes; once that reading is lost, the
 * replies are not watched any more (CRIU's timeout still is). */
static void owed_request(ps_link *l, const void *buf, size_t n) {
        ps_owed_state was = l->owed.state;

        if (l->role != PS_LINK_SOURCE)
                return;
        ps_owed_request(&l->owed, buf, n);
        if (was == PS_OWED_FOLLOWING && l->owed.state == PS_OWED_LOST)
                log_ctx_warning(l->mig,
                                "cannot follow the dump's page-server protocol (%s): a target that leaves "
                                "it unanswered holds the dump until [agent] criu_timeout",
                                l->owed.why);
        watch_update(l, false);
}

/* Whether a frame of n bytes is worth zstd's try: incompressible memory
 * costs the loop, which paces the dump, a whole zstd pass per frame for
 * nothing (proto_zbackoff). CRIU's requests, a few pages, are the small
 * frames it always tries. */
static bool zstd_worth_trying(ps_link *l, size_t n) {
        return l->zstd != PS_ZSTD_OFF && proto_zbackoff_try(&l->zb, n);
}

/* Our CRIU's bytes compressed into l->zbuf where that pays: its length,
 * else 0 (they leave plain). */
static size_t frame_compress(ps_link *l, const void *buf, size_t n) {
        size_t zlen = 0;

        if (!zstd_worth_trying(l, n))
                return 0;
        if (proto_zdata_compress(l->z, buf, n, l->zbuf, &zlen) < 0)
                zlen = 0;
        proto_zbackoff_tried(&l->zb, n, zlen > 0);
        return zlen;
}

static void relay_data(ps_relay *r, const void *buf, size_t n, void *ud) {
        ps_link *l = ud;
        uint8_t tag[PS_MAC_LEN];
        size_t zlen;
        int k;
        (void)r;

        if (l->state != PS_LINK_OPEN)
                return;
        zlen = frame_compress(l, buf, n);
        k = zlen && l->zstd == PS_ZSTD_WIRE ? ps_mac_sign_z(l->out, n, l->zbuf, zlen, tag)
                                            : ps_mac_sign(l->out, buf, n, tag);
        if (k < 0) {
                link_fail(l, -EIO, "cannot sign a page-stream frame");
                return;
        }
        owed_request(l, buf, n);
        if (l->ops.frame)
                l->ops.frame(l, zlen ? l->zbuf : buf, zlen ? zlen : n, zlen ? (uint32_t)n : 0, tag, l->ud);
}

/* The dump's CRIU closing its socket is the page stream's end; the page
 * server closing its own is not ours to judge (its exit status says). */
static void relay_closed(ps_relay *r, int status, void *ud) {
        ps_link *l = ud;
        uint8_t tag[PS_MAC_LEN];
        (void)r;

        if (l->state != PS_LINK_OPEN)
                return;
        if (status < 0) {
                link_fail(l, status, "our CRIU's page-stream socket failed");
                return;
        }
        if (l->role != PS_LINK_SOURCE)
                return;
        if (ps_mac_sign_end(l->out, tag) < 0) {
                link_fail(l, -EIO, "cannot sign the page stream's end");
                return;
        }
        watch_stop(l);
        l->state = PS_LINK_ENDED;
        if (l->ops.end)
                l->ops.end(l, tag, l->ud);
}

static void relay_drained(ps_relay *r, void *ud) {
        ps_link *l = ud;
        (void)r;
        if (l->state != PS_LINK_BROKEN && l->ops.drained)
                l->ops.drained(l, l->ud);
}

static const ps_relay_ops link_relay_ops = {
        .data = relay_data, .closed = relay_closed, .drained = relay_drained};

int ps_link_new(uv_loop_t *loop, ps_link_role role, const void *key, size_t key_len,
                const ps_link_binding *b, const ps_link_ops *ops, void *ud, int *ret_criu_fd,
                ps_link **ret) {
        ps_direction out = role == PS_LINK_SOURCE ? PS_DIR_PAGES : PS_DIR_REPLIES;
        ps_direction in = role == PS_LINK_SOURCE ? PS_DIR_REPLIES : PS_DIR_PAGES;
        ps_link *l;
        int r;

        if (!loop || (role != PS_LINK_SOURCE && role != PS_LINK_TARGET) || !b || !b->mig || !b->source ||
            !b->target || !ops || !ret_criu_fd || !ret)
                return -EINVAL;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->loop = loop;
        l->role = role;
        l->ops = *ops;
        l->ud = ud;
        l->zb = (proto_zbackoff){.probe_min = PS_ZSTD_PROBE_MIN, .skip_max = PS_ZSTD_SKIP_MAX};
        snprintf(l->mig, sizeof(l->mig), "%s", b->mig);
        ps_owed_init(&l->owed);
        r = mac_for(out, key, key_len, b, &l->out);
        if (r >= 0)
                r = mac_for(in, key, key_len, b, &l->in);
        if (r >= 0)
                r = ps_relay_new(loop, &link_relay_ops, l, ret_criu_fd, &l->relay);
        if (r < 0) {
                ps_mac_free(l->out);
                ps_mac_free(l->in);
                free(l);
                return r;
        }
        l->state = PS_LINK_OPEN;
        *ret = l;
        return 0;
}

int ps_link_set_zstd(ps_link *l, ps_link_zstd mode, int level) {
        if (!l)
                return -EINVAL;
        if (mode != PS_ZSTD_OFF && !l->z &&
            (proto_zctx_new(level, &l->z) < 0 || !(l->zbuf = malloc(PROTO_DATA_MAX))))
                return -ENOMEM;
        l->zstd = mode;
        return 0;
}

/* Into l->zbuf; why not, in l->why. */
static int frame_decompress(ps_link *l, const void *buf, size_t n, uint32_t size) {
        proto_zdata zd = {.mig = l->mig, .size = size, .data = {buf, n}};
        nm_error e = {};

        if (l->zstd == PS_ZSTD_OFF) {
                snprintf(l->why, sizeof(l->why), "a compressed frame, where the HELLOs agreed on none");
                return -EPROTO;
        }
        if (proto_zdata_decompress(l->z, &zd, l->zbuf, PROTO_DATA_MAX, &e) < 0) {
                snprintf(l->why, sizeof(l->why), "%s", e.msg);
                return -EPROTO;
        }
        return 0;
}

/* A frame checked and, if compressed, decompressed into l->zbuf: in the
 * order its tag asks, so that under PS_ZSTD_WIRE nothing unchecked reaches
 * the decompressor. */
static int frame_open(ps_link *l, const void *buf, size_t n, uint32_t size,
                      const uint8_t tag[static PS_MAC_LEN]) {
        int r;

        if (l->state != PS_LINK_OPEN)
                return -EPIPE; /* after the end nothing may follow: the page server is done */
        if (size == 0)
                return ps_mac_check(l->in, buf, n, tag);
        if (l->zstd == PS_ZSTD_WIRE) {
                r = ps_mac_check_z(l->in, size, buf, n, tag);
                return r < 0 ? r : frame_decompress(l, buf, n, size);
        }
        r = frame_decompress(l, buf, n, size);
        return r < 0 ? r : ps_mac_check(l->in, l->zbuf, size, tag);
}

int ps_link_feed(ps_link *l, const void *buf, size_t n, uint32_t size,
                 const uint8_t tag[static PS_MAC_LEN]) {
        size_t len = size ? size : n;
        int r;

        if (!l || !buf || n == 0 || !tag)
                return -EINVAL;
        r = frame_open(l, buf, n, size, tag);
        if (r >= 0)
                r = ps_relay_write(l->relay, size ? l->zbuf : buf, len);
        if (r < 0) {
                link_break(l);
                return r;
        }
        if (l->role == PS_LINK_SOURCE) {
                ps_owed_reply(&l->owed, len);
                watch_update(l, true);
        }
        return r;
}

bool ps_link_full(const ps_link *l) {
        return l && ps_relay_full(l->relay);
}

int ps_link_feed_end(ps_link *l, const uint8_t tag[static PS_MAC_LEN]) {
        int r;

        if (!l || !tag)
                return -EINVAL;
        r = l->role == PS_LINK_TARGET && l->state == PS_LINK_OPEN ? ps_mac_check_end(l->in, tag) : -EPIPE;
        if (r < 0) {
                link_break(l);
                return r;
        }
        l->state = PS_LINK_ENDED;
        return 0;
}

static void watch_closed(uv_handle_t *h) {
        free(container_of((uv_timer_t *)h, ps_watch, timer));
}

void ps_link_set_reply_timeout(ps_link *l, uint64_t ms) {
        if (!l || l->role != PS_LINK_SOURCE)
                return;
        l->reply_timeout_ms = ms;
        if (ms && !l->watch && (l->watch = calloc(1, sizeof(*l->watch)))) {
                (void)uv_timer_init(l->loop, &l->watch->timer);
                l->watch->l = l;
        }
        if (!ms)
                watch_stop(l);
        else
                watch_update(l, true);
}

void ps_link_pause(ps_link *l, bool pause) {
        if (l)
                ps_relay_pause(l->relay, pause);
}

void ps_link_break(ps_link *l) {
        if (l)
                link_break(l);
}

ps_link_state ps_link_get_state(const ps_link *l) {
        return l ? l->state : PS_LINK_BROKEN;
}

ps_mac_alg ps_link_mac(const ps_link *l) {
        return ps_mac_get_alg(l ? l->out : NULL);
}

const char *ps_link_why(const ps_link *l) {
        return l ? l->why : "";
}

uint64_t ps_link_replies_owed(const ps_link *l) {
        return l ? ps_owed_bytes(&l->owed) : 0;
}

uint64_t ps_link_replies_asked(const ps_link *l) {
        return l && l->owed.state == PS_OWED_FOLLOWING ? l->owed.asked : 0;
}

uint64_t ps_link_frames_out(const ps_link *l) {
        return l ? ps_mac_frames(l->out) : 0;
}

uint64_t ps_link_bytes_out(const ps_link *l) {
        return l ? ps_mac_bytes(l->out) : 0;
}

uint64_t ps_link_frames_untried(const ps_link *l) {
        return l ? l->zb.untried : 0;
}

uint64_t ps_link_frames_in(const ps_link *l) {
        return l ? ps_mac_frames(l->in) : 0;
}

uint64_t ps_link_bytes_in(const ps_link *l) {
        return l ? ps_mac_bytes(l->in) : 0;
}

ps_link *ps_link_free(ps_link *l) {
        if (!l)
                return NULL;
        if (l->watch) {
                watch_stop(l);
                l->watch->l = NULL;
                uv_close((uv_handle_t *)&l->watch->timer, watch_closed);
        }
        l->relay = ps_relay_free(l->relay);
        ps_mac_free(l->out);
        ps_mac_free(l->in);
        proto_zctx_free(l->z);
        free(l->zbuf);
        free(l);
        return NULL;
}
