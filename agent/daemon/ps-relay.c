/* SPDX-License-Identifier: Apache-2.0 */
#include "ps-relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"

#define PS_READ_CHUNK (256u * 1024u)
/* Write buffers kept for the next writes. A fresh buffer per frame is a
 * fresh mapping (glibc maps anything this big) whose pages fault in one by
 * one, slowly on a VM that hands freed memory back to its host: a GiB of
 * pages through a link of two relays cost ~6 s of system time that way. */
#define PS_POOL_MAX 16u

struct ps_relay {
        uv_pipe_t pipe;
        ps_relay_ops ops;
        void *ud;
        bool closed_reported, freed, closing, reading;
        char *buf;
        struct ps_write *pool; /* idle write buffers, at most PS_POOL_MAX */
        unsigned pooled;
        size_t queued; /* bytes written and not yet taken by the socket */
        bool full;     /* queued went above PS_RELAY_HIGH and not yet down to PS_RELAY_LOW */
};

typedef struct ps_write {
        uv_write_t req;
        struct ps_write *next;
        size_t cap, len;
        char data[];
} ps_write;

static void relay_report_closed(ps_relay *r, int status) {
        if (r->closed_reported || r->freed)
                return;
        r->closed_reported = true;
        if (r->ops.closed)
                r->ops.closed(r, status, r->ud);
}

static void pipe_closed(uv_handle_t *h) {
        ps_relay *r = container_of((uv_pipe_t *)h, ps_relay, pipe);
        while (r->pool) {
                ps_write *w = r->pool;
                r->pool = w->next;
                free(w);
        }
        free(r->buf);
        free(r);
}

static ps_write *write_get(ps_relay *r, size_t n) {
        ps_write *w;
        size_t cap;

        for (ps_write **pp = &r->pool; *pp; pp = &(*pp)->next) {
                if ((*pp)->cap >= n) {
                        w = *pp;
                        *pp = w->next;
                        r->pooled--;
                        return w;
                }
        }
        cap = n > PS_READ_CHUNK ? n : PS_READ_CHUNK;
        w = malloc(sizeof(*w) + cap);
        if (w)
                w->cap = cap;
        return w;
}

/* Write callbacks run before the handle's close callback, which frees the
 * pool: a buffer put back while closing is freed at once. */
static void write_put(ps_relay *r, ps_write *w) {
        if (r->closing || r->pooled >= PS_POOL_MAX) {
                free(w);
                return;
        }
        w->next = r->pool;
        r->pool = w;
        r->pooled++;
}

static void relay_close(ps_relay *r) {
        if (r->closing)
                return;
        r->closing = true;
        uv_close((uv_handle_t *)&r->pipe, pipe_closed);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
        ps_relay *r = container_of((uv_pipe_t *)h, ps_relay, pipe);
        (void)suggested;
        *buf = uv_buf_init(r->buf, PS_READ_CHUNK);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
        ps_relay *r = container_of((uv_pipe_t *)s, ps_relay, pipe);
        (void)buf;
        if (n > 0) {
                if (!r->freed && r->ops.data)
                        r->ops.data(r, r->buf, (size_t)n, r->ud);
                return;
        }
        if (n == 0)
                return;
        (void)uv_read_stop(s);
        r->reading = false;
        relay_report_closed(r, n == UV_EOF ? 0 : -EIO);
}

int ps_relay_new(uv_loop_t *loop, const ps_relay_ops *ops, void *ud, int *ret_criu_fd, ps_relay **ret) {
        int sv[2], r;
        ps_relay *p;

        if (!loop || !ops || !ret_criu_fd || !ret)
                return -EINVAL;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return negative_errno();
        p = calloc(1, sizeof(*p));
        if (p)
                p->buf = io_buf_alloc(PS_READ_CHUNK); /* CRIU splices page-aligned pages in */
        if (!p || !p->buf) {
                if (p)
                        free(p);
                close(sv[0]);
                close(sv[1]);
                return -ENOMEM;
        }
        p->ops = *ops;
        p->ud = ud;
        (void)uv_pipe_init(loop, &p->pipe, 0);
        r = uv_pipe_open(&p->pipe, sv[1]);
        if (r >= 0)
                r = uv_read_start((uv_stream_t *)&p->pipe, alloc_cb, read_cb);
        if (r < 0) {
                close(sv[0]);
                if (uv_fileno((uv_handle_t *)&p->pipe, &(uv_os_fd_t){0}) != 0)
                        close(sv[1]);
                relay_close(p);
                return r;
        }
        p->reading = true;
        *ret_criu_fd = sv[0];
        *ret = p;
        return 0;
}

static void write_cb(uv_write_t *req, int status) {
        ps_write *w = container_of(req, ps_write, req);
        ps_relay *r = req->data;

        r->queued -= w->len;
        write_put(r, w);
        if (status < 0 && status != UV_ECANCELED) {
                relay_report_closed(r, -EIO);
                return;
        }
        if (r->full && r->queued <= PS_RELAY_LOW && !r->closing) {
                r->full = false;
                if (!r->freed && r->ops.drained)
                        r->ops.drained(r, r->ud);
        }
}

int ps_relay_write(ps_relay *r, const void *buf, size_t n) {
        ps_write *w;
        uv_buf_t b;
        int q;

        if (!r || r->closing)
                return -EPIPE;
        w = write_get(r, n);
        if (!w)
                return -ENOMEM;
        memcpy(w->data, buf, n);
        w->len = n;
        w->req.data = r;
        b = uv_buf_init(w->data, (unsigned)n);
        q = uv_write(&w->req, (uv_stream_t *)&r->pipe, &b, 1, write_cb);
        if (q < 0) {
                free(w);
                return -EPIPE;
        }
        r->queued += n;
        if (r->queued > PS_RELAY_HIGH)
                r->full = true;
        return 0;
}

bool ps_relay_full(const ps_relay *r) {
        return r && r->queued > PS_RELAY_HIGH;
}

void ps_relay_pause(ps_relay *r, bool pause) {
        if (!r || r->closing || r->closed_reported)
                return;
        if (pause && r->reading) {
                (void)uv_read_stop((uv_stream_t *)&r->pipe);
                r->reading = false;
        } else if (!pause && !r->reading) {
                if (uv_read_start((uv_stream_t *)&r->pipe, alloc_cb, read_cb) >= 0)
                        r->reading = true;
        }
}

void ps_relay_poison(ps_relay *r) {
        static const char half = 0;
        uv_os_fd_t fd;

        if (!r || r->closing)
                return;
        /* Less than one page_server_iov header, then the end: CRIU reads a
         * short command and fails. Written synchronously: the socket has
         * room for a byte unless CRIU stopped reading altogether. Our side
         * stops reading too: a CRIU blocked writing into a socket we had
         * paused (a dump that outran its link) gets EPIPE now, rather than
         * wait until its own timeout for room that never comes. */
        if (uv_fileno((uv_handle_t *)&r->pipe, &fd) == 0) {
                (void)!write(fd, &half, 1);
                (void)shutdown(fd, SHUT_RDWR);
        }
}

ps_relay *ps_relay_free(ps_relay *r) {
        if (!r)
                return NULL;
        r->freed = true;
        relay_close(r);
        return NULL;
}
