/* SPDX-License-Identifier: Apache-2.0 */
/* The stream transport of a framed connection: a uv stream (unix socket,
 * pipe, TCP), as the control socket and dial-stdio use. Each segment is one
 * uv_write() at once (libuv keeps it until it has left); reads go straight
 * into the frame reader's buffer; a close flushes, then shuts down our
 * side. */
#include <errno.h>
#include <unistd.h>

#include "conn-internal.h"
#include "macro.h"

typedef struct xfer_stream_conn {
        xfer_conn conn; /* first: the core */
        uv_stream_t *stream;
        uv_shutdown_t shutdown_req;
} xfer_stream_conn;

static xfer_stream_conn *stream_of(xfer_conn *c) {
        return container_of(c, xfer_stream_conn, conn);
}

static void stream_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void stream_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* ---- closing --------------------------------------------------------------- */

static void stream_shutdown_cb(uv_shutdown_t *req, int status) {
        xfer_stream_conn *sc = container_of(req, xfer_stream_conn, shutdown_req);
        (void)status;
        /* Everything we had to say has left; what the peer may still send
         * is of no interest after a close. */
        xfer__conn_finish(&sc->conn);
}

/* Once the queue is empty: EOF to the peer, then finish. */
static void stream_try_shutdown(xfer_stream_conn *sc) {
        if (sc->conn.state != XFER_CONN_CLOSING || sc->conn.queued > 0 || sc->shutdown_req.handle)
                return;
        if (uv_shutdown(&sc->shutdown_req, sc->stream, stream_shutdown_cb) < 0)
                xfer__conn_finish(&sc->conn);
}

static void stream_close(xfer_conn *c) {
        stream_try_shutdown(stream_of(c));
}

static void stream_read_stop(xfer_conn *c) {
        (void)uv_read_stop(stream_of(c)->stream);
}

static void stream_abort(xfer_conn *c) {
        stream_read_stop(c);
        /* Pending writes come back with UV_ECANCELED and release their
         * buffers. */
        xfer__conn_finish(c);
}

static void stream_finish(xfer_conn *c) {
        xfer_stream_conn *sc = stream_of(c);

        sc->stream->data = c;
        uv_close((uv_handle_t *)sc->stream, xfer__conn_handle_closed);
}

static void stream_release(xfer_conn *c) {
        free(stream_of(c)->stream);
}

/* ---- writing ----------------------------------------------------------------- */

/* The peer read enough of what we queued: first the frames that waited in
 * the reader, then the stream again (unless they filled the queue anew). */
static void stream_resume_reading(xfer_stream_conn *sc) {
        nm_error e = {};
        int r;

        if (xfer__conn_resume(&sc->conn) <= 0)
                return;
        r = uv_read_start(sc->stream, stream_alloc_cb, stream_read_cb);
        if (r < 0) {
                nm_error_set(&e, -EIO, "cannot read from the connection: %s", uv_strerror(r));
                xfer__conn_fail(&sc->conn, e.code, &e);
        }
}

/* A peer that closed on us may have said why first (an agent refusing a
 * connection sends ERROR and closes): the write error reaches us before the
 * read, so read what it left, and hand it out, before giving up. */
static void stream_read_leftovers(xfer_stream_conn *sc) {
        xfer_conn *c = &sc->conn;
        uv_os_fd_t fd;

        if (c->input == XFER_CONN_INPUT_ENDED || uv_fileno((uv_handle_t *)sc->stream, &fd) < 0)
                return;
        while (c->state == XFER_CONN_OPEN && c->input == XFER_CONN_INPUT_READING) {
                uint8_t *p;
                size_t n;
                ssize_t k;

                if (proto_reader_get_buffer(c->reader, &p, &n, NULL) < 0)
                        return;
                k = read(fd, p, n); /* libuv made the fd non-blocking */
                /* Bytes that do not frame are left unsaid: the write error
                 * is the one to report. */
                if (k <= 0 || proto_reader_advance(c->reader, (size_t)k, NULL) < 0 ||
                    xfer__conn_deliver(c) < 0)
                        return;
        }
}

static void stream_write_cb(uv_write_t *req, int status) {
        xfer_seg *g = container_of(req, xfer_seg, req);
        xfer_stream_conn *sc = stream_of(g->conn);
        xfer_conn *c = &sc->conn;
        nm_error e = {};

        xfer__conn_written(c, g, g->hdr_len + g->payload_len);
        if (status < 0 && status != UV_ECANCELED) {
                if (c->state == XFER_CONN_OPEN)
                        stream_read_leftovers(sc);
                nm_error_set(&e, status == UV_EPIPE ? -EPIPE : -ECONNRESET,
                             "writing to the connection failed: %s", uv_strerror(status));
                xfer__conn_fail(c, e.code, &e);
                return;
        }
        if (c->input == XFER_CONN_INPUT_PAUSED && c->state == XFER_CONN_OPEN && xfer__conn_queue_drained(c))
                stream_resume_reading(sc);
        xfer__conn_timer_arm(c);
        stream_try_shutdown(sc);
}

static int stream_write(xfer_conn *c, xfer_seg *g, nm_error *err) {
        uv_buf_t bufs[2];
        unsigned nb = 0;
        int r;

        bufs[nb++] = uv_buf_init(g->owned ? (char *)g->owned : (char *)g->hdr, (unsigned)g->hdr_len);
        if (g->payload_len > 0)
                bufs[nb++] = uv_buf_init((char *)g->payload, (unsigned)g->payload_len);
        r = uv_write(&g->req, stream_of(c)->stream, bufs, nb, stream_write_cb);
        if (r < 0)
                return nm_error_set(err, -EPIPE, "cannot write to the connection: %s", uv_strerror(r));
        return 0;
}

/* ---- reading ----------------------------------------------------------------- */

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

static void stream_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
        xfer_conn *c = st->data;
        nm_error e = {};
        (void)buf;

        if (nread == 0)
                return;
        if (nread == UV_EOF) {
                (void)uv_read_stop(st);
                xfer__conn_peer_ended(c);
                return;
        }
        if (nread < 0) {
                if (nread == UV_ENOBUFS)
                        nm_error_set(&e, -EPROTO, "internal error: no buffer for incoming frames");
                else
                        nm_error_set(&e, nread == UV_ECONNRESET ? -ECONNRESET : -EIO,
                                     "reading from the connection failed: %s", uv_strerror((int)nread));
                xfer__conn_fail(c, e.code, &e);
                return;
        }
        if (xfer__conn_received(c, (size_t)nread) < 0)
                return;
        if (c->state != XFER_CONN_OPEN)
                (void)uv_read_stop(st);
        xfer__conn_timer_arm(c);
}

/* ---- construction --------------------------------------------------------------- */

static void stream_resume(xfer_conn *c) {
        stream_resume_reading(stream_of(c));
}

static const xfer_conn_ops stream_ops = {
        .write = stream_write,
        .read_stop = stream_read_stop,
        .resume = stream_resume,
        .close = stream_close,
        .abort = stream_abort,
        .finish = stream_finish,
        .release = stream_release,
};

int xfer_conn_new_stream(uv_stream_t *stream, const xfer_conn_callbacks *cbs, void *userdata, nm_error *err,
                         xfer_conn **ret) {
        xfer_stream_conn *sc;
        xfer_conn *c = NULL;
        int r;

        if (!stream || !ret)
                return -EINVAL;
        r = xfer__conn_new(stream->loop, sizeof(xfer_stream_conn), &stream_ops, cbs, userdata, &c);
        if (r < 0)
                return nm_error_errno(err, r, "cannot set up a connection");
        sc = stream_of(c);
        sc->stream = stream;
        stream->data = c;
        r = uv_read_start(stream, stream_alloc_cb, stream_read_cb);
        if (r < 0) {
                /* The caller keeps the stream when we fail. */
                xfer__conn_discard(c);
                return nm_error_set(err, r, "cannot read from the connection: %s", uv_strerror(r));
        }
        c->handles_open++;
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
