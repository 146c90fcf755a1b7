/* SPDX-License-Identifier: Apache-2.0 */
/* AES-CTR for libssh2, a keystream block at a time: see ssh-ctr.h. */
#include "ssh-ctr.h"

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>

#include "macro.h"

/* Keystream asked of OpenSSL at once: big enough that its per-call cost
 * vanishes, small enough to stay in L1 beside the packet. */
#define CTR_KEYSTREAM 4096u
#define CTR_IV_LEN 16u

typedef struct ctr_alg {
        const char *name;
        size_t key_len;
        EVP_CIPHER *inner; /* the default provider's, fetched at install */
} ctr_alg;

static ctr_alg ctr_algs[] = {
        {"AES-128-CTR", 16, NULL},
        {"AES-192-CTR", 24, NULL},
        {"AES-256-CTR", 32, NULL},
};

typedef enum ctr_phase {
        CTR_UNUSED,    /* no keystream fetched since the counter was set */
        CTR_STREAMING, /* keystream fetched: the inner counter runs ahead */
        CTR_NEEDS_IV,  /* re-initialised without a counter while streaming */
} ctr_phase;

typedef struct ctr_ctx {
        const ctr_alg *alg;
        EVP_CIPHER_CTX *inner; /* advances CTR_KEYSTREAM bytes per refill */
        ctr_phase phase;
        size_t used; /* of ks; CTR_KEYSTREAM: none left */
        unsigned char ks[CTR_KEYSTREAM];
} ctr_ctx;

static atomic_ulong contexts_made;

static ctr_ctx *ctr_new(const ctr_alg *alg) {
        ctr_ctx *c = OPENSSL_zalloc(sizeof(*c));

        if (!c)
                return NULL;
        atomic_fetch_add(&contexts_made, 1);
        c->alg = alg;
        c->used = CTR_KEYSTREAM;
        c->inner = EVP_CIPHER_CTX_new();
        /* Always the encrypting direction: it only ever makes keystream. */
        if (!c->inner || !EVP_EncryptInit_ex(c->inner, alg->inner, NULL, NULL, NULL)) {
                EVP_CIPHER_CTX_free(c->inner);
                OPENSSL_free(c);
                return NULL;
        }
        return c;
}

static void *ctr128_new(void *provctx) {
        (void)provctx;
        return ctr_new(&ctr_algs[0]);
}
static void *ctr192_new(void *provctx) {
        (void)provctx;
        return ctr_new(&ctr_algs[1]);
}
static void *ctr256_new(void *provctx) {
        (void)provctx;
        return ctr_new(&ctr_algs[2]);
}

static void ctr_free(void *vctx) {
        ctr_ctx *c = vctx;

        if (!c)
                return;
        EVP_CIPHER_CTX_free(c->inner);
        OPENSSL_clear_free(c, sizeof(*c));
}

static void *ctr_dup(void *vctx) {
        const ctr_ctx *src = vctx;
        ctr_ctx *c = ctr_new(src->alg);

        if (!c)
                return NULL;
        if (!EVP_CIPHER_CTX_copy(c->inner, src->inner)) {
                ctr_free(c);
                return NULL;
        }
        memcpy(c->ks, src->ks, sizeof(c->ks));
        c->used = src->used;
        c->phase = src->phase;
        return c;
}

/* A new key or counter: whatever keystream is left belongs to the old one.
 * Re-initialised without a counter once keystream was fetched, OpenSSL's
 * own would go on from where its caller stopped, ours from up to 4 KiB
 * further: every byte is refused until a counter is set, rather than
 * encrypted differently. (libssh2 sets key and counter together; a key
 * first and the counter in a second call, before any byte, is fine.) */
static int ctr_init(void *vctx, const unsigned char *key, size_t key_len, const unsigned char *iv,
                    size_t iv_len, const OSSL_PARAM params[]) {
        ctr_ctx *c = vctx;

        if (params && params[0].key)
                return 0; /* nothing is settable */
        if ((key && key_len != c->alg->key_len) || (iv && iv_len != CTR_IV_LEN))
                return 0;
        OPENSSL_cleanse(c->ks, sizeof(c->ks));
        c->used = CTR_KEYSTREAM;
        if (iv)
                c->phase = CTR_UNUSED;
        else if (c->phase == CTR_STREAMING)
                c->phase = CTR_NEEDS_IV;
        return EVP_EncryptInit_ex(c->inner, NULL, NULL, key, iv);
}

static int ctr_refill(ctr_ctx *c) {
        int n = 0;

        memset(c->ks, 0, sizeof(c->ks));
        if (!EVP_EncryptUpdate(c->inner, c->ks, &n, c->ks, (int)sizeof(c->ks)) || n != (int)sizeof(c->ks))
                return 0;
        c->used = 0;
        c->phase = CTR_STREAMING;
        return 1;
}

/* out may be in itself (EVP allows it): each word is read before it is
 * written. */
static void xor_into(unsigned char *out, const unsigned char *in, const unsigned char *ks, size_t n) {
        size_t i = 0;

        for (; i + 8 <= n; i += 8) {
                uint64_t a, k;
                memcpy(&a, in + i, 8);
                memcpy(&k, ks + i, 8);
                a ^= k;
                memcpy(out + i, &a, 8);
        }
        for (; i < n; i++)
                out[i] = in[i] ^ ks[i];
}

static int ctr_cipher(void *vctx, unsigned char *out, size_t *out_len, size_t out_size, const unsigned char *in,
                      size_t in_len) {
        ctr_ctx *c = vctx;
        size_t done = 0;

        if (c->phase == CTR_NEEDS_IV || out_size < in_len || (in_len && (!out || !in)))
                return 0;
        while (done < in_len) {
                size_t n;
                if (c->used == CTR_KEYSTREAM && !ctr_refill(c))
                        return 0;
                n = MIN(in_len - done, (size_t)CTR_KEYSTREAM - c->used);
                xor_into(out + done, in + done, c->ks + c->used, n);
                c->used += n;
                done += n;
        }
        *out_len = in_len;
        return 1;
}

static int ctr_final(void *vctx, unsigned char *out, size_t *out_len, size_t out_size) {
        (void)vctx;
        (void)out;
        (void)out_size;
        *out_len = 0;
        return 1;
}

static int set_size(OSSL_PARAM params[], const char *key, size_t v) {
        OSSL_PARAM *p = OSSL_PARAM_locate(params, key);
        return !p || OSSL_PARAM_set_size_t(p, v);
}

static int set_int(OSSL_PARAM params[], const char *key, int v) {
        OSSL_PARAM *p = OSSL_PARAM_locate(params, key);
        return !p || OSSL_PARAM_set_int(p, v);
}

/* What EVP caches of a cipher when it is fetched. */
static int ctr_get_params(OSSL_PARAM params[], const ctr_alg *alg) {
        OSSL_PARAM *mode = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_MODE);

        return (!mode || OSSL_PARAM_set_uint(mode, EVP_CIPH_CTR_MODE)) &&
               set_size(params, OSSL_CIPHER_PARAM_KEYLEN, alg->key_len) &&
               set_size(params, OSSL_CIPHER_PARAM_IVLEN, CTR_IV_LEN) &&
               set_size(params, OSSL_CIPHER_PARAM_BLOCK_SIZE, 1) && set_int(params, OSSL_CIPHER_PARAM_AEAD, 0) &&
               set_int(params, OSSL_CIPHER_PARAM_CUSTOM_IV, 0) && set_int(params, OSSL_CIPHER_PARAM_CTS, 0) &&
               set_int(params, OSSL_CIPHER_PARAM_TLS1_MULTIBLOCK, 0) &&
               set_int(params, OSSL_CIPHER_PARAM_HAS_RAND_KEY, 0);
}

static int ctr128_get_params(OSSL_PARAM params[]) {
        return ctr_get_params(params, &ctr_algs[0]);
}
static int ctr192_get_params(OSSL_PARAM params[]) {
        return ctr_get_params(params, &ctr_algs[1]);
}
static int ctr256_get_params(OSSL_PARAM params[]) {
        return ctr_get_params(params, &ctr_algs[2]);
}

static int ctr_get_ctx_params(void *vctx, OSSL_PARAM params[]) {
        const ctr_ctx *c = vctx;
        return set_size(params, OSSL_CIPHER_PARAM_KEYLEN, c->alg->key_len) &&
               set_size(params, OSSL_CIPHER_PARAM_IVLEN, CTR_IV_LEN);
}

static int ctr_set_ctx_params(void *vctx, const OSSL_PARAM params[]) {
        (void)vctx;
        return !params || !params[0].key;
}

static const OSSL_PARAM ctr_gettable[] = {
        OSSL_PARAM_uint(OSSL_CIPHER_PARAM_MODE, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_KEYLEN, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_IVLEN, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_BLOCK_SIZE, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_AEAD, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_CUSTOM_IV, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_CTS, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_TLS1_MULTIBLOCK, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_HAS_RAND_KEY, NULL),
        OSSL_PARAM_END,
};
static const OSSL_PARAM ctr_ctx_gettable[] = {
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_KEYLEN, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_IVLEN, NULL),
        OSSL_PARAM_END,
};
static const OSSL_PARAM ctr_ctx_settable[] = {OSSL_PARAM_END};

static const OSSL_PARAM *ctr_gettable_params(void *provctx) {
        (void)provctx;
        return ctr_gettable;
}
static const OSSL_PARAM *ctr_gettable_ctx_params(void *vctx, void *provctx) {
        (void)vctx;
        (void)provctx;
        return ctr_ctx_gettable;
}
static const OSSL_PARAM *ctr_settable_ctx_params(void *vctx, void *provctx) {
        (void)vctx;
        (void)provctx;
        return ctr_ctx_settable;
}

#define FN(id, f) {id, (void (*)(void))(f)}
#define CTR_DISPATCH(newctx, get_params)                                                                        \
        {                                                                                                       \
                FN(OSSL_FUNC_CIPHER_NEWCTX, newctx), FN(OSSL_FUNC_CIPHER_FREECTX, ctr_free),                    \
                        FN(OSSL_FUNC_CIPHER_DUPCTX, ctr_dup), FN(OSSL_FUNC_CIPHER_ENCRYPT_INIT, ctr_init),      \
                        FN(OSSL_FUNC_CIPHER_DECRYPT_INIT, ctr_init), FN(OSSL_FUNC_CIPHER_UPDATE, ctr_cipher),   \
                        FN(OSSL_FUNC_CIPHER_FINAL, ctr_final), FN(OSSL_FUNC_CIPHER_CIPHER, ctr_cipher),         \
                        FN(OSSL_FUNC_CIPHER_GET_PARAMS, get_params),                                            \
                        FN(OSSL_FUNC_CIPHER_GET_CTX_PARAMS, ctr_get_ctx_params),                                \
                        FN(OSSL_FUNC_CIPHER_SET_CTX_PARAMS, ctr_set_ctx_params),                                \
                        FN(OSSL_FUNC_CIPHER_GETTABLE_PARAMS, ctr_gettable_params),                              \
                        FN(OSSL_FUNC_CIPHER_GETTABLE_CTX_PARAMS, ctr_gettable_ctx_params),                      \
                        FN(OSSL_FUNC_CIPHER_SETTABLE_CTX_PARAMS, ctr_settable_ctx_params), {0, NULL},           \
        }

static const OSSL_DISPATCH ctr128_fns[] = CTR_DISPATCH(ctr128_new, ctr128_get_params);
static const OSSL_DISPATCH ctr192_fns[] = CTR_DISPATCH(ctr192_new, ctr192_get_params);
static const OSSL_DISPATCH ctr256_fns[] = CTR_DISPATCH(ctr256_new, ctr256_get_params);

#define CTR_PROPS "provider=" XFER_SSH_CTR_PROVIDER
static const OSSL_ALGORITHM ctr_ciphers[] = {
        {"AES-128-CTR", CTR_PROPS, ctr128_fns, "AES-128-CTR, keystream 4 KiB at a time"},
        {"AES-192-CTR", CTR_PROPS, ctr192_fns, "AES-192-CTR, keystream 4 KiB at a time"},
        {"AES-256-CTR", CTR_PROPS, ctr256_fns, "AES-256-CTR, keystream 4 KiB at a time"},
        {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *provider_query(void *provctx, int operation_id, int *no_cache) {
        (void)provctx;
        *no_cache = 0;
        return operation_id == OSSL_OP_CIPHER ? ctr_ciphers : NULL;
}

static int provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
                         void **provctx) {
        static const OSSL_DISPATCH fns[] = {
                FN(OSSL_FUNC_PROVIDER_QUERY_OPERATION, provider_query),
                {0, NULL},
        };
        (void)handle;
        (void)in;
        *out = fns;
        *provctx = NULL;
        return 1;
}

/* Ours against OpenSSL's own, for every key size, in uneven pieces (the
 * 16-byte calls libssh2 makes, and a refill in the middle of one): a
 * provider that is not exactly AES-CTR is never preferred. */
static int self_test(nm_error *err) {
        static const size_t pieces[] = {16, 16, 5, 4096, 11, 16, 3000, 1};
        unsigned char key[32], iv[CTR_IV_LEN], plain[8192], want[8192], got[8192];
        int ok = 1;

        for (size_t i = 0; i < sizeof(plain); i++)
                plain[i] = (unsigned char)(i * 7 + 3);
        memset(key, 0x5a, sizeof(key));
        memset(iv, 0xff, sizeof(iv)); /* the counter wraps on the first block */
        for (size_t a = 0; ok && a < ARRAY_SIZE(ctr_algs); a++) {
                EVP_CIPHER *ours = EVP_CIPHER_fetch(NULL, ctr_algs[a].name, CTR_PROPS);
                EVP_CIPHER_CTX *c1 = EVP_CIPHER_CTX_new(), *c2 = EVP_CIPHER_CTX_new();
                size_t at = 0;
                int n;

                ok = ours && c1 && c2 && EVP_EncryptInit_ex(c1, ctr_algs[a].inner, NULL, key, iv) &&
                     EVP_EncryptUpdate(c1, want, &n, plain, (int)sizeof(plain)) &&
                     EVP_EncryptInit_ex(c2, ours, NULL, key, iv);
                for (size_t p = 0; ok && p < ARRAY_SIZE(pieces); p++) {
                        ok = EVP_Cipher(c2, got + at, plain + at, (unsigned)pieces[p]) > 0;
                        at += pieces[p];
                }
                ok = ok && CRYPTO_memcmp(got, want, at) == 0;
                EVP_CIPHER_CTX_free(c1);
                EVP_CIPHER_CTX_free(c2);
                EVP_CIPHER_free(ours);
                if (!ok)
                        return nm_error_set(err, -EIO, "%s from provider %s differs from OpenSSL's own",
                                            ctr_algs[a].name, XFER_SSH_CTR_PROVIDER);
        }
        return 0;
}

static int install_result;
static nm_error install_err;
static OSSL_PROVIDER *ctr_provider;

/* Registered after OpenSSL's own exit handler, so it runs first: OpenSSL's
 * cleanup then frees the provider with everything else. */
static void unload_at_exit(void) {
        (void)OSSL_PROVIDER_unload(TAKE_PTR(ctr_provider));
}

static int install(nm_error *err) {
        for (size_t a = 0; a < ARRAY_SIZE(ctr_algs); a++) {
                ctr_algs[a].inner = EVP_CIPHER_fetch(NULL, ctr_algs[a].name, "provider=default");
                if (!ctr_algs[a].inner)
                        return nm_error_set(err, -ENOENT, "OpenSSL's default provider has no %s",
                                            ctr_algs[a].name);
        }
        if (!OSSL_PROVIDER_add_builtin(NULL, XFER_SSH_CTR_PROVIDER, provider_init))
                return nm_error_set(err, -EIO, "cannot register the OpenSSL provider %s", XFER_SSH_CTR_PROVIDER);
        /* retain_fallbacks: loading ours must not stop the default provider
         * from loading as it would have. */
        ctr_provider = OSSL_PROVIDER_try_load(NULL, XFER_SSH_CTR_PROVIDER, 1);
        if (!ctr_provider)
                return nm_error_set(err, -EIO, "cannot load the OpenSSL provider %s", XFER_SSH_CTR_PROVIDER);
        (void)atexit(unload_at_exit);
        int r = self_test(err);
        if (r < 0)
                return r;
        /* OpenSSL's random generator (CTR-DRBG) fetches AES-256-CTR too: it
         * is pinned to the default provider, so that no random byte of the
         * process ever depends on ours. Only possible before its first use
         * (each thread's generator is made later, from the same settings);
         * after it, ours is not preferred at all. */
        if (!RAND_set_DRBG_type(NULL, NULL, "provider=default", NULL, NULL))
                return nm_error_set(err, -EBUSY,
                                    "OpenSSL's random generator was set up before the provider %s could be kept "
                                    "out of it",
                                    XFER_SSH_CTR_PROVIDER);
        /* Optional ("?"): a fetch ours cannot serve matches as before. */
        if (!EVP_set_default_properties(NULL, "?" CTR_PROPS))
                return nm_error_set(err, -EIO, "cannot make OpenSSL prefer the provider %s", XFER_SSH_CTR_PROVIDER);
        return 0;
}

static void install_once(void) {
        install_result = install(&install_err);
}

int xfer_ssh_ctr_install(nm_error *err) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        pthread_once(&once, install_once);
        if (install_result < 0 && err)
                *err = install_err;
        return install_result;
}

unsigned long xfer_ssh_ctr_contexts(void) {
        return atomic_load(&contexts_made);
}
