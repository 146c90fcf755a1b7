/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "fs-util.h"
#include "log.h"
#include "mem.h"
#include "macro.h"
#include "sd.h"

static char *make_tmpdir(void) {
        char *t = strdup("/tmp/nm-test-common-XXXXXX");
        assert_non_null(mkdtemp(t));
        return t;
}

/* sd_notify's datagram reaches $NOTIFY_SOCKET, as is; nothing without it. */
static void test_sd_notify(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char buf[128];
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        unsetenv("NOTIFY_SOCKET");
        assert_int_equal(sd_notify_send("READY=1"), 0);
        setenv("NOTIFY_SOCKET", sa.sun_path, 1);
        assert_int_equal(sd_notify_send("READY=1\nSTATUS=up"), 0);
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        assert_int_equal(n, 17);
        buf[n] = '\0';
        assert_string_equal(buf, "READY=1\nSTATUS=up");
        unsetenv("NOTIFY_SOCKET");
        close(fd);
        unlink(sa.sun_path);
        rmdir(dir);
}

static void test_sd_watchdog(void **state) {
        char pid[32];
        (void)state;
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        assert_int_equal(sd_watchdog_usec(), 0);
        setenv("WATCHDOG_USEC", "30000000", 1);
        assert_int_equal(sd_watchdog_usec(), 30000000);
        snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
        setenv("WATCHDOG_PID", pid, 1); /* another process's */
        assert_int_equal(sd_watchdog_usec(), 0);
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        setenv("WATCHDOG_PID", pid, 1);
        assert_int_equal(sd_watchdog_usec(), 30000000);
        setenv("WATCHDOG_USEC", "soon", 1);
        assert_int_equal(sd_watchdog_usec(), 0);
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
}

/* The journal's native format: KEY=value lines; a value with a newline in
 * the binary form (KEY, newline, 64-bit little-endian length, value). */
static void test_sd_journal_format(void **state) {
        const char *kv[] = {"MESSAGE",           "two\nlines", "PRIORITY", "6",
                            "NUCLEUS_MIGRATION", "6b0912",     "SKIPPED",  NULL};
        static const char want[] =
                "MESSAGE\n\x09\0\0\0\0\0\0\0two\nlines\nPRIORITY=6\nNUCLEUS_MIGRATION=6b0912\n";
        char buf[256];
        (void)state;

        size_t n = sd_journal_format(buf, sizeof(buf), kv, ARRAY_SIZE(kv));
        assert_int_equal(n, sizeof(want) - 1);
        assert_memory_equal(buf, want, n);
        /* What does not fit is left out, never cut. */
        assert_int_equal(sd_journal_format(buf, 12, kv + 2, 2), 11);
        assert_int_equal(sd_journal_format(buf, 10, kv + 2, 2), 0);
}

static void test_error_keeps_first_cause(void **state) {
        (void)state;
        nm_error err = {};
        assert_int_equal(nm_error_set(&err, -EINVAL, "bad %s", "frame"), -EINVAL);
        nm_error_set(&err, -EIO, "later");
        assert_string_equal(err.msg, "bad frame");
        nm_error_prefix(&err, "peer %d", 2);
        assert_string_equal(err.msg, "peer 2: bad frame");
        assert_int_equal(err.code, -EINVAL);
        nm_error_clear(&err);
        nm_error_errno(&err, -ENOENT, "open x");
        assert_string_equal(err.msg, "open x: No such file or directory");
        /* A NULL error is allowed and only returns the code. */
        assert_int_equal(nm_error_set(NULL, -E2BIG, "x"), -E2BIG);
}

static void test_atomic_write_and_read(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        struct stat st;

        assert_true(dfd >= 0);
        assert_int_equal(write_file_atomic_at(dfd, "f.json", "hello", 5, 0600), 0);
        assert_int_equal(fstatat(dfd, "f.json", &st, 0), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(faccessat(dfd, "f.json.tmp", F_OK, 0), -1);
        assert_int_equal(read_file_at(dfd, "f.json", 100, &data, &len), 0);
        assert_int_equal(len, 5);
        assert_string_equal(data, "hello");
        assert_int_equal(read_file_at(dfd, "f.json", 3, &data, &len), -EFBIG);
        assert_int_equal(rm_rf_path(dir), 0);
}

/* A FIFO, a directory and a symlink are refused without blocking; a file
 * written in place keeps its inode and is cut to the new length. */
static void test_regular_files_only(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        _cleanup_free_ char *data = NULL;
        struct stat before, after;
        int fd;

        assert_true(dfd >= 0);
        assert_int_equal(mkfifoat(dfd, "fifo", 0600), 0);
        assert_int_equal(open_regular_at(dfd, "fifo", O_RDONLY, 0, NULL), -EBADFD);
        assert_int_equal(read_file_at(dfd, "fifo", 100, &data, NULL), -EBADFD);
        assert_int_equal(mkdirat(dfd, "d", 0700), 0);
        assert_int_equal(open_regular_at(dfd, "d", O_RDONLY, 0, NULL), -EBADFD);
        assert_int_equal(symlinkat("f", dfd, "link"), 0);
        assert_int_equal(open_regular_at(dfd, "link", O_RDWR | O_CREAT, 0600, NULL), -ELOOP);
        assert_int_equal(faccessat(dfd, "f", F_OK, AT_SYMLINK_NOFOLLOW), -1);

        fd = open_regular_at(dfd, "f", O_RDWR | O_CREAT, 0600, &before);
        assert_true(fd >= 0);
        assert_int_equal(before.st_size, 0);
        assert_int_equal(before.st_mode & 0777, 0600);
        close(fd);
        assert_int_equal(write_file_in_place_at(dfd, "missing", "x", 1), -ENOENT);
        /* A FIFO with no reader fails the non-blocking open itself. */
        assert_int_equal(write_file_in_place_at(dfd, "fifo", "x", 1), -ENXIO);
        assert_int_equal(write_file_in_place_at(dfd, "f", "a longer text", 13), 0);
        assert_int_equal(write_file_in_place_at(dfd, "f", "short", 5), 0);
        assert_int_equal(fstatat(dfd, "f", &after, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(after.st_ino, before.st_ino);
        assert_int_equal(read_file_at(dfd, "f", 100, &data, NULL), 0);
        assert_string_equal(data, "short");
        assert_int_equal(rm_rf_path(dir), 0);
}

/* Sizes on both sides of malloc()'s mmap threshold, whose blocks start 16
 * bytes into a page, and sizes that are no multiple of a line. */
static void test_io_buf_aligned(void **state) {
        static const size_t sizes[] = {1, 63, 64 * 1024, 256 * 1024, 256 * 1024 + 1, 4u << 20};
        (void)state;

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                _cleanup_free_ uint8_t *b = io_buf_alloc(sizes[i]);
                assert_non_null(b);
                assert_int_equal((uintptr_t)b % 64, 0);
                memset(b, 0xa5, sizes[i]);
        }
}

static void test_symlinks_refused(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        _cleanup_free_ char *data = NULL;
        char victim[256];

        assert_true(dfd >= 0);
        snprintf(victim, sizeof(victim), "%s/victim", dir);
        assert_int_equal(write_file_atomic_at(dfd, "victim", "v", 1, 0600), 0);
        assert_int_equal(symlinkat(victim, dfd, "link"), 0);
        assert_int_equal(read_file_at(dfd, "link", 100, &data, NULL), -ELOOP);
        /* A symlink planted where the temp file goes is removed, not followed. */
        assert_int_equal(symlinkat(victim, dfd, "g.tmp"), 0);
        assert_int_equal(write_file_atomic_at(dfd, "g", "new", 3, 0600), 0);
        assert_int_equal(read_file_at(dfd, "victim", 100, &data, NULL), 0);
        assert_string_equal(data, "v");
        /* Directories: a symlinked component is refused at every step. */
        assert_int_equal(mkdirat(dfd, "real", 0700), 0);
        assert_int_equal(symlinkat("real", dfd, "sub"), 0);
        assert_int_equal(mkdirat_secure(dfd, "sub", 0700), -ELOOP);
        assert_int_equal(openat_dir_beneath(dfd, "sub"), -ELOOP);
        assert_int_equal(openat_dir_beneath(dfd, "real/../real"), -EPERM);
        int fd = openat_dir_beneath(dfd, "real");
        assert_true(fd >= 0);
        close(fd);
        /* rm -rf removes the link, never what it points at. */
        assert_int_equal(rm_rf_at(dfd, "sub"), 0);
        assert_int_equal(faccessat(dfd, "real", F_OK, 0), 0);
        assert_int_equal(rm_rf_path(dir), 0);
        assert_int_equal(access(dir, F_OK), -1);
}

static void test_mkdir_p_secure(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        char path[512];
        struct stat st;

        snprintf(path, sizeof(path), "%s/a/b/c", dir);
        int fd = mkdir_p_secure(path, 0700);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
        close(fd);
        assert_int_equal(chmod(path, 0755), 0);
        fd = mkdir_p_secure(path, 0700);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        close(fd);
        assert_int_equal(rm_rf_path(dir), 0);
}

static void test_sealed_files_are_removed(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        int fd, r;

        assert_int_equal(mkdirat(dfd, "sub", 0700), 0);
        _cleanup_close_ int sub = openat_dir_beneath(dfd, "sub");
        assert_int_equal(write_file_atomic_at(sub, "f", "x", 1, 0600), 0);
        fd = openat(sub, "f", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        r = fs_set_immutable(fd, true);
        close(fd);
        if (r == -ENOTTY || r == -EOPNOTSUPP || (r == -EPERM && geteuid() != 0)) {
                /* Skipped, not passed: tests/run fails a skip as root. */
                print_message("%s\n", r == -EPERM ? "not root: cannot set the immutable flag"
                                                  : "this file system has no immutable flag");
                assert_int_equal(rm_rf_path(dir), 0);
                skip();
        }
        assert_int_equal(r, 0);
        /* Sealed: not even root may write to or remove it... */
        assert_int_equal(openat(sub, "f", O_WRONLY | O_APPEND | O_CLOEXEC), -1);
        assert_int_equal(errno, EPERM);
        assert_int_equal(unlinkat(sub, "f", 0), -1);
        /* ...but rm_rf_at unseals what it removes. */
        assert_int_equal(rm_rf_at(dfd, "sub"), 0);
        assert_int_equal(faccessat(dfd, "sub", F_OK, 0), -1);
        assert_int_equal(rm_rf_path(dir), 0);
}

static void expect_escaped(const char *in, const char *want) {
        char out[256];
        assert_int_equal(log_escape(in, out, sizeof(out)), strlen(want));
        assert_string_equal(out, want);
}

static void test_log_escape(void **state) {
        char small[7];
        (void)state;

        expect_escaped("plain text, tab\there", "plain text, tab\there");
        expect_escaped("name\n2026-01-01T00:00:00Z nucleus-agent[1] error: forged",
                       "name\\n2026-01-01T00:00:00Z nucleus-agent[1] error: forged");
        expect_escaped("a\r\x1b[2Kb\x7f", "a\\r\\x1b[2Kb\\x7f");
        expect_escaped("", "");
        /* Cut at a whole escape, never in the middle of one. */
        assert_int_equal(log_escape("abcde\nf", small, sizeof(small)), 8);
        assert_string_equal(small, "abcde");
        assert_int_equal(log_escape("abc\n", NULL, 0), 5);
}

/* What the log writes: one line per message, whatever the message holds. */
static void test_log_one_line(void **state) {
        char path[] = "/tmp/nm-test-log-XXXXXX", buf[512] = "";
        int fd = mkstemp(path), saved = dup(STDERR_FILENO);
        FILE *f;
        (void)state;

        assert_true(fd >= 0 && saved >= 0);
        fflush(stderr);
        assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
        log_set_timestamps(false);
        log_ctx_info("m1", "container %s from %s", "evil\nnucleus-agent[1] info: forged", "peer\r");
        fflush(stderr);
        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);
        f = fdopen(fd, "r");
        assert_non_null(f);
        rewind(f);
        assert_non_null(fgets(buf, sizeof(buf), f));
        assert_non_null(strstr(buf, "[m1]: container evil\\nnucleus-agent[1] info: forged from peer\\r\n"));
        assert_null(fgets(buf, sizeof(buf), f)); /* one line, no more */
        fclose(f);
        unlink(path);
}

/* Each line leaves in one write(): on a SOCK_SEQPACKET socket as stderr,
 * every write is a packet of its own. A short line, and one long enough
 * (escaped) to need memory of its own. */
static void test_log_line_one_write(void **state) {
        static char long_msg[6000], got[16384];
        int sv[2], saved = dup(STDERR_FILENO);
        ssize_t n;
        (void)state;

        memset(long_msg, 'a', sizeof(long_msg) - 1);
        long_msg[100] = '\n'; /* escaped as two bytes */
        assert_true(saved >= 0);
        /* Non-blocking: a line in pieces fills the socket and fails, not hangs. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
        fflush(stderr);
        assert_int_equal(dup2(sv[0], STDERR_FILENO), STDERR_FILENO);
        log_set_timestamps(false);
        log_ctx_info("m2", "short %d", 42);
        log_info("%s", long_msg);
        fflush(stderr);
        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);
        close(sv[0]);

        n = recv(sv[1], got, sizeof(got) - 1, MSG_DONTWAIT);
        assert_true(n > 0);
        got[n] = '\0';
        assert_non_null(strstr(got, "[m2]: short 42\n"));
        assert_int_equal(got[n - 1], '\n');
        n = recv(sv[1], got, sizeof(got) - 1, MSG_DONTWAIT);
        assert_true(n > (ssize_t)sizeof(long_msg));
        got[n] = '\0';
        assert_non_null(strstr(got, ": aaa"));
        assert_non_null(strstr(got, "a\\na"));
        assert_int_equal(got[n - 1], '\n');
        assert_int_equal(got[n - 2], 'a');
        assert_int_equal(recv(sv[1], got, sizeof(got), MSG_DONTWAIT), 0); /* the end, nothing more */
        close(sv[1]);
}

/* A sanitizer's allocator replaces glibc's: there the policy has nothing
 * to act on, and the case below is not built (the plain build runs it). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZER_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZER_HEAP 1
#endif
#endif

#ifndef SANITIZER_HEAP
/* A stream's frame-sized block comes from the heap, not a mapping of its
 * own, and once freed stays there for the next one. */
static void test_stream_buffers_stay_in_heap(void **state) {
        const size_t frame = 4u << 20;
        struct mallinfo2 before, used, freed;
        char *p;
        (void)state;

        /* glibc's first threshold, fixed: such a block is mapped alone. */
        assert_int_equal(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
        before = mallinfo2();
        p = malloc(frame);
        assert_non_null(p);
        assert_int_equal(mallinfo2().hblks, before.hblks + 1);
        free(p);

        mem_keep_stream_buffers();
        before = mallinfo2();
        p = malloc(frame);
        assert_non_null(p);
        memset(p, 1, frame);
        used = mallinfo2();
        assert_int_equal(used.hblks, before.hblks); /* not mapped on its own */
        free(p);
        freed = mallinfo2();
        assert_true(freed.fordblks >= frame); /* kept, not given back */
}
#endif

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_error_keeps_first_cause),
                cmocka_unit_test(test_log_escape),
                cmocka_unit_test(test_log_one_line),
                cmocka_unit_test(test_log_line_one_write),
                cmocka_unit_test(test_atomic_write_and_read),
                cmocka_unit_test(test_regular_files_only),
                cmocka_unit_test(test_io_buf_aligned),
#ifndef SANITIZER_HEAP
                cmocka_unit_test(test_stream_buffers_stay_in_heap),
#endif
                cmocka_unit_test(test_symlinks_refused),
                cmocka_unit_test(test_mkdir_p_secure),
                cmocka_unit_test(test_sealed_files_are_removed),
                cmocka_unit_test(test_sd_notify),
                cmocka_unit_test(test_sd_watchdog),
                cmocka_unit_test(test_sd_journal_format),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
