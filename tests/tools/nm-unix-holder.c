/* SPDX-License-Identifier: Apache-2.0 */
/* nm-unix-holder: a workload CRIU cannot dump as it is: it holds a unix
 * socket connected to a listener outside its container.
 *
 *   nm-unix-holder --listen PATH   listen on PATH, accept connections, keep them
 *   nm-unix-holder PATH            connect to PATH and wait forever
 *
 * Both print "ready" on stdout once set up. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int make_addr(const char *path, struct sockaddr_un *sa) {
        *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(sa->sun_path))
                return -ENAMETOOLONG;
        memcpy(sa->sun_path, path, strlen(path) + 1);
        return 0;
}

int main(int argc, char **argv) {
        struct sockaddr_un sa;
        bool listening = argc == 3 && strcmp(argv[1], "--listen") == 0;
        const char *path = listening ? argv[2] : argv[1];
        int fd;

        if ((argc != 2 && !listening) || make_addr(path, &sa) < 0) {
                fprintf(stderr, "usage: nm-unix-holder [--listen] PATH\n");
                return 2;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return 1;
        if (listening) {
                (void)unlink(path);
                if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
                        fprintf(stderr, "nm-unix-holder: cannot listen on %s: %s\n", path, strerror(errno));
                        return 1;
                }
                printf("ready\n");
                fflush(stdout);
                for (;;)
                        (void)accept4(fd, NULL, NULL, SOCK_CLOEXEC); /* kept open: never closed */
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "nm-unix-holder: cannot connect to %s: %s\n", path, strerror(errno));
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        for (;;)
                pause();
}
