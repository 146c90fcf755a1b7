/* SPDX-License-Identifier: Apache-2.0 */
/* ZDATA: the zero-copy header, compression and the decoder's refusals of
 * frames that could grow memory or write past the buffer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "macro.h"
#include "proto.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint8_t rnd(void) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (uint8_t)rng;
}

/* Like the mixed heap: zeros, words, random bytes. */
static void fill_mixed(uint8_t *p, size_t n) {
        static const char words[] =
                "{\"seq\":1234,\"user\":\"alice\",\"city\":\"Lisbon\",\"status\":\"ok\"}\n";
        for (size_t i = 0; i < n; i++) {
                size_t q = (i / 4096) % 4;
                p[i] = q == 0 ? 0 : q == 3 ? rnd() : (uint8_t)words[i % (sizeof(words) - 1)];
        }
}

static void test_zdata_header_matches_encoder(void **state) {
        static uint8_t payload[PROTO_DATA_MAX];
        const char *migs[] = {"m", "mig-0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"};
        const size_t lens[] = {1, 255, 65536, PROTO_DATA_MAX};
        const uint32_t sizes[] = {1, 127, 65536, PROTO_DATA_MAX};
        (void)state;

        for (size_t mi = 0; mi < ARRAY_SIZE(migs); mi++)
                for (size_t li = 0; li < ARRAY_SIZE(lens); li++)
                        for (size_t si = 0; si < ARRAY_SIZE(sizes); si++) {
                                proto_msg m = {.type = PROTO_MSG_ZDATA,
                                               .zdata = {.mig = migs[mi],
                                                         .size = sizes[si],
                                                         .data = {payload, lens[li]}}};
                                _cleanup_free_ uint8_t *buf = NULL;
                                _cleanup_proto_msg_ proto_msg d = {};
                                uint8_t hdr[PROTO_DATA_HDR_MAX];
                                size_t len;
                                nm_error err = {};
                                int h;

                                assert_int_equal(proto_encode(&m, &buf, &len, &err), 0);
                                h = proto_zdata_header(hdr, migs[mi], sizes[si], lens[li], &err);
                                assert_true(h > 0 && h <= (int)PROTO_DATA_HDR_MAX);
                                assert_int_equal((size_t)h + lens[li], len);
                                assert_memory_equal(hdr, buf, h);
                                assert_int_equal(proto_decode_frame(buf, len, &d, &err), 0);
                                assert_int_equal(d.type, PROTO_MSG_ZDATA);
                                assert_int_equal(d.zdata.size, sizes[si]);
                                assert_ptr_equal(d.zdata.data.ptr, buf + h);
                        }
}

static void test_zdata_header_rejects(void **state) {
        uint8_t hdr[PROTO_DATA_HDR_MAX];
        nm_error err = {};
        (void)state;

        assert_int_equal(proto_zdata_header(hdr, "m", 0, 10, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "ZDATA: field 'size'"));
        nm_error_clear(&err);
        assert_int_equal(proto_zdata_header(hdr, "m", PROTO_DATA_MAX + 1, 10, &err), -EBADMSG);
        nm_error_clear(&err);
        assert_int_equal(proto_zdata_header(hdr, "m", 10, PROTO_DATA_MAX + 1, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "ZDATA: field 'data'"));
        nm_error_clear(&err);
        assert_int_equal(proto_zdata_header(hdr, "a b", 10, 10, &err), -EBADMSG);
}

static void roundtrip(proto_zctx *z, const uint8_t *src, size_t n, bool expect_compressed) {
        _cleanup_free_ uint8_t *c = malloc(n), *back = malloc(n);
        size_t clen = 99;
        nm_error err = {};

        assert_non_null(c);
        assert_non_null(back);
        assert_int_equal(proto_zdata_compress(z, src, n, c, &clen), 0);
        if (!expect_compressed) {
                assert_int_equal(clen, 0);
                return;
        }
        assert_true(clen > 0 && clen <= n - PROTO_ZDATA_MIN_SAVING(n));
        proto_zdata zd = {.mig = "m", .size = (uint32_t)n, .data = {c, clen}};
        assert_int_equal(proto_zdata_decompress(z, &zd, back, n, &err), 0);
        assert_memory_equal(back, src, n);
}

static void test_zdata_compress_roundtrip(void **state) {
        static uint8_t buf[PROTO_DATA_MAX];
        proto_zctx *z = NULL;
        (void)state;

        for (int level = -5; level <= 3; level += 4) {
                assert_int_equal(proto_zctx_new(level, &z), 0);
                fill_mixed(buf, sizeof(buf));
                roundtrip(z, buf, sizeof(buf), true);
                roundtrip(z, buf, 256 * 1024, true);
                memset(buf, 0, 4096);
                roundtrip(z, buf, 4096, true);
                /* Random bytes do not shrink by a sixteenth: DATA. */
                for (size_t i = 0; i < sizeof(buf); i++)
                        buf[i] = rnd();
                roundtrip(z, buf, sizeof(buf), false);
                roundtrip(z, buf, 1, false);
                z = proto_zctx_free(z);
        }
        assert_int_equal(proto_zctx_new(1000, &z), -EINVAL);
        assert_null(proto_zctx_free(NULL));
}

static void expect_refused(proto_zctx *z, const void *frame, size_t len, uint32_t size, size_t cap,
                           const char *why) {
        _cleanup_free_ uint8_t *dst = malloc(cap ? cap : 1);
        proto_zdata zd = {.mig = "m", .size = size, .data = {frame, len}};
        nm_error err = {};

        assert_int_equal(proto_zdata_decompress(z, &zd, dst, cap, &err), -EBADMSG);
        if (!strstr(err.msg, why))
                fail_msg("'%s' does not say '%s'", err.msg, why);
}

static void test_zdata_decompress_refuses(void **state) {
        static uint8_t src[64 * 1024], frame[2 * 64 * 1024 + 64], bomb[4096];
        proto_zctx *z = NULL;
        ZSTD_CCtx *c = ZSTD_createCCtx();
        size_t n, n2;
        (void)state;

        assert_int_equal(proto_zctx_new(1, &z), 0);
        fill_mixed(src, sizeof(src));
        n = ZSTD_compressCCtx(c, frame, sizeof(frame), src, sizeof(src), 1);
        assert_false(ZSTD_isError(n));

        /* The announced size must be the frame's, both ways. */
        expect_refused(z, frame, n, sizeof(src) - 1, sizeof(src), "announces");
        expect_refused(z, frame, n, sizeof(src) + 1, sizeof(src) + 1, "announces");
        /* A buffer smaller than the announced size. */
        expect_refused(z, frame, n, sizeof(src), sizeof(src) - 1, "out of range");
        expect_refused(z, frame, n, PROTO_DATA_MAX + 1, PROTO_DATA_MAX + 1, "out of range");
        /* Two frames back to back would decode to twice the bytes. */
        memcpy(frame + n, frame, n);
        expect_refused(z, frame, 2 * n, sizeof(src), 2 * sizeof(src), "exactly one zstd frame");
        /* Truncated, and garbage. */
        expect_refused(z, frame, n - 1, sizeof(src), sizeof(src), "exactly one zstd frame");
        expect_refused(z, "\x28\xb5\x2f\xfd garbage", 12, 8, 8, "zstd frame");
        /* A frame that does not say its size (streamed). */
        ZSTD_inBuffer in = {src, sizeof(src), 0};
        ZSTD_outBuffer out = {frame, sizeof(frame), 0};
        ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
        /* zstd records the size of a one-shot end by itself: turn that off. */
        assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0)));
        assert_int_equal(ZSTD_compressStream2(c, &out, &in, ZSTD_e_end), 0);
        assert_true(ZSTD_getFrameContentSize(frame, out.pos) == ZSTD_CONTENTSIZE_UNKNOWN);
        expect_refused(z, frame, out.pos, sizeof(src), sizeof(src), "unknown number");
        /* A small frame of 100 MB of zeros: refused from its header. */
        static uint8_t zeros[1 << 20];
        ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
        ZSTD_CCtx_setPledgedSrcSize(c, 100u << 20);
        out = (ZSTD_outBuffer){bomb, sizeof(bomb), 0};
        for (unsigned i = 0; i < 100; i++) {
                ZSTD_inBuffer zin = {zeros, sizeof(zeros), 0};
                size_t r = ZSTD_compressStream2(c, &out, &zin, i == 99 ? ZSTD_e_end : ZSTD_e_continue);
                assert_false(ZSTD_isError(r));
        }
        n2 = out.pos;
        expect_refused(z, bomb, n2, PROTO_DATA_MAX, PROTO_DATA_MAX, "announces");
        ZSTD_freeCCtx(c);
        proto_zctx_free(z);
}

/* tries(b, n, k): k chunks of n bytes in a row, none of which pays when
 * tried; the string of what was tried ('t') and left ('-'). */
static void tries(proto_zbackoff *b, size_t n, unsigned k, char *out) {
        for (unsigned i = 0; i < k; i++) {
                bool t = proto_zbackoff_try(b, n);
                out[i] = t ? 't' : '-';
                if (t)
                        proto_zbackoff_tried(b, n, false);
        }
        out[k] = '\0';
}

/* After a chunk that did not shrink, 1, 2, 4... up to skip_max go untried;
 * a try that pays ends the wait; small chunks are tried and never counted;
 * a new file's first chunk is tried, and the wait's length stays. */
static void test_zbackoff(void **state) {
        proto_zbackoff b = {.probe_min = 100, .skip_max = 4};
        char got[64];
        (void)state;

        tries(&b, 100, 18, got);
        assert_string_equal(got, "t-t--t----t----t--");
        assert_int_equal(b.untried, 13);
        /* Small chunks in the middle of a wait: tried, the wait unchanged. */
        tries(&b, 99, 3, got);
        assert_string_equal(got, "ttt");
        assert_int_equal(b.left, 2);
        /* A new file: its first chunk is tried; the wait stays at 4. */
        proto_zbackoff_try_next(&b);
        tries(&b, 100, 6, got);
        assert_string_equal(got, "t----t");
        /* A try that pays: every chunk is tried again. */
        assert_false(proto_zbackoff_try(&b, 100));
        proto_zbackoff_try_next(&b);
        assert_true(proto_zbackoff_try(&b, 100));
        proto_zbackoff_tried(&b, 100, true);
        assert_int_equal(b.wait, 0);
        assert_true(proto_zbackoff_try(&b, 100));
        assert_true(proto_zbackoff_try(&b, 100));
        /* A cap that is no power of two is reached, not passed. */
        b = (proto_zbackoff){.probe_min = 1, .skip_max = 3};
        tries(&b, 1, 12, got);
        assert_string_equal(got, "t-t--t---t--");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_zdata_header_matches_encoder),
                cmocka_unit_test(test_zdata_header_rejects),
                cmocka_unit_test(test_zdata_compress_roundtrip),
                cmocka_unit_test(test_zdata_decompress_refuses),
                cmocka_unit_test(test_zbackoff),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
