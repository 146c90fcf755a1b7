/* SPDX-License-Identifier: Apache-2.0 */
/* Runs a fuzz target once over every file of a corpus, without libFuzzer,
 * so that every build (gcc, ASan) replays the seeds and any crash input
 * added to the corpus:
 *
 *   fuzz-proto-replay DIR... */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_dir(const char *path, size_t *count) {
        _cleanup_close_ int dfd = open_dir_nofollow(path);
        DIR *d;
        struct dirent *de;

        if (dfd < 0) {
                fprintf(stderr, "cannot open %s: %s\n", path, strerror(-dfd));
                return -1;
        }
        d = fdopendir(fcntl(dfd, F_DUPFD_CLOEXEC, 3));
        if (!d) {
                fprintf(stderr, "cannot list %s: %m\n", path);
                return -1;
        }
        while ((de = readdir(d))) {
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                int r;

                if (de->d_name[0] == '.')
                        continue;
                r = read_file_at(dfd, de->d_name, 64u << 20, &data, &len);
                if (r < 0) {
                        fprintf(stderr, "cannot read %s/%s: %s\n", path, de->d_name, strerror(-r));
                        closedir(d);
                        return -1;
                }
                /* A crash aborts here, with the file name printed first. */
                fprintf(stderr, "%s/%s\n", path, de->d_name);
                LLVMFuzzerTestOneInput((const uint8_t *)data, len);
                (*count)++;
        }
        closedir(d);
        return 0;
}

int main(int argc, char **argv) {
        size_t count = 0;

        if (argc < 2) {
                fprintf(stderr, "usage: %s DIR...\n", argv[0]);
                return EXIT_FAILURE;
        }
        for (int i = 1; i < argc; i++)
                if (replay_dir(argv[i], &count) < 0)
                        return EXIT_FAILURE;
        printf("replayed %zu inputs\n", count);
        return count > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
