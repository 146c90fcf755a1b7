/* SPDX-License-Identifier: Apache-2.0 */
#include "ps-relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"

#define PS_READ_CHUNK (256u * 1024u)

struct ps_relay {
        uv_pipe_t pipe;
        ps_relay_ops ops;
        void *ud;
        bool closed_reported, freed, closing, reading;
        char *buf;
};

typedef struct ps_write {
        uv_write_t req;
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
        free(r->buf);
        free(r);
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

int ps_relay_new(uv_loop_t *loop, bool inherit, const ps_relay_ops *ops, void *ud, int *ret_criu_fd,
                 ps_relay **ret) {
        int sv[2], r;
        ps_relay *p;

        if (!loop || !ops || !ret_criu_fd || !ret)
                return -EINVAL;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return negative_errno();
        /* CRIU's end crosses an exec. */
        if (inherit && fcntl(sv[0], F_SETFD, 0) < 0) {
                r = negative_errno();
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        p = calloc(1, sizeof(*p));
        if (p)
                p->buf = malloc(PS_READ_CHUNK);
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
        free(w);
        if (status < 0 && status != UV_ECANCELED)
                relay_report_closed(r, -EIO);
}

int ps_relay_write(ps_relay *r, const void *buf, size_t n) {
        ps_write *w;
        uv_buf_t b;
        int q;

        if (!r || r->closing)
                return -EPIPE;
        w = malloc(sizeof(*w) + n);
        if (!w)
                return -ENOMEM;
        memcpy(w->data, buf, n);
        w->req.data = r;
        b = uv_buf_init(w->data, (unsigned)n);
        q = uv_write(&w->req, (uv_stream_t *)&r->pipe, &b, 1, write_cb);
        if (q < 0) {
                free(w);
                return -EPIPE;
        }
        return 0;
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
         * room for a byte unless CRIU stopped reading altogether. */
        if (uv_fileno((uv_handle_t *)&r->pipe, &fd) == 0) {
                (void)!write(fd, &half, 1);
                (void)shutdown(fd, SHUT_WR);
        }
}

ps_relay *ps_relay_free(ps_relay *r) {
        if (!r)
                return NULL;
        r->freed = true;
        relay_close(r);
        return NULL;
}
