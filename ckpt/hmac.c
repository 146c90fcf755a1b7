/* SPDX-License-Identifier: Apache-2.0 */
/* The checkpoint tree HMAC, fed record by record: the canonical order, the
 * record encoding, and the constant-time comparison. */
#include <ctype.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt-internal.h"

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF): nucleus
 * hashes names as Rust strings and refuses anything else. */
static bool utf8_valid(const unsigned char *s, size_t n) {
        size_t i = 0;
        while (i < n) {
                unsigned char c = s[i];
                size_t len;
                uint32_t cp, min;
                if (c < 0x80) {
                        i++;
                        continue;
                }
                if ((c & 0xe0) == 0xc0)
                        len = 2, cp = c & 0x1f, min = 0x80;
                else if ((c & 0xf0) == 0xe0)
                        len = 3, cp = c & 0x0f, min = 0x800;
                else if ((c & 0xf8) == 0xf0)
                        len = 4, cp = c & 0x07, min = 0x10000;
                else
                        return false;
                if (i + len > n)
                        return false;
                for (size_t k = 1; k < len; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += len;
        }
        return true;
}

int ckpt_relpath_check(const char *relpath, nm_error *err) {
        size_t n;

        if (!relpath || !relpath[0])
                return nm_error_set(err, -EINVAL, "empty path in checkpoint tree");
        n = strlen(relpath);
        if (n >= CKPT_TREE_MAX_PATH)
                return nm_error_set(err, -EINVAL, "path in checkpoint tree is too long (%zu bytes)", n);
        if (!utf8_valid((const unsigned char *)relpath, n))
                return nm_error_set(err, -EINVAL, "path in checkpoint tree is not valid UTF-8");
        for (const char *p = relpath; *p;) {
                const char *e = strchrnul(p, '/');
                size_t len = (size_t)(e - p);
                if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
                        return nm_error_set(err, -EINVAL, "malformed path '%s' in checkpoint tree", relpath);
                if (len > NAME_MAX)
                        return nm_error_set(err, -EINVAL, "name too long in '%.64s...'", relpath);
                if (*e == '/' && e[1] == '\0')
                        return nm_error_set(err, -EINVAL, "malformed path '%s' in checkpoint tree", relpath);
                p = *e ? e + 1 : e;
        }
        return 0;
}

/* One open directory of the walk: its name and the last name seen in it. */
typedef struct order_level {
        char *name; /* NULL for the top */
        char *last; /* NULL before its first entry */
} order_level;

struct ckpt_tree_order {
        order_level levels[CKPT_TREE_MAX_DEPTH + 1];
        size_t depth; /* open directories below the top */
};

int ckpt_tree_order_new(ckpt_tree_order **ret) {
        ckpt_tree_order *o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

static void order_pop_to(ckpt_tree_order *o, size_t depth) {
        while (o->depth > depth) {
                order_level *l = &o->levels[o->depth];
                free(l->name);
                free(l->last);
                *l = (order_level){};
                o->depth--;
        }
}

ckpt_tree_order *ckpt_tree_order_free(ckpt_tree_order *o) {
        if (!o)
                return NULL;
        order_pop_to(o, 0);
        free(o->levels[0].last);
        free(o);
        return NULL;
}

/* The parent chain of a record must be exactly the directories open right
 * now (an ancestor closed earlier cannot reopen: that is what depth first
 * means), and within its directory a name must sort after its predecessor. */
int ckpt_tree_order_next(ckpt_tree_order *o, ckpt_entry_type type, const char *relpath, nm_error *err) {
        _cleanup_free_ char *copy = NULL;
        char *comp[CKPT_TREE_MAX_DEPTH + 1];
        size_t n = 0;
        char *save = NULL;
        int r;

        if (type != CKPT_ENTRY_DIR && type != CKPT_ENTRY_FILE)
                return nm_error_set(err, -EINVAL, "bad record type in checkpoint tree");
        r = ckpt_relpath_check(relpath, err);
        if (r < 0) {
                if (err)
                        err->code = -EBADMSG;
                return -EBADMSG;
        }
        if (strcmp(relpath, CKPT_HMAC_FILE) == 0)
                return nm_error_set(err, -EBADMSG, "'%s' at the top of a checkpoint is not part of the tree",
                                    CKPT_HMAC_FILE);
        copy = strdup(relpath);
        if (!copy)
                return -ENOMEM;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                if (n > CKPT_TREE_MAX_DEPTH)
                        return nm_error_set(err, -EBADMSG, "'%s' is nested too deeply", relpath);
                comp[n++] = c;
        }
        if (n == 0)
                return nm_error_set(err, -EBADMSG, "empty path in a checkpoint tree");
        size_t parent_depth = n - 1;
        if (parent_depth > o->depth)
                return nm_error_set(err, -EBADMSG, "'%s' comes before its directory", relpath);
        for (size_t i = 0; i < parent_depth; i++)
                if (strcmp(o->levels[i + 1].name, comp[i]) != 0)
                        return nm_error_set(err, -EBADMSG,
                                            "'%s' is out of order: its directory was already closed",
                                            relpath);
        order_level *parent = &o->levels[parent_depth];
        /* Bytewise, as Rust sorts names; strcmp compares as unsigned char. */
        if (parent->last && strcmp(comp[n - 1], parent->last) <= 0)
                return nm_error_set(err, -EBADMSG, "'%s' is out of order (after '%s' in the same directory)",
                                    relpath, parent->last);
        char *last = strdup(comp[n - 1]);
        if (!last)
                return -ENOMEM;
        order_pop_to(o, parent_depth);
        free(parent->last);
        parent->last = last;
        if (type == CKPT_ENTRY_DIR) {
                if (o->depth >= CKPT_TREE_MAX_DEPTH)
                        return nm_error_set(err, -EBADMSG, "'%s' is nested too deeply", relpath);
                char *name = strdup(comp[n - 1]);
                if (!name)
                        return -ENOMEM;
                o->depth++;
                o->levels[o->depth] = (order_level){.name = name};
        }
        return 0;
}

struct ckpt_hmac {
        EVP_MAC_CTX *ctx;
        ckpt_tree_order *order;
        bool in_file;
        uint64_t remaining; /* bytes of the current file still expected */
        char *file;         /* its relpath, for messages */
        int failed;         /* first error; every later call returns it */
        bool finished;
};

int ckpt_hmac_new(const void *key, size_t key_len, ckpt_hmac **ret) {
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h = NULL;
        EVP_MAC *mac = NULL;
        OSSL_PARAM params[2];
        int r;

        if (!key || key_len == 0)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        r = ckpt_tree_order_new(&h->order);
        if (r < 0)
                return r;
        mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (!mac)
                return -EIO;
        h->ctx = EVP_MAC_CTX_new(mac);
        EVP_MAC_free(mac);
        if (!h->ctx)
                return -ENOMEM;
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();
        if (EVP_MAC_init(h->ctx, key, key_len, params) != 1)
                return -EIO;
        *ret = TAKE_PTR(h);
        return 0;
}

int ckpt_binding(const void *key, size_t key_len, const char *const *parts, size_t n_parts,
                 const char *tree_hex, char ret_hex[static CKPT_HMAC_HEX_LEN + 1]) {
        static const char tag[] = "nucleus-migrate binding 1";
        static const char hexdig[] = "0123456789abcdef";
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_MAC *alg;
        EVP_MAC_CTX *ctx;
        OSSL_PARAM params[2];
        size_t out = 0;
        bool ok;

        if (!key || key_len == 0 || !tree_hex || n_parts > CKPT_BINDING_PARTS_MAX || (n_parts && !parts))
                return -EINVAL;
        for (size_t i = 0; i < n_parts; i++)
                if (!parts[i])
                        return -EINVAL;
        alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
        ctx = alg ? EVP_MAC_CTX_new(alg) : NULL;
        EVP_MAC_free(alg);
        if (!ctx)
                return -ENOMEM;
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();
        /* Each string with its NUL: no two lists of parts feed the same bytes. */
        ok = EVP_MAC_init(ctx, key, key_len, params) == 1 &&
             EVP_MAC_update(ctx, (const uint8_t *)tag, sizeof(tag)) == 1;
        for (size_t i = 0; ok && i < n_parts; i++)
                ok = EVP_MAC_update(ctx, (const uint8_t *)parts[i], strlen(parts[i]) + 1) == 1;
        ok = ok && EVP_MAC_update(ctx, (const uint8_t *)tree_hex, strlen(tree_hex) + 1) == 1 &&
             EVP_MAC_final(ctx, mac, &out, sizeof(mac)) == 1 && out == CKPT_HMAC_HEX_LEN / 2;
        EVP_MAC_CTX_free(ctx);
        if (!ok)
                return -EIO;
        for (len = 0; len < out; len++) {
                ret_hex[2 * len] = hexdig[mac[len] >> 4];
                ret_hex[2 * len + 1] = hexdig[mac[len] & 15];
        }
        ret_hex[2 * out] = '\0';
        return 0;
}

ckpt_hmac *ckpt_hmac_free(ckpt_hmac *h) {
        if (!h)
                return NULL;
        EVP_MAC_CTX_free(h->ctx);
        ckpt_tree_order_free(h->order);
        free(h->file);
        free(h);
        return NULL;
}

static int hmac_fail(ckpt_hmac *h, int r) {
        if (!h->failed)
                h->failed = r;
        return r;
}

static int hmac_feed(ckpt_hmac *h, const void *buf, size_t n) {
        if (n > 0 && EVP_MAC_update(h->ctx, buf, n) != 1)
                return hmac_fail(h, -EIO);
        return 0;
}

static int hmac_ready(ckpt_hmac *h, nm_error *err) {
        if (h->failed)
                return nm_error_set(err, h->failed, "checkpoint HMAC already failed");
        if (h->finished)
                return nm_error_set(err, -EINVAL, "checkpoint HMAC already finished");
        if (h->in_file && h->remaining > 0)
                return hmac_fail(h, nm_error_set(err, -EBADMSG,
                                                 "file '%s' ended %llu bytes short of its announced size",
                                                 h->file, (unsigned long long)h->remaining));
        h->in_file = false;
        return 0;
}

static int hmac_record(ckpt_hmac *h, ckpt_entry_type type, const char *relpath, nm_error *err) {
        const char *tag = type == CKPT_ENTRY_DIR ? "D" : "F";
        int r;

        r = hmac_ready(h, err);
        if (r < 0)
                return r;
        r = ckpt_tree_order_next(h->order, type, relpath, err);
        if (r < 0)
                return hmac_fail(h, r);
        /* "D"/"F", NUL, path, NUL: strings fed with their terminating NUL. */
        r = hmac_feed(h, tag, 2);
        if (r >= 0)
                r = hmac_feed(h, relpath, strlen(relpath) + 1);
        return r;
}

int ckpt_hmac_dir(ckpt_hmac *h, const char *relpath, nm_error *err) {
        return hmac_record(h, CKPT_ENTRY_DIR, relpath, err);
}

int ckpt_hmac_file_begin(ckpt_hmac *h, const char *relpath, uint64_t size, nm_error *err) {
        uint8_t le[8];
        int r;

        r = hmac_record(h, CKPT_ENTRY_FILE, relpath, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < 8; i++)
                le[i] = (uint8_t)(size >> (8 * i));
        r = hmac_feed(h, le, sizeof(le));
        if (r < 0)
                return r;
        free(h->file);
        h->file = strdup(relpath);
        if (!h->file)
                return hmac_fail(h, -ENOMEM);
        h->in_file = true;
        h->remaining = size;
        return 0;
}

int ckpt_hmac_update(ckpt_hmac *h, const void *buf, size_t n, nm_error *err) {
        if (h->failed)
                return nm_error_set(err, h->failed, "checkpoint HMAC already failed");
        if (!h->in_file || h->finished)
                return hmac_fail(h, nm_error_set(err, -EINVAL, "file bytes outside of a file record"));
        if (n > h->remaining)
                return hmac_fail(h, nm_error_set(err, -EFBIG, "file '%s' is longer than its announced size",
                                                 h->file));
        h->remaining -= n;
        return hmac_feed(h, buf, n);
}

int ckpt_hmac_mark(ckpt_hmac *h, uint8_t ret_mac[static CKPT_HMAC_HEX_LEN / 2], nm_error *err) {
        EVP_MAC_CTX *copy;
        size_t len = 0;
        int r;

        r = hmac_ready(h, err);
        if (r < 0)
                return r;
        /* A copy of the state finishes; the walk goes on from the original. */
        copy = EVP_MAC_CTX_dup(h->ctx);
        if (!copy)
                return nm_error_set(err, -ENOMEM, "cannot copy the HMAC state");
        r = EVP_MAC_final(copy, ret_mac, &len, CKPT_HMAC_HEX_LEN / 2) == 1 && len == CKPT_HMAC_HEX_LEN / 2
                    ? 0
                    : nm_error_set(err, -EIO, "HMAC-SHA256 computation failed");
        EVP_MAC_CTX_free(copy);
        return r;
}

int ckpt_hmac_final(ckpt_hmac *h, char ret_hex[static CKPT_HMAC_HEX_LEN + 1], nm_error *err) {
        static const char hex[] = "0123456789abcdef";
        unsigned char md[EVP_MAX_MD_SIZE];
        size_t len = 0;
        int r;

        r = hmac_ready(h, err);
        if (r < 0)
                return r;
        if (EVP_MAC_final(h->ctx, md, &len, sizeof(md)) != 1 || len != CKPT_HMAC_HEX_LEN / 2)
                return hmac_fail(h, nm_error_set(err, -EIO, "HMAC-SHA256 computation failed"));
        h->finished = true;
        for (size_t i = 0; i < len; i++) {
                ret_hex[2 * i] = hex[md[i] >> 4];
                ret_hex[2 * i + 1] = hex[md[i] & 0xf];
        }
        ret_hex[CKPT_HMAC_HEX_LEN] = '\0';
        OPENSSL_cleanse(md, sizeof(md));
        return 0;
}

int ckpt_hmac_compare(const char *file_text, size_t len, const char actual_hex[static CKPT_HMAC_HEX_LEN + 1],
                      nm_error *err) {
        const char *s = file_text, *e = file_text + len;

        /* Rust's str::trim: leading and trailing whitespace. */
        while (s < e && isspace((unsigned char)*s))
                s++;
        while (e > s && isspace((unsigned char)e[-1]))
                e--;
        if (s == e)
                return nm_error_set(err, -EBADMSG, "%s is empty", CKPT_HMAC_FILE);
        if ((size_t)(e - s) != CKPT_HMAC_HEX_LEN || memchr(s, '\0', (size_t)(e - s)))
                return nm_error_set(err, -EBADMSG,
                                    "HMAC mismatch (expected a malformed value of %zu bytes, got %s)",
                                    (size_t)(e - s), actual_hex);
        if (CRYPTO_memcmp(s, actual_hex, CKPT_HMAC_HEX_LEN) != 0)
                return nm_error_set(err, -EBADMSG, "HMAC mismatch (expected %.64s, got %s)", s, actual_hex);
        return 0;
}
