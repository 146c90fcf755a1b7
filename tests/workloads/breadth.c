/* SPDX-License-Identifier: Apache-2.0 */
/* A container workload made of many kinds of kernel objects, each of which
 * checks itself after a move.
 *
 *   nm-breadth DIR [--only CLASS[,CLASS...]]
 *   nm-breadth --list
 *
 * Run as the init of a container (nm-ctr-start: new pid, uts, ipc and net
 * namespaces, the host's mount namespace). It builds every selected object
 * class, writes DIR/ready ("ready CLASS..."; "error CLASS: why" if a class
 * could not be built) and waits. Each SIGUSR1 runs every check once and
 * writes DIR/report atomically:
 *
 *   round N
 *   ok CLASS: what was seen
 *   FAIL CLASS: what was wrong
 *   end
 *
 * Checks are repeatable: whatever one consumes (data in flight, pending
 * signals) it puts back, so the same objects can be checked after each of
 * several moves. SIGTERM ends the workload.
 *
 * Some classes live in helper processes of their own (capabilities, seccomp,
 * credentials ...), which answer check requests over a socketpair; stopped
 * and zombie children are watched with waitid(WNOWAIT). Files go in DIR, which
 * must exist at the same path wherever the container is restored. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MSG_MAX 512
#define REPLY_TIMEOUT_MS 10000
#define PAGE 4096

static const char *dir;
static char msgbuf[MSG_MAX];

/* ---- small helpers ------------------------------------------------------- */

/* Sets the failure message; returns -1 so that checks can `return fail(...)`. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msgbuf, sizeof(msgbuf), fmt, ap);
        va_end(ap);
        return -1;
}

__attribute__((format(printf, 1, 2))) static int ok(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msgbuf, sizeof(msgbuf), fmt, ap);
        va_end(ap);
        return 0;
}

static int fail_errno(const char *what) {
        return fail("%s: %s", what, strerror(errno));
}

static const char *path_in(const char *name, char *buf, size_t n) {
        snprintf(buf, n, "%s/%s", dir, name);
        return buf;
}

static void sleep_ms(long ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int write_all(int fd, const void *buf, size_t n) {
        const char *p = buf;
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -1;
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

/* Reads exactly n bytes, waiting at most timeout_ms for each part. */
static int read_exact(int fd, void *buf, size_t n, int timeout_ms) {
        char *p = buf;
        while (n > 0) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                int r = poll(&pfd, 1, timeout_ms);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r == 0) {
                        errno = ETIMEDOUT;
                        return -1;
                }
                ssize_t k = read(fd, p, n);
                if (k < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (k < 0)
                        return -1;
                if (k == 0) {
                        errno = EPIPE;
                        return -1;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

static int queued_bytes(int fd) {
        int n = -1;
        return ioctl(fd, FIONREAD, &n) < 0 ? -1 : n;
}

/* Checks that fd holds exactly want (and nothing more) in flight, reads it,
 * and writes it again through wfd for the next check. */
static int check_stream_data(const char *what, int rfd, int wfd, const char *want) {
        size_t n = strlen(want);
        char got[256];
        int q = queued_bytes(rfd);

        if (q != (int)n)
                return fail("%s: %d bytes queued, expected %zu", what, q, n);
        if (read_exact(rfd, got, n, 1000) < 0)
                return fail("%s: read: %s", what, strerror(errno));
        if (memcmp(got, want, n) != 0)
                return fail("%s: data changed: '%.*s'", what, (int)n, got);
        if (write_all(wfd, want, n) < 0)
                return fail("%s: write back: %s", what, strerror(errno));
        return 0;
}

static int create_file(const char *name, const void *data, size_t n, int flags, int *ret_fd) {
        char p[PATH_MAX];
        int fd = open(path_in(name, p, sizeof(p)), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | flags, 0644);
        if (fd < 0)
                return fail("open %s: %s", p, strerror(errno));
        if (data && write_all(fd, data, n) < 0)
                return fail("write %s: %s", p, strerror(errno));
        *ret_fd = fd;
        return 0;
}

/* The loopback device of the container's own network namespace. */
static int lo_up(void) {
        struct ifreq ifr = {};
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int r = -1;
        if (fd < 0)
                return fail_errno("socket");
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
                ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
                r = ioctl(fd, SIOCSIFFLAGS, &ifr);
        }
        if (r < 0)
                fail_errno("bring lo up");
        close(fd);
        return r;
}

static struct sockaddr_in loopback(uint16_t port) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return a;
}

/* ---- helper processes ---------------------------------------------------- */

/* A class that lives in a process of its own: setup runs in the child, which
 * then answers each request byte with the result of verify. */
typedef struct helper {
        pid_t pid;
        int fd;
} helper;

typedef struct reply {
        int status;
        char msg[MSG_MAX];
} reply;

static void helper_serve(int fd, int (*setup)(void), int (*verify)(void)) {
        reply r = {};
        char c;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        r.status = setup();
        snprintf(r.msg, sizeof(r.msg), "%s", msgbuf);
        if (write_all(fd, &r, sizeof(r)) < 0 || r.status < 0)
                _exit(1);
        for (;;) {
                ssize_t n = read(fd, &c, 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        _exit(0);
                msgbuf[0] = '\0';
                r.status = verify();
                snprintf(r.msg, sizeof(r.msg), "%s", msgbuf);
                if (write_all(fd, &r, sizeof(r)) < 0)
                        _exit(1);
        }
}

static int helper_reply(helper *h) {
        reply r;
        if (read_exact(h->fd, &r, sizeof(r), REPLY_TIMEOUT_MS) < 0)
                return fail("helper %d does not answer: %s", (int)h->pid, strerror(errno));
        snprintf(msgbuf, sizeof(msgbuf), "%s", r.msg);
        return r.status;
}

static int helper_start(helper *h, int (*setup)(void), int (*verify)(void)) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return fail_errno("socketpair");
        h->pid = fork();
        if (h->pid < 0)
                return fail_errno("fork");
        if (h->pid == 0) {
                close(sv[0]);
                helper_serve(sv[1], setup, verify);
        }
        close(sv[1]);
        h->fd = sv[0];
        return helper_reply(h);
}

static int helper_check(helper *h) {
        if (write_all(h->fd, "v", 1) < 0)
                return fail("helper %d is gone: %s", (int)h->pid, strerror(errno));
        return helper_reply(h);
}

/* ---- pipes, fifos ------------------------------------------------------- */

static const char pipe_data[] = "pipe: bytes in flight 0123456789";
static int pipe_fds[2];
#define PIPE_SIZE (128 * 1024)

static int pipe_setup(void) {
        if (pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) < 0)
                return fail_errno("pipe2");
        if (fcntl(pipe_fds[1], F_SETPIPE_SZ, PIPE_SIZE) < 0)
                return fail_errno("F_SETPIPE_SZ");
        return write_all(pipe_fds[1], pipe_data, strlen(pipe_data)) < 0 ? fail_errno("write") : 0;
}

static int pipe_verify(void) {
        int sz = fcntl(pipe_fds[1], F_GETPIPE_SZ);
        if (sz != PIPE_SIZE)
                return fail("pipe size %d, expected %d", sz, PIPE_SIZE);
        if (check_stream_data("pipe", pipe_fds[0], pipe_fds[1], pipe_data) < 0)
                return -1;
        return ok("%zu bytes in flight intact, size %d", strlen(pipe_data), sz);
}

static const char fifo_data[] = "fifo: bytes in flight";
static int fifo_r = -1, fifo_w = -1;

static int fifo_setup(void) {
        char p[PATH_MAX];
        path_in("fifo", p, sizeof(p));
        (void)unlink(p);
        if (mkfifo(p, 0600) < 0)
                return fail_errno("mkfifo");
        fifo_r = open(p, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        fifo_w = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fifo_r < 0 || fifo_w < 0)
                return fail_errno("open fifo");
        return write_all(fifo_w, fifo_data, strlen(fifo_data)) < 0 ? fail_errno("write") : 0;
}

static int fifo_verify(void) {
        if (check_stream_data("fifo", fifo_r, fifo_w, fifo_data) < 0)
                return -1;
        return ok("%zu bytes in flight intact", strlen(fifo_data));
}

/* ---- unix sockets ----------------------------------------------------------- */

static int us_stream[2];
static const char us_ab[] = "unix stream a->b", us_ba[] = "unix stream b->a, longer";

static int unix_stream_setup(void) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, us_stream) < 0)
                return fail_errno("socketpair");
        if (write_all(us_stream[0], us_ab, strlen(us_ab)) < 0 ||
            write_all(us_stream[1], us_ba, strlen(us_ba)) < 0)
                return fail_errno("write");
        return 0;
}

static int unix_stream_verify(void) {
        if (check_stream_data("a->b", us_stream[1], us_stream[0], us_ab) < 0 ||
            check_stream_data("b->a", us_stream[0], us_stream[1], us_ba) < 0)
                return -1;
        return ok("socketpair, data in flight both ways intact");
}

/* Datagram kinds: messages keep their boundaries. */
static const char *const dgrams[] = {"first", "second message", "3"};

static int dgram_send_all(int fd) {
        for (size_t i = 0; i < sizeof(dgrams) / sizeof(dgrams[0]); i++)
                if (send(fd, dgrams[i], strlen(dgrams[i]), 0) != (ssize_t)strlen(dgrams[i]))
                        return fail_errno("send");
        return 0;
}

static int dgram_check(int rfd, int wfd) {
        char buf[64];
        for (size_t i = 0; i < sizeof(dgrams) / sizeof(dgrams[0]); i++) {
                ssize_t n = recv(rfd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n < 0)
                        return fail("message %zu: %s", i + 1, strerror(errno));
                if ((size_t)n != strlen(dgrams[i]) || memcmp(buf, dgrams[i], (size_t)n) != 0)
                        return fail("message %zu is '%.*s', expected '%s'", i + 1, (int)n, buf, dgrams[i]);
        }
        if (recv(rfd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
                return fail("more messages than were sent");
        return dgram_send_all(wfd);
}

static int us_dgram[2], us_seq[2];

static int unix_dgram_setup(void) {
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, us_dgram) < 0)
                return fail_errno("socketpair");
        return dgram_send_all(us_dgram[0]);
}

static int unix_dgram_verify(void) {
        if (dgram_check(us_dgram[1], us_dgram[0]) < 0)
                return -1;
        return ok("3 datagrams in flight, boundaries kept");
}

static int unix_seqpacket_setup(void) {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, us_seq) < 0)
                return fail_errno("socketpair");
        return dgram_send_all(us_seq[1]);
}

static int unix_seqpacket_verify(void) {
        if (dgram_check(us_seq[0], us_seq[1]) < 0)
                return -1;
        return ok("3 packets in flight, boundaries kept");
}

/* A listening socket bound to a path, with one accepted connection. */
static int ul_listen = -1, ul_client = -1, ul_server = -1;
static const char ul_cs[] = "client to server", ul_sc[] = "server to client";

static struct sockaddr_un unix_addr(const char *name, socklen_t *len) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        char p[PATH_MAX];
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", path_in(name, p, sizeof(p)));
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a.sun_path) + 1);
        return a;
}

static int unix_listen_setup(void) {
        socklen_t len;
        struct sockaddr_un a = unix_addr("listen.sock", &len);

        (void)unlink(a.sun_path);
        ul_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ul_client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ul_listen < 0 || ul_client < 0 || bind(ul_listen, (struct sockaddr *)&a, len) < 0 ||
            listen(ul_listen, 8) < 0 || connect(ul_client, (struct sockaddr *)&a, len) < 0)
                return fail_errno("listen/connect");
        ul_server = accept4(ul_listen, NULL, NULL, SOCK_CLOEXEC);
        if (ul_server < 0)
                return fail_errno("accept");
        if (write_all(ul_client, ul_cs, strlen(ul_cs)) < 0 || write_all(ul_server, ul_sc, strlen(ul_sc)) < 0)
                return fail_errno("write");
        return 0;
}

static int unix_listen_verify(void) {
        socklen_t len, glen;
        struct sockaddr_un want = unix_addr("listen.sock", &len), got = {};
        int c, s;

        if (check_stream_data("client->server", ul_server, ul_client, ul_cs) < 0 ||
            check_stream_data("server->client", ul_client, ul_server, ul_sc) < 0)
                return -1;
        glen = sizeof(got);
        if (getsockname(ul_listen, (struct sockaddr *)&got, &glen) < 0 ||
            strcmp(got.sun_path, want.sun_path) != 0)
                return fail("listener bound to '%s', expected '%s'", got.sun_path, want.sun_path);
        c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&want, len) < 0)
                return fail("a new connection to %s: %s", want.sun_path, strerror(errno));
        s = accept4(ul_listen, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0)
                return fail_errno("accept a new connection");
        close(s);
        close(c);
        return ok("accepted connection's data intact, listener at %s accepts", want.sun_path);
}

/* An abstract-namespace datagram socket (names are per network namespace). */
static int ua_recv = -1, ua_send = -1;
static const char ua_name[] = "nm-breadth-abstract";

static struct sockaddr_un abstract_addr(socklen_t *len) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        memcpy(a.sun_path + 1, ua_name, strlen(ua_name));
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(ua_name));
        return a;
}

static int unix_abstract_setup(void) {
        socklen_t len;
        struct sockaddr_un a = abstract_addr(&len);
        ua_recv = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ua_send = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (ua_recv < 0 || ua_send < 0 || bind(ua_recv, (struct sockaddr *)&a, len) < 0 ||
            connect(ua_send, (struct sockaddr *)&a, len) < 0)
                return fail_errno("bind/connect abstract");
        return dgram_send_all(ua_send);
}

static int unix_abstract_verify(void) {
        if (dgram_check(ua_recv, ua_send) < 0)
                return -1;
        return ok("@%s: 3 datagrams in flight intact", ua_name);
}

/* A file descriptor in flight (SCM_RIGHTS): the read end of a pipe whose
 * write end we keep. */
static int scm_sk[2], scm_pipe[2];

static int scm_send(void) {
        char c = 'x';
        char ctl[CMSG_SPACE(sizeof(int))] = {};
        struct iovec iov = {.iov_base = &c, .iov_len = 1};
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &scm_pipe[0], sizeof(int));
        return sendmsg(scm_sk[0], &mh, 0) == 1 ? 0 : fail_errno("sendmsg SCM_RIGHTS");
}

static int unix_scm_setup(void) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, scm_sk) < 0 || pipe2(scm_pipe, O_CLOEXEC) < 0)
                return fail_errno("socketpair/pipe");
        return scm_send();
}

static int unix_scm_verify(void) {
        char c, ctl[CMSG_SPACE(sizeof(int))] = {}, buf[8];
        struct iovec iov = {.iov_base = &c, .iov_len = 1};
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
        struct cmsghdr *cm;
        int fd;

        if (recvmsg(scm_sk[1], &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1)
                return fail_errno("recvmsg");
        cm = CMSG_FIRSTHDR(&mh);
        if (!cm || cm->cmsg_type != SCM_RIGHTS)
                return fail("the message in flight carries no file descriptor");
        memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        if (write_all(scm_pipe[1], "ping", 4) < 0 || read_exact(fd, buf, 4, 1000) < 0 ||
            memcmp(buf, "ping", 4) != 0) {
                close(fd);
                return fail("the received descriptor is not our pipe's read end");
        }
        close(fd);
        if (scm_send() < 0)
                return -1;
        return ok("a pipe's read end in flight came through and still reads the pipe");
}

/* ---- inet sockets ---------------------------------------------------------- */

#define TCP_LISTEN_PORT 7101
#define TCP_CONN_PORT 7102
#define UDP_PORT 7103
#define TCP_BULK (48 * 1024)

static int tl_fd = -1;

static int tcp_listener(uint16_t port, int *ret) {
        struct sockaddr_in a = loopback(port);
        int one = 1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0)
                return fail("listen on 127.0.0.1:%u: %s", port, strerror(errno));
        *ret = fd;
        return 0;
}

static int tcp_listen_setup(void) {
        if (lo_up() < 0)
                return -1;
        return tcp_listener(TCP_LISTEN_PORT, &tl_fd);
}

static int tcp_listen_verify(void) {
        struct sockaddr_in a = loopback(TCP_LISTEN_PORT), got = {};
        socklen_t len = sizeof(got);
        int c, s;

        if (getsockname(tl_fd, (struct sockaddr *)&got, &len) < 0 || got.sin_port != a.sin_port)
                return fail("listener lost its address");
        c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
                return fail("connect to 127.0.0.1:%d: %s", TCP_LISTEN_PORT, strerror(errno));
        s = accept4(tl_fd, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0)
                return fail_errno("accept");
        if (write_all(c, "hi", 2) < 0 || read_exact(s, (char[2]){}, 2, 1000) < 0)
                return fail_errno("new connection carries no data");
        close(s);
        close(c);
        return ok("listening on 127.0.0.1:%d, a new connection works", TCP_LISTEN_PORT);
}

/* A connection inside the container's network namespace, with data queued
 * both ways: a bulk transfer one way, a short message the other. */
static int tc_listen = -1, tc_client = -1, tc_server = -1;
static char tc_bulk[TCP_BULK];
static const char tc_reply[] = "tcp: server to client";

static int tcp_conn_setup(void) {
        struct sockaddr_in a = loopback(TCP_CONN_PORT);
        if (lo_up() < 0 || tcp_listener(TCP_CONN_PORT, &tc_listen) < 0)
                return -1;
        tc_client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (tc_client < 0 || connect(tc_client, (struct sockaddr *)&a, sizeof(a)) < 0)
                return fail_errno("connect");
        tc_server = accept4(tc_listen, NULL, NULL, SOCK_CLOEXEC);
        if (tc_server < 0)
                return fail_errno("accept");
        for (size_t i = 0; i < sizeof(tc_bulk); i++)
                tc_bulk[i] = (char)('a' + (i * 7) % 26);
        if (write_all(tc_client, tc_bulk, sizeof(tc_bulk)) < 0 ||
            write_all(tc_server, tc_reply, strlen(tc_reply)) < 0)
                return fail_errno("write");
        return 0;
}

/* Waits until the bytes written have arrived at the other end, so that
 * what is checked is the receive queue. */
static int tcp_wait_queued(int fd, int want) {
        for (int i = 0; i < 200; i++) {
                int q = queued_bytes(fd);
                if (q >= want)
                        return q;
                sleep_ms(10);
        }
        return queued_bytes(fd);
}

static int tcp_conn_verify(void) {
        static char got[TCP_BULK];
        char buf[64];
        int q;

        for (int i = 0; i < 2; i++) {
                int fd = i ? tc_server : tc_client;
                struct tcp_info ti = {};
                socklen_t len = sizeof(ti);
                if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
                        return fail_errno("TCP_INFO");
                if (ti.tcpi_state != TCP_ESTABLISHED)
                        return fail("closed: the %s end is in TCP state %u, not established",
                                    i ? "server" : "client", ti.tcpi_state);
        }
        q = tcp_wait_queued(tc_server, TCP_BULK);
        if (read_exact(tc_server, got, sizeof(got), 2000) < 0)
                return fail("bulk data: %s (%d bytes were queued)", strerror(errno), q);
        if (memcmp(got, tc_bulk, sizeof(got)) != 0)
                return fail("bulk data changed");
        if (read_exact(tc_client, buf, strlen(tc_reply), 2000) < 0 ||
            memcmp(buf, tc_reply, strlen(tc_reply)) != 0)
                return fail("reply: %s", strerror(errno));
        if (write_all(tc_client, tc_bulk, sizeof(tc_bulk)) < 0 ||
            write_all(tc_server, tc_reply, strlen(tc_reply)) < 0)
                return fail_errno("write back");
        return ok("connected, %d bytes and a reply in flight intact", TCP_BULK);
}

static int udp_srv = -1, udp_cli = -1;

static int udp_setup(void) {
        struct sockaddr_in a = loopback(UDP_PORT);
        if (lo_up() < 0)
                return -1;
        udp_srv = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        udp_cli = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (udp_srv < 0 || udp_cli < 0 || bind(udp_srv, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            connect(udp_cli, (struct sockaddr *)&a, sizeof(a)) < 0)
                return fail_errno("bind/connect");
        return 0;
}

/* CRIU does not carry UDP receive queues; the bound and connected sockets
 * must work as before. */
static int udp_verify(void) {
        struct sockaddr_in from;
        socklen_t len = sizeof(from);
        char buf[16];
        if (send(udp_cli, "udp", 3, 0) != 3)
                return fail_errno("send");
        struct pollfd p = {.fd = udp_srv, .events = POLLIN};
        if (poll(&p, 1, 2000) != 1 ||
            recvfrom(udp_srv, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len) != 3)
                return fail("nothing arrived at 127.0.0.1:%d", UDP_PORT);
        if (sendto(udp_srv, "pong", 4, 0, (struct sockaddr *)&from, len) != 4 ||
            read_exact(udp_cli, buf, 4, 2000) < 0)
                return fail("the connected client gets no answer: %s", strerror(errno));
        return ok("bound 127.0.0.1:%d and a connected client exchange datagrams", UDP_PORT);
}

/* ---- netlink, packet ------------------------------------------------------ */

static int nl_fd = -1, nlq_fd = -1;

static void drain_fd(int fd) {
        char buf[8192];
        while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
                ;
}

static int netlink_subscribe(unsigned groups, int *ret) {
        struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_groups = groups};
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
                return fail_errno("netlink");
        *ret = fd;
        return 0;
}

/* Set up late, once every other class has changed the interfaces it wants:
 * CRIU cannot dump a netlink socket with unread messages (netlink-queued). */
static int netlink_setup(void) {
        if (netlink_subscribe(RTMGRP_LINK | RTMGRP_IPV4_IFADDR, &nl_fd) < 0)
                return -1;
        drain_fd(nl_fd);
        return 0;
}

static int netlink_verify(void) {
        struct sockaddr_nl a = {};
        socklen_t len = sizeof(a);
        if (getsockname(nl_fd, (struct sockaddr *)&a, &len) < 0)
                return fail_errno("getsockname");
        if (a.nl_groups != (RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
                return fail("subscribed groups 0x%x, expected 0x%x", a.nl_groups,
                            RTMGRP_LINK | RTMGRP_IPV4_IFADDR);
        drain_fd(nl_fd);
        return ok("NETLINK_ROUTE socket subscribed to groups 0x%x", a.nl_groups);
}

static int set_lo_alias(const char *label, const char *addr);

/* A notification waiting to be read: an address added after subscribing. */
static int netlink_queued_setup(void) {
        if (lo_up() < 0 || netlink_subscribe(RTMGRP_IPV4_IFADDR, &nlq_fd) < 0)
                return -1;
        return set_lo_alias("lo:nq", "198.18.255.9");
}

static int netlink_queued_verify(void) {
        char buf[8192];
        ssize_t n = recv(nlq_fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        if (n < (ssize_t)sizeof(*h))
                return fail("the queued notification is gone: %s", n < 0 ? strerror(errno) : "short");
        if (h->nlmsg_type != RTM_NEWADDR)
                return fail("queued message type %u, expected RTM_NEWADDR", h->nlmsg_type);
        return ok("an RTM_NEWADDR notification still waits to be read");
}

static int pk_fd = -1;

static int packet_setup(void) {
        struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL)};
        if (lo_up() < 0)
                return -1;
        a.sll_ifindex = (int)if_nametoindex("lo");
        pk_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
        if (pk_fd < 0 || bind(pk_fd, (struct sockaddr *)&a, sizeof(a)) < 0)
                return fail_errno("packet socket");
        return 0;
}

static int packet_verify(void) {
        struct sockaddr_ll a = {};
        socklen_t len = sizeof(a);
        if (getsockname(pk_fd, (struct sockaddr *)&a, &len) < 0)
                return fail_errno("getsockname");
        if (a.sll_ifindex != (int)if_nametoindex("lo") || a.sll_protocol != htons(ETH_P_ALL))
                return fail("bound to ifindex %d proto 0x%x", a.sll_ifindex, ntohs(a.sll_protocol));
        return ok("raw packet socket bound to lo");
}

/* ---- timers ------------------------------------------------------------- */

/* timerfd: a periodic timer with a two-hour period that a thread reads as
 * it fires (as an event loop would), and a one-shot one due in an hour.
 * The period is long so that no freeze of a test ever spans an expiry: one
 * that fires while its reader is frozen comes back disarmed (timerfd-fast,
 * a known limit of CRIU); with a 30 s period a freeze of a second on a busy
 * machine would meet an expiry in a few runs in a hundred.
 * timerfd-fast: the same with a 50 ms period. */
#define TIMERFD_FAST_NS 50000000L
#define TIMERFD_SLOW_S 7200
#define TIMERFD_ONCE_S 3600
static int tfd_fast = -1, tfd_slow = -1, tfd_once = -1;
static atomic_ulong tfd_fast_ticks;

static int make_timerfd(time_t value, time_t interval_s, long interval_ns, int *ret) {
        struct itimerspec its = {.it_interval = {interval_s, interval_ns}, .it_value = {value, 0}};
        int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
        if (value == 0)
                its.it_value = its.it_interval;
        if (fd < 0 || timerfd_settime(fd, 0, &its, NULL) < 0)
                return fail_errno("timerfd");
        *ret = fd;
        return 0;
}

static long long left_ms(const struct itimerspec *its) {
        return (long long)its->it_value.tv_sec * 1000 + its->it_value.tv_nsec / 1000000;
}

static int start_reader(int fd);

static int timerfd_setup_(void) {
        if (make_timerfd(0, TIMERFD_SLOW_S, 0, &tfd_slow) < 0 ||
            make_timerfd(TIMERFD_ONCE_S, 0, 0, &tfd_once) < 0)
                return -1;
        return start_reader(tfd_slow);
}

static int timerfd_verify(void) {
        struct itimerspec slow, once;

        if (timerfd_gettime(tfd_slow, &slow) < 0 || timerfd_gettime(tfd_once, &once) < 0)
                return fail_errno("timerfd_gettime");
        if (slow.it_interval.tv_sec != TIMERFD_SLOW_S || left_ms(&slow) <= 0 ||
            left_ms(&slow) > TIMERFD_SLOW_S * 1000)
                return fail("two-hour periodic timer: interval %lld s, %lld ms left",
                            (long long)slow.it_interval.tv_sec, left_ms(&slow));
        if (once.it_interval.tv_sec != 0 || left_ms(&once) <= 0 || left_ms(&once) > TIMERFD_ONCE_S * 1000)
                return fail("one-shot timer: %lld ms left", left_ms(&once));
        return ok("a two-hour periodic timer (%lld s left) and a one-hour one-shot (%lld s left) armed",
                  left_ms(&slow) / 1000, left_ms(&once) / 1000);
}

/* A thread that reads a timerfd as it fires; for the fast one it counts. */
static void *timerfd_reader(void *arg) {
        int fd = (int)(intptr_t)arg;
        uint64_t n;
        for (;;)
                if (read(fd, &n, sizeof(n)) == sizeof(n) && fd == tfd_fast)
                        atomic_fetch_add(&tfd_fast_ticks, n);
        return NULL;
}

static int start_reader(int fd) {
        pthread_t t;
        sigset_t all, old;
        int r;

        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = pthread_create(&t, NULL, timerfd_reader, (void *)(intptr_t)fd);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return r != 0 ? fail("pthread_create failed") : 0;
}

static int timerfd_fast_setup(void) {
        if (make_timerfd(0, 0, TIMERFD_FAST_NS, &tfd_fast) < 0)
                return -1;
        return start_reader(tfd_fast);
}

/* It must go on firing: the reader's count grows. */
static int timerfd_fast_verify(void) {
        unsigned long before = atomic_load(&tfd_fast_ticks);
        for (int i = 0; i < 200 && atomic_load(&tfd_fast_ticks) == before; i++)
                sleep_ms(10);
        if (atomic_load(&tfd_fast_ticks) == before)
                return fail("no longer fires: the timer came back disarmed");
        return ok("fires every 50 ms");
}

#define PTIMER_SIG (SIGRTMIN + 2)
#define PTIMER_NS 100000000L
static timer_t ptimer;

static int posix_timer_setup(void) {
        struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = PTIMER_SIG};
        struct itimerspec its = {.it_interval = {0, PTIMER_NS}, .it_value = {0, PTIMER_NS}};
        ev.sigev_value.sival_int = 4242;
        if (timer_create(CLOCK_MONOTONIC, &ev, &ptimer) < 0 || timer_settime(ptimer, 0, &its, NULL) < 0)
                return fail_errno("timer_create");
        return 0;
}

static void drain_signal(int sig) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, sig);
        while (sigtimedwait(&s, NULL, &(struct timespec){0, 0}) == sig)
                ;
}

static int wait_signal(int sig, siginfo_t *si, int timeout_ms) {
        sigset_t s;
        struct timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000L};
        sigemptyset(&s);
        sigaddset(&s, sig);
        return sigtimedwait(&s, si, &ts) == sig ? 0 : -1;
}

static int posix_timer_verify(void) {
        struct itimerspec its;
        siginfo_t si;

        if (timer_gettime(ptimer, &its) < 0)
                return fail_errno("timer_gettime");
        if (its.it_interval.tv_sec != 0 || its.it_interval.tv_nsec != PTIMER_NS)
                return fail("interval %lld.%09ld s", (long long)its.it_interval.tv_sec,
                            its.it_interval.tv_nsec);
        drain_signal(PTIMER_SIG);
        if (wait_signal(PTIMER_SIG, &si, 2000) < 0)
                return fail("no timer signal within 2 s");
        if (si.si_code != SI_TIMER || si.si_value.sival_int != 4242)
                return fail("timer signal code %d value %d", si.si_code, si.si_value.sival_int);
        return ok("100 ms interval kept, signals with its value");
}

static int itimer_setup(void) {
        struct itimerval it = {.it_interval = {1, 500000}, .it_value = {1, 500000}};
        struct itimerval vt = {.it_interval = {30, 0}, .it_value = {30, 0}};
        if (setitimer(ITIMER_REAL, &it, NULL) < 0 || setitimer(ITIMER_VIRTUAL, &vt, NULL) < 0)
                return fail_errno("setitimer");
        return 0;
}

static int itimer_verify(void) {
        struct itimerval it, vt;
        if (getitimer(ITIMER_REAL, &it) < 0 || getitimer(ITIMER_VIRTUAL, &vt) < 0)
                return fail_errno("getitimer");
        if (it.it_interval.tv_sec != 1 || it.it_interval.tv_usec != 500000)
                return fail("ITIMER_REAL interval %ld.%06ld", (long)it.it_interval.tv_sec,
                            (long)it.it_interval.tv_usec);
        if (vt.it_interval.tv_sec != 30 || vt.it_value.tv_sec > 30 ||
            (vt.it_value.tv_sec == 0 && vt.it_value.tv_usec == 0))
                return fail("ITIMER_VIRTUAL %ld s left, interval %ld s", (long)vt.it_value.tv_sec,
                            (long)vt.it_interval.tv_sec);
        drain_signal(SIGALRM);
        if (wait_signal(SIGALRM, NULL, 3000) < 0)
                return fail("no SIGALRM within 3 s");
        return ok("ITIMER_REAL 1.5 s and ITIMER_VIRTUAL 30 s kept, SIGALRM arrives");
}

/* ---- signals ---------------------------------------------------------------- */

#define RT_SIG (SIGRTMIN + 5)
#define THREAD_SIG (SIGRTMIN + 6)

static int signals_queue(void) {
        union sigval v1 = {.sival_int = 101}, v2 = {.sival_int = 102}, v3 = {.sival_int = 201};
        if (kill(getpid(), SIGUSR2) < 0 || sigqueue(getpid(), RT_SIG, v1) < 0 ||
            sigqueue(getpid(), RT_SIG, v2) < 0 || pthread_sigqueue(pthread_self(), THREAD_SIG, v3) != 0)
                return fail_errno("queue signals");
        return 0;
}

static int signals_setup(void) {
        return signals_queue();
}

static int signals_verify(void) {
        sigset_t pend;
        siginfo_t si;
        int vals[2];

        sigpending(&pend);
        if (!sigismember(&pend, SIGUSR2) || !sigismember(&pend, RT_SIG) || !sigismember(&pend, THREAD_SIG))
                return fail("pending: SIGUSR2 %d, SIGRTMIN+5 %d, SIGRTMIN+6 (thread) %d",
                            sigismember(&pend, SIGUSR2), sigismember(&pend, RT_SIG),
                            sigismember(&pend, THREAD_SIG));
        for (int i = 0; i < 2; i++) {
                if (wait_signal(RT_SIG, &si, 0) < 0)
                        return fail("only %d of 2 queued SIGRTMIN+5", i);
                vals[i] = si.si_value.sival_int;
        }
        if (vals[0] != 101 || vals[1] != 102)
                return fail("SIGRTMIN+5 values %d, %d; expected 101, 102", vals[0], vals[1]);
        if (wait_signal(RT_SIG, &si, 0) == 0)
                return fail("a third SIGRTMIN+5 appeared");
        if (wait_signal(THREAD_SIG, &si, 0) < 0 || si.si_value.sival_int != 201)
                return fail("the thread-directed SIGRTMIN+6 lost its value");
        if (wait_signal(SIGUSR2, &si, 0) < 0)
                return fail("SIGUSR2 vanished");
        if (signals_queue() < 0)
                return -1;
        return ok("SIGUSR2, 2x SIGRTMIN+5 (values in order), thread-directed SIGRTMIN+6 pending");
}

static void on_sighup(int sig, siginfo_t *si, void *uc) {
        (void)sig, (void)si, (void)uc;
}

static char altstack[64 * 1024];

static int sigaction_setup(void) {
        struct sigaction sa = {.sa_sigaction = on_sighup, .sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK};
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
        sigemptyset(&sa.sa_mask);
        sigaddset(&sa.sa_mask, SIGINT);
        if (sigaction(SIGHUP, &sa, NULL) < 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR ||
            sigaltstack(&ss, NULL) < 0)
                return fail_errno("sigaction");
        return 0;
}

static int sigaction_verify(void) {
        struct sigaction sa, pipe_sa;
        stack_t ss;
        if (sigaction(SIGHUP, NULL, &sa) < 0 || sigaction(SIGPIPE, NULL, &pipe_sa) < 0 ||
            sigaltstack(NULL, &ss) < 0)
                return fail_errno("sigaction");
        if (sa.sa_sigaction != on_sighup || !(sa.sa_flags & SA_SIGINFO) || !(sa.sa_flags & SA_RESTART) ||
            !(sa.sa_flags & SA_ONSTACK) || !sigismember(&sa.sa_mask, SIGINT) ||
            sigismember(&sa.sa_mask, SIGQUIT))
                return fail("SIGHUP's action changed (flags 0x%x)", (unsigned)sa.sa_flags);
        if (pipe_sa.sa_handler != SIG_IGN)
                return fail("SIGPIPE no longer ignored");
        if (ss.ss_sp != altstack || ss.ss_size != sizeof(altstack))
                return fail("alternate signal stack changed");
        return ok("handler, flags, mask, SIG_IGN and the alternate stack kept");
}

#define SFD_SIG (SIGRTMIN + 7)
static int sfd = -1;

static int signalfd_setup_(void) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SFD_SIG);
        sfd = signalfd(-1, &s, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sfd < 0)
                return fail_errno("signalfd");
        return sigqueue(getpid(), SFD_SIG, (union sigval){.sival_int = 77}) < 0 ? fail_errno("sigqueue") : 0;
}

static int signalfd_verify(void) {
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof(si)) != sizeof(si))
                return fail("nothing to read: %s", strerror(errno));
        if ((int)si.ssi_signo != SFD_SIG || si.ssi_int != 77)
                return fail("read signal %u value %d", si.ssi_signo, si.ssi_int);
        if (sigqueue(getpid(), SFD_SIG, (union sigval){.sival_int = 77}) < 0)
                return fail_errno("sigqueue");
        return ok("pending SIGRTMIN+7 read through the signalfd");
}

/* ---- eventfd, epoll, inotify, fanotify -------------------------------------- */

static int efd = -1, efd_sem = -1;

static int eventfd_setup_(void) {
        efd = eventfd(7, EFD_CLOEXEC | EFD_NONBLOCK);
        return efd < 0 ? fail_errno("eventfd") : 0;
}

static int eventfd_verify(void) {
        uint64_t v = 0;
        if (read(efd, &v, sizeof(v)) != sizeof(v) || v != 7)
                return fail("counter %llu, expected 7", (unsigned long long)v);
        if (write(efd, &v, sizeof(v)) != sizeof(v))
                return fail_errno("write back");
        return ok("counter 7 kept");
}

static int eventfd_sem_setup(void) {
        efd_sem = eventfd(3, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
        return efd_sem < 0 ? fail_errno("eventfd") : 0;
}

/* A semaphore reads 1 at a time: 3 reads, then EAGAIN. */
static int eventfd_sem_verify(void) {
        uint64_t s = 0, n = 0;
        for (; read(efd_sem, &s, sizeof(s)) == sizeof(s); n++)
                if (s != 1)
                        return fail("a read gave %llu: no longer a semaphore", (unsigned long long)s);
        if (n != 3)
                return fail("counted %llu, expected 3", (unsigned long long)n);
        s = 3;
        if (write(efd_sem, &s, sizeof(s)) != sizeof(s))
                return fail_errno("write back");
        return ok("semaphore of 3 kept");
}

static int ep_fd = -1, ep_ev = -1, ep_pipe[2], ep_idle[2];

static int epoll_setup_(void) {
        struct epoll_event e1 = {.events = EPOLLIN, .data.u64 = 0xA},
                           e2 = {.events = EPOLLOUT, .data.u64 = 0xB},
                           e3 = {.events = EPOLLIN | EPOLLET, .data.u64 = 0xC};
        ep_fd = epoll_create1(EPOLL_CLOEXEC);
        ep_ev = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ep_fd < 0 || ep_ev < 0 || pipe2(ep_pipe, O_CLOEXEC) < 0 || pipe2(ep_idle, O_CLOEXEC) < 0)
                return fail_errno("epoll/eventfd/pipe");
        if (epoll_ctl(ep_fd, EPOLL_CTL_ADD, ep_ev, &e1) < 0 ||
            epoll_ctl(ep_fd, EPOLL_CTL_ADD, ep_pipe[1], &e2) < 0 ||
            epoll_ctl(ep_fd, EPOLL_CTL_ADD, ep_idle[0], &e3) < 0)
                return fail_errno("epoll_ctl");
        return 0;
}

static int epoll_verify(void) {
        struct epoll_event ev[8];
        uint64_t seen = 0;
        int n = epoll_wait(ep_fd, ev, 8, 1000);
        if (n < 0)
                return fail_errno("epoll_wait");
        for (int i = 0; i < n; i++) {
                if ((ev[i].data.u64 == 0xA && ev[i].events != EPOLLIN) ||
                    (ev[i].data.u64 == 0xB && ev[i].events != EPOLLOUT) || ev[i].data.u64 == 0xC)
                        return fail("event 0x%llx with mask 0x%x", (unsigned long long)ev[i].data.u64,
                                    ev[i].events);
                seen |= 1u << (ev[i].data.u64 - 0xA);
        }
        if (seen != 3)
                return fail("ready: %d events (mask 0x%llx), expected the eventfd and the pipe's write end",
                            n, (unsigned long long)seen);
        return ok("3 watched descriptors, the 2 ready ones reported with their tags");
}

static int in_fd = -1;
static char in_dir[PATH_MAX];

static int inotify_setup_(void) {
        path_in("watched", in_dir, sizeof(in_dir));
        if (mkdir(in_dir, 0700) < 0 && errno != EEXIST)
                return fail_errno("mkdir");
        in_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (in_fd < 0 || inotify_add_watch(in_fd, in_dir, IN_CREATE | IN_DELETE) < 0)
                return fail_errno("inotify");
        return 0;
}

static int inotify_verify(void) {
        static unsigned round;
        char name[32], p[PATH_MAX + 40],
                buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        struct pollfd pfd = {.fd = in_fd, .events = POLLIN};
        struct inotify_event *e = (struct inotify_event *)buf;
        int fd;

        snprintf(name, sizeof(name), "f-%u", ++round);
        snprintf(p, sizeof(p), "%s/%s", in_dir, name);
        fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0)
                return fail_errno("create a file in the watched directory");
        close(fd);
        unlink(p);
        if (poll(&pfd, 1, 2000) != 1 || read(in_fd, buf, sizeof(buf)) < (ssize_t)sizeof(*e))
                return fail("no inotify event for %s", p);
        if (!(e->mask & IN_CREATE) || strcmp(e->name, name) != 0)
                return fail("event mask 0x%x name '%s', expected IN_CREATE %s", e->mask, e->name, name);
        sleep_ms(20);
        while (read(in_fd, buf, sizeof(buf)) > 0)
                ;
        return ok("the watch on %s reports IN_CREATE", in_dir);
}

/* ---- memfd, unlinked and regular files ---------------------------------- */

static int mfd = -1;
static unsigned char *mfd_map;
#define MEMFD_SIZE (3 * PAGE)

static void fill(unsigned char *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                p[i] = (unsigned char)((i * 31 + seed) & 0xff);
}

static bool filled(const unsigned char *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != (unsigned char)((i * 31 + seed) & 0xff))
                        return false;
        return true;
}

static int memfd_setup(void) {
        unsigned char buf[MEMFD_SIZE];
        mfd = memfd_create("nm-breadth", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mfd < 0)
                return fail_errno("memfd_create");
        fill(buf, sizeof(buf), 5);
        if (write_all(mfd, buf, sizeof(buf)) < 0 || fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
                return fail_errno("write/seal");
        mfd_map = mmap(NULL, MEMFD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        return mfd_map == MAP_FAILED ? fail_errno("mmap") : 0;
}

static int memfd_verify(void) {
        unsigned char buf[MEMFD_SIZE];
        int seals = fcntl(mfd, F_GET_SEALS);
        if (seals != (F_SEAL_SHRINK | F_SEAL_GROW))
                return fail("seals 0x%x", seals);
        if (pread(mfd, buf, sizeof(buf), 0) != MEMFD_SIZE || !filled(buf, sizeof(buf), 5) ||
            !filled(mfd_map, MEMFD_SIZE, 5))
                return fail("content changed");
        mfd_map[0] ^= 0xff; /* a write through the mapping shows in the file */
        if (pread(mfd, buf, 1, 0) != 1 || buf[0] != mfd_map[0])
                return fail("the mapping is no longer shared with the memfd");
        mfd_map[0] ^= 0xff;
        return ok("%d bytes, seals and a shared mapping kept", MEMFD_SIZE);
}

static int unl_fd = -1;
static const char unl_data[] = "the content of a file that has no name any more";

static int unlinked_setup(void) {
        char p[PATH_MAX];
        if (create_file("unlinked", unl_data, strlen(unl_data), 0, &unl_fd) < 0)
                return -1;
        if (lseek(unl_fd, 5, SEEK_SET) != 5 || unlink(path_in("unlinked", p, sizeof(p))) < 0)
                return fail_errno("lseek/unlink");
        return 0;
}

static int unlinked_verify(void) {
        char buf[sizeof(unl_data)] = {};
        struct stat st;
        if (fstat(unl_fd, &st) < 0 || st.st_nlink != 0)
                return fail("link count %lu, expected 0", (unsigned long)st.st_nlink);
        if (lseek(unl_fd, 0, SEEK_CUR) != 5)
                return fail("offset changed");
        if (pread(unl_fd, buf, sizeof(buf) - 1, 0) != (ssize_t)strlen(unl_data) ||
            strcmp(buf, unl_data) != 0)
                return fail("content changed: '%s'", buf);
        return ok("open, unlinked, %zu bytes and the offset kept", strlen(unl_data));
}

static int reg_fd = -1;

static int regfile_setup(void) {
        if (create_file("regular", "0123456789", 10, O_APPEND, &reg_fd) < 0)
                return -1;
        return lseek(reg_fd, 3, SEEK_SET) == 3 ? 0 : fail_errno("lseek");
}

static int regfile_verify(void) {
        int fl = fcntl(reg_fd, F_GETFL), fdfl = fcntl(reg_fd, F_GETFD);
        if (lseek(reg_fd, 0, SEEK_CUR) != 3)
                return fail("offset changed");
        if (!(fl & O_APPEND) || (fl & O_ACCMODE) != O_RDWR || !(fdfl & FD_CLOEXEC))
                return fail("flags changed: 0x%x, fd flags 0x%x", fl, fdfl);
        return ok("offset 3, O_APPEND|O_RDWR and FD_CLOEXEC kept");
}

/* ---- mappings ------------------------------------------------------------------- */

/* Shared anonymous memory seen by a child: it answers a token with token+1
 * written into the same page. A private anonymous area is copied on write in
 * the child, which changed its copy right after fork. */
#define ANON_PAGES 8
static volatile uint32_t *anon_shared;
static unsigned char *anon_private;

static int mm_child_setup(void) {
        fill(anon_private, ANON_PAGES * PAGE, 99); /* the child's copy only */
        return 0;
}

static int mm_child_verify(void) {
        uint32_t token = anon_shared[0];
        if (!filled(anon_private, ANON_PAGES * PAGE, 99))
                return fail("the child's private copy changed");
        anon_shared[1] = token + 1;
        return 0;
}

static helper mm_child;

static int mmap_anon_setup(void) {
        anon_shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        anon_private =
                mmap(NULL, ANON_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (anon_shared == MAP_FAILED || anon_private == MAP_FAILED)
                return fail_errno("mmap");
        fill(anon_private, ANON_PAGES * PAGE, 7);
        return helper_start(&mm_child, mm_child_setup, mm_child_verify);
}

static int mmap_anon_verify(void) {
        static uint32_t token = 1000;
        if (!filled(anon_private, ANON_PAGES * PAGE, 7))
                return fail("private anonymous memory changed");
        anon_shared[0] = ++token;
        if (helper_check(&mm_child) < 0)
                return -1;
        if (anon_shared[1] != token + 1)
                return fail("the child did not see the shared page (wrote %u for %u)", anon_shared[1],
                            token);
        return ok("%d private pages kept (the child's copy its own), a shared page shared", ANON_PAGES);
}

static unsigned char *fmap_shared, *fmap_private;
static int fmap_fd = -1;

static int mmap_file_setup(void) {
        unsigned char buf[2 * PAGE];
        int pfd = -1;
        fill(buf, sizeof(buf), 11);
        if (create_file("mapped-shared", buf, sizeof(buf), 0, &fmap_fd) < 0 ||
            create_file("mapped-private", buf, sizeof(buf), 0, &pfd) < 0)
                return -1;
        fmap_shared = mmap(NULL, sizeof(buf), PROT_READ | PROT_WRITE, MAP_SHARED, fmap_fd, 0);
        fmap_private = mmap(NULL, sizeof(buf), PROT_READ | PROT_WRITE, MAP_PRIVATE, pfd, 0);
        close(pfd); /* the private mapping alone keeps the file */
        if (fmap_shared == MAP_FAILED || fmap_private == MAP_FAILED)
                return fail_errno("mmap");
        fill(fmap_private, PAGE, 12); /* copied on write: the file keeps seed 11 */
        fill(fmap_shared + PAGE, PAGE, 13);
        return 0;
}

static int mmap_file_verify(void) {
        unsigned char buf[2 * PAGE];
        char p[PATH_MAX];
        int fd;

        if (!filled(fmap_private, PAGE, 12) || !filled(fmap_private + PAGE, PAGE, (11 + 31 * PAGE) & 0xff))
                return fail("the private file mapping changed");
        if (!filled(fmap_shared, PAGE, 11) || !filled(fmap_shared + PAGE, PAGE, 13))
                return fail("the shared file mapping changed");
        if (pread(fmap_fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) ||
            memcmp(buf, fmap_shared, sizeof(buf)) != 0)
                return fail("the shared mapping and its file differ");
        fd = open(path_in("mapped-private", p, sizeof(p)), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || pread(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) ||
            !filled(buf, sizeof(buf), 11))
                return fail("the privately mapped file changed on disk");
        close(fd);
        return ok("MAP_SHARED writes in its file, MAP_PRIVATE copy-on-write page kept");
}

/* ---- System V IPC (the container's own IPC namespace) ------------------------ */

static int shm_id = -1, sem_id = -1, msg_id = -1;
static unsigned char *shm_addr;

struct nm_msg {
        long type;
        char text[32];
};

static int sysv_queue(void) {
        struct nm_msg m1 = {.type = 1, .text = "first"}, m2 = {.type = 2, .text = "second"};
        if (msgsnd(msg_id, &m1, sizeof(m1.text), IPC_NOWAIT) < 0 ||
            msgsnd(msg_id, &m2, sizeof(m2.text), IPC_NOWAIT) < 0)
                return fail_errno("msgsnd");
        return 0;
}

static int sysv_ipc_setup(void) {
        shm_id = shmget(IPC_PRIVATE, 2 * PAGE, IPC_CREAT | 0600);
        sem_id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
        msg_id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
        if (shm_id < 0 || sem_id < 0 || msg_id < 0)
                return fail_errno("shmget/semget/msgget");
        shm_addr = shmat(shm_id, NULL, 0);
        if (shm_addr == (void *)-1)
                return fail_errno("shmat");
        fill(shm_addr, 2 * PAGE, 21);
        if (semctl(sem_id, 0, SETVAL, 3) < 0 || semctl(sem_id, 1, SETVAL, 9) < 0)
                return fail_errno("semctl");
        return sysv_queue();
}

static int sysv_ipc_verify(void) {
        struct nm_msg m;
        struct shmid_ds ds;
        int v0 = semctl(sem_id, 0, GETVAL), v1 = semctl(sem_id, 1, GETVAL);

        if (!filled(shm_addr, 2 * PAGE, 21) || shmctl(shm_id, IPC_STAT, &ds) < 0 || ds.shm_segsz != 2 * PAGE)
                return fail("shared memory segment changed");
        if (v0 != 3 || v1 != 9)
                return fail("semaphores %d %d, expected 3 9", v0, v1);
        for (long t = 1; t <= 2; t++)
                if (msgrcv(msg_id, &m, sizeof(m.text), 0, IPC_NOWAIT) < 0 || m.type != t)
                        return fail("message %ld: %s", t, strerror(errno));
        if (msgrcv(msg_id, &m, sizeof(m.text), 0, IPC_NOWAIT) >= 0)
                return fail("an extra message appeared");
        if (sysv_queue() < 0)
                return -1;
        return ok("shm segment content, 2 semaphores and 2 queued messages kept");
}

/* ---- threads ----------------------------------------------------------------- */

#define N_THREADS 3
static struct thread_state {
        pthread_t t;
        atomic_ulong ticks;
        atomic_int bad;
        int index;
} threads[N_THREADS];
static __thread int thread_local_value;

static void *thread_main(void *arg) {
        struct thread_state *ts = arg;
        char name[16], got[16] = {};
        snprintf(name, sizeof(name), "nm-thread-%d", ts->index);
        prctl(PR_SET_NAME, name);
        thread_local_value = 1000 + ts->index;
        for (;;) {
                prctl(PR_GET_NAME, got);
                if (thread_local_value != 1000 + ts->index || strcmp(got, name) != 0)
                        atomic_store(&ts->bad, 1);
                atomic_fetch_add(&ts->ticks, 1);
                sleep_ms(10);
        }
        return NULL;
}

static int threads_setup(void) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        for (int i = 0; i < N_THREADS; i++) {
                threads[i].index = i;
                if (pthread_create(&threads[i].t, NULL, thread_main, &threads[i]) != 0)
                        return fail("pthread_create failed");
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return 0;
}

static int threads_verify(void) {
        unsigned long before[N_THREADS];
        for (int i = 0; i < N_THREADS; i++)
                before[i] = atomic_load(&threads[i].ticks);
        for (int w = 0; w < 200; w++) {
                int moved = 0;
                for (int i = 0; i < N_THREADS; i++)
                        moved += atomic_load(&threads[i].ticks) > before[i];
                if (moved == N_THREADS)
                        break;
                sleep_ms(10);
        }
        for (int i = 0; i < N_THREADS; i++) {
                if (atomic_load(&threads[i].ticks) <= before[i])
                        return fail("thread %d does not run", i);
                if (atomic_load(&threads[i].bad))
                        return fail("thread %d lost its name or thread-local value", i);
        }
        return ok("%d threads run, names and thread-local values kept", N_THREADS);
}

/* ---- zombies and stopped children ------------------------------------------- */

static pid_t zombie_pid;

static int zombie_setup(void) {
        siginfo_t si = {};
        zombie_pid = fork();
        if (zombie_pid < 0)
                return fail_errno("fork");
        if (zombie_pid == 0)
                _exit(42);
        return waitid(P_PID, (id_t)zombie_pid, &si, WEXITED | WNOWAIT) < 0 ? fail_errno("waitid") : 0;
}

static int zombie_verify(void) {
        siginfo_t si = {};
        if (waitid(P_PID, (id_t)zombie_pid, &si, WEXITED | WNOWAIT | WNOHANG) < 0)
                return fail("waitid(%d): %s", (int)zombie_pid, strerror(errno));
        if (si.si_pid != zombie_pid || si.si_code != CLD_EXITED || si.si_status != 42)
                return fail("child %d: code %d status %d, expected an exited zombie with 42",
                            (int)zombie_pid, si.si_code, si.si_status);
        return ok("pid %d is a zombie with exit status 42, not reaped", (int)zombie_pid);
}

/* Two children stop themselves (SIGSTOP; SIGTSTP in a process group of its
 * own, so that the stop is not discarded as an orphaned group's) and count,
 * in shared memory, every time they run again. */
static struct stopped_state { atomic_int woke[2]; } * stopped_shm;
static pid_t stopped_pid[2];

static int stopped_setup(void) {
        stopped_shm = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (stopped_shm == MAP_FAILED)
                return fail_errno("mmap");
        for (int i = 0; i < 2; i++) {
                int sig = i == 0 ? SIGSTOP : SIGTSTP;
                siginfo_t si = {};
                stopped_pid[i] = fork();
                if (stopped_pid[i] < 0)
                        return fail_errno("fork");
                if (stopped_pid[i] == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        if (sig == SIGTSTP)
                                setpgid(0, 0);
                        for (;;) {
                                raise(sig);
                                atomic_fetch_add(&stopped_shm->woke[i], 1);
                        }
                }
                if (waitid(P_PID, (id_t)stopped_pid[i], &si, WSTOPPED | WNOWAIT) < 0)
                        return fail_errno("waitid");
        }
        return 0;
}

static int stopped_verify(void) {
        for (int i = 0; i < 2; i++) {
                siginfo_t si = {};
                int woke = atomic_load(&stopped_shm->woke[i]);
                if (woke)
                        return fail("child %d (stopped by %s) ran again %d time(s)", (int)stopped_pid[i],
                                    i ? "SIGTSTP" : "SIGSTOP", woke);
                if (waitid(P_PID, (id_t)stopped_pid[i], &si, WSTOPPED | WNOWAIT | WNOHANG) < 0 ||
                    si.si_pid != stopped_pid[i] || si.si_code != CLD_STOPPED)
                        return fail("child %d is not stopped (code %d)", (int)stopped_pid[i], si.si_code);
        }
        return ok("children %d (SIGSTOP) and %d (SIGTSTP) stayed stopped and never ran", (int)stopped_pid[0],
                  (int)stopped_pid[1]);
}

/* ---- file locks ---------------------------------------------------------------- */

static int flock_fd = -1, posix_fd = -1, ofd_fd = -1, lease_fd = -1;

/* Runs probe in a short-lived child (locks are per process or per open
 * file): its exit code is 0 when it saw what it expected. */
static int in_child(int (*probe)(void)) {
        int st;
        pid_t p = fork();
        if (p < 0)
                return fail_errno("fork");
        if (p == 0)
                _exit(probe() == 0 ? 0 : 1);
        if (waitpid(p, &st, 0) < 0)
                return fail_errno("waitpid");
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int open_in(const char *name, int flags) {
        char p[PATH_MAX];
        return open(path_in(name, p, sizeof(p)), flags | O_CLOEXEC);
}

static int flock_setup(void) {
        if (create_file("flock", "x", 1, 0, &flock_fd) < 0)
                return -1;
        return flock(flock_fd, LOCK_EX | LOCK_NB) < 0 ? fail_errno("flock") : 0;
}

static int flock_probe(void) {
        int fd = open_in("flock", O_RDWR);
        return fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK ? 0 : 1;
}

static int flock_verify(void) {
        if (in_child(flock_probe) < 0)
                return fail("another process can take the exclusive flock");
        return ok("exclusive flock held: another process gets EWOULDBLOCK");
}

static pid_t main_pid;

static int posix_lock_setup(void) {
        struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
        struct flock r = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 20, .l_len = 10};
        if (create_file("posix-lock", "0123456789abcdefghijklmnopqrstuvwxyz", 36, 0, &posix_fd) < 0)
                return -1;
        return fcntl(posix_fd, F_SETLK, &w) < 0 || fcntl(posix_fd, F_SETLK, &r) < 0 ? fail_errno("F_SETLK")
                                                                                    : 0;
}

static int posix_lock_probe(void) {
        struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
        struct flock r = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 20, .l_len = 10};
        struct flock free_ = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 12, .l_len = 4};
        int fd = open_in("posix-lock", O_RDWR);
        if (fd < 0 || fcntl(fd, F_GETLK, &w) < 0 || fcntl(fd, F_GETLK, &r) < 0 ||
            fcntl(fd, F_GETLK, &free_) < 0)
                return 1;
        return w.l_type == F_WRLCK && w.l_pid == main_pid && r.l_type == F_RDLCK && r.l_pid == main_pid &&
                               free_.l_type == F_UNLCK
                       ? 0
                       : 1;
}

static int posix_lock_verify(void) {
        if (in_child(posix_lock_probe) < 0)
                return fail("the write lock on bytes 0-9 and the read lock on 20-29 are not held by pid %d",
                            (int)main_pid);
        return ok("write lock 0-9 and read lock 20-29 held by pid %d", (int)main_pid);
}

static int ofd_lock_setup(void) {
        struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 4};
        if (create_file("ofd-lock", "abcd", 4, 0, &ofd_fd) < 0)
                return -1;
        return fcntl(ofd_fd, F_OFD_SETLK, &w) < 0 ? fail_errno("F_OFD_SETLK") : 0;
}

static int ofd_lock_verify(void) {
        struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 4};
        int fd = open_in("ofd-lock", O_RDWR);
        if (fd < 0 || fcntl(fd, F_OFD_GETLK, &w) < 0)
                return fail_errno("F_OFD_GETLK");
        close(fd);
        if (w.l_type != F_WRLCK || w.l_pid != -1)
                return fail("lock type %d pid %d, expected an open-file-description write lock", w.l_type,
                            w.l_pid);
        return ok("open-file-description write lock held");
}

static int lease_setup(void) {
        int fd = -1;
        if (create_file("lease", "lease", 5, 0, &fd) < 0)
                return -1;
        close(fd);
        lease_fd = open_in("lease", O_RDONLY);
        if (lease_fd < 0 || fcntl(lease_fd, F_SETLEASE, F_RDLCK) < 0)
                return fail_errno("F_SETLEASE");
        return 0;
}

static int lease_verify(void) {
        int l = fcntl(lease_fd, F_GETLEASE);
        if (l != F_RDLCK)
                return fail("lease %d, expected a read lease", l);
        return ok("read lease held");
}

/* ---- process attributes ---------------------------------------------------------- */

static const struct {
        int res;
        rlim_t cur, max;
} limits[] = {
        {RLIMIT_NOFILE, 1000, 4096},
        {RLIMIT_CORE, 0, 1 << 20},
        {RLIMIT_MSGQUEUE, 4096, 8192},
        {RLIMIT_NPROC, 5000, 6000},
};

static int rlimits_setup(void) {
        for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
                struct rlimit rl = {.rlim_cur = limits[i].cur, .rlim_max = limits[i].max};
                if (setrlimit(limits[i].res, &rl) < 0)
                        return fail("setrlimit %d: %s", limits[i].res, strerror(errno));
        }
        return 0;
}

static int rlimits_verify(void) {
        for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
                struct rlimit rl;
                if (getrlimit(limits[i].res, &rl) < 0 || rl.rlim_cur != limits[i].cur ||
                    rl.rlim_max != limits[i].max)
                        return fail("limit %d is %llu/%llu, expected %llu/%llu", limits[i].res,
                                    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                                    (unsigned long long)limits[i].cur, (unsigned long long)limits[i].max);
        }
        return ok("NOFILE, CORE, MSGQUEUE and NPROC soft and hard limits kept");
}

/* Capabilities, securebits and ambient capabilities, in a helper. */
#define CAPS_KEEP ((1u << CAP_NET_BIND_SERVICE) | (1u << CAP_KILL) | (1u << CAP_SETPCAP))

static int capget_(struct __user_cap_data_struct d[2]) {
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        return (int)syscall(SYS_capget, &h, d);
}

static int caps_setup(void) {
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[2] = {};
        if (prctl(PR_CAPBSET_DROP, CAP_MKNOD) < 0 || prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT) < 0 ||
            prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) < 0)
                return fail_errno("drop bounding caps / securebits");
        d[0].effective = d[0].permitted = CAPS_KEEP;
        d[0].inheritable = 1u << CAP_NET_BIND_SERVICE;
        if (syscall(SYS_capset, &h, d) < 0)
                return fail_errno("capset");
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) < 0)
                return fail_errno("raise ambient");
        return 0;
}

static int caps_verify(void) {
        struct __user_cap_data_struct d[2] = {};
        int sb = prctl(PR_GET_SECUREBITS);
        if (capget_(d) < 0)
                return fail_errno("capget");
        if (d[0].effective != CAPS_KEEP || d[0].permitted != CAPS_KEEP || d[1].effective || d[1].permitted ||
            d[0].inheritable != 1u << CAP_NET_BIND_SERVICE)
                return fail("caps eff %08x prm %08x inh %08x", d[0].effective, d[0].permitted,
                            d[0].inheritable);
        if (prctl(PR_CAPBSET_READ, CAP_MKNOD) != 0 || prctl(PR_CAPBSET_READ, CAP_SYS_BOOT) != 0 ||
            prctl(PR_CAPBSET_READ, CAP_NET_ADMIN) != 1)
                return fail("bounding set changed");
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0) != 1)
                return fail("ambient CAP_NET_BIND_SERVICE lost");
        if (sb != SECBIT_NO_SETUID_FIXUP)
                return fail("securebits 0x%x", sb);
        char node[PATH_MAX];
        path_in("mknod-never", node, sizeof(node));
        if (mknod(node, S_IFCHR | 0600, makedev(1, 3)) == 0) {
                (void)unlink(node);
                return fail("mknod is allowed again");
        }
        if (errno != EPERM)
                return fail("mknod: %s, expected EPERM", strerror(errno));
        return ok("effective/permitted %08x, inheritable, ambient, bounding set and securebits kept",
                  CAPS_KEEP);
}

static int creds_setup(void) {
        gid_t groups[] = {100, 200};
        if (setgroups(2, groups) < 0 || setresgid(1001, 1002, 1003) < 0 || setresuid(1001, 1002, 1003) < 0)
                return fail_errno("set credentials");
        return 0;
}

static int creds_verify(void) {
        uid_t ru, eu, su;
        gid_t rg, eg, sg, groups[8];
        int n = getgroups(8, groups);
        if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
                return fail_errno("getres*id");
        if (ru != 1001 || eu != 1002 || su != 1003 || rg != 1001 || eg != 1002 || sg != 1003)
                return fail("uids %u/%u/%u gids %u/%u/%u", ru, eu, su, rg, eg, sg);
        if (n != 2 || groups[0] != 100 || groups[1] != 200)
                return fail("supplementary groups changed (%d)", n);
        return ok("uids 1001/1002/1003, gids 1001/1002/1003, groups 100 200 kept");
}

/* Two filters: getpriority() fails with errno 77, acct() kills the process. */
#define SECCOMP_ERRNO 77

static int install_filter(int nr, uint32_t action) {
        struct sock_filter f[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, action),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static int seccomp_setup(void) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            install_filter(SYS_getpriority, SECCOMP_RET_ERRNO | SECCOMP_ERRNO) < 0 ||
            install_filter(SYS_acct, SECCOMP_RET_KILL_PROCESS) < 0)
                return fail_errno("install seccomp filters");
        return 0;
}

static int status_field(const char *key, char *buf, size_t n) {
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        size_t k = strlen(key);
        int r = -1;
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, k) == 0 && line[k] == ':') {
                        snprintf(buf, n, "%s", line + k + 1 + strspn(line + k + 1, " \t"));
                        buf[strcspn(buf, "\n")] = '\0';
                        r = 0;
                        break;
                }
        fclose(f);
        return r;
}

static int seccomp_verify(void) {
        char mode[32] = "", nfilters[32] = "";
        int st;
        pid_t p;

        errno = 0;
        if (getpriority(PRIO_PROCESS, 0) != -1 || errno != SECCOMP_ERRNO)
                return fail("getpriority() is allowed again (errno %d)", errno);
        p = fork();
        if (p == 0) {
                syscall(SYS_acct, NULL);
                _exit(0);
        }
        if (p < 0 || waitpid(p, &st, 0) < 0)
                return fail_errno("fork/waitpid");
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSYS)
                return fail("acct() no longer kills (status 0x%x)", st);
        if (status_field("Seccomp", mode, sizeof(mode)) < 0 || strcmp(mode, "2") != 0 ||
            status_field("Seccomp_filters", nfilters, sizeof(nfilters)) < 0 || strcmp(nfilters, "2") != 0)
                return fail("Seccomp '%s', filters '%s'", mode, nfilters);
        return ok("2 filters: getpriority() fails with errno %d, acct() kills with SIGSYS", SECCOMP_ERRNO);
}

static int nnp_setup(void) {
        return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? fail_errno("PR_SET_NO_NEW_PRIVS") : 0;
}

static int nnp_verify(void) {
        int v = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
        return v == 1 ? ok("no_new_privs set") : fail("no_new_privs is %d", v);
}

static char cwd_path[PATH_MAX];

static int cwd_umask_setup(void) {
        path_in("cwd", cwd_path, sizeof(cwd_path));
        if ((mkdir(cwd_path, 0700) < 0 && errno != EEXIST) || chdir(cwd_path) < 0)
                return fail_errno("chdir");
        umask(027);
        return 0;
}

static int cwd_umask_verify(void) {
        char got[PATH_MAX];
        mode_t m = umask(027);
        if (!getcwd(got, sizeof(got)) || strcmp(got, cwd_path) != 0)
                return fail("cwd '%s', expected '%s'", got, cwd_path);
        return m == 027 ? ok("cwd %s, umask 027", cwd_path) : fail("umask %03o, expected 027", (unsigned)m);
}

static char root_path[PATH_MAX];

static int chroot_setup(void) {
        char p[PATH_MAX + 16];
        int fd;
        path_in("root", root_path, sizeof(root_path));
        snprintf(p, sizeof(p), "%s/marker", root_path);
        if ((mkdir(root_path, 0700) < 0 && errno != EEXIST) ||
            (fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)) < 0)
                return fail_errno("mkdir/marker");
        close(fd);
        return chroot(root_path) < 0 || chdir("/") < 0 ? fail_errno("chroot") : 0;
}

static int chroot_verify(void) {
        return access("/marker", F_OK) == 0 ? ok("the root is %s", root_path)
                                            : fail("/marker is not there: no longer chrooted");
}

static pid_t sess_pid, sess_sid, sess_pgid;

static int session_setup(void) {
        sess_sid = setsid();
        if (sess_sid < 0)
                return fail_errno("setsid");
        sess_pid = getpid();
        sess_pgid = getpgid(0);
        return 0;
}

static int session_verify(void) {
        if (getpid() != sess_pid || getsid(0) != sess_sid || getpgid(0) != sess_pgid || sess_sid != sess_pid)
                return fail("pid %d sid %d pgid %d, expected %d %d %d", getpid(), getsid(0), getpgid(0),
                            sess_pid, sess_sid, sess_pgid);
        return ok("pid %d leads its own session and process group", sess_pid);
}

static int prctl_setup(void) {
        if (prctl(PR_SET_PDEATHSIG, SIGHUP) < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) < 0 ||
            prctl(PR_SET_NAME, "nm-prctl") < 0 || setpriority(PRIO_PROCESS, 0, 7) < 0)
                return fail_errno("prctl/setpriority");
        return 0;
}

static int prctl_verify(void) {
        int sig = 0, reaper = 0, nice_;
        char name[16] = {};
        prctl(PR_GET_PDEATHSIG, &sig);
        prctl(PR_GET_CHILD_SUBREAPER, &reaper);
        prctl(PR_GET_NAME, name);
        errno = 0;
        nice_ = getpriority(PRIO_PROCESS, 0);
        if (sig != SIGHUP || reaper != 1 || strcmp(name, "nm-prctl") != 0 || nice_ != 7)
                return fail("pdeathsig %d subreaper %d name '%s' nice %d", sig, reaper, name, nice_);
        return ok("parent-death signal, child subreaper, name and nice 7 kept");
}

static helper caps_h, creds_h, seccomp_h, nnp_h, cwd_h, chroot_h, session_h, prctl_h;

#define HELPER_CLASS(fn, h)                                         \
        static int fn##_start(void) {                               \
                return helper_start(&(h), fn##_setup, fn##_verify); \
        }                                                           \
        static int fn##_check(void) {                               \
                return helper_check(&(h));                          \
        }

HELPER_CLASS(caps, caps_h)
HELPER_CLASS(creds, creds_h)
HELPER_CLASS(seccomp, seccomp_h)
HELPER_CLASS(nnp, nnp_h)
HELPER_CLASS(cwd_umask, cwd_h)
HELPER_CLASS(chroot, chroot_h)
HELPER_CLASS(session, session_h)
HELPER_CLASS(prctl, prctl_h)

/* ---- the container's namespaces, terminals, pidfds ------------------------------ */

static char hostname_[64];

static int uts_setup(void) {
        return gethostname(hostname_, sizeof(hostname_)) < 0 ? fail_errno("gethostname") : 0;
}

static int uts_verify(void) {
        char got[64];
        if (gethostname(got, sizeof(got)) < 0 || strcmp(got, hostname_) != 0)
                return fail("host name '%s', expected '%s'", got, hostname_);
        return ok("host name '%s' kept", got);
}

#define NET_ADDR "198.18.255.7"

static int set_lo_alias(const char *label, const char *addr) {
        struct ifreq ifr = {};
        struct sockaddr_in *a = (struct sockaddr_in *)&ifr.ifr_addr;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;
        if (fd < 0)
                return fail_errno("socket");
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", label);
        a->sin_family = AF_INET;
        inet_pton(AF_INET, addr, &a->sin_addr);
        r = ioctl(fd, SIOCSIFADDR, &ifr);
        if (r < 0)
                fail("SIOCSIFADDR %s %s: %s", label, addr, strerror(errno));
        close(fd);
        return r;
}

static int net_addr_setup(void) {
        if (lo_up() < 0)
                return -1;
        return set_lo_alias("lo:nm", NET_ADDR);
}

static int net_addr_verify(void) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(7109)}, got;
        socklen_t len = sizeof(got);
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        inet_pton(AF_INET, NET_ADDR, &a.sin_addr);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            getsockname(fd, (struct sockaddr *)&got, &len) < 0) {
                if (fd >= 0)
                        close(fd);
                return fail("cannot bind %s: %s", NET_ADDR, strerror(errno));
        }
        close(fd);
        return ok("address %s on lo, loopback up", NET_ADDR);
}

static int pty_master = -1, pty_slave = -1;
static const char pty_line[] = "typed at the terminal\n";

static int pty_setup(void) {
        struct termios t;
        pty_master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (pty_master < 0 || grantpt(pty_master) < 0 || unlockpt(pty_master) < 0)
                return fail_errno("posix_openpt");
        pty_slave = open(ptsname(pty_master), O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (pty_slave < 0 || tcgetattr(pty_slave, &t) < 0)
                return fail_errno("open the slave");
        t.c_lflag &= ~(tcflag_t)ECHO;
        if (tcsetattr(pty_slave, TCSANOW, &t) < 0)
                return fail_errno("tcsetattr");
        return write_all(pty_master, pty_line, strlen(pty_line)) < 0 ? fail_errno("write") : 0;
}

static int pty_verify(void) {
        struct termios t;
        char buf[64] = {};
        struct pollfd p = {.fd = pty_slave, .events = POLLIN};

        if (tcgetattr(pty_slave, &t) < 0 || (t.c_lflag & ECHO) || !(t.c_lflag & ICANON))
                return fail("terminal settings changed");
        if (poll(&p, 1, 1000) != 1 || read(pty_slave, buf, sizeof(buf) - 1) != (ssize_t)strlen(pty_line) ||
            strcmp(buf, pty_line) != 0)
                return fail("the typed line did not arrive: '%s'", buf);
        if (write_all(pty_master, pty_line, strlen(pty_line)) < 0)
                return fail_errno("write back");
        return ok("a typed line in flight and ECHO off kept");
}

static int pidfd_fd = -1;
static pid_t pidfd_child;

static int pidfd_setup(void) {
        pidfd_child = fork();
        if (pidfd_child < 0)
                return fail_errno("fork");
        if (pidfd_child == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                for (;;)
                        pause();
        }
        pidfd_fd = (int)syscall(SYS_pidfd_open, pidfd_child, 0);
        return pidfd_fd < 0 ? fail_errno("pidfd_open") : 0;
}

static int pidfd_verify(void) {
        char p[64], line[256], nspid[64] = "";
        FILE *f;
        if (syscall(SYS_pidfd_send_signal, pidfd_fd, 0, NULL, 0) < 0)
                return fail_errno("pidfd_send_signal");
        snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", pidfd_fd);
        f = fopen(p, "re");
        if (!f)
                return fail_errno("fdinfo");
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "NSpid:", 6) == 0)
                        snprintf(nspid, sizeof(nspid), "%s",
                                 strrchr(line, '\t') ? strrchr(line, '\t') + 1 : "");
        fclose(f);
        long refers = strtol(nspid, NULL, 10);
        if (refers != pidfd_child)
                return fail("the pidfd refers to pid %ld, expected %d", refers, (int)pidfd_child);
        return ok("pidfd of child %d still refers to it", (int)pidfd_child);
}

/* ---- the class table ------------------------------------------------------------- */

typedef enum setup_order {
        SETUP_EARLY,
        /* After every other class: threads (a fork after threads exist is
         * fine, threads before a fork are not), and what must see the
         * others' changes done (the netlink subscription). */
        SETUP_LATE,
} setup_order;

typedef struct klass {
        const char *name;
        const char *what;
        int (*setup)(void);
        int (*verify)(void);
        setup_order order;
        bool selected;
} klass;

static klass classes[] = {
        {"pipe", "a pipe with data in flight and a larger buffer", pipe_setup, pipe_verify},
        {"fifo", "a named pipe with data in flight", fifo_setup, fifo_verify},
        {"unix-stream", "a unix stream socketpair with data in flight both ways", unix_stream_setup,
         unix_stream_verify},
        {"unix-dgram", "a unix datagram socketpair with queued datagrams", unix_dgram_setup,
         unix_dgram_verify},
        {"unix-seqpacket", "a unix seqpacket socketpair with queued packets", unix_seqpacket_setup,
         unix_seqpacket_verify},
        {"unix-listen", "a unix listener bound to a path, an accepted connection with data",
         unix_listen_setup, unix_listen_verify},
        {"unix-abstract", "an abstract unix datagram socket with queued datagrams", unix_abstract_setup,
         unix_abstract_verify},
        {"unix-scm", "a file descriptor in flight (SCM_RIGHTS)", unix_scm_setup, unix_scm_verify},
        {"tcp-listen", "a listening TCP socket", tcp_listen_setup, tcp_listen_verify},
        {"tcp-conn", "an established TCP connection inside the container, data in flight", tcp_conn_setup,
         tcp_conn_verify},
        {"udp", "a bound UDP socket and a connected one", udp_setup, udp_verify},
        {"netlink", "a NETLINK_ROUTE socket with multicast groups", netlink_setup, netlink_verify,
         SETUP_LATE},
        {"netlink-queued", "a NETLINK_ROUTE socket with an unread notification", netlink_queued_setup,
         netlink_queued_verify},
        {"packet", "a raw packet socket bound to lo", packet_setup, packet_verify},
        {"timerfd", "a two-hour periodic timerfd read as it fires, a one-hour one-shot", timerfd_setup_,
         timerfd_verify, SETUP_LATE},
        {"timerfd-fast", "a 50 ms periodic timerfd read as it fires", timerfd_fast_setup,
         timerfd_fast_verify, SETUP_LATE},
        {"posix-timer", "a periodic POSIX timer signalling with a value", posix_timer_setup,
         posix_timer_verify},
        {"itimer", "ITIMER_REAL and ITIMER_VIRTUAL", itimer_setup, itimer_verify},
        {"signals", "pending signals: standard, queued real-time with values, thread-directed",
         signals_setup, signals_verify},
        {"sigaction", "signal handlers, masks, SIG_IGN, an alternate signal stack", sigaction_setup,
         sigaction_verify},
        {"signalfd", "a signalfd with a pending signal", signalfd_setup_, signalfd_verify},
        {"eventfd", "an eventfd counter", eventfd_setup_, eventfd_verify},
        {"eventfd-sem", "an eventfd semaphore (EFD_SEMAPHORE)", eventfd_sem_setup, eventfd_sem_verify},
        {"epoll", "an epoll set over an eventfd and two pipes", epoll_setup_, epoll_verify},
        {"inotify", "an inotify watch on a directory", inotify_setup_, inotify_verify},
        {"memfd", "a sealed memfd, also mapped shared", memfd_setup, memfd_verify},
        {"unlinked", "an open file that was unlinked", unlinked_setup, unlinked_verify},
        {"regfile", "a regular file's offset and flags", regfile_setup, regfile_verify},
        {"mmap-anon", "private and shared anonymous memory, shared with a child", mmap_anon_setup,
         mmap_anon_verify},
        {"mmap-file", "shared and private (copied-on-write) file mappings", mmap_file_setup,
         mmap_file_verify},
        {"sysv-ipc", "System V shared memory, semaphores and a message queue", sysv_ipc_setup,
         sysv_ipc_verify},
        {"threads", "threads with names and thread-local values", threads_setup, threads_verify, SETUP_LATE},
        {"zombie", "a child that exited and was not reaped", zombie_setup, zombie_verify},
        {"stopped", "children stopped by SIGSTOP and SIGTSTP", stopped_setup, stopped_verify},
        {"flock", "an exclusive flock", flock_setup, flock_verify},
        {"posix-lock", "POSIX record locks (read and write)", posix_lock_setup, posix_lock_verify},
        {"ofd-lock", "an open-file-description lock", ofd_lock_setup, ofd_lock_verify},
        {"lease", "a file lease", lease_setup, lease_verify},
        {"rlimits", "lowered soft and hard resource limits", rlimits_setup, rlimits_verify},
        {"caps", "dropped capabilities, bounding set, ambient caps, securebits", caps_start, caps_check},
        {"creds", "distinct real, effective and saved uids and gids, groups", creds_start, creds_check},
        {"seccomp", "seccomp filters (errno and kill) with no_new_privs", seccomp_start, seccomp_check},
        {"no-new-privs", "no_new_privs without seccomp", nnp_start, nnp_check},
        {"cwd-umask", "working directory and umask", cwd_umask_start, cwd_umask_check},
        {"chroot", "a process chrooted into a directory", chroot_start, chroot_check},
        {"session", "a child leading its own session", session_start, session_check},
        {"prctl", "parent-death signal, child subreaper, name, nice", prctl_start, prctl_check},
        {"uts", "the container's host name", uts_setup, uts_verify},
        {"net-addr", "an address added in the container's network namespace", net_addr_setup,
         net_addr_verify},
        {"pty", "a pseudo-terminal pair with a typed line in flight", pty_setup, pty_verify},
        {"pidfd", "a pidfd of a child", pidfd_setup, pidfd_verify},
};
#define N_CLASSES (sizeof(classes) / sizeof(classes[0]))

static klass *find_class(const char *name) {
        for (size_t i = 0; i < N_CLASSES; i++)
                if (strcmp(classes[i].name, name) == 0)
                        return &classes[i];
        return NULL;
}

static int select_classes(const char *list) {
        char *copy = strdup(list), *save = NULL;
        int r = 0;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                klass *k = find_class(t);
                if (!k) {
                        fprintf(stderr, "nm-breadth: unknown class '%s' (see --list)\n", t);
                        r = -1;
                        break;
                }
                k->selected = true;
        }
        free(copy);
        return r;
}

/* ---- reports ---------------------------------------------------------------------- */

static int write_dir_file(const char *name, const char *text) {
        char p[PATH_MAX], tmp[PATH_MAX + 8];
        int fd;
        path_in(name, p, sizeof(p));
        snprintf(tmp, sizeof(tmp), "%s.tmp", p);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -1;
        if (write_all(fd, text, strlen(text)) < 0) {
                close(fd);
                return -1;
        }
        close(fd);
        return rename(tmp, p);
}

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
        va_list ap;
        int n;
        for (;;) {
                va_start(ap, fmt);
                n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
                va_end(ap);
                if (n < 0)
                        return -1;
                if (*len + (size_t)n < *cap)
                        break;
                *cap = (*cap + (size_t)n) * 2;
                *buf = realloc(*buf, *cap);
                if (!*buf)
                        return -1;
        }
        *len += (size_t)n;
        return 0;
}

static void run_checks(unsigned round) {
        size_t len = 0, cap = 4096;
        char *buf = malloc(cap);
        if (!buf)
                return;
        buf[0] = '\0';
        append(&buf, &len, &cap, "round %u\n", round);
        for (size_t i = 0; i < N_CLASSES; i++) {
                if (!classes[i].selected)
                        continue;
                msgbuf[0] = '\0';
                int r = classes[i].verify();
                append(&buf, &len, &cap, "%s %s: %s\n", r == 0 ? "ok" : "FAIL", classes[i].name, msgbuf);
        }
        append(&buf, &len, &cap, "end\n");
        if (write_dir_file("report", buf) < 0)
                fprintf(stderr, "nm-breadth: cannot write the report: %s\n", strerror(errno));
        free(buf);
}

static int setup_all(char *ready, size_t n) {
        size_t used = (size_t)snprintf(ready, n, "ready");
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < N_CLASSES; i++) {
                        klass *k = &classes[i];
                        if (!k->selected || k->order != (pass == 0 ? SETUP_EARLY : SETUP_LATE))
                                continue;
                        msgbuf[0] = '\0';
                        if (k->setup() < 0) {
                                snprintf(ready, n, "error %s: %s\n", k->name, msgbuf);
                                return -1;
                        }
                        used += (size_t)snprintf(ready + used, n - used, " %s", k->name);
                }
        snprintf(ready + used, n - used, "\n");
        return 0;
}

int main(int argc, char **argv) {
        char ready[4096];
        sigset_t mask;
        unsigned round = 0;

        if (argc == 2 && strcmp(argv[1], "--list") == 0) {
                for (size_t i = 0; i < N_CLASSES; i++)
                        printf("%s\t%s\n", classes[i].name, classes[i].what);
                return 0;
        }
        if (argc != 2 && !(argc == 4 && strcmp(argv[2], "--only") == 0)) {
                fprintf(stderr, "usage: nm-breadth DIR [--only CLASS[,CLASS...]] | nm-breadth --list\n");
                return 2;
        }
        dir = argv[1];
        if (argc == 4) {
                if (select_classes(argv[3]) < 0)
                        return 2;
        } else {
                for (size_t i = 0; i < N_CLASSES; i++)
                        classes[i].selected = true;
        }
        main_pid = getpid();
        /* Blocked for the whole life: the trigger, the end, and the signals
         * that the classes keep pending or wait for themselves. Threads and
         * children inherit the mask. */
        sigemptyset(&mask);
        int blocked[] = {SIGUSR1, SIGTERM, SIGUSR2, SIGALRM, RT_SIG, THREAD_SIG, PTIMER_SIG, SFD_SIG};
        for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++)
                sigaddset(&mask, blocked[i]);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if (setup_all(ready, sizeof(ready)) < 0) {
                fprintf(stderr, "nm-breadth: %s", ready);
                write_dir_file("ready", ready);
                return 1;
        }
        write_dir_file("ready", ready);
        sigemptyset(&mask);
        sigaddset(&mask, SIGUSR1);
        sigaddset(&mask, SIGTERM);
        for (;;) {
                int sig = sigwaitinfo(&mask, NULL);
                if (sig == SIGTERM)
                        return 0;
                if (sig == SIGUSR1)
                        run_checks(++round);
        }
}
