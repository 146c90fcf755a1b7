/* SPDX-License-Identifier: Apache-2.0 */
/* The parts of transfer/ that need a peer but not sshd, on loopback: the
 * dial-stdio relay (files and sockets as stdin/stdout) and the SSH
 * session's connect errors, timeouts and cancellation. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "test-time.h"
#include "test-xfer-util.h"

/* ---- an echo server on a unix socket: returns what it gets, then ends
 * its side when the client ends its own. ---- */

typedef struct echo {
        uv_pipe_t listener;
        uv_pipe_t *client;
        bool shut;
        uv_shutdown_t shutdown_req;
        size_t echoed;
} echo;

static void free_handle(uv_handle_t *h) {
        free(h);
}

typedef struct echo_write {
        uv_write_t req;
        char *buf;
} echo_write;

static void echo_write_cb(uv_write_t *req, int status) {
        echo_write *w = container_of(req, echo_write, req);
        (void)status;
        free(w->buf);
        free(w);
}

static void echo_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
        (void)h;
        buf->base = malloc(suggested);
        buf->len = suggested;
}

static void echo_shutdown_cb(uv_shutdown_t *req, int status) {
        (void)status;
        uv_close((uv_handle_t *)req->handle, free_handle);
}

static void echo_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
        echo *e = st->data;
        if (n > 0) {
                echo_write *w = calloc(1, sizeof(*w));
                uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
                w->buf = buf->base;
                e->echoed += (size_t)n;
                assert_int_equal(uv_write(&w->req, st, &b, 1, echo_write_cb), 0);
                return;
        }
        free(buf->base);
        if (n < 0) {
                uv_read_stop(st);
                assert_int_equal(uv_shutdown(&e->shutdown_req, st, echo_shutdown_cb), 0);
        }
}

static void echo_connection(uv_stream_t *l, int status) {
        echo *e = l->data;
        assert_int_equal(status, 0);
        e->client = malloc(sizeof(*e->client));
        uv_pipe_init(l->loop, e->client, 0);
        e->client->data = e;
        assert_int_equal(uv_accept(l, (uv_stream_t *)e->client), 0);
        assert_int_equal(uv_read_start((uv_stream_t *)e->client, echo_alloc, echo_read), 0);
        uv_close((uv_handle_t *)l, NULL); /* one client */
}

static void echo_start(uv_loop_t *loop, echo *e, const char *path) {
        memset(e, 0, sizeof(*e));
        uv_pipe_init(loop, &e->listener, 0);
        e->listener.data = e;
        assert_int_equal(uv_pipe_bind(&e->listener, path), 0);
        assert_int_equal(uv_listen((uv_stream_t *)&e->listener, 1, echo_connection), 0);
}

typedef struct dial_res {
        int calls, status;
        nm_error err;
} dial_res;

static void dial_done(int status, const nm_error *err, void *ud) {
        dial_res *r = ud;
        r->calls++;
        r->status = status;
        if (err)
                r->err = *err;
}

static void test_dial_stdio_files(void **state) {
        char *dir = t_mkdtemp(), path[256];
        size_t n = 3 * 1024 * 1024 + 17;
        uint8_t *data = malloc(n);
        char *out = NULL;
        size_t out_len = 0;
        uv_loop_t loop;
        echo e;
        dial_res res = {};
        int dfd = open_dir_nofollow(dir), in_fd, out_fd;
        (void)state;

        t_fill(data, n, 11);
        t_write_file(dfd, "in", data, n);
        in_fd = openat(dfd, "in", O_RDONLY | O_CLOEXEC);
        out_fd = openat(dfd, "out", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(in_fd >= 0 && out_fd >= 0);
        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(uv_loop_init(&loop), 0);
        echo_start(&loop, &e, path);
        assert_int_equal(xfer_dial_stdio(&loop, path, in_fd, out_fd, NULL, dial_done, &res, NULL), 0);
        assert_int_equal(res.calls, 0);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.status, 0);
        assert_int_equal(e.echoed, n);
        assert_int_equal(read_file_at(dfd, "out", n + 1, &out, &out_len), 0);
        assert_int_equal(out_len, n);
        assert_memory_equal(out, data, n);
        free(out);
        free(data);
        close(dfd);
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

/* The first frame reaches the socket before any byte of stdin (the agent
 * trusts dial-stdio's RELAY because the peer's bytes only follow it). */
static void test_dial_stdio_first_frame(void **state) {
        char *dir = t_mkdtemp(), path[256];
        size_t n = 256 * 1024 + 5, flen = 0;
        uint8_t *data = malloc(n), *frame = NULL;
        char *out = NULL;
        size_t out_len = 0;
        uv_loop_t loop;
        echo e;
        dial_res res = {};
        proto_msg relay = {.type = PROTO_MSG_RELAY, .relay = {.peer = "node3"}};
        int dfd = open_dir_nofollow(dir), in_fd, out_fd;
        (void)state;

        t_fill(data, n, 3);
        t_write_file(dfd, "in", data, n);
        in_fd = openat(dfd, "in", O_RDONLY | O_CLOEXEC);
        out_fd = openat(dfd, "out", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(in_fd >= 0 && out_fd >= 0);
        assert_int_equal(proto_encode(&relay, &frame, &flen, NULL), 0);
        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(uv_loop_init(&loop), 0);
        echo_start(&loop, &e, path);
        assert_int_equal(xfer_dial_stdio(&loop, path, in_fd, out_fd, &relay, dial_done, &res, NULL), 0);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.status, 0);
        assert_int_equal(read_file_at(dfd, "out", n + flen + 1, &out, &out_len), 0);
        assert_int_equal(out_len, flen + n);
        assert_memory_equal(out, frame, flen);
        assert_memory_equal(out + flen, data, n);
        free(out);
        free(frame);
        free(data);
        close(dfd);
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

/* The far ends of stdin and stdout, played by the test. */
typedef struct pipes_peer {
        int in_w, out_r;
        const uint8_t *data;
        size_t n, off, got;
        uint8_t *received;
        uv_poll_t pw, pr;
} pipes_peer;

static void peer_write_cb(uv_poll_t *p, int status, int events) {
        pipes_peer *pp = p->data;
        (void)status;
        (void)events;
        ssize_t k = write(pp->in_w, pp->data + pp->off, MIN(pp->n - pp->off, 65536));
        if (k > 0)
                pp->off += (size_t)k;
        if (pp->off == pp->n) {
                uv_close((uv_handle_t *)p, NULL);
                close(pp->in_w); /* EOF on the relay's stdin */
        }
}

static void peer_read_cb(uv_poll_t *p, int status, int events) {
        pipes_peer *pp = p->data;
        (void)status;
        (void)events;
        ssize_t k = read(pp->out_r, pp->received + pp->got, pp->n + 1 - pp->got);
        if (k > 0) {
                pp->got += (size_t)k;
                return;
        }
        uv_close((uv_handle_t *)p, NULL);
}

static void test_dial_stdio_pipes(void **state) {
        char *dir = t_mkdtemp(), path[256];
        pipes_peer pp = {.n = 2 * 1024 * 1024 + 3};
        uint8_t *data = malloc(pp.n);
        uv_loop_t loop;
        echo e;
        dial_res res = {};
        int in[2], out[2];
        (void)state;

        t_fill(data, pp.n, 5);
        pp.data = data;
        pp.received = malloc(pp.n + 1);
        assert_int_equal(pipe2(in, O_CLOEXEC | O_NONBLOCK), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, out), 0);
        pp.in_w = in[1];
        pp.out_r = out[1];
        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(uv_loop_init(&loop), 0);
        echo_start(&loop, &e, path);
        /* sshd's pipe to us is grown beyond the 64 KiB it came with, so
         * that sshd need not buffer the channel window itself; a socket is
         * left as it is. */
        assert_int_equal(xfer_dial_grow_pipe(in[0]), 0);
        assert_int_equal(fcntl(pp.in_w, F_GETPIPE_SZ), XFER_DIAL_PIPE_SIZE);
        assert_int_equal(xfer_dial_grow_pipe(out[0]), 0);
        assert_int_equal(xfer_dial_stdio(&loop, path, in[0], out[0], NULL, dial_done, &res, NULL), 0);
        uv_poll_init(&loop, &pp.pw, pp.in_w);
        uv_poll_init(&loop, &pp.pr, pp.out_r);
        pp.pw.data = pp.pr.data = &pp;
        uv_poll_start(&pp.pw, UV_WRITABLE, peer_write_cb);
        uv_poll_start(&pp.pr, UV_READABLE, peer_read_cb);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        close(pp.out_r);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.status, 0);
        assert_int_equal(pp.got, pp.n);
        assert_memory_equal(pp.received, data, pp.n);
        free(pp.received);
        free(data);
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

static void test_dial_stdio_no_agent(void **state) {
        char *dir = t_mkdtemp(), path[256];
        uv_loop_t loop;
        dial_res res = {};
        int in[2], out[2];
        (void)state;

        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        snprintf(path, sizeof(path), "%s/missing.sock", dir);
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(xfer_dial_stdio(&loop, path, in[0], out[1], NULL, dial_done, &res, NULL), 0);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.status, -ECONNREFUSED);
        assert_non_null(strstr(res.err.msg, "missing.sock"));
        close(in[1]);
        close(out[0]);
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

/* ---- SSH session errors on loopback ---- */

typedef struct conn_res {
        int calls, status;
        nm_error err;
} conn_res;

static void connect_cb(xfer_session *s, int status, const nm_error *err, void *ud) {
        conn_res *r = ud;
        r->calls++;
        r->status = status;
        if (err)
                r->err = *err;
        xfer_session_close(s, NULL, NULL);
}

/* A TCP listener on 127.0.0.1 that accepts (via the backlog) but never
 * says a word: the SSH handshake must time out. */
static int silent_listener(uint16_t *ret_port) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 4), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

static void run_connect(uint16_t port, uint64_t timeout_ms, bool cancel, conn_res *res) {
        xfer_ssh_options o = {
                .host = "127.0.0.1",
                .port = port,
                .key_file = "/nonexistent/key",
                .known_hosts = "/nonexistent/known_hosts",
                .connect_timeout_ms = timeout_ms,
        };
        uv_loop_t loop;
        xfer_session *s = NULL;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(xfer_session_new(&loop, &o, NULL, &s), 0);
        assert_int_equal(xfer_session_connect(s, connect_cb, res), 0);
        assert_int_equal(xfer_session_connect(s, connect_cb, res), -EALREADY);
        if (cancel)
                xfer_session_close(s, NULL, NULL);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_session_refused(void **state) {
        conn_res res = {};
        uint16_t port;
        int fd = silent_listener(&port);
        (void)state;

        close(fd); /* nothing listens on that port now */
        /* The refusal is the event; the timeout only bounds a hang. */
        run_connect(port, t_ms(30000), false, &res);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.status, -ECONNREFUSED);
        assert_non_null(strstr(res.err.msg, "refused"));
}

static void test_session_handshake_timeout(void **state) {
        conn_res res = {};
        uint16_t port;
        int fd = silent_listener(&port);
        (void)state;

        /* Long enough (scaled) for the name lookup on the thread pool and
         * the connect to be behind us when the time is up: the silent
         * listener holds the handshake. */
        uint64_t timeout_ms = t_ms(2000);
        char want[64];

        run_connect(port, timeout_ms, false, &res);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.status, -ETIMEDOUT);
        snprintf(want, sizeof(want), "timed out after %llu ms", (unsigned long long)timeout_ms);
        assert_non_null(strstr(res.err.msg, want));
        assert_non_null(strstr(res.err.msg, "handshake"));
        close(fd);
}

static void test_session_cancel(void **state) {
        conn_res res = {};
        uint16_t port;
        int fd = silent_listener(&port);
        (void)state;

        run_connect(port, t_ms(30000), true, &res);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.status, -ECANCELED);
        close(fd);
}

static void test_session_bad_options(void **state) {
        xfer_ssh_options o = {.host = "127.0.0.1"};
        uv_loop_t loop;
        xfer_session *s = NULL;
        nm_error err = {};
        (void)state;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(xfer_session_new(&loop, &o, &err, &s), -EINVAL);
        assert_null(s);
        assert_non_null(strstr(err.msg, "key file"));
        assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dial_stdio_files), cmocka_unit_test(test_dial_stdio_first_frame),
                cmocka_unit_test(test_dial_stdio_pipes), cmocka_unit_test(test_dial_stdio_no_agent),
                cmocka_unit_test(test_session_refused),  cmocka_unit_test(test_session_handshake_timeout),
                cmocka_unit_test(test_session_cancel),   cmocka_unit_test(test_session_bad_options),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
