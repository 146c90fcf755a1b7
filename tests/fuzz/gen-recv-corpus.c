/* SPDX-License-Identifier: Apache-2.0 */
/* Writes the seed corpus of fuzz-recv: image streams as a peer sends them
 * (wire frames), honest ones and each kind of refusal. By fuzz-recv's
 * conventions a FILE_END sha256 of zeros and an IMAGES_DONE hmac of '0's
 * stand for the right values, so that mutations keep streams verifiable.
 * Or checks that the committed corpus is what the current code writes:
 *
 *   recv-gen-corpus write DIR    (then commit DIR: tests/fuzz/corpus-recv)
 *   recv-gen-corpus check DIR
 *
 * "check" runs as a unit test. It fails when a seed differs from what the
 * code encodes now (if the change was deliberate: "write", then commit),
 * or when DIR holds a file the generator does not write, unless its name
 * starts with "regress-" (an input the fuzzer found, kept by hand). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"
#include "proto.h"

#define MIG "fz"
#define ZERO_HMAC "0000000000000000000000000000000000000000000000000000000000000000"

static proto_buf buf;
static uint64_t n_files, n_bytes;

typedef struct seed {
        const char *name;
        proto_buf data;
} seed;

static seed seeds[32];
static size_t n_seeds;

static void put(const proto_msg *m) {
        nm_error err = {};
        if (proto_encode_append(&buf, m, &err) < 0) {
                fprintf(stderr, "recv-gen-corpus: %s\n", err.msg);
                exit(EXIT_FAILURE);
        }
}

static void file(const char *path, size_t size, const char *mig) {
        put(&(proto_msg){.type = PROTO_MSG_FILE,
                         .file = {.mig = mig, .path = path, .size = size, .mode = 0600}});
}

static void data(size_t n, uint8_t fill) {
        uint8_t b[4096];
        memset(b, fill, sizeof(b));
        while (n > 0) {
                size_t k = n < sizeof(b) ? n : sizeof(b);
                put(&(proto_msg){.type = PROTO_MSG_DATA, .data = {.mig = MIG, .data = {b, k}}});
                n -= k;
                n_bytes += k;
        }
}

static void end(uint8_t first) {
        proto_msg m = {.type = PROTO_MSG_FILE_END, .file_end = {.mig = MIG}};
        m.file_end.sha256[0] = first; /* 0: "the right digest" */
        put(&m);
        n_files++;
}

static void whole(const char *path, size_t size, uint8_t fill) {
        file(path, size, MIG);
        data(size, fill);
        end(0);
}

static void done(const char *hmac, int files_delta) {
        put(&(proto_msg){.type = PROTO_MSG_IMAGES_DONE,
                         .images_done = {.mig = MIG,
                                         .hmac = hmac,
                                         .files = n_files + (uint64_t)(int64_t)files_delta,
                                         .bytes = n_bytes}});
}

/* The stream built so far is the seed NAME. */
static void save(const char *name) {
        if (n_seeds >= ARRAY_SIZE(seeds))
                abort();
        seeds[n_seeds++] = (seed){.name = name, .data = buf};
        buf = (proto_buf){};
        n_files = n_bytes = 0;
}

static int write_all(int dfd, const char *dir) {
        for (size_t i = 0; i < n_seeds; i++) {
                int r = write_file_atomic_at(dfd, seeds[i].name, seeds[i].data.data, seeds[i].data.len,
                                             0644);
                if (r < 0) {
                        fprintf(stderr, "recv-gen-corpus: cannot write %s/%s: %s\n", dir, seeds[i].name,
                                strerror(-r));
                        return EXIT_FAILURE;
                }
        }
        printf("wrote %zu seeds to %s\n", n_seeds, dir);
        return EXIT_SUCCESS;
}

static bool generated(const char *name) {
        for (size_t i = 0; i < n_seeds; i++)
                if (strcmp(seeds[i].name, name) == 0)
                        return true;
        return false;
}

static int check_all(int dfd, const char *dir) {
        DIR *d;
        struct dirent *de;
        int failed = 0;

        for (size_t i = 0; i < n_seeds; i++) {
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                int r = read_file_at(dfd, seeds[i].name, 16u << 20, &data, &len);
                if (r < 0 || len != seeds[i].data.len || memcmp(data, seeds[i].data.data, len) != 0) {
                        fprintf(stderr, "%s/%s: %s\n", dir, seeds[i].name,
                                r < 0 ? strerror(-r) : "differs from what the code writes now");
                        failed++;
                }
        }
        d = fdopendir(dup(dfd));
        if (!d) {
                fprintf(stderr, "cannot read %s: %s\n", dir, strerror(errno));
                return EXIT_FAILURE;
        }
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || generated(de->d_name) || strncmp(de->d_name, "regress-", 8) == 0)
                        continue;
                fprintf(stderr,
                        "%s/%s: not a seed recv-gen-corpus writes (a fuzzer's find is named regress-*)\n",
                        dir, de->d_name);
                failed++;
        }
        closedir(d);
        if (failed) {
                fprintf(stderr,
                        "%d seeds are stale or unknown. If the stream format changed on purpose, run "
                        "'recv-gen-corpus write tests/fuzz/corpus-recv' and commit.\n",
                        failed);
                return EXIT_FAILURE;
        }
        printf("%zu seeds match\n", n_seeds);
        return EXIT_SUCCESS;
}

int main(int argc, char **argv) {
        _cleanup_close_ int dfd = -EBADF;
        static const char *const metadata = "{\"container_id\":\"abc\"}";
        bool write;

        if (argc != 3 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "check") != 0)) {
                fprintf(stderr, "usage: %s write|check DIR\n", argv[0]);
                return EXIT_FAILURE;
        }
        write = strcmp(argv[1], "write") == 0;
        if (write)
                (void)mkdir(argv[2], 0755);
        dfd = open_dir_nofollow(argv[2]);
        if (dfd < 0) {
                fprintf(stderr, "cannot open %s: %s\n", argv[2], strerror(-dfd));
                return EXIT_FAILURE;
        }

        whole("images/core-1.img", 300, 'a');
        whole("metadata.json", strlen(metadata), 'm');
        done(ZERO_HMAC, 0);
        save("valid-one-image");

        whole("images/core-1.img", 5000, 'a');
        whole("images/empty.img", 0, 0);
        whole("images/mm-1.img", 1, 'b');
        whole("images/pages-1.img", 9000, 'c');
        whole("metadata.json", 10, 'm');
        done(ZERO_HMAC, 0);
        save("valid-many");

        whole("metadata.json", 1, 'm');
        done(ZERO_HMAC, 0);
        save("valid-metadata-only");

        whole("images/b", 1, 'b');
        whole("images/a", 1, 'a');
        save("bad-unsorted");

        whole("images/a", 1, 'a');
        whole("images/a", 1, 'a');
        save("bad-twice");

        whole("metadata.json", 1, 'm');
        whole("metadata.json", 1, 'm');
        save("bad-metadata-twice");

        file("images/a", 10, MIG);
        data(11, 'a');
        save("bad-more-data");

        file("images/a", 10, MIG);
        data(9, 'a');
        end(0);
        save("bad-less-data");

        file("images/a", 10, MIG);
        data(10, 'a');
        end(1);
        save("bad-sha256");

        whole("images/a", 3, 'a');
        whole("metadata.json", 1, 'm');
        done("1111111111111111111111111111111111111111111111111111111111111111", 0);
        save("bad-hmac");

        whole("images/a", 3, 'a');
        whole("metadata.json", 1, 'm');
        done(ZERO_HMAC, 1);
        save("bad-counts");

        whole("images/a", 3, 'a');
        done(ZERO_HMAC, 0);
        save("bad-no-metadata");

        file("images/a", 2, MIG);
        file("images/b", 2, MIG);
        save("bad-file-in-file");

        data(1, 'x');
        save("bad-data-outside");

        file("images/a", 1, "other");
        save("bad-other-mig");

        file("images/a", 2u << 20, MIG);
        save("bad-too-large");

        put(&(proto_msg){.type = PROTO_MSG_PING, .ping = {.seq = 1}});
        save("bad-ping");

        whole("images/a", 1, 'a');
        file("metadata.json", 4, MIG);
        data(2, 'm');
        save("unfinished");
        return write ? write_all(dfd, argv[2]) : check_all(dfd, argv[2]);
}
