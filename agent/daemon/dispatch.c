/* SPDX-License-Identifier: Apache-2.0 */
/* A peer session's messages (a peer agent arriving through dial-stdio),
 * each to the role that owns it: what a source sends to us as its
 * destination goes to mig-dst.c; a destination's QUERY about one of our
 * moves goes to mig-src.c; NODE_INFO_REQ to status.c. Anything else is
 * refused with a reason, and the session goes on. Whether a message may
 * reach the migration it names (its peer, its session) each role's
 * adapter asks core/handoff-trust.h. */
#include "log.h"
#include "macro.h"
#include "mig.h"
#include "offer-check.h"
#include "resolve.h"

static void answer_node_info(ctl_conn *cc) {
        proto_msg r = {.type = PROTO_MSG_NODE_INFO};
        /* The fault tests' node that refuses the question, or ignores it
         * (and answers PINGs). */
        if (fault_fail("node-info")) {
                ctl_send_error(cc, NULL, -EPERM, "node information refused (fault injection)");
                return;
        }
        if (fault_fail("node-info-silent"))
                return;
        status_node_info(cc->a, &r.node_info);
        (void)ctl_send(cc, &r);
}

void peer_dispatch(ctl_conn *cc, const proto_msg *msg) {
        const char *id = proto_msg_mig(msg);

        /* A lane carries its share of the pages, and nothing else. */
        if (cc->lane_of && msg->type != PROTO_MSG_PS_PAGES && msg->type != PROTO_MSG_PS_END) {
                ctl_send_error(cc, id, -EPROTO, "a lane carries pages only");
                return;
        }
        switch ((int)msg->type) { /* most types are invalid here: default handles them */
        case PROTO_MSG_NODE_INFO_REQ: answer_node_info(cc); return;
        case PROTO_MSG_QUERY:
                if (msg->query.container_id)
                        resolve_answer_query(cc, &msg->query);
                else
                        mig_src_query(cc, id);
                return;
        case PROTO_MSG_RESOLVED: resolve_record(cc, &msg->resolved); return;
        case PROTO_MSG_OFFER: mig_dst_offer(cc, &msg->offer); return;
        case PROTO_MSG_FILE:
        case PROTO_MSG_DATA:
        case PROTO_MSG_ZDATA:
        case PROTO_MSG_FILE_END:
        case PROTO_MSG_FILE_MAC:
        case PROTO_MSG_IMAGES_DONE: mig_dst_stream(cc, msg); return;
        case PROTO_MSG_RESTORE: mig_dst_restore(cc, id); return;
        case PROTO_MSG_PS_DATA: mig_dst_ps_data(cc, &msg->ps_data); return;
        case PROTO_MSG_PS_PAGES: mig_dst_ps_pages(cc, &msg->ps_pages); return;
        case PROTO_MSG_PS_END: mig_dst_ps_end(cc, &msg->ps_end); return;
        case PROTO_MSG_LANE_JOIN: mig_dst_lane_join(cc, &msg->lane_join); return;
        case PROTO_MSG_LANES: mig_dst_lanes(cc, &msg->lanes); return;
        case PROTO_MSG_COMMIT: mig_dst_commit(cc, id); return;
        case PROTO_MSG_ABORT: mig_dst_abort(cc, id, msg->abort.reason); return;
        default: break;
        }
        ctl_send_error(cc, id, -EPROTO, "unexpected message on a peer session");
}

void peer_session_closed(ctl_conn *cc, int status, const nm_error *err) {
        offer_check_conn_closed(cc);
        mig_dst_conn_closed(cc, status, err);
}
