/* SPDX-License-Identifier: Apache-2.0 */
/* The control socket: the local CLI and, through `nucleus-agent dial-stdio`
 * over SSH, peer agents. Each connection says who it is with HELLO first;
 * the kernel says who it really is (SO_PEERCRED): root may do anything, the
 * migration user only speak as a peer, anyone else is turned away. */
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "drain.h"
#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "mig.h"
#include "resolve.h"

#define CTL_MAX_CONNS 256
/* Beyond the cap, root (the operator's CLI) still gets this many: a flood
 * through dial-stdio never locks the operator out. */
#define CTL_ROOT_RESERVE 16
#define CTL_HELLO_TIMEOUT_MS 10000
/* Sessions one peer key may hold at once: a flood through one key never
 * takes every connection from the other peers. */
#define CTL_PEER_SESSIONS_MAX 64
/* Refusals are logged at most this often (with a count): a flood of
 * connections must not become a flood of log lines. */
#define CTL_REFUSE_LOG_INTERVAL_MS 1000

static unsigned n_conns;
static uint64_t n_sessions;

/* ---- requests from the CLI ---- */

static bool cli_may_change(ctl_conn *cc) {
        if (cc->cred.uid == 0)
                return true;
        ctl_send_error(cc, NULL, -EPERM, "only root may move, drain or cordon");
        return false;
}

/* ---- a CLI watching its migration ---- */

static void watch_progress(void *ud, const proto_event *ev) {
        (void)ctl_send(ud, &(proto_msg){.type = PROTO_MSG_EVENT, .event = *ev});
}

/* The CLI gets one RESULT: the first answer (committed, in doubt) or the
 * end. */
static void watch_answer(void *ud, const char *mig_id, json_t *doc) {
        ctl_conn *cc = ud;
        if (cc->answered)
                return;
        cc->answered = true;
        ctl_send_result(cc, mig_id, doc);
}

static void watch_finished(void *ud, const char *mig_id, json_t *doc) {
        ctl_conn *cc = ud;
        cc->watch = NULL;
        if (doc)
                watch_answer(cc, mig_id, doc);
}

static const mig_watch_ops cli_watch = {
        .progress = watch_progress,
        .answer = watch_answer,
        .finished = watch_finished,
};

static void cli_migrate(ctl_conn *cc, const proto_migrate *req) {
        char id[PROTO_ID_MAX + 1] = "";
        nm_error err = {};

        if (!cli_may_change(cc))
                return;
        /* The session watches one migration: a second would outlive it. */
        if (cc->watch) {
                ctl_send_error(cc, NULL, -EBUSY, "this session watches a migration already");
                return;
        }
        if (mig_src_start(cc->a, req, &cli_watch, cc, id, &err) < 0) {
                /* -EOPNOTSUPP: what cannot move (gVisor), refused as the
                 * drain reports it; anything else did not start. */
                const char *outcome = err.code == -EOPNOTSUPP ? "refused" : "failed";
                json_t *doc = json_pack("{s:s, s:s?, s:s, s:i, s:s}", "outcome", outcome, "container",
                                        req->container, "target", req->target, "errno", -err.code, "error",
                                        err.msg);
                ctl_send_result(cc, NULL, doc);
                json_decref(doc);
                return;
        }
        /* It ends from the loop, later: never before this returns. */
        cc->watch = mig_find(cc->a, id);
}

static void cli_request(ctl_conn *cc, const proto_msg *msg) {
        agent *a = cc->a;
        nm_error err = {};
        json_t *doc;

        switch ((int)msg->type) { /* most types are invalid here: default handles them */
        case PROTO_MSG_MIGRATE: cli_migrate(cc, &msg->migrate); return;
        case PROTO_MSG_DRAIN:
                if (cli_may_change(cc) && drain_start(a, cc, &msg->drain, &err) < 0)
                        ctl_send_error(cc, NULL, err.code, err.msg);
                return;
        case PROTO_MSG_CORDON:
                if (!cli_may_change(cc))
                        return;
                if (cordon_set(a, msg->cordon.on, &err) < 0) {
                        ctl_send_error(cc, NULL, err.code, err.msg);
                        return;
                }
                doc = json_pack("{s:s, s:b}", "node", a->cfg.node, "cordoned", a->cordoned);
                ctl_send_result(cc, NULL, doc);
                json_decref(doc);
                return;
        case PROTO_MSG_RESOLVE:
                if (cli_may_change(cc) && resolve_start(cc, &msg->resolve, &err) < 0)
                        ctl_send_error(cc, msg->resolve.mig, err.code, err.msg);
                return;
        case PROTO_MSG_STATUS:
                doc = status_doc(a, msg->status.ref, msg->status.has_since ? (int64_t)msg->status.since : 0);
                ctl_send_result(cc, NULL, doc);
                json_decref(doc);
                return;
        case PROTO_MSG_LIST:
                doc = list_doc(a);
                ctl_send_result(cc, NULL, doc);
                json_decref(doc);
                return;
        default: break;
        }
        ctl_send_error(cc, NULL, -EPROTO, "not a request a CLI can make");
}

/* ---- who the peer is ---- */

static void log_refusal(agent *a, const char *why);

/* Ends a connection that may not go on, with the reason for it and the
 * log (refusals in a burst summed up, as at accept). */
static void ctl_refuse(ctl_conn *cc, int code, const char *fmt, ...) _printf_(3, 4);
static void ctl_refuse(ctl_conn *cc, int code, const char *fmt, ...) {
        nm_error err = {};
        va_list ap;
        char msg[512], why[640];

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        nm_error_set(&err, code, "%s", msg);
        snprintf(why, sizeof(why), "session %llu (uid %u, pid %d): %s", (unsigned long long)cc->session,
                 (unsigned)cc->cred.uid, (int)cc->cred.pid, msg);
        log_refusal(cc->a, why);
        ctl_send_error(cc, NULL, code, msg);
        xfer_conn_close(cc->conn, 0, &err);
}

static unsigned peer_sessions(agent *a, const char *peer) {
        unsigned n = 0;
        ctl_conn *cc;
        LIST_FOREACH(conns, cc, a->conns)
        n += cc->relayed && strcmp(cc->key_peer, peer) == 0;
        return n;
}

/* The migration user speaks only through dial-stdio, which speaks first:
 * its RELAY frame, not the peer's HELLO, says whose key this is. Root (the
 * operator, or dial-stdio run by hand) may leave it out. */
static bool relay_required(const ctl_conn *cc) {
        return cc->cred.uid != 0 && cc->cred.uid == cc->a->peer_uid && cc->cred.uid != getuid();
}

static void on_relay(ctl_conn *cc, const proto_relay *r) {
        const agent_peer *p = r->peer ? agent_config_peer(&cc->a->cfg, r->peer) : NULL;

        if (r->peer && (!p || strcmp(p->name, r->peer) != 0)) {
                ctl_refuse(cc, -EPERM,
                           "the key's forced command names peer \"%s\", which is not a [peer] of %s",
                           r->peer, cc->a->cfg.node);
                return;
        }
        if (!r->peer && relay_required(cc)) {
                ctl_refuse(cc, -EPERM,
                           "this peer key's forced command does not name its peer (dial-stdio --peer NAME): "
                           "import the peer's bundle again with nucleus-provision");
                return;
        }
        if (r->peer && peer_sessions(cc->a, r->peer) >= CTL_PEER_SESSIONS_MAX) {
                char why[256];
                nm_error err = {};
                snprintf(why, sizeof(why), "peer %s holds %u sessions already, refusing more (pid %d)",
                         r->peer, CTL_PEER_SESSIONS_MAX, (int)cc->cred.pid);
                log_refusal(cc->a, why);
                nm_error_set(&err, -EBUSY, "peer %s holds %u sessions on %s already; try again later",
                             r->peer, CTL_PEER_SESSIONS_MAX, cc->a->cfg.node);
                ctl_send_error(cc, NULL, err.code, err.msg);
                xfer_conn_close(cc->conn, 0, &err);
                return;
        }
        cc->relayed = true;
        snprintf(cc->key_peer, sizeof(cc->key_peer), "%s", r->peer ? r->peer : "");
}

static const xfer_conn_callbacks conn_cbs;

/* dial-stdio handed the SSH session's pipes over: the session is read and
 * written here from now on, and the socket only tells dial-stdio when it
 * ends. A refusal after this reaches the peer itself. */
static int take_session(ctl_conn *cc) {
        xfer_conn *session;
        nm_error err = {};

        if (xfer_conn_take_relay(cc->conn, &conn_cbs, cc, &err, &session) < 0) {
                /* dial-stdio relays instead, on a connection of its own */
                ctl_send_error(cc, NULL, err.code, err.msg);
                xfer_conn_close(cc->conn, 0, &err);
                return -1;
        }
        cc->conn = session;
        xfer_conn_set_idle_timeout(session, CTL_HELLO_TIMEOUT_MS);
        log_debug("session %llu: dial-stdio (pid %d) handed the SSH session over",
                  (unsigned long long)cc->session, (int)cc->cred.pid);
        return 0;
}

/* ---- HELLO ---- */

static void on_hello(ctl_conn *cc, const proto_hello *h) {
        agent *a = cc->a;
        proto_hello ours = {.version = PROTO_VERSION, .min_version = PROTO_MIN_VERSION};
        uint32_t version;
        nm_error err = {};

        if (proto_version_negotiate(&ours, h, &version, &err) < 0) {
                ctl_send_error(cc, NULL, err.code, err.msg);
                xfer_conn_close(cc->conn, 0, &err);
                return;
        }
        if (h->role == PROTO_ROLE_PEER && cc->cred.uid != 0 && cc->cred.uid != a->peer_uid) {
                nm_error_set(&err, -EPERM, "uid %u may not speak as a peer", (unsigned)cc->cred.uid);
                ctl_send_error(cc, NULL, err.code, err.msg);
                xfer_conn_close(cc->conn, 0, &err);
                return;
        }
        /* The migration user is what a peer's SSH key runs as: it may only
         * speak as a peer, never ask for what the operator asks. */
        if (h->role == PROTO_ROLE_CLI && cc->cred.uid != 0 && cc->cred.uid != getuid()) {
                log_warning("control socket: refusing a CLI session from uid %u (pid %d): %s",
                            (unsigned)cc->cred.uid, (int)cc->cred.pid,
                            cc->cred.uid == a->peer_uid ? "the migration user may only speak as a peer"
                                                        : "not root");
                nm_error_set(&err, -EPERM, "uid %u may not use nucleus-migrate on %s: only root may%s",
                             (unsigned)cc->cred.uid, a->cfg.node,
                             cc->cred.uid == a->peer_uid ? " (it is the migration user, a peer's identity)"
                                                         : "");
                ctl_send_error(cc, NULL, err.code, err.msg);
                xfer_conn_close(cc->conn, 0, &err);
                return;
        }
        if (h->role == PROTO_ROLE_PEER && relay_required(cc) && !cc->relayed) {
                ctl_refuse(cc, -EPERM, "a peer session of the migration user must come through dial-stdio");
                return;
        }
        /* The key decides who this is: a HELLO that claims another node is
         * someone speaking for a peer they are not. */
        if (cc->key_peer[0] && (h->role != PROTO_ROLE_PEER || strcmp(h->node, cc->key_peer) != 0)) {
                ctl_refuse(cc, -EPERM, "this session's key belongs to peer %s, but its HELLO says %s \"%s\"",
                           cc->key_peer, proto_role_to_string(h->role), h->node);
                return;
        }
        cc->hello_done = true;
        cc->role = h->role;
        snprintf(cc->peer_node, sizeof(cc->peer_node), "%s", cc->key_peer[0] ? cc->key_peer : h->node);
        cc->features = peer_features_of(h);
        snprintf(cc->key_id, sizeof(cc->key_id), "%s", strempty(h->key_id));
        xfer_conn_set_idle_timeout(cc->conn,
                                   h->role == PROTO_ROLE_PEER ? (uint64_t)a->cfg.idle_timeout_s * 1000 : 0);
        if (h->role == PROTO_ROLE_PEER && fault_peer_hello(a, cc->conn))
                return;
        proto_msg reply = {.type = PROTO_MSG_HELLO,
                           .hello = {.version = PROTO_VERSION,
                                     .min_version = PROTO_MIN_VERSION,
                                     .node = a->cfg.node,
                                     .role = PROTO_ROLE_PEER,
                                     .features = peer_features_offered(),
                                     .key_id = a->key_id}};
        (void)ctl_send(cc, &reply);
        log_debug("%s session %llu from %s (uid %u%s)", proto_role_to_string(h->role),
                  (unsigned long long)cc->session, cc->peer_node, (unsigned)cc->cred.uid,
                  cc->key_peer[0] ? ", the peer's key" : "");
}

static void conn_message(xfer_conn *c, const proto_msg *msg, void *ud) {
        ctl_conn *cc = ud;
        nm_error err = {};
        (void)c;

        if (!cc)
                return;
        /* Only dial-stdio's own first frame says who the peer is. */
        if (msg->type == PROTO_MSG_RELAY || msg->type == PROTO_MSG_RELAY_FDS) {
                if (cc->frames++ != 0) {
                        ctl_refuse(cc, -EPERM, "RELAY is dial-stdio's first frame, never the peer's");
                        return;
                }
                if (msg->type == PROTO_MSG_RELAY_FDS && take_session(cc) < 0)
                        return;
                on_relay(cc, &msg->relay);
                return;
        }
        cc->frames++;
        if (!cc->hello_done) {
                if (msg->type != PROTO_MSG_HELLO) {
                        nm_error_set(&err, -EPROTO, "expected HELLO, got %s",
                                     strna(proto_msg_type_to_string(msg->type)));
                        ctl_send_error(cc, NULL, err.code, err.msg);
                        xfer_conn_close(cc->conn, 0, &err);
                        return;
                }
                on_hello(cc, &msg->hello);
                return;
        }
        if (msg->type == PROTO_MSG_PING) {
                proto_msg pong = {.type = PROTO_MSG_PONG, .pong = msg->ping};
                (void)ctl_send(cc, &pong);
                return;
        }
        if (msg->type == PROTO_MSG_PONG || msg->type == PROTO_MSG_HELLO)
                return;
        if (cc->role == PROTO_ROLE_CLI) {
                cli_request(cc, msg);
                return;
        }
        if (msg->type == PROTO_MSG_DATA || msg->type == PROTO_MSG_PS_PAGES)
                fault_peer_bytes(cc->a, cc->conn);
        peer_dispatch(cc, msg);
}

static void conn_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        ctl_conn *cc = ud;
        if (!cc)
                return;
        if (status < 0 && err && err->code)
                log_debug("%s session from %s ended: %s", proto_role_to_string(cc->role), cc->peer_node,
                          err->msg);
        fault_peer_closed(c);
        if (cc->hello_done && cc->role == PROTO_ROLE_PEER)
                peer_session_closed(cc, status, err);
        if (cc->watch)
                mig_watch_remove(cc->watch, cc);
        if (cc->drain)
                drain_cli_gone(cc->drain);
        if (cc->resolver)
                resolve_cli_gone(cc->resolver);
        LIST_REMOVE(conns, cc->a->conns, cc);
        n_conns--;
        free(cc);
}

static const xfer_conn_callbacks conn_cbs = {.message = conn_message, .closed = conn_closed};

/* Tells a connection we will not serve why, best effort (its socket buffer
 * is empty: a small frame fits), before it is closed. */
static void refuse_with(uv_os_fd_t fd, int code, const char *reason) {
        proto_msg e = {.type = PROTO_MSG_ERROR, .error = {.code = code, .reason = reason}};
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;

        if (proto_encode(&e, &buf, &len, NULL) >= 0)
                (void)!send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Refusals in a burst: the first is logged at once, the rest are counted
 * and summed up once the interval has passed. */
static struct {
        uv_timer_t timer;
        bool timer_open;
        uint64_t last_ms;
        unsigned suppressed;
        char last[256];
} refusals;

static void refusals_flush(uv_timer_t *t) {
        (void)t;
        if (refusals.suppressed)
                log_warning("control socket: %u more refusals in the last %u ms; the last: %s",
                            refusals.suppressed, CTL_REFUSE_LOG_INTERVAL_MS, refusals.last);
        refusals.suppressed = 0;
}

static void log_refusal(agent *a, const char *why) {
        uint64_t now = uv_now(a->loop);

        if (refusals.last_ms && now - refusals.last_ms < CTL_REFUSE_LOG_INTERVAL_MS) {
                if (refusals.suppressed++ == 0 && refusals.timer_open)
                        (void)uv_timer_start(&refusals.timer, refusals_flush,
                                             refusals.last_ms + CTL_REFUSE_LOG_INTERVAL_MS - now, 0);
                snprintf(refusals.last, sizeof(refusals.last), "%s", why);
                return;
        }
        refusals_flush(NULL);
        log_warning("control socket: %s", why);
        refusals.last_ms = now;
}

/* Who may connect at all: root, the migration user (dial-stdio), and the
 * agent's own uid; the connection cap leaves room for root. */
static bool conn_admit(agent *a, const struct ucred *cred, uv_os_fd_t fd) {
        char why[256];

        if (cred->uid != 0 && cred->uid != a->peer_uid && cred->uid != getuid()) {
                snprintf(why, sizeof(why), "refusing uid %u (pid %d): not root or the migration user",
                         (unsigned)cred->uid, (int)cred->pid);
                log_refusal(a, why);
                snprintf(why, sizeof(why), "uid %u may not use the nucleus-migrate agent on %s",
                         (unsigned)cred->uid, a->cfg.node);
                refuse_with(fd, -EPERM, why);
                return false;
        }
        if (n_conns >= CTL_MAX_CONNS + (cred->uid == 0 ? CTL_ROOT_RESERVE : 0)) {
                snprintf(why, sizeof(why), "%u connections open, refusing more (uid %u, pid %d)", n_conns,
                         (unsigned)cred->uid, (int)cred->pid);
                log_refusal(a, why);
                snprintf(why, sizeof(why), "the agent on %s serves %u connections already; try again later",
                         a->cfg.node, n_conns);
                refuse_with(fd, -EBUSY, why);
                return false;
        }
        return true;
}

static void on_connection(uv_stream_t *server, int status) {
        agent *a = server->data;
        uv_pipe_t *client;
        ctl_conn *cc;
        socklen_t len = sizeof(struct ucred);
        nm_error err = {};
        uv_os_fd_t fd;

        if (status < 0) {
                log_warning("control socket: accept failed: %s", uv_strerror(status));
                return;
        }
        client = malloc(sizeof(*client));
        cc = calloc(1, sizeof(*cc));
        if (!client || !cc) {
                free(client);
                free(cc);
                return;
        }
        /* ipc: dial-stdio may attach the SSH session's pipes (RELAY_FDS);
         * fds that come with anything else are closed (conn-stream.c). */
        uv_pipe_init(a->loop, client, 1);
        if (uv_accept(server, (uv_stream_t *)client) < 0 || uv_fileno((uv_handle_t *)client, &fd) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cc->cred, &len) < 0 || !conn_admit(a, &cc->cred, fd)) {
                free(cc);
                uv_close((uv_handle_t *)client, (uv_close_cb)free);
                return;
        }
        cc->a = a;
        cc->session = ++n_sessions;
        if (xfer_conn_new_stream((uv_stream_t *)client, &conn_cbs, cc, &err, &cc->conn) < 0) {
                log_warning("control socket: %s", err.msg);
                free(cc);
                return;
        }
        /* A connection must say HELLO promptly; idle ones are cut. */
        xfer_conn_set_idle_timeout(cc->conn, CTL_HELLO_TIMEOUT_MS);
        LIST_PREPEND(conns, a->conns, cc);
        n_conns++;
}

/* A socket file left by a previous agent is removed; one that still answers
 * belongs to a running agent, and we refuse to steal it. */
static int remove_stale_socket(const char *path, nm_error *err) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;
        int fd, r;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : nm_error_errno(err, negative_errno(), "cannot stat %s", path);
        if (!S_ISSOCK(st.st_mode))
                return nm_error_set(err, -EEXIST, "%s exists and is not a socket", path);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return nm_error_errno(err, negative_errno(), "socket");
        r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        if (r == 0)
                return nm_error_set(err, -EADDRINUSE, "another agent is listening on %s", path);
        if (unlink(path) < 0)
                return nm_error_errno(err, negative_errno(), "cannot remove stale %s", path);
        return 0;
}

static int socket_permissions(agent *a, nm_error *err) {
        gid_t gid = 0;
        if (a->cfg.socket_group) {
                struct group *g = getgrnam(a->cfg.socket_group);
                if (!g)
                        return nm_error_set(err, -ENOENT, "socket group \"%s\" does not exist",
                                            a->cfg.socket_group);
                gid = g->gr_gid;
        }
        if (chown(a->cfg.socket, 0, gid) < 0 && getuid() == 0)
                return nm_error_errno(err, negative_errno(), "cannot chown %s", a->cfg.socket);
        if (chmod(a->cfg.socket, a->cfg.socket_group ? 0660 : 0600) < 0)
                return nm_error_errno(err, negative_errno(), "cannot chmod %s", a->cfg.socket);
        return 0;
}

int ctl_listen(agent *a, nm_error *err) {
        _cleanup_free_ char *dir = strdup(a->cfg.socket);
        struct passwd *pw = getpwnam(a->cfg.ssh_user);
        char *slash;
        int r;

        a->peer_uid = pw ? pw->pw_uid : (uid_t)-1;
        if (!dir)
                return nm_error_set(err, -ENOMEM, "out of memory");
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                /* An existing directory keeps the mode provisioning gave it
                 * (0750 root:nucleus, so that dial-stdio can reach us). */
                if (access(dir, F_OK) < 0) {
                        _cleanup_close_ int dfd = mkdir_p_secure(dir, 0755);
                        if (dfd < 0)
                                return nm_error_errno(err, dfd, "cannot create %s", dir);
                }
        }
        r = remove_stale_socket(a->cfg.socket, err);
        if (r < 0)
                return r;
        uv_pipe_init(a->loop, &a->listener, 0);
        a->listener_open = true;
        a->listener.data = a;
        r = uv_pipe_bind(&a->listener, a->cfg.socket);
        if (r < 0)
                return nm_error_set(err, r, "cannot bind %s: %s", a->cfg.socket, uv_strerror(r));
        r = socket_permissions(a, err);
        if (r < 0)
                return r;
        (void)uv_timer_init(a->loop, &refusals.timer);
        refusals.timer_open = true;
        r = uv_listen((uv_stream_t *)&a->listener, 128, on_connection);
        if (r < 0)
                return nm_error_set(err, r, "cannot listen on %s: %s", a->cfg.socket, uv_strerror(r));
        return 0;
}

void ctl_close_all(agent *a) {
        ctl_conn *cc, *n;
        if (refusals.timer_open) {
                refusals_flush(NULL);
                refusals.timer_open = false;
                uv_close((uv_handle_t *)&refusals.timer, NULL);
        }
        if (a->listener_open && !uv_is_closing((uv_handle_t *)&a->listener)) {
                uv_close((uv_handle_t *)&a->listener, NULL);
                (void)unlink(a->cfg.socket);
        }
        LIST_FOREACH_SAFE(conns, cc, n, a->conns)
        xfer_conn_close(cc->conn, 0, NULL);
}
