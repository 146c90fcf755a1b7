/* SPDX-License-Identifier: Apache-2.0 */
/* The target's lanes (feature "lanes"): the further sessions of a source
 * that carry a move's pages beside its own. Granted at ACCEPT under a
 * fresh secret, joined on LANE_JOIN, and read only in their turn. The
 * rules (who joins, what LANES names, whose turn a frame is) are
 * core/handoff-lanes.h; this maps sessions to lanes and sets their holds.
 * What a lane's frames and end mean for the stream is mig-dst.c's. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "macro.h"
#include "mig-dst-lanes.h"

/* Lane i's connection (lane 0: the migration's own session), or NULL. */
static xfer_conn *dst_lane_conn(const mig *m, uint32_t i) {
        const ctl_conn *cc = i == 0 ? m->peer_cc : i < HANDOFF_LANES_MAX ? m->lane_cc[i] : NULL;
        return cc ? cc->conn : NULL;
}

/* Whether the pages come in turns now: over more than one lane, until
 * their end frame. */
bool mig_dst_in_turns(const mig *m) {
        return m->lanes.phase == HANDOFF_LANES_DEALT && m->lanes.dealt > 1 &&
               (m->pages == MIG_PAGES_STREAMING || m->pages == MIG_PAGES_SERVED);
}

/* Whether lane i is read now: none while our consumers are behind; in
 * turns, the lane whose turn it is; before LANES, lane 0 alone (a joined
 * lane's frames must not overtake LANES on lane 0); after the pages, all,
 * to hear their ends. */
static bool dst_lane_reads(const mig *m, uint32_t i) {
        if (m->session_read == MIG_SESSION_HELD)
                return false;
        if (mig_dst_in_turns(m))
                return i == handoff_lanes_due(&m->lanes);
        return i == 0 || m->lanes.phase == HANDOFF_LANES_DEALT;
}

/* Sets every lane's hold. The lane whose turn it is goes last: reading
 * on may deliver its frames at once, and they set the holds anew. */
void mig_dst_lanes_read(mig *m) {
        uint32_t last = mig_dst_in_turns(m) ? handoff_lanes_due(&m->lanes) : 0;
        xfer_conn *c;

        for (uint32_t i = 0; i < HANDOFF_LANES_MAX; i++)
                if ((c = dst_lane_conn(m, i)) && !dst_lane_reads(m, i))
                        xfer_conn_hold_reading(c, true);
        for (uint32_t i = 0; i < HANDOFF_LANES_MAX; i++)
                if (i != last && (c = dst_lane_conn(m, i)) && dst_lane_reads(m, i))
                        xfer_conn_hold_reading(c, false);
        if ((c = dst_lane_conn(m, last)) && dst_lane_reads(m, last))
                xfer_conn_hold_reading(c, false);
}

/* The lanes go with the migration's session: ended, since they carry
 * nothing else. */
void mig_dst_lanes_end(mig *m, uint32_t from) {
        for (uint32_t i = MAX(from, 1u); i < HANDOFF_LANES_MAX; i++) {
                ctl_conn *cc = m->lane_cc[i];
                nm_error e = {};
                if (!cc)
                        continue;
                m->lane_cc[i] = NULL;
                cc->lane_of = NULL;
                if (cc->conn) {
                        nm_error_set(&e, -ECANCELED, "lane %u of migration %s is no longer needed", i,
                                     m->id);
                        xfer_conn_hold_reading(cc->conn, false);
                        xfer_conn_close(cc->conn, 0, &e);
                }
        }
}

/* ACCEPT grants the lanes the OFFER asked for (up to the protocol's
 * bound), under a fresh secret: only a session of the source that heard
 * this ACCEPT can join. Without the kernel's randomness, none. */
void mig_dst_lanes_grant(mig *m, proto_accept *acc) {
        uint8_t secret[HANDOFF_LANE_SECRET_LEN];
        uint32_t n = MIN(m->lanes_asked, HANDOFF_LANES_MAX);

        if (n < 2 || m->pages != MIG_PAGES_STREAMING)
                return;
        if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret)) {
                log_ctx_warning(m->id, "no randomness for the lanes' secret: the pages come on one session");
                return;
        }
        handoff_lanes_grant(&m->lanes, n, secret);
        explicit_bzero(secret, sizeof(secret));
        acc->lanes = n;
        acc->has_lanes = true;
        acc->lane_secret = (proto_bin){m->lanes.secret, sizeof(m->lanes.secret)};
        log_ctx_info(m->id, "granting %u lanes for the pages", n);
}

void mig_dst_lane_join(ctl_conn *cc, const proto_lane_join *j) {
        mig *m = mig_find(cc->a, j->mig);
        handoff_lane_verdict v = HANDOFF_LANE_CLOSED;
        char why[256];
        nm_error e = {};

        if (cc->dest || cc->lane_of) {
                ctl_send_error(cc, j->mig, -EPROTO,
                               "LANE_JOIN on a session that carries a migration already");
                return;
        }
        if (m && m->role == MIG_ROLE_DEST && !m->finished && m->pages == MIG_PAGES_STREAMING)
                v = handoff_lanes_join(&m->lanes, m->peer, cc->peer_node, j->lane, j->secret);
        if (v == HANDOFF_LANE_OK) {
                m->lane_cc[j->lane] = cc;
                cc->lane_of = m;
                cc->lane = j->lane;
                log_ctx_info(m->id, "lane %u joined (session %llu)", j->lane,
                             (unsigned long long)cc->session);
                (void)ctl_send(cc, &(proto_msg){.type = PROTO_MSG_LANE_JOINED,
                                                .lane_joined = {.mig = m->id, .lane = j->lane}});
                /* Until LANES names it, it is not read out of turn. */
                mig_dst_lanes_read(m);
                return;
        }
        snprintf(why, sizeof(why), "LANE_JOIN for migration %s, lane %u, refused: %s", j->mig, j->lane,
                 handoff_lane_verdict_to_string(v));
        if (cc->refusals < MIG_REFUSALS_LOGGED)
                log_warning("session %llu from %s: %s", (unsigned long long)cc->session, cc->peer_node, why);
        cc->refusals++;
        ctl_send_error(cc, j->mig, -EPERM, why);
        nm_error_set(&e, -EPERM, "%s", why);
        xfer_conn_close(cc->conn, 0, &e);
}
