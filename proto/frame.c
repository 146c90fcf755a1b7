/* SPDX-License-Identifier: Apache-2.0 */
/* Framing: length prefixes, the DATA fast path and the streaming reader. */
#include <assert.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "proto-internal.h"

/* Space the reader offers beyond the frame being received, so that one
 * read can also pick up the start of the next frame. */
#define READER_SLACK (64u * 1024u)
#define READER_INITIAL (64u * 1024u)

static uint32_t be32_read(const uint8_t *p) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void be32_write(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

int proto_frame_check_header(const uint8_t hdr[static PROTO_FRAME_HDR], size_t max_payload,
                             uint32_t *ret_len, nm_error *err) {
        uint32_t len = be32_read(hdr);

        if (max_payload == 0 || max_payload > PROTO_FRAME_MAX)
                max_payload = PROTO_FRAME_MAX;
        if (len > max_payload)
                return nm_error_set(err, -E2BIG, "frame length %" PRIu32 " exceeds limit %zu", len,
                                    max_payload);
        if (len == 0)
                return nm_error_set(err, -EBADMSG, "frame length 0: a frame holds one msgpack map");
        if (ret_len)
                *ret_len = len;
        return 0;
}

int proto_decode_frame(const uint8_t *frame, size_t n, proto_msg *ret, nm_error *err) {
        uint32_t len;
        int r;

        if (n < PROTO_FRAME_HDR)
                return nm_error_set(err, -EBADMSG,
                                    "frame truncated: %zu bytes, less than the %u-byte header", n,
                                    PROTO_FRAME_HDR);
        r = proto_frame_check_header(frame, 0, &len, err);
        if (r < 0)
                return r;
        if (n - PROTO_FRAME_HDR < len)
                return nm_error_set(err, -EBADMSG,
                                    "frame truncated: header announces %" PRIu32 " bytes, %zu present", len,
                                    n - PROTO_FRAME_HDR);
        if (n - PROTO_FRAME_HDR > len)
                return nm_error_set(err, -EBADMSG, "frame: %zu bytes of trailing garbage after the frame",
                                    n - PROTO_FRAME_HDR - len);
        return proto_decode(frame + PROTO_FRAME_HDR, len, ret, err);
}

/* ---- DATA header ---- */

typedef struct fixed_buf {
        uint8_t *p;
        size_t len, cap;
} fixed_buf;

static int fixed_write(void *data, const char *buf, size_t len) {
        fixed_buf *b = data;
        if (len > b->cap - b->len)
                return -1;
        memcpy(b->p + b->len, buf, len);
        b->len += len;
        return 0;
}

/* The header of a DATA or ZDATA frame: the map up to and including the bin
 * header of the payload, which the caller sends right after it. The same
 * sequence proto_encode_append() produces, minus the payload bytes; the
 * unit tests compare both. */
static int bin_frame_header(uint8_t out[static PROTO_DATA_HDR_MAX], proto_msg_type type, const char *mig,
                            const uint32_t *size, size_t payload_len, nm_error *err) {
        const proto__schema *s = proto__schema_get(type);
        fixed_buf b = {.p = out, .len = PROTO_FRAME_HDR, .cap = PROTO_DATA_HDR_MAX};
        const proto__field *fmig = &s->fields[0], *fdata = &s->fields[s->n_fields - 1];
        msgpack_packer pk;
        int r;

        assert(s->n_fields == (size ? 3u : 2u) && strcmp(fmig->key, "mig") == 0 &&
               strcmp(fdata->key, "data") == 0);

        if (!mig)
                return nm_error_set(err, -EBADMSG, "%s: field 'mig' missing", s->name);
        r = proto__check_str(s->name, fmig, mig, strlen(mig), err);
        if (r < 0)
                return r;
        if (size) {
                r = proto__check_int(s->name, &s->fields[1], *size, err);
                if (r < 0)
                        return r;
        }
        if ((int64_t)payload_len < fdata->min || (int64_t)payload_len > fdata->max)
                return nm_error_set(err, -EBADMSG,
                                    "%s: field 'data' is %zu bytes long, outside %" PRIi64 "..%" PRIi64,
                                    s->name, payload_len, fdata->min, fdata->max);

        msgpack_packer_init(&pk, &b, fixed_write);
        r = msgpack_pack_map(&pk, size ? 4 : 3);
        r = r ?: msgpack_pack_str_with_body(&pk, "t", 1);
        r = r ?: msgpack_pack_uint32(&pk, (uint32_t)type);
        r = r ?: msgpack_pack_str_with_body(&pk, "mig", 3);
        r = r ?: msgpack_pack_str_with_body(&pk, mig, strlen(mig));
        if (size) {
                r = r ?: msgpack_pack_str_with_body(&pk, s->fields[1].key, strlen(s->fields[1].key));
                r = r ?: msgpack_pack_uint32(&pk, *size);
        }
        r = r ?: msgpack_pack_str_with_body(&pk, "data", 4);
        r = r ?: msgpack_pack_bin(&pk, payload_len);
        assert(r == 0); /* PROTO_DATA_HDR_MAX covers the longest mig */
        if (r != 0)
                return nm_error_set(err, -E2BIG, "%s: header does not fit %u bytes", s->name,
                                    PROTO_DATA_HDR_MAX);
        be32_write(out, (uint32_t)(b.len - PROTO_FRAME_HDR + payload_len));
        return (int)b.len;
}

int proto_data_header(uint8_t out[static PROTO_DATA_HDR_MAX], const char *mig, size_t payload_len,
                      nm_error *err) {
        return bin_frame_header(out, PROTO_MSG_DATA, mig, NULL, payload_len, err);
}

int proto_zdata_header(uint8_t out[static PROTO_DATA_HDR_MAX], const char *mig, uint32_t size,
                       size_t payload_len, nm_error *err) {
        return bin_frame_header(out, PROTO_MSG_ZDATA, mig, &size, payload_len, err);
}

/* ---- Streaming reader ---- */

struct proto_reader {
        uint8_t *buf;
        size_t cap;
        size_t start; /* first byte not yet returned by next() */
        size_t end;   /* end of the bytes received */
        size_t scan;  /* next frame header not yet checked; >= start */
        size_t max_payload;
        int error; /* sticky */
        char error_msg[256];
};

int proto_reader_new(size_t max_payload, proto_reader **ret) {
        proto_reader *r;

        assert(ret);
        if (max_payload > PROTO_FRAME_MAX)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->max_payload = max_payload ?: PROTO_FRAME_MAX;
        *ret = r;
        return 0;
}

proto_reader *proto_reader_free(proto_reader *r) {
        if (!r)
                return NULL;
        free(r->buf);
        free(r);
        return NULL;
}

void proto_reader_freep(proto_reader **r) {
        proto_reader_free(*r);
}

static int reader_fail(proto_reader *r, int code, nm_error *err, const nm_error *cause) {
        r->error = code;
        snprintf(r->error_msg, sizeof(r->error_msg), "%s", cause->msg);
        return nm_error_set(err, code, "%s", cause->msg);
}

static int reader_failed(proto_reader *r, nm_error *err) {
        return nm_error_set(err, r->error, "%s (the stream failed earlier)", r->error_msg);
}

/* Checks every frame header that arrived completely since the last call. */
static int reader_scan(proto_reader *r, nm_error *err) {
        nm_error cause = {};
        uint32_t len;
        int q;

        while (r->scan <= r->end && r->end - r->scan >= PROTO_FRAME_HDR) {
                q = proto_frame_check_header(r->buf + r->scan, r->max_payload, &len, &cause);
                if (q < 0)
                        return reader_fail(r, q, err, &cause);
                r->scan += PROTO_FRAME_HDR + len;
        }
        return 0;
}

/* Moves unread bytes to the front. Invalidates payloads handed out. */
static void reader_compact(proto_reader *r) {
        if (r->start == 0)
                return;
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->scan -= r->start;
        r->start = 0;
}

/* Makes room for want more bytes after the unread ones: for free when
 * nothing is unread, else by moving the unread bytes to the front, but only
 * when the space behind them is too short. Invalidates payloads handed
 * out. */
static void reader_make_room(proto_reader *r, size_t want) {
        if (r->start == r->end) {
                /* Every frame was taken: scan is at end too. */
                r->start = r->end = r->scan = 0;
                return;
        }
        if (r->cap - r->end < want)
                reader_compact(r);
}

static int reader_grow(proto_reader *r, size_t need) {
        size_t cap = r->cap ? r->cap : READER_INITIAL;
        uint8_t *p;

        if (need <= r->cap)
                return 0;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        p = realloc(r->buf, cap);
        if (!p)
                return -ENOMEM;
        r->buf = p;
        r->cap = cap;
        return 0;
}

int proto_reader_feed(proto_reader *r, const void *data, size_t n, nm_error *err) {
        assert(r);
        assert(data || n == 0);

        if (r->error)
                return reader_failed(r, err);
        if (n == 0)
                return 0; /* nothing to copy, and data may be NULL (no pointer arithmetic on it) */
        reader_make_room(r, n);
        if (n > SIZE_MAX - r->end || reader_grow(r, r->end + n) < 0)
                return nm_error_errno(err, -ENOMEM, "cannot buffer %zu received bytes", n);
        memcpy(r->buf + r->end, data, n);
        r->end += n;
        return reader_scan(r, err);
}

/* Bytes still missing from the frame being received (its header, or its
 * header and payload), or 0 if none is partial. */
static size_t reader_missing(const proto_reader *r) {
        if (r->scan > r->end)
                return r->scan - r->end;
        return r->end - r->scan > 0 ? PROTO_FRAME_HDR - (r->end - r->scan) : 0;
}

int proto_reader_get_buffer(proto_reader *r, uint8_t **ret_ptr, size_t *ret_len, nm_error *err) {
        size_t missing, want, limit, unread;

        assert(r);
        assert(ret_ptr);
        assert(ret_len);

        if (r->error)
                return reader_failed(r, err);
        /* Room for the rest of the current frame, and some slack to catch
         * the start of the next one only when that rest is short: a read
         * into a large frame then ends at its boundary, the frame is taken,
         * and the buffer starts over without moving a byte (small frames
         * come many to a read, and what is left of them is moved only when
         * the space behind it runs out). The unread bytes never exceed one
         * frame of the largest size plus slack: a peer cannot make us buffer
         * more by sending faster than we parse. */
        missing = reader_missing(r);
        want = missing >= READER_SLACK ? missing : missing + READER_SLACK;
        limit = PROTO_FRAME_HDR + r->max_payload + READER_SLACK;
        unread = r->end - r->start;
        if (unread >= limit)
                return nm_error_set(err, -ENOBUFS,
                                    "frame reader is full: take frames with proto_reader_next() first");
        if (want > limit - unread)
                want = limit - unread;
        reader_make_room(r, want);
        if (reader_grow(r, r->end + want) < 0)
                return nm_error_errno(err, -ENOMEM, "cannot buffer a frame");
        assert(want > 0 && r->cap - r->end >= want);
        *ret_ptr = r->buf + r->end;
        *ret_len = want;
        return 0;
}

int proto_reader_advance(proto_reader *r, size_t n, nm_error *err) {
        assert(r);

        if (r->error)
                return reader_failed(r, err);
        if (n > r->cap - r->end)
                return nm_error_set(err, -EINVAL, "advance by %zu bytes beyond the %zu-byte buffer", n,
                                    r->cap - r->end);
        r->end += n;
        return reader_scan(r, err);
}

int proto_reader_next(proto_reader *r, const uint8_t **ret_payload, size_t *ret_len, nm_error *err) {
        uint32_t len;

        assert(r);
        assert(ret_payload);
        assert(ret_len);

        if (r->error)
                return reader_failed(r, err);
        if (r->end - r->start < PROTO_FRAME_HDR)
                return 0;
        /* The header was checked by reader_scan() when it arrived. */
        len = be32_read(r->buf + r->start);
        if (r->end - r->start - PROTO_FRAME_HDR < len)
                return 0;
        *ret_payload = r->buf + r->start + PROTO_FRAME_HDR;
        *ret_len = len;
        r->start += PROTO_FRAME_HDR + len;
        return 1;
}

size_t proto_reader_buffered(const proto_reader *r) {
        return r ? r->end - r->start : 0;
}

int proto_reader_finish(proto_reader *r, nm_error *err) {
        uint32_t len;

        assert(r);

        if (r->error)
                return reader_failed(r, err);
        if (r->end == r->start)
                return 0;
        if (r->end - r->start < PROTO_FRAME_HDR)
                return nm_error_set(err, -EBADMSG, "stream ended inside a frame header (%zu of %u bytes)",
                                    r->end - r->start, PROTO_FRAME_HDR);
        len = be32_read(r->buf + r->start);
        if (r->end - r->start - PROTO_FRAME_HDR < len)
                return nm_error_set(err, -EBADMSG, "stream ended inside a frame (%zu of %" PRIu32 " bytes)",
                                    r->end - r->start - PROTO_FRAME_HDR, len);
        return nm_error_set(err, -EBADMSG, "stream ended with %zu bytes of frames not taken",
                            r->end - r->start);
}
