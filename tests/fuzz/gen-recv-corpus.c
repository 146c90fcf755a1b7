/* SPDX-License-Identifier: Apache-2.0 */
/* Writes the seed corpus of fuzz-recv: image streams as a peer sends them
 * (wire frames), honest ones and each kind of refusal. By fuzz-recv's
 * conventions a FILE_END sha256 of zeros and an IMAGES_DONE hmac of '0's
 * stand for the right values, so that mutations keep streams verifiable.
 *
 *   recv-gen-corpus DIR    (then commit DIR: tests/fuzz/corpus-recv) */
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

static void save(int dfd, const char *name) {
        int r = write_file_atomic_at(dfd, name, buf.data, buf.len, 0644);
        if (r < 0) {
                fprintf(stderr, "recv-gen-corpus: cannot write %s: %s\n", name, strerror(-r));
                exit(EXIT_FAILURE);
        }
        proto_buf_done(&buf);
        buf = (proto_buf){};
        n_files = n_bytes = 0;
}

int main(int argc, char **argv) {
        _cleanup_close_ int dfd = -EBADF;
        static const char *const metadata = "{\"container_id\":\"abc\"}";

        if (argc != 2) {
                fprintf(stderr, "usage: %s DIR\n", argv[0]);
                return EXIT_FAILURE;
        }
        (void)mkdir(argv[1], 0755);
        dfd = open_dir_nofollow(argv[1]);
        if (dfd < 0)
                return EXIT_FAILURE;

        whole("images/core-1.img", 300, 'a');
        whole("metadata.json", strlen(metadata), 'm');
        done(ZERO_HMAC, 0);
        save(dfd, "valid-one-image");

        whole("images/core-1.img", 5000, 'a');
        whole("images/empty.img", 0, 0);
        whole("images/mm-1.img", 1, 'b');
        whole("images/pages-1.img", 9000, 'c');
        whole("metadata.json", 10, 'm');
        done(ZERO_HMAC, 0);
        save(dfd, "valid-many");

        whole("metadata.json", 1, 'm');
        done(ZERO_HMAC, 0);
        save(dfd, "valid-metadata-only");

        whole("images/b", 1, 'b');
        whole("images/a", 1, 'a');
        save(dfd, "bad-unsorted");

        whole("images/a", 1, 'a');
        whole("images/a", 1, 'a');
        save(dfd, "bad-twice");

        whole("metadata.json", 1, 'm');
        whole("metadata.json", 1, 'm');
        save(dfd, "bad-metadata-twice");

        file("images/a", 10, MIG);
        data(11, 'a');
        save(dfd, "bad-more-data");

        file("images/a", 10, MIG);
        data(9, 'a');
        end(0);
        save(dfd, "bad-less-data");

        file("images/a", 10, MIG);
        data(10, 'a');
        end(1);
        save(dfd, "bad-sha256");

        whole("images/a", 3, 'a');
        whole("metadata.json", 1, 'm');
        done("1111111111111111111111111111111111111111111111111111111111111111", 0);
        save(dfd, "bad-hmac");

        whole("images/a", 3, 'a');
        whole("metadata.json", 1, 'm');
        done(ZERO_HMAC, 1);
        save(dfd, "bad-counts");

        whole("images/a", 3, 'a');
        done(ZERO_HMAC, 0);
        save(dfd, "bad-no-metadata");

        file("images/a", 2, MIG);
        file("images/b", 2, MIG);
        save(dfd, "bad-file-in-file");

        data(1, 'x');
        save(dfd, "bad-data-outside");

        file("images/a", 1, "other");
        save(dfd, "bad-other-mig");

        file("images/a", 2u << 20, MIG);
        save(dfd, "bad-too-large");

        put(&(proto_msg){.type = PROTO_MSG_PING, .ping = {.seq = 1}});
        save(dfd, "bad-ping");

        whole("images/a", 1, 'a');
        file("metadata.json", 4, MIG);
        data(2, 'm');
        save(dfd, "unfinished");
        return EXIT_SUCCESS;
}
