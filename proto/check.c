/* SPDX-License-Identifier: Apache-2.0 */
/* Value checks shared by the encoder, the decoder and the receiving end of
 * an image stream, and the structural walk that guards msgpack-c. */
#include <assert.h>
#include <inttypes.h>
#include <string.h>

#include "macro.h"
#include "proto-internal.h"

static bool is_id_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '-';
}

/* Printable ASCII without the space: names end up in logs and file names. */
static bool is_name_char(char c) {
        return c > 0x20 && c < 0x7f;
}

static bool is_text_char(char c) {
        return (unsigned char)c >= 0x20 ? c != 0x7f : (c == '\t' || c == '\n' || c == '\r');
}

int proto_id_check(const char *id, size_t len, nm_error *err) {
        if (len == 0)
                return nm_error_set(err, -EBADMSG, "id is empty");
        if (len > PROTO_ID_MAX)
                return nm_error_set(err, -EBADMSG, "id is %zu bytes long, more than %u", len, PROTO_ID_MAX);
        for (size_t i = 0; i < len; i++)
                if (!is_id_char(id[i]))
                        return nm_error_set(
                                err, -EBADMSG,
                                "id has byte 0x%02x at offset %zu; only [A-Za-z0-9_-] is allowed",
                                (unsigned char)id[i], i);
        return 0;
}

static int path_name_check(const char *name, size_t len, nm_error *err) {
        if (len == 0)
                return nm_error_set(err, -EBADMSG, "path 'images/' has an empty file name");
        if (len > PROTO_FILE_NAME_MAX)
                return nm_error_set(err, -EBADMSG, "file name under images/ is %zu bytes long, more than %u",
                                    len, PROTO_FILE_NAME_MAX);
        /* This also refuses "." and "..": CRIU never writes hidden files. */
        if (name[0] == '.')
                return nm_error_set(err, -EBADMSG, "file name '%.*s' under images/ starts with '.'",
                                    (int)len, name);
        for (size_t i = 0; i < len; i++) {
                if (name[i] == '/')
                        return nm_error_set(err, -EBADMSG,
                                            "path 'images/%.*s' has a subdirectory; images/ is flat",
                                            (int)len, name);
                if (!is_name_char(name[i]))
                        return nm_error_set(err, -EBADMSG,
                                            "file name under images/ has byte 0x%02x at offset %zu; only "
                                            "printable ASCII without spaces is allowed",
                                            (unsigned char)name[i], i);
        }
        return 0;
}

int proto_path_check(const char *path, size_t len, nm_error *err) {
        static const char metadata[] = "metadata.json", images[] = "images/", hmac[] = "checkpoint.hmac";
        int r;

        if (!path || len == 0)
                return nm_error_set(err, -EBADMSG, "path is empty");
        if (memchr(path, '\0', len))
                return nm_error_set(err, -EBADMSG, "path contains a NUL byte");
        if (len == strlen(metadata) && memcmp(path, metadata, len) == 0)
                return PROTO_PATH_METADATA;
        if (len == strlen(hmac) && memcmp(path, hmac, len) == 0)
                return nm_error_set(err, -EBADMSG,
                                    "path 'checkpoint.hmac' is not sent as a file; the HMAC travels in "
                                    "IMAGES_DONE");
        if (len > strlen(images) && memcmp(path, images, strlen(images)) == 0) {
                r = path_name_check(path + strlen(images), len - strlen(images), err);
                return r < 0 ? r : PROTO_PATH_IMAGE;
        }
        if (len == strlen(images) && memcmp(path, images, len) == 0)
                return nm_error_set(err, -EBADMSG, "path 'images/' has an empty file name");
        if (len > PROTO_PATH_MAX)
                return nm_error_set(err, -EBADMSG,
                                    "path of %zu bytes is neither metadata.json nor images/<name>", len);
        return nm_error_set(err, -EBADMSG, "path '%.*s' is neither metadata.json nor images/<name>",
                            (int)len, path);
}

int proto__check_str(const char *msg, const proto__field *f, const char *s, size_t len, nm_error *err) {
        nm_error sub = {};
        int r;

        /* proto_path_check() bounds paths itself, with its own messages. */
        if (f->check == PROTO__CHECK_PATH) {
                r = proto_path_check(s, len, &sub);
                return r < 0 ? nm_error_set(err, r, "%s: field '%s': %s", msg, f->key, sub.msg) : 0;
        }
        if ((int64_t)len < f->min || (int64_t)len > f->max) {
                if (f->min == f->max)
                        return nm_error_set(err, -EBADMSG, "%s: field '%s' is %zu bytes long, not %" PRIi64,
                                            msg, f->key, len, f->min);
                return nm_error_set(err, -EBADMSG,
                                    "%s: field '%s' is %zu bytes long, outside %" PRIi64 "..%" PRIi64, msg,
                                    f->key, len, f->min, f->max);
        }
        if (memchr(s, '\0', len))
                return nm_error_set(err, -EBADMSG, "%s: field '%s' contains a NUL byte", msg, f->key);

        switch (f->check) {
        case PROTO__CHECK_ID:
                r = proto_id_check(s, len, &sub);
                if (r < 0)
                        return nm_error_set(err, r, "%s: field '%s': %s", msg, f->key, sub.msg);
                return 0;
        case PROTO__CHECK_NAME:
        case PROTO__CHECK_HEX:
        case PROTO__CHECK_TEXT:
                for (size_t i = 0; i < len; i++) {
                        char c = s[i];
                        bool ok = f->check == PROTO__CHECK_NAME ? is_name_char(c)
                                  : f->check == PROTO__CHECK_HEX
                                          ? (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                                          : is_text_char(c);
                        if (!ok)
                                return nm_error_set(
                                        err, -EBADMSG, "%s: field '%s' has %s byte 0x%02x at offset %zu",
                                        msg, f->key,
                                        f->check == PROTO__CHECK_HEX ? "a non-lowercase-hex" : "a forbidden",
                                        (unsigned char)c, i);
                }
                return 0;
        case PROTO__CHECK_PATH:
        case PROTO__CHECK_MODE:
        case _PROTO__CHECK_MAX:
        case _PROTO__CHECK_INVALID: break;
        }
        return nm_error_set(err, -EINVAL, "%s: field '%s' has no string check", msg, f->key);
}

int proto__check_int(const char *msg, const proto__field *f, int64_t v, nm_error *err) {
        if (f->check == PROTO__CHECK_MODE) {
                if ((v & ~(int64_t)0644) != 0)
                        return nm_error_set(err, -EBADMSG,
                                            "%s: field '%s' 0%" PRIo64 " has bits outside 0644", msg, f->key,
                                            (uint64_t)v);
                if ((v & 0600) != 0600)
                        return nm_error_set(err, -EBADMSG,
                                            "%s: field '%s' 0%" PRIo64 " lacks owner rw (0600)", msg, f->key,
                                            (uint64_t)v);
                return 0;
        }
        if (v < f->min || v > f->max)
                return nm_error_set(err, -EBADMSG,
                                    "%s: field '%s' %" PRIi64 " is outside %" PRIi64 "..%" PRIi64, msg,
                                    f->key, v, f->min, f->max);
        return 0;
}

int proto_version_negotiate(const proto_hello *ours, const proto_hello *peer, uint32_t *ret_version,
                            nm_error *err) {
        uint32_t top, bottom;

        assert(ours);
        assert(peer);

        top = ours->version < peer->version ? ours->version : peer->version;
        bottom = ours->min_version > peer->min_version ? ours->min_version : peer->min_version;
        if (peer->min_version > peer->version || peer->min_version == 0 || top < bottom)
                return nm_error_set(err, -EPROTONOSUPPORT,
                                    "peer '%s' speaks protocol versions %u..%u, this node speaks %u..%u: no "
                                    "version in common",
                                    strna(peer->node), peer->min_version, peer->version, ours->min_version,
                                    ours->version);
        if (ret_version)
                *ret_version = top;
        return 0;
}

/* ---- The structural walk ---- */

typedef struct scan {
        const uint8_t *p;
        size_t n, pos, objects;
        nm_error *err;
} scan;

static int scan_need(scan *s, size_t len, const char *what) {
        if (len > s->n - s->pos)
                return nm_error_set(s->err, -EBADMSG,
                                    "frame: msgpack %s at offset %zu needs %zu bytes, only %zu are left",
                                    what, s->pos, len, s->n - s->pos);
        return 0;
}

static uint64_t be_read(const uint8_t *p, size_t len) {
        uint64_t v = 0;
        for (size_t i = 0; i < len; i++)
                v = v << 8 | p[i];
        return v;
}

/* Reads a big-endian length of len bytes that follows the type byte. */
static int scan_len(scan *s, size_t len, uint64_t *ret) {
        int r = scan_need(s, len, "length");
        if (r < 0)
                return r;
        *ret = be_read(s->p + s->pos, len);
        s->pos += len;
        return 0;
}

static int scan_skip(scan *s, uint64_t len, const char *what) {
        if (len > s->n - s->pos)
                return nm_error_set(s->err, -EBADMSG,
                                    "frame: msgpack %s of %" PRIu64
                                    " bytes at offset %zu runs past the end (%zu "
                                    "bytes left)",
                                    what, len, s->pos, s->n - s->pos);
        s->pos += len;
        return 0;
}

static int scan_object(scan *s, unsigned depth);

static int scan_container(scan *s, uint64_t count, bool map, unsigned depth) {
        uint64_t elements = map ? count * 2 : count;
        int r;

        /* Each element takes at least one byte: refuse a count that cannot
         * fit before msgpack-c allocates for it. */
        if (count > s->n - s->pos || elements > s->n - s->pos)
                return nm_error_set(
                        s->err, -EBADMSG,
                        "frame: msgpack %s of %" PRIu64 " %s at offset %zu cannot fit in the %zu bytes "
                        "left",
                        map ? "map" : "array", count, map ? "entries" : "elements", s->pos, s->n - s->pos);
        if (depth >= PROTO_DEPTH_MAX)
                return nm_error_set(s->err, -EBADMSG, "frame: msgpack nesting deeper than %u",
                                    PROTO_DEPTH_MAX);
        for (uint64_t i = 0; i < elements; i++) {
                r = scan_object(s, depth + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int scan_object(scan *s, unsigned depth) {
        uint64_t len;
        uint8_t b;
        int r;

        if (++s->objects > PROTO_OBJECTS_MAX)
                return nm_error_set(s->err, -EBADMSG, "frame: more than %u msgpack objects",
                                    PROTO_OBJECTS_MAX);
        r = scan_need(s, 1, "object");
        if (r < 0)
                return r;
        b = s->p[s->pos++];

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
                return 0; /* fixint, nil, bool */
        if (b >= 0x80 && b <= 0x8f)
                return scan_container(s, b & 0x0f, true, depth);
        if (b >= 0x90 && b <= 0x9f)
                return scan_container(s, b & 0x0f, false, depth);
        if (b >= 0xa0 && b <= 0xbf)
                return scan_skip(s, b & 0x1f, "str");

        if (b >= 0xc4 && b <= 0xc6) { /* bin 8/16/32 */
                r = scan_len(s, (size_t)1 << (b - 0xc4), &len);
                return r < 0 ? r : scan_skip(s, len, "bin");
        }
        if (b >= 0xd9 && b <= 0xdb) { /* str 8/16/32 */
                r = scan_len(s, (size_t)1 << (b - 0xd9), &len);
                return r < 0 ? r : scan_skip(s, len, "str");
        }
        if (b >= 0xc7 && b <= 0xc9) { /* ext 8/16/32: length, type byte, data */
                r = scan_len(s, (size_t)1 << (b - 0xc7), &len);
                return r < 0 ? r : scan_skip(s, len + 1, "ext");
        }
        if (b == 0xca || b == 0xcb) /* float 32/64 */
                return scan_skip(s, b == 0xca ? 4 : 8, "float");
        if (b >= 0xcc && b <= 0xcf) /* uint 8..64 */
                return scan_skip(s, (size_t)1 << (b - 0xcc), "uint");
        if (b >= 0xd0 && b <= 0xd3) /* int 8..64 */
                return scan_skip(s, (size_t)1 << (b - 0xd0), "int");
        if (b >= 0xd4 && b <= 0xd8) /* fixext 1..16: type byte, data */
                return scan_skip(s, 1 + ((size_t)1 << (b - 0xd4)), "fixext");
        if (b == 0xdc || b == 0xdd) { /* array 16/32 */
                r = scan_len(s, b == 0xdc ? 2 : 4, &len);
                return r < 0 ? r : scan_container(s, len, false, depth);
        }
        if (b == 0xde || b == 0xdf) { /* map 16/32 */
                r = scan_len(s, b == 0xde ? 2 : 4, &len);
                return r < 0 ? r : scan_container(s, len, true, depth);
        }
        /* Only 0xc1 is left: never used by msgpack. */
        return nm_error_set(s->err, -EBADMSG, "frame: invalid msgpack byte 0x%02x at offset %zu", b,
                            s->pos - 1);
}

int proto__msgpack_scan(const uint8_t *p, size_t n, size_t *ret_size, nm_error *err) {
        scan s = {.p = p, .n = n, .err = err};
        int r;

        r = scan_object(&s, 0);
        if (r < 0)
                return r;
        *ret_size = s.pos;
        return 0;
}
