/* SPDX-License-Identifier: Apache-2.0 */
/* dial-stdio: relays stdin to the agent's unix socket and the socket's
 * replies to stdout, for a peer whose SSH session runs us (like `docker
 * system dial-stdio`). No framing is looked at: the agent parses the bytes.
 *
 * stdin and stdout are whatever sshd (or a shell) gave us: pipes and sockets
 * are watched by the loop, regular files and other non-pollable fds go
 * through the threadpool (uv_fs_read/uv_fs_write, one at a time so that the
 * order holds). Each direction stops reading while more than RELAY_HIGH
 * bytes wait to be written. The relay ends when the socket has said all it
 * had to say and it has reached stdout, or on the first error. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"
#include "transfer-internal.h"

#define RELAY_BUF (256u * 1024u)
#define RELAY_HIGH (1024u * 1024u)
/* Buffers a direction keeps for reuse: enough for RELAY_HIGH in flight and
 * one being read, so a steady stream allocates nothing. */
#define RELAY_SPARE (RELAY_HIGH / RELAY_BUF + 1u)

typedef struct relay relay;
typedef struct relay_dir relay_dir;

typedef struct relay_end {
        relay *rl;
        int fd;
        bool is_file;
        uv_stream_t *stream; /* a malloc()ed uv_pipe_t/uv_tcp_t/uv_tty_t, or NULL */
        bool reading;
} relay_end;

typedef struct relay_buf {
        struct relay_buf *next;
        relay_dir *d;
        uv_write_t wreq;
        uv_fs_t fsreq;
        size_t len;
        /* on a cache line: pipe reads into it run 2x faster (io_buf_alloc()) */
        char data[RELAY_BUF] __attribute__((aligned(64)));
} relay_buf;

struct relay_dir {
        relay *rl;
        const char *name; /* for messages */
        relay_end *src, *dst;
        size_t pending; /* bytes read and not yet written */
        relay_buf *spare; /* written buffers kept for the next reads */
        unsigned n_spare;
        bool src_eof, done;
        /* file source */
        relay_buf *rbuf;
        bool read_in_flight;
        /* file destination: one write at a time, in order */
        relay_buf *fq_head, *fq_tail;
        bool write_in_flight;
        uv_shutdown_t shut;
};

struct relay {
        uv_loop_t *loop;
        relay_end in, out, sock;
        relay_dir up, down;
        uv_connect_t connect_req;
        relay_buf *first; /* the frame that goes to the socket before any relayed byte */
        char *path;
        unsigned handles_open;
        unsigned reqs_pending; /* fs requests on the threadpool */
        bool finishing;
        int status;
        nm_error err;
        xfer_dial_done_cb cb;
        void *userdata;
};

static void dir_pump(relay_dir *d);
static void relay_finish(relay *rl, int status, const char *fmt, ...) _printf_(3, 4);

/* A buffer from the direction's spares, or a fresh one. Freeing each
 * buffer after its write cost more than the copy it carried: glibc gave the
 * memory back, and the next read faulted it in again. */
static relay_buf *buf_get(relay_dir *d) {
        relay_buf *b = d->spare;

        if (!b)
                return io_buf_alloc(sizeof(*b));
        d->spare = b->next;
        d->n_spare--;
        return b;
}

static void buf_put(relay_dir *d, relay_buf *b) {
        if (d->n_spare >= RELAY_SPARE) {
                free(b);
                return;
        }
        b->next = d->spare;
        d->spare = b;
        d->n_spare++;
}

static void dir_free_spares(relay_dir *d) {
        while (d->spare)
                free(buf_get(d));
}

static void relay_maybe_done(relay *rl) {
        if (!rl->finishing || rl->handles_open > 0 || rl->reqs_pending > 0)
                return;
        if (rl->cb)
                rl->cb(rl->status, rl->status < 0 ? &rl->err : NULL, rl->userdata);
        free(rl->up.rbuf);
        free(rl->down.rbuf);
        dir_free_spares(&rl->up);
        dir_free_spares(&rl->down);
        free(rl->first);
        free(rl->path);
        free(rl);
}

static void handle_closed_cb(uv_handle_t *h) {
        relay *rl = h->data;
        free(h);
        rl->handles_open--;
        relay_maybe_done(rl);
}

static void end_close(relay_end *e) {
        if (e->stream) {
                e->stream->data = e->rl;
                uv_close((uv_handle_t *)e->stream, handle_closed_cb);
                e->stream = NULL;
        } else if (e->fd >= 0 && e->is_file) {
                close(e->fd);
        }
        e->fd = -EBADF;
}

static void relay_finish(relay *rl, int status, const char *fmt, ...) {
        va_list ap;
        char msg[1024];

        if (rl->finishing)
                return;
        rl->finishing = true;
        rl->status = status;
        if (status < 0 && fmt) {
                va_start(ap, fmt);
                vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
                nm_error_set(&rl->err, status, "dial-stdio: %s", msg);
        }
        end_close(&rl->in);
        end_close(&rl->out);
        end_close(&rl->sock);
        relay_maybe_done(rl);
}

static int end_open(relay *rl, relay_end *e, int fd, bool readable) {
        uv_handle_type t = uv_guess_handle(fd);
        int r;

        e->rl = rl;
        e->fd = fd;
        if (t == UV_FILE || t == UV_UNKNOWN_HANDLE || t == UV_UDP) {
                e->is_file = true;
                return 0;
        }
        if (t == UV_TCP) {
                uv_tcp_t *h = malloc(sizeof(*h));
                if (!h)
                        return -ENOMEM;
                (void)uv_tcp_init(rl->loop, h);
                r = uv_tcp_open(h, fd);
                e->stream = (uv_stream_t *)h;
        } else if (t == UV_TTY) {
                uv_tty_t *h = malloc(sizeof(*h));
                if (!h)
                        return -ENOMEM;
                r = uv_tty_init(rl->loop, h, fd, readable);
                if (r < 0) {
                        free(h);
                        return r;
                }
                e->stream = (uv_stream_t *)h;
        } else {
                uv_pipe_t *h = malloc(sizeof(*h));
                if (!h)
                        return -ENOMEM;
                (void)uv_pipe_init(rl->loop, h, 0);
                r = uv_pipe_open(h, fd);
                e->stream = (uv_stream_t *)h;
        }
        e->stream->data = rl;
        rl->handles_open++;
        return r;
}

/* ---- writing --------------------------------------------------------------- */

static void dir_wrote(relay_dir *d, relay_buf *b, int status) {
        relay *rl = d->rl;

        d->pending -= b->len;
        buf_put(d, b);
        if (rl->finishing)
                return;
        if (status < 0) {
                relay_finish(rl, status == UV_EPIPE ? -EPIPE : -EIO, "writing to %s failed: %s",
                             d == &rl->up ? "the agent socket" : "stdout", uv_strerror(status));
                return;
        }
        dir_pump(d);
}

static void stream_write_cb(uv_write_t *req, int status) {
        relay_buf *b = container_of(req, relay_buf, wreq);
        dir_wrote(b->d, b, status);
}

static void file_write_next(relay_dir *d);

static void file_write_cb(uv_fs_t *req) {
        relay_buf *b = container_of(req, relay_buf, fsreq);
        relay_dir *d = b->d;
        ssize_t n = req->result;

        uv_fs_req_cleanup(req);
        d->rl->reqs_pending--;
        d->write_in_flight = false;
        if (n >= 0 && (size_t)n < b->len && !d->rl->finishing) {
                /* A short write: write the rest first. */
                memmove(b->data, b->data + n, b->len - (size_t)n);
                d->pending -= (size_t)n;
                b->len -= (size_t)n;
                b->next = d->fq_head;
                d->fq_head = b;
                if (!d->fq_tail)
                        d->fq_tail = b;
                file_write_next(d);
                return;
        }
        dir_wrote(d, b, n < 0 ? (int)n : 0);
        if (!d->rl->finishing)
                file_write_next(d);
        else
                relay_maybe_done(d->rl);
}

static void file_write_next(relay_dir *d) {
        relay_buf *b = d->fq_head;
        uv_buf_t ub;
        int r;

        if (d->write_in_flight || !b)
                return;
        d->fq_head = b->next;
        if (!d->fq_head)
                d->fq_tail = NULL;
        ub = uv_buf_init(b->data, (unsigned)b->len);
        r = uv_fs_write(d->rl->loop, &b->fsreq, d->dst->fd, &ub, 1, -1, file_write_cb);
        if (r < 0) {
                dir_wrote(d, b, r);
                return;
        }
        d->write_in_flight = true;
        d->rl->reqs_pending++;
}

static void dir_write(relay_dir *d, relay_buf *b) {
        b->d = d;
        b->next = NULL;
        d->pending += b->len;
        if (d->dst->stream) {
                uv_buf_t ub = uv_buf_init(b->data, (unsigned)b->len);
                int r = uv_write(&b->wreq, d->dst->stream, &ub, 1, stream_write_cb);
                if (r < 0) {
                        d->pending -= b->len;
                        free(b);
                        relay_finish(d->rl, -EIO, "writing failed: %s", uv_strerror(r));
                }
                return;
        }
        if (d->fq_tail)
                d->fq_tail->next = b;
        else
                d->fq_head = b;
        d->fq_tail = b;
        file_write_next(d);
}

/* ---- reading --------------------------------------------------------------- */

static void shutdown_cb(uv_shutdown_t *req, int status) {
        relay_dir *d = container_of(req, relay_dir, shut);
        (void)status;
        d->done = true;
        if (d == &d->rl->down)
                relay_finish(d->rl, 0, NULL);
}

/* The source ended and everything read has been written: pass the EOF on. */
static void dir_end(relay_dir *d) {
        relay *rl = d->rl;

        if (d->done || d->shut.handle || d->pending > 0 || rl->finishing)
                return;
        if (d->dst->stream && uv_shutdown(&d->shut, d->dst->stream, shutdown_cb) == 0)
                return;
        d->done = true;
        if (d == &rl->down)
                relay_finish(rl, 0, NULL);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
        relay *rl = h->data;
        relay_dir *d = (uv_stream_t *)h == rl->in.stream ? &rl->up : &rl->down;
        (void)suggested;

        if (!d->rbuf)
                d->rbuf = buf_get(d);
        *buf = d->rbuf ? uv_buf_init(d->rbuf->data, RELAY_BUF) : uv_buf_init(NULL, 0);
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
        relay *rl = st->data;
        relay_dir *d = st == rl->in.stream ? &rl->up : &rl->down;
        relay_buf *b;
        (void)buf;

        if (n == 0 || rl->finishing)
                return;
        if (n == UV_EOF) {
                (void)uv_read_stop(st);
                d->src->reading = false;
                d->src_eof = true;
                dir_end(d);
                return;
        }
        if (n < 0) {
                relay_finish(rl, -EIO, "reading from %s failed: %s",
                             d == &rl->up ? "stdin" : "the agent socket", uv_strerror((int)n));
                return;
        }
        b = TAKE_PTR(d->rbuf);
        b->len = (size_t)n;
        dir_write(d, b);
        dir_pump(d);
}

static void file_read_cb(uv_fs_t *req) {
        relay_buf *b = container_of(req, relay_buf, fsreq);
        relay_dir *d = b->d;
        relay *rl = d->rl;
        ssize_t n = req->result;

        uv_fs_req_cleanup(req);
        rl->reqs_pending--;
        d->read_in_flight = false;
        if (rl->finishing) {
                free(b);
                relay_maybe_done(rl);
                return;
        }
        if (n < 0) {
                free(b);
                relay_finish(rl, -EIO, "reading from %s failed: %s",
                             d == &rl->up ? "stdin" : "the agent socket", uv_strerror((int)n));
                return;
        }
        if (n == 0) {
                free(b);
                d->src_eof = true;
                dir_end(d);
                return;
        }
        b->len = (size_t)n;
        dir_write(d, b);
        dir_pump(d);
}

/* Reads while the destination keeps up. */
static void dir_pump(relay_dir *d) {
        relay *rl = d->rl;
        bool want = d->pending < RELAY_HIGH && !d->src_eof && !rl->finishing;

        if (d->src_eof) {
                dir_end(d);
                return;
        }
        if (d->src->stream) {
                if (want && !d->src->reading) {
                        if (uv_read_start(d->src->stream, alloc_cb, read_cb) == 0)
                                d->src->reading = true;
                } else if (!want && d->src->reading) {
                        (void)uv_read_stop(d->src->stream);
                        d->src->reading = false;
                }
                return;
        }
        if (want && !d->read_in_flight) {
                relay_buf *b = buf_get(d);
                uv_buf_t ub;
                if (!b) {
                        relay_finish(rl, -ENOMEM, "out of memory");
                        return;
                }
                b->d = d;
                ub = uv_buf_init(b->data, RELAY_BUF);
                if (uv_fs_read(rl->loop, &b->fsreq, d->src->fd, &ub, 1, -1, file_read_cb) < 0) {
                        free(b);
                        relay_finish(rl, -EIO, "cannot read stdin");
                        return;
                }
                d->read_in_flight = true;
                rl->reqs_pending++;
        }
}

static void connect_cb(uv_connect_t *req, int status) {
        relay *rl = container_of(req, relay, connect_req);

        if (rl->finishing)
                return;
        if (status < 0) {
                relay_finish(rl, status == UV_ENOENT || status == UV_ECONNREFUSED ? -ECONNREFUSED : -EIO,
                             "cannot connect to the agent at %s: %s (is nucleus-agent running?)", rl->path,
                             uv_strerror(status));
                return;
        }
        /* Queued before the first read of stdin: writes on a stream keep
         * their order, so the agent hears our frame before any of the
         * peer's bytes. */
        if (rl->first)
                dir_write(&rl->up, TAKE_PTR(rl->first));
        dir_pump(&rl->up);
        dir_pump(&rl->down);
}

/* The first frame, encoded into a buffer of the relay's own. */
static int first_frame(const proto_msg *m, relay_buf **ret, nm_error *err) {
        _cleanup_free_ uint8_t *bytes = NULL;
        relay_buf *b;
        size_t len;
        int r;

        r = proto_encode(m, &bytes, &len, err);
        if (r < 0)
                return r;
        if (len > RELAY_BUF)
                return nm_error_set(err, -E2BIG, "dial-stdio: the first frame is too big");
        b = io_buf_alloc(sizeof(*b));
        if (!b)
                return nm_error_set(err, -ENOMEM, "out of memory");
        memset(b, 0, offsetof(relay_buf, data));
        memcpy(b->data, bytes, len);
        b->len = len;
        *ret = b;
        return 0;
}

int xfer_dial_stdio(uv_loop_t *loop, const char *socket_path, int in_fd, int out_fd, const proto_msg *first,
                    xfer_dial_done_cb cb, void *userdata, nm_error *err) {
        relay *rl;
        uv_pipe_t *sock;
        int r;

        if (!loop || !socket_path || in_fd < 0 || out_fd < 0 || !cb)
                return -EINVAL;
        rl = calloc(1, sizeof(*rl));
        if (!rl)
                return -ENOMEM;
        if (first && (r = first_frame(first, &rl->first, err)) < 0) {
                free(rl);
                return r;
        }
        rl->loop = loop;
        rl->cb = cb;
        rl->userdata = userdata;
        rl->path = strdup(socket_path);
        rl->in.fd = rl->out.fd = rl->sock.fd = -EBADF;
        rl->up = (relay_dir){.rl = rl, .src = &rl->in, .dst = &rl->sock};
        rl->down = (relay_dir){.rl = rl, .src = &rl->sock, .dst = &rl->out};
        sock = malloc(sizeof(*sock));
        if (!rl->path || !sock) {
                free(sock);
                free(rl->path);
                free(rl->first);
                free(rl);
                return -ENOMEM;
        }
        (void)uv_pipe_init(loop, sock, 0);
        sock->data = rl;
        rl->sock = (relay_end){.rl = rl, .fd = -EBADF, .stream = (uv_stream_t *)sock};
        rl->handles_open = 1;

        r = end_open(rl, &rl->in, in_fd, true);
        if (r >= 0)
                r = end_open(rl, &rl->out, out_fd, false);
        if (r < 0) {
                nm_error_set(err, r, "dial-stdio: cannot use stdin/stdout: %s", uv_strerror(r));
                /* The callback is not wanted after a synchronous failure. */
                rl->cb = NULL;
                relay_finish(rl, r, NULL);
                return r;
        }
        uv_pipe_connect(&rl->connect_req, sock, socket_path, connect_cb);
        return 0;
}

int xfer_dial_grow_pipe(int fd) {
        struct stat st;

        if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode))
                return 0; /* a socket, a tty or a file: as it is */
        if (fcntl(fd, F_SETPIPE_SZ, XFER_DIAL_PIPE_SIZE) < 0)
                return -errno;
        return 0;
}
