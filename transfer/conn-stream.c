/* SPDX-License-Identifier: Apache-2.0 */
/* The stream transport of a framed connection: a uv stream (unix socket,
 * pipe, TCP), as the control socket and dial-stdio use, or a pair of them
 * (an SSH session's pipes that dial-stdio handed over). Each segment is one
 * uv_write() at once (libuv keeps it until it has left); reads go straight
 * into the frame reader's buffer; a close flushes, then shuts down our
 * side. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "conn-internal.h"
#include "macro.h"

typedef struct xfer_stream_conn {
        xfer_conn conn;      /* first: the core */
        uv_stream_t *stream; /* read, and written unless out is set */
        uv_stream_t *out;    /* a pair's write side, or NULL */
        uv_shutdown_t shutdown_req;
} xfer_stream_conn;

static xfer_stream_conn *stream_of(xfer_conn *c) {
        return container_of(c, xfer_stream_conn, conn);
}

static uv_stream_t *out_of(xfer_stream_conn *sc) {
        return sc->out ? sc->out : sc->stream;
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
        if (uv_shutdown(&sc->shutdown_req, out_of(sc), stream_shutdown_cb) < 0)
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
        if (sc->out) {
                sc->out->data = c;
                uv_close((uv_handle_t *)sc->out, xfer__conn_handle_closed);
        }
}

static void stream_release(xfer_conn *c) {
        free(stream_of(c)->stream);
        free(stream_of(c)->out);
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
        r = uv_write(&g->req, out_of(stream_of(c)), bufs, nb, stream_write_cb);
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

static bool stream_is_ipc(uv_stream_t *st) {
        return st->type == UV_NAMED_PIPE && ((uv_pipe_t *)st)->ipc;
}

/* fds that came with the bytes (SCM_RIGHTS, on a control socket) belong to
 * the frame they came with: it took them while it was handed out
 * (xfer_conn_take_relay), or they are closed here, so that a local client
 * cannot fill our fd table. */
static void stream_drop_fds(uv_stream_t *st) {
        if (uv_is_closing((uv_handle_t *)st))
                return; /* libuv closes them with the handle */
        while (stream_is_ipc(st) && uv_pipe_pending_count((uv_pipe_t *)st) > 0) {
                uv_pipe_t *h = malloc(sizeof(*h));
                if (!h)
                        return; /* the next read, or the close, tries again */
                (void)uv_pipe_init(st->loop, h, 0);
                if (uv_accept(st, (uv_stream_t *)h) < 0) {
                        free(h);
                        return;
                }
                uv_close((uv_handle_t *)h, (uv_close_cb)free);
        }
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
        r = xfer__conn_received(c, (size_t)nread);
        stream_drop_fds(st);
        if (r < 0)
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

/* ---- a session handed over by dial-stdio --------------------------------------- */

int xfer_conn_new_pair(uv_stream_t *in, uv_stream_t *out, const xfer_conn_callbacks *cbs, void *userdata,
                       nm_error *err, xfer_conn **ret) {
        int r;

        if (!in || !out || !ret)
                return -EINVAL;
        r = xfer_conn_new_stream(in, cbs, userdata, err, ret);
        if (r < 0)
                return r;
        stream_of(*ret)->out = out;
        out->data = *ret;
        (*ret)->handles_open++;
        return 0;
}

/* dial-stdio spoke after its first frame: it has nothing more to say. */
static void lifeline_message(xfer_conn *c, const proto_msg *m, void *ud) {
        nm_error e = {};
        (void)ud;
        nm_error_set(&e, -EPROTO, "dial-stdio wrote %s after handing its session over",
                     strna(proto_msg_type_to_string(m->type)));
        xfer_conn_close(c, e.code, &e);
}

static void lifeline_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        /* xfer__conn_finish() has ended the session with it. */
        (void)c, (void)status, (void)err, (void)ud;
}

static const xfer_conn_callbacks lifeline_cbs = {.message = lifeline_message, .closed = lifeline_closed};

/* The next fd that came with the frame, as a pipe handle: a pipe or a unix
 * socket (what sshd gives its command), nothing else. */
static int fd_nonblock(int fd) {
        int fl = fcntl(fd, F_GETFL);
        return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static int take_pipe(uv_pipe_t *from, uv_pipe_t **ret, nm_error *err) {
        uv_os_fd_t fd;
        uv_pipe_t *p;
        int r;

        if (uv_pipe_pending_count(from) < 1)
                return nm_error_set(err, -EPROTO, "RELAY_FDS came without the session's stdin and stdout");
        if (uv_pipe_pending_type(from) != UV_NAMED_PIPE)
                return nm_error_set(err, -EPROTO,
                                    "RELAY_FDS came with an fd that is neither a pipe nor a socket");
        p = malloc(sizeof(*p));
        if (!p)
                return nm_error_set(err, -ENOMEM, "out of memory");
        (void)uv_pipe_init(from->loop, p, 0);
        r = uv_accept((uv_stream_t *)from, (uv_stream_t *)p);
        if (r < 0) {
                free(p);
                return nm_error_set(err, -EIO, "cannot take the session's pipe: %s", uv_strerror(r));
        }
        *ret = p;
        /* libuv takes a received fd as it comes, and sshd's pipes block: a
         * read of an empty one would hold the whole loop until the peer
         * spoke again. */
        if (uv_fileno((uv_handle_t *)p, &fd) < 0 || fd_nonblock(fd) < 0)
                return nm_error_set(err, -EIO, "cannot make the session's pipe non-blocking");
        return 0;
}

int xfer_conn_take_relay(xfer_conn *c, const xfer_conn_callbacks *cbs, void *userdata, nm_error *err,
                         xfer_conn **ret) {
        uv_pipe_t *in = NULL, *out = NULL;
        xfer_stream_conn *sc;
        int r;

        if (!c || !ret)
                return -EINVAL;
        sc = stream_of(c);
        if (c->ops != &stream_ops || sc->out || !stream_is_ipc(sc->stream))
                return nm_error_set(err, -EPROTO, "RELAY_FDS on a connection that cannot carry fds");
        if (uv_pipe_pending_count((uv_pipe_t *)sc->stream) != 2)
                return nm_error_set(err, -EPROTO,
                                    "RELAY_FDS must come with exactly two fds (it came with %d)",
                                    uv_pipe_pending_count((uv_pipe_t *)sc->stream));
        r = take_pipe((uv_pipe_t *)sc->stream, &in, err);
        if (r >= 0)
                r = take_pipe((uv_pipe_t *)sc->stream, &out, err);
        if (r >= 0)
                r = xfer_conn_new_pair((uv_stream_t *)in, (uv_stream_t *)out, cbs, userdata, err, ret);
        if (r < 0) {
                if (in)
                        uv_close((uv_handle_t *)in, (uv_close_cb)free);
                if (out)
                        uv_close((uv_handle_t *)out, (uv_close_cb)free);
                return r;
        }
        /* c now only tells dial-stdio how long to wait: it answers, then
         * waits for our EOF, which comes when the session ends. */
        c->cbs = lifeline_cbs;
        c->userdata = NULL;
        c->session = *ret;
        (*ret)->lifeline = c;
        xfer_conn_set_idle_timeout(c, 0);
        (void)xfer_conn_send(c, &(proto_msg){.type = PROTO_MSG_RELAY_FDS}, NULL);
        return 0;
}
