/* SPDX-License-Identifier: Apache-2.0 */
/* zstd for DATA payloads (ZDATA, feature "zstd"). Each payload is one
 * self-contained zstd frame that records its content size; the receiver
 * decodes it into a buffer of exactly the announced size, so a hostile
 * frame can neither grow memory nor write past the buffer. And when a
 * sender tries it at all (proto_zbackoff), for both streams. */
#include <stdlib.h>
#include <sys/param.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "macro.h"
#include "proto.h"

/* Our frames hold at most PROTO_DATA_MAX bytes: no window beyond it. */
#define ZDATA_WINDOW_LOG_MAX 20

struct proto_zctx {
        ZSTD_CCtx *c;
        ZSTD_DCtx *d;
        int level;
};

int proto_zctx_new(int level, proto_zctx **ret) {
        proto_zctx *z;

        if (!ret || level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
                return -EINVAL;
        z = calloc(1, sizeof(*z));
        if (!z)
                return -ENOMEM;
        z->level = level;
        *ret = z;
        return 0;
}

proto_zctx *proto_zctx_free(proto_zctx *z) {
        if (!z)
                return NULL;
        ZSTD_freeCCtx(z->c);
        ZSTD_freeDCtx(z->d);
        free(z);
        return NULL;
}

int proto_zdata_compress(proto_zctx *z, const void *src, size_t n, void *dst, size_t *ret_len) {
        size_t cap, r;

        if (!z || !src || !dst || !ret_len || n == 0 || n > PROTO_DATA_MAX)
                return -EINVAL;
        if (!z->c) {
                z->c = ZSTD_createCCtx();
                if (!z->c)
                        return -ENOMEM;
                if (ZSTD_isError(ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, z->level)) ||
                    ZSTD_isError(ZSTD_CCtx_setParameter(z->c, ZSTD_c_contentSizeFlag, 1)) ||
                    ZSTD_isError(ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 0)))
                        return -EINVAL;
        }
        /* A destination smaller than the saving we want makes zstd give up
         * on payloads that do not compress (random bytes) by itself. */
        cap = n - PROTO_ZDATA_MIN_SAVING(n);
        r = ZSTD_compress2(z->c, dst, cap, src, n);
        if (ZSTD_isError(r)) {
                if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall) {
                        *ret_len = 0;
                        return 0;
                }
                return -EIO;
        }
        *ret_len = r;
        return 0;
}

bool proto_zbackoff_try(proto_zbackoff *b, size_t n) {
        if (n < b->probe_min || b->left == 0)
                return true;
        b->left--;
        b->untried++;
        return false;
}

void proto_zbackoff_tried(proto_zbackoff *b, size_t n, bool paid) {
        if (n < b->probe_min)
                return;
        if (paid)
                b->wait = 0;
        else if (b->wait < b->skip_max)
                b->wait = b->wait ? MIN(2 * b->wait, b->skip_max) : 1;
        b->left = b->wait;
}

void proto_zbackoff_try_next(proto_zbackoff *b) {
        b->left = 0;
}

int proto_zdata_decompress(proto_zctx *z, const proto_zdata *zd, void *dst, size_t cap, nm_error *err) {
        unsigned long long content;
        size_t frame, r;

        if (!z || !zd || !dst)
                return -EINVAL;
        if (zd->size == 0 || zd->size > PROTO_DATA_MAX || zd->size > cap)
                return nm_error_set(err, -EBADMSG, "ZDATA: size %u is out of range", zd->size);
        if (!z->d) {
                z->d = ZSTD_createDCtx();
                if (!z->d)
                        return nm_error_set(err, -ENOMEM, "ZDATA: out of memory");
                if (ZSTD_isError(ZSTD_DCtx_setParameter(z->d, ZSTD_d_windowLogMax, ZDATA_WINDOW_LOG_MAX)))
                        return nm_error_set(err, -EIO, "ZDATA: cannot set up zstd");
        }
        /* Exactly one frame that says how much it holds: what follows it
         * would be decoded too by ZSTD_decompressDCtx(). */
        frame = ZSTD_findFrameCompressedSize(zd->data.ptr, zd->data.len);
        if (ZSTD_isError(frame) || frame != zd->data.len)
                return nm_error_set(err, -EBADMSG, "ZDATA: the payload is not exactly one zstd frame");
        content = ZSTD_getFrameContentSize(zd->data.ptr, zd->data.len);
        if (content != zd->size)
                return nm_error_set(err, -EBADMSG,
                                    "ZDATA: the zstd frame holds %s bytes, the message announces %u",
                                    content == ZSTD_CONTENTSIZE_UNKNOWN ? "an unknown number of"
                                    : content == ZSTD_CONTENTSIZE_ERROR ? "a malformed number of"
                                                                        : "another number of",
                                    zd->size);
        r = ZSTD_decompressDCtx(z->d, dst, zd->size, zd->data.ptr, zd->data.len);
        if (ZSTD_isError(r))
                return nm_error_set(err, -EBADMSG, "ZDATA: the zstd frame does not decode: %s",
                                    ZSTD_getErrorName(r));
        if (r != zd->size)
                return nm_error_set(err, -EBADMSG, "ZDATA: the zstd frame decodes to %zu bytes, not %u", r,
                                    zd->size);
        return 0;
}
