/* SPDX-License-Identifier: Apache-2.0 */
/* A page stream's end on one agent (ps-link.h): a ps_relay to our CRIU and
 * two ps_macs, one signing what our CRIU writes, one checking what the peer
 * sends it. */
#include "ps-link.h"

#include <errno.h>
#include <stdlib.h>

#include "ps-relay.h"

/* Each direction's MAC is bound to the direction too, so that a frame of
 * one can never pass for the other. */
static const char *const direction_name[] = {"pages", "replies"};

typedef enum ps_direction {
        PS_DIR_PAGES,   /* source to target */
        PS_DIR_REPLIES, /* target to source */
} ps_direction;

struct ps_link {
        ps_link_role role;
        ps_link_state state;
        ps_relay *relay;
        ps_mac *out, *in; /* signs what our CRIU writes; checks what the peer sends it */
        ps_link_ops ops;
        void *ud;
};

static int mac_for(ps_direction d, const void *key, size_t key_len, const ps_link_binding *b, ps_mac **ret) {
        const char *parts[] = {direction_name[d], b->mig, b->source, b->target};
        return ps_mac_new(key, key_len, parts, sizeof(parts) / sizeof(parts[0]), ret);
}

static void link_break(ps_link *l) {
        if (l->state == PS_LINK_BROKEN)
                return;
        l->state = PS_LINK_BROKEN;
        ps_relay_poison(l->relay);
}

static void relay_data(ps_relay *r, const void *buf, size_t n, void *ud) {
        ps_link *l = ud;
        uint8_t tag[PS_MAC_LEN];
        (void)r;

        if (l->state != PS_LINK_OPEN)
                return;
        if (ps_mac_sign(l->out, buf, n, tag) < 0) {
                link_break(l);
                if (l->ops.broken)
                        l->ops.broken(l, -EIO, "cannot sign a page-stream frame", l->ud);
                return;
        }
        if (l->ops.frame)
                l->ops.frame(l, buf, n, tag, l->ud);
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
                link_break(l);
                if (l->ops.broken)
                        l->ops.broken(l, status, "our CRIU's page-stream socket failed", l->ud);
                return;
        }
        if (l->role != PS_LINK_SOURCE)
                return;
        if (ps_mac_sign_end(l->out, tag) < 0) {
                link_break(l);
                if (l->ops.broken)
                        l->ops.broken(l, -EIO, "cannot sign the page stream's end", l->ud);
                return;
        }
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
        l->role = role;
        l->ops = *ops;
        l->ud = ud;
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

int ps_link_feed(ps_link *l, const void *buf, size_t n, const uint8_t tag[static PS_MAC_LEN]) {
        int r;

        if (!l || !buf || n == 0 || !tag)
                return -EINVAL;
        /* After the end nothing may follow: the page server is done. */
        r = l->state == PS_LINK_OPEN ? ps_mac_check(l->in, buf, n, tag) : -EPIPE;
        if (r >= 0)
                r = ps_relay_write(l->relay, buf, n);
        if (r < 0)
                link_break(l);
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

uint64_t ps_link_frames_out(const ps_link *l) {
        return l ? ps_mac_frames(l->out) : 0;
}

uint64_t ps_link_bytes_out(const ps_link *l) {
        return l ? ps_mac_bytes(l->out) : 0;
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
        l->relay = ps_relay_free(l->relay);
        ps_mac_free(l->out);
        ps_mac_free(l->in);
        free(l);
        return NULL;
}
