/* SPDX-License-Identifier: Apache-2.0 */
/* The test's end of systemd's two datagram sockets: binds a unix datagram
 * socket at PATH and appends every datagram it receives to OUT, followed by
 * a line "--" (a record of the journal's native protocol, or a notification
 * such as READY=1). Runs until killed.
 *
 *   nm-dgram-listen PATH OUT
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        static char buf[1 << 17];
        int fd, out;

        if (argc != 3 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "usage: nm-dgram-listen PATH OUT\n");
                return 2;
        }
        memcpy(sa.sun_path, argv[1], strlen(argv[1]));
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        out = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || out < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "nm-dgram-listen: %s: %s\n", argv[1], strerror(errno));
                return 1;
        }
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return 1;
                }
                if (n > 0 && buf[n - 1] != '\n')
                        buf[n++] = '\n';
                if (write(out, buf, (size_t)n) != n || write(out, "--\n", 3) != 3)
                        return 1;
        }
}
