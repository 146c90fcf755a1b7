/* SPDX-License-Identifier: Apache-2.0 */
/* Sender and receiver on one loop, connected through a socketpair (xfer_conn
 * over uv streams): a checkpoint directory moves byte for byte, memory stays
 * bounded, failures end both sides, and the loop closes cleanly. */
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include "pace.h"
#include "test-time.h"
#include "test-xfer-util.h"

#define MIG "m-42"

typedef struct pair {
        uv_loop_t loop;
        char *tmp;
        int tmp_fd, src_fd;
        xfer_conn *a, *b; /* a: sender side, b: receiver side */
        xfer_send *x;
        xfer_recv *r;
        uv_check_t check;
        size_t max_seen_queued;
        size_t max_queued;

        int send_calls, send_status, recv_calls, recv_status;
        int a_closed, a_status, b_closed, b_status;
        bool got_verified;
        xfer_send_result send_res;
        xfer_recv_result recv_res;
        nm_error send_err, recv_err, a_err;
        unsigned progress_calls;
} pair;

static void check_cb(uv_check_t *h) {
        pair *p = h->data;
        if (p->a) {
                size_t q = xfer_conn_queued(p->a);
                if (q > p->max_seen_queued)
                        p->max_seen_queued = q;
        }
}

/* ---- the receiving side ---- */

static void recv_done(xfer_recv *r, int status, const nm_error *err, const xfer_recv_result *res, void *ud) {
        pair *p = ud;
        nm_error e = {};
        (void)r;
        p->recv_calls++;
        p->recv_status = status;
        if (err)
                p->recv_err = *err;
        if (res)
                p->recv_res = *res;
        if (status == 0) {
                assert_int_equal(
                        xfer_conn_send(p->b,
                                       &(proto_msg){.type = PROTO_MSG_VERIFIED, .verified = {.mig = MIG}},
                                       &e),
                        0);
                xfer_conn_close(p->b, 0, NULL);
        } else
                xfer_conn_close(p->b, status, err);
}

static void b_message(xfer_conn *c, const proto_msg *m, void *ud) {
        pair *p = ud;
        nm_error e = {};
        if (xfer_recv_feed(p->r, m, &e) < 0) {
                /* Tell the sender, then hang up. */
                (void)xfer_conn_send(c,
                                     &(proto_msg){.type = PROTO_MSG_ERROR,
                                                  .error = {.mig = MIG, .code = e.code, .reason = e.msg}},
                                     NULL);
                xfer_conn_close(c, 0, NULL);
        }
}

static void b_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        pair *p = ud;
        (void)c;
        (void)err;
        p->b_closed++;
        p->b_status = status;
        p->b = NULL;
        /* A receiver whose connection went away before the end aborts. */
        xfer_recv_abort(p->r, -ECONNRESET, NULL);
}

/* ---- the sending side ---- */

static void send_done(xfer_send *x, int status, const nm_error *err, const xfer_send_result *res, void *ud) {
        pair *p = ud;
        (void)x;
        p->send_calls++;
        p->send_status = status;
        if (err)
                p->send_err = *err;
        if (res)
                p->send_res = *res;
        if (status < 0 && p->a)
                xfer_conn_close(p->a, status, err);
}

static void a_message(xfer_conn *c, const proto_msg *m, void *ud) {
        pair *p = ud;
        if (m->type == PROTO_MSG_VERIFIED) {
                p->got_verified = true;
                xfer_conn_close(c, 0, NULL);
        } else if (m->type == PROTO_MSG_ERROR) {
                nm_error e = {};
                nm_error_set(&e, m->error.code, "peer: %s", m->error.reason);
                xfer_conn_close(c, m->error.code, &e);
        }
}

static void a_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        pair *p = ud;
        (void)c;
        p->a_closed++;
        p->a_status = status;
        if (err)
                p->a_err = *err;
        p->a = NULL;
        xfer_send_abort(p->x, status < 0 ? status : -EPIPE, err);
}

static void progress_cb(const xfer_progress *pr, void *ud) {
        pair *p = ud;
        assert_true(pr->bytes <= pr->total_bytes);
        p->progress_calls++;
}

static void pair_init(pair *p) {
        xfer_conn_callbacks acb = {.message = a_message, .closed = a_closed};
        xfer_conn_callbacks bcb = {.message = b_message, .closed = b_closed};
        int sv[2];

        memset(p, 0, sizeof(*p));
        assert_int_equal(uv_loop_init(&p->loop), 0);
        p->tmp = t_mkdtemp();
        p->tmp_fd = open_dir_nofollow(p->tmp);
        assert_true(p->tmp_fd >= 0);
        p->src_fd = mkdirat_secure(p->tmp_fd, "src", 0700);
        assert_true(p->src_fd >= 0);
        assert_int_equal(mkdirat(p->src_fd, "images", 0700), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(xfer_conn_new_fd(&p->loop, sv[0], &acb, p, NULL, &p->a), 0);
        assert_int_equal(xfer_conn_new_fd(&p->loop, sv[1], &bcb, p, NULL, &p->b), 0);
        assert_int_equal(uv_check_init(&p->loop, &p->check), 0);
        p->check.data = p;
        assert_int_equal(uv_check_start(&p->check, check_cb), 0);
        uv_unref((uv_handle_t *)&p->check); /* a probe, not a reason to keep running */
}

static uint64_t rate_limit; /* for the next pair_start() */
static bool zstd;           /* for the next pair_start() */

static int pair_start(pair *p, const char *bad_digest, nm_error *err) {
        xfer_recv_options ro = {
                .key = TEST_KEY, .key_len = strlen(TEST_KEY), .mig = MIG, .idle_timeout_ms = t_ms(10000)};
        xfer_send_options so = {
                .key = TEST_KEY,
                .key_len = strlen(TEST_KEY),
                .mig = MIG,
                .progress = progress_cb,
                .progress_interval_ms = 1,
                .test_bad_digest = bad_digest,
                .rate_limit = rate_limit,
                .zstd = zstd,
        };
        int r;

        zstd = false;

        assert_int_equal(xfer_recv_new(&p->loop, p->tmp_fd, "staging", &ro, recv_done, p, NULL, &p->r), 0);
        r = xfer_send_dir(p->a, p->src_fd, &so, send_done, p, err, &p->x);
        if (r >= 0)
                p->max_queued = 4 * XFER_CHUNK_SIZE;
        return r;
}

static void pair_run_and_close(pair *p) {
        (void)uv_run(&p->loop, UV_RUN_DEFAULT);
        p->x = xfer_send_free(p->x);
        p->r = xfer_recv_free(p->r);
        if (p->a)
                xfer_conn_close(p->a, -ECANCELED, NULL);
        if (p->b)
                xfer_conn_close(p->b, -ECANCELED, NULL);
        uv_close((uv_handle_t *)&p->check, NULL);
        (void)uv_run(&p->loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&p->loop), 0);
}

static void pair_done(pair *p) {
        close(p->src_fd);
        close(p->tmp_fd);
        assert_int_equal(rm_rf_path(p->tmp), 0);
        free(p->tmp);
}

static void assert_same_file(int a_dir, int b_dir, const char *path) {
        char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        assert_int_equal(read_file_at(a_dir, path, 64 << 20, &a, &na), 0);
        assert_int_equal(read_file_at(b_dir, path, 64 << 20, &b, &nb), 0);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na);
        free(a);
        free(b);
}

static void test_stream_directory(void **state) {
        static const struct {
                const char *name;
                size_t size;
        } files[] = {
                {"core-1.img", 0},
                {"files.img", 100},
                {"inventory.img", 1},
                {"mm-1.img", 4097},
                {"pages-1.img", 5 * 1024 * 1024 + 123},
                {"pages-2.img", XFER_CHUNK_SIZE},
                {"pstree.img", 0},
        };
        pair p;
        uint8_t *buf = malloc(6 * 1024 * 1024);
        int sfd;
        char *hmac = NULL;
        size_t len = 0;
        uint64_t total = 0;
        (void)state;

        assert_non_null(buf);
        pair_init(&p);
        for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
                char path[64];
                t_fill(buf, files[i].size, (uint32_t)i + 1);
                snprintf(path, sizeof(path), "images/%s", files[i].name);
                t_write_file(p.src_fd, path, buf, files[i].size);
                total += files[i].size;
        }
        t_write_file(p.src_fd, "metadata.json", "{\"container_id\":\"abc\"}", 22);
        total += 22;
        /* checkpoint.hmac in the source is not sent. */
        t_write_file(p.src_fd, "checkpoint.hmac", "00\n", 3);
        free(buf);

        assert_int_equal(pair_start(&p, NULL, NULL), 0);
        pair_run_and_close(&p);

        assert_int_equal(p.send_calls, 1);
        assert_int_equal(p.send_status, 0);
        assert_int_equal(p.recv_calls, 1);
        assert_int_equal(p.recv_status, 0);
        assert_true(p.got_verified);
        assert_int_equal(p.a_closed, 1);
        assert_int_equal(p.b_closed, 1);
        assert_int_equal(p.a_status, 0);
        assert_int_equal(p.b_status, 0);
        assert_int_equal(p.send_res.files, ARRAY_SIZE(files) + 1);
        assert_int_equal(p.send_res.bytes, total);
        assert_int_equal(p.recv_res.bytes, total);
        assert_string_equal(p.send_res.hmac, p.recv_res.hmac);
        /* The digest that streamed is the one ckpt signs the directory with. */
        {
                char signed_hex[CKPT_HMAC_HEX_LEN + 1];
                assert_int_equal(ckpt_hmac_tree(p.src_fd, TEST_KEY, strlen(TEST_KEY), signed_hex, NULL), 0);
                assert_string_equal(p.send_res.hmac, signed_hex);
        }
        assert_true(p.progress_calls > 0);
        /* Memory bounded: never much more than max_queued waiting. */
        assert_true(p.max_seen_queued <= p.max_queued + XFER_CHUNK_SIZE + 4096);

        sfd = openat_dir_beneath(p.tmp_fd, "staging");
        assert_true(sfd >= 0);
        for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
                char path[64];
                snprintf(path, sizeof(path), "images/%s", files[i].name);
                assert_same_file(p.src_fd, sfd, path);
        }
        assert_same_file(p.src_fd, sfd, "metadata.json");
        assert_int_equal(read_file_at(sfd, "checkpoint.hmac", 200, &hmac, &len), 0);
        assert_int_equal(len, 64);
        assert_memory_equal(hmac, p.send_res.hmac, 64);
        free(hmac);
        close(sfd);
        pair_done(&p);
}

static void test_bad_digest_refused(void **state) {
        pair p;
        (void)state;

        pair_init(&p);
        t_write_file(p.src_fd, "images/a.img", "hello", 5);
        t_write_file(p.src_fd, "images/b.img", "world", 5);
        t_write_file(p.src_fd, "metadata.json", "{}", 2);
        assert_int_equal(pair_start(&p, "images/b.img", NULL), 0);
        pair_run_and_close(&p);

        assert_int_equal(p.recv_calls, 1);
        assert_int_equal(p.recv_status, -EBADMSG);
        assert_non_null(strstr(p.recv_err.msg, "images/b.img"));
        assert_false(t_exists_at(p.tmp_fd, "staging"));
        /* The sender learnt why. */
        assert_int_equal(p.a_closed, 1);
        assert_int_equal(p.a_status, -EBADMSG);
        assert_non_null(strstr(p.a_err.msg, "SHA-256"));
        assert_false(p.got_verified);
        pair_done(&p);
}

/* zstd's backoff on the image stream: a long run of random chunks goes
 * mostly untried, and the next file, text, is tried at its first chunk
 * and compressed whole. Every byte arrives as it was. */
static void test_zstd_backoff(void **state) {
        enum { RANDOM_CHUNKS = 24, TEXT_CHUNKS = 8 };
        size_t rn = RANDOM_CHUNKS * XFER_CHUNK_SIZE, tn = TEXT_CHUNKS * XFER_CHUNK_SIZE;
        uint8_t *rnd = malloc(rn), *text = malloc(tn);
        pair p;
        int sfd;
        (void)state;

        assert_non_null(rnd);
        assert_non_null(text);
        t_fill(rnd, rn, 21);
        for (size_t i = 0; i < tn; i++)
                text[i] = (uint8_t) "the quick brown fox jumps over the lazy dog\n"[i % 44];
        pair_init(&p);
        t_write_file(p.src_fd, "images/pages-1.img", rnd, rn);
        t_write_file(p.src_fd, "images/pages-2.img", text, tn);
        t_write_file(p.src_fd, "metadata.json", "{}", 2);
        zstd = true;
        assert_int_equal(pair_start(&p, NULL, NULL), 0);
        pair_run_and_close(&p);
        assert_true(p.got_verified);
        assert_int_equal(p.send_res.bytes, rn + tn + 2);
        /* 1, 2, 4, 8... chunks left after each try that did not pay; the
         * reads in flight (decided before the results) take a few. */
        assert_true(p.send_res.zstd_untried >= RANDOM_CHUNKS / 2);
        assert_true(p.send_res.zstd_untried < RANDOM_CHUNKS);
        /* The random chunks go whole, the text ones compressed: the text
         * file costs less than a chunk on the wire. */
        assert_true(p.send_res.wire_bytes < rn + XFER_CHUNK_SIZE);
        sfd = openat_dir_beneath(p.tmp_fd, "staging");
        assert_true(sfd >= 0);
        assert_same_file(p.src_fd, sfd, "images/pages-1.img");
        assert_same_file(p.src_fd, sfd, "images/pages-2.img");
        close(sfd);
        pair_done(&p);
        free(rnd);
        free(text);
}

static void test_sender_refuses_bad_trees(void **state) {
        static const char *const cases[] = {"symlink", "subdir", "fifo", "extra", "no-metadata", "dotfile"};
        (void)state;

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                pair p;
                nm_error err = {};
                pair_init(&p);
                t_write_file(p.src_fd, "images/a.img", "x", 1);
                if (strcmp(cases[i], "no-metadata") != 0)
                        t_write_file(p.src_fd, "metadata.json", "{}", 2);
                if (strcmp(cases[i], "symlink") == 0)
                        assert_int_equal(symlinkat("/etc/passwd", p.src_fd, "images/b.img"), 0);
                else if (strcmp(cases[i], "subdir") == 0)
                        assert_int_equal(mkdirat(p.src_fd, "images/sub", 0700), 0);
                else if (strcmp(cases[i], "fifo") == 0)
                        assert_int_equal(mkfifoat(p.src_fd, "images/fifo", 0600), 0);
                else if (strcmp(cases[i], "extra") == 0)
                        t_write_file(p.src_fd, "stats-restore", "x", 1);
                else if (strcmp(cases[i], "dotfile") == 0)
                        t_write_file(p.src_fd, "images/.hidden", "x", 1);
                assert_true(pair_start(&p, NULL, &err) < 0);
                assert_true(err.msg[0] != '\0');
                /* The receiver never got a byte; the owner aborts it. */
                xfer_recv_abort(p.r, -ECANCELED, NULL);
                pair_run_and_close(&p);
                assert_int_equal(p.send_calls, 0);
                assert_false(t_exists_at(p.tmp_fd, "staging"));
                pair_done(&p);
        }
}

static void test_receiver_hangs_up(void **state) {
        pair p;
        uint8_t *buf = malloc(4 * 1024 * 1024);
        (void)state;

        assert_non_null(buf);
        pair_init(&p);
        t_fill(buf, 4 * 1024 * 1024, 3);
        t_write_file(p.src_fd, "images/pages-1.img", buf, 4 * 1024 * 1024);
        t_write_file(p.src_fd, "metadata.json", "{}", 2);
        free(buf);
        assert_int_equal(pair_start(&p, NULL, NULL), 0);
        /* The receiving side dies right away: the sender ends with an error,
         * not a hang, and staging goes. */
        xfer_conn_close(p.b, -ECONNRESET, NULL);
        pair_run_and_close(&p);
        assert_int_equal(p.send_calls, 1);
        assert_true(p.send_status < 0);
        assert_int_equal(p.a_closed, 1);
        assert_int_equal(p.b_closed, 1);
        assert_int_equal(p.recv_calls, 1);
        assert_int_equal(p.recv_status, -ECONNRESET);
        assert_false(t_exists_at(p.tmp_fd, "staging"));
        pair_done(&p);
}

static void test_rate_limit(void **state) {
        pair p;
        uint8_t *buf = malloc(2 * 1024 * 1024);
        uint64_t t0, ms;
        (void)state;

        assert_non_null(buf);
        pair_init(&p);
        t_fill(buf, 2 * 1024 * 1024, 9);
        t_write_file(p.src_fd, "images/pages-1.img", buf, 2 * 1024 * 1024);
        t_write_file(p.src_fd, "metadata.json", "{}", 2);
        free(buf);
        rate_limit = 8 * 1024 * 1024;
        t0 = uv_hrtime();
        assert_int_equal(pair_start(&p, NULL, NULL), 0);
        rate_limit = 0;
        pair_run_and_close(&p);
        ms = (uv_hrtime() - t0) / 1000000;
        assert_int_equal(p.recv_status, 0);
        assert_true(p.got_verified);
        /* The last chunk may start only after 1.75 MiB at 8 MiB/s: a lower
         * bound, which load cannot break (how fast it went is bench/'s). */
        assert_true(ms >= 200);
        pair_done(&p);
}

/* The pacer's arithmetic, on a clock of our own: the average holds from
 * the mark, and a change of rate moves the mark. */
static void test_pace_average(void **state) {
        xfer_pace p = {0};
        (void)state;

        assert_int_equal(xfer_pace_wait_ms(&p, 1000, 1 << 30), 0); /* no limit */
        assert_true(xfer_pace_set(&p, 1000, 5000, 0));             /* 1000 B/s from t=5 s */
        assert_false(xfer_pace_set(&p, 1000, 6000, 700));          /* the same rate: the mark stays */
        assert_int_equal(xfer_pace_wait_ms(&p, 5000, 0), 0);
        assert_int_equal(xfer_pace_wait_ms(&p, 5000, 500), 500); /* 500 B are due at 5.5 s */
        assert_int_equal(xfer_pace_wait_ms(&p, 5400, 500), 100);
        assert_int_equal(xfer_pace_wait_ms(&p, 5600, 500), 0); /* behind: no wait, no burst owed */
        /* A new rate at t=6 s with 2000 B gone (1 s ahead): nothing is
         * owed for the past, only what goes from here at the new rate. */
        assert_true(xfer_pace_set(&p, 4000, 6000, 2000));
        assert_int_equal(xfer_pace_wait_ms(&p, 6000, 2000), 0);
        assert_int_equal(xfer_pace_wait_ms(&p, 6000, 3000), 250);
        assert_true(xfer_pace_set(&p, 0, 6100, 3000));
        assert_int_equal(xfer_pace_wait_ms(&p, 6100, 1 << 30), 0);
}

static void idle_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        int *res = ud;
        (void)c;
        assert_non_null(err);
        assert_non_null(strstr(err->msg, "idle"));
        *res = status;
}

static void no_message(xfer_conn *c, const proto_msg *m, void *ud) {
        (void)c;
        (void)m;
        (void)ud;
        fail();
}

static void test_idle_timeout_and_malformed(void **state) {
        xfer_conn_callbacks cb = {.message = no_message, .closed = idle_closed};
        uv_loop_t loop;
        xfer_conn *c = NULL;
        int sv[2], res = 1;
        (void)state;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(xfer_conn_new_fd(&loop, sv[0], &cb, &res, NULL, &c), 0);
        xfer_conn_set_idle_timeout(c, 30);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(res, -ETIMEDOUT);
        assert_int_equal(uv_loop_close(&loop), 0);
        close(sv[1]);
}

static void bad_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        int *res = ud;
        (void)c;
        assert_non_null(err);
        assert_non_null(strstr(err->msg, "refusing a frame"));
        printf("# %s\n", err->msg);
        *res = status;
}

static void test_oversize_frame_refused(void **state) {
        xfer_conn_callbacks cb = {.message = no_message, .closed = bad_closed};
        static const uint8_t huge[4] = {0x7f, 0xff, 0xff, 0xff};
        uv_loop_t loop;
        xfer_conn *c = NULL;
        int sv[2], res = 1;
        (void)state;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(write(sv[1], huge, sizeof(huge)), 4);
        assert_int_equal(xfer_conn_new_fd(&loop, sv[0], &cb, &res, NULL, &c), 0);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(res, -E2BIG);
        assert_int_equal(uv_loop_close(&loop), 0);
        close(sv[1]);
}

/* What the peer reads after its frame was refused: one ERROR frame whose
 * reason says why, then the end of the stream. */
static void assert_error_then_eof(int fd, int code, const char *why) {
        _cleanup_proto_msg_ proto_msg m = {};
        proto_reader *rd = NULL;
        const uint8_t *payload;
        uint8_t *w;
        size_t room, len;
        ssize_t n;

        assert_int_equal(proto_reader_new(0, &rd), 0);
        for (;;) {
                assert_int_equal(proto_reader_get_buffer(rd, &w, &room, NULL), 0);
                n = read(fd, w, room);
                assert_true(n >= 0);
                if (n == 0)
                        break;
                assert_int_equal(proto_reader_advance(rd, (size_t)n, NULL), 0);
        }
        assert_int_equal(proto_reader_next(rd, &payload, &len, NULL), 1);
        assert_int_equal(proto_decode(payload, len, &m, NULL), 0);
        assert_int_equal(m.type, PROTO_MSG_ERROR);
        assert_int_equal(m.error.code, code);
        printf("# ERROR %s\n", m.error.reason);
        assert_non_null(strstr(m.error.reason, why));
        assert_int_equal(proto_reader_next(rd, &payload, &len, NULL), 0);
        assert_int_equal(proto_reader_finish(rd, NULL), 0);
        proto_reader_free(rd);
}

/* PROTOCOL.md: a frame that cannot be decoded is answered with ERROR (the
 * sentence as reason) before the session closes, from the header alone
 * (oversize length), from the payload (unknown type), and when the peer
 * ends its side in the middle of a frame. */
static void test_refused_frame_answered(void **state) {
        xfer_conn_callbacks cb = {.message = no_message, .closed = bad_closed};
        static const uint8_t huge[4] = {0x00, 0x40, 0x00, 0x01};
        /* {"t": 200} */
        static const uint8_t unknown[] = {0, 0, 0, 5, 0x81, 0xa1, 't', 0xcc, 200};
        struct {
                const uint8_t *bytes;
                size_t n;
                bool eof; /* the peer ends its side after the bytes */
                int code;
                const char *why;
        } cases[] = {
                {huge, sizeof(huge), false, -E2BIG, "exceeds limit"},
                {unknown, sizeof(unknown), false, -EPROTO, "unknown message type 200"},
                {unknown, sizeof(unknown) - 2, true, -EPIPE, "in the middle of a frame"},
        };
        (void)state;

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                uv_loop_t loop;
                xfer_conn *c = NULL;
                int sv[2], res = 1;

                assert_int_equal(uv_loop_init(&loop), 0);
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
                assert_int_equal(write(sv[1], cases[i].bytes, cases[i].n), (ssize_t)cases[i].n);
                if (cases[i].eof)
                        assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
                assert_int_equal(xfer_conn_new_fd(&loop, sv[0], &cb, &res, NULL, &c), 0);
                (void)uv_run(&loop, UV_RUN_DEFAULT);
                assert_int_equal(res, cases[i].code);
                assert_int_equal(uv_loop_close(&loop), 0);
                assert_error_then_eof(sv[1], cases[i].code, cases[i].why);
                close(sv[1]);
        }
}

/* ---- a peer that asks faster than it reads ---- */

#define FLOOD_PINGS 200000

typedef struct flood {
        int fd;         /* the peer's end */
        size_t answers; /* PONG frames the peer read */
        unsigned pings; /* PINGs our side answered */
        int status;
        bool closed;
} flood;

static void *flood_writer(void *arg) {
        flood *f = arg;
        proto_msg ping = {.type = PROTO_MSG_PING, .ping = {.seq = 7}};
        uint8_t *one = NULL, *buf;
        size_t len, per = 4096;

        assert_int_equal(proto_encode(&ping, &one, &len, NULL), 0);
        buf = malloc(len * per);
        assert_non_null(buf);
        for (size_t i = 0; i < per; i++)
                memcpy(buf + i * len, one, len);
        for (size_t sent = 0; sent < FLOOD_PINGS; sent += per) {
                size_t n = (FLOOD_PINGS - sent < per ? FLOOD_PINGS - sent : per) * len, off = 0;
                while (off < n) {
                        ssize_t k = write(f->fd, buf + off, n - off);
                        if (k <= 0)
                                goto out; /* our side closed on us */
                        off += (size_t)k;
                }
        }
        (void)shutdown(f->fd, SHUT_WR);
out:
        free(buf);
        free(one);
        return NULL;
}

static void *flood_reader(void *arg) {
        flood *f = arg;
        uint8_t buf[65536];
        ssize_t k;
        size_t total = 0;

        while ((k = read(f->fd, buf, sizeof(buf))) > 0)
                total += (size_t)k;
        f->answers = total;
        return NULL;
}

static void flood_message(xfer_conn *c, const proto_msg *m, void *ud) {
        flood *f = ud;
        proto_msg pong = {.type = PROTO_MSG_PONG, .pong = m->ping};
        assert_int_equal(m->type, PROTO_MSG_PING);
        f->pings++;
        assert_int_equal(xfer_conn_send(c, &pong, NULL), 0);
}

static void flood_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        flood *f = ud;
        (void)c;
        printf("# closed after %u PINGs: %d %s\n", f->pings, status, err ? err->msg : "");
        f->status = status;
        f->closed = true;
}

/* Every PING is answered; a peer that never reads the answers gets no more
 * than a bounded queue (the rest of its PINGs wait in the socket) and is cut
 * by the idle timeout; one that reads them gets every answer. The reading
 * peer is a thread of this process: its window only guards against a hang
 * (a loaded machine may leave the thread unscheduled for a while, which is
 * idleness as the connection sees it). */
static void test_flood_bounded(void **state) {
        xfer_conn_callbacks cb = {.message = flood_message, .closed = flood_closed};
        proto_msg pong = {.type = PROTO_MSG_PONG, .pong = {.seq = 7}};
        uint8_t *buf = NULL;
        size_t pong_len;
        (void)state;

        assert_int_equal(proto_encode(&pong, &buf, &pong_len, NULL), 0);
        free(buf);
        for (int reads = 0; reads <= 1; reads++) {
                flood f = {};
                pthread_t w, r;
                uv_loop_t loop;
                xfer_conn *c = NULL;
                int sv[2];

                assert_int_equal(uv_loop_init(&loop), 0);
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
                f.fd = sv[1];
                assert_int_equal(xfer_conn_new_fd(&loop, sv[0], &cb, &f, NULL, &c), 0);
                xfer_conn_set_idle_timeout(c, reads ? t_ms(10000) : t_ms(300));
                assert_int_equal(pthread_create(&w, NULL, flood_writer, &f), 0);
                if (reads)
                        assert_int_equal(pthread_create(&r, NULL, flood_reader, &f), 0);
                (void)uv_run(&loop, UV_RUN_DEFAULT);
                assert_true(f.closed);
                assert_int_equal(uv_loop_close(&loop), 0);
                if (reads) {
                        (void)shutdown(sv[1], SHUT_RD);
                        assert_int_equal(pthread_join(r, NULL), 0);
                }
                assert_int_equal(pthread_join(w, NULL), 0);
                if (reads) {
                        assert_int_equal(f.status, 0);
                        assert_int_equal(f.pings, FLOOD_PINGS);
                        assert_int_equal(f.answers, (size_t)FLOOD_PINGS * pong_len);
                } else {
                        assert_int_equal(f.status, -ETIMEDOUT);
                        assert_true(f.pings < FLOOD_PINGS / 10);
                }
                close(sv[1]);
        }
}

/* A caller whose consumer is behind holds reading: the peer's frames wait,
 * for longer than the idle timeout (which does not blame the peer for our
 * wait), and come out in order once it lets go. */
#define HELD_PINGS 5u

typedef struct held {
        xfer_conn *c;
        uv_timer_t release;
        unsigned got, got_while_held;
        bool closed;
        int status;
} held;

static void held_message(xfer_conn *c, const proto_msg *m, void *ud) {
        held *h = ud;
        (void)c;
        assert_int_equal(m->type, PROTO_MSG_PING);
        assert_int_equal(m->ping.seq, h->got + 1);
        h->got++;
}

static void held_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        held *h = ud;
        (void)c;
        printf("# closed after %u PINGs: %d %s\n", h->got, status, err ? err->msg : "");
        h->status = status;
        h->closed = true;
}

static void held_release(uv_timer_t *t) {
        held *h = t->data;
        h->got_while_held = h->got;
        assert_false(h->closed);
        xfer_conn_hold_reading(h->c, false);
        uv_close((uv_handle_t *)t, NULL);
}

static void test_hold_reading(void **state) {
        xfer_conn_callbacks cb = {.message = held_message, .closed = held_closed};
        uv_loop_t loop;
        held h = {};
        int sv[2];
        (void)state;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(xfer_conn_new_fd(&loop, sv[0], &cb, &h, NULL, &h.c), 0);
        xfer_conn_set_idle_timeout(h.c, t_ms(100));
        xfer_conn_hold_reading(h.c, true);
        for (unsigned i = 1; i <= HELD_PINGS; i++) {
                proto_msg ping = {.type = PROTO_MSG_PING, .ping = {.seq = i}};
                uint8_t *buf = NULL;
                size_t len;
                assert_int_equal(proto_encode(&ping, &buf, &len, NULL), 0);
                assert_int_equal(write(sv[1], buf, len), (ssize_t)len);
                free(buf);
        }
        (void)shutdown(sv[1], SHUT_WR);
        assert_int_equal(uv_timer_init(&loop, &h.release), 0);
        h.release.data = &h;
        /* Four idle windows: without the hold's exemption the peer would be
         * cut as idle well before. */
        assert_int_equal(uv_timer_start(&h.release, held_release, t_ms(400), 0), 0);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_true(h.closed);
        assert_int_equal(h.got_while_held, 0);
        assert_int_equal(h.got, HELD_PINGS);
        assert_int_equal(h.status, 0);
        assert_int_equal(uv_loop_close(&loop), 0);
        close(sv[1]);
}

/* A peer that trickles a frame a byte at a time (slowloris) is idle: only
 * whole frames count, so the idle timeout ends it. Its frame is one that
 * would take minutes to complete, so no load can make it arrive first; a
 * connection that took bytes for activity would never end (the guard says
 * so, long after the window). */
#define TRICKLE_FRAME_LEN 65536u

static void *trickle_writer(void *arg) {
        flood *f = arg;
        const uint8_t hdr[4] = {TRICKLE_FRAME_LEN >> 24, (TRICKLE_FRAME_LEN >> 16) & 0xff,
                                (TRICKLE_FRAME_LEN >> 8) & 0xff, TRICKLE_FRAME_LEN & 0xff};

        /* Until our side hangs up (the write fails): the header, then the
         * payload's first bytes, 20 ms apart. */
        for (size_t i = 0; i < TRICKLE_FRAME_LEN; i++) {
                uint8_t b = i < sizeof(hdr) ? hdr[i] : 0x80; /* an empty map, never decoded */
                if (write(f->fd, &b, 1) != 1)
                        break;
                f->answers++; /* here: bytes trickled */
                t_stall_ms(20);
        }
        return NULL;
}

static void trickle_guard_cb(uv_timer_t *t) {
        (void)t;
        fail_msg("a trickled frame kept the connection open for %llu ms", (unsigned long long)t_ms(20000));
}

static void test_trickle_is_idle(void **state) {
        xfer_conn_callbacks cb = {.message = flood_message, .closed = flood_closed};
        flood f = {};
        pthread_t w;
        uv_loop_t loop;
        uv_timer_t guard;
        xfer_conn *c = NULL;
        int sv[2];
        (void)state;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        f.fd = sv[1];
        assert_int_equal(xfer_conn_new_fd(&loop, sv[0], &cb, &f, NULL, &c), 0);
        xfer_conn_set_idle_timeout(c, t_ms(300));
        assert_int_equal(uv_timer_init(&loop, &guard), 0);
        assert_int_equal(uv_timer_start(&guard, trickle_guard_cb, t_ms(20000), 0), 0);
        uv_unref((uv_handle_t *)&guard);
        assert_int_equal(pthread_create(&w, NULL, trickle_writer, &f), 0);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        uv_close((uv_handle_t *)&guard, NULL);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_true(f.closed);
        assert_int_equal(f.status, -ETIMEDOUT);
        assert_int_equal(f.pings, 0);
        close(sv[1]);
        assert_int_equal(pthread_join(w, NULL), 0);
        printf("# cut after %zu bytes trickled\n", f.answers);
        assert_true(f.answers > 0);
}

/* ---- idleness is the peer's, not the loop's ---- */

typedef struct stall {
        int peer_fd;     /* the peer's end */
        uint64_t window; /* the connection's idle window */
        unsigned pings;
        uint64_t stall_end_ms; /* when the stall in the first PING's callback ended */
        int status;
        bool closed;
        uv_async_t async;
} stall;

static void stall_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        stall *s = ud;
        (void)c;
        printf("# closed after %u PINGs: %d %s\n", s->pings, status, err ? err->msg : "");
        s->status = status;
        s->closed = true;
}

static void write_ping(int fd) {
        proto_msg ping = {.type = PROTO_MSG_PING, .ping = {.seq = 1}};
        uint8_t *buf = NULL;
        size_t len;

        assert_int_equal(proto_encode(&ping, &buf, &len, NULL), 0);
        assert_int_equal(write(fd, buf, len), (ssize_t)len);
        free(buf);
}

/* The loop stands still (busy elsewhere, or the process not scheduled) for
 * longer than the idle window while the peer's PING waits in the socket:
 * the window elapsed by the clock, yet the peer was not idle. The stall is
 * an I/O callback, after which libuv runs the timers before it polls again. */
static void stall_async_cb(uv_async_t *a) {
        stall *s = a->data;
        write_ping(s->peer_fd);
        t_stall_ms(3 * s->window);
        uv_close((uv_handle_t *)a, NULL);
}

static void stall_message(xfer_conn *c, const proto_msg *m, void *ud) {
        stall *s = ud;
        assert_int_equal(m->type, PROTO_MSG_PING);
        s->pings++;
        xfer_conn_close(c, 0, NULL);
}

static void test_idle_looks_after_a_stall(void **state) {
        xfer_conn_callbacks cb = {.message = stall_message, .closed = stall_closed};
        stall s = {.window = 100};
        uv_loop_t loop;
        xfer_conn *c = NULL;
        int sv[2];
        (void)state;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        s.peer_fd = sv[1];
        assert_int_equal(xfer_conn_new_fd(&loop, sv[0], &cb, &s, NULL, &c), 0);
        xfer_conn_set_idle_timeout(c, s.window);
        assert_int_equal(uv_async_init(&loop, &s.async, stall_async_cb), 0);
        s.async.data = &s;
        assert_int_equal(uv_async_send(&s.async), 0);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_true(s.closed);
        assert_int_equal(s.pings, 1);
        assert_int_equal(s.status, 0);
        close(sv[1]);
}

/* Frames handled in one long iteration of the loop: the window counts from
 * the last of them, not from the start of the iteration. The first PING's
 * callback stands still for most of the window; the second PING, handled
 * after it, is the last thing the peer sends. The assertion is a lower
 * bound: load can only make the connection live longer. */
static void slow_message(xfer_conn *c, const proto_msg *m, void *ud) {
        stall *s = ud;
        (void)c;
        assert_int_equal(m->type, PROTO_MSG_PING);
        if (++s->pings == 1) {
                t_stall_ms(s->window * 3 / 4);
                s->stall_end_ms = t_now_ms();
        }
}

static void test_idle_from_last_frame(void **state) {
        xfer_conn_callbacks cb = {.message = slow_message, .closed = stall_closed};
        stall s = {.window = 200};
        uv_loop_t loop;
        xfer_conn *c = NULL;
        uint64_t closed_ms;
        int sv[2];
        (void)state;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        write_ping(sv[1]);
        write_ping(sv[1]);
        assert_int_equal(xfer_conn_new_fd(&loop, sv[0], &cb, &s, NULL, &c), 0);
        xfer_conn_set_idle_timeout(c, s.window);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        closed_ms = t_now_ms();
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_int_equal(s.pings, 2);
        assert_int_equal(s.status, -ETIMEDOUT);
        printf("# cut %llu ms after the last PING (window %llu ms)\n",
               (unsigned long long)(closed_ms - s.stall_end_ms), (unsigned long long)s.window);
        /* The loop's clock is a coarse one: a few ms of slack. */
        assert_true(closed_ms - s.stall_end_ms + 5 >= s.window);
        close(sv[1]);
}

/* A peer that says why and hangs up (an agent refusing a connection):
 * our first write fails, yet its ERROR is still delivered. */
typedef struct last_words {
        char reason[256];
        int status;
        bool closed;
} last_words;

static void lw_message(xfer_conn *c, const proto_msg *m, void *ud) {
        last_words *lw = ud;
        assert_int_equal(m->type, PROTO_MSG_ERROR);
        snprintf(lw->reason, sizeof(lw->reason), "%s", m->error.reason);
        xfer_conn_close(c, 0, NULL);
}

static void lw_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        last_words *lw = ud;
        (void)c;
        (void)err;
        lw->status = status;
        lw->closed = true;
}

static void test_last_words_before_hangup(void **state) {
        xfer_conn_callbacks cb = {.message = lw_message, .closed = lw_closed};
        proto_msg e = {.type = PROTO_MSG_ERROR, .error = {.code = -EBUSY, .reason = "too many connections"}};
        proto_msg hello = {.type = PROTO_MSG_PING, .ping = {.seq = 1}};
        last_words lw = {};
        uint8_t *buf = NULL;
        size_t len;
        uv_loop_t loop;
        xfer_conn *c = NULL;
        int sv[2];
        (void)state;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(proto_encode(&e, &buf, &len, NULL), 0);
        assert_int_equal(write(sv[1], buf, len), (ssize_t)len);
        free(buf);
        close(sv[1]);
        assert_int_equal(xfer_conn_new_fd(&loop, sv[0], &cb, &lw, NULL, &c), 0);
        assert_int_equal(xfer_conn_send(c, &hello, NULL), 0);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&loop), 0);
        assert_true(lw.closed);
        assert_string_equal(lw.reason, "too many connections");
}

int main(void) {
        /* As in the agent: a peer that hangs up is an EPIPE, not a signal. */
        signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stream_directory),
                cmocka_unit_test(test_bad_digest_refused),
                cmocka_unit_test(test_zstd_backoff),
                cmocka_unit_test(test_sender_refuses_bad_trees),
                cmocka_unit_test(test_receiver_hangs_up),
                cmocka_unit_test(test_rate_limit),
                cmocka_unit_test(test_pace_average),
                cmocka_unit_test(test_idle_timeout_and_malformed),
                cmocka_unit_test(test_oversize_frame_refused),
                cmocka_unit_test(test_refused_frame_answered),
                cmocka_unit_test(test_flood_bounded),
                cmocka_unit_test(test_hold_reading),
                cmocka_unit_test(test_trickle_is_idle),
                cmocka_unit_test(test_idle_looks_after_a_stall),
                cmocka_unit_test(test_idle_from_last_frame),
                cmocka_unit_test(test_last_words_before_hangup),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
