/* SPDX-License-Identifier: Apache-2.0 */
/* The batched AES-CTR that libssh2's sessions use (transfer/ssh-ctr.c):
 * libssh2's way of asking for a cipher (the legacy EVP_aes_*_ctr() object,
 * fetched implicitly) gets ours once it is installed, and whatever the
 * pieces, directions, re-keys and copies, its output is byte for byte
 * OpenSSL's own AES-CTR; other algorithms stay where they were. */
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ssh-ctr.h"

#define BUF (64u * 1024u)

typedef const EVP_CIPHER *(*legacy_fn)(void);

static const struct {
        const char *name;
        legacy_fn legacy;
        size_t key_len;
} ciphers[] = {
        {"AES-128-CTR", EVP_aes_128_ctr, 16},
        {"AES-192-CTR", EVP_aes_192_ctr, 24},
        {"AES-256-CTR", EVP_aes_256_ctr, 32},
};

static uint8_t plain[BUF], want[BUF], got[BUF];
static uint8_t key[32], iv[16];

/* xorshift: a fixed sequence of piece sizes and bytes, the same every run. */
static uint32_t rng_state = 2463534242u;
static uint32_t rng(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        return rng_state;
}

static int setup(void **state) {
        (void)state;
        assert_int_equal(xfer_ssh_ctr_install(NULL), 0);
        for (size_t i = 0; i < BUF; i++)
                plain[i] = (uint8_t)rng();
        for (size_t i = 0; i < sizeof(key); i++)
                key[i] = (uint8_t)rng();
        memset(iv, 0xff, sizeof(iv));
        iv[0] = 0x7f; /* the low 64 bits wrap after one block: a carry to test */
        return 0;
}

static const char *provider_of(const EVP_CIPHER_CTX *c) {
        return OSSL_PROVIDER_get0_name(EVP_CIPHER_get0_provider(EVP_CIPHER_CTX_get0_cipher(c)));
}

/* OpenSSL's own AES-CTR over the whole of in, in one call. */
static void reference(const char *name, const uint8_t *k, const uint8_t *v, const uint8_t *in, uint8_t *out,
                      size_t n) {
        EVP_CIPHER *def = EVP_CIPHER_fetch(NULL, name, "provider=default");
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int len = 0;

        assert_non_null(def);
        assert_non_null(c);
        assert_true(EVP_EncryptInit_ex(c, def, NULL, k, v));
        assert_string_equal(provider_of(c), "default");
        assert_true(EVP_EncryptUpdate(c, out, &len, in, (int)n));
        assert_int_equal(len, (int)n);
        EVP_CIPHER_CTX_free(c);
        EVP_CIPHER_free(def);
}

/* As libssh2 does: the legacy object, initialised with EVP_CipherInit. */
static EVP_CIPHER_CTX *as_libssh2(legacy_fn legacy, int enc) {
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

        assert_non_null(c);
        assert_true(EVP_CipherInit(c, legacy(), key, iv, enc));
        assert_string_equal(provider_of(c), XFER_SSH_CTR_PROVIDER);
        return c;
}

/* EVP_Cipher over in[from, to), in pieces: mostly libssh2's 16 bytes, some
 * odd ones, some longer than the keystream it holds. */
static void cipher_pieces(EVP_CIPHER_CTX *c, const uint8_t *in, uint8_t *out, size_t from, size_t to) {
        size_t at = from;

        while (at < to) {
                uint32_t r = rng();
                size_t n = (r & 3) ? 16 : (r >> 8) % 9000 + 1;
                if (n > to - at)
                        n = to - at;
                assert_int_equal(EVP_Cipher(c, out + at, in + at, (unsigned)n), (int)n);
                at += n;
        }
}

static void test_pieces_match_openssl(void **state) {
        (void)state;
        for (size_t i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++) {
                EVP_CIPHER_CTX *c = as_libssh2(ciphers[i].legacy, 1);

                reference(ciphers[i].name, key, iv, plain, want, BUF);
                memset(got, 0, BUF);
                cipher_pieces(c, plain, got, 0, BUF);
                assert_memory_equal(got, want, BUF);
                EVP_CIPHER_CTX_free(c);
        }
}

/* CTR decrypts by encrypting: the receiving direction gets the plain bytes
 * back, in place as libssh2 may pass them. */
static void test_decrypt_in_place(void **state) {
        EVP_CIPHER_CTX *c = as_libssh2(EVP_aes_128_ctr, 0);
        (void)state;

        reference("AES-128-CTR", key, iv, plain, want, BUF);
        memcpy(got, want, BUF);
        cipher_pieces(c, got, got, 0, BUF);
        assert_memory_equal(got, plain, BUF);
        EVP_CIPHER_CTX_free(c);
}

/* A new counter mid-stream: nothing of the old keystream may be used. */
static void test_new_iv_restarts(void **state) {
        EVP_CIPHER_CTX *c = as_libssh2(EVP_aes_256_ctr, 1);
        uint8_t iv2[16];
        (void)state;

        cipher_pieces(c, plain, got, 0, 1000); /* keystream left over */
        memset(iv2, 0x11, sizeof(iv2));
        assert_true(EVP_CipherInit(c, NULL, NULL, iv2, 1));
        reference("AES-256-CTR", key, iv2, plain, want, BUF);
        cipher_pieces(c, plain, got, 0, BUF);
        assert_memory_equal(got, want, BUF);
        EVP_CIPHER_CTX_free(c);
}

/* Key and counter in two calls, as EVP allows (and OpenSSL's random
 * generator does: a new key, then a counter, then bytes), give OpenSSL's
 * stream. Re-initialised without a counter after bytes went through, ours
 * would go on from further along the counter than OpenSSL's own: its bytes
 * are refused until a counter is set. */
static void test_key_then_iv(void **state) {
        EVP_CIPHER *ours = EVP_CIPHER_fetch(NULL, "AES-128-CTR", "provider=" XFER_SSH_CTR_PROVIDER);
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        uint8_t iv2[16];
        (void)state;

        assert_non_null(ours);
        assert_true(EVP_EncryptInit_ex(c, ours, NULL, key, NULL));
        assert_true(EVP_EncryptInit_ex(c, NULL, NULL, key, NULL)); /* nothing fetched yet */
        assert_true(EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv));
        reference("AES-128-CTR", key, iv, plain, want, BUF);
        cipher_pieces(c, plain, got, 0, 100);
        assert_memory_equal(got, want, 100);

        assert_true(EVP_EncryptInit_ex(c, NULL, NULL, key, NULL));
        assert_int_equal(EVP_Cipher(c, got, plain, 16), -1);
        assert_true(EVP_EncryptInit_ex(c, NULL, NULL, NULL, NULL));
        assert_int_equal(EVP_Cipher(c, got, plain, 16), -1);

        memset(iv2, 0x22, sizeof(iv2));
        assert_true(EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv2));
        reference("AES-128-CTR", key, iv2, plain, want, BUF);
        cipher_pieces(c, plain, got, 0, BUF);
        assert_memory_equal(got, want, BUF);
        EVP_CIPHER_CTX_free(c);
        EVP_CIPHER_free(ours);
}

/* Random bytes of both kinds; non-NULL when OpenSSL gave them. */
static void *random_bytes(void *arg) {
        static int ok;
        uint8_t buf[4096];
        (void)arg;
        return RAND_bytes(buf, sizeof(buf)) == 1 && RAND_priv_bytes(buf, sizeof(buf)) == 1 ? &ok : NULL;
}

/* OpenSSL's random generator, in this thread and in a new one (each thread
 * gets its own), never makes a context of ours. */
static void test_random_generator_not_ours(void **state) {
        unsigned long before = xfer_ssh_ctr_contexts();
        pthread_t t;
        void *ok = NULL;
        (void)state;

        assert_non_null(random_bytes(NULL));
        assert_int_equal(pthread_create(&t, NULL, random_bytes, NULL), 0);
        assert_int_equal(pthread_join(t, &ok), 0);
        assert_non_null(ok);
        assert_int_equal(xfer_ssh_ctr_contexts(), before);

        /* and the counter does see ours */
        EVP_CIPHER_CTX *c = as_libssh2(EVP_aes_128_ctr, 1);
        assert_int_equal(xfer_ssh_ctr_contexts(), before + 1);
        EVP_CIPHER_CTX_free(c);
}

/* A copy taken mid-stream goes on exactly where the original does. */
static void test_copy_continues(void **state) {
        EVP_CIPHER_CTX *c = as_libssh2(EVP_aes_192_ctr, 1), *d = EVP_CIPHER_CTX_new();
        static uint8_t other[BUF];
        (void)state;

        reference("AES-192-CTR", key, iv, plain, want, BUF);
        cipher_pieces(c, plain, got, 0, 5000);
        assert_non_null(d);
        assert_true(EVP_CIPHER_CTX_copy(d, c));
        memcpy(other, got, 5000);
        cipher_pieces(c, plain, got, 5000, BUF);
        cipher_pieces(d, plain, other, 5000, BUF);
        assert_memory_equal(got, want, BUF);
        assert_memory_equal(other, want, BUF);
        EVP_CIPHER_CTX_free(c);
        EVP_CIPHER_CTX_free(d);
}

/* The preference names ours for AES-CTR only. */
static void test_other_algorithms_unchanged(void **state) {
        EVP_MD *sha = EVP_MD_fetch(NULL, "SHA256", NULL);
        EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
        EVP_CIPHER *ctr = EVP_CIPHER_fetch(NULL, "AES-128-CTR", NULL);
        (void)state;

        assert_non_null(sha);
        assert_non_null(gcm);
        assert_non_null(ctr);
        assert_string_equal(OSSL_PROVIDER_get0_name(EVP_MD_get0_provider(sha)), "default");
        assert_string_equal(OSSL_PROVIDER_get0_name(EVP_CIPHER_get0_provider(gcm)), "default");
        assert_string_equal(OSSL_PROVIDER_get0_name(EVP_CIPHER_get0_provider(ctr)), XFER_SSH_CTR_PROVIDER);
        EVP_MD_free(sha);
        EVP_CIPHER_free(gcm);
        EVP_CIPHER_free(ctr);
}

/* The key and counter lengths are the cipher's: reported as such, and a
 * request to change the key length is refused (EVP then never hands ours a
 * key of another length to truncate or pad). */
static void test_key_length_fixed(void **state) {
        EVP_CIPHER *ours = EVP_CIPHER_fetch(NULL, "AES-128-CTR", "provider=" XFER_SSH_CTR_PROVIDER);
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        (void)state;

        assert_non_null(ours);
        assert_true(EVP_EncryptInit_ex(c, ours, NULL, NULL, NULL));
        assert_int_equal(EVP_CIPHER_CTX_get_key_length(c), 16);
        assert_int_equal(EVP_CIPHER_CTX_get_iv_length(c), 16);
        assert_true(EVP_CIPHER_CTX_set_key_length(c, 32) <= 0);
        EVP_CIPHER_CTX_free(c);
        EVP_CIPHER_free(ours);
}

static void test_install_once(void **state) {
        nm_error err = {};
        (void)state;
        assert_int_equal(xfer_ssh_ctr_install(&err), 0);
        assert_int_equal(xfer_ssh_ctr_install(NULL), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pieces_match_openssl),
                cmocka_unit_test(test_decrypt_in_place),
                cmocka_unit_test(test_new_iv_restarts),
                cmocka_unit_test(test_key_then_iv),
                cmocka_unit_test(test_random_generator_not_ours),
                cmocka_unit_test(test_copy_continues),
                cmocka_unit_test(test_other_algorithms_unchanged),
                cmocka_unit_test(test_key_length_fixed),
                cmocka_unit_test(test_install_once),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
