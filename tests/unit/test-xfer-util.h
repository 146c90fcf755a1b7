/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Helpers shared by the transfer/ unit tests (cmocka). */

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "ckpt-format.h"
#include "fs-util.h"
#include "macro.h"
#include "transfer.h"

#define TEST_KEY "0123456789abcdef0123456789abcdef-test-key"

static inline char *t_mkdtemp(void) {
        char *t = strdup("/tmp/nm-test-xfer-XXXXXX");
        assert_non_null(t);
        assert_non_null(mkdtemp(t));
        return t;
}

/* Deterministic bytes, different per seed. */
static inline void t_fill(uint8_t *buf, size_t n, uint32_t seed) {
        uint32_t x = seed * 2654435761u + 1;
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf[i] = (uint8_t)x;
        }
}

static inline void t_write_file(int dirfd, const char *name, const void *data, size_t n) {
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(loop_write(fd, data, n), 0);
        close(fd);
}

static inline void t_sha256(const void *data, size_t n, uint8_t out[32]) {
        unsigned len = 0;
        assert_int_equal(EVP_Digest(data, n, out, &len, EVP_sha256(), NULL), 1);
}

static inline int t_count_entries(const char *path) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", path);
        FILE *p = popen(cmd, "r");
        int n = -1;
        assert_non_null(p);
        assert_int_equal(fscanf(p, "%d", &n), 1);
        pclose(p);
        return n;
}

static inline bool t_exists_at(int dirfd, const char *name) {
        struct stat st;
        return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}
