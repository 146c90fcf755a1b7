/* SPDX-License-Identifier: Apache-2.0 */
/* An SSH session on a thread of its own (XFER_SSH_ON_THREAD).
 *
 * libssh2 encrypts and MACs every packet on the thread that calls it. On
 * the caller's loop that is the same core that reads, hashes and
 * compresses what the session carries, so a stream runs at the speed of
 * one core doing both. Here the session (ssh.c's, as on the caller's loop) runs on
 * a loop of its own, on its own thread; its exec channel's frames are
 * relayed, one frame at a time, to and from a socketpair whose other end is
 * the connection the caller gets, on the caller's loop. The caller sees
 * the same API, callbacks and errors; only the work moved.
 *
 * The two threads share the struct below. What the thread tells the caller
 * (connected, channel open, a remark, the channel's end, finished) is a
 * queue of events, handed over under the lock with a uv_async on the
 * caller's loop; what the caller asks of the thread (exec, its connection's
 * end, close) is set under the lock with a uv_async on the thread's loop.
 * Each side touches its own handles and connections only. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn-internal.h"
#include "macro.h"

/* The relay holds reading one side while this much waits for the other,
 * and reads on once it is down to half: what the thread buffers is
 * bounded, and a peer that does not read makes the caller wait as it
 * would without the thread. */
#define TH_RELAY_HIGH (2u * 1024u * 1024u)
/* The socketpair's buffer: a frame of XFER_CHUNK_SIZE and more fits. */
#define TH_SOCKET_BUFFER (1024 * 1024)
/* Bytes read from the caller at a time, and read buffers kept for reuse
 * (a fresh 256 KiB allocation is a fresh mapping, its pages faulted in). */
#define TH_READ_SIZE (256u * 1024u)
#define TH_FREE_BUFS 16u

/* Our end of the socketpair. */
typedef enum th_local {
        TH_LOCAL_NONE,     /* the channel is not open yet */
        TH_LOCAL_OPEN,     /* bytes both ways */
        TH_LOCAL_FLUSHING, /* the channel ended: what it sent is written, then EOF */
        TH_LOCAL_SHUTTING, /* EOF on its way */
        TH_LOCAL_CLOSING,
        TH_LOCAL_CLOSED,
        _TH_LOCAL_MAX,
        _TH_LOCAL_INVALID = -EINVAL,
} th_local;

typedef struct th_buf th_buf;

/* What the thread tells the caller. */
typedef enum th_event_kind {
        TH_EV_CONNECTED,     /* the connect's result */
        TH_EV_EXEC,          /* the exec's result: the channel's frames are relayed */
        TH_EV_REMARK,        /* a line the remote command wrote on stderr */
        TH_EV_REMOTE_CLOSED, /* the channel ended (status) */
        TH_EV_FINISHED,      /* the thread's loop is done: join it */
        _TH_EV_KIND_MAX,
        _TH_EV_KIND_INVALID = -EINVAL,
} th_event_kind;

typedef struct th_event th_event;
struct th_event {
        th_event *next;
        th_event_kind kind;
        int status;
        nm_error err;
        char text[128 + XFER_REMARK_MAX]; /* the host key's fingerprint, or the remark */
};

/* The thread, as the caller sees it. */
typedef enum th_phase {
        TH_NOT_STARTED,
        TH_RUNNING,
        TH_FINISHED, /* its loop is done and it was joined */
        _TH_PHASE_MAX,
        _TH_PHASE_INVALID = -EINVAL,
} th_phase;

/* The session, as the caller sees it. */
typedef enum th_session {
        TH_SESSION_NEW,
        TH_SESSION_CONNECTING,
        TH_SESSION_READY,
        TH_SESSION_CLOSING,
        _TH_SESSION_MAX,
        _TH_SESSION_INVALID = -EINVAL,
} th_session;

/* What the caller asked for and the thread has not taken yet. */
typedef enum th_request {
        TH_REQ_NONE,
        TH_REQ_PENDING,
        TH_REQ_TAKEN,
        _TH_REQ_MAX,
        _TH_REQ_INVALID = -EINVAL,
} th_request;

struct xfer__ssh_thread {
        xfer_session *outer; /* the caller's handle */
        uv_loop_t *loop;     /* the caller's */
        uv_async_t notify;   /* on the caller's loop: events queued */
        pthread_t tid;
        th_phase phase;

        /* The events that come once (not TH_EV_REMARK): the thread fills
         * one in before it queues it, the caller reads it after. */
        th_event once[_TH_EV_KIND_MAX];

        pthread_mutex_t lock;
        /* under the lock */
        th_event *ev_head, *ev_tail;
        th_request connect_req, exec_req, close_req, caller_closed_req;
        uv_async_t *wake_open; /* &wake until the thread closes it: no wake-up after that */
        char *exec_cmd;
        int caller_status;
        int remote_status; /* the channel's end, when < 0: what the caller's connection reports */
        nm_error remote_err;

        /* the thread's */
        uv_loop_t tloop;
        uv_async_t wake; /* requests set */
        xfer__ssh_loop *inner;
        xfer_conn *remote; /* the exec channel */
        uv_pipe_t lpipe;   /* our end of the socketpair, as bytes */
        th_local local;
        size_t out_pending; /* the peer's frames written into lpipe, not yet taken */
        th_buf *free_bufs;  /* read buffers back from the channel */
        unsigned n_free_bufs;
        int fd_local, fd_caller;

        /* the caller's */
        xfer_session_connect_cb connect_cb;
        void *connect_ud;
        xfer_session_exec_cb exec_cb;
        void *exec_ud;
        xfer_conn_callbacks cbs;
        void *conn_ud;
        xfer_conn *conn; /* the caller's end of the socketpair */
        xfer_session_close_cb close_cb;
        void *close_ud;
        th_session session;
        char fingerprint[128];
};

/* ---- the thread ------------------------------------------------------------- */

/* Every kind but a remark comes once per session: those have their place
 * in t, so that no allocation can lose one (the caller would wait for it
 * for good); a remark that cannot be allocated is dropped. */
static void th_post(xfer__ssh_thread *t, th_event_kind kind, int status, const nm_error *err,
                    const char *text) {
        th_event *e = kind == TH_EV_REMARK ? calloc(1, sizeof(*e)) : &t->once[kind];

        if (!e)
                return;
        *e = (th_event){.kind = kind};
        e->status = status;
        if (err)
                e->err = *err;
        if (text)
                snprintf(e->text, sizeof(e->text), "%s", text);
        pthread_mutex_lock(&t->lock);
        if (t->ev_tail)
                t->ev_tail->next = e;
        else
                t->ev_head = e;
        t->ev_tail = e;
        pthread_mutex_unlock(&t->lock);
        (void)uv_async_send(&t->notify);
}

/* ---- our end of the socketpair -----------------------------------------------
 *
 * What the caller sends is framed already (by its xfer_conn) and goes on to
 * the channel as the bytes came, without a decode or a copy here: each read
 * buffer becomes a segment of the channel's queue, and comes back to the
 * pool once libssh2 has taken it. The peer's frames (small: answers, PINGs)
 * come the other way decoded by the channel and encoded again. */

struct th_buf {
        th_buf *next;
        xfer__ssh_thread *t;
        uint8_t data[TH_READ_SIZE];
};

typedef struct th_write {
        uv_write_t req;
        xfer__ssh_thread *t;
        uint8_t *frame;
        size_t len;
} th_write;

static void buf_put(void *ud) {
        th_buf *b = ud;
        xfer__ssh_thread *t = b->t;

        if (t->n_free_bufs >= TH_FREE_BUFS) {
                free(b);
                return;
        }
        b->next = t->free_bufs;
        t->free_bufs = b;
        t->n_free_bufs++;
}

static void local_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
        xfer__ssh_thread *t = h->data;
        th_buf *b = t->free_bufs;
        (void)suggested;

        if (b) {
                t->free_bufs = b->next;
                t->n_free_bufs--;
        } else {
                b = malloc(sizeof(*b));
        }
        if (!b) {
                *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
                return;
        }
        b->t = t;
        *buf = uv_buf_init((char *)b->data, sizeof(b->data));
}

static void local_handle_closed(uv_handle_t *h) {
        xfer__ssh_thread *t = h->data;
        t->local = TH_LOCAL_CLOSED;
}

static void local_close(xfer__ssh_thread *t) {
        if (t->local == TH_LOCAL_CLOSED || t->local == TH_LOCAL_CLOSING || t->local == TH_LOCAL_NONE)
                return;
        t->local = TH_LOCAL_CLOSING;
        uv_close((uv_handle_t *)&t->lpipe, local_handle_closed);
}

static void local_shutdown_done(uv_shutdown_t *req, int status) {
        xfer__ssh_thread *t = req->data;
        (void)status;
        free(req);
        local_close(t);
}

/* The channel has ended and everything it sent is written: EOF, then
 * the socketpair closes (the caller reads what is left, then the end). */
static void local_finish(xfer__ssh_thread *t) {
        uv_shutdown_t *req;

        if (t->local != TH_LOCAL_FLUSHING || t->out_pending > 0)
                return;
        t->local = TH_LOCAL_SHUTTING;
        req = malloc(sizeof(*req));
        if (!req || uv_shutdown(req, (uv_stream_t *)&t->lpipe, local_shutdown_done) < 0) {
                free(req);
                local_close(t);
                return;
        }
        req->data = t;
}

static void local_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
        xfer__ssh_thread *t = st->data;
        th_buf *b = buf->base ? container_of((uint8_t *)buf->base, th_buf, data[0]) : NULL;
        nm_error e = {};

        if (n > 0 && t->remote &&
            xfer__conn_send_raw(t->remote, b->data, (size_t)n, buf_put, b, &e) >= 0) {
                if (xfer_conn_queued(t->remote) > TH_RELAY_HIGH)
                        (void)uv_read_stop(st);
                return;
        }
        if (b)
                buf_put(b);
        if (n >= 0)
                return;
        /* The caller's end: at a frame boundary when it closed with 0, and
         * then the channel ends the same way; otherwise the caller's own
         * status follows as a request. What the peer still sends reaches
         * the caller until the channel is closed. */
        (void)uv_read_stop(st);
        if (t->remote)
                xfer_conn_close(t->remote, n == UV_EOF ? 0 : (int)n, NULL);
        else
                local_close(t);
}

static void local_written(uv_write_t *req, int status) {
        th_write *w = container_of(req, th_write, req);
        xfer__ssh_thread *t = w->t;
        (void)status;

        t->out_pending -= w->len;
        free(w->frame);
        free(w);
        if (t->remote && t->out_pending <= TH_RELAY_HIGH / 2)
                xfer_conn_hold_reading(t->remote, false);
        local_finish(t);
}

static void remote_message(xfer_conn *c, const proto_msg *msg, void *ud) {
        xfer__ssh_thread *t = ud;
        th_write *w;
        uv_buf_t b;

        if (t->local != TH_LOCAL_OPEN)
                return;
        w = calloc(1, sizeof(*w));
        if (!w || proto_encode(msg, &w->frame, &w->len, NULL) < 0) {
                free(w);
                xfer_conn_close(c, -ENOMEM, NULL);
                return;
        }
        w->t = t;
        b = uv_buf_init((char *)w->frame, (unsigned)w->len);
        if (uv_write(&w->req, (uv_stream_t *)&t->lpipe, &b, 1, local_written) < 0) {
                free(w->frame);
                free(w);
                return; /* the socketpair's own end follows */
        }
        t->out_pending += w->len;
        if (t->out_pending > TH_RELAY_HIGH)
                xfer_conn_hold_reading(c, true);
}

static void remote_remark(xfer_conn *c, const char *line, void *ud) {
        (void)c;
        th_post(ud, TH_EV_REMARK, 0, NULL, line);
}

static void remote_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        xfer__ssh_thread *t = ud;
        (void)c;
        t->remote = NULL;
        if (status < 0) {
                pthread_mutex_lock(&t->lock);
                t->remote_status = status;
                if (err)
                        t->remote_err = *err;
                pthread_mutex_unlock(&t->lock);
        }
        th_post(t, TH_EV_REMOTE_CLOSED, status, err, NULL);
        /* What the peer sent before its end still reaches the caller, then
         * EOF; the status above is what the caller's connection reports. */
        if (t->local == TH_LOCAL_OPEN) {
                (void)uv_read_stop((uv_stream_t *)&t->lpipe);
                t->local = TH_LOCAL_FLUSHING;
                local_finish(t);
        }
}

static void remote_drained(xfer_conn *c, void *ud) {
        xfer__ssh_thread *t = ud;
        (void)c;
        if (t->local == TH_LOCAL_OPEN)
                (void)uv_read_start((uv_stream_t *)&t->lpipe, local_alloc, local_read);
}

static const xfer_conn_callbacks remote_cbs = {
        .message = remote_message,
        .closed = remote_closed,
        .remark = remote_remark,
};

static int local_open(xfer__ssh_thread *t, nm_error *err) {
        int r = uv_pipe_init(&t->tloop, &t->lpipe, 0);

        if (r >= 0)
                r = uv_pipe_open(&t->lpipe, t->fd_local);
        if (r < 0) {
                if (r != 0 && t->lpipe.loop)
                        uv_close((uv_handle_t *)&t->lpipe, NULL);
                return nm_error_set(err, r, "cannot use the SSH thread's socketpair: %s", uv_strerror(r));
        }
        t->fd_local = -EBADF; /* the pipe's now */
        t->lpipe.data = t;
        t->local = TH_LOCAL_OPEN;
        return uv_read_start((uv_stream_t *)&t->lpipe, local_alloc, local_read);
}

static void inner_exec_done(xfer_session *s, int status, const nm_error *err, xfer_conn *conn, void *ud) {
        xfer__ssh_thread *t = ud;
        nm_error e = {};
        (void)s;

        if (status < 0) {
                th_post(t, TH_EV_EXEC, status, err, NULL);
                return;
        }
        t->remote = conn;
        if (local_open(t, &e) < 0) {
                t->remote = NULL;
                xfer_conn_close(conn, -ECANCELED, NULL);
                th_post(t, TH_EV_EXEC, e.code, &e, NULL);
                return;
        }
        xfer_conn_set_drain(t->remote, TH_RELAY_HIGH / 2, remote_drained, t);
        th_post(t, TH_EV_EXEC, 0, NULL, NULL);
}

static void inner_connected(xfer_session *s, int status, const nm_error *err, void *ud) {
        xfer__ssh_thread *t = ud;
        (void)s;
        th_post(t, TH_EV_CONNECTED, status, err,
                status >= 0 ? strempty(xfer__ssh_loop_fingerprint(t->inner)) : NULL);
}

static void wake_closed(uv_handle_t *h) {
        (void)h;
}

static void close_wake(xfer__ssh_thread *t) {
        pthread_mutex_lock(&t->lock);
        t->wake_open = NULL;
        pthread_mutex_unlock(&t->lock);
        uv_close((uv_handle_t *)&t->wake, wake_closed);
}

static void inner_closed(xfer_session *s, void *ud) {
        xfer__ssh_thread *t = ud;
        (void)s;
        t->inner = NULL;
        local_close(t);
        close_wake(t);
}

static void th_take_requests(xfer__ssh_thread *t) {
        th_request connect_req, exec_req, close_req, closed_req;
        char *cmd;
        int caller_status;
        nm_error e = {};
        int r;

        pthread_mutex_lock(&t->lock);
        connect_req = t->connect_req;
        exec_req = t->exec_req;
        close_req = t->close_req;
        closed_req = t->caller_closed_req;
        caller_status = t->caller_status;
        cmd = t->exec_cmd;
        if (connect_req == TH_REQ_PENDING)
                t->connect_req = TH_REQ_TAKEN;
        if (exec_req == TH_REQ_PENDING)
                t->exec_req = TH_REQ_TAKEN;
        if (close_req == TH_REQ_PENDING)
                t->close_req = TH_REQ_TAKEN;
        if (closed_req == TH_REQ_PENDING)
                t->caller_closed_req = TH_REQ_TAKEN;
        pthread_mutex_unlock(&t->lock);

        /* What the close overtook is cancelled, as the session itself
         * cancels what is pending when it closes. */
        if (connect_req == TH_REQ_PENDING) {
                r = close_req == TH_REQ_NONE ? xfer__ssh_loop_connect(t->inner, inner_connected, t) : -ECANCELED;
                if (r < 0) {
                        nm_error_set(&e, r, "SSH connection: %s", strerror(-r));
                        th_post(t, TH_EV_CONNECTED, r, &e, NULL);
                }
        }
        if (exec_req == TH_REQ_PENDING) {
                r = close_req == TH_REQ_NONE
                            ? xfer__ssh_loop_exec(t->inner, cmd, &remote_cbs, t, inner_exec_done, t)
                            : -ECANCELED;
                if (r < 0) {
                        nm_error_set(&e, r, "opening an SSH channel: %s", strerror(-r));
                        th_post(t, TH_EV_EXEC, r, &e, NULL);
                }
        }
        /* The caller's connection ended: the channel ends the same way (its
         * EOF came first, at a frame boundary, when the caller closed with 0). */
        if (closed_req == TH_REQ_PENDING && t->remote && caller_status < 0)
                xfer_conn_close(t->remote, caller_status, NULL);
        if (close_req == TH_REQ_PENDING && t->inner)
                xfer__ssh_loop_close(t->inner, inner_closed, t);
}

static void wake_cb(uv_async_t *a) {
        th_take_requests(a->data);
}

static void *th_main(void *ud) {
        xfer__ssh_thread *t = ud;

        /* The connect, or a close asked for before the thread ran. */
        th_take_requests(t);
        (void)uv_run(&t->tloop, UV_RUN_DEFAULT);
        (void)uv_loop_close(&t->tloop);
        th_post(t, TH_EV_FINISHED, 0, NULL, NULL);
        return NULL;
}

/* Under the lock, so that the thread cannot close the handle meanwhile. */
static void th_ask(xfer__ssh_thread *t, th_request *req) {
        pthread_mutex_lock(&t->lock);
        *req = TH_REQ_PENDING;
        if (t->wake_open)
                (void)uv_async_send(t->wake_open);
        pthread_mutex_unlock(&t->lock);
}

/* ---- the caller's side ------------------------------------------------------ */

static void th_free(xfer__ssh_thread *t) {
        th_event *e;
        th_buf *b;

        while ((b = t->free_bufs)) {
                t->free_bufs = b->next;
                free(b);
        }
        while ((e = t->ev_head)) {
                t->ev_head = e->next;
                if (e->kind == TH_EV_REMARK)
                        free(e);
        }
        if (t->fd_local >= 0)
                close(t->fd_local);
        if (t->fd_caller >= 0)
                close(t->fd_caller);
        free(t->exec_cmd);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

static void notify_closed(uv_handle_t *h) {
        xfer__ssh_thread *t = h->data;
        xfer_session *outer = t->outer;
        xfer_session_close_cb cb = t->close_cb;
        void *ud = t->close_ud;

        th_free(t);
        if (cb)
                cb(outer, ud);
}

/* Both ends reached: the thread has ended and the caller's connection is
 * gone. */
static void th_maybe_finish(xfer__ssh_thread *t) {
        if (t->phase != TH_FINISHED || t->conn)
                return;
        uv_close((uv_handle_t *)&t->notify, notify_closed);
}

static void caller_message(xfer_conn *c, const proto_msg *msg, void *ud) {
        xfer__ssh_thread *t = ud;
        if (t->cbs.message)
                t->cbs.message(c, msg, t->conn_ud);
}

static void caller_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        xfer__ssh_thread *t = ud;
        nm_error e = {};

        /* The socketpair only ever ends cleanly or resets: how the channel
         * ended is what the caller would have heard without the thread. */
        pthread_mutex_lock(&t->lock);
        if (t->remote_status < 0 && (status == 0 || status == -ECONNRESET || status == -EPIPE)) {
                status = t->remote_status;
                e = t->remote_err;
                err = e.code ? &e : NULL;
        }
        t->caller_status = status;
        pthread_mutex_unlock(&t->lock);
        th_ask(t, &t->caller_closed_req);
        t->conn = NULL;
        if (t->cbs.closed)
                t->cbs.closed(c, status, err, t->conn_ud);
        th_maybe_finish(t);
}

static void caller_remark(xfer_conn *c, const char *line, void *ud) {
        xfer__ssh_thread *t = ud;
        if (t->cbs.remark)
                t->cbs.remark(c, line, t->conn_ud);
}

static const xfer_conn_callbacks caller_cbs = {
        .message = caller_message,
        .closed = caller_closed,
        .remark = caller_remark,
};

static void on_connected(xfer__ssh_thread *t, const th_event *e) {
        xfer_session_connect_cb cb = t->connect_cb;

        t->connect_cb = NULL;
        if (e->status >= 0 && t->session == TH_SESSION_CONNECTING) {
                snprintf(t->fingerprint, sizeof(t->fingerprint), "%s", e->text);
                t->session = TH_SESSION_READY;
        }
        if (cb)
                cb(t->outer, e->status, e->status < 0 ? &e->err : NULL, t->connect_ud);
}

static void on_exec(xfer__ssh_thread *t, const th_event *e) {
        xfer_session_exec_cb cb = t->exec_cb;
        nm_error err = e->err;
        int status = e->status;

        t->exec_cb = NULL;
        if (status >= 0)
                status = xfer_conn_new_fd(t->loop, TAKE_FD(t->fd_caller), &caller_cbs, t, &err, &t->conn);
        if (!cb) {
                if (t->conn)
                        xfer_conn_close(t->conn, -ECANCELED, NULL);
                return;
        }
        if (status < 0)
                cb(t->outer, status, &err, NULL, t->exec_ud);
        else
                cb(t->outer, 0, NULL, t->conn, t->exec_ud);
}

/* The channel failed: a caller that holds reading would not see the
 * socketpair's EOF until it reads again, where a held channel on the
 * caller's loop hears its failure at once (conn-channel.c, chan_watch_end). */
static void on_remote_closed(xfer__ssh_thread *t, const th_event *e) {
        if (e->status < 0 && t->conn && t->conn->taking == XFER_CONN_HELD)
                xfer_conn_close(t->conn, e->status, &e->err);
}

static void on_finished(xfer__ssh_thread *t) {
        if (t->phase == TH_RUNNING)
                (void)pthread_join(t->tid, NULL);
        t->phase = TH_FINISHED;
        if (t->conn)
                xfer_conn_close(t->conn, -ECANCELED, NULL);
        th_maybe_finish(t);
}

static void notify_cb(uv_async_t *a) {
        xfer__ssh_thread *t = a->data;
        th_event *e;

        for (;;) {
                pthread_mutex_lock(&t->lock);
                e = t->ev_head;
                if (e) {
                        t->ev_head = e->next;
                        if (!t->ev_head)
                                t->ev_tail = NULL;
                }
                pthread_mutex_unlock(&t->lock);
                if (!e)
                        return;
                switch (e->kind) {
                case TH_EV_CONNECTED: on_connected(t, e); break;
                case TH_EV_EXEC: on_exec(t, e); break;
                case TH_EV_REMARK:
                        if (t->conn)
                                caller_remark(t->conn, e->text, t);
                        break;
                case TH_EV_REMOTE_CLOSED: on_remote_closed(t, e); break;
                case TH_EV_FINISHED: on_finished(t); break;
                case _TH_EV_KIND_MAX:
                case _TH_EV_KIND_INVALID: break;
                }
                if (e->kind == TH_EV_REMARK)
                        free(e);
                if (t->phase == TH_FINISHED)
                        return; /* th_maybe_finish may have begun closing this handle */
        }
}

/* A larger buffer than the default keeps a whole frame in flight; the
 * kernel may keep it smaller (no CAP_NET_ADMIN), which is only slower. */
static void grow_buffer(int fd) {
        int size = TH_SOCKET_BUFFER;
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0)
                (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

int xfer__ssh_thread_new(uv_loop_t *loop, const xfer_ssh_options *o, xfer_session *outer, nm_error *err,
                         xfer__ssh_thread **ret) {
        xfer__ssh_thread *t;
        int fds[2], r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return nm_error_set(err, -ENOMEM, "out of memory");
        t->outer = outer;
        t->loop = loop;
        t->fd_local = t->fd_caller = -EBADF;
        (void)pthread_mutex_init(&t->lock, NULL);
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0) {
                r = nm_error_errno(err, -errno, "cannot make a socketpair for the SSH thread");
                th_free(t);
                return r;
        }
        t->fd_caller = fds[0];
        t->fd_local = fds[1];
        grow_buffer(fds[0]);
        grow_buffer(fds[1]);
        r = uv_loop_init(&t->tloop);
        if (r < 0) {
                th_free(t);
                return nm_error_set(err, r, "cannot make a loop for the SSH thread: %s", uv_strerror(r));
        }
        r = xfer__ssh_loop_new(&t->tloop, o, NULL, &t->inner);
        if (r < 0) {
                nm_error_set(err, r, "cannot make an SSH session: %s", strerror(-r));
                (void)uv_loop_close(&t->tloop);
                th_free(t);
                return r;
        }
        (void)uv_async_init(&t->tloop, &t->wake, wake_cb);
        t->wake.data = t;
        t->wake_open = &t->wake;
        (void)uv_async_init(loop, &t->notify, notify_cb);
        t->notify.data = t;
        *ret = t;
        return 0;
}

static int th_start(xfer__ssh_thread *t) {
        int r;

        if (t->phase != TH_NOT_STARTED)
                return 0;
        r = -pthread_create(&t->tid, NULL, th_main, t);
        if (r < 0)
                return r;
        t->phase = TH_RUNNING;
        return 0;
}

int xfer__ssh_thread_connect(xfer__ssh_thread *t, xfer_session_connect_cb cb, void *userdata) {
        int r;

        if (t->session == TH_SESSION_CLOSING)
                return -ECANCELED;
        if (t->session != TH_SESSION_NEW)
                return -EBUSY;
        t->connect_req = TH_REQ_PENDING; /* the thread is not running yet */
        r = th_start(t);
        if (r < 0) {
                t->connect_req = TH_REQ_NONE;
                return r;
        }
        t->session = TH_SESSION_CONNECTING;
        t->connect_cb = cb;
        t->connect_ud = userdata;
        return 0;
}

int xfer__ssh_thread_exec(xfer__ssh_thread *t, const char *command, const xfer_conn_callbacks *cbs,
                          void *conn_userdata, xfer_session_exec_cb cb, void *userdata) {
        char *cmd;

        if (t->session == TH_SESSION_CLOSING)
                return -ECANCELED;
        if (t->session != TH_SESSION_READY)
                return -ENOTCONN;
        if (t->exec_cb || t->conn || t->fd_caller < 0)
                return -EBUSY;
        cmd = strdup(command ? command : XFER_DEFAULT_COMMAND);
        if (!cmd)
                return -ENOMEM;
        t->cbs = *cbs;
        t->conn_ud = conn_userdata;
        t->exec_cb = cb;
        t->exec_ud = userdata;
        pthread_mutex_lock(&t->lock);
        free(t->exec_cmd);
        t->exec_cmd = cmd;
        pthread_mutex_unlock(&t->lock);
        th_ask(t, &t->exec_req);
        return 0;
}

void xfer__ssh_thread_close(xfer__ssh_thread *t, xfer_session_close_cb cb, void *userdata) {
        if (t->session == TH_SESSION_CLOSING)
                return;
        t->session = TH_SESSION_CLOSING;
        t->close_cb = cb;
        t->close_ud = userdata;
        th_ask(t, &t->close_req);
        /* A session never connected still has its thread close it (the
         * inner session's handles live on the thread's loop); without a
         * thread, that runs here, and takes no time: nothing was started. */
        if (th_start(t) < 0)
                (void)th_main(t);
}

const char *xfer__ssh_thread_fingerprint(const xfer__ssh_thread *t) {
        return t->fingerprint[0] ? t->fingerprint : NULL;
}
