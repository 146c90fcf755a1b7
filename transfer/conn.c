/* SPDX-License-Identifier: Apache-2.0 */
/* The core of a framed message connection, whatever carries its bytes.
 *
 * Outgoing frames are queued as segments and handed to the transport
 * (conn-internal.h: a uv stream writes each at once, an SSH channel on its
 * session's next step); the core counts what waits, tells a waiting
 * producer when the queue drained, and stops taking frames from a peer
 * that does not read our answers. Incoming bytes are read by the transport
 * straight into the proto_reader's buffer; the core decodes and delivers
 * whole frames, refuses bad ones with an ERROR, and runs the idle and close
 * timers and the one closed callback. */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "conn-internal.h"
#include "macro.h"

/* A graceful close (flush, EOF, wait for the peer's close) may take this
 * long before it turns into an abort. */
#define XFER_CONN_CLOSE_TIMEOUT_MS 5000
/* A peer that sends requests faster than it reads the answers (or never
 * reads them) must not grow our queue without bound: above this many bytes
 * or segments queued, no further frame is taken from it until the queue has
 * drained to half (its idle timeout runs meanwhile). The image sender keeps
 * its own queue far below this. */
#define XFER_CONN_READ_PAUSE_BYTES (8u * 1024u * 1024u)
#define XFER_CONN_READ_PAUSE_SEGS 1024u

uv_loop_t *xfer__conn_loop(xfer_conn *c) {
        return c->loop;
}

size_t xfer_conn_queued(const xfer_conn *c) {
        return c->queued;
}

uint64_t xfer_conn_written(const xfer_conn *c) {
        return c->written;
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

        assert(n <= c->queued);
        c->queued -= n;
        c->written += n;
        touch(c);
        if (c->state == XFER_CONN_OPEN && c->drain_cb && before > c->low_water && c->queued <= c->low_water)
                c->drain_cb(c, c->drain_ud);
}

void xfer__conn_written(xfer_conn *c, xfer_seg *g, size_t n) {
        if (g) {
                assert(c->n_segs > 0);
                seg_free(g);
                c->n_segs--;
        }
        dequeued(c, n);
}

void xfer__conn_dropped(xfer_conn *c, xfer_seg *g) {
        size_t left = g->hdr_len + g->payload_len - g->off;

        assert(c->n_segs > 0 && left <= c->queued);
        c->queued -= left;
        c->n_segs--;
        seg_free(g);
}

static bool queue_full(const xfer_conn *c) {
        return c->queued > XFER_CONN_READ_PAUSE_BYTES || c->n_segs > XFER_CONN_READ_PAUSE_SEGS;
}

bool xfer__conn_queue_drained(const xfer_conn *c) {
        return c->taking == XFER_CONN_TAKING && c->queued <= XFER_CONN_READ_PAUSE_BYTES / 2 &&
               c->n_segs <= XFER_CONN_READ_PAUSE_SEGS / 2;
}

void xfer_conn_hold_reading(xfer_conn *c, bool hold) {
        xfer_conn_taking was = c->taking;

        c->taking = hold ? XFER_CONN_HELD : XFER_CONN_TAKING;
        if (hold || was == XFER_CONN_TAKING)
                return;
        /* The peer's idle window starts again: it waited for us. */
        touch(c);
        xfer__conn_timer_arm(c);
        if (c->state == XFER_CONN_OPEN && c->input == XFER_CONN_INPUT_PAUSED && xfer__conn_queue_drained(c))
                c->ops->resume(c);
}

/* ---- timers ---------------------------------------------------------- */

static void timer_cb(uv_timer_t *t);

void xfer__conn_timer_arm(xfer_conn *c) {
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

void xfer__conn_deadline(xfer_conn *c, uint64_t ms) {
        (void)uv_timer_start(&c->timer, timer_cb, ms, 0);
}

static void timer_cb(uv_timer_t *t) {
        xfer_conn *c = container_of(t, xfer_conn, timer);
        nm_error e = {};

        if (c->state == XFER_CONN_CLOSING) {
                if (c->status < 0 && c->ops->abandon) {
                        /* The goodbye is stuck (the link is gone). */
                        c->ops->abandon(c);
                        xfer__conn_finish(c);
                        return;
                }
                nm_error_set(&e, -ETIMEDOUT, "the peer did not finish closing the connection within %u ms",
                             XFER_CONN_CLOSE_TIMEOUT_MS);
                xfer__conn_fail(c, -ETIMEDOUT, &e);
                return;
        }
        if (c->state != XFER_CONN_OPEN || c->idle_ms == 0)
                return;
        if (c->taking == XFER_CONN_HELD)
                touch(c); /* we hold reading: the peer is not idle, it waits for us */
        if (uv_now(c->loop) - c->last_activity < c->idle_ms) {
                xfer__conn_timer_arm(c);
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
        xfer__conn_fail(c, -ETIMEDOUT, &e);
}

void xfer_conn_set_idle_timeout(xfer_conn *c, uint64_t ms) {
        c->idle_ms = ms;
        touch(c);
        xfer__conn_timer_arm(c);
}

/* ---- construction and the end ------------------------------------------ */

int xfer__conn_new(uv_loop_t *loop, size_t size, const xfer_conn_ops *ops, const xfer_conn_callbacks *cbs,
                   void *userdata, xfer_conn **ret) {
        xfer_conn *c;
        int r;

        assert(size >= sizeof(xfer_conn));
        assert(ops && ops->write && ops->read_stop && ops->resume && ops->close && ops->abort &&
               ops->finish && ops->release);
        if (!cbs || !cbs->closed)
                return -EINVAL;
        c = calloc(1, size);
        if (!c)
                return -ENOMEM;
        r = proto_reader_new(0, &c->reader);
        if (r < 0) {
                free(c);
                return r;
        }
        c->ops = ops;
        c->loop = loop;
        c->cbs = *cbs;
        c->userdata = userdata;
        (void)uv_timer_init(loop, &c->timer);
        c->handles_open = 1;
        touch(c);
        *ret = c;
        return 0;
}

void xfer__conn_handle_closed(uv_handle_t *h) {
        xfer_conn *c = h->data;

        if (!c) {
                /* xfer__conn_discard(): nothing but the timer was made. */
                free(container_of((uv_timer_t *)h, xfer_conn, timer));
                return;
        }
        assert(c->state == XFER_CONN_FINISHING && c->handles_open > 0);
        if (--c->handles_open > 0)
                return;
        if (c->cbs.closed)
                c->cbs.closed(c, c->status, c->status < 0 ? &c->err : NULL, c->userdata);
        c->ops->release(c);
        proto_reader_free(c->reader);
        free(c);
}

void xfer__conn_discard(xfer_conn *c) {
        c->timer.data = NULL;
        c->reader = proto_reader_free(c->reader);
        uv_close((uv_handle_t *)&c->timer, xfer__conn_handle_closed);
}

/* A handed-over session that ends lets dial-stdio go (our EOF on its
 * socket); a dial-stdio that goes first ends the session: sshd stops
 * passing the peer's bytes on once its command has exited. */
static void untie(xfer_conn *c) {
        xfer_conn *l = c->lifeline, *s = c->session;
        nm_error e = {};

        c->lifeline = c->session = NULL;
        if (l) {
                l->session = NULL;
                xfer_conn_close(l, 0, NULL);
        }
        if (s) {
                s->lifeline = NULL;
                nm_error_set(&e, -ECONNRESET, "dial-stdio, which held this session, ended%s%s",
                             c->status < 0 ? ": " : "", c->status < 0 ? c->err.msg : "");
                xfer_conn_close(s, e.code, &e);
        }
}

void xfer__conn_finish(xfer_conn *c) {
        if (c->state == XFER_CONN_FINISHING)
                return;
        c->state = XFER_CONN_FINISHING;
        untie(c);
        c->ops->finish(c);
        c->timer.data = c;
        uv_close((uv_handle_t *)&c->timer, xfer__conn_handle_closed);
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

void xfer__conn_fail(xfer_conn *c, int status, const nm_error *err) {
        if (c->state == XFER_CONN_FINISHING)
                return;
        set_status(c, status < 0 ? status : -EIO, err);
        c->ops->abort(c);
}

void xfer_conn_close(xfer_conn *c, int status, const nm_error *err) {
        if (!c || c->state == XFER_CONN_FINISHING)
                return;
        if (status < 0) {
                xfer__conn_fail(c, status, err);
                return;
        }
        if (c->state == XFER_CONN_CLOSING)
                return;
        set_status(c, 0, NULL);
        c->state = XFER_CONN_CLOSING;
        (void)uv_timer_stop(&c->timer);
        xfer__conn_timer_arm(c);
        c->ops->close(c);
}

/* ---- sending ------------------------------------------------------------- */

static int enqueue(xfer_conn *c, xfer_seg *g, nm_error *err) {
        size_t n = g->hdr_len + g->payload_len;
        int r;

        g->conn = c;
        r = c->ops->write(c, g, err);
        if (r < 0)
                return r;
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

/* Bytes framed already (at most a frame's payload at a time): a payload
 * with no header of its own. */
int xfer__conn_send_raw(xfer_conn *c, const void *bytes, size_t n, void (*release)(void *ud), void *release_ud,
                        nm_error *err) {
        xfer_seg *g = NULL;
        int r = payload_seg_new(c, "relayed", n, &g, err);
        if (r < 0)
                return r;
        return send_payload(c, g, 0, bytes, n, release, release_ud, err);
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

/* ---- receiving ------------------------------------------------------------ */

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
                xfer__conn_fail(c, code, e);
                return;
        }
        c->ops->read_stop(c);
        m = (proto_msg){.type = PROTO_MSG_ERROR, .error = {.code = code, .reason = e->msg}};
        set_status(c, code, e);
        if (xfer_conn_send(c, &m, NULL) < 0) {
                /* The reason cannot travel (e.g. a control byte from the
                 * hostile input in it): just close. */
                xfer__conn_fail(c, code, e);
                return;
        }
        xfer_conn_close(c, 0, NULL); /* keeps the error set above */
}

int xfer__conn_deliver(xfer_conn *c) {
        assert(c->input != XFER_CONN_INPUT_ENDED);
        for (;;) {
                _cleanup_proto_msg_ proto_msg m = {};
                const uint8_t *payload;
                size_t n;
                nm_error e = {};
                int r;

                if (c->state != XFER_CONN_OPEN)
                        return 0; /* no messages after close */
                if (queue_full(c) || c->taking == XFER_CONN_HELD) {
                        /* The rest waits in the reader until the queue
                         * drains and the caller takes frames again. */
                        c->input = XFER_CONN_INPUT_PAUSED;
                        c->ops->read_stop(c);
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

int xfer__conn_received(xfer_conn *c, size_t n) {
        nm_error e = {};
        int r;

        r = proto_reader_advance(c->reader, n, &e);
        if (r < 0) {
                refuse_frame(c, r, &e);
                return r;
        }
        return xfer__conn_deliver(c);
}

int xfer__conn_resume(xfer_conn *c) {
        int r;

        assert(c->input == XFER_CONN_INPUT_PAUSED);
        c->input = XFER_CONN_INPUT_READING;
        r = xfer__conn_deliver(c);
        if (r < 0)
                return r;
        return c->input == XFER_CONN_INPUT_READING && c->state == XFER_CONN_OPEN;
}

void xfer__conn_peer_ended(xfer_conn *c) {
        nm_error e = {};
        int r;

        c->input = XFER_CONN_INPUT_ENDED;
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
