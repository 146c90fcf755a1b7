/* SPDX-License-Identifier: Apache-2.0 */
/* The page stream's MAC (ps-mac.h). With HMAC-SHA256 the binding is
 * absorbed once into a keyed context, and each frame continues a copy of
 * it; with Poly1305 the binding makes the stream's key, and each frame is
 * one AEAD pass with nothing to encrypt. Either way a frame costs one pass
 * over its own bytes. */
#include <errno.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "ps-mac.h"

static const char *const domain[_PS_MAC_ALG_MAX] = {
        [PS_MAC_HMAC_SHA256] = "nucleus-migrate page stream 1",
        [PS_MAC_POLY1305] = "nucleus-migrate page stream key, poly1305 1",
};

#define FRAME_HEAD_LEN 17 /* kind, number (be64), length (be64) */
#define POLY1305_TAG_LEN 16
#define CHACHA_KEY_LEN 32
#define CHACHA_NONCE_LEN 12

typedef enum frame_kind {
        FRAME_DATA = 1,
        FRAME_END = 2,
        FRAME_ZDATA = 3, /* compressed: the length is the decompressed one, the bytes the wire's */
} frame_kind;

struct ps_mac {
        ps_mac_alg alg;
        EVP_MAC_CTX *bound;   /* keyed, the domain and the binding absorbed */
        EVP_CIPHER_CTX *aead; /* PS_MAC_POLY1305: keyed with the stream's key */
        ps_mac_state state;
        uint64_t frames, bytes;
};

static void put_be64(uint8_t out[8], uint64_t v) {
        for (int i = 7; i >= 0; i--, v >>= 8)
                out[i] = (uint8_t)v;
}

/* Length-prefixed, so that no two bindings read the same. */
static int absorb_part(EVP_MAC_CTX *ctx, const void *p, size_t n) {
        uint8_t len[8];
        put_be64(len, n);
        return EVP_MAC_update(ctx, len, sizeof(len)) == 1 && EVP_MAC_update(ctx, p, n) == 1 ? 0 : -EIO;
}

static int bind_hmac(ps_mac *m, const void *key, size_t key_len, const char *const *parts, size_t n_parts) {
        OSSL_PARAM params[2];
        EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
        int r = 0;

        m->bound = alg ? EVP_MAC_CTX_new(alg) : NULL;
        EVP_MAC_free(alg);
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();
        if (!m->bound || EVP_MAC_init(m->bound, key, key_len, params) != 1)
                r = -EIO;
        if (r == 0)
                r = absorb_part(m->bound, domain[m->alg], strlen(domain[m->alg]));
        for (size_t i = 0; r == 0 && i < n_parts; i++)
                r = absorb_part(m->bound, parts[i], strlen(parts[i]));
        return r;
}

/* The stream's key is the bound HMAC's value; the HMAC is not needed after. */
static int key_aead(ps_mac *m) {
        uint8_t key[CHACHA_KEY_LEN];
        size_t out = 0;
        int r = 0;

        if (EVP_MAC_final(m->bound, key, &out, sizeof(key)) != 1 || out != sizeof(key))
                r = -EIO;
        EVP_MAC_CTX_free(m->bound);
        m->bound = NULL;
        if (r == 0 && (!(m->aead = EVP_CIPHER_CTX_new()) ||
                       EVP_EncryptInit_ex(m->aead, EVP_chacha20_poly1305(), NULL, key, NULL) != 1))
                r = -EIO;
        OPENSSL_cleanse(key, sizeof(key));
        return r;
}

int ps_mac_new(const void *key, size_t key_len, ps_mac_alg alg, const char *const *parts, size_t n_parts,
               ps_mac **ret) {
        ps_mac *m;
        int r;

        if (!key || key_len == 0 || alg < 0 || alg >= _PS_MAC_ALG_MAX || n_parts > PS_MAC_PARTS_MAX ||
            (n_parts && !parts) || !ret)
                return -EINVAL;
        for (size_t i = 0; i < n_parts; i++)
                if (!parts[i])
                        return -EINVAL;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->alg = alg;
        r = bind_hmac(m, key, key_len, parts, n_parts);
        if (r == 0 && alg == PS_MAC_POLY1305)
                r = key_aead(m);
        if (r < 0) {
                ps_mac_free(m);
                return r;
        }
        m->state = PS_MAC_OPEN;
        *ret = m;
        return 0;
}

ps_mac *ps_mac_free(ps_mac *m) {
        if (m) {
                EVP_MAC_CTX_free(m->bound);
                EVP_CIPHER_CTX_free(m->aead);
                free(m);
        }
        return NULL;
}

static int tag_hmac(const ps_mac *m, const uint8_t head[static FRAME_HEAD_LEN], const void *buf, size_t n,
                    uint8_t tag[static PS_MAC_LEN]) {
        size_t out = 0;
        EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(m->bound);
        int r = 0;

        if (!ctx)
                return -ENOMEM;
        if (EVP_MAC_update(ctx, head, FRAME_HEAD_LEN) != 1 || (n && EVP_MAC_update(ctx, buf, n) != 1) ||
            EVP_MAC_final(ctx, tag, &out, PS_MAC_LEN) != 1 || out != PS_MAC_LEN)
                r = -EIO;
        EVP_MAC_CTX_free(ctx);
        return r;
}

static int tag_poly1305(const ps_mac *m, uint64_t number, const uint8_t head[static FRAME_HEAD_LEN], const void *buf,
                        size_t n, uint8_t tag[static PS_MAC_LEN]) {
        uint8_t nonce[CHACHA_NONCE_LEN] = {0}, none[1];
        int len;

        put_be64(nonce + CHACHA_NONCE_LEN - 8, number);
        if (n > INT_MAX)
                return -EINVAL;
        memset(tag, 0, PS_MAC_LEN);
        if (EVP_EncryptInit_ex(m->aead, NULL, NULL, NULL, nonce) != 1 ||
            EVP_EncryptUpdate(m->aead, NULL, &len, head, FRAME_HEAD_LEN) != 1 ||
            (n && EVP_EncryptUpdate(m->aead, NULL, &len, buf, (int)n) != 1) ||
            EVP_EncryptFinal_ex(m->aead, none, &len) != 1 ||
            EVP_CIPHER_CTX_ctrl(m->aead, EVP_CTRL_AEAD_GET_TAG, POLY1305_TAG_LEN, tag) != 1)
                return -EIO;
        return 0;
}

/* The tag of frame number `number` of kind `kind` over buf[0..n). */
static int frame_tag(const ps_mac *m, frame_kind kind, uint64_t number, uint64_t len, const void *buf,
                     size_t n, uint8_t tag[static PS_MAC_LEN]) {
        uint8_t head[FRAME_HEAD_LEN];

        head[0] = (uint8_t)kind;
        put_be64(head + 1, number);
        put_be64(head + 9, len);
        return m->alg == PS_MAC_POLY1305 ? tag_poly1305(m, number, head, buf, n, tag)
                                         : tag_hmac(m, head, buf, n, tag);
}

/* The tag the next frame of this kind must carry; len is what it adds to
 * the stream (buf[0..n) is compressed for FRAME_ZDATA). */
static int next_tag(const ps_mac *m, frame_kind kind, size_t len, const void *buf, size_t n,
                    uint8_t tag[static PS_MAC_LEN]) {
        if (m->state != PS_MAC_OPEN)
                return -EPIPE;
        if (kind == FRAME_END)
                return frame_tag(m, FRAME_END, m->frames, m->bytes, NULL, 0, tag);
        return frame_tag(m, kind, m->frames, len, buf, n, tag);
}

static void advance(ps_mac *m, frame_kind kind, size_t len) {
        if (kind == FRAME_END) {
                m->state = PS_MAC_ENDED;
                return;
        }
        m->frames++;
        m->bytes += len;
}

static int sign(ps_mac *m, frame_kind kind, size_t len, const void *buf, size_t n,
                uint8_t ret_tag[static PS_MAC_LEN]) {
        int r = next_tag(m, kind, len, buf, n, ret_tag);
        if (r < 0)
                return r;
        advance(m, kind, len);
        return 0;
}

static int check(ps_mac *m, frame_kind kind, size_t len, const void *buf, size_t n,
                 const uint8_t tag[static PS_MAC_LEN]) {
        uint8_t want[PS_MAC_LEN];
        int r = next_tag(m, kind, len, buf, n, want);
        if (r < 0)
                return r;
        if (CRYPTO_memcmp(want, tag, PS_MAC_LEN) != 0) {
                m->state = PS_MAC_BROKEN;
                return -EBADMSG;
        }
        advance(m, kind, len);
        return 0;
}

/* An empty data frame would let a peer pad a stream with nothing. */
int ps_mac_sign(ps_mac *m, const void *buf, size_t n, uint8_t ret_tag[static PS_MAC_LEN]) {
        return m && buf && n ? sign(m, FRAME_DATA, n, buf, n, ret_tag) : -EINVAL;
}

int ps_mac_sign_end(ps_mac *m, uint8_t ret_tag[static PS_MAC_LEN]) {
        return m ? sign(m, FRAME_END, 0, NULL, 0, ret_tag) : -EINVAL;
}

int ps_mac_sign_z(ps_mac *m, size_t raw_len, const void *zbuf, size_t zn,
                  uint8_t ret_tag[static PS_MAC_LEN]) {
        return m && raw_len && zbuf && zn ? sign(m, FRAME_ZDATA, raw_len, zbuf, zn, ret_tag) : -EINVAL;
}

int ps_mac_check(ps_mac *m, const void *buf, size_t n, const uint8_t tag[static PS_MAC_LEN]) {
        return m && buf && n && tag ? check(m, FRAME_DATA, n, buf, n, tag) : -EINVAL;
}

int ps_mac_check_end(ps_mac *m, const uint8_t tag[static PS_MAC_LEN]) {
        return m && tag ? check(m, FRAME_END, 0, NULL, 0, tag) : -EINVAL;
}

int ps_mac_check_z(ps_mac *m, size_t raw_len, const void *zbuf, size_t zn,
                   const uint8_t tag[static PS_MAC_LEN]) {
        return m && raw_len && zbuf && zn && tag ? check(m, FRAME_ZDATA, raw_len, zbuf, zn, tag) : -EINVAL;
}

const char *ps_mac_alg_name(ps_mac_alg alg) {
        return alg == PS_MAC_POLY1305 ? "Poly1305" : alg == PS_MAC_HMAC_SHA256 ? "HMAC-SHA256" : "?";
}

ps_mac_alg ps_mac_get_alg(const ps_mac *m) {
        return m ? m->alg : _PS_MAC_ALG_MAX;
}

ps_mac_state ps_mac_get_state(const ps_mac *m) {
        return m ? m->state : PS_MAC_BROKEN;
}

uint64_t ps_mac_frames(const ps_mac *m) {
        return m ? m->frames : 0;
}

uint64_t ps_mac_bytes(const ps_mac *m) {
        return m ? m->bytes : 0;
}
