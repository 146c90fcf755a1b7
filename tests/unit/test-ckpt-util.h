/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Small helpers shared by the ckpt unit tests: temporary trees and files. */

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

#include "fs-util.h"
#include "macro.h"

static inline char *tu_tmpdir(void) {
        char *t = strdup("/tmp/nm-test-ckpt-XXXXXX");
        assert_non_null(t);
        assert_non_null(mkdtemp(t));
        return t;
}

/* tu_path(dir, "a/b") -> "dir/a/b" (static buffer per call site: copy it). */
static inline char *tu_join(const char *dir, const char *rel) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", dir, rel) > 0);
        return p;
}

static inline void tu_write(const char *dir, const char *rel, const void *data, size_t len, mode_t mode) {
        _cleanup_free_ char *p = tu_join(dir, rel);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        assert_true(fd >= 0);
        assert_int_equal(loop_write(fd, data, len), 0);
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

static inline void tu_write_str(const char *dir, const char *rel, const char *s) {
        tu_write(dir, rel, s, strlen(s), 0600);
}

static inline void tu_mkdir(const char *dir, const char *rel, mode_t mode) {
        _cleanup_free_ char *p = tu_join(dir, rel);
        assert_int_equal(mkdir(p, mode), 0);
        assert_int_equal(chmod(p, mode), 0);
}

static inline char *tu_read(const char *dir, const char *rel, size_t *ret_len) {
        _cleanup_free_ char *p = tu_join(dir, rel);
        char *data = NULL;
        assert_int_equal(read_file_at(AT_FDCWD, p, 1 << 24, &data, ret_len), 0);
        return data;
}

static inline int tu_open_dir(const char *dir) {
        int fd = open_dir_nofollow(dir);
        assert_true(fd >= 0);
        return fd;
}

static inline void tu_rm(char *dir) {
        if (dir)
                assert_int_equal(rm_rf_path(dir), 0);
        free(dir);
}

/* Message checks: the error must say something specific. */
#define assert_msg_contains(err, needle)                                                     \
        do {                                                                                 \
                if (!strstr((err)->msg, (needle)))                                           \
                        fail_msg("error message \"%s\" lacks \"%s\"", (err)->msg, (needle)); \
        } while (0)
