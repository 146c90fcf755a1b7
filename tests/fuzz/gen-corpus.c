/* SPDX-License-Identifier: Apache-2.0 */
/* Writes the fuzz seed corpus (one valid frame of every message type, a
 * stream of all of them, and hostile frames), or checks that the committed
 * corpus still matches what the current code encodes:
 *
 *   proto-gen-corpus write DIR
 *   proto-gen-corpus check DIR
 *
 * "check" runs as a unit test. It fails when the wire encoding of a sample
 * changed: if that was deliberate, run "write" and commit the result. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"
#include "proto.h"
#include "test-proto-samples.h"

typedef struct seed {
        char name[64];
        uint8_t *data;
        size_t len;
} seed;

static seed seeds[128];
static size_t n_seeds;

static void add(const char *prefix, const char *name, const void *data, size_t len) {
        seed *s;

        if (n_seeds >= ARRAY_SIZE(seeds))
                abort();
        s = &seeds[n_seeds++];
        snprintf(s->name, sizeof(s->name), "%s%s", prefix, name);
        for (char *c = s->name; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        s->data = malloc(len ? len : 1);
        if (!s->data)
                abort();
        if (len && !data)
                abort();
        if (len)
                memcpy(s->data, data, len);
        s->len = len;
}

/* Adds a hand-built payload with its length prefix. */
static void add_raw(const char *name, const msgpack_sbuffer *sb) {
        uint8_t *f = malloc(sb->size + 4);
        if (!f)
                abort();
        f[0] = (uint8_t)(sb->size >> 24), f[1] = (uint8_t)(sb->size >> 16);
        f[2] = (uint8_t)(sb->size >> 8), f[3] = (uint8_t)sb->size;
        memcpy(f + 4, sb->data, sb->size);
        add("bad-", name, f, sb->size + 4);
        free(f);
}

static void key(msgpack_packer *pk, const char *k) {
        msgpack_pack_str_with_body(pk, k, strlen(k));
}

static void kv_str(msgpack_packer *pk, const char *k, const char *v) {
        key(pk, k);
        msgpack_pack_str_with_body(pk, v, strlen(v));
}

static void kv_uint(msgpack_packer *pk, const char *k, uint64_t v) {
        key(pk, k);
        msgpack_pack_uint64(pk, v);
}

#define RAW(name, ...)                                                \
        do {                                                          \
                msgpack_sbuffer sb;                                   \
                msgpack_packer pk;                                    \
                msgpack_sbuffer_init(&sb);                            \
                msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write); \
                __VA_ARGS__;                                          \
                add_raw(name, &sb);                                   \
                msgpack_sbuffer_destroy(&sb);                         \
        } while (0)

static void file_map(msgpack_packer *pk, const char *path) {
        msgpack_pack_map(pk, 5);
        kv_uint(pk, "t", PROTO_MSG_FILE);
        kv_str(pk, "mig", "m1");
        kv_str(pk, "path", path);
        kv_uint(pk, "size", 3);
        kv_uint(pk, "mode", 0600);
}

static void add_hostile(const proto_buf *offer) {
        static const uint8_t oversize[] = {0x00, 0x89, 0x54, 0x40, 0x81, 0xa1, 't', 0x03};
        static const uint8_t zero[] = {0, 0, 0, 0};
        static const uint8_t huge_array[] = {0,    0,   0,    12,   0x82, 0xa1, 't',  0x03,
                                             0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xf0, 0x01};
        static const uint8_t reserved[] = {0, 0, 0, 4, 0x81, 0xa1, 't', 0xc1};
        uint8_t digest[31] = {};

        add("bad-", "truncated-offer", offer->data, offer->len - 3);
        add("bad-", "oversize-length", oversize, sizeof(oversize));
        add("bad-", "zero-length", zero, sizeof(zero));
        add("bad-", "huge-array", huge_array, sizeof(huge_array));
        add("bad-", "reserved-byte", reserved, sizeof(reserved));
        RAW("trailing-garbage", msgpack_pack_map(&pk, 2); kv_uint(&pk, "t", PROTO_MSG_PING);
            kv_uint(&pk, "seq", 1); msgpack_pack_nil(&pk));
        RAW("non-map", msgpack_pack_array(&pk, 2); msgpack_pack_uint8(&pk, 3); msgpack_pack_uint8(&pk, 1));
        RAW("unknown-type", msgpack_pack_map(&pk, 1); kv_uint(&pk, "t", 200));
        RAW("missing-size", msgpack_pack_map(&pk, 4); kv_uint(&pk, "t", PROTO_MSG_FILE);
            kv_str(&pk, "mig", "m"); kv_str(&pk, "path", "metadata.json"); kv_uint(&pk, "mode", 0600));
        RAW("path-dotdot", file_map(&pk, "images/../x"));
        RAW("path-subdir", file_map(&pk, "images/a/b"));
        RAW("path-absolute", file_map(&pk, "/etc/passwd"));
        RAW("path-hmac", file_map(&pk, "checkpoint.hmac"));
        RAW("sha256-short", msgpack_pack_map(&pk, 3); kv_uint(&pk, "t", PROTO_MSG_FILE_END);
            kv_str(&pk, "mig", "m"); key(&pk, "sha256");
            msgpack_pack_bin_with_body(&pk, digest, sizeof(digest)));
        RAW("hmac-upper", msgpack_pack_map(&pk, 5); kv_uint(&pk, "t", PROTO_MSG_IMAGES_DONE);
            kv_str(&pk, "mig", "m");
            kv_str(&pk, "hmac", "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef");
            kv_uint(&pk, "files", 1); kv_uint(&pk, "bytes", 1));
        RAW("hello-v99", msgpack_pack_map(&pk, 6); kv_uint(&pk, "t", PROTO_MSG_HELLO);
            kv_uint(&pk, "version", 99); kv_uint(&pk, "min_version", 99); kv_str(&pk, "node", "n");
            kv_str(&pk, "role", "peer"); kv_str(&pk, "future", "x"));
        RAW("deep-nesting", msgpack_pack_map(&pk, 2); kv_uint(&pk, "t", PROTO_MSG_LIST); key(&pk, "x");
            for (int i = 0; i < 20; i++) msgpack_pack_array(&pk, 1); msgpack_pack_nil(&pk));
}

static void build(void) {
        proto_msg m[64];
        size_t n = proto_samples(m, ARRAY_SIZE(m));
        proto_buf all = {}, offer = {};

        for (size_t i = 0; i < n; i++) {
                proto_buf one = {};
                nm_error err = {};
                if (proto_encode_append(&one, &m[i], &err) < 0 ||
                    proto_encode_append(&all, &m[i], &err) < 0) {
                        fprintf(stderr, "encoding %s: %s\n", proto_msg_type_to_string(m[i].type), err.msg);
                        exit(EXIT_FAILURE);
                }
                add("valid-", proto_msg_type_to_string(m[i].type), one.data, one.len);
                if (m[i].type == PROTO_MSG_OFFER)
                        (void)proto_encode_append(&offer, &m[i], NULL);
                proto_buf_done(&one);
        }
        add("", "stream-all", all.data, all.len);
        add_hostile(&offer);
        proto_buf_done(&all);
        proto_buf_done(&offer);
}

static int write_all(const char *dir) {
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        if (dfd < 0) {
                fprintf(stderr, "cannot open %s: %s\n", dir, strerror(-dfd));
                return EXIT_FAILURE;
        }
        for (size_t i = 0; i < n_seeds; i++) {
                int r = write_file_atomic_at(dfd, seeds[i].name, seeds[i].data, seeds[i].len, 0644);
                if (r < 0) {
                        fprintf(stderr, "cannot write %s/%s: %s\n", dir, seeds[i].name, strerror(-r));
                        return EXIT_FAILURE;
                }
        }
        printf("wrote %zu seeds to %s\n", n_seeds, dir);
        return EXIT_SUCCESS;
}

static int check_all(const char *dir) {
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        int failed = 0;

        if (dfd < 0) {
                fprintf(stderr, "cannot open %s: %s\n", dir, strerror(-dfd));
                return EXIT_FAILURE;
        }
        for (size_t i = 0; i < n_seeds; i++) {
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                int r = read_file_at(dfd, seeds[i].name, 16u << 20, &data, &len);
                if (r < 0 || len != seeds[i].len || memcmp(data, seeds[i].data, len) != 0) {
                        fprintf(stderr, "%s/%s: %s\n", dir, seeds[i].name,
                                r < 0 ? strerror(-r) : "differs from what the code encodes now");
                        failed++;
                }
        }
        if (failed) {
                fprintf(stderr,
                        "%d seeds are stale. If the wire format changed on purpose, run "
                        "'proto-gen-corpus write tests/fuzz/corpus' and commit.\n",
                        failed);
                return EXIT_FAILURE;
        }
        printf("%zu seeds match\n", n_seeds);
        return EXIT_SUCCESS;
}

int main(int argc, char **argv) {
        if (argc != 3 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "check") != 0)) {
                fprintf(stderr, "usage: %s write|check DIR\n", argv[0]);
                return EXIT_FAILURE;
        }
        build();
        return strcmp(argv[1], "write") == 0 ? write_all(argv[2]) : check_all(argv[2]);
}
