/* SPDX-License-Identifier: Apache-2.0 */
/* A journald stand-in for the fixture's nodes: the stdout stream socket a
 * detached nucleus container writes to.
 *
 *   nm-journald SOCKET LOGFILE
 *
 * Listens on SOCKET (a unix stream socket, as /run/systemd/journal/stdout),
 * reads each connection's header (identifier, unit id, priority, level
 * prefix and three forwarding flags, one per line), then appends every line
 * it receives to LOGFILE as "<identifier>: <line>". Prints "ready" once it
 * listens. Runs until killed. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_STREAMS 64
#define HEADER_LINES 7
#define BUF 8192

typedef struct stream {
        int fd;
        int header_left; /* header lines still to come */
        char ident[64];
        char buf[BUF];
        size_t have;
} stream;

static int logfd;

static void emit(stream *s, const char *line, size_t n) {
        char out[BUF + 80];
        int k = snprintf(out, sizeof(out), "%s: %.*s\n", s->ident, (int)n, line);
        if (k > 0 && write(logfd, out, (size_t)k) < 0)
                perror("nm-journald: write");
}

/* Handles the complete lines in s->buf. */
static void lines(stream *s) {
        char *nl;
        while ((nl = memchr(s->buf, '\n', s->have))) {
                size_t n = (size_t)(nl - s->buf);
                if (s->header_left > 0) {
                        if (s->header_left == HEADER_LINES)
                                snprintf(s->ident, sizeof(s->ident), "%.*s", (int)n, s->buf);
                        s->header_left--;
                } else
                        emit(s, s->buf, n);
                memmove(s->buf, nl + 1, s->have - n - 1);
                s->have -= n + 1;
        }
        if (s->have == sizeof(s->buf)) { /* an overlong line: flush it as is */
                emit(s, s->buf, s->have);
                s->have = 0;
        }
}

static int listen_on(const char *path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;
        if (strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "nm-journald: socket path too long\n");
                exit(2);
        }
        memcpy(sa.sun_path, path, strlen(path) + 1); /* its length was checked */
        (void)unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
                perror("nm-journald: listen");
                exit(1);
        }
        return fd;
}

int main(int argc, char **argv) {
        stream streams[MAX_STREAMS];
        size_t n = 0;
        int ls;

        if (argc != 3) {
                fprintf(stderr, "usage: nm-journald SOCKET LOGFILE\n");
                return 2;
        }
        logfd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0) {
                perror("nm-journald: log");
                return 1;
        }
        ls = listen_on(argv[1]);
        printf("ready\n");
        fflush(stdout);
        for (;;) {
                struct pollfd p[MAX_STREAMS + 1] = {{.fd = ls, .events = POLLIN}};
                for (size_t i = 0; i < n; i++)
                        p[i + 1] = (struct pollfd){.fd = streams[i].fd, .events = POLLIN};
                if (poll(p, n + 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("nm-journald: poll");
                        return 1;
                }
                for (size_t i = n; i > 0; i--) {
                        stream *s = &streams[i - 1];
                        if (!p[i].revents)
                                continue;
                        ssize_t k = read(s->fd, s->buf + s->have, sizeof(s->buf) - s->have);
                        if (k > 0) {
                                s->have += (size_t)k;
                                lines(s);
                                continue;
                        }
                        close(s->fd);
                        streams[i - 1] = streams[--n];
                }
                if (p[0].revents) {
                        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
                        if (fd < 0)
                                continue;
                        if (n == MAX_STREAMS) {
                                close(fd);
                                continue;
                        }
                        streams[n++] = (stream){.fd = fd, .header_left = HEADER_LINES, .ident = "?"};
                }
        }
}
