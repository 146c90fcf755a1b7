/* SPDX-License-Identifier: Apache-2.0 */
/* The page stream's MAC, under each algorithm: a vector built by hand with
 * OpenSSL's one-shot calls over the documented bytes, then every way a
 * hostile or broken peer could bend a stream (a flipped byte, a dropped,
 * repeated or reordered frame, another migration's frames, another key,
 * another algorithm, a cut before the end, frames after it) fails, and
 * stays failed. */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ps-mac.h"

static const uint8_t key[32] = "0123456789abcdef0123456789abcdef";
static const char *const bind_a[] = {"mig-1", "node1", "node2"};
static const char *const bind_b[] = {"mig-2", "node1", "node2"};

/* The algorithm under test: each test runs once per algorithm (its prestate). */
static ps_mac_alg alg;
static const ps_mac_alg hmac_sha256 = PS_MAC_HMAC_SHA256, poly1305 = PS_MAC_POLY1305;

static void set_alg(void **state) {
        alg = *(const ps_mac_alg *)*state;
}

static ps_mac *mac_new(const char *const *parts, const uint8_t *k) {
        ps_mac *m = NULL;
        assert_int_equal(ps_mac_new(k, 32, alg, parts, 3, &m), 0);
        return m;
}

static size_t put_part(uint8_t *out, const void *p, size_t n) {
        for (int i = 0; i < 8; i++)
                out[i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        memcpy(out + 8, p, n);
        return 8 + n;
}

static size_t put_head(uint8_t *out, uint8_t kind, uint64_t number, uint64_t len) {
        out[0] = kind;
        for (int i = 0; i < 8; i++) {
                out[1 + i] = (uint8_t)(number >> (56 - 8 * i));
                out[9 + i] = (uint8_t)(len >> (56 - 8 * i));
        }
        return 17;
}

/* HMAC-SHA256(key, [len|domain][len|part]...): under HMAC-SHA256 the
 * start of every frame's message, under Poly1305 the stream's key. */
static size_t put_binding(uint8_t *msg, const char *domain, const char *const *parts, size_t n_parts) {
        size_t at = put_part(msg, domain, strlen(domain));
        for (size_t i = 0; i < n_parts; i++)
                at += put_part(msg + at, parts[i], strlen(parts[i]));
        return at;
}

/* HMAC-SHA256(key, binding kind number(be64) len(be64) bytes) */
static void expected_hmac(const char *const *parts, size_t n_parts, uint8_t kind, uint64_t number,
                          uint64_t len, const void *bytes, size_t n, uint8_t out[PS_MAC_LEN]) {
        uint8_t msg[512];
        size_t at = put_binding(msg, "nucleus-migrate page stream 1", parts, n_parts);
        unsigned int out_len = 0;

        at += put_head(msg + at, kind, number, len);
        if (n) /* the end frame has no bytes (NULL) */
                memcpy(msg + at, bytes, n);
        at += n;
        assert_non_null(HMAC(EVP_sha256(), key, sizeof(key), msg, at, out, &out_len));
        assert_int_equal(out_len, PS_MAC_LEN);
}

/* ChaCha20-Poly1305 under the stream's key, nonce 0^4 number(be64), the
 * associated data kind number(be64) len(be64) bytes, nothing encrypted;
 * its 16-byte tag, then 16 zero bytes. */
static void expected_poly1305(const char *const *parts, size_t n_parts, uint8_t kind, uint64_t number,
                              uint64_t len, const void *bytes, size_t n, uint8_t out[PS_MAC_LEN]) {
        uint8_t msg[512], stream_key[32], nonce[12] = {0}, aad[512], none[1];
        size_t at = put_binding(msg, "nucleus-migrate page stream key, poly1305 1", parts, n_parts);
        unsigned int key_len = 0;
        int ol = 0;
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

        assert_non_null(HMAC(EVP_sha256(), key, sizeof(key), msg, at, stream_key, &key_len));
        for (int i = 0; i < 8; i++)
                nonce[4 + i] = (uint8_t)(number >> (56 - 8 * i));
        at = put_head(aad, kind, number, len);
        if (n)
                memcpy(aad + at, bytes, n);
        at += n;
        memset(out, 0, PS_MAC_LEN);
        assert_non_null(c);
        assert_int_equal(EVP_EncryptInit_ex(c, EVP_chacha20_poly1305(), NULL, stream_key, nonce), 1);
        assert_int_equal(EVP_EncryptUpdate(c, NULL, &ol, aad, (int)at), 1);
        assert_int_equal(EVP_EncryptFinal_ex(c, none, &ol), 1);
        assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, out), 1);
        EVP_CIPHER_CTX_free(c);
}

static void expected_tag(const char *const *parts, size_t n_parts, uint8_t kind, uint64_t number,
                         uint64_t len, const void *bytes, size_t n, uint8_t out[PS_MAC_LEN]) {
        if (alg == PS_MAC_POLY1305)
                expected_poly1305(parts, n_parts, kind, number, len, bytes, n, out);
        else
                expected_hmac(parts, n_parts, kind, number, len, bytes, n, out);
}

static void test_vector(void **state) {
        set_alg(state);
        ps_mac *m = mac_new(bind_a, key);
        uint8_t tag[PS_MAC_LEN], want[PS_MAC_LEN];

        assert_int_equal(ps_mac_sign(m, "hello", 5, tag), 0);
        expected_tag(bind_a, 3, 1, 0, 5, "hello", 5, want);
        assert_memory_equal(tag, want, PS_MAC_LEN);
        assert_int_equal(ps_mac_sign(m, "world!", 6, tag), 0);
        expected_tag(bind_a, 3, 1, 1, 6, "world!", 6, want);
        assert_memory_equal(tag, want, PS_MAC_LEN);
        assert_int_equal(ps_mac_sign_end(m, tag), 0);
        expected_tag(bind_a, 3, 2, 2, 11, NULL, 0, want);
        assert_memory_equal(tag, want, PS_MAC_LEN);
        assert_int_equal(ps_mac_get_state(m), PS_MAC_ENDED);
        assert_int_equal(ps_mac_sign(m, "x", 1, tag), -EPIPE);
        ps_mac_free(m);
}

/* A stream of three frames and its end, as a sender makes it. */
typedef struct stream {
        char data[3][16];
        size_t len[3];
        uint8_t tag[3][PS_MAC_LEN];
        uint8_t end[PS_MAC_LEN];
} stream;

static void make_stream(stream *s, const char *const *parts, const uint8_t *k) {
        ps_mac *m = mac_new(parts, k);
        for (int i = 0; i < 3; i++) {
                s->len[i] = (size_t)snprintf(s->data[i], sizeof(s->data[i]), "frame %d", i);
                assert_int_equal(ps_mac_sign(m, s->data[i], s->len[i], s->tag[i]), 0);
        }
        assert_int_equal(ps_mac_sign_end(m, s->end), 0);
        ps_mac_free(m);
}

static void test_round_trip(void **state) {
        set_alg(state);
        stream s;
        make_stream(&s, bind_a, key);
        ps_mac *r = mac_new(bind_a, key);
        for (int i = 0; i < 3; i++)
                assert_int_equal(ps_mac_check(r, s.data[i], s.len[i], s.tag[i]), 0);
        assert_int_equal(ps_mac_frames(r), 3);
        assert_int_equal(ps_mac_bytes(r), s.len[0] + s.len[1] + s.len[2]);
        assert_int_equal(ps_mac_check_end(r, s.end), 0);
        assert_int_equal(ps_mac_get_state(r), PS_MAC_ENDED);
        /* Nothing after the end, not even a valid-looking frame. */
        assert_int_equal(ps_mac_check(r, s.data[0], s.len[0], s.tag[0]), -EPIPE);
        ps_mac_free(r);
}

/* Feeds frames in the given order (-1: the end frame); returns the first
 * failure's index in order, or -1 when every check passed. */
static int feed(const stream *s, const char *const *parts, const uint8_t *k, const int *order, int n,
                int *ret_err) {
        ps_mac *r = mac_new(parts, k);
        int failed = -1;
        for (int i = 0; i < n && failed < 0; i++) {
                int f = order[i];
                int e = f < 0 ? ps_mac_check_end(r, s->end)
                              : ps_mac_check(r, s->data[f], s->len[f], s->tag[f]);
                if (e < 0) {
                        failed = i;
                        *ret_err = e;
                }
        }
        if (failed >= 0) {
                /* Broken for good: even the right next frame is refused now. */
                assert_int_equal(ps_mac_get_state(r), PS_MAC_BROKEN);
                assert_int_equal(ps_mac_check(r, s->data[0], s->len[0], s->tag[0]), -EPIPE);
                assert_int_equal(ps_mac_check_end(r, s->end), -EPIPE);
        }
        ps_mac_free(r);
        return failed;
}

static void test_bent_streams_fail(void **state) {
        set_alg(state);
        stream s;
        int err = 0;
        make_stream(&s, bind_a, key);

        static const int dropped[] = {0, 2, -1}, repeated[] = {0, 0, 1, 2, -1}, swapped[] = {1, 0, 2, -1},
                         cut[] = {0, 1, -1}, all[] = {0, 1, 2, -1};
        assert_int_equal(feed(&s, bind_a, key, dropped, 3, &err), 1);
        assert_int_equal(err, -EBADMSG);
        assert_int_equal(feed(&s, bind_a, key, repeated, 5, &err), 1);
        assert_int_equal(feed(&s, bind_a, key, swapped, 4, &err), 0);
        /* Cut before the last frame: the end counts what came. */
        assert_int_equal(feed(&s, bind_a, key, cut, 3, &err), 2);
        /* Another migration's stream, or another key: the first frame fails. */
        assert_int_equal(feed(&s, bind_b, key, all, 4, &err), 0);
        uint8_t other[32];
        memcpy(other, key, sizeof(other));
        other[31] ^= 1;
        assert_int_equal(feed(&s, bind_a, other, all, 4, &err), 0);
        assert_int_equal(feed(&s, bind_a, key, all, 4, &err), -1);

        /* One flipped bit in a frame's bytes, or in its tag. */
        stream bad = s;
        bad.data[1][3] ^= 0x10;
        assert_int_equal(feed(&bad, bind_a, key, all, 4, &err), 1);
        bad = s;
        bad.tag[2][0] ^= 1;
        assert_int_equal(feed(&bad, bind_a, key, all, 4, &err), 2);
        /* A byte in the tag's last half: zeros under Poly1305, checked too. */
        bad = s;
        bad.tag[1][PS_MAC_LEN - 1] ^= 1;
        assert_int_equal(feed(&bad, bind_a, key, all, 4, &err), 1);
        /* The stream read under the other algorithm. */
        alg = alg == PS_MAC_POLY1305 ? PS_MAC_HMAC_SHA256 : PS_MAC_POLY1305;
        assert_int_equal(feed(&s, bind_a, key, all, 4, &err), 0);
        alg = alg == PS_MAC_POLY1305 ? PS_MAC_HMAC_SHA256 : PS_MAC_POLY1305;
        /* The same bytes split differently are other frames. */
        bad = s;
        bad.len[0]--;
        assert_int_equal(feed(&bad, bind_a, key, all, 4, &err), 0);
}

/* A compressed frame is tagged as it travels (kind 3, the length it
 * decompresses to, the compressed bytes), counts that length, and can pass
 * neither for a plain frame of the same bytes nor with another length. */
static void test_compressed_frames(void **state) {
        set_alg(state);
        static const char z[] = "zstd bytes";
        ps_mac *m = mac_new(bind_a, key), *r;
        uint8_t t0[PS_MAC_LEN], t1[PS_MAC_LEN], end[PS_MAC_LEN], want[PS_MAC_LEN];

        assert_int_equal(ps_mac_sign(m, "hello", 5, t0), 0);
        assert_int_equal(ps_mac_sign_z(m, 4096, z, sizeof(z) - 1, t1), 0);
        expected_tag(bind_a, 3, 3, 1, 4096, z, sizeof(z) - 1, want);
        assert_memory_equal(t1, want, PS_MAC_LEN);
        assert_int_equal(ps_mac_bytes(m), 5 + 4096);
        assert_int_equal(ps_mac_sign_end(m, end), 0);
        expected_tag(bind_a, 3, 2, 2, 5 + 4096, NULL, 0, want);
        assert_memory_equal(end, want, PS_MAC_LEN);
        ps_mac_free(m);

        r = mac_new(bind_a, key);
        assert_int_equal(ps_mac_check(r, "hello", 5, t0), 0);
        assert_int_equal(ps_mac_check_z(r, 4096, z, sizeof(z) - 1, t1), 0);
        assert_int_equal(ps_mac_check_end(r, end), 0);
        ps_mac_free(r);

        /* Another length, a flipped compressed byte, or the frame taken as
         * plain: each fails, and the stream with it. */
        r = mac_new(bind_a, key);
        assert_int_equal(ps_mac_check(r, "hello", 5, t0), 0);
        assert_int_equal(ps_mac_check_z(r, 4095, z, sizeof(z) - 1, t1), -EBADMSG);
        assert_int_equal(ps_mac_check_z(r, 4096, z, sizeof(z) - 1, t1), -EPIPE);
        ps_mac_free(r);
        char bent[sizeof(z)];
        memcpy(bent, z, sizeof(z));
        bent[2] ^= 0x04;
        r = mac_new(bind_a, key);
        assert_int_equal(ps_mac_check(r, "hello", 5, t0), 0);
        assert_int_equal(ps_mac_check_z(r, 4096, bent, sizeof(z) - 1, t1), -EBADMSG);
        ps_mac_free(r);
        r = mac_new(bind_a, key);
        assert_int_equal(ps_mac_check(r, "hello", 5, t0), 0);
        assert_int_equal(ps_mac_check(r, z, sizeof(z) - 1, t1), -EBADMSG);
        ps_mac_free(r);
        /* Nothing compressed to nothing, nor from nothing. */
        r = mac_new(bind_a, key);
        assert_int_equal(ps_mac_sign_z(r, 0, z, 1, t1), -EINVAL);
        assert_int_equal(ps_mac_sign_z(r, 1, z, 0, t1), -EINVAL);
        assert_int_equal(ps_mac_check_z(r, 0, z, 1, t1), -EINVAL);
        ps_mac_free(r);
}

static void test_bindings_do_not_run_together(void **state) {
        set_alg(state);
        /* ("ab","c") and ("a","bc") are different bindings. */
        static const char *const p1[] = {"ab", "c"}, *const p2[] = {"a", "bc"};
        ps_mac *a = NULL, *b = NULL;
        uint8_t ta[PS_MAC_LEN], tb[PS_MAC_LEN];
        assert_int_equal(ps_mac_new(key, sizeof(key), alg, p1, 2, &a), 0);
        assert_int_equal(ps_mac_new(key, sizeof(key), alg, p2, 2, &b), 0);
        assert_int_equal(ps_mac_sign(a, "x", 1, ta), 0);
        assert_int_equal(ps_mac_sign(b, "x", 1, tb), 0);
        assert_memory_not_equal(ta, tb, PS_MAC_LEN);
        ps_mac_free(a);
        ps_mac_free(b);
}

static void test_bad_arguments(void **state) {
        set_alg(state);
        static const char *const holes[] = {"a", NULL};
        ps_mac *m = NULL;
        uint8_t tag[PS_MAC_LEN] = {0};
        assert_int_equal(ps_mac_new(NULL, 32, alg, bind_a, 3, &m), -EINVAL);
        assert_int_equal(ps_mac_new(key, 0, alg, bind_a, 3, &m), -EINVAL);
        assert_int_equal(ps_mac_new(key, 32, alg, holes, 2, &m), -EINVAL);
        assert_int_equal(ps_mac_new(key, 32, alg, bind_a, PS_MAC_PARTS_MAX + 1, &m), -EINVAL);
        assert_int_equal(ps_mac_new(key, 32, _PS_MAC_ALG_MAX, bind_a, 3, &m), -EINVAL);
        m = mac_new(bind_a, key);
        /* An empty data frame would let a peer pad a stream with nothing. */
        assert_int_equal(ps_mac_sign(m, "", 0, tag), -EINVAL);
        assert_int_equal(ps_mac_check(m, "", 0, tag), -EINVAL);
        assert_int_equal(ps_mac_get_state(m), PS_MAC_OPEN);
        ps_mac_free(m);
}

#define BOTH(t) \
        cmocka_unit_test_prestate(t, (void *)&hmac_sha256), cmocka_unit_test_prestate(t, (void *)&poly1305)

int main(void) {
        const struct CMUnitTest tests[] = {
                BOTH(test_vector),
                BOTH(test_round_trip),
                BOTH(test_bent_streams_fail),
                BOTH(test_compressed_frames),
                BOTH(test_bindings_do_not_run_together),
                BOTH(test_bad_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
