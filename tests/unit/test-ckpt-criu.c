/* SPDX-License-Identifier: Apache-2.0 */
/* The CRIU side without root and without CRIU: which binary is trusted,
 * reading CRIU's logs and stats, and the asynchronous dump/restore paths
 * driven against a stand-in criu that fails (the real thing runs in the
 * integration tests). */
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "test-ckpt-util.h"
#include "test-time.h"

static const uint8_t key32[32] = "0123456789abcdef0123456789abcdef";

/* A stand-in criu: answers --version with the given version; anything else
 * (libcriu's `criu swrk N`) leaves a mark, notes whether probe exists then,
 * and fails. */
static char *fake_criu_probe(const char *dir, const char *name, const char *version, mode_t mode,
                             const char *probe) {
        char text[1024];
        _cleanup_free_ char *mark = tu_join(dir, "criu-ran");
        snprintf(text, sizeof(text),
                 "#!/bin/sh\n"
                 "if [ \"$1\" = --version ]; then echo 'Version: %s'; echo 'GitID: v%s'; exit 0; fi\n"
                 "echo \"$@\" >> '%s'\n"
                 "if [ -n '%s' ] && [ -e '%s' ]; then echo probe-present >> '%s'; fi\n"
                 "exit 1\n",
                 version, version, mark, probe ? probe : "", probe ? probe : "", mark);
        tu_write(dir, name, text, strlen(text), mode);
        return tu_join(dir, name);
}

static char *fake_criu(const char *dir, const char *name, const char *version, mode_t mode) {
        return fake_criu_probe(dir, name, version, mode, NULL);
}

static bool criu_ran(const char *dir) {
        _cleanup_free_ char *mark = tu_join(dir, "criu-ran");
        return access(mark, F_OK) == 0;
}

/* ---- resolution ------------------------------------------------------------ */

static void test_parse_version(void **state) {
        (void)state;
        _cleanup_free_ char *v = NULL, *v2 = NULL, *v3 = NULL;
        unsigned n = 0;
        assert_int_equal(ckpt__criu_parse_version("Version: 4.2.1\nGitID: x\n", &v, &n), 0);
        assert_string_equal(v, "4.2.1");
        assert_int_equal(n, 40201);
        assert_int_equal(ckpt__criu_parse_version("GitID: y\nVersion: 3.17\n", &v2, &n), 0);
        assert_string_equal(v2, "3.17");
        assert_int_equal(n, 31700);
        assert_int_equal(ckpt__criu_parse_version("Version:   4.10.2-rc1\n", &v3, &n), 0);
        assert_int_equal(n, 41002);
        assert_int_equal(ckpt__criu_parse_version("criu 4.2\n", &v, &n), -EBADMSG);
        assert_int_equal(ckpt__criu_parse_version("Version: four\n", &v, &n), -EBADMSG);
}

static void test_resolve_configured(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *good = fake_criu(dir, "good", "4.2.1", 0755);
        _cleanup_free_ char *old = fake_criu(dir, "old", "3.17", 0755);
        _cleanup_free_ char *gw = fake_criu(dir, "gw", "4.2.1", 0775);
        _cleanup_free_ char *ow = fake_criu(dir, "ow", "4.2.1", 0757);
        _cleanup_free_ char *noexec = fake_criu(dir, "noexec", "4.2.1", 0644);
        _cleanup_(ckpt_criu_freep) ckpt_criu *c = NULL;
        nm_error err = {};

        assert_int_equal(ckpt_criu_resolve(good, &c, &err), 0);
        assert_string_equal(c->path, good);
        assert_string_equal(c->version, "4.2.1");
        assert_int_equal(c->version_num, 40201);

        ckpt_criu *x = NULL;
        assert_int_equal(ckpt_criu_resolve(old, &x, &err), -EPROTONOSUPPORT);
        assert_msg_contains(&err, "3.17 is older than 4.2");
        nm_error_clear(&err);
        assert_int_equal(ckpt_criu_resolve(gw, &x, &err), -EPERM);
        assert_msg_contains(&err, "writable by group/others");
        nm_error_clear(&err);
        assert_int_equal(ckpt_criu_resolve(ow, &x, &err), -EPERM);
        assert_msg_contains(&err, "writable by group/others");
        nm_error_clear(&err);
        assert_int_equal(ckpt_criu_resolve(noexec, &x, &err), -EACCES);
        assert_msg_contains(&err, "not executable");
        assert_int_equal(ckpt_criu_resolve("relative/criu", &x, NULL), -EINVAL);
        assert_null(x);

        /* A binary in a directory others may write to could be swapped. */
        tu_mkdir(dir, "loose", 0777);
        _cleanup_free_ char *loose = tu_join(dir, "loose");
        _cleanup_free_ char *in_loose = fake_criu(loose, "criu", "4.2.1", 0755);
        nm_error_clear(&err);
        assert_int_equal(ckpt_criu_resolve(in_loose, &x, &err), -EPERM);
        assert_msg_contains(&err, "its directory");

        if (geteuid() != 0) {
                /* Skipped, not passed: tests/run fails a skip as root. */
                tu_rm(dir);
                print_message("not root: cannot make a binary owned by someone else\n");
                skip();
        }
        /* Owned by neither root nor the caller. */
        assert_int_equal(chown(good, 65534, 65534), 0);
        nm_error_clear(&err);
        assert_int_equal(ckpt_criu_resolve(good, &x, &err), -EPERM);
        assert_msg_contains(&err, "owned by uid 65534");
        tu_rm(dir);
}

/* The first good candidate wins: a broken 3.17 first in the list is passed
 * over for a 4.2 later, and the error names every refusal. */
static void test_resolve_candidates(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *old = fake_criu(dir, "old", "3.17", 0755);
        _cleanup_free_ char *gw = fake_criu(dir, "gw", "4.2.1", 0775);
        _cleanup_free_ char *good = fake_criu(dir, "good", "4.2.1", 0755);
        _cleanup_free_ char *newer = fake_criu(dir, "newer", "4.3", 0755);
        _cleanup_free_ char *missing = tu_join(dir, "missing");
        _cleanup_(ckpt_criu_freep) ckpt_criu *c = NULL;
        nm_error err = {};

        const char *const list1[] = {missing, old, gw, good, newer, NULL};
        assert_int_equal(ckpt__criu_resolve_from(list1, NULL, &c, &err), 0);
        assert_string_equal(c->path, good);

        const char *const list2[] = {missing, old, gw, NULL};
        ckpt_criu *x = NULL;
        /* As root $PATH is never searched; as a user it may be, so put
         * nothing useful there. */
        const char *saved = getenv("PATH");
        _cleanup_free_ char *path_copy = saved ? strdup(saved) : NULL;
        setenv("PATH", dir, 1);
        unlink(good);
        unlink(newer);
        assert_int_equal(ckpt__criu_resolve_from(list2, NULL, &x, &err), -ENOENT);
        assert_null(x);
        assert_msg_contains(&err, "no usable criu");
        assert_msg_contains(&err, "3.17 is older");
        assert_msg_contains(&err, "writable by group/others");
        if (path_copy)
                setenv("PATH", path_copy, 1);
        tu_rm(dir);
}

/* ---- CRIU's log and stats ---------------------------------------------------- */

static void test_log_excerpt(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_close_ int dfd = tu_open_dir(dir);
        char buf[512];

        tu_write_str(dir, "dump.log",
                     "(00.000010) Version: 4.2.1\n"
                     "(00.000020) Error (criu/util.c:1): rlimit: Can't setup RLIMIT_NOFILE for self: "
                     "Operation not "
                     "permitted\n"
                     "(00.100000) Error (criu/seize.c:10): first problem\n"
                     "(00.200000)      2: Error (criu/files.c:20): second problem\n"
                     "(00.300000) Dumping finished with errors\n");
        assert_int_equal(ckpt__log_excerpt(dfd, "dump.log", buf, sizeof(buf)), 0);
        assert_non_null(strstr(buf, "Error (criu/seize.c:10): first problem"));
        assert_non_null(strstr(buf, "2: Error (criu/files.c:20): second problem"));
        assert_null(strstr(buf, "RLIMIT"));
        assert_null(strstr(buf, "(00."));

        /* Only the harmless line: the last lines instead. */
        tu_write_str(dir, "restore.log",
                     "(00.000020) Error (criu/util.c:1): rlimit: Can't setup RLIMIT_NOFILE for self\n"
                     "(00.1) a\n(00.2) b\n(00.3) c\n(00.4) d\n(00.5) e\n");
        assert_int_equal(ckpt__log_excerpt(dfd, "restore.log", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "b | c | d | e");
        assert_int_equal(ckpt__log_excerpt(dfd, "missing.log", buf, sizeof(buf)), -ENOENT);
        tu_rm(dir);
}

static size_t put_varint(uint8_t *p, uint64_t v) {
        size_t n = 0;
        do {
                p[n] = (uint8_t)(v & 0x7f) | (v > 0x7f ? 0x80 : 0);
                v >>= 7;
                n++;
        } while (v);
        return n;
}

/* ---- CRIU images, written the way CRIU writes them ------------------------ */

#define IMG_COMMON 0x54564319u
#define MAGIC_INVENTORY 0x58313116u
#define MAGIC_PSTREE 0x50273030u
#define MAGIC_CORE 0x55053847u

typedef struct imgbuf {
        uint8_t b[1024];
        size_t n;
} imgbuf;

static void img_begin(imgbuf *im, uint32_t magic) {
        im->n = 0;
        if (magic != MAGIC_INVENTORY) { /* the inventory has no common magic */
                uint32_t c = IMG_COMMON;
                memcpy(im->b, &c, 4);
                im->n = 4;
        }
        memcpy(im->b + im->n, &magic, 4);
        im->n += 4;
}

static void img_entry(imgbuf *im, const uint8_t *msg, size_t n) {
        uint32_t size = (uint32_t)n;
        memcpy(im->b + im->n, &size, 4);
        memcpy(im->b + im->n + 4, msg, n);
        im->n += 4 + n;
}

static size_t pb_uint(uint8_t *p, unsigned field, uint64_t v) {
        size_t n = put_varint(p, field << 3);
        return n + put_varint(p + n, v);
}

static size_t pb_msg(uint8_t *p, unsigned field, const uint8_t *m, size_t len) {
        size_t n = put_varint(p, (field << 3) | 2);
        n += put_varint(p + n, len);
        memcpy(p + n, m, len);
        return n + len;
}

typedef struct fake_task {
        unsigned pid, state; /* CRIU's task states: 1 alive, 2 dead (zombie), 3 stopped */
} fake_task;

/* images/ below dir/rel: inventory.img, pstree.img and one core-<pid>.img
 * per task, as far as the fields we read go. */
static void write_images(const char *dir, const char *rel, const fake_task *t, size_t n, bool tcp_close) {
        char name[256];
        uint8_t m[128], tc[64];
        size_t k;
        imgbuf im;

        img_begin(&im, MAGIC_INVENTORY);
        k = pb_uint(m, 1, 2); /* img_version */
        if (tcp_close)
                k += pb_uint(m + k, 10, 1);
        img_entry(&im, m, k);
        snprintf(name, sizeof(name), "%s/inventory.img", rel);
        tu_write(dir, name, im.b, im.n, 0600);

        img_begin(&im, MAGIC_PSTREE);
        for (size_t i = 0; i < n; i++) {
                k = pb_uint(m, 1, t[i].pid);
                k += pb_uint(m + k, 2, i ? 1 : 0); /* ppid */
                k += pb_uint(m + k, 3, 1);
                k += pb_uint(m + k, 4, 1);
                k += pb_uint(m + k, 5, t[i].pid); /* threads */
                img_entry(&im, m, k);
        }
        snprintf(name, sizeof(name), "%s/pstree.img", rel);
        tu_write(dir, name, im.b, im.n, 0600);

        for (size_t i = 0; i < n; i++) {
                size_t tk = pb_uint(tc, 1, t[i].state);
                tk += pb_uint(tc + tk, 2, 0);
                img_begin(&im, MAGIC_CORE);
                k = pb_uint(m, 1, 1); /* mtype x86_64 */
                k += pb_msg(m + k, 3, tc, tk);
                img_entry(&im, m, k);
                snprintf(name, sizeof(name), "%s/core-%u.img", rel, t[i].pid);
                tu_write(dir, name, im.b, im.n, 0600);
        }
}

static void test_stopped_tasks_from_images(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *ck = tu_join(dir, "ckpt");
        const fake_task tasks[] = {{1, 1}, {2, 3}, {5, 2}, {7, 3}};
        ckpt_stopped_tasks s = {};
        nm_error err = {};
        imgbuf im;

        tu_mkdir(dir, "ckpt", 0700);
        tu_mkdir(dir, "ckpt/images", 0700);
        write_images(dir, "ckpt/images", tasks, ARRAY_SIZE(tasks), false);
        /* A thread's core image has no task core; it is not in pstree.img. */
        img_begin(&im, MAGIC_CORE);
        img_entry(&im, (const uint8_t[]){1 << 3, 1}, 2);
        tu_write(dir, "ckpt/images/core-3.img", im.b, im.n, 0600);

        assert_int_equal(ckpt_stopped_tasks_load(ck, &s, &err), 0);
        assert_int_equal(s.n, 2);
        assert_int_equal(s.ns_pids[0], 2);
        assert_int_equal(s.ns_pids[1], 7);
        assert_true(ckpt_stopped_tasks_has(&s, 7));
        assert_false(ckpt_stopped_tasks_has(&s, 1));
        assert_false(ckpt_stopped_tasks_has(&s, 5));
        ckpt_stopped_tasks_done(&s);
        assert_int_equal(s.n, 0);
        assert_null(s.ns_pids);

        /* A process without its core image, a task core without a state,
         * a wrong magic, a truncated entry: errors, never an empty set. */
        _cleanup_free_ char *core7 = tu_join(dir, "ckpt/images/core-7.img");
        assert_int_equal(unlink(core7), 0);
        assert_int_equal(ckpt_stopped_tasks_load(ck, &s, &err), -ENOENT);
        assert_msg_contains(&err, "core-7.img");
        img_begin(&im, MAGIC_CORE);
        img_entry(&im, (const uint8_t[]){1 << 3, 1, (3 << 3) | 2, 2, 2 << 3, 0}, 6);
        tu_write(dir, "ckpt/images/core-7.img", im.b, im.n, 0600);
        err = (nm_error){};
        assert_int_equal(ckpt_stopped_tasks_load(ck, &s, &err), -EBADMSG);
        img_begin(&im, MAGIC_CORE ^ 1);
        tu_write(dir, "ckpt/images/pstree.img", im.b, im.n, 0600);
        assert_int_equal(ckpt_stopped_tasks_load(ck, &s, &err), -EBADMSG);
        write_images(dir, "ckpt/images", tasks, ARRAY_SIZE(tasks), false);
        _cleanup_free_ char *pst = tu_join(dir, "ckpt/images/pstree.img");
        assert_int_equal(truncate(pst, 14), 0);
        assert_int_equal(ckpt_stopped_tasks_load(ck, &s, &err), -EBADMSG);
        assert_int_equal(s.n, 0);
        tu_rm(dir);
}

static void test_images_tcp_close(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        const fake_task tasks[] = {{1, 1}};
        bool closed = true;

        write_images(dir, ".", tasks, 1, false);
        _cleanup_close_ int dfd = tu_open_dir(dir);
        assert_int_equal(ckpt__images_tcp_close(dfd, &closed), 0);
        assert_false(closed);
        write_images(dir, ".", tasks, 1, true);
        assert_int_equal(ckpt__images_tcp_close(dfd, &closed), 0);
        assert_true(closed);
        tu_write_str(dir, "inventory.img", "xx");
        assert_int_equal(ckpt__images_tcp_close(dfd, &closed), -EBADMSG);
        tu_rm(dir);
}

static void test_tcp_modes(void **state) {
        (void)state;
        ckpt_container self = {.pid = getpid()};
        assert_string_equal(ckpt_tcp_mode_to_string(CKPT_TCP_MOVE), "move");
        assert_int_equal(ckpt_tcp_mode_from_string("close"), CKPT_TCP_CLOSE);
        assert_int_equal(ckpt_tcp_mode_from_string("refuse"), CKPT_TCP_REFUSE);
        assert_int_equal(ckpt_tcp_mode_from_string("auto"), _CKPT_TCP_MODE_INVALID);
        assert_int_equal(ckpt_tcp_mode_from_string(NULL), _CKPT_TCP_MODE_INVALID);
        assert_null(ckpt_tcp_mode_to_string(_CKPT_TCP_MODE_MAX));
        /* This process shares our network namespace: its connections end at
         * this node's addresses. */
        assert_int_equal(ckpt_tcp_mode_auto(&self), CKPT_TCP_CLOSE);
        assert_int_equal(ckpt_tcp_mode_auto(NULL), CKPT_TCP_CLOSE);
}

static void test_stats_parse(void **state) {
        (void)state;
        uint8_t inner[64], buf[128];
        size_t n = 0, m = 0;
        ckpt__stats st;

        /* dump_stats_entry: freezing 100, frozen 300000, memdump 5,
         * memwrite 6, pages_scanned 7, pages_written 9, and a fixed32 field
         * from a future CRIU. */
        const uint64_t fields[][2] = {{1, 100}, {2, 300000}, {3, 5}, {4, 6}, {5, 7}, {7, 9}};
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
                n += put_varint(inner + n, fields[i][0] << 3);
                n += put_varint(inner + n, fields[i][1]);
        }
        inner[n++] = (15 << 3) | 5;
        memset(inner + n, 0xee, 4);
        n += 4;
        uint32_t magic1 = 0x55105940, magic2 = 0x57093306, size;
        m = 12;
        buf[m++] = (1 << 3) | 2;
        m += put_varint(buf + m, n);
        memcpy(buf + m, inner, n);
        m += n;
        size = (uint32_t)(m - 12);
        memcpy(buf, &magic1, 4);
        memcpy(buf + 4, &magic2, 4);
        memcpy(buf + 8, &size, 4);
        assert_int_equal(ckpt__stats_parse(buf, m, &st), 0);
        assert_true(st.dump);
        assert_false(st.restore);
        assert_int_equal(st.freezing_us, 100);
        assert_int_equal(st.frozen_us, 300000);
        assert_int_equal(st.memdump_us, 5);
        assert_int_equal(st.memwrite_us, 6);
        assert_int_equal(st.pages_written, 9);

        /* Truncated, or another image type. */
        assert_int_equal(ckpt__stats_parse(buf, m - 3, &st), -EBADMSG);
        size = (uint32_t)(m - 12 - 3);
        memcpy(buf + 8, &size, 4);
        assert_int_equal(ckpt__stats_parse(buf, m, &st), -EBADMSG);
        magic2 ^= 1;
        memcpy(buf + 4, &magic2, 4);
        assert_int_equal(ckpt__stats_parse(buf, m, &st), -EBADMSG);

        /* restore_stats_entry: forking 11, restore 12. */
        magic2 ^= 1;
        m = 12;
        buf[m++] = (2 << 3) | 2;
        buf[m++] = 4;
        buf[m++] = 3 << 3;
        buf[m++] = 11;
        buf[m++] = 4 << 3;
        buf[m++] = 12;
        size = (uint32_t)(m - 12);
        memcpy(buf + 4, &magic2, 4);
        memcpy(buf + 8, &size, 4);
        assert_int_equal(ckpt__stats_parse(buf, m, &st), 0);
        assert_true(st.restore);
        assert_int_equal(st.forking_us, 11);
        assert_int_equal(st.restore_us, 12);
}

/* ---- the asynchronous paths ----------------------------------------------------- */

typedef struct run {
        int calls, status;
        int order;                           /* the n-th callback of the test */
        int pre_dump, post_dump, late_aside; /* events seen (on_event) */
} run;

static int callbacks;

static void on_restored(ckpt_restore_req *req, int status) {
        run *r = req->data;
        r->calls++;
        r->status = status;
        r->order = ++callbacks;
        assert_int_equal(req->state, CKPT_OP_DONE);
}

static void on_dumped(ckpt_dump_req *req, int status) {
        run *r = req->data;
        r->calls++;
        r->status = status;
        r->order = ++callbacks;
}

static void on_event(void *data, const char *event, uint64_t at_usec) {
        run *r = data;
        (void)at_usec;
        if (strcmp(event, "pre-dump") == 0)
                r->pre_dump++;
        else if (strcmp(event, "post-dump") == 0)
                r->post_dump++;
        else if (strcmp(event, CKPT_EVENT_ASIDE_LATE) == 0)
                r->late_aside++;
}

static void make_checkpoint(const char *dir) {
        tu_mkdir(dir, "ckpt", 0700);
        tu_write_str(dir, "ckpt/metadata.json",
                     "{\"container_id\":\"abc\",\"container_name\":\"n\",\"original_pid\":1,\"command\":[],"
                     "\"checkpoint_at\":0,\"version\":\"v\",\"using_gvisor\":false,\"rootless\":false,"
                     "\"cgroup_path\":null,\"resource_limits\":null}");
        tu_mkdir(dir, "ckpt/images", 0700);
        tu_write_str(dir, "ckpt/images/pages-1.img", "snapshot");
        write_images(dir, "ckpt/images", (const fake_task[]){{1, 1}, {4, 3}}, 2, false);
        _cleanup_free_ char *ck = tu_join(dir, "ckpt");
        _cleanup_close_ int dfd = tu_open_dir(ck);
        assert_int_equal(ckpt_sign_at(dfd, key32, sizeof(key32), NULL, NULL), 0);
}

static int run_restore(const char *dir, const ckpt_criu *criu, ckpt_restore_req *req, run *r) {
        _cleanup_free_ char *ck = tu_join(dir, "ckpt");
        uv_loop_t loop;
        ckpt_restore_opts opts = {.criu = {.criu = criu},
                                  .verify = true,
                                  .key = key32,
                                  .key_len = sizeof(key32),
                                  .leave_stopped = true};
        int ret;

        assert_int_equal(uv_loop_init(&loop), 0);
        *req = (ckpt_restore_req){.data = r};
        ret = ckpt_restore(&loop, req, ck, &opts, on_restored);
        run r2 = {};
        ckpt_restore_req second = {.data = &r2};
        if (ret == 0) {
                /* One at a time per process: a second waits for its turn,
                 * and may be called off before it starts. */
                assert_int_equal(req->state, CKPT_OP_RUNNING);
                assert_int_equal(ckpt_restore(&loop, &second, ck, &opts, on_restored), 0);
                assert_int_equal(second.state, CKPT_OP_QUEUED);
                assert_int_equal(ckpt_restore_cancel(req), -EBUSY);
                assert_int_equal(ckpt_restore_cancel(&second), 0);
                assert_int_equal(r2.calls, 0); /* from the loop, not from inside */
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        if (ret == 0) {
                assert_int_equal(r2.calls, 1);
                assert_int_equal(r2.status, -ECANCELED);
                assert_msg_contains(&second.error, "called off");
                assert_int_equal(ckpt_restore_cancel(&second), -EBUSY);
        }
        ckpt_restore_req_done(&second);
        return ret;
}

static void test_restore_refuses_tampered(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *bin = fake_criu(dir, "criu", "4.2.1", 0755);
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        ckpt_restore_req req;
        run r = {};

        assert_int_equal(ckpt_criu_resolve(bin, &criu, NULL), 0);
        make_checkpoint(dir);
        tu_write_str(dir, "ckpt/images/pages-1.img", "snapshou");
        assert_int_equal(run_restore(dir, criu, &req, &r), 0);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.status, -EBADMSG);
        assert_false(req.verified);
        assert_false(req.stopped);
        assert_int_equal(req.pid, 0);
        assert_msg_contains(&req.error, "HMAC mismatch");
        assert_msg_contains(&req.error, "nothing was restored");
        assert_false(criu_ran(dir));
        /* CRIU's work dir is beside the checkpoint, not in it. */
        _cleanup_free_ char *work = tu_join(dir, "ckpt.work");
        assert_int_equal(access(work, F_OK), 0);
        ckpt_restore_req_done(&req);
        tu_rm(dir);
}

/* CRIU work waits for its turn and runs in the order it came: no caller
 * queues it. */
static void test_restore_waits_its_turn(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *bin = fake_criu(dir, "criu", "4.2.1", 0755);
        _cleanup_free_ char *ck = tu_join(dir, "ckpt");
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        ckpt_restore_opts opts = {.verify = true, .key = key32, .key_len = sizeof(key32)};
        ckpt_restore_req req[3] = {};
        run r[3] = {};
        uv_loop_t loop;

        assert_int_equal(ckpt_criu_resolve(bin, &criu, NULL), 0);
        opts.criu.criu = criu;
        make_checkpoint(dir);
        tu_write_str(dir, "ckpt/images/pages-1.img", "snapshou"); /* each ends at its verification */
        assert_int_equal(uv_loop_init(&loop), 0);
        callbacks = 0;
        for (size_t i = 0; i < 3; i++) {
                req[i].data = &r[i];
                assert_int_equal(ckpt_restore(&loop, &req[i], ck, &opts, on_restored), 0);
                assert_int_equal(req[i].state, i == 0 ? CKPT_OP_RUNNING : CKPT_OP_QUEUED);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(r[i].calls, 1);
                assert_int_equal(r[i].status, -EBADMSG);
                assert_int_equal(r[i].order, (int)i + 1);
                ckpt_restore_req_done(&req[i]);
        }
        assert_false(criu_ran(dir));
        tu_rm(dir);
}

static void test_restore_criu_failure_keeps_images(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *bin = fake_criu(dir, "criu", "4.2.1", 0755);
        _cleanup_free_ char *ck = tu_join(dir, "ckpt");
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        ckpt_restore_req req;
        run r = {};

        assert_int_equal(ckpt_criu_resolve(bin, &criu, NULL), 0);
        make_checkpoint(dir);
        assert_int_equal(run_restore(dir, criu, &req, &r), 0);
        assert_int_equal(r.calls, 1);
        assert_true(r.status < 0);
        assert_true(req.verified);
        assert_false(req.stopped);
        assert_int_equal(req.pid, 0);
        assert_msg_contains(&req.error, "criu restore of");
        assert_msg_contains(&req.error, "images are untouched");
        assert_true(criu_ran(dir));
        /* libcriu ran our stand-in as `criu swrk FD`. */
        _cleanup_free_ char *args = tu_read(dir, "criu-ran", NULL);
        assert_non_null(strstr(args, "swrk"));
        _cleanup_close_ int dfd = tu_open_dir(ck);
        assert_int_equal(ckpt_verify_at(dfd, key32, sizeof(key32), NULL, NULL), 0);
        /* What the images say was read before CRIU ran. */
        assert_int_equal(req.stopped_tasks.n, 1);
        assert_int_equal(req.stopped_tasks.ns_pids[0], 4);
        assert_false(req.tcp_closed);
        /* leave-stopped went to CRIU as an RPC configuration file. */
        _cleanup_free_ char *conf = tu_read(dir, "ckpt.work/restore.conf", NULL);
        assert_string_equal(conf, "leave-stopped\n");
        ckpt_restore_req_done(&req);
        tu_rm(dir);
}

/* A CRIU that never answers, and a task it forked that holds CRIU's
 * socket (as a half-restored tree's init does): the restore still ends
 * once its time is up, and both are gone, though nobody reported the
 * task's pid. */
/* The sleeper a stand-in CRIU left (its pid in dir/held.pid) is gone:
 * reaped by the keeper (a reused pid would not be our sleeper). */
static void assert_sleeper_gone(const char *dir) {
        _cleanup_free_ char *pidtext = tu_read(dir, "held.pid", NULL);
        pid_t pid = (pid_t)strtol(pidtext, NULL, 10);
        char comm[64] = "", path[64];
        FILE *f;

        assert_true(pid > 0);
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        f = fopen(path, "r");
        if (f) {
                size_t n = fread(comm, 1, sizeof(comm) - 1, f);
                comm[n] = 0;
                fclose(f);
        }
        assert_true(strcmp(comm, "sleep") != 0);
}

/* Restores with a stand-in CRIU whose body (after --version) is tail; the
 * callback's status, and how long it took. */
static int restore_with(const char *dir, const char *tail, uint64_t timeout_ms, ckpt_restore_req *req,
                        uint64_t *ret_usec) {
        _cleanup_free_ char *bin = tu_join(dir, "criu");
        _cleanup_free_ char *held = tu_join(dir, "held.pid");
        _cleanup_free_ char *ck = tu_join(dir, "ckpt");
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        char text[1024];
        uv_loop_t loop;
        run r = {};
        uint64_t t0;

        snprintf(text, sizeof(text),
                 "#!/bin/sh\n"
                 "if [ \"$1\" = --version ]; then echo 'Version: 4.2.1'; exit 0; fi\n"
                 "sleep 600 &\n"
                 "echo $! > '%s'\n"
                 "%s\n",
                 held, tail);
        tu_write(dir, "criu", text, strlen(text), 0755);
        assert_int_equal(ckpt_criu_resolve(bin, &criu, NULL), 0);
        make_checkpoint(dir);
        ckpt_restore_opts opts = {.criu = {.criu = criu, .timeout_ms = timeout_ms},
                                  .verify = true,
                                  .key = key32,
                                  .key_len = sizeof(key32),
                                  .leave_stopped = true};
        assert_int_equal(uv_loop_init(&loop), 0);
        *req = (ckpt_restore_req){.data = &r};
        t0 = ckpt__now_usec();
        assert_int_equal(ckpt_restore(&loop, req, ck, &opts, on_restored), 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        *ret_usec = ckpt__now_usec() - t0;
        assert_int_equal(r.calls, 1);
        return r.status;
}

/* A CRIU that never answers, and a task it forked that holds CRIU's
 * socket (as a half-restored tree's init does): the restore still ends
 * once its time is up, and both are gone, though nobody reported the
 * task's pid. */
static void test_restore_hung_criu_is_bounded(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        ckpt_restore_req req;
        uint64_t took;

        /* Scaled: the stand-in must have written its sleeper's pid (after
         * the image set was verified) before its time is up. */
        uint64_t deadline_ms = t_ms(700);

        assert_int_equal(restore_with(dir, "exec sleep 600", deadline_ms, &req, &took), -ETIMEDOUT);
        /* Bounded: the deadline, not the 600 s CRIU would have taken (the
         * upper limit only guards against a hang on a busy machine). */
        assert_true(took >= deadline_ms * 1000);
        assert_true(took < 120 * 1000 * 1000ULL);
        assert_msg_contains(&req.error, "did not finish within");
        assert_int_equal(req.pid, 0);
        assert_sleeper_gone(dir);
        ckpt_restore_req_done(&req);
        tu_rm(dir);
}

/* CRIU dies without answering while a task it forked holds its socket:
 * libcriu would wait for ever. The keeper ends that task once the answer
 * had time to arrive, far before the operation's own deadline. */
static void test_restore_dead_criu_holder_swept(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        ckpt_restore_req req;
        uint64_t took;
        int status = restore_with(dir, "exit 1", 600 * 1000, &req, &took);

        assert_true(status < 0);
        assert_int_not_equal(status, -ETIMEDOUT);
        assert_true(took < 120 * 1000 * 1000ULL);
        assert_msg_contains(&req.error, "criu restore of");
        assert_int_equal(req.pid, 0);
        assert_sleeper_gone(dir);
        ckpt_restore_req_done(&req);
        tu_rm(dir);
}

/* A descriptor the agent left open for another operation's CRIU (a page
 * stream's socket, no close-on-exec) never reaches this one: inherited by
 * its keeper, it kept that stream open until this CRIU ended. */
static void test_keeper_closes_strays(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        char tail[512];
        ckpt_restore_req req;
        uint64_t took;
        int p[2];

        assert_int_equal(pipe(p), 0);
        assert_int_equal(dup2(p[1], 200), 200);
        close(p[1]);
        snprintf(tail, sizeof(tail), "for f in /proc/$$/fd/*; do echo \"${f##*/}\"; done > '%s/fds'; exit 1",
                 dir);
        assert_true(restore_with(dir, tail, 600 * 1000, &req, &took) < 0);
        _cleanup_free_ char *fds = tu_read(dir, "fds", NULL);
        assert_non_null(strstr(fds, "0\n")); /* the listing ran */
        for (char *line = fds; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
                assert_int_not_equal(strtol(line, NULL, 10), 200);
        close(200);
        close(p[0]);
        ckpt_restore_req_done(&req);
        tu_rm(dir);
}

static void test_restore_sync_refusals(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *bin = fake_criu(dir, "criu", "4.2.1", 0755);
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        ckpt_restore_req req;
        run r = {};

        assert_int_equal(ckpt_criu_resolve(bin, &criu, NULL), 0);
        make_checkpoint(dir);
        /* A work dir inside the signed tree. */
        _cleanup_free_ char *ck = tu_join(dir, "ckpt"), *inside = tu_join(dir, "ckpt/images/w");
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        ckpt_restore_opts opts = {.criu = {.criu = criu, .work_dir = inside}, .key = key32, .key_len = 32};
        req = (ckpt_restore_req){.data = &r};
        assert_int_equal(ckpt_restore(&loop, &req, ck, &opts, on_restored), -EINVAL);
        assert_msg_contains(&req.error, "outside the checkpoint directory");
        /* Bad metadata. */
        opts.criu.work_dir = NULL;
        tu_write_str(dir, "ckpt/metadata.json", "{\"container_id\": \"../etc\"}");
        assert_int_equal(ckpt_restore(&loop, &req, ck, &opts, on_restored), -EBADMSG);
        assert_msg_contains(&req.error, "metadata.json");
        /* No images. */
        _cleanup_free_ char *imgs = tu_join(dir, "ckpt/images");
        assert_int_equal(rm_rf_path(imgs), 0);
        assert_int_equal(ckpt_restore(&loop, &req, ck, &opts, on_restored), -ENOENT);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(r.calls, 0); /* synchronous errors: no callback */
        assert_false(criu_ran(dir));
        tu_rm(dir);
}

#define SLEEPERS_MAX 2
static pid_t sleepers[SLEEPERS_MAX];
static size_t n_sleepers;

static int kill_sleepers(void **state) {
        (void)state;
        for (size_t i = 0; i < n_sleepers; i++) {
                kill(sleepers[i], SIGKILL);
                waitpid(sleepers[i], NULL, 0);
        }
        n_sleepers = 0;
        return 0;
}

static pid_t spawn_sleeper(void) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* Dies with the test, whatever happens to the test. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                for (;;)
                        pause();
        }
        assert_true(n_sleepers < SLEEPERS_MAX);
        sleepers[n_sleepers++] = pid;
        return pid;
}

static void test_dump_paths(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *ck = tu_join(dir, "ckpt"), *full = tu_join(dir, "full");
        _cleanup_free_ char *md_path = tu_join(dir, "ckpt/metadata.json");
        _cleanup_free_ char *bin = fake_criu_probe(dir, "criu", "4.2.1", 0755, md_path);
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        pid_t pid = spawn_sleeper();
        ckpt_dump_req req;
        uv_loop_t loop;
        run r = {};

        assert_int_equal(ckpt_criu_resolve(bin, &criu, NULL), 0);
        assert_int_equal(ckpt_container_from_pid(pid, &c, NULL), 0);
        assert_int_equal(uv_loop_init(&loop), 0);
        ckpt_dump_opts opts = {.criu = {.criu = criu}, .sign = true, .key = key32, .key_len = 32};

        /* Refused before CRIU: a non-empty directory (left as it was), a
         * stale container. */
        tu_mkdir(dir, "full", 0700);
        tu_write_str(dir, "full/old.img", "x");
        req = (ckpt_dump_req){.data = &r};
        assert_int_equal(ckpt_dump(&loop, &req, c, full, &opts, on_dumped), -EEXIST);
        assert_msg_contains(&req.error, "not empty");
        _cleanup_free_ char *old = tu_read(dir, "full/old.img", NULL);
        assert_string_equal(old, "x");
        c->start_ticks++;
        assert_int_equal(ckpt_dump(&loop, &req, c, ck, &opts, on_dumped), -ESRCH);
        c->start_ticks--;
        assert_int_equal(access(ck, F_OK), -1);
        assert_false(criu_ran(dir));

        /* Through the thread pool to a CRIU that fails: the container is
         * left running, metadata.json existed when CRIU ran, and what the
         * attempt wrote is gone again so that the directory can be reused. */
        assert_int_equal(ckpt_dump(&loop, &req, c, ck, &opts, on_dumped), 0);
        assert_int_equal(req.state, CKPT_OP_RUNNING);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(r.calls, 1);
        assert_true(r.status < 0);
        assert_false(req.dumped);
        assert_true(req.source_running);
        assert_true(criu_ran(dir));
        assert_msg_contains(&req.error, "criu dump of pid");
        _cleanup_free_ char *mark = tu_read(dir, "criu-ran", NULL);
        assert_non_null(strstr(mark, "probe-present"));
        assert_string_equal(req.metadata->container_id, c->id);
        assert_true(req.metadata->bare);
        assert_int_equal(access(ck, F_OK), -1);
        _cleanup_free_ char *work = tu_join(dir, "ckpt.work");
        assert_int_equal(access(work, F_OK), 0);
        ckpt_dump_req_done(&req);
        tu_rm(dir);
}

/* A dump stepped aside (held back by the bandwidth share) runs on out of
 * the restores' way: a restore starts at once, while a dump queued before
 * it waits on for the one aside. Only a running dump steps aside. */
static void test_dump_steps_aside(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *bin = fake_criu(dir, "criu", "4.2.1", 0755);
        _cleanup_free_ char *ck = tu_join(dir, "ckpt");
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        pid_t pid = spawn_sleeper();
        ckpt_dump_req dump[2] = {};
        ckpt_restore_req restore[2] = {};
        run rd[2] = {}, rr[2] = {};
        uv_loop_t loop;

        assert_int_equal(ckpt_criu_resolve(bin, &criu, NULL), 0);
        assert_int_equal(ckpt_container_from_pid(pid, &c, NULL), 0);
        make_checkpoint(dir);
        tu_write_str(dir, "ckpt/images/pages-1.img", "snapshou"); /* each restore ends at its verification */
        assert_int_equal(uv_loop_init(&loop), 0);
        callbacks = 0;
        ckpt_dump_opts dopts = {.criu = {.criu = criu}, .sign = true, .key = key32, .key_len = 32};
        ckpt_restore_opts ropts = {.criu = {.criu = criu}, .verify = true, .key = key32, .key_len = 32};
        assert_int_equal(ckpt_dump_step_aside(&dump[0]), -ESRCH); /* not started */
        for (size_t i = 0; i < 2; i++) {
                char name[16];
                snprintf(name, sizeof(name), "dump%zu", i);
                _cleanup_free_ char *out = tu_join(dir, name);
                dump[i].data = &rd[i];
                assert_int_equal(ckpt_dump(&loop, &dump[i], c, out, &dopts, on_dumped), 0);
        }
        assert_int_equal(ckpt_dump_step_aside(&dump[1]), -ESRCH); /* queued: it has no turn */
        assert_int_equal(ckpt_dump_step_aside(&dump[0]), 0);
        assert_int_equal(dump[0].state, CKPT_OP_ASIDE);
        assert_int_equal(dump[1].state, CKPT_OP_QUEUED);     /* dumps wait for the one aside */
        assert_int_equal(ckpt_dump_step_aside(&dump[0]), 0); /* already aside */
        for (size_t i = 0; i < 2; i++) {
                restore[i].data = &rr[i];
                assert_int_equal(ckpt_restore(&loop, &restore[i], ck, &ropts, on_restored), 0);
        }
        assert_int_equal(restore[0].state, CKPT_OP_RUNNING); /* past the dump queued before it */
        assert_int_equal(restore[1].state, CKPT_OP_QUEUED);
        assert_int_equal(dump[1].state, CKPT_OP_QUEUED);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(rd[i].calls, 1);
                assert_true(rd[i].status < 0); /* the stand-in CRIU fails every dump */
                assert_int_equal(dump[i].state, CKPT_OP_DONE);
                assert_int_equal(ckpt_dump_step_aside(&dump[i]), -ESRCH);
                ckpt_dump_req_done(&dump[i]);
                assert_int_equal(rr[i].calls, 1);
                assert_int_equal(rr[i].status, -EBADMSG);
                ckpt_restore_req_done(&restore[i]);
        }
        assert_true(rd[0].order < rd[1].order); /* the queued dump began after the one aside ended */
        assert_true(rr[0].order < rr[1].order);
        tu_rm(dir);
}

/* ---- the turn, with a stand-in CRIU that speaks libcriu's RPC -------------- */

/* Its dumps send "pre-dump" (a lazy one "post-dump" too) and then stand
 * still while DIR/hold-PID exists (tests/tools/nm-fake-criu). */
static void hold_dump(const char *dir, pid_t pid, bool hold) {
        char name[32];
        snprintf(name, sizeof(name), "hold-%d", (int)pid);
        _cleanup_free_ char *path = tu_join(dir, name);
        if (hold)
                tu_write_str(dir, name, "");
        else
                assert_int_equal(unlink(path), 0);
}

static void tick(uv_timer_t *t) {
        (void)t; /* wakes the loop: run_until looks at the clock */
}

/* Runs the loop until *flag is set; the bound only guards against a hang. */
static void run_until(uv_loop_t *loop, const int *flag) {
        uint64_t deadline = uv_now(loop) + t_ms(60 * 1000);
        while (!*flag && uv_now(loop) < deadline)
                uv_run(loop, UV_RUN_ONCE);
        assert_true(*flag);
}

static void test_aside_handed_over(void **state) {
        (void)state;
        const char *fake = getenv("NM_FAKE_CRIU");
        char *dir = tu_tmpdir();
        _cleanup_free_ char *ck = tu_join(dir, "ckpt"), *lazy_out = tu_join(dir, "lazy"),
                            *paced_out = tu_join(dir, "paced");
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        _cleanup_(ckpt_container_freep) ckpt_container *ca = NULL, *cb = NULL;
        pid_t pa = spawn_sleeper(), pb = spawn_sleeper();
        ckpt_dump_req lazy = {}, paced = {};
        ckpt_restore_req restore = {};
        run rl = {}, rp = {}, rr = {};
        uv_timer_t timer;
        uv_loop_t loop;
        int ps[2];

        assert_non_null(fake); /* tests/unit/meson.build names it */
        assert_int_equal(setenv("NM_FAKE_CRIU_DIR", dir, 1), 0);
        assert_int_equal(ckpt_criu_resolve(fake, &criu, NULL), 0);
        assert_int_equal(ckpt_container_from_pid(pa, &ca, NULL), 0);
        assert_int_equal(ckpt_container_from_pid(pb, &cb, NULL), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ps), 0);
        make_checkpoint(dir);
        tu_write_str(dir, "ckpt/images/pages-1.img", "snapshou"); /* the restore ends at its verification */
        hold_dump(dir, pa, true);
        hold_dump(dir, pb, true);
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(uv_timer_init(&loop, &timer), 0);
        assert_int_equal(uv_timer_start(&timer, tick, 50, 50), 0);
        callbacks = 0;
        ckpt_dump_opts lopts = {
                .criu = {.criu = criu}, .key = key32, .key_len = 32, .lazy = true, .lazy_ps_fd = ps[0]};
        ckpt_dump_opts popts = {.criu = {.criu = criu}, .sign = true, .key = key32, .key_len = 32};
        ckpt_restore_opts ropts = {.criu = {.criu = criu}, .verify = true, .key = key32, .key_len = 32};
        lazy.data = &rl;
        lazy.event_cb = on_event;
        paced.data = &rp;
        paced.event_cb = on_event;
        restore.data = &rr;
        assert_int_equal(ckpt_dump(&loop, &lazy, ca, lazy_out, &lopts, on_dumped), 0);
        assert_int_equal(ckpt_dump(&loop, &paced, cb, paced_out, &popts, on_dumped), 0);
        assert_int_equal(paced.state, CKPT_OP_QUEUED);

        /* The lazy dump serves its pages: it goes aside, the next one runs. */
        run_until(&loop, &rl.post_dump);
        assert_int_equal(lazy.state, CKPT_OP_ASIDE);
        assert_int_equal(paced.state, CKPT_OP_RUNNING);
        run_until(&loop, &rp.pre_dump);
        /* One aside at a time: the second keeps its turn, and a restore waits. */
        assert_int_equal(ckpt_dump_step_aside(&paced), -EBUSY);
        assert_int_equal(ckpt_dump_step_aside(&paced), -EALREADY); /* asked again: promised already */
        assert_int_equal(paced.state, CKPT_OP_RUNNING);
        assert_int_equal(ckpt_restore(&loop, &restore, ck, &ropts, on_restored), 0);
        assert_int_equal(restore.state, CKPT_OP_QUEUED);

        /* The lazy dump ends: the aside goes to the one that asked, which
         * hears so, and the restore runs beside it. */
        hold_dump(dir, pa, false);
        run_until(&loop, &rl.calls);
        assert_int_equal(rp.late_aside, 1);
        assert_int_equal(paced.state, CKPT_OP_ASIDE);
        assert_int_not_equal(restore.state, CKPT_OP_QUEUED);
        run_until(&loop, &rr.calls);
        assert_int_equal(rp.calls, 0);
        assert_int_equal(rr.status, -EBADMSG);

        hold_dump(dir, pb, false);
        run_until(&loop, &rp.calls);
        uv_close((uv_handle_t *)&timer, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(rl.calls, 1);
        assert_int_equal(rp.calls, 1);
        assert_int_equal(rr.calls, 1);
        assert_true(rl.status < 0 && rp.status < 0); /* the stand-in dumps nothing */
        assert_int_equal(rl.late_aside + rr.late_aside, 0);
        assert_int_equal(rp.late_aside, 1);
        assert_true(rl.order < rr.order && rr.order < rp.order);
        ckpt_dump_req_done(&lazy);
        ckpt_dump_req_done(&paced);
        ckpt_restore_req_done(&restore);
        close(ps[0]);
        close(ps[1]);
        assert_int_equal(unsetenv("NM_FAKE_CRIU_DIR"), 0);
        tu_rm(dir);
}

int main(void) {
        /* libcriu writes to criu swrk's socket; the library blocks SIGPIPE
         * for that itself. Keep the default here to prove it. */
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_version),
                cmocka_unit_test(test_resolve_configured),
                cmocka_unit_test(test_resolve_candidates),
                cmocka_unit_test(test_log_excerpt),
                cmocka_unit_test(test_stats_parse),
                cmocka_unit_test(test_stopped_tasks_from_images),
                cmocka_unit_test(test_images_tcp_close),
                cmocka_unit_test(test_tcp_modes),
                cmocka_unit_test(test_restore_refuses_tampered),
                cmocka_unit_test(test_restore_waits_its_turn),
                cmocka_unit_test(test_restore_criu_failure_keeps_images),
                cmocka_unit_test(test_restore_hung_criu_is_bounded),
                cmocka_unit_test(test_restore_dead_criu_holder_swept),
                cmocka_unit_test(test_keeper_closes_strays),
                cmocka_unit_test(test_restore_sync_refusals),
                cmocka_unit_test_teardown(test_dump_paths, kill_sleepers),
                cmocka_unit_test_teardown(test_dump_steps_aside, kill_sleepers),
                cmocka_unit_test_teardown(test_aside_handed_over, kill_sleepers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
