/* SPDX-License-Identifier: Apache-2.0 */
/* nm-pipe-hog: takes its user's share of pipe buffers, so that no other
 * pipe of that user can grow (fs.pipe-user-pages-soft), as on a node whose
 * migration user holds many sessions at once.
 *
 *   nm-pipe-hog [SIZE]   grow pipes of SIZE bytes (default 1 MiB) until the
 *                        kernel refuses one, say "full N" and wait forever
 *
 * Run it as an unprivileged user: root (CAP_SYS_RESOURCE) has no limit, and
 * it fails after many pipes without being refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HOG_MAX_PIPES 400

int main(int argc, char **argv) {
        long size = argc > 1 ? strtol(argv[1], NULL, 10) : 1024 * 1024;
        int fds[2];

        if (size <= 0) {
                fprintf(stderr, "nm-pipe-hog: bad size '%s'\n", argv[1]);
                return 2;
        }
        for (int n = 0; n < HOG_MAX_PIPES; n++) {
                if (pipe(fds) < 0) {
                        fprintf(stderr, "nm-pipe-hog: pipe: %s\n", strerror(errno));
                        return 1;
                }
                if (fcntl(fds[0], F_SETPIPE_SZ, (int)size) < 0) {
                        if (errno != EPERM) {
                                fprintf(stderr, "nm-pipe-hog: F_SETPIPE_SZ: %s\n", strerror(errno));
                                return 1;
                        }
                        printf("full %d\n", n);
                        fflush(stdout);
                        for (;;)
                                pause();
                }
        }
        fprintf(stderr, "nm-pipe-hog: %d pipes grew and none was refused (root?)\n", HOG_MAX_PIPES);
        return 1;
}
