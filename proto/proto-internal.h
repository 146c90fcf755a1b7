/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The message schema: one table entry per message type, one row per field.
 * Encoding, decoding and validation are driven by it, so adding a message
 * type is a struct in proto.h, an enum value and an entry in schema.c. */

#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

typedef enum proto__kind {
        PROTO__U32,    /* uint32_t */
        PROTO__U64,    /* uint64_t, at most INT64_MAX */
        PROTO__I32,    /* int32_t */
        PROTO__BOOL,   /* bool */
        PROTO__STR,    /* const char *, NUL-terminated */
        PROTO__BIN,    /* proto_bin, zero-copy */
        PROTO__SHA256, /* uint8_t[32], sent as a bin of exactly 32 bytes */
        PROTO__ENUM,   /* an int enum, sent as one of names[] */
        PROTO__STRV,   /* proto_strv, an array of str */
        PROTO__OPTS,   /* proto_opts, a flat map of str -> bool/uint/str */
        _PROTO__KIND_MAX,
        _PROTO__KIND_INVALID = -EINVAL,
} proto__kind;

/* What a string may contain (besides its length bounds). */
typedef enum proto__check {
        PROTO__CHECK_TEXT, /* no NUL, no control characters but \t \n \r */
        PROTO__CHECK_ID,   /* [A-Za-z0-9_-] */
        PROTO__CHECK_NAME, /* printable ASCII, no space */
        PROTO__CHECK_HEX,  /* lowercase hex digits */
        PROTO__CHECK_PATH, /* proto_path_check() */
        PROTO__CHECK_MODE, /* u32: permission bits within 0644, 0600 set */
        _PROTO__CHECK_MAX,
        _PROTO__CHECK_INVALID = -EINVAL,
} proto__check;

typedef struct proto__field {
        const char *key;
        proto__kind kind;
        bool required;
        size_t offset;      /* of the value within proto_msg */
        ssize_t has_offset; /* of the bool presence flag of an optional number, or -1 */
        int64_t min, max;   /* numbers: value; STR/BIN: length; STRV/OPTS: element count */
        size_t item_max;    /* STRV: length of each element */
        proto__check check;
        const char *const *names; /* ENUM */
        size_t n_names;
} proto__field;

typedef struct proto__schema {
        const char *name;
        const proto__field *fields;
        size_t n_fields;
        /* Checks between fields, after each field passed its own checks. */
        int (*check)(const proto_msg *m, nm_error *err);
} proto__schema;

/* Indexed by proto_msg_type; entries with a NULL name are not types. */
extern const proto__schema proto__schemas[_PROTO_MSG_TYPE_MAX];

const proto__schema *proto__schema_get(int64_t type);

extern const char *const proto__role_names[_PROTO_ROLE_MAX];
extern const char *const proto__reject_code_names[_PROTO_REJECT_CODE_MAX];
extern const char *const proto__outcome_names[_PROTO_OUTCOME_MAX];
extern const char *const proto__decision_names[_PROTO_DECISION_MAX];

/* Validates a string value of field f of message msg (len bytes at s). */
int proto__check_str(const char *msg, const proto__field *f, const char *s, size_t len, nm_error *err);

/* Validates a number against f's range and checks. */
int proto__check_int(const char *msg, const proto__field *f, int64_t v, nm_error *err);

/* Walks one msgpack object at p[0..n) and verifies it is complete and well
 * formed within PROTO_DEPTH_MAX and PROTO_OBJECTS_MAX; returns its size in
 * bytes. */
int proto__msgpack_scan(const uint8_t *p, size_t n, size_t *ret_size, nm_error *err);
