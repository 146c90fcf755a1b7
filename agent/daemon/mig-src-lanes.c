/* SPDX-License-Identifier: Apache-2.0 */
/* The source's lanes (feature "lanes"): the further SSH sessions a move's
 * pages are dealt over beside the link. Dialed after ACCEPT, joined with
 * ACCEPT's secret, named once by LANES on the link; then each page frame
 * goes on the lane whose turn it is. The rules the target holds them to
 * are core/handoff-lanes.h; this only dials, deals and gives up. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "mig-src-lanes.h"
#include "ps-link.h"

/* The sessions to deal the pages over, the link included: [ssh] lanes,
 * for pages streamed to a target that takes lanes; 0: no lanes. */
uint32_t mig_src_lanes_wanted(const mig *m) {
        if (m->lanes_wanted < 2 || m->pages != MIG_PAGES_STREAMING || !m->link ||
            !(peer_link_features(m->link) & PEER_FEATURE_LANES))
                return 0;
        return m->lanes_wanted;
}

/* [ssh] lanes = auto, now that the size is known. */
void mig_src_lanes_choose(mig *m) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);

        if (m->lanes_wanted)
                return;
        m->lanes_wanted = handoff_lanes_auto(m->bytes_total, cores > 0 ? (unsigned)cores : 1);
        mig_rec_set_int(m, "lanes", m->lanes_wanted);
        log_ctx_debug(m->id, "lanes: auto chose %u for about %llu MiB on %ld cores", m->lanes_wanted,
                      (unsigned long long)(m->bytes_total >> 20), cores);
}

/* Lane i's connection: lane 0 is the link, the others joined ones. */
xfer_conn *mig_src_lane_conn(mig *m, uint32_t lane) {
        if (lane == 0)
                return m->link ? peer_link_conn(m->link) : NULL;
        for (size_t i = 0; i < ARRAY_SIZE(m->lanes_out); i++)
                if (m->lanes_out[i].state == SRC_LANE_JOINED && m->lanes_out[i].index == lane &&
                    m->lanes_out[i].link)
                        return peer_link_conn(m->lanes_out[i].link);
        return NULL;
}

/* The connection the next frame of the pages goes on: lane n mod the
 * lanes dealt over, as the target takes them. */
xfer_conn *mig_src_deal(mig *m) {
        uint32_t lane = m->lanes_dealt > 1 ? (uint32_t)(m->pages_dealt % m->lanes_dealt) : 0;
        m->pages_dealt++;
        return mig_src_lane_conn(m, lane);
}

size_t mig_src_lanes_queued_max(mig *m) {
        size_t most = 0;
        xfer_conn *c;
        for (uint32_t i = 0; i < MAX(m->lanes_dealt, 1u); i++)
                if ((c = mig_src_lane_conn(m, i)))
                        most = MAX(most, xfer_conn_queued(c));
        return most;
}

uint64_t mig_src_lanes_written(mig *m) {
        uint64_t sum = 0;
        xfer_conn *c;
        for (uint32_t i = 0; i < MAX(m->lanes_dealt, 1u); i++)
                if ((c = mig_src_lane_conn(m, i)))
                        sum += xfer_conn_written(c);
        return sum;
}

/* Ends a lane; with status 0 after its queued frames. The link stays
 * ours until its end is told (src_lane_closed), or the migration's end
 * detaches it. */
static void src_lane_drop(src_lane *ln, int status, const char *why) {
        nm_error e = {};
        peer_link *l = ln->link;

        ln->state = SRC_LANE_GONE;
        if (!l)
                return;
        if (why)
                nm_error_set(&e, status, "%s", why);
        if (peer_link_conn(l))
                xfer_conn_set_drain(peer_link_conn(l), 0, NULL, NULL);
        peer_link_close(l, status, why ? &e : NULL);
}

/* The fault tests' lane lost mid-stream: its session ends as a cut link
 * would end it, while it is dealt to. */
void mig_src_lane_cut(mig *m, uint32_t lane) {
        nm_error e = {};
        for (size_t i = 0; i < ARRAY_SIZE(m->lanes_out); i++)
                if (m->lanes_out[i].state == SRC_LANE_JOINED && m->lanes_out[i].index == lane &&
                    m->lanes_out[i].link) {
                        nm_error_set(&e, -ECONNRESET, "lane %u cut (fault injection)", lane);
                        peer_link_close(m->lanes_out[i].link, e.code, &e);
                }
}

/* Every lane dialed has joined or gone (or the deadline passed): the
 * pages go over lane 0 and the lanes joined after it without a gap.
 * LANES says so on the link before the dump, so before any frame. */
static void src_lanes_settle(mig *m) {
        uint32_t k = 1;
        proto_msg msg = {.type = PROTO_MSG_LANES};
        nm_error err = {};

        if (m->lanes_dealt)
                return;
        for (size_t i = 0; i < ARRAY_SIZE(m->lanes_out); i++)
                if (m->lanes_out[i].state == SRC_LANE_DIALING || m->lanes_out[i].state == SRC_LANE_JOINING)
                        return;
        uv_timer_stop(&m->lane_timer);
        while (k < HANDOFF_LANES_MAX && mig_src_lane_conn(m, k))
                k++;
        m->lanes_dealt = k;
        explicit_bzero(m->lane_secret, sizeof(m->lane_secret)); /* every lane joined that will */
        for (size_t i = 0; i < ARRAY_SIZE(m->lanes_out); i++)
                if (m->lanes_out[i].state == SRC_LANE_JOINED && m->lanes_out[i].index >= k)
                        src_lane_drop(&m->lanes_out[i], 0, NULL);
        msg.lanes = (proto_lane){.mig = m->id, .lane = k};
        if (!m->link || peer_link_send(m->link, &msg, &err) < 0)
                return; /* the link's end is the core's event */
        log_ctx_info(m->id, "the pages go over %u session%s to %s", k, k == 1 ? "" : "s", m->peer);
        mig_feed_err(m, &(mig_event){.src = {.kind = SRC_EV_ACCEPT}}, NULL);
}

static void src_lanes_overdue(uv_timer_t *t) {
        mig *m = t->data;
        for (size_t i = 0; i < ARRAY_SIZE(m->lanes_out); i++) {
                src_lane *ln = &m->lanes_out[i];
                if (ln->state != SRC_LANE_DIALING && ln->state != SRC_LANE_JOINING)
                        continue;
                log_ctx_warning(m->id, "a lane to %s did not join within %u s: the pages go without it",
                                m->peer, m->a->cfg.connect_timeout_s);
                src_lane_drop(ln, -ETIMEDOUT, "did not join in time");
        }
        src_lanes_settle(m);
}

static void src_lane_ready(peer_link *l, void *ud) {
        src_lane *ln = ud;
        mig *m = ln->m;
        proto_msg j = {.type = PROTO_MSG_LANE_JOIN, .lane_join = {.mig = m->id, .lane = ++m->lanes_named}};
        nm_error err = {};

        memcpy(j.lane_join.secret, m->lane_secret, sizeof(j.lane_join.secret));
        ln->index = j.lane_join.lane;
        if (peer_link_ask(l, &j, &err) < 0) {
                log_ctx_warning(m->id, "lane %u to %s: %s", ln->index, m->peer, err.msg);
                src_lane_drop(ln, err.code, err.msg);
                src_lanes_settle(m);
                return;
        }
        ln->state = SRC_LANE_JOINING;
}

/* A lane ended or said something it should not. Before the pages were
 * dealt it is dropped, and the move goes on without it; one dealt to
 * while the pages still flow takes the dump with it, as the link would
 * (its frames would be missing). */
static void src_lane_lost(src_lane *ln, int status, const char *why) {
        mig *m = ln->m;
        bool dealt_to = m->lanes_dealt > 1 && ln->state == SRC_LANE_JOINED && ln->index < m->lanes_dealt;

        if (ln->state == SRC_LANE_GONE)
                return; /* dropped by us: its end was expected */
        src_lane_drop(ln, status < 0 ? status : -ECONNRESET, why);
        if (dealt_to && m->page_link && ps_link_get_state(m->page_link) == PS_LINK_OPEN) {
                log_ctx_warning(m->id,
                                "lane %u to %s ended while the pages flowed (%s): the dump is made to fail",
                                ln->index, m->peer, why);
                ps_link_break(m->page_link);
                return;
        }
        if (!m->lanes_dealt) {
                log_ctx_info(m->id, "a lane to %s is dropped: %s", m->peer, why);
                src_lanes_settle(m);
        }
}

static void src_lane_message(peer_link *l, const proto_msg *msg, void *ud) {
        src_lane *ln = ud;
        mig *m = ln->m;
        char why[PROTO_TEXT_MAX + 100];

        if (msg->type == PROTO_MSG_LANE_JOINED && ln->state == SRC_LANE_JOINING &&
            strcmp(msg->lane_joined.mig, m->id) == 0 && msg->lane_joined.lane == ln->index) {
                peer_link_answered(l);
                ln->state = SRC_LANE_JOINED;
                log_ctx_debug(m->id, "lane %u to %s joined", ln->index, m->peer);
                src_lanes_settle(m);
                return;
        }
        /* Anything else (an ERROR: refused) makes the lane no use. */
        snprintf(why, sizeof(why), "lane %u: %s sent %s%s%s", ln->index, m->peer,
                 strna(proto_msg_type_to_string(msg->type)), msg->type == PROTO_MSG_ERROR ? ": " : "",
                 msg->type == PROTO_MSG_ERROR ? msg->error.reason : "");
        src_lane_lost(ln, -EPROTO, why);
}

static void src_lane_closed(peer_link *l, int status, const nm_error *err, void *ud) {
        src_lane *ln = ud;
        (void)l;

        ln->link = NULL; /* gone already: nothing to end */
        src_lane_lost(ln, status, err && err->code ? err->msg : status ? strerror(-status) : "closed");
}

static const peer_link_ops src_lane_ops = {
        .ready = src_lane_ready,
        .message = src_lane_message,
        .closed = src_lane_closed,
};

/* ACCEPT granted lanes: the further sessions are dialed now, while the
 * container still runs, and ACCEPT is taken once they joined or gave up
 * (src_lanes_settle). false: no lanes, ACCEPT is taken now. */
bool mig_src_lanes_dial(mig *m, const proto_accept *acc) {
        uint32_t n = MIN(acc->has_lanes ? acc->lanes : 0, mig_src_lanes_wanted(m));
        nm_error err = {};

        if (n < 2)
                return false;
        memcpy(m->lane_secret, acc->lane_secret.ptr, sizeof(m->lane_secret));
        log_ctx_info(m->id, "%s takes %u lanes: dialing %u more session%s", m->peer, n, n - 1,
                     n == 2 ? "" : "s");
        for (uint32_t i = 0; i + 1 < n; i++) {
                src_lane *ln = &m->lanes_out[i];
                *ln = (src_lane){.m = m, .state = SRC_LANE_DIALING};
                if (peer_link_open_on(m->a, m->peer, m->id, XFER_SSH_ON_THREAD, &src_lane_ops, ln, &err,
                                      &ln->link) < 0) {
                        log_ctx_warning(m->id, "a lane to %s: %s", m->peer, err.msg);
                        ln->state = SRC_LANE_GONE;
                }
        }
        (void)uv_timer_start(&m->lane_timer, src_lanes_overdue, (uint64_t)m->a->cfg.connect_timeout_s * 1000,
                             0);
        src_lanes_settle(m);
        return true;
}
