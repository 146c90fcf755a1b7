/* SPDX-License-Identifier: Apache-2.0 */
#include "peer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "macro.h"

typedef enum link_state {
        LINK_CONNECTING,
        LINK_HELLO,
        LINK_READY,
        LINK_CLOSING,
        _LINK_STATE_MAX,
        _LINK_STATE_INVALID = -EINVAL,
} link_state;

/* A question asked with peer_link_ask(), until its asker takes the answer. */
typedef enum link_question {
        LINK_QUESTION_NONE,
        LINK_QUESTION_OPEN,
        _LINK_QUESTION_MAX,
        _LINK_QUESTION_INVALID = -EINVAL,
} link_question;

struct peer_link {
        agent *a;
        link_state state;
        const peer_link_ops *ops; /* NULL once detached */
        void *ud;
        char peer[PROTO_NAME_MAX + 1];
        char ctx[PROTO_ID_MAX + 1];
        xfer_session *session;
        xfer_conn *conn;
        uv_timer_t ping;
        /* Our PINGs carry ping_base + 1, + 2, ...: a random base, so that
         * only a peer that read a PING can answer it. */
        uint64_t ping_base, ping_seq, pong_seq; /* pong_seq: the last PING answered */
        /* uv_now() of the last PING answered, of our last look, of our next PING */
        uint64_t last_heard, last_tick, next_ping;
        int status;
        nm_error err;
        bool closed_reported;
        link_question question;
        proto_msg_type asked;                /* the question's type, for messages */
        uint64_t answer_due;                 /* uv_now() by which its answer is due */
        unsigned features;                   /* the peer's HELLO */
        char key_id[PROTO_HMAC_HEX_LEN + 1]; /* the peer's HELLO: its key's identity, "" if none */
        xfer_ssh_thread thread;              /* where its SSH work runs */
};

static const char *const feature_names[] = {"zstd",      "file-mac", "lazy",        "binding",
                                            "ps-stream", "ps-ztag",  "ps-poly1305", "lanes"};

unsigned peer_features_of(const proto_hello *h) {
        unsigned f = 0;
        for (size_t i = 0; i < ARRAY_SIZE(feature_names); i++)
                if (proto_hello_has_feature(h, feature_names[i]))
                        f |= 1u << i;
        return f;
}

proto_strv peer_features_offered(void) {
        return (proto_strv){.v = feature_names, .n = ARRAY_SIZE(feature_names)};
}

unsigned peer_link_features(const peer_link *l) {
        return l->features;
}

const char *peer_link_key_id(const peer_link *l) {
        return l->key_id;
}

static void link_report_closed(peer_link *l) {
        const peer_link_ops *ops = l->ops;
        if (l->closed_reported)
                return;
        l->closed_reported = true;
        l->ops = NULL;
        if (ops && ops->closed)
                ops->closed(l, l->status, l->err.code ? &l->err : NULL, l->ud);
}

static void ping_closed(uv_handle_t *h) {
        free(h->data);
}

static void session_closed(xfer_session *s, void *ud) {
        peer_link *l = ud;
        (void)s;
        link_report_closed(l);
        uv_close((uv_handle_t *)&l->ping, ping_closed);
}

/* Everything ends here: the connection (if any) closes, and the owner hears
 * about it, then the session closes. */
static void link_shutdown(peer_link *l, int status, const nm_error *err) {
        if (l->state == LINK_CLOSING)
                return;
        l->state = LINK_CLOSING;
        if (!l->status)
                l->status = status;
        if (err && err->code && !l->err.code)
                l->err = *err;
        uv_timer_stop(&l->ping);
        if (l->conn) {
                xfer_conn_close(l->conn, status, err);
                return; /* conn_closed continues */
        }
        xfer_session_close(l->session, session_closed, l);
}

static void conn_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        peer_link *l = ud;
        (void)c;
        l->conn = NULL;
        if (l->state != LINK_CLOSING) {
                l->state = LINK_CLOSING;
                uv_timer_stop(&l->ping);
                l->status = status ? status : -ECONNRESET;
                if (err && err->code)
                        l->err = *err;
                else
                        nm_error_set(&l->err, l->status, "peer %s closed the connection", l->peer);
        }
        /* The owner hears it now, while c still exists: a sender streaming
         * over c must be stopped before c is freed (after this callback). */
        link_report_closed(l);
        xfer_session_close(l->session, session_closed, l);
}

static void send_hello(peer_link *l) {
        nm_error err = {};
        proto_msg m = {.type = PROTO_MSG_HELLO,
                       .hello = {.version = PROTO_VERSION,
                                 .min_version = PROTO_MIN_VERSION,
                                 .node = l->a->cfg.node,
                                 .role = PROTO_ROLE_PEER,
                                 .features = peer_features_offered(),
                                 .key_id = l->a->key_id}};
        if (xfer_conn_send(l->conn, &m, &err) < 0)
                link_shutdown(l, err.code, &err);
}

static uint64_t ping_every(const peer_link *l) {
        uint64_t every = (uint64_t)l->a->cfg.idle_timeout_s * 1000 / 3;
        return every ? every : 1000;
}

static void on_ping_timer(uv_timer_t *t);

/* The next look: at our next PING, or when the peer will have answered
 * none for the idle timeout, whichever comes first, so that the verdict
 * comes at that bound and not up to a PING period after it. */
static void ping_arm(peer_link *l) {
        uint64_t now = uv_now(l->a->loop), idle = (uint64_t)l->a->cfg.idle_timeout_s * 1000;
        uint64_t due = l->next_ping;

        if (idle && l->last_heard + idle < due)
                due = l->last_heard + idle;
        if (idle && l->question == LINK_QUESTION_OPEN && l->answer_due < due)
                due = l->answer_due;
        (void)uv_timer_start(&l->ping, on_ping_timer, due > now ? due - now : 0, 0);
}

/* Asked (our HELLO, or peer_link_ask): the answer is due within the idle
 * timeout. */
static void question_open(peer_link *l, proto_msg_type asked) {
        l->question = LINK_QUESTION_OPEN;
        l->asked = asked;
        l->answer_due = uv_now(l->a->loop) + (uint64_t)l->a->cfg.idle_timeout_s * 1000;
}

static void on_ping_timer(uv_timer_t *t) {
        peer_link *l = t->data;
        uint64_t idle = (uint64_t)l->a->cfg.idle_timeout_s * 1000, now = uv_now(l->a->loop);
        nm_error err = {};

        if ((l->state != LINK_READY && l->state != LINK_HELLO) || !l->conn)
                return;
        /* Our pings leave through the kernel's buffers whether or not anyone
         * is there, so the connection's own idle timer never fires on a cut
         * link while we only wait: the peer's answers are what prove it is
         * there, and that it reads what we send (a PING waits behind what
         * we queued before it). Anything else it sends proves neither: a
         * peer that stopped reading could go on sending, and hold our
         * container frozen while we wait to send it the rest. A loop that
         * stood still itself heard nothing either (we look at least once a
         * PING period): then the peer gets a fresh period. (Before HELLO
         * the timer looks only once, at the answer's due time.) */
        if (l->state == LINK_READY && now - l->last_tick > 2 * ping_every(l)) {
                l->last_heard = now;
                if (l->question == LINK_QUESTION_OPEN && l->answer_due < now + idle)
                        l->answer_due = now + idle;
        }
        l->last_tick = now;
        /* A peer that sends PINGs, but never the answer (to our HELLO, or a
         * question), would otherwise hold the link's owner (a move's
         * precheck, a drain, a resolve, a copy in doubt) for as long as the
         * link lasts. */
        if (idle && l->question == LINK_QUESTION_OPEN && now >= l->answer_due) {
                nm_error_set(&err, -ETIMEDOUT, "%s did not answer our %s within %llu ms", l->peer,
                             strna(proto_msg_type_to_string(l->asked)), (unsigned long long)idle);
                link_shutdown(l, err.code, &err);
                return;
        }
        if (l->state == LINK_HELLO) {
                (void)uv_timer_start(&l->ping, on_ping_timer, l->answer_due - now, 0);
                return;
        }
        if (idle && now - l->last_heard >= idle) {
                nm_error_set(&err, -ETIMEDOUT,
                             "%s answered none of our PINGs for %llu ms: the link is down, or the peer is "
                             "stuck or does not read what we send",
                             l->peer, (unsigned long long)(now - l->last_heard));
                link_shutdown(l, err.code, &err);
                return;
        }
        if (now >= l->next_ping) {
                proto_msg m = {.type = PROTO_MSG_PING, .ping = {.seq = l->ping_base + ++l->ping_seq}};
                (void)xfer_conn_send(l->conn, &m, NULL);
                l->next_ping = now + ping_every(l);
        }
        ping_arm(l);
}

/* A PONG counts when it answers a PING of ours not answered before; any
 * other (a guess, a replay) is ignored. */
static void on_pong(peer_link *l, uint64_t seq) {
        uint64_t n = seq - l->ping_base;

        if (n <= l->pong_seq || n > l->ping_seq)
                return;
        l->pong_seq = n;
        l->last_heard = uv_now(l->a->loop);
}

static void on_hello(peer_link *l, const proto_msg *msg) {
        proto_hello ours = {.version = PROTO_VERSION, .min_version = PROTO_MIN_VERSION};
        uint32_t version;
        nm_error err = {};

        if (proto_version_negotiate(&ours, &msg->hello, &version, &err) < 0) {
                nm_error_prefix(&err, "peer %s", l->peer);
                link_shutdown(l, err.code, &err);
                return;
        }
        if (strcmp(msg->hello.node, l->peer) != 0)
                log_ctx_warning(l->ctx, "peer %s calls itself \"%s\"", l->peer, msg->hello.node);
        l->state = LINK_READY;
        l->question = LINK_QUESTION_NONE;
        l->features = peer_features_of(&msg->hello);
        snprintf(l->key_id, sizeof(l->key_id), "%s", strempty(msg->hello.key_id));
        l->last_heard = l->last_tick = uv_now(l->a->loop);
        l->next_ping = l->last_heard + ping_every(l);
        ping_arm(l);
        if (l->ops && l->ops->ready)
                l->ops->ready(l, l->ud);
}

static void conn_message(xfer_conn *c, const proto_msg *msg, void *ud) {
        peer_link *l = ud;
        nm_error err = {};

        if (l->state == LINK_CLOSING)
                return;
        switch ((int)msg->type) { /* most types are invalid here: default handles them */
        case PROTO_MSG_HELLO:
                if (l->state != LINK_HELLO) {
                        nm_error_set(&err, -EPROTO, "peer %s sent HELLO twice", l->peer);
                        link_shutdown(l, err.code, &err);
                        return;
                }
                on_hello(l, msg);
                return;
        case PROTO_MSG_PING: {
                proto_msg pong = {.type = PROTO_MSG_PONG, .pong = msg->ping};
                (void)xfer_conn_send(c, &pong, NULL);
                return;
        }
        case PROTO_MSG_PONG: on_pong(l, msg->pong.seq); return;
        default: break;
        }
        if (l->state != LINK_READY) {
                nm_error_set(&err, -EPROTO, "peer %s sent %s before HELLO", l->peer,
                             strna(proto_msg_type_to_string(msg->type)));
                link_shutdown(l, err.code, &err);
                return;
        }
        if (l->question == LINK_QUESTION_OPEN && msg->type == PROTO_MSG_ERROR) {
                nm_error_set(&err, msg->error.code < 0 ? msg->error.code : -EIO, "%s refused our %s: %s",
                             l->peer, strna(proto_msg_type_to_string(l->asked)), strna(msg->error.reason));
                link_shutdown(l, err.code, &err);
                return;
        }
        if (l->ops && l->ops->message)
                l->ops->message(l, msg, l->ud);
}

/* What the peer's relay (nucleus-agent dial-stdio) says while it runs: a
 * warning there, such as pipes it could not grow, is otherwise seen by
 * no one on its node. */
static void conn_remark(xfer_conn *c, const char *line, void *ud) {
        peer_link *l = ud;
        (void)c;
        log_ctx_warning(l->ctx, "peer %s's relay: %s", l->peer, line);
}

static const xfer_conn_callbacks conn_cbs = {
        .message = conn_message,
        .closed = conn_closed,
        .remark = conn_remark,
};

static void on_exec(xfer_session *s, int status, const nm_error *err, xfer_conn *conn, void *ud) {
        peer_link *l = ud;
        (void)s;
        if (status < 0) {
                link_shutdown(l, status, err); /* a no-op when already closing */
                return;
        }
        l->conn = conn;
        if (l->state == LINK_CLOSING) {
                xfer_conn_close(conn, -ECANCELED, NULL);
                return;
        }
        l->state = LINK_HELLO;
        xfer_conn_set_idle_timeout(conn, (uint64_t)l->a->cfg.idle_timeout_s * 1000);
        send_hello(l);
        /* The connection's idle timer counts any frame: PINGs without a
         * HELLO would keep it quiet. */
        if (l->state == LINK_HELLO && l->a->cfg.idle_timeout_s) {
                question_open(l, PROTO_MSG_HELLO);
                (void)uv_timer_start(&l->ping, on_ping_timer, (uint64_t)l->a->cfg.idle_timeout_s * 1000, 0);
        }
}

static void on_connected(xfer_session *s, int status, const nm_error *err, void *ud) {
        peer_link *l = ud;
        nm_error e = {};
        if (status < 0) {
                link_shutdown(l, status, err);
                return;
        }
        log_ctx_debug(l->ctx, "connected to %s (host key %s; SSH %s)", l->peer, xfer_session_fingerprint(s),
                      l->thread == XFER_SSH_ON_THREAD ? "on a thread of its own" : "on the agent's loop");
        if (xfer_session_exec(s, l->a->cfg.remote_command, &conn_cbs, l, on_exec, l) < 0) {
                nm_error_set(&e, -EIO, "cannot start \"%s\" on %s", l->a->cfg.remote_command, l->peer);
                link_shutdown(l, e.code, &e);
        }
}

int peer_link_open(agent *a, const char *peer_name, const char *log_ctx, const peer_link_ops *ops, void *ud,
                   nm_error *err, peer_link **ret) {
        return peer_link_open_on(a, peer_name, log_ctx,
                                 a->cfg.ssh_thread ? XFER_SSH_ON_THREAD : XFER_SSH_ON_LOOP, ops, ud, err,
                                 ret);
}

int peer_link_open_on(agent *a, const char *peer_name, const char *log_ctx, xfer_ssh_thread thread,
                      const peer_link_ops *ops, void *ud, nm_error *err, peer_link **ret) {
        const agent_peer *p = agent_config_peer(&a->cfg, peer_name);
        peer_link *l;
        int r;

        if (!p)
                return nm_error_set(err, -ENXIO,
                                    "unknown peer \"%s\": no [peer %s] section in the configuration",
                                    peer_name, peer_name);
        /* Checked again here: a key made readable since we started is one
         * someone else may now hold. */
        r = agent_check_file(a->cfg.ssh_key, "SSH key", AGENT_FILE_SECRET, err);
        if (r < 0)
                return r;
        l = calloc(1, sizeof(*l));
        if (!l)
                return nm_error_set(err, -ENOMEM, "out of memory");
        *l = (peer_link){.a = a, .ops = ops, .ud = ud, .state = LINK_CONNECTING, .thread = thread};
        /* Without the kernel's randomness the base is guessable: a peer
         * could answer PINGs it never read, as it always could before. */
        if (getrandom(&l->ping_base, sizeof(l->ping_base), 0) != sizeof(l->ping_base))
                l->ping_base = 0;
        /* A seq is at most INT64_MAX on the wire (proto's U64): 62 random
         * bits, and room to count. */
        l->ping_base &= (UINT64_C(1) << 62) - 1;
        snprintf(l->peer, sizeof(l->peer), "%s", p->name);
        snprintf(l->ctx, sizeof(l->ctx), "%s", log_ctx ? log_ctx : p->name);
        xfer_ssh_options o = {
                .host = p->host,
                .port = p->port,
                .user = p->user ? p->user : a->cfg.ssh_user,
                .key_file = a->cfg.ssh_key,
                .known_hosts = a->cfg.known_hosts,
                .accept_new = a->cfg.accept_new,
                .connect_timeout_ms = (uint64_t)a->cfg.connect_timeout_s * 1000,
                .thread = thread,
        };
        r = xfer_session_new(a->loop, &o, err, &l->session);
        if (r < 0) {
                free(l);
                return r;
        }
        uv_timer_init(a->loop, &l->ping);
        l->ping.data = l;
        r = xfer_session_connect(l->session, on_connected, l);
        if (r < 0) {
                nm_error_set(err, r, "cannot connect to %s (%s)", p->name, p->host);
                l->closed_reported = true;
                l->state = LINK_CLOSING;
                xfer_session_close(l->session, session_closed, l);
                return r;
        }
        *ret = l;
        return 0;
}

int peer_link_send(peer_link *l, const proto_msg *m, nm_error *err) {
        if (l->state != LINK_READY || !l->conn)
                return nm_error_set(err, -ENOTCONN, "the link to %s is not open", l->peer);
        return xfer_conn_send(l->conn, m, err);
}

int peer_link_ask(peer_link *l, const proto_msg *q, nm_error *err) {
        int r = peer_link_send(l, q, err);

        if (r < 0)
                return r;
        question_open(l, q->type);
        ping_arm(l);
        return 0;
}

void peer_link_answered(peer_link *l) {
        l->question = LINK_QUESTION_NONE;
}

xfer_conn *peer_link_conn(peer_link *l) {
        return l->state == LINK_READY ? l->conn : NULL;
}

void peer_link_close(peer_link *l, int status, const nm_error *err) {
        link_shutdown(l, status, err);
}

void peer_link_detach(peer_link *l) {
        l->ops = NULL;
        link_shutdown(l, -ECANCELED, NULL);
}
