/* SPDX-License-Identifier: Apache-2.0 */
/* dial-stdio's hand-over of the SSH session's pipes to the agent
 * (xfer_dial_handoff, RELAY_FDS, xfer_conn_take_relay), with real pipes and
 * a real unix socket: dial-stdio's side on a thread, the agent's on the
 * loop. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "test-xfer-util.h"

/* ---- the agent's side: one control connection, as ctl.c holds it ---- */

typedef struct agent_side {
        uv_pipe_t listener;
        bool ipc;             /* false: an agent older than RELAY_FDS */
        bool take;            /* take the pipes RELAY_FDS brings */
        xfer_conn *ctl;       /* the socket connection */
        xfer_conn *session;   /* the session it handed over */
        proto_msg_type first; /* the first frame on the socket */
        char first_peer[64];
        unsigned pings_on_session, frames_on_ctl;
        int take_status, session_status;
        nm_error take_err, session_err;
        bool session_closed, ctl_closed;
} agent_side;

static void session_message(xfer_conn *c, const proto_msg *m, void *ud) {
        agent_side *a = ud;
        if (m->type != PROTO_MSG_PING)
                return;
        a->pings_on_session++;
        assert_int_equal(xfer_conn_send(c, &(proto_msg){.type = PROTO_MSG_PONG, .pong = m->ping}, NULL), 0);
        xfer_conn_close(c, 0, NULL);
}

static void session_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        agent_side *a = ud;
        (void)c;
        a->session_closed = true;
        a->session_status = status;
        if (err)
                a->session_err = *err;
}

static const xfer_conn_callbacks session_cbs = {.message = session_message, .closed = session_closed};

static void ctl_message(xfer_conn *c, const proto_msg *m, void *ud) {
        agent_side *a = ud;

        if (a->frames_on_ctl++ == 0) {
                a->first = m->type;
                if (m->type == PROTO_MSG_RELAY_FDS)
                        snprintf(a->first_peer, sizeof(a->first_peer), "%s", strna(m->relay.peer));
        }
        if (m->type == PROTO_MSG_RELAY_FDS && a->take) {
                a->take_status = xfer_conn_take_relay(c, &session_cbs, a, &a->take_err, &a->session);
                if (a->take_status == 0)
                        return;
        }
        if (m->type == PROTO_MSG_PING)
                return;
        /* What an older agent does with a frame type it does not know. */
        (void)xfer_conn_send(
                c,
                &(proto_msg){.type = PROTO_MSG_ERROR, .error = {.code = -EPROTO, .reason = "no such frame"}},
                NULL);
        xfer_conn_close(c, 0, NULL);
}

static void ctl_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        agent_side *a = ud;
        (void)c, (void)status, (void)err;
        a->ctl_closed = true;
}

static const xfer_conn_callbacks ctl_cbs = {.message = ctl_message, .closed = ctl_closed};

static void on_connection(uv_stream_t *l, int status) {
        agent_side *a = l->data;
        uv_pipe_t *client = malloc(sizeof(*client));

        assert_int_equal(status, 0);
        uv_pipe_init(l->loop, client, a->ipc);
        assert_int_equal(uv_accept(l, (uv_stream_t *)client), 0);
        assert_int_equal(xfer_conn_new_stream((uv_stream_t *)client, &ctl_cbs, a, NULL, &a->ctl), 0);
        uv_close((uv_handle_t *)l, NULL); /* one client */
}

static void agent_start(uv_loop_t *loop, agent_side *a, const char *path) {
        a->listener.data = a;
        uv_pipe_init(loop, &a->listener, 0);
        assert_int_equal(uv_pipe_bind(&a->listener, path), 0);
        assert_int_equal(uv_listen((uv_stream_t *)&a->listener, 1, on_connection), 0);
}

/* ---- dial-stdio's side, on a thread (it blocks) ---- */

typedef struct dialer {
        pthread_t thread;
        const char *path;
        int in_fd, out_fd;
        int r;
        nm_error err;
} dialer;

static void *dial_thread(void *ud) {
        dialer *d = ud;
        proto_msg m = {.type = PROTO_MSG_RELAY_FDS, .relay = {.peer = "node3"}};
        d->r = xfer_dial_handoff(d->path, d->in_fd, d->out_fd, &m, &d->err);
        return NULL;
}

static void write_frame(int fd, const proto_msg *m) {
        _cleanup_free_ uint8_t *b = NULL;
        size_t n = 0;
        assert_int_equal(proto_encode(m, &b, &n, NULL), 0);
        assert_int_equal(loop_write(fd, b, n), 0);
}

/* The agent's side on a loop of its own, dial-stdio's on a thread, until
 * both are done. */
static void run_dial(agent_side *a, dialer *d) {
        uv_loop_t loop;

        assert_int_equal(uv_loop_init(&loop), 0);
        agent_start(&loop, a, d->path);
        assert_int_equal(pthread_create(&d->thread, NULL, dial_thread, d), 0);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(pthread_join(d->thread, NULL), 0);
        assert_int_equal(uv_loop_close(&loop), 0);
}

/* Everything until EOF (at most max bytes). */
static size_t read_to_eof(int fd, uint8_t *buf, size_t max) {
        size_t got = 0;
        ssize_t k;
        while ((k = read(fd, buf + got, max - got)) > 0)
                got += (size_t)k;
        assert_int_equal(k, 0);
        return got;
}

/* The agent takes the pipes: the peer's PING, written before the hand-over,
 * reaches the agent on the session, not on the socket; the PONG comes back
 * on stdout; when the agent ends the session, stdout ends (dial-stdio kept
 * no copy) and dial-stdio returns. */
static void test_handoff_taken(void **state) {
        char *dir = t_mkdtemp(), path[256];
        agent_side a = {.ipc = true, .take = true};
        dialer d = {.path = path};
        int in[2], out[2];
        uint8_t got[256];
        proto_msg pong = {};
        (void)state;

        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        write_frame(in[1], &(proto_msg){.type = PROTO_MSG_PING, .ping = {.seq = 77}});
        d.in_fd = in[0];
        d.out_fd = out[1];
        run_dial(&a, &d);

        assert_int_equal(d.r, 1);
        assert_int_equal(a.take_status, 0);
        assert_int_equal(a.first, PROTO_MSG_RELAY_FDS);
        assert_string_equal(a.first_peer, "node3");
        assert_int_equal(a.frames_on_ctl, 1);
        assert_int_equal(a.pings_on_session, 1);
        assert_true(a.session_closed);
        assert_false(a.ctl_closed); /* the socket's callbacks went with the session */
        assert_int_equal(a.session_status, 0);
        /* stdout: the PONG, then EOF: nobody holds its write end any more */
        size_t n = read_to_eof(out[0], got, sizeof(got));
        assert_int_equal(proto_decode_frame(got, n, &pong, NULL), 0);
        assert_int_equal(pong.type, PROTO_MSG_PONG);
        assert_int_equal(pong.ping.seq, 77);
        proto_msg_done(&pong);
        close(in[1]);
        close(out[0]);
        close(d.in_fd); /* /dev/null now */
        close(d.out_fd);
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

/* An agent older than RELAY_FDS answers ERROR (and the kernel drops the fds
 * it cannot receive): dial-stdio is told to relay, and has read nothing of
 * the peer's. */
static void test_handoff_refused(void **state) {
        char *dir = t_mkdtemp(), path[256];
        agent_side a = {.ipc = false};
        dialer d = {.path = path};
        int in[2], out[2];
        uint8_t got[64];
        (void)state;

        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        assert_int_equal(write(in[1], "peer", 4), 4);
        d.in_fd = in[0];
        d.out_fd = out[1];
        run_dial(&a, &d);

        assert_int_equal(d.r, 0);
        assert_string_equal(d.err.msg, "the agent answered: no such frame");
        assert_int_equal(a.first, PROTO_MSG_RELAY_FDS);
        assert_null(a.session);
        /* the peer's bytes are still there, and stdout is still ours */
        close(in[1]);
        assert_int_equal(read_to_eof(in[0], got, sizeof(got)), 4);
        assert_int_equal(write(out[1], "x", 1), 1);
        close(in[0]);
        close(out[0]);
        close(out[1]);
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

/* No agent: the relay's error (the same words); a file as stdin: nothing
 * to hand over, the relay copies it. */
static void test_handoff_no_agent_or_file(void **state) {
        char *dir = t_mkdtemp(), path[256];
        proto_msg m = {.type = PROTO_MSG_RELAY_FDS, .relay = {.peer = "node3"}};
        nm_error err = {};
        int p[2], f;
        (void)state;

        snprintf(path, sizeof(path), "%s/missing.sock", dir);
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(xfer_dial_handoff(path, p[0], p[1], &m, &err), -ECONNREFUSED);
        assert_non_null(strstr(err.msg, "cannot connect to the agent at "));
        assert_non_null(strstr(err.msg, "missing.sock"));
        f = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        assert_true(f >= 0);
        nm_error_clear(&err);
        assert_int_equal(xfer_dial_handoff(path, f, p[1], &m, &err), 0);
        assert_string_equal(err.msg, "stdin or stdout is neither a pipe nor a socket");
        close(f);
        close(p[0]);
        close(p[1]);
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

/* ---- a client that attaches fds by hand ---- */

static int connect_to(const char *path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

static void send_frame_with_fds(int sock, const proto_msg *m, const int *fds, unsigned n_fds) {
        _cleanup_free_ uint8_t *b = NULL;
        union {
                struct cmsghdr h;
                char space[CMSG_SPACE(4 * sizeof(int))];
        } ctl = {};
        size_t n = 0;
        struct iovec iov;
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = ctl.space,
                            .msg_controllen = CMSG_SPACE(n_fds * sizeof(int))};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

        assert_true(n_fds > 0 && n_fds <= 4);
        assert_int_equal(proto_encode(m, &b, &n, NULL), 0);
        iov = (struct iovec){.iov_base = b, .iov_len = n};
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, n_fds * sizeof(int));
        assert_int_equal(sendmsg(sock, &mh, 0), (ssize_t)n);
}

/* Runs the loop until cond holds (the loop is only ours: events, no clock). */
#define RUN_UNTIL(loop, cond)                                                    \
        do {                                                                     \
                while (!(cond))                                                  \
                        assert_true(uv_run((loop), UV_RUN_ONCE) != 0 || (cond)); \
        } while (0)

/* fds that come with any frame but a taken RELAY_FDS are closed by the
 * agent: here the write end of a pipe, whose reader then sees EOF. */
static void test_fds_with_other_frames_closed(void **state) {
        char *dir = t_mkdtemp(), path[256];
        agent_side a = {.ipc = true, .take = true};
        int p[2], sock;
        char c;
        uv_loop_t loop;
        (void)state;

        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(uv_loop_init(&loop), 0);
        agent_start(&loop, &a, path);
        sock = connect_to(path);
        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        send_frame_with_fds(sock, &(proto_msg){.type = PROTO_MSG_PING, .ping = {.seq = 1}}, &p[1], 1);
        close(p[1]);
        RUN_UNTIL(&loop, a.frames_on_ctl == 1);
        assert_int_equal(a.first, PROTO_MSG_PING);
        assert_int_equal(read(p[0], &c, 1), 0); /* EOF: no writer is left */
        close(sock);
        RUN_UNTIL(&loop, a.ctl_closed);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        close(p[0]);
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

/* RELAY_FDS with one fd, or with a file, is refused, and nothing is taken. */
static void check_take_refused(const int *fds, unsigned n_fds, const char *why) {
        char *dir = t_mkdtemp(), path[256];
        agent_side a = {.ipc = true, .take = true};
        uv_loop_t loop;
        int sock;

        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(uv_loop_init(&loop), 0);
        agent_start(&loop, &a, path);
        sock = connect_to(path);
        send_frame_with_fds(sock, &(proto_msg){.type = PROTO_MSG_RELAY_FDS}, fds, n_fds);
        RUN_UNTIL(&loop, a.ctl_closed);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(a.take_status, -EPROTO);
        assert_string_equal(a.take_err.msg, why);
        assert_null(a.session);
        close(sock);
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

static void test_relay_fds_refused(void **state) {
        int p[2], fds[2];
        (void)state;

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        check_take_refused(p, 1, "RELAY_FDS must come with exactly two fds (it came with 1)");
        fds[0] = p[0];
        fds[1] = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        assert_true(fds[1] >= 0);
        check_take_refused(fds, 2, "RELAY_FDS came with an fd that is neither a pipe nor a socket");
        close(fds[1]);
        close(p[0]);
        close(p[1]);
}

/* dial-stdio going away (sshd then stops passing the peer's bytes on) ends
 * the session it handed over. */
static void test_dialer_gone_ends_session(void **state) {
        char *dir = t_mkdtemp(), path[256];
        agent_side a = {.ipc = true, .take = true};
        int in[2], out[2], fds[2], sock;
        uv_loop_t loop;
        (void)state;

        snprintf(path, sizeof(path), "%s/sock", dir);
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        assert_int_equal(uv_loop_init(&loop), 0);
        agent_start(&loop, &a, path);
        sock = connect_to(path);
        fds[0] = in[0];
        fds[1] = out[1];
        send_frame_with_fds(sock, &(proto_msg){.type = PROTO_MSG_RELAY_FDS}, fds, 2);
        RUN_UNTIL(&loop, a.session != NULL);
        /* the agent's copies share these file descriptions: a blocking one
         * would hold its loop in read() until the peer spoke again */
        assert_true(fcntl(in[0], F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(out[1], F_GETFL) & O_NONBLOCK);
        /* dial-stdio reads the answer before it can go: unread bytes would
         * make its going a reset, not an EOF */
        uint8_t ack[64];
        assert_true(read(sock, ack, sizeof(ack)) > 0);
        close(sock);
        RUN_UNTIL(&loop, a.session_closed);
        assert_int_equal(a.session_status, -ECONNRESET);
        assert_string_equal(a.session_err.msg, "dial-stdio, which held this session, ended");
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_false(a.ctl_closed); /* its callbacks went with the session */
        for (int i = 0; i < 2; i++) {
                close(in[i]);
                close(out[i]);
        }
        assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_handoff_taken),
                cmocka_unit_test(test_handoff_refused),
                cmocka_unit_test(test_handoff_no_agent_or_file),
                cmocka_unit_test(test_fds_with_other_frames_closed),
                cmocka_unit_test(test_relay_fds_refused),
                cmocka_unit_test(test_dialer_gone_ends_session),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
