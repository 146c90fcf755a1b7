/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Declarations shared inside ckpt/ only. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ckpt-format.h"
#include "error.h"

/* jansson keeps integers in a signed 64-bit type, but nucleus writes u64
 * fields (config_hash is a hash: half of all values exceed INT64_MAX). Such
 * numbers are carried through jansson as strings holding a marker, and turned
 * back into bare numbers when the text is written, so that a state file
 * round-trips byte for byte. */
#define CKPT_U64_MARK "\001nm-u64:"

/* json_loadb with big unsigned integers kept (see above). */
json_t *ckpt__json_loadb(const char *text, size_t len, json_error_t *error);
/* json_dumps(JSON_INDENT(2)|JSON_PRESERVE_ORDER), the shape of serde_json's
 * to_string_pretty, with big integers written back as numbers. */
char *ckpt__json_dumps(const json_t *json);
/* A u64 as a json value (integer, or the big-number marker). */
json_t *ckpt__json_u64(uint64_t v);
/* Reads an unsigned integer written by either path above. */
int ckpt__json_get_u64(const json_t *v, uint64_t *ret);

/* Type checks in the way serde would reject a field. Each returns -EBADMSG
 * with "field 'name' ..." in err. `required` false: a missing or null field
 * yields the default (NULL/false/0) and *ret_present false. */
int ckpt__json_string(const json_t *o, const char *key, bool required, const char **ret, nm_error *err);
int ckpt__json_u64_field(const json_t *o, const char *key, bool required, uint64_t max, uint64_t *ret,
                         bool *ret_present, nm_error *err);
int ckpt__json_bool(const json_t *o, const char *key, bool required, bool *ret, nm_error *err);
int ckpt__json_string_array(const json_t *o, const char *key, char ***ret, nm_error *err);

char **ckpt__strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, ckpt__strv_free);
char **ckpt__strv_copy(char *const *l);

/* Reads "/proc/<pid>/<what>" (e.g. "stat"). */
int ckpt__proc_read(pid_t pid, const char *what, char **ret, size_t *ret_len);
/* Parses field 22 from the text of /proc/<pid>/stat. */
int ckpt__parse_start_ticks(const char *stat, uint64_t *ret);

/* Microseconds of CLOCK_MONOTONIC. */
uint64_t ckpt__now_usec(void);

/* Criu binary resolution with an explicit candidate list (tests). */
typedef struct ckpt_criu ckpt_criu;
int ckpt__criu_resolve_from(const char *const *candidates, const char *configured, ckpt_criu **ret,
                            nm_error *err);
/* Parses the output of `criu --version` into "4.2.1" and 40201. */
int ckpt__criu_parse_version(const char *out, char **ret_version, unsigned *ret_num);

/* Log excerpt: the last Error lines of a CRIU log (the harmless RLIMIT_NOFILE
 * line is skipped), or its last lines when there is none. */
int ckpt__log_excerpt(int dirfd, const char *name, char *buf, size_t size);

/* Parses CRIU's stats-dump / stats-restore image (protobuf) by hand. */
typedef struct ckpt__stats {
        bool dump, restore;
        uint64_t freezing_us, frozen_us, memdump_us, memwrite_us, pages_written;
        uint64_t forking_us, restore_us, pages_restored;
} ckpt__stats;
int ckpt__stats_parse(const uint8_t *buf, size_t len, ckpt__stats *ret);

/* A minimal protobuf reader, enough for the few fields we read out of
 * CRIU's images (criu-images.c). */
enum {
        CKPT__PB_VARINT = 0,
        CKPT__PB_FIXED64 = 1,
        CKPT__PB_BYTES = 2,
        CKPT__PB_FIXED32 = 5,
};
typedef struct ckpt__pb {
        const uint8_t *p, *end;
} ckpt__pb;
typedef struct ckpt__pb_field {
        uint32_t number;
        unsigned wire;
        uint64_t v;          /* varint and fixed wire types */
        const uint8_t *data; /* bytes: a string or a nested message */
        size_t len;
} ckpt__pb_field;
/* The next field: 1, 0 at the end, -EBADMSG when malformed. */
int ckpt__pb_next(ckpt__pb *pb, ckpt__pb_field *f);

/* The entries of a CRIU image held in memory: its magic is checked (after
 * the common or service magic, where there is one). */
typedef struct ckpt__img {
        const uint8_t *p, *end;
} ckpt__img;
int ckpt__img_init(ckpt__img *img, const uint8_t *buf, size_t len, uint32_t magic);
/* The next entry's message: 1, 0 at the end, -EBADMSG. */
int ckpt__img_next(ckpt__img *img, const uint8_t **ret_msg, size_t *ret_len);

/* Whether the dump in imgfd was made with tcp-close (inventory.img):
 * CRIU then requires it on restore too. */
int ckpt__images_tcp_close(int imgfd, bool *ret);
/* ckpt_stopped_tasks_load for an open images directory. */
typedef struct ckpt_stopped_tasks ckpt_stopped_tasks;
int ckpt__stopped_tasks_at(int imgfd, ckpt_stopped_tasks *ret, nm_error *err);
