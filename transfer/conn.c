/* SPDX-License-Identifier: Apache-2.0 */
/* A framed message connection over a uv stream or an SSH channel.
 *
 * Outgoing frames wait in a queue of segments; a DATA segment carries its
 * header inline and points at the caller's payload (no copy). On a stream
 * each segment is one uv_write(); on a channel the session's step writes the
 * queue head with libssh2_channel_write(), which takes at most one SSH
 * packet per call and must be called again with the same bytes after
 * EAGAIN. Incoming bytes are read straight into the proto_reader's buffer. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "transfer-internal.h"

/* Bytes read from one channel per step before writes get their turn, and
 * written per step before the session's other channels get theirs. */
#define XFER_READ_BUDGET (1024u * 1024u)
#define XFER_WRITE_BUDGET (256u * 1024u)
/* A graceful close (flush, EOF, wait for the peer's close) may take this
 * long before it turns into an abort. */
#define XFER_CONN_CLOSE_TIMEOUT_MS 5000
/* An aborted channel gets this long to send its close before it is left to
 * the session. */
#define XFER_CONN_ABORT_TIMEOUT_MS 2000
/* A peer that sends requests faster than it reads the answers (or never
 * reads them) must not grow our queue without bound: above this many bytes
 * or segments queued, no further frame is taken from it until the queue has
 * drained to half (its idle timeout runs meanwhile). The image sender keeps
 * its own queue far below this. */
#define XFER_CONN_READ_PAUSE_BYTES (8u * 1024u * 1024u)
#define XFER_CONN_READ_PAUSE_SEGS 1024u

typedef enum xfer_conn_kind {
        XFER_CONN_STREAM,
        XFER_CONN_CHANNEL,
        _XFER_CONN_KIND_MAX,
        _XFER_CONN_KIND_INVALID = -EINVAL,
} xfer_conn_kind;

typedef enum xfer_conn_state {
        XFER_CONN_OPEN,
        XFER_CONN_CLOSING,   /* status 0: flushing the queue, then EOF */
        XFER_CONN_FINISHING, /* handles closing; the closed callback is next */
        _XFER_CONN_STATE_MAX,
        _XFER_CONN_STATE_INVALID = -EINVAL,
} xfer_conn_state;

/* Closing steps of a channel. */
typedef enum xfer_chan_close {
        XFER_CHAN_SEND_EOF,
        XFER_CHAN_WAIT_EOF,
        XFER_CHAN_CLOSE,
        XFER_CHAN_WAIT_CLOSED,
        XFER_CHAN_FREE,
        XFER_CHAN_FREED,
        _XFER_CHAN_CLOSE_MAX,
        _XFER_CHAN_CLOSE_INVALID = -EINVAL,
} xfer_chan_close;

/* The libssh2 calls of a channel that may leave a packet half sent. */
typedef enum xfer_chan_op {
        XFER_CHAN_OP_WRITE,
        XFER_CHAN_OP_READ, /* a read may send a window adjust */
        XFER_CHAN_OP_CLOSE,
        _XFER_CHAN_OP_MAX,
        _XFER_CHAN_OP_INVALID = -EINVAL,
} xfer_chan_op;

typedef struct xfer_seg xfer_seg;
struct xfer_seg {
        xfer_seg *next;
        xfer_conn *conn;
        uv_write_t req;
        uint8_t *owned;         /* a whole encoded frame, or NULL */
        const uint8_t *payload; /* DATA payload (the caller's), or NULL */
        size_t hdr_len, payload_len, off;
        void (*release)(void *ud);
        void *release_ud;
        uint8_t hdr[PROTO_DATA_HDR_MAX];
};

struct xfer_conn {
        xfer_conn_kind kind;
        xfer_conn_state state;
        uv_loop_t *loop;
        xfer_conn_callbacks cbs;
        void *userdata;

        xfer_seg *head, *tail; /* channel: not yet written; stream: in libuv */
        size_t queued, low_water;
        size_t n_segs;    /* segments queued (each one an allocation) */
        bool read_paused; /* too much queued: no frames taken from the peer */
        xfer_conn_drain_cb drain_cb;
        void *drain_ud;

        proto_reader *reader;
        bool peer_eof;

        uv_timer_t timer; /* idle, then close deadline */
        uint64_t idle_ms, last_activity;
        xfer__idle_check idle_check;
        unsigned handles_open;

        int status;
        nm_error err;

        /* stream */
        uv_stream_t *stream;
        uv_shutdown_t shutdown_req;

        /* channel */
        xfer_session *s;
        LIBSSH2_CHANNEL *ch;
        xfer_conn *next, *prev;
        xfer_chan_close chan_close;
        int exit_status;
        char *remote;          /* "'<command>' on <host>", for messages */
        char stderr_tail[512]; /* the last words of the remote command */
        size_t stderr_len;
        bool exit_noted;
        xfer_chan_op pending_op; /* the call to repeat while holding the send token */
};

static void conn_fail(xfer_conn *c, int status, const nm_error *err);

xfer_conn *xfer__conn_next(xfer_conn *c) {
        return c->next;
}

void xfer__conn_link(xfer_conn *c, xfer_conn **head) {
        c->prev = NULL;
        c->next = *head;
        if (*head)
                (*head)->prev = c;
        *head = c;
}

void xfer__conn_unlink(xfer_conn *c, xfer_conn **head) {
        if (c->prev)
                c->prev->next = c->next;
        else if (*head == c)
                *head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->next = c->prev = NULL;
}

uv_loop_t *xfer__conn_loop(xfer_conn *c) {
        return c->loop;
}

size_t xfer_conn_queued(const xfer_conn *c) {
        return c->queued;
}

void xfer_conn_set_drain(xfer_conn *c, size_t low_water, xfer_conn_drain_cb cb, void *userdata) {
        c->low_water = low_water;
        c->drain_cb = cb;
        c->drain_ud = userdata;
}

static void seg_free(xfer_seg *g) {
        if (!g)
                return;
        free(g->owned);
        if (g->release)
                g->release(g->release_ud);
        free(g);
}

/* Activity is stamped when it happens, not with the loop's time of the
 * iteration that handles it: an iteration that takes frames for longer than
 * the idle window must not make an active peer look idle. */
static void touch(xfer_conn *c) {
        c->last_activity = xfer__now_ms(c->loop);
        c->idle_check = XFER__IDLE_WATCHING;
}

/* The queue shrank by n bytes: tell a waiting sender. */
static void dequeued(xfer_conn *c, size_t n) {
        size_t before = c->queued;

        c->queued -= n;
        touch(c);
        if (c->state == XFER_CONN_OPEN && c->drain_cb && before > c->low_water && c->queued <= c->low_water)
                c->drain_cb(c, c->drain_ud);
}

static bool queue_full(const xfer_conn *c) {
        return c->queued > XFER_CONN_READ_PAUSE_BYTES || c->n_segs > XFER_CONN_READ_PAUSE_SEGS;
}

static bool queue_drained(const xfer_conn *c) {
        return c->queued <= XFER_CONN_READ_PAUSE_BYTES / 2 && c->n_segs <= XFER_CONN_READ_PAUSE_SEGS / 2;
}

/* ---- timers ---------------------------------------------------------- */

static void timer_cb(uv_timer_t *t);
static void conn_finish(xfer_conn *c);

static void timer_arm(xfer_conn *c) {
        uint64_t now = uv_now(c->loop), due;

        if (c->state == XFER_CONN_FINISHING)
                return;
        if (c->state == XFER_CONN_CLOSING) {
                if (!uv_is_active((uv_handle_t *)&c->timer))
                        (void)uv_timer_start(&c->timer, timer_cb, XFER_CONN_CLOSE_TIMEOUT_MS, 0);
                return;
        }
        if (c->idle_ms == 0) {
                (void)uv_timer_stop(&c->timer);
                return;
        }
        due = c->last_activity + c->idle_ms;
        if (c->idle_check == XFER__IDLE_LOOKING && due < now + XFER__IDLE_LOOK_MS)
                due = now + XFER__IDLE_LOOK_MS; /* the look still comes before the verdict */
        (void)uv_timer_start(&c->timer, timer_cb, due > now ? due - now : 0, 0);
}

static void timer_cb(uv_timer_t *t) {
        xfer_conn *c = container_of(t, xfer_conn, timer);
        nm_error e = {};

        if (c->state == XFER_CONN_CLOSING) {
                if (c->status < 0 && c->kind == XFER_CONN_CHANNEL) {
                        /* The goodbye is stuck (the link is gone): leave the
                         * channel to libssh2_session_free() and end here. */
                        c->ch = NULL;
                        conn_finish(c);
                        return;
                }
                nm_error_set(&e, -ETIMEDOUT, "the peer did not finish closing the connection within %u ms",
                             XFER_CONN_CLOSE_TIMEOUT_MS);
                conn_fail(c, -ETIMEDOUT, &e);
                return;
        }
        if (c->state != XFER_CONN_OPEN || c->idle_ms == 0)
                return;
        if (uv_now(c->loop) - c->last_activity < c->idle_ms) {
                timer_arm(c);
                return;
        }
        if (c->idle_check == XFER__IDLE_WATCHING) {
                c->idle_check = XFER__IDLE_LOOKING;
                (void)uv_timer_start(&c->timer, timer_cb, XFER__IDLE_LOOK_MS, 0);
                return;
        }
        nm_error_set(
                &e, -ETIMEDOUT,
                "connection idle for %llu ms: the peer neither sent a whole frame nor read what was queued "
                "(%zu bytes waiting)",
                (unsigned long long)c->idle_ms, c->queued);
        conn_fail(c, -ETIMEDOUT, &e);
}

void xfer_conn_set_idle_timeout(xfer_conn *c, uint64_t ms) {
        c->idle_ms = ms;
        touch(c);
        timer_arm(c);
}

/* ---- construction ----------------------------------------------------- */

static int conn_alloc(uv_loop_t *loop, const xfer_conn_callbacks *cbs, void *userdata, xfer_conn **ret) {
        xfer_conn *c;
        int r;

        if (!cbs || !cbs->closed)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = proto_reader_new(0, &c->reader);
        if (r < 0) {
                free(c);
                return r;
        }
        c->loop = loop;
        c->cbs = *cbs;
        c->userdata = userdata;
        c->exit_status = -1;
        (void)uv_timer_init(loop, &c->timer);
        c->handles_open = 1;
        touch(c);
        *ret = c;
        return 0;
}

static void conn_finish_cb(uv_handle_t *h);

static void stream_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void stream_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

int xfer_conn_new_stream(uv_stream_t *stream, const xfer_conn_callbacks *cbs, void *userdata, nm_error *err,
                         xfer_conn **ret) {
        xfer_conn *c = NULL;
        int r;

        if (!stream || !ret)
                return -EINVAL;
        r = conn_alloc(stream->loop, cbs, userdata, &c);
        if (r < 0)
                return nm_error_errno(err, r, "cannot set up a connection");
        c->kind = XFER_CONN_STREAM;
        c->stream = stream;
        stream->data = c;
        c->handles_open++;
        r = uv_read_start(stream, stream_alloc_cb, stream_read_cb);
        if (r < 0) {
                /* The caller keeps the stream when we fail. */
                c->handles_open--;
                c->stream = NULL;
                c->timer.data = NULL;
                proto_reader_free(c->reader);
                c->reader = NULL;
                c->cbs.closed = NULL;
                uv_close((uv_handle_t *)&c->timer, conn_finish_cb);
                return nm_error_set(err, r, "cannot read from the connection: %s", uv_strerror(r));
        }
        *ret = c;
        return 0;
}

static void free_handle_cb(uv_handle_t *h) {
        free(h);
}

int xfer_conn_new_fd(uv_loop_t *loop, int fd, const xfer_conn_callbacks *cbs, void *userdata, nm_error *err,
                     xfer_conn **ret) {
        uv_stream_t *st;
        int r;

        if (uv_guess_handle(fd) == UV_TCP) {
                uv_tcp_t *t = malloc(sizeof(*t));
                if (!t) {
                        close(fd); /* taken over, also on failure */
                        return nm_error_set(err, -ENOMEM, "out of memory");
                }
                (void)uv_tcp_init(loop, t);
                r = uv_tcp_open(t, fd);
                st = (uv_stream_t *)t;
        } else {
                uv_pipe_t *p = malloc(sizeof(*p));
                if (!p) {
                        close(fd);
                        return nm_error_set(err, -ENOMEM, "out of memory");
                }
                (void)uv_pipe_init(loop, p, 0);
                r = uv_pipe_open(p, fd);
                st = (uv_stream_t *)p;
        }
        if (r < 0) {
                /* uv_close() does not close an fd libuv did not take over. */
                close(fd);
                uv_close((uv_handle_t *)st, free_handle_cb);
                return nm_error_set(err, r, "cannot use fd %d as a stream: %s", fd, uv_strerror(r));
        }
        r = xfer_conn_new_stream(st, cbs, userdata, err, ret);
        if (r < 0) {
                uv_close((uv_handle_t *)st, free_handle_cb);
                return r;
        }
        return 0;
}

int xfer__conn_new_channel(xfer_session *s, LIBSSH2_CHANNEL *ch, const char *remote,
                           const xfer_conn_callbacks *cbs, void *userdata, xfer_conn **ret) {
        xfer_conn *c = NULL;
        int r = conn_alloc(xfer__session_loop(s), cbs, userdata, &c);
        if (r < 0)
                return r;
        c->remote = strdup(remote);
        c->kind = XFER_CONN_CHANNEL;
        c->s = s;
        c->ch = ch;
        *ret = c;
        return 0;
}

/* ---- ending ---------------------------------------------------------------- */

static void conn_finish_cb(uv_handle_t *h) {
        xfer_conn *c = h->data;

        if (!c) {
                /* A conn that failed in its constructor. */
                free(container_of((uv_timer_t *)h, xfer_conn, timer));
                return;
        }
        if (--c->handles_open > 0)
                return;
        if (c->cbs.closed)
                c->cbs.closed(c, c->status, c->status < 0 ? &c->err : NULL, c->userdata);
        if (c->kind == XFER_CONN_CHANNEL)
                xfer__session_detach(c->s, c);
        proto_reader_free(c->reader);
        free(c->stream);
        free(c->remote);
        free(c);
}

static void drop_queue(xfer_conn *c) {
        while (c->head) {
                xfer_seg *g = c->head;
                c->head = g->next;
                c->queued -= g->hdr_len + g->payload_len - g->off;
                c->n_segs--;
                seg_free(g);
        }
        c->tail = NULL;
}

/* Closes our handles; the closed callback runs after the last one. */
static void conn_finish(xfer_conn *c) {
        if (c->state == XFER_CONN_FINISHING)
                return;
        c->state = XFER_CONN_FINISHING;
        if (c->kind == XFER_CONN_CHANNEL) {
                drop_queue(c);
                /* Unlinked now, so the session's step no longer sees it; the
                 * session waits for the detach in conn_finish_cb. */
                xfer__session_unlink(c->s, c);
        }
        c->timer.data = c;
        uv_close((uv_handle_t *)&c->timer, conn_finish_cb);
        if (c->stream) {
                c->stream->data = c;
                uv_close((uv_handle_t *)c->stream, conn_finish_cb);
        }
}

static void set_status(xfer_conn *c, int status, const nm_error *err) {
        if (c->status < 0)
                return; /* the first error is the one worth reporting */
        c->status = status;
        if (status < 0) {
                if (err && err->msg[0])
                        nm_error_set(&c->err, status, "%s", err->msg);
                else
                        nm_error_errno(&c->err, status, "connection closed");
        }
}

static void stream_try_shutdown(xfer_conn *c);

/* Ends the connection now: the queue is dropped. */
static void conn_fail(xfer_conn *c, int status, const nm_error *err) {
        if (c->state == XFER_CONN_FINISHING)
                return;
        set_status(c, status < 0 ? status : -EIO, err);
        if (c->kind == XFER_CONN_CHANNEL) {
                /* The session's step says goodbye to the channel (bounded by
                 * the session) and then finishes the connection. */
                c->state = XFER_CONN_CLOSING;
                c->chan_close = XFER_CHAN_CLOSE;
                if (xfer__session_holds(c->s, c) && c->pending_op == XFER_CHAN_OP_WRITE && c->head) {
                        /* libssh2 must finish the packet it started before
                         * it sends our close: keep that segment alone. */
                        xfer_seg *g = c->head;
                        c->head = g->next;
                        drop_queue(c);
                        g->next = NULL;
                        c->head = c->tail = g;
                } else
                        drop_queue(c);
                (void)uv_timer_start(&c->timer, timer_cb, XFER_CONN_ABORT_TIMEOUT_MS, 0);
                xfer__session_kick(c->s);
                return;
        }
        (void)uv_read_stop(c->stream);
        /* Pending writes come back with UV_ECANCELED and release their
         * buffers. */
        conn_finish(c);
}

void xfer_conn_close(xfer_conn *c, int status, const nm_error *err) {
        if (!c || c->state == XFER_CONN_FINISHING)
                return;
        if (status < 0) {
                conn_fail(c, status, err);
                return;
        }
        if (c->state == XFER_CONN_CLOSING)
                return;
        set_status(c, 0, NULL);
        c->state = XFER_CONN_CLOSING;
        c->chan_close = XFER_CHAN_SEND_EOF;
        (void)uv_timer_stop(&c->timer);
        timer_arm(c);
        if (c->kind == XFER_CONN_CHANNEL)
                xfer__session_kick(c->s);
        else
                stream_try_shutdown(c);
}

void xfer__conn_channel_cancel(xfer_conn *c, int status, const nm_error *err) {
        if (c->state == XFER_CONN_OPEN || (c->state == XFER_CONN_CLOSING && c->chan_close < XFER_CHAN_CLOSE))
                conn_fail(c, status, err);
}

/* ---- sending ------------------------------------------------------------- */

static void stream_write_cb(uv_write_t *req, int status);

static int enqueue(xfer_conn *c, xfer_seg *g, nm_error *err) {
        size_t n = g->hdr_len + g->payload_len;

        g->conn = c;
        if (c->kind == XFER_CONN_STREAM) {
                uv_buf_t bufs[2];
                unsigned nb = 0;
                bufs[nb++] = uv_buf_init(g->owned ? (char *)g->owned : (char *)g->hdr, (unsigned)g->hdr_len);
                if (g->payload_len > 0)
                        bufs[nb++] = uv_buf_init((char *)g->payload, (unsigned)g->payload_len);
                int r = uv_write(&g->req, c->stream, bufs, nb, stream_write_cb);
                if (r < 0)
                        return nm_error_set(err, -EPIPE, "cannot write to the connection: %s",
                                            uv_strerror(r));
        } else {
                if (c->tail)
                        c->tail->next = g;
                else
                        c->head = g;
                c->tail = g;
                xfer__session_kick(c->s);
        }
        if (c->queued == 0)
                touch(c); /* idle time counts from when there is something to send */
        c->queued += n;
        c->n_segs++;
        return 0;
}

static int check_sendable(xfer_conn *c, nm_error *err) {
        if (!c)
                return -EINVAL;
        if (c->state != XFER_CONN_OPEN)
                return nm_error_set(err, -EPIPE, "the connection is closing%s%s", c->status < 0 ? ": " : "",
                                    c->status < 0 ? c->err.msg : "");
        return 0;
}

int xfer_conn_send(xfer_conn *c, const proto_msg *msg, nm_error *err) {
        xfer_seg *g;
        int r;

        r = check_sendable(c, err);
        if (r < 0)
                return r;
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        r = proto_encode(msg, &g->owned, &g->hdr_len, err);
        if (r < 0) {
                free(g);
                return r;
        }
        r = enqueue(c, g, err);
        if (r < 0)
                seg_free(g);
        return r;
}

/* A frame whose header is hdr_len bytes of g->hdr, then the caller's
 * payload, unless the header could not be made (r < 0). */
static int send_payload(xfer_conn *c, xfer_seg *g, int r, const void *payload, size_t n,
                        void (*release)(void *ud), void *release_ud, nm_error *err) {
        if (r < 0) {
                free(g);
                return r;
        }
        g->hdr_len = (size_t)r;
        g->payload = payload;
        g->payload_len = n;
        r = enqueue(c, g, err);
        if (r < 0) {
                free(g); /* release is not called: the caller keeps payload */
                return r;
        }
        g->release = release;
        g->release_ud = release_ud;
        return 0;
}

/* A segment for a payload of n bytes, once the connection can take it. */
static int payload_seg_new(xfer_conn *c, const char *what, size_t n, xfer_seg **ret, nm_error *err) {
        int r = check_sendable(c, err);
        if (r < 0)
                return r;
        if (n == 0 || n > PROTO_DATA_MAX)
                return nm_error_set(err, -EINVAL, "%s payload of %zu bytes is out of range", what, n);
        *ret = calloc(1, sizeof(**ret));
        return *ret ? 0 : -ENOMEM;
}

int xfer_conn_send_data(xfer_conn *c, const char *mig, const void *payload, size_t n,
                        void (*release)(void *ud), void *release_ud, nm_error *err) {
        xfer_seg *g;
        int r = payload_seg_new(c, "DATA", n, &g, err);
        if (r < 0)
                return r;
        r = proto_data_header(g->hdr, mig, n, err);
        return send_payload(c, g, r, payload, n, release, release_ud, err);
}

int xfer_conn_send_zdata(xfer_conn *c, const char *mig, uint32_t size, const void *payload, size_t n,
                         void (*release)(void *ud), void *release_ud, nm_error *err) {
        xfer_seg *g;
        int r = payload_seg_new(c, "ZDATA", n, &g, err);
        if (r < 0)
                return r;
        r = proto_zdata_header(g->hdr, mig, size, n, err);
        return send_payload(c, g, r, payload, n, release, release_ud, err);
}

/* ---- stream I/O ------------------------------------------------------------- */

static void stream_shutdown_cb(uv_shutdown_t *req, int status) {
        xfer_conn *c = container_of(req, xfer_conn, shutdown_req);
        (void)status;
        /* Everything we had to say has left; what the peer may still send
         * is of no interest after a close. */
        conn_finish(c);
}

static void stream_try_shutdown(xfer_conn *c) {
        if (c->state != XFER_CONN_CLOSING || c->queued > 0 || c->shutdown_req.handle)
                return;
        if (uv_shutdown(&c->shutdown_req, c->stream, stream_shutdown_cb) < 0)
                conn_finish(c);
}

static int deliver(xfer_conn *c);
static void stream_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void stream_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* The peer read enough of what we queued: first the frames that waited in
 * the reader, then the stream again (unless they filled the queue anew). */
static void stream_resume_reading(xfer_conn *c) {
        nm_error e = {};
        int r;

        c->read_paused = false;
        if (deliver(c) < 0 || c->read_paused || c->state != XFER_CONN_OPEN)
                return;
        if (c->peer_eof)
                return;
        r = uv_read_start(c->stream, stream_alloc_cb, stream_read_cb);
        if (r < 0) {
                nm_error_set(&e, -EIO, "cannot read from the connection: %s", uv_strerror(r));
                conn_fail(c, e.code, &e);
        }
}

/* A peer that closed on us may have said why first (an agent refusing a
 * connection sends ERROR and closes): the write error reaches us before the
 * read, so read what it left, and hand it out, before giving up. */
static void stream_read_leftovers(xfer_conn *c) {
        uv_os_fd_t fd;

        if (c->peer_eof || uv_fileno((uv_handle_t *)c->stream, &fd) < 0)
                return;
        while (c->state == XFER_CONN_OPEN && !c->read_paused) {
                nm_error e = {};
                uint8_t *p;
                size_t n;
                ssize_t k;

                if (proto_reader_get_buffer(c->reader, &p, &n, &e) < 0)
                        return;
                k = read(fd, p, n); /* libuv made the fd non-blocking */
                if (k <= 0 || proto_reader_advance(c->reader, (size_t)k, &e) < 0 || deliver(c) < 0)
                        return;
        }
}

static void stream_write_cb(uv_write_t *req, int status) {
        xfer_seg *g = container_of(req, xfer_seg, req);
        xfer_conn *c = g->conn;
        size_t n = g->hdr_len + g->payload_len;
        nm_error e = {};

        seg_free(g);
        c->n_segs--;
        dequeued(c, n);
        if (status < 0 && status != UV_ECANCELED) {
                if (c->state == XFER_CONN_OPEN)
                        stream_read_leftovers(c);
                nm_error_set(&e, status == UV_EPIPE ? -EPIPE : -ECONNRESET,
                             "writing to the connection failed: %s", uv_strerror(status));
                conn_fail(c, e.code, &e);
                return;
        }
        if (c->read_paused && c->state == XFER_CONN_OPEN && queue_drained(c))
                stream_resume_reading(c);
        timer_arm(c);
        stream_try_shutdown(c);
}

static void stream_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
        xfer_conn *c = h->data;
        uint8_t *p = NULL;
        size_t n = 0;
        (void)suggested;

        if (proto_reader_get_buffer(c->reader, &p, &n, NULL) < 0) {
                *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
                return;
        }
        *buf = uv_buf_init((char *)p, (unsigned)(n > UINT32_MAX ? UINT32_MAX : n));
}

/* A frame we refuse ends the connection (the stream cannot be resynced),
 * but the peer hears why first, as PROTOCOL.md says: ERROR with the
 * sentence as its reason, then the queue flushes (bounded by the close
 * timeout) and the connection closes with that error. */
static void refuse_frame(xfer_conn *c, int code, nm_error *e) {
        proto_msg m;

        nm_error_prefix(e, "refusing a frame from the peer");
        if (code >= 0 || code < -4095)
                code = -EBADMSG;
        if (c->state != XFER_CONN_OPEN) {
                conn_fail(c, code, e);
                return;
        }
        if (c->stream)
                (void)uv_read_stop(c->stream);
        m = (proto_msg){.type = PROTO_MSG_ERROR, .error = {.code = code, .reason = e->msg}};
        set_status(c, code, e);
        if (xfer_conn_send(c, &m, NULL) < 0) {
                /* The reason cannot travel (e.g. a control byte from the
                 * hostile input in it): just close. */
                conn_fail(c, code, e);
                return;
        }
        xfer_conn_close(c, 0, NULL); /* keeps the error set above */
}

/* Decodes and hands out every complete frame, until the queue is full.
 * Returns < 0 after failing the connection. */
static int deliver(xfer_conn *c) {
        for (;;) {
                _cleanup_proto_msg_ proto_msg m = {};
                const uint8_t *payload;
                size_t n;
                nm_error e = {};
                int r;

                if (c->state != XFER_CONN_OPEN)
                        return 0; /* no messages after close */
                if (queue_full(c)) {
                        /* The rest waits in the reader until the queue drains. */
                        c->read_paused = true;
                        if (c->stream)
                                (void)uv_read_stop(c->stream);
                        return 0;
                }
                r = proto_reader_next(c->reader, &payload, &n, &e);
                if (r == 0)
                        return 0;
                if (r > 0)
                        r = proto_decode(payload, n, &m, &e);
                if (r < 0) {
                        refuse_frame(c, r, &e);
                        return r;
                }
                /* Whole frames count as activity, bytes do not: a peer
                 * that trickles one frame a byte at a time is idle. */
                touch(c);
                c->cbs.message(c, &m, c->userdata);
        }
}

/* The peer ended its side: at a frame boundary that is a clean end, and we
 * still flush what we queued. */
static void peer_ended(xfer_conn *c) {
        nm_error e = {};
        int r;

        c->peer_eof = true;
        r = proto_reader_finish(c->reader, &e);
        if (r < 0) {
                /* It may still read: tell it why, as for any refused frame. */
                nm_error_prefix(&e, "the peer closed the connection in the middle of a frame");
                refuse_frame(c, -EPIPE, &e);
                return;
        }
        if (c->state == XFER_CONN_OPEN)
                xfer_conn_close(c, 0, NULL);
}

static void stream_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
        xfer_conn *c = st->data;
        nm_error e = {};
        int r;
        (void)buf;

        if (nread == 0)
                return;
        if (nread == UV_EOF) {
                (void)uv_read_stop(st);
                peer_ended(c);
                return;
        }
        if (nread < 0) {
                if (nread == UV_ENOBUFS)
                        nm_error_set(&e, -EPROTO, "internal error: no buffer for incoming frames");
                else
                        nm_error_set(&e, nread == UV_ECONNRESET ? -ECONNRESET : -EIO,
                                     "reading from the connection failed: %s", uv_strerror((int)nread));
                conn_fail(c, e.code, &e);
                return;
        }
        r = proto_reader_advance(c->reader, (size_t)nread, &e);
        if (r < 0) {
                refuse_frame(c, r, &e);
                return;
        }
        if (deliver(c) < 0)
                return;
        if (c->state != XFER_CONN_OPEN)
                (void)uv_read_stop(st);
        timer_arm(c);
}

/* ---- channel I/O ----------------------------------------------------------- */

static int chan_error(xfer_conn *c, int rc, const char *what) {
        nm_error e = {};
        int r = xfer__session_error(c->s, rc, &e, what);
        conn_fail(c, r, &e);
        return r;
}

static void chan_blocked(xfer_conn *c, xfer_chan_op op) {
        xfer__session_blocked_by(c->s, c);
        if (xfer__session_holds(c->s, c))
                c->pending_op = op;
}

/* The remote command's stderr is read as it comes (unread, it would eat
 * the channel window) and its tail kept for error messages. */
static int chan_read_stderr(xfer_conn *c) {
        char buf[1024];

        for (;;) {
                ssize_t n = libssh2_channel_read_stderr(c->ch, buf, sizeof(buf));
                if (n == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(c, XFER_CHAN_OP_READ);
                        /* A window adjust half sent must be finished first. */
                        return xfer__session_holds(c->s, c) ? 0 : 1;
                }
                xfer__session_unblocked(c->s, c);
                if (n <= 0)
                        return 1; /* EOF, or an error the stdout read reports */
                size_t k = (size_t)n, cap = sizeof(c->stderr_tail) - 1;
                if (k >= cap) {
                        memcpy(c->stderr_tail, buf + k - cap, cap);
                        c->stderr_len = cap;
                } else {
                        if (c->stderr_len + k > cap) {
                                size_t drop = c->stderr_len + k - cap;
                                memmove(c->stderr_tail, c->stderr_tail + drop, c->stderr_len - drop);
                                c->stderr_len -= drop;
                        }
                        memcpy(c->stderr_tail + c->stderr_len, buf, k);
                        c->stderr_len += k;
                }
                c->stderr_tail[c->stderr_len] = '\0';
        }
}

/* A remote command that failed makes the end of its connection an error,
 * with what it said on stderr. */
static void chan_note_exit(xfer_conn *c) {
        char said[sizeof(c->stderr_tail)];
        size_t len;

        (void)chan_read_stderr(c);
        if (c->exit_status < 0 && libssh2_channel_eof(c->ch) == 1)
                c->exit_status = libssh2_channel_get_exit_status(c->ch);
        snprintf(said, sizeof(said), "%s", c->stderr_tail);
        for (len = strlen(said); len > 0 && (said[len - 1] == '\n' || said[len - 1] == ' '); len--)
                said[len - 1] = '\0';
        if (c->exit_status > 0 && c->status == 0) {
                c->status = -ECONNABORTED;
                nm_error_set(&c->err, -ECONNABORTED, "%s exited with status %d%s%s", strna(c->remote),
                             c->exit_status, said[0] ? ": " : "", said);
        } else if (c->status < 0 && c->exit_status > 0) {
                len = strlen(c->err.msg);
                snprintf(c->err.msg + len, sizeof(c->err.msg) - len, " (%s exited with status %d%s%s)",
                         strna(c->remote), c->exit_status, said[0] ? ": " : "", said);
        } else if (c->status < 0 && said[0]) {
                len = strlen(c->err.msg);
                snprintf(c->err.msg + len, sizeof(c->err.msg) - len, " (%s said: %s)", strna(c->remote),
                         said);
        }
}

/* Returns 1 on progress, 0 when blocked, < 0 after failing the conn. */
static int chan_write(xfer_conn *c) {
        size_t budget = XFER_WRITE_BUDGET;
        int progress = 0;

        while (c->head && budget > 0) {
                xfer_seg *g = c->head;
                const uint8_t *p;
                size_t left;
                ssize_t n;

                if (g->off < g->hdr_len) {
                        p = (g->owned ? g->owned : g->hdr) + g->off;
                        left = g->hdr_len - g->off;
                } else {
                        p = g->payload + (g->off - g->hdr_len);
                        left = g->payload_len - (g->off - g->hdr_len);
                }
                n = libssh2_channel_write(c->ch, (const char *)p, left);
                if (n == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(c, XFER_CHAN_OP_WRITE);
                        return progress;
                }
                xfer__session_unblocked(c->s, c);
                if (n < 0)
                        return chan_error(c, (int)n, "sending to the peer");
                g->off += (size_t)n;
                budget -= (size_t)n < budget ? (size_t)n : budget;
                progress = 1;
                if (g->off == g->hdr_len + g->payload_len) {
                        c->head = g->next;
                        if (!c->head)
                                c->tail = NULL;
                        seg_free(g);
                        c->n_segs--;
                }
                dequeued(c, (size_t)n);
                if (c->state == XFER_CONN_FINISHING)
                        return 1;
        }
        return progress;
}

static int chan_read(xfer_conn *c, bool discard) {
        size_t budget = XFER_READ_BUDGET;
        int progress = 0;
        if (chan_read_stderr(c) == 0)
                return 0;
        if (!discard && c->read_paused) {
                /* Not reading leaves the channel window shut: the peer waits. */
                if (!queue_drained(c))
                        return 0;
                c->read_paused = false;
                if (deliver(c) < 0)
                        return -EBADMSG;
                if (c->read_paused || c->state != XFER_CONN_OPEN)
                        return 1;
                progress = 1;
        }
        while (budget > 0 && c->state != XFER_CONN_FINISHING) {
                uint8_t sink[16384];
                uint8_t *p;
                size_t n;
                ssize_t rc;
                nm_error e = {};

                if (discard) {
                        p = sink;
                        n = sizeof(sink);
                } else if (proto_reader_get_buffer(c->reader, &p, &n, &e) < 0) {
                        conn_fail(c, -EPROTO, &e);
                        return -EPROTO;
                }
                rc = libssh2_channel_read(c->ch, (char *)p, n);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(c, XFER_CHAN_OP_READ);
                        return progress;
                }
                xfer__session_unblocked(c->s, c);
                if (rc < 0)
                        return chan_error(c, (int)rc, "receiving from the peer");
                if (rc == 0) {
                        if (libssh2_channel_eof(c->ch)) {
                                if (!c->peer_eof && !discard)
                                        peer_ended(c);
                                c->peer_eof = true;
                                return 1;
                        }
                        return progress;
                }
                progress = 1;
                budget -= (size_t)rc < budget ? (size_t)rc : budget;
                if (discard)
                        continue;
                if (proto_reader_advance(c->reader, (size_t)rc, &e) < 0) {
                        refuse_frame(c, e.code ? e.code : -EBADMSG, &e);
                        return -EBADMSG;
                }
                if (deliver(c) < 0)
                        return -EBADMSG;
                if (c->state != XFER_CONN_OPEN || c->read_paused)
                        return 1;
        }
        return progress;
}

/* One step of a channel's goodbye. Returns 1 on progress, 0 when blocked. */
static int chan_close_step(xfer_conn *c) {
        int rc;

        switch (c->chan_close) {
        case XFER_CHAN_SEND_EOF:
                if (c->head)
                        return chan_write(c);
                rc = libssh2_channel_send_eof(c->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(c, XFER_CHAN_OP_CLOSE);
                        return 0;
                }
                xfer__session_unblocked(c->s, c);
                if (rc < 0)
                        return chan_error(c, rc, "closing the channel");
                c->chan_close = XFER_CHAN_WAIT_EOF;
                return 1;
        case XFER_CHAN_WAIT_EOF:
                /* The remote command answers our EOF with its own, after its
                 * last output, and then exits. */
                if (!c->peer_eof) {
                        rc = chan_read(c, true);
                        if (rc < 0 || !c->peer_eof)
                                return rc < 0 ? 1 : rc;
                }
                c->chan_close = XFER_CHAN_CLOSE;
                return 1;
        case XFER_CHAN_CLOSE:
                rc = libssh2_channel_close(c->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(c, XFER_CHAN_OP_CLOSE);
                        return 0;
                }
                xfer__session_unblocked(c->s, c);
                c->chan_close = rc < 0 ? XFER_CHAN_FREE : XFER_CHAN_WAIT_CLOSED;
                return 1;
        case XFER_CHAN_WAIT_CLOSED:
                if (c->status < 0) {
                        /* An abort does not wait for the peer. */
                        c->chan_close = XFER_CHAN_FREE;
                        return 1;
                }
                rc = libssh2_channel_wait_closed(c->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(c, XFER_CHAN_OP_CLOSE);
                        return 0;
                }
                xfer__session_unblocked(c->s, c);
                if (rc == 0)
                        c->exit_status = libssh2_channel_get_exit_status(c->ch);
                c->chan_close = XFER_CHAN_FREE;
                return 1;
        case XFER_CHAN_FREE:
                if (!c->exit_noted) {
                        chan_note_exit(c);
                        c->exit_noted = true;
                }
                rc = libssh2_channel_free(c->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(c, XFER_CHAN_OP_CLOSE);
                        return 0;
                }
                xfer__session_unblocked(c->s, c);
                /* On another error libssh2_session_free() frees it. */
                c->ch = NULL;
                c->chan_close = XFER_CHAN_FREED;
                conn_finish(c);
                return 1;
        case XFER_CHAN_FREED:
        case _XFER_CHAN_CLOSE_MAX:
        case _XFER_CHAN_CLOSE_INVALID: break;
        }
        return 0;
}

/* Repeats the call that left a packet half sent. */
static int chan_retry(xfer_conn *c) {
        switch (c->pending_op) {
        case XFER_CHAN_OP_WRITE: return chan_write(c);
        case XFER_CHAN_OP_READ: return chan_read(c, c->state != XFER_CONN_OPEN);
        case XFER_CHAN_OP_CLOSE: return chan_close_step(c);
        case _XFER_CHAN_OP_MAX:
        case _XFER_CHAN_OP_INVALID: break;
        }
        return 0;
}

int xfer__conn_channel_step(xfer_conn *c) {
        int progress = 0, r;

        if (c->state == XFER_CONN_FINISHING)
                return 0;
        if (!xfer__session_may_send(c->s, c))
                return 0; /* another channel's half-sent packet goes first */
        if (xfer__session_holds(c->s, c)) {
                if (chan_retry(c) != 0)
                        progress = 1;
        }
        if (c->state == XFER_CONN_OPEN && !xfer__session_holds(c->s, c)) {
                r = chan_write(c);
                if (r != 0)
                        progress = 1;
                if (c->state == XFER_CONN_OPEN && !xfer__session_holds(c->s, c)) {
                        r = chan_read(c, false);
                        if (r != 0)
                                progress = 1;
                }
        }
        if (c->state == XFER_CONN_CLOSING && !xfer__session_holds(c->s, c)) {
                r = chan_close_step(c);
                if (r != 0)
                        progress = 1;
        }
        if (c->state == XFER_CONN_FINISHING)
                return XFER__CONN_GONE;
        timer_arm(c);
        return progress;
}
