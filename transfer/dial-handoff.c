/* SPDX-License-Identifier: Apache-2.0 */
/* dial-stdio's hand-over: the SSH session's stdin and stdout go to the
 * agent itself, attached to a RELAY_FDS frame (SCM_RIGHTS), so that the
 * peer's bytes are not copied through this process (the relay cost a
 * read, a write and two wake-ups per 256 KiB, on every byte a peer sends).
 * Blocking, as it waits only on the local agent: it runs before, and
 * instead of, the relay's loop. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"
#include "transfer-internal.h"

static bool pipe_or_socket(int fd) {
        struct stat st;
        return fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

static int connect_agent(const char *path, nm_error *err) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return nm_error_set(err, -ENAMETOOLONG, "dial-stdio: the socket path %s is too long", path);
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return nm_error_errno(err, negative_errno(), "dial-stdio: socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = negative_errno();
                close(fd);
                return nm_error_set(
                        err, r == -ENOENT || r == -ECONNREFUSED ? -ECONNREFUSED : r,
                        "dial-stdio: cannot connect to the agent at %s: %s (is nucleus-agent running?)",
                        path, strerror(-r));
        }
        return fd;
}

/* The frame and, attached to its first byte, in_fd and out_fd. */
static int send_with_fds(int sock, const uint8_t *buf, size_t len, int in_fd, int out_fd) {
        union {
                struct cmsghdr h;
                char space[CMSG_SPACE(2 * sizeof(int))];
        } ctl = {};
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = ctl.space,
                            .msg_controllen = sizeof(ctl.space)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        const int fds[2] = {in_fd, out_fd};
        ssize_t n;

        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(fds));
        memcpy(CMSG_DATA(cm), fds, sizeof(fds));
        do
                n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        /* A fresh local socket takes a frame this small whole. */
        return (size_t)n == len ? 0 : -EIO;
}

/* The agent's answer: 1 when it took the pipes (RELAY_FDS), 0 when it did
 * not (ERROR, as an agent older than RELAY_FDS answers; any other frame;
 * EOF), with why in err. */
static int read_answer(int sock, nm_error *err) {
        _cleanup_(proto_reader_freep) proto_reader *rd = NULL;
        _cleanup_(proto_msg_donep) proto_msg m = {};
        const uint8_t *payload;
        size_t n;
        int r;

        if (proto_reader_new(0, &rd) < 0)
                return nm_error_set(err, 0, "out of memory");
        while ((r = proto_reader_next(rd, &payload, &n, err)) == 0) {
                uint8_t *p;
                ssize_t k;

                if (proto_reader_get_buffer(rd, &p, &n, err) < 0)
                        return 0;
                do
                        k = read(sock, p, n);
                while (k < 0 && errno == EINTR);
                if (k <= 0)
                        return nm_error_set(err, 0, "the agent closed the connection without an answer");
                if (proto_reader_advance(rd, (size_t)k, err) < 0)
                        return 0;
        }
        if (r < 0 || proto_decode(payload, n, &m, err) < 0)
                return 0;
        if (m.type == PROTO_MSG_RELAY_FDS)
                return 1;
        if (m.type == PROTO_MSG_ERROR)
                return nm_error_set(err, 0, "the agent answered: %s", m.error.reason);
        return nm_error_set(err, 0, "the agent answered %s", strna(proto_msg_type_to_string(m.type)));
}

/* The agent holds the session now: our copies go (sshd must see EOF on
 * stdout when the agent closes its own), and nothing of ours may ever
 * write to the peer again. /dev/null takes the numbers, so no file opened
 * later becomes stdout. */
static void let_go(int in_fd, int out_fd) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);

        if (null < 0) {
                close(in_fd);
                close(out_fd);
                return;
        }
        (void)dup2(null, in_fd);
        (void)dup2(null, out_fd);
        close(null);
}

int xfer_dial_handoff(const char *socket_path, int in_fd, int out_fd, const proto_msg *first,
                      nm_error *err) {
        _cleanup_free_ uint8_t *frame = NULL;
        _cleanup_close_ int sock = -EBADF;
        nm_error why = {};
        char buf[256];
        size_t len;
        ssize_t k;
        int r;

        if (!socket_path || !first || first->type != PROTO_MSG_RELAY_FDS)
                return -EINVAL;
        if (!pipe_or_socket(in_fd) || !pipe_or_socket(out_fd))
                return nm_error_set(err, 0, "stdin or stdout is neither a pipe nor a socket");
        r = proto_encode(first, &frame, &len, err);
        if (r < 0)
                return r;
        sock = connect_agent(socket_path, err);
        if (sock < 0)
                return sock;
        r = send_with_fds(sock, frame, len, in_fd, out_fd);
        if (r < 0)
                return nm_error_set(err, 0, "cannot hand the session over: %s", strerror(-r));
        if (read_answer(sock, &why) <= 0)
                return nm_error_set(err, 0, "%s", why.msg);
        let_go(in_fd, out_fd);
        /* The agent says nothing more: EOF when the session has ended. */
        do
                k = read(sock, buf, sizeof(buf));
        while (k > 0 || (k < 0 && errno == EINTR));
        if (k < 0)
                return nm_error_errno(err, negative_errno(), "dial-stdio: the agent's connection broke");
        return 1;
}
