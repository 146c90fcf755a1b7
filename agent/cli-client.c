/* SPDX-License-Identifier: Apache-2.0 */
#include "cli-client.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "macro.h"
#include "transfer.h"

typedef struct call {
        cli_request *req;
        uv_loop_t loop;
        uv_pipe_t *pipe;
        uv_connect_t connect;
        xfer_conn *conn;
        bool got_hello, done;
        int status;
} call;

const char *cli_socket_path(const char *socket, const char *config, char *buf, size_t n, nm_error *err) {
        agent_config cfg;
        if (socket)
                return socket;
        snprintf(buf, n, "%s", XFER_DEFAULT_SOCKET);
        if (agent_config_init(&cfg) < 0)
                return buf;
        /* A configuration we refuse (unreadable, or others may change it)
         * must not silently send us to the default socket. */
        if (agent_config_load(&cfg, config ? config : AGENT_CONFIG_DEFAULT, config != NULL, err) < 0) {
                agent_config_done(&cfg);
                return NULL;
        }
        if (cfg.socket)
                snprintf(buf, n, "%s", cfg.socket);
        agent_config_done(&cfg);
        return buf;
}

static void finish(call *c, int status) {
        if (c->done)
                return;
        c->done = true;
        c->status = status;
        if (c->conn)
                xfer_conn_close(c->conn, 0, NULL);
}

static void on_message(xfer_conn *conn, const proto_msg *msg, void *ud) {
        call *c = ud;
        cli_request *req = c->req;
        json_error_t jerr;

        if (c->done)
                return;
        switch ((int)msg->type) { /* most types are invalid here: default handles them */
        case PROTO_MSG_HELLO:
                if (!c->got_hello) {
                        c->got_hello = true;
                        if (xfer_conn_send(conn, req->msg, &req->err) < 0)
                                finish(c, req->err.code);
                }
                return;
        case PROTO_MSG_EVENT:
                if (req->out) {
                        cli_progress p = {.mig = msg->event.mig,
                                          .phase = msg->event.phase,
                                          .bytes_done = msg->event.bytes_done,
                                          .bytes_total = msg->event.bytes_total,
                                          .files_done = msg->event.files_done,
                                          .files_total = msg->event.files_total,
                                          .rate = msg->event.rate,
                                          .eta_ms = msg->event.eta_ms,
                                          .message = msg->event.message};
                        cli_out_progress(req->out, &p);
                }
                return;
        case PROTO_MSG_RESULT:
                req->result = json_loads(msg->result.doc, 0, &jerr);
                if (!req->result) {
                        finish(c, nm_error_set(&req->err, -EBADMSG, "the agent's answer is not JSON: %s",
                                               jerr.text));
                        return;
                }
                finish(c, 0);
                return;
        case PROTO_MSG_ERROR:
                finish(c, nm_error_set(&req->err, msg->error.code, "%s", msg->error.reason));
                return;
        case PROTO_MSG_PING: {
                proto_msg pong = {.type = PROTO_MSG_PONG, .pong = msg->ping};
                (void)xfer_conn_send(conn, &pong, NULL);
                return;
        }
        default: return;
        }
}

static void on_closed(xfer_conn *conn, int status, const nm_error *err, void *ud) {
        call *c = ud;
        (void)conn;
        c->conn = NULL;
        if (!c->done) {
                if (err && err->code)
                        c->req->err = *err;
                else
                        nm_error_set(&c->req->err, status ? status : -ECONNRESET,
                                     "the agent closed the connection before answering");
                c->done = true;
                c->status = c->req->err.code;
        }
}

static const xfer_conn_callbacks cbs = {.message = on_message, .closed = on_closed};

static void on_connect(uv_connect_t *cr, int status) {
        call *c = cr->data;
        cli_request *req = c->req;
        proto_msg hello = {.type = PROTO_MSG_HELLO,
                           .hello = {.version = PROTO_VERSION,
                                     .min_version = PROTO_MIN_VERSION,
                                     .node = "cli",
                                     .role = PROTO_ROLE_CLI}};
        if (status < 0) {
                nm_error_set(&req->err, status, "cannot reach the agent: %s", uv_strerror(status));
                c->done = true;
                c->status = status;
                uv_close((uv_handle_t *)c->pipe, (uv_close_cb)free);
                return;
        }
        if (xfer_conn_new_stream((uv_stream_t *)c->pipe, &cbs, c, &req->err, &c->conn) < 0) {
                c->done = true;
                c->status = req->err.code;
                return;
        }
        if (xfer_conn_send(c->conn, &hello, &req->err) < 0)
                finish(c, req->err.code);
}

int cli_call(cli_request *req) {
        char buf[4096];
        const char *path = cli_socket_path(req->socket, req->config, buf, sizeof(buf), &req->err);
        call c = {.req = req};

        if (!path)
                return req->err.code;
        /* An agent that closes on us (refusing us, or gone) must show up
         * as an error with its reason, not kill us (transfer.h). */
        signal(SIGPIPE, SIG_IGN);
        uv_loop_init(&c.loop);
        c.pipe = malloc(sizeof(*c.pipe));
        if (!c.pipe)
                return nm_error_set(&req->err, -ENOMEM, "out of memory");
        uv_pipe_init(&c.loop, c.pipe, 0);
        c.connect.data = &c;
        uv_pipe_connect(&c.connect, c.pipe, path, on_connect);
        uv_run(&c.loop, UV_RUN_DEFAULT);
        (void)uv_loop_close(&c.loop);
        if (c.status < 0 && (c.status == UV_ENOENT || c.status == UV_ECONNREFUSED || c.status == UV_EACCES))
                nm_error_prefix(&req->err, "%s", path);
        return c.status;
}
