/* SPDX-License-Identifier: Apache-2.0 */
/* An SSH client session on the caller's libuv loop.
 *
 * libssh2 runs in non-blocking mode on a socket we connect ourselves; one
 * uv_poll_t watches that socket for its whole life (TCP connect, handshake,
 * channels), and after every LIBSSH2_ERROR_EAGAIN it is re-armed for the
 * directions libssh2_session_block_directions() reports. Everything that has
 * to happen "soon" (a queued message, a close) goes through a zero-delay
 * timer, so that no callback ever runs from inside a public call. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "transfer-internal.h"

/* How long a closing session may spend saying goodbye before its socket is
 * shut down under it. */
#define XFER_CLOSE_TIMEOUT_MS 2000
#define XFER_DEFAULT_CONNECT_TIMEOUT_MS 30000

typedef enum xfer_session_state {
        XFER_SESSION_NEW,
        XFER_SESSION_RESOLVING,
        XFER_SESSION_TCP_CONNECT,
        XFER_SESSION_HANDSHAKE,
        XFER_SESSION_AUTH,
        XFER_SESSION_READY,
        XFER_SESSION_FAILED,
        XFER_SESSION_CLOSING,
        _XFER_SESSION_STATE_MAX,
        _XFER_SESSION_STATE_INVALID = -EINVAL,
} xfer_session_state;

typedef enum xfer_exec_state {
        XFER_EXEC_NONE,
        XFER_EXEC_OPEN,
        XFER_EXEC_START,
        _XFER_EXEC_STATE_MAX,
        _XFER_EXEC_STATE_INVALID = -EINVAL,
} xfer_exec_state;

typedef enum xfer_close_phase {
        XFER_CLOSE_CHANNELS,
        XFER_CLOSE_DISCONNECT,
        XFER_CLOSE_FREE,
        XFER_CLOSE_HANDLES,
        _XFER_CLOSE_PHASE_MAX,
        _XFER_CLOSE_PHASE_INVALID = -EINVAL,
} xfer_close_phase;

struct xfer__ssh_loop {
        xfer_session *outer; /* what the callbacks are given */
        uv_loop_t *loop;
        char *host, *user, *key_file, *pub_file, *known_hosts;
        uint16_t port;
        bool accept_new;
        uint64_t connect_timeout_ms;

        xfer_session_state state;
        xfer_ssh_io io; /* what the channels share: libssh2 session, send token, kick */
        int fd;
        bool handshaken;

        uv_poll_t poll;
        bool poll_inited;
        int poll_events;
        uv_timer_t timer; /* connect, exec and close deadlines */
        uv_getaddrinfo_t gai;
        bool gai_pending;
        struct addrinfo *addrs, *next_addr;
        char addr_str[INET6_ADDRSTRLEN + 8];
        int connect_errno;

        xfer_session_connect_cb connect_cb;
        void *connect_ud;

        xfer_exec_state exec_state;
        LIBSSH2_CHANNEL *exec_ch;
        char *exec_cmd;
        xfer_conn_callbacks exec_cbs;
        void *exec_conn_ud;
        xfer_session_exec_cb exec_cb;
        void *exec_ud;

        bool in_step;

        xfer_close_phase close_phase; /* while CLOSING */
        bool close_forced;
        unsigned handles_open;
        xfer_session_close_cb close_cb;
        void *close_ud;

        char fingerprint[128];
        nm_error err;
};

static void session_step(xfer__ssh_loop *s);
static void session_close_continue(xfer__ssh_loop *s);

const char *xfer__ssh_loop_fingerprint(const xfer__ssh_loop *s) {
        return s->fingerprint[0] ? s->fingerprint : NULL;
}

static void kick_cb(uv_timer_t *t) {
        session_step(container_of(t, xfer__ssh_loop, io.kick));
}

/* A channel (or the session itself) hit a socket error. */
static void session_lost(xfer_ssh_io *io) {
        xfer__ssh_loop *s = container_of(io, xfer__ssh_loop, io);

        if (s->state != XFER_SESSION_CLOSING)
                s->state = XFER_SESSION_FAILED;
}

static char *strdup_or_null(const char *p, bool *oom) {
        char *c;
        if (!p)
                return NULL;
        c = strdup(p);
        if (!c)
                *oom = true;
        return c;
}

static void session_free_memory(xfer__ssh_loop *s) {
        free(s->host);
        free(s->user);
        free(s->key_file);
        free(s->pub_file);
        free(s->known_hosts);
        free(s->exec_cmd);
        if (s->addrs)
                freeaddrinfo(s->addrs);
        free(s);
}

int xfer__ssh_loop_new(uv_loop_t *loop, const xfer_ssh_options *o, xfer_session *outer,
                       xfer__ssh_loop **ret) {
        xfer__ssh_loop *s;
        bool oom = false;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->outer = outer;
        s->loop = loop;
        s->fd = -EBADF;
        s->host = strdup_or_null(o->host, &oom);
        s->user = strdup_or_null(o->user ? o->user : "root", &oom);
        s->key_file = strdup_or_null(o->key_file, &oom);
        s->known_hosts = strdup_or_null(o->known_hosts, &oom);
        if (!oom && asprintf(&s->pub_file, "%s.pub", o->key_file) < 0) {
                s->pub_file = NULL;
                oom = true;
        }
        if (oom) {
                session_free_memory(s);
                return -ENOMEM;
        }
        s->port = o->port ? o->port : 22;
        s->accept_new = o->accept_new;
        s->connect_timeout_ms =
                o->connect_timeout_ms ? o->connect_timeout_ms : XFER_DEFAULT_CONNECT_TIMEOUT_MS;
        /* The timers live as long as the session; the poll is per socket. */
        (void)uv_timer_init(loop, &s->timer);
        (void)uv_timer_init(loop, &s->io.kick);
        s->handles_open = 2;
        s->io.loop = loop;
        s->io.host = s->host;
        s->io.step = kick_cb;
        s->io.lost = session_lost;
        *ret = s;
        return 0;
}

/* ---- connect ---------------------------------------------------------- */

static void connect_done(xfer__ssh_loop *s, int status) {
        xfer_session_connect_cb cb = s->connect_cb;

        s->connect_cb = NULL;
        (void)uv_timer_stop(&s->timer);
        if (status < 0 && s->state != XFER_SESSION_CLOSING)
                s->state = XFER_SESSION_FAILED;
        if (cb)
                cb(s->outer, status, status < 0 ? &s->err : NULL, s->connect_ud);
}

static int connect_fail(xfer__ssh_loop *s, int code, const char *fmt, ...) _printf_(3, 4);
static int connect_fail(xfer__ssh_loop *s, int code, const char *fmt, ...) {
        char msg[NM_ERROR_MSG_MAX - 64];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        nm_error_set(&s->err, code, "%s", msg);
        connect_done(s, code);
        return code;
}

static void connect_timeout_cb(uv_timer_t *t) {
        xfer__ssh_loop *s = container_of(t, xfer__ssh_loop, timer);

        if (s->state < XFER_SESSION_READY && s->connect_cb) {
                nm_error_set(&s->err, -ETIMEDOUT,
                             "SSH connection to %s port %u timed out after %llu ms (while %s)", s->host,
                             s->port, (unsigned long long)s->connect_timeout_ms,
                             s->state == XFER_SESSION_RESOLVING     ? "resolving the name"
                             : s->state == XFER_SESSION_TCP_CONNECT ? "connecting"
                             : s->state == XFER_SESSION_HANDSHAKE   ? "in the SSH handshake"
                                                                    : "authenticating");
                /* Stop watching the socket: a failed session only waits for close. */
                if (s->poll_inited)
                        (void)uv_poll_stop(&s->poll);
                s->poll_events = 0;
                connect_done(s, -ETIMEDOUT);
        } else if (s->exec_state != XFER_EXEC_NONE && s->exec_cb) {
                xfer_session_exec_cb cb = s->exec_cb;
                nm_error e = {};
                s->exec_cb = NULL;
                s->exec_state = XFER_EXEC_NONE;
                /* A half-open channel is left to libssh2_session_free(). */
                s->exec_ch = NULL;
                nm_error_set(&e, -ETIMEDOUT, "opening an SSH channel to %s timed out after %llu ms", s->host,
                             (unsigned long long)s->connect_timeout_ms);
                cb(s->outer, -ETIMEDOUT, &e, NULL, s->exec_ud);
        }
}

static void poll_cb(uv_poll_t *p, int status, int events);

static void attempt_closed_cb(uv_handle_t *h);
static void try_next_address(xfer__ssh_loop *s);

static int describe_addr(const struct addrinfo *ai, char *buf, size_t size) {
        char ip[INET6_ADDRSTRLEN];
        const void *a = ai->ai_family == AF_INET6
                                ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                                : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        if (!inet_ntop(ai->ai_family, a, ip, sizeof(ip)))
                snprintf(ip, sizeof(ip), "?");
        snprintf(buf, size, "%s", ip);
        return 0;
}

/* Ends one failed TCP attempt: the poll handle must be closed before the fd
 * it watches, and the next address tried only after that. */
static void attempt_failed(xfer__ssh_loop *s, int code) {
        s->connect_errno = code;
        if (s->poll_inited) {
                (void)uv_poll_stop(&s->poll);
                uv_close((uv_handle_t *)&s->poll, attempt_closed_cb);
                return;
        }
        if (s->fd >= 0)
                close(TAKE_FD(s->fd));
        try_next_address(s);
}

static void attempt_closed_cb(uv_handle_t *h) {
        xfer__ssh_loop *s = container_of((uv_poll_t *)h, xfer__ssh_loop, poll);

        s->poll_inited = false;
        s->handles_open--;
        if (s->fd >= 0)
                close(TAKE_FD(s->fd));
        if (s->state == XFER_SESSION_CLOSING) {
                session_close_continue(s);
                return;
        }
        if (!s->connect_cb)
                return; /* timed out meanwhile */
        try_next_address(s);
}

static int connect_errno_message(xfer__ssh_loop *s, int code) {
        switch (code) {
        case -ECONNREFUSED:
                return connect_fail(s, code,
                                    "connection to %s (%s) port %u refused: no SSH server listening there",
                                    s->host, s->addr_str, s->port);
        case -EHOSTUNREACH:
        case -ENETUNREACH:
        case -EADDRNOTAVAIL:
                return connect_fail(s, code, "host %s (%s) port %u is unreachable: %s", s->host, s->addr_str,
                                    s->port, strerror(-code));
        case -ETIMEDOUT:
                return connect_fail(s, code, "connection to %s (%s) port %u timed out", s->host, s->addr_str,
                                    s->port);
        default:
                return connect_fail(s, code, "cannot connect to %s (%s) port %u: %s", s->host, s->addr_str,
                                    s->port, strerror(-code));
        }
}

static void try_next_address(xfer__ssh_loop *s) {
        for (; s->next_addr; s->next_addr = s->next_addr->ai_next) {
                const struct addrinfo *ai = s->next_addr;
                int one = 1, r;

                describe_addr(ai, s->addr_str, sizeof(s->addr_str));
                s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (s->fd < 0) {
                        s->connect_errno = negative_errno();
                        continue;
                }
                (void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                if (connect(s->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
                        s->connect_errno = negative_errno();
                        close(TAKE_FD(s->fd));
                        continue;
                }
                s->next_addr = ai->ai_next;
                r = uv_poll_init_socket(s->loop, &s->poll, s->fd);
                if (r < 0) {
                        close(TAKE_FD(s->fd));
                        connect_fail(s, r, "cannot watch the socket to %s: %s", s->host, uv_strerror(r));
                        return;
                }
                s->poll_inited = true;
                s->handles_open++;
                s->state = XFER_SESSION_TCP_CONNECT;
                s->poll_events = UV_WRITABLE;
                (void)uv_poll_start(&s->poll, UV_WRITABLE, poll_cb);
                return;
        }
        connect_errno_message(s, s->connect_errno ? s->connect_errno : -EHOSTUNREACH);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
        xfer__ssh_loop *s = container_of(req, xfer__ssh_loop, gai);

        s->gai_pending = false;
        s->addrs = res;
        if (s->state == XFER_SESSION_CLOSING) {
                session_close_continue(s);
                return;
        }
        if (!s->connect_cb)
                return; /* timed out meanwhile */
        if (status < 0) {
                connect_fail(s, status == UV_EAI_NONAME ? -EHOSTUNREACH : -EIO,
                             "cannot resolve host name %s: %s", s->host, uv_strerror(status));
                return;
        }
        s->next_addr = res;
        try_next_address(s);
}

int xfer__ssh_loop_connect(xfer__ssh_loop *s, xfer_session_connect_cb cb, void *userdata) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        char port[8];
        int r;

        if (s->state != XFER_SESSION_NEW)
                return -EALREADY;
        snprintf(port, sizeof(port), "%u", s->port);
        r = uv_getaddrinfo(s->loop, &s->gai, gai_cb, s->host, port, &hints);
        if (r < 0)
                return nm_error_set(&s->err, -EIO, "cannot resolve host name %s: %s", s->host,
                                    uv_strerror(r));
        s->gai_pending = true;
        s->connect_cb = cb;
        s->connect_ud = userdata;
        s->state = XFER_SESSION_RESOLVING;
        (void)uv_timer_start(&s->timer, connect_timeout_cb, s->connect_timeout_ms, 0);
        return 0;
}

/* ---- steps ---------------------------------------------------------------- */

static void step_handshake(xfer__ssh_loop *s) {
        int rc = libssh2_session_handshake(s->io.ssh, s->fd);
        if (rc == LIBSSH2_ERROR_EAGAIN) {
                xfer__ssh_blocked(&s->io);
                return;
        }
        if (rc != 0) {
                nm_error e = {};
                int code = xfer__ssh_error(&s->io, rc, &e, "SSH handshake");
                connect_fail(s, code == -ECONNRESET ? -ECONNRESET : -EPROTO,
                             "SSH handshake with %s (%s) port %u failed: %s", s->host, s->addr_str, s->port,
                             e.msg);
                return;
        }
        s->handshaken = true;
        (void)xfer__fingerprint(s->io.ssh, s->fingerprint, sizeof(s->fingerprint));
        rc = xfer__hostkey_check(s->io.ssh, s->host, s->port, s->known_hosts, s->accept_new, &s->err);
        if (rc < 0) {
                connect_done(s, rc);
                return;
        }
        if (access(s->key_file, R_OK) < 0) {
                connect_fail(s, -EACCES, "cannot read SSH key %s: %s", s->key_file, strerror(errno));
                return;
        }
        s->state = XFER_SESSION_AUTH;
}

static void step_auth(xfer__ssh_loop *s) {
        const char *pub = access(s->pub_file, R_OK) == 0 ? s->pub_file : NULL;
        int rc = libssh2_userauth_publickey_fromfile_ex(s->io.ssh, s->user, (unsigned)strlen(s->user), pub,
                                                        s->key_file, NULL);
        if (rc == LIBSSH2_ERROR_EAGAIN) {
                xfer__ssh_blocked(&s->io);
                return;
        }
        if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
                connect_fail(s, -EACCES, "%s refused public key authentication as %s with key %s (%s)",
                             s->host, s->user, s->key_file,
                             rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED ? "signature not accepted"
                                                                      : "key not authorized");
                return;
        }
        if (rc == LIBSSH2_ERROR_FILE) {
                connect_fail(s, -EINVAL, "cannot load SSH key %s (use an unencrypted ed25519 key)",
                             s->key_file);
                return;
        }
        if (rc != 0) {
                nm_error e = {};
                int code = xfer__ssh_error(&s->io, rc, &e, "authentication");
                connect_fail(s, code, "authenticating to %s as %s failed: %s", s->host, s->user, e.msg);
                return;
        }
        s->state = XFER_SESSION_READY;
        connect_done(s, 0);
}

static void exec_done(xfer__ssh_loop *s, int status, nm_error *e, xfer_conn *conn) {
        xfer_session_exec_cb cb = s->exec_cb;

        s->exec_cb = NULL;
        s->exec_state = XFER_EXEC_NONE;
        s->exec_ch = NULL;
        (void)uv_timer_stop(&s->timer);
        if (cb)
                cb(s->outer, status, e, conn, s->exec_ud);
}

static void step_exec(xfer__ssh_loop *s) {
        char remote[512];
        nm_error e = {};
        xfer_conn *conn = NULL;
        int rc;

        if (!xfer__ssh_may_send(&s->io, s))
                return; /* a channel's half-sent packet goes first */
        if (s->exec_state == XFER_EXEC_OPEN) {
                s->exec_ch = libssh2_channel_open_ex(s->io.ssh, "session", sizeof("session") - 1,
                                                     XFER_CHANNEL_WINDOW, LIBSSH2_CHANNEL_PACKET_DEFAULT,
                                                     NULL, 0);
                if (!s->exec_ch) {
                        rc = libssh2_session_last_errno(s->io.ssh);
                        if (rc == LIBSSH2_ERROR_EAGAIN) {
                                xfer__ssh_blocked_by(&s->io, s);
                                return;
                        }
                        xfer__ssh_unblocked(&s->io, s);
                        rc = xfer__ssh_error(&s->io, rc, &e, "opening an SSH channel");
                        exec_done(s, rc, &e, NULL);
                        return;
                }
                xfer__ssh_unblocked(&s->io, s);
                s->exec_state = XFER_EXEC_START;
        }
        rc = libssh2_channel_process_startup(s->exec_ch, "exec", sizeof("exec") - 1, s->exec_cmd,
                                             (unsigned)strlen(s->exec_cmd));
        if (rc == LIBSSH2_ERROR_EAGAIN) {
                xfer__ssh_blocked_by(&s->io, s);
                return;
        }
        xfer__ssh_unblocked(&s->io, s);
        if (rc != 0) {
                xfer__ssh_error(&s->io, rc, &e, "starting the remote command");
                nm_error_prefix(&e, "%s refused to run '%s'", s->host, s->exec_cmd);
                /* The channel is freed with the session. */
                exec_done(s, e.code, &e, NULL);
                return;
        }
        snprintf(remote, sizeof(remote), "'%s' on %s", s->exec_cmd, s->host);
        rc = xfer__channel_new(&s->io, s->exec_ch, remote, &s->exec_cbs, s->exec_conn_ud, &conn);
        if (rc < 0) {
                nm_error_errno(&e, rc, "cannot set up the channel to %s", s->host);
                exec_done(s, rc, &e, NULL);
                return;
        }
        exec_done(s, 0, NULL, conn);
}

/* Steps every channel connection, again while any makes progress: a read
 * may bring the window adjust a write waits for and the other way round.
 * The round limit keeps one busy session from starving the loop; a kick
 * continues the work on the next iteration. */
static void step_conns(xfer__ssh_loop *s) {
        for (int round = 0; round < 64; round++) {
                if (!xfer__channels_step(&s->io))
                        return;
                if (s->state == XFER_SESSION_CLOSING && !s->io.channels)
                        return;
        }
        xfer__ssh_kick(&s->io);
}

static void rearm(xfer__ssh_loop *s) {
        int events = 0;

        if (!s->poll_inited || s->state == XFER_SESSION_TCP_CONNECT)
                return;
        if (s->io.blocked & LIBSSH2_SESSION_BLOCK_INBOUND)
                events |= UV_READABLE;
        if (s->io.blocked & LIBSSH2_SESSION_BLOCK_OUTBOUND)
                events |= UV_WRITABLE;
        if (events == s->poll_events)
                return;
        s->poll_events = events;
        if (events)
                (void)uv_poll_start(&s->poll, events, poll_cb);
        else
                (void)uv_poll_stop(&s->poll);
}

static void session_step(xfer__ssh_loop *s) {
        xfer_session_state before;

        if (s->in_step)
                return;
        s->in_step = true;
        s->io.blocked = 0;
        do {
                before = s->state;
                switch (s->state) {
                case XFER_SESSION_HANDSHAKE: step_handshake(s); break;
                case XFER_SESSION_AUTH: step_auth(s); break;
                case XFER_SESSION_READY:
                        if (s->exec_state != XFER_EXEC_NONE)
                                step_exec(s);
                        step_conns(s);
                        break;
                case XFER_SESSION_FAILED:
                        /* Connections still see the error and finish; a
                         * pending exec learns it now. */
                        if (s->exec_cb) {
                                nm_error e = {};
                                nm_error_set(&e, -ECONNRESET, "the SSH connection to %s was lost", s->host);
                                exec_done(s, -ECONNRESET, &e, NULL);
                        }
                        step_conns(s);
                        break;
                case XFER_SESSION_CLOSING: step_conns(s); break;
                case XFER_SESSION_NEW:
                case XFER_SESSION_RESOLVING:
                case XFER_SESSION_TCP_CONNECT:
                case _XFER_SESSION_STATE_MAX:
                case _XFER_SESSION_STATE_INVALID: break;
                }
        } while (s->state != before && s->state != XFER_SESSION_CLOSING);
        s->in_step = false;
        if (s->state == XFER_SESSION_CLOSING)
                session_close_continue(s);
        else
                rearm(s);
}

static void start_ssh(xfer__ssh_loop *s) {
        s->io.ssh = libssh2_session_init_ex(NULL, NULL, NULL, s);
        if (!s->io.ssh) {
                connect_fail(s, -ENOMEM, "cannot allocate an SSH session");
                return;
        }
        libssh2_session_set_blocking(s->io.ssh, 0);
        /* Nodes have ed25519 host keys (deploy/ provisions them); asking for
         * that type first keeps a server with several keys from offering one
         * that known_hosts does not list. */
        (void)libssh2_session_method_pref(s->io.ssh, LIBSSH2_METHOD_HOSTKEY,
                                          "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,"
                                          "ecdsa-sha2-nistp521,ssh-rsa");
        s->state = XFER_SESSION_HANDSHAKE;
        session_step(s);
}

static void poll_cb(uv_poll_t *p, int status, int events) {
        xfer__ssh_loop *s = container_of(p, xfer__ssh_loop, poll);
        (void)events;

        /* libuv reports POLLERR as UV_EBADF and stops the handle. */
        if (status < 0)
                s->poll_events = 0;
        if (s->state == XFER_SESSION_TCP_CONNECT) {
                int soerr = 0;
                socklen_t len = sizeof(soerr);
                if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
                        soerr = errno;
                if (soerr == 0 && status < 0)
                        soerr = -status;
                if (soerr != 0) {
                        attempt_failed(s, -soerr);
                        return;
                }
                start_ssh(s);
                return;
        }
        /* An error on the socket shows up in the next libssh2 call. */
        session_step(s);
}

/* ---- exec ----------------------------------------------------------------- */

int xfer__ssh_loop_exec(xfer__ssh_loop *s, const char *command, const xfer_conn_callbacks *cbs,
                        void *conn_userdata, xfer_session_exec_cb cb, void *userdata) {
        char *cmd;

        if (s->state == XFER_SESSION_CLOSING)
                return -ECANCELED;
        if (s->state != XFER_SESSION_READY)
                return s->state == XFER_SESSION_FAILED ? -ECONNRESET : -ENOTCONN;
        if (s->exec_state != XFER_EXEC_NONE)
                return -EBUSY;
        cmd = strdup(command ? command : XFER_DEFAULT_COMMAND);
        if (!cmd)
                return -ENOMEM;
        free(s->exec_cmd);
        s->exec_cmd = cmd;
        s->exec_cbs = *cbs;
        s->exec_conn_ud = conn_userdata;
        s->exec_cb = cb;
        s->exec_ud = userdata;
        s->exec_state = XFER_EXEC_OPEN;
        (void)uv_timer_start(&s->timer, connect_timeout_cb, s->connect_timeout_ms, 0);
        xfer__ssh_kick(&s->io);
        return 0;
}

/* ---- close ---------------------------------------------------------------- */

static void close_timeout_cb(uv_timer_t *t) {
        xfer__ssh_loop *s = container_of(t, xfer__ssh_loop, timer);

        /* Peer gone or not reading: make every further libssh2 call fail at
         * once instead of waiting for a socket that never drains. */
        s->close_forced = true;
        if (s->fd >= 0)
                (void)shutdown(s->fd, SHUT_RDWR);
        xfer__ssh_kick(&s->io);
}

static void handle_closed_cb(uv_handle_t *h) {
        xfer__ssh_loop *s = h->data;

        if (h == (uv_handle_t *)&s->poll)
                s->poll_inited = false;
        s->handles_open--;
        session_close_continue(s);
}

static void session_finish(xfer__ssh_loop *s) {
        xfer_session_close_cb cb = s->close_cb;
        void *ud = s->close_ud;

        if (s->fd >= 0)
                close(TAKE_FD(s->fd));
        /* As transfer.h promises: the callback first, then the memory. */
        if (cb)
                cb(s->outer, ud);
        session_free_memory(s);
}

static void close_handles(xfer__ssh_loop *s) {
        s->close_phase = XFER_CLOSE_HANDLES;
        s->timer.data = s->io.kick.data = s;
        uv_close((uv_handle_t *)&s->timer, handle_closed_cb);
        uv_close((uv_handle_t *)&s->io.kick, handle_closed_cb);
        if (s->poll_inited) {
                s->poll.data = s;
                uv_close((uv_handle_t *)&s->poll, handle_closed_cb);
        }
}

static void session_close_continue(xfer__ssh_loop *s) {
        int rc;

        if (s->in_step)
                return; /* session_step() calls again at its end */
        switch (s->close_phase) {
        case XFER_CLOSE_CHANNELS:
                if (s->io.channels_alive > 0) {
                        xfer__channels_cancel(&s->io, -ECANCELED);
                        s->io.blocked = 0;
                        s->in_step = true;
                        step_conns(s);
                        s->in_step = false;
                        if (s->io.channels_alive > 0) {
                                rearm(s);
                                return;
                        }
                }
                s->close_phase = XFER_CLOSE_DISCONNECT;
                _fallthrough_;
        case XFER_CLOSE_DISCONNECT:
                if (s->io.ssh && s->handshaken && !s->close_forced && s->state != XFER_SESSION_FAILED) {
                        s->io.blocked = 0;
                        rc = libssh2_session_disconnect(s->io.ssh, "closing");
                        if (rc == LIBSSH2_ERROR_EAGAIN) {
                                xfer__ssh_blocked(&s->io);
                                rearm(s);
                                return;
                        }
                }
                s->close_phase = XFER_CLOSE_FREE;
                _fallthrough_;
        case XFER_CLOSE_FREE:
                if (s->io.ssh) {
                        if (s->state == XFER_SESSION_FAILED && s->fd >= 0 && !s->close_forced) {
                                /* Nothing more can be said on a broken connection. */
                                s->close_forced = true;
                                (void)shutdown(s->fd, SHUT_RDWR);
                        }
                        s->io.blocked = 0;
                        rc = libssh2_session_free(s->io.ssh);
                        if (rc == LIBSSH2_ERROR_EAGAIN) {
                                xfer__ssh_blocked(&s->io);
                                rearm(s);
                                return;
                        }
                        s->io.ssh = NULL;
                }
                if (s->gai_pending) {
                        (void)uv_cancel((uv_req_t *)&s->gai);
                        return; /* gai_cb continues */
                }
                close_handles(s);
                return;
        case XFER_CLOSE_HANDLES:
                if (s->handles_open == 0)
                        session_finish(s);
                return;
        case _XFER_CLOSE_PHASE_MAX:
        case _XFER_CLOSE_PHASE_INVALID: break;
        }
}

static void close_cancel_pending(xfer__ssh_loop *s) {
        nm_error e = {};

        if (s->connect_cb) {
                nm_error_set(&s->err, -ECANCELED, "SSH connection to %s cancelled", s->host);
                connect_done(s, -ECANCELED);
        }
        if (s->exec_cb) {
                nm_error_set(&e, -ECANCELED, "opening an SSH channel to %s cancelled", s->host);
                exec_done(s, -ECANCELED, &e, NULL);
        }
}

static void close_kick_cb(uv_timer_t *t) {
        xfer__ssh_loop *s = container_of(t, xfer__ssh_loop, io.kick);

        if (s->close_phase == XFER_CLOSE_CHANNELS && (s->connect_cb || s->exec_cb))
                close_cancel_pending(s);
        session_close_continue(s);
}

void xfer__ssh_loop_close(xfer__ssh_loop *s, xfer_session_close_cb cb, void *userdata) {
        if (s->state == XFER_SESSION_CLOSING)
                return;
        s->close_cb = cb;
        s->close_ud = userdata;
        s->close_phase = XFER_CLOSE_CHANNELS;
        s->state = XFER_SESSION_CLOSING;
        /* A poll still waiting for a TCP connect has no SSH session behind
         * it; stop it so that only the close path runs. */
        if (s->poll_inited && !s->io.ssh) {
                (void)uv_poll_stop(&s->poll);
                s->poll_events = 0;
        }
        (void)uv_timer_stop(&s->timer);
        (void)uv_timer_start(&s->timer, close_timeout_cb, XFER_CLOSE_TIMEOUT_MS, 0);
        /* Callbacks run from the loop, never from inside this call. */
        (void)uv_timer_stop(&s->io.kick);
        (void)uv_timer_start(&s->io.kick, close_kick_cb, 0, 0);
}
