/* SPDX-License-Identifier: Apache-2.0 */
/* HMAC-SHA256 over the canonical record stream of a checkpoint tree
 * (DESIGN.md): "D\0<path>\0" per directory, "F\0<path>\0<size LE64>" and
 * the bytes per file. The agent uses ckpt's implementation of the same
 * format; this one serves the test tools. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "transfer.h"

struct xfer_hmac_hooks {
        xfer_tree_hooks hooks;
        EVP_MAC *mac;
        EVP_MAC_CTX *ctx;
        bool failed;
};

static int upd(xfer_hmac_hooks *h, const void *p, size_t n, nm_error *err) {
        if (EVP_MAC_update(h->ctx, p, n) != 1) {
                h->failed = true;
                return nm_error_set(err, -EIO, "HMAC-SHA256 update failed");
        }
        return 0;
}

static int record(xfer_hmac_hooks *h, char kind, const char *relpath, nm_error *err) {
        char head[2] = {kind, '\0'};
        int r = upd(h, head, 2, err);
        if (r >= 0)
                r = upd(h, relpath, strlen(relpath) + 1, err);
        return r;
}

static int hook_dir(void *ud, const char *relpath, nm_error *err) {
        return record(ud, 'D', relpath, err);
}

static int hook_file_begin(void *ud, const char *relpath, uint64_t size, nm_error *err) {
        uint8_t le[8];
        int r = record(ud, 'F', relpath, err);
        for (int i = 0; i < 8; i++)
                le[i] = (uint8_t)(size >> (8 * i));
        return r < 0 ? r : upd(ud, le, sizeof(le), err);
}

static int hook_data(void *ud, const void *buf, size_t n, nm_error *err) {
        return upd(ud, buf, n, err);
}

static int hook_finish(void *ud, char ret_hex[XFER_HMAC_HEX_MAX], nm_error *err) {
        xfer_hmac_hooks *h = ud;
        unsigned char md[32];
        size_t len = 0;

        if (h->failed || EVP_MAC_final(h->ctx, md, &len, sizeof(md)) != 1 || len != sizeof(md))
                return nm_error_set(err, -EIO, "HMAC-SHA256 failed");
        for (size_t i = 0; i < len; i++)
                snprintf(ret_hex + 2 * i, 3, "%02x", md[i]);
        return 0;
}

static int hook_mark(void *ud, uint8_t ret_mac[PROTO_SHA256_LEN], nm_error *err) {
        xfer_hmac_hooks *h = ud;
        EVP_MAC_CTX *copy = h->failed ? NULL : EVP_MAC_CTX_dup(h->ctx);
        size_t len = 0;
        int r;

        if (!copy)
                return nm_error_set(err, -EIO, "HMAC-SHA256 failed");
        r = EVP_MAC_final(copy, ret_mac, &len, PROTO_SHA256_LEN) == 1 && len == PROTO_SHA256_LEN
                    ? 0
                    : nm_error_set(err, -EIO, "HMAC-SHA256 failed");
        EVP_MAC_CTX_free(copy);
        return r;
}

int xfer_hmac_hooks_new(const void *key, size_t key_len, xfer_hmac_hooks **ret) {
        OSSL_PARAM params[2] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                OSSL_PARAM_construct_end(),
        };
        xfer_hmac_hooks *h;

        if (!key || key_len == 0 || !ret)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        h->ctx = h->mac ? EVP_MAC_CTX_new(h->mac) : NULL;
        if (!h->ctx || EVP_MAC_init(h->ctx, key, key_len, params) != 1) {
                xfer_hmac_hooks_free(h);
                return -EIO;
        }
        h->hooks = (xfer_tree_hooks){
                .userdata = h,
                .dir = hook_dir,
                .file_begin = hook_file_begin,
                .data = hook_data,
                .finish = hook_finish,
                .mark = hook_mark,
        };
        *ret = h;
        return 0;
}

xfer_hmac_hooks *xfer_hmac_hooks_free(xfer_hmac_hooks *h) {
        if (!h)
                return NULL;
        EVP_MAC_CTX_free(h->ctx);
        EVP_MAC_free(h->mac);
        free(h);
        return NULL;
}

const xfer_tree_hooks *xfer_hmac_hooks_get(xfer_hmac_hooks *h) {
        return &h->hooks;
}
