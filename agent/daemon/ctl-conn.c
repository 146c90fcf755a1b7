/* SPDX-License-Identifier: Apache-2.0 */
/* Answering on a control connection (a CLI, or a peer through dial-stdio):
 * what every part that answers needs, and nothing else. */
#include "agent.h"
#include "log.h"
#include "macro.h"

int ctl_send(ctl_conn *cc, const proto_msg *m) {
        nm_error err = {};
        int r = xfer_conn_send(cc->conn, m, &err);
        if (r < 0)
                log_debug("cannot send %s: %s", strna(proto_msg_type_to_string(m->type)), err.msg);
        return r;
}

void ctl_send_result(ctl_conn *cc, const char *mig_id, json_t *doc) {
        _cleanup_free_ char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
        proto_msg r = {.type = PROTO_MSG_RESULT, .result = {.mig = mig_id, .doc = text ? text : "{}"}};
        (void)ctl_send(cc, &r);
}

void ctl_send_error(ctl_conn *cc, const char *mig_id, int code, const char *reason) {
        proto_msg e = {.type = PROTO_MSG_ERROR,
                       .error = {.mig = mig_id, .code = code < 0 ? code : -EIO, .reason = reason}};
        (void)ctl_send(cc, &e);
}
