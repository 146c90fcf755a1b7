/* SPDX-License-Identifier: Apache-2.0 */
/* Table-driven encoding and decoding of messages (see schema.c). */
#include <assert.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "proto-internal.h"

_Static_assert(sizeof(proto_role) == sizeof(int) && sizeof(proto_reject_code) == sizeof(int) &&
                       sizeof(proto_outcome) == sizeof(int),
               "ENUM fields are stored as int");

/* The keys and values of MIGRATE's option map. */
static const proto__field opt_key_field = {.key = "opts key",
                                           .kind = PROTO__STR,
                                           .min = 1,
                                           .max = PROTO_OPT_KEY_MAX,
                                           .check = PROTO__CHECK_NAME};
static const proto__field opt_str_field = {.key = "opts value",
                                           .kind = PROTO__STR,
                                           .min = 0,
                                           .max = PROTO_NAME_MAX,
                                           .check = PROTO__CHECK_TEXT};

/* Checks an option's string value, naming the option in the error. */
static int check_opt_str(const char *msg, const char *key, const char *s, size_t len, nm_error *err) {
        char name[16 + PROTO_OPT_KEY_MAX];
        proto__field f = opt_str_field;

        snprintf(name, sizeof(name), "opts.%s", key);
        f.key = name;
        return proto__check_str(msg, &f, s, len, err);
}

static void *field_ptr(proto_msg *m, const proto__field *f) {
        return (uint8_t *)m + f->offset;
}

static const void *field_cptr(const proto_msg *m, const proto__field *f) {
        return (const uint8_t *)m + f->offset;
}

/* A field description for the elements of an array field. */
static proto__field item_field(const proto__field *f, size_t i, char *key, size_t key_size) {
        snprintf(key, key_size, "%s[%zu]", f->key, i);
        return (proto__field){
                .key = key, .kind = PROTO__STR, .min = 1, .max = (int64_t)f->item_max, .check = f->check};
}

static const char *obj_type_name(msgpack_object_type t) {
        if (t == MSGPACK_OBJECT_NIL)
                return "nil";
        if (t == MSGPACK_OBJECT_BOOLEAN)
                return "a boolean";
        if (t == MSGPACK_OBJECT_POSITIVE_INTEGER)
                return "an unsigned integer";
        if (t == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                return "a negative integer";
        if (t == MSGPACK_OBJECT_FLOAT32 || t == MSGPACK_OBJECT_FLOAT64)
                return "a float";
        if (t == MSGPACK_OBJECT_STR)
                return "a string";
        if (t == MSGPACK_OBJECT_ARRAY)
                return "an array";
        if (t == MSGPACK_OBJECT_MAP)
                return "a map";
        if (t == MSGPACK_OBJECT_BIN)
                return "a bin";
        return "an ext";
}

static bool key_is(const msgpack_object *k, const char *key) {
        size_t len = strlen(key);
        return k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
               memcmp(k->via.str.ptr, key, len) == 0;
}

static int enum_names_join(const proto__field *f, char *buf, size_t size) {
        size_t used = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < f->n_names && used < size; i++)
                used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", f->names[i]);
        return 0;
}

static int enum_error(const char *msg, const proto__field *f, nm_error *err) {
        char names[256];
        enum_names_join(f, names, sizeof(names));
        return nm_error_set(err, -EBADMSG, "%s: field '%s' is not one of: %s", msg, f->key, names);
}

/* ---- Validation of C values (encoding side) ---- */

static bool field_present(const proto_msg *m, const proto__field *f) {
        const void *v = field_cptr(m, f);

        if (f->has_offset >= 0)
                return *(const bool *)((const uint8_t *)m + f->has_offset);
        switch (f->kind) {
        case PROTO__STR: return *(const char *const *)v != NULL;
        case PROTO__BIN: return ((const proto_bin *)v)->ptr != NULL;
        case PROTO__STRV: return ((const proto_strv *)v)->n > 0 || f->required;
        case PROTO__OPTS: return ((const proto_opts *)v)->n > 0;
        case PROTO__U32:
        case PROTO__U64:
        case PROTO__I32:
        case PROTO__BOOL:
        case PROTO__SHA256:
        case PROTO__ENUM:
        case _PROTO__KIND_MAX:
        case _PROTO__KIND_INVALID: break;
        }
        return true;
}

static int validate_strv(const char *msg, const proto__field *f, const proto_strv *sv, nm_error *err) {
        char key[64];
        int r;

        if ((int64_t)sv->n < f->min || (int64_t)sv->n > f->max)
                return nm_error_set(err, -EBADMSG,
                                    "%s: field '%s' has %zu elements, outside %" PRIi64 "..%" PRIi64, msg,
                                    f->key, sv->n, f->min, f->max);
        for (size_t i = 0; i < sv->n; i++) {
                proto__field item = item_field(f, i, key, sizeof(key));
                if (!sv->v || !sv->v[i])
                        return nm_error_set(err, -EINVAL, "%s: field '%s' is NULL", msg, item.key);
                r = proto__check_str(msg, &item, sv->v[i], strlen(sv->v[i]), err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int validate_opts(const char *msg, const proto_opts *o, nm_error *err) {
        int r;

        if (o->n > PROTO_OPTS_MAX)
                return nm_error_set(err, -EBADMSG, "%s: field 'opts' has %zu entries, more than %u", msg,
                                    o->n, PROTO_OPTS_MAX);
        for (size_t i = 0; i < o->n; i++) {
                const proto_opt *opt = &o->v[i];
                if (!opt->key)
                        return nm_error_set(err, -EINVAL, "%s: option #%zu has no key", msg, i);
                r = proto__check_str(msg, &opt_key_field, opt->key, strlen(opt->key), err);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < i; j++)
                        if (strcmp(o->v[j].key, opt->key) == 0)
                                return nm_error_set(err, -EBADMSG, "%s: option '%s' appears twice", msg,
                                                    opt->key);
                switch (opt->kind) {
                case PROTO_OPT_BOOL: break;
                case PROTO_OPT_UINT:
                        if (opt->u > INT64_MAX)
                                return nm_error_set(err, -EBADMSG, "%s: option '%s' is above INT64_MAX", msg,
                                                    opt->key);
                        break;
                case PROTO_OPT_STR:
                        if (!opt->s)
                                return nm_error_set(err, -EINVAL, "%s: option '%s' is NULL", msg, opt->key);
                        r = check_opt_str(msg, opt->key, opt->s, strlen(opt->s), err);
                        if (r < 0)
                                return r;
                        break;
                case _PROTO_OPT_KIND_MAX:
                case _PROTO_OPT_KIND_INVALID:
                default:
                        return nm_error_set(err, -EINVAL, "%s: option '%s' has invalid kind %d", msg,
                                            opt->key, (int)opt->kind);
                }
        }
        return 0;
}

static int validate_field(const char *msg, const proto__field *f, const proto_msg *m, nm_error *err) {
        const void *v = field_cptr(m, f);
        uint64_t u;
        int e;

        switch (f->kind) {
        case PROTO__U32: return proto__check_int(msg, f, *(const uint32_t *)v, err);
        case PROTO__I32: return proto__check_int(msg, f, *(const int32_t *)v, err);
        case PROTO__U64:
                u = *(const uint64_t *)v;
                if (u > INT64_MAX)
                        return nm_error_set(err, -EBADMSG, "%s: field '%s' %" PRIu64 " is above INT64_MAX",
                                            msg, f->key, u);
                return proto__check_int(msg, f, (int64_t)u, err);
        case PROTO__BOOL:
        case PROTO__SHA256: return 0;
        case PROTO__STR: {
                const char *s = *(const char *const *)v;
                return proto__check_str(msg, f, s, strlen(s), err);
        }
        case PROTO__BIN: {
                const proto_bin *b = v;
                if ((int64_t)b->len < f->min || (int64_t)b->len > f->max)
                        return nm_error_set(err, -EBADMSG,
                                            "%s: field '%s' is %zu bytes long, outside %" PRIi64
                                            "..%" PRIi64,
                                            msg, f->key, b->len, f->min, f->max);
                return 0;
        }
        case PROTO__ENUM:
                e = *(const int *)v;
                if (e < 0 || (size_t)e >= f->n_names)
                        return enum_error(msg, f, err);
                return 0;
        case PROTO__STRV: return validate_strv(msg, f, v, err);
        case PROTO__OPTS: return validate_opts(msg, v, err);
        case _PROTO__KIND_MAX:
        case _PROTO__KIND_INVALID: break;
        }
        return nm_error_set(err, -EINVAL, "%s: field '%s' has an invalid kind", msg, f->key);
}

/* ---- Encoding ---- */

typedef struct enc {
        proto_buf *b;
        bool nomem;
} enc;

static int buf_reserve(proto_buf *b, size_t extra) {
        size_t want, cap;
        uint8_t *p;

        if (extra <= b->cap - b->len)
                return 0;
        if (extra > SIZE_MAX / 2 - b->len)
                return -ENOMEM;
        want = b->len + extra;
        cap = b->cap ? b->cap : 256;
        while (cap < want)
                cap *= 2;
        p = realloc(b->data, cap);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->cap = cap;
        return 0;
}

static int enc_write(void *data, const char *buf, size_t len) {
        enc *e = data;
        if (buf_reserve(e->b, len) < 0) {
                e->nomem = true;
                return -1;
        }
        memcpy(e->b->data + e->b->len, buf, len);
        e->b->len += len;
        return 0;
}

static void pack_str(msgpack_packer *pk, const char *s) {
        size_t len = strlen(s);
        (void)msgpack_pack_str_with_body(pk, s, len);
}

static void pack_opts(msgpack_packer *pk, const proto_opts *o) {
        (void)msgpack_pack_map(pk, o->n);
        for (size_t i = 0; i < o->n; i++) {
                pack_str(pk, o->v[i].key);
                switch (o->v[i].kind) {
                case PROTO_OPT_BOOL:
                        (void)(o->v[i].b ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
                        break;
                case PROTO_OPT_UINT: (void)msgpack_pack_uint64(pk, o->v[i].u); break;
                case PROTO_OPT_STR: pack_str(pk, o->v[i].s); break;
                case _PROTO_OPT_KIND_MAX:
                case _PROTO_OPT_KIND_INVALID: assert(!"validated before"); break;
                }
        }
}

static void pack_field(msgpack_packer *pk, const proto__field *f, const proto_msg *m) {
        const void *v = field_cptr(m, f);

        pack_str(pk, f->key);
        switch (f->kind) {
        case PROTO__U32: (void)msgpack_pack_uint32(pk, *(const uint32_t *)v); break;
        case PROTO__U64: (void)msgpack_pack_uint64(pk, *(const uint64_t *)v); break;
        case PROTO__I32: (void)msgpack_pack_int32(pk, *(const int32_t *)v); break;
        case PROTO__BOOL: (void)(*(const bool *)v ? msgpack_pack_true(pk) : msgpack_pack_false(pk)); break;
        case PROTO__STR: pack_str(pk, *(const char *const *)v); break;
        case PROTO__BIN:
                (void)msgpack_pack_bin_with_body(pk, ((const proto_bin *)v)->ptr,
                                                 ((const proto_bin *)v)->len);
                break;
        case PROTO__SHA256: (void)msgpack_pack_bin_with_body(pk, v, PROTO_SHA256_LEN); break;
        case PROTO__ENUM: pack_str(pk, f->names[*(const int *)v]); break;
        case PROTO__STRV: {
                const proto_strv *sv = v;
                (void)msgpack_pack_array(pk, sv->n);
                for (size_t i = 0; i < sv->n; i++)
                        pack_str(pk, sv->v[i]);
                break;
        }
        case PROTO__OPTS: pack_opts(pk, v); break;
        case _PROTO__KIND_MAX:
        case _PROTO__KIND_INVALID: assert(!"validated before"); break;
        }
}

/* Checks every field and counts those that will be sent. */
static int encode_validate(const proto__schema *s, const proto_msg *m, size_t *ret_count, nm_error *err) {
        size_t count = 1; /* "t" */
        int r;

        for (size_t i = 0; i < s->n_fields; i++) {
                const proto__field *f = &s->fields[i];
                if (!field_present(m, f)) {
                        if (f->required)
                                return nm_error_set(err, -EBADMSG, "%s: field '%s' missing", s->name,
                                                    f->key);
                        continue;
                }
                r = validate_field(s->name, f, m, err);
                if (r < 0)
                        return r;
                count++;
        }
        if (s->check) {
                r = s->check(m, err);
                if (r < 0)
                        return r;
        }
        *ret_count = count;
        return 0;
}

int proto_encode_append(proto_buf *b, const proto_msg *m, nm_error *err) {
        const proto__schema *s;
        size_t start, count, payload;
        msgpack_packer pk;
        enc e = {.b = b};
        int r;

        assert(b);
        assert(m);

        s = proto__schema_get(m->type);
        if (!s)
                return nm_error_set(err, -EPROTO, "cannot encode unknown message type %d", (int)m->type);
        r = encode_validate(s, m, &count, err);
        if (r < 0)
                return r;

        start = b->len;
        if (buf_reserve(b, PROTO_FRAME_HDR) < 0)
                return nm_error_errno(err, -ENOMEM, "%s: cannot encode", s->name);
        b->len += PROTO_FRAME_HDR;

        msgpack_packer_init(&pk, &e, enc_write);
        (void)msgpack_pack_map(&pk, count);
        pack_str(&pk, "t");
        (void)msgpack_pack_uint32(&pk, (uint32_t)m->type);
        for (size_t i = 0; i < s->n_fields; i++)
                if (field_present(m, &s->fields[i]))
                        pack_field(&pk, &s->fields[i], m);

        payload = b->len - start - PROTO_FRAME_HDR;
        if (e.nomem) {
                b->len = start;
                return nm_error_errno(err, -ENOMEM, "%s: cannot encode", s->name);
        }
        if (payload > PROTO_FRAME_MAX) {
                b->len = start;
                return nm_error_set(err, -E2BIG,
                                    "%s: encoded message of %zu bytes exceeds the frame limit %u", s->name,
                                    payload, PROTO_FRAME_MAX);
        }
        b->data[start] = (uint8_t)(payload >> 24);
        b->data[start + 1] = (uint8_t)(payload >> 16);
        b->data[start + 2] = (uint8_t)(payload >> 8);
        b->data[start + 3] = (uint8_t)payload;
        return 0;
}

int proto_encode(const proto_msg *m, uint8_t **ret_buf, size_t *ret_len, nm_error *err) {
        proto_buf b = {};
        int r;

        assert(ret_buf);
        assert(ret_len);

        r = proto_encode_append(&b, m, err);
        if (r < 0) {
                proto_buf_done(&b);
                return r;
        }
        *ret_buf = TAKE_PTR(b.data); /* transferred */
        *ret_len = b.len;
        return 0;
}

void proto_buf_done(proto_buf *b) {
        if (!b)
                return;
        free(b->data);
        *b = (proto_buf){};
}

/* ---- Decoding ---- */

static int decode_int(const char *msg, const proto__field *f, const msgpack_object *o, int64_t *ret,
                      nm_error *err) {
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                if (o->via.u64 > INT64_MAX)
                        return nm_error_set(err, -EBADMSG, "%s: field '%s' %" PRIu64 " is above INT64_MAX",
                                            msg, f->key, o->via.u64);
                *ret = (int64_t)o->via.u64;
        } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                *ret = o->via.i64;
        else
                return nm_error_set(err, -EBADMSG, "%s: field '%s' is %s, not an integer", msg, f->key,
                                    obj_type_name(o->type));
        return proto__check_int(msg, f, *ret, err);
}

/* Copies a validated msgpack string into the zone, NUL-terminated. */
static int decode_str(const char *msg, const proto__field *f, const msgpack_object *o, msgpack_zone *z,
                      const char **ret, nm_error *err) {
        char *s;
        int r;

        if (o->type != MSGPACK_OBJECT_STR)
                return nm_error_set(err, -EBADMSG, "%s: field '%s' is %s, not a string", msg, f->key,
                                    obj_type_name(o->type));
        r = proto__check_str(msg, f, o->via.str.ptr, o->via.str.size, err);
        if (r < 0)
                return r;
        s = msgpack_zone_malloc(z, (size_t)o->via.str.size + 1);
        if (!s)
                return nm_error_errno(err, -ENOMEM, "%s: cannot decode field '%s'", msg, f->key);
        memcpy(s, o->via.str.ptr, o->via.str.size);
        s[o->via.str.size] = '\0';
        *ret = s;
        return 0;
}

static int decode_strv(const char *msg, const proto__field *f, const msgpack_object *o, msgpack_zone *z,
                       proto_strv *ret, nm_error *err) {
        const char **v;
        char key[64];
        int r;

        if (o->type != MSGPACK_OBJECT_ARRAY)
                return nm_error_set(err, -EBADMSG, "%s: field '%s' is %s, not an array", msg, f->key,
                                    obj_type_name(o->type));
        if ((int64_t)o->via.array.size < f->min || (int64_t)o->via.array.size > f->max)
                return nm_error_set(err, -EBADMSG,
                                    "%s: field '%s' has %" PRIu32 " elements, outside %" PRIi64 "..%" PRIi64,
                                    msg, f->key, o->via.array.size, f->min, f->max);
        v = msgpack_zone_malloc(z, sizeof(char *) * (o->via.array.size + 1));
        if (!v)
                return nm_error_errno(err, -ENOMEM, "%s: cannot decode field '%s'", msg, f->key);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
                proto__field item = item_field(f, i, key, sizeof(key));
                r = decode_str(msg, &item, &o->via.array.ptr[i], z, &v[i], err);
                if (r < 0)
                        return r;
        }
        v[o->via.array.size] = NULL;
        *ret = (proto_strv){.v = v, .n = o->via.array.size};
        return 0;
}

static int decode_opt_value(const char *msg, const char *key, const msgpack_object *o, msgpack_zone *z,
                            proto_opt *opt, nm_error *err) {
        int r;

        if (o->type == MSGPACK_OBJECT_BOOLEAN) {
                opt->kind = PROTO_OPT_BOOL;
                opt->b = o->via.boolean;
        } else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                if (o->via.u64 > INT64_MAX)
                        return nm_error_set(err, -EBADMSG, "%s: option '%s' is above INT64_MAX", msg, key);
                opt->kind = PROTO_OPT_UINT;
                opt->u = o->via.u64;
        } else if (o->type == MSGPACK_OBJECT_STR) {
                opt->kind = PROTO_OPT_STR;
                r = check_opt_str(msg, key, o->via.str.ptr, o->via.str.size, err);
                if (r < 0)
                        return r;
                r = decode_str(msg, &opt_str_field, o, z, &opt->s, err);
                if (r < 0)
                        return r;
        } else
                return nm_error_set(err, -EBADMSG,
                                    "%s: option '%s' is %s, not a boolean, unsigned integer or string", msg,
                                    key, obj_type_name(o->type));
        return 0;
}

static int decode_opts(const char *msg, const proto__field *f, const msgpack_object *o, msgpack_zone *z,
                       proto_opts *ret, nm_error *err) {
        proto_opt *v;
        int r;

        if (o->type != MSGPACK_OBJECT_MAP)
                return nm_error_set(err, -EBADMSG, "%s: field '%s' is %s, not a map", msg, f->key,
                                    obj_type_name(o->type));
        if (o->via.map.size > f->max)
                return nm_error_set(err, -EBADMSG,
                                    "%s: field '%s' has %" PRIu32 " entries, more than %" PRIi64, msg,
                                    f->key, o->via.map.size, f->max);
        v = msgpack_zone_malloc(z, sizeof(proto_opt) * (o->via.map.size + 1));
        if (!v)
                return nm_error_errno(err, -ENOMEM, "%s: cannot decode field '%s'", msg, f->key);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
                const msgpack_object_kv *kv = &o->via.map.ptr[i];
                v[i] = (proto_opt){};
                r = decode_str(msg, &opt_key_field, &kv->key, z, &v[i].key, err);
                if (r < 0)
                        return r;
                for (uint32_t j = 0; j < i; j++)
                        if (strcmp(v[j].key, v[i].key) == 0)
                                return nm_error_set(err, -EBADMSG, "%s: option '%s' appears twice", msg,
                                                    v[i].key);
                r = decode_opt_value(msg, v[i].key, &kv->val, z, &v[i], err);
                if (r < 0)
                        return r;
        }
        *ret = (proto_opts){.v = v, .n = o->via.map.size};
        return 0;
}

static int decode_field(const char *msg, const proto__field *f, const msgpack_object *o, msgpack_zone *z,
                        proto_msg *m, nm_error *err) {
        void *v = field_ptr(m, f);
        int64_t i = 0;
        int r;

        switch (f->kind) {
        case PROTO__U32:
        case PROTO__U64:
        case PROTO__I32:
                r = decode_int(msg, f, o, &i, err);
                if (r < 0)
                        return r;
                if (f->kind == PROTO__U32)
                        *(uint32_t *)v = (uint32_t)i;
                else if (f->kind == PROTO__U64)
                        *(uint64_t *)v = (uint64_t)i;
                else
                        *(int32_t *)v = (int32_t)i;
                if (f->has_offset >= 0)
                        *(bool *)((uint8_t *)m + f->has_offset) = true;
                return 0;
        case PROTO__BOOL:
                if (o->type != MSGPACK_OBJECT_BOOLEAN)
                        return nm_error_set(err, -EBADMSG, "%s: field '%s' is %s, not a boolean", msg,
                                            f->key, obj_type_name(o->type));
                *(bool *)v = o->via.boolean;
                if (f->has_offset >= 0)
                        *(bool *)((uint8_t *)m + f->has_offset) = true;
                return 0;
        case PROTO__STR: return decode_str(msg, f, o, z, v, err);
        case PROTO__BIN:
        case PROTO__SHA256:
                if (o->type != MSGPACK_OBJECT_BIN)
                        return nm_error_set(err, -EBADMSG, "%s: field '%s' is %s, not a bin", msg, f->key,
                                            obj_type_name(o->type));
                if ((int64_t)o->via.bin.size < f->min || (int64_t)o->via.bin.size > f->max) {
                        if (f->min == f->max)
                                return nm_error_set(err, -EBADMSG,
                                                    "%s: field '%s' is %" PRIu32 " bytes long, not %" PRIi64,
                                                    msg, f->key, o->via.bin.size, f->min);
                        return nm_error_set(err, -EBADMSG,
                                            "%s: field '%s' is %" PRIu32 " bytes long, outside %" PRIi64
                                            "..%" PRIi64,
                                            msg, f->key, o->via.bin.size, f->min, f->max);
                }
                if (f->kind == PROTO__SHA256)
                        memcpy(v, o->via.bin.ptr, PROTO_SHA256_LEN);
                else
                        *(proto_bin *)v =
                                (proto_bin){.ptr = (const uint8_t *)o->via.bin.ptr, .len = o->via.bin.size};
                return 0;
        case PROTO__ENUM:
                if (o->type != MSGPACK_OBJECT_STR)
                        return nm_error_set(err, -EBADMSG, "%s: field '%s' is %s, not a string", msg, f->key,
                                            obj_type_name(o->type));
                for (size_t k = 0; k < f->n_names; k++)
                        if (key_is(o, f->names[k])) {
                                *(int *)v = (int)k;
                                return 0;
                        }
                return enum_error(msg, f, err);
        case PROTO__STRV: return decode_strv(msg, f, o, z, v, err);
        case PROTO__OPTS: return decode_opts(msg, f, o, z, v, err);
        case _PROTO__KIND_MAX:
        case _PROTO__KIND_INVALID: break;
        }
        return nm_error_set(err, -EINVAL, "%s: field '%s' has an invalid kind", msg, f->key);
}

/* Finds "t" and checks that every key is a string. */
static int decode_type(const msgpack_object *map, const proto__schema **ret, nm_error *err) {
        const msgpack_object *t = NULL;
        const proto__schema *s;

        for (uint32_t i = 0; i < map->via.map.size; i++) {
                const msgpack_object_kv *kv = &map->via.map.ptr[i];
                if (kv->key.type != MSGPACK_OBJECT_STR)
                        return nm_error_set(err, -EBADMSG, "frame: map key #%" PRIu32 " is %s, not a string",
                                            i, obj_type_name(kv->key.type));
                if (!key_is(&kv->key, "t"))
                        continue;
                if (t)
                        return nm_error_set(err, -EBADMSG, "frame: key 't' appears twice");
                t = &kv->val;
        }
        if (!t)
                return nm_error_set(err, -EBADMSG, "frame: key 't' (message type) missing");
        if (t->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return nm_error_set(err, -EBADMSG,
                                    "frame: key 't' (message type) is %s, not an unsigned integer",
                                    obj_type_name(t->type));
        s = t->via.u64 <= INT64_MAX ? proto__schema_get((int64_t)t->via.u64) : NULL;
        if (!s)
                return nm_error_set(err, -EPROTO, "frame: unknown message type %" PRIu64, t->via.u64);
        *ret = s;
        return 0;
}

static int decode_map(const msgpack_object *map, msgpack_zone *z, proto_msg *m, nm_error *err) {
        const proto__schema *s = NULL;
        uint64_t seen = 0;
        int r;

        if (map->type != MSGPACK_OBJECT_MAP)
                return nm_error_set(err, -EBADMSG, "frame: top-level msgpack object is %s, not a map",
                                    obj_type_name(map->type));
        r = decode_type(map, &s, err);
        if (r < 0)
                return r;
        m->type = (proto_msg_type)(s - proto__schemas);
        assert(s->n_fields <= 64); /* "seen" is a 64-bit mask */

        for (uint32_t i = 0; i < map->via.map.size; i++) {
                const msgpack_object_kv *kv = &map->via.map.ptr[i];
                size_t k;

                for (k = 0; k < s->n_fields; k++)
                        if (key_is(&kv->key, s->fields[k].key))
                                break;
                if (k == s->n_fields)
                        continue; /* "t", or a key from a newer peer */
                if (seen & (UINT64_C(1) << k))
                        return nm_error_set(err, -EBADMSG, "%s: field '%s' appears twice", s->name,
                                            s->fields[k].key);
                seen |= UINT64_C(1) << k;
                r = decode_field(s->name, &s->fields[k], &kv->val, z, m, err);
                if (r < 0)
                        return r;
        }
        for (size_t k = 0; k < s->n_fields; k++)
                if (s->fields[k].required && !(seen & (UINT64_C(1) << k)))
                        return nm_error_set(err, -EBADMSG, "%s: field '%s' missing", s->name,
                                            s->fields[k].key);
        return s->check ? s->check(m, err) : 0;
}

int proto_decode(const uint8_t *payload, size_t n, proto_msg *ret, nm_error *err) {
        _cleanup_proto_msg_ proto_msg m = {};
        msgpack_unpacked u;
        msgpack_unpack_return ur;
        size_t size, off = 0;
        int r;

        assert(payload || n == 0);
        assert(ret);

        if (n == 0)
                return nm_error_set(err, -EBADMSG, "frame: empty payload");
        if (n > PROTO_FRAME_MAX)
                return nm_error_set(err, -E2BIG, "frame length %zu exceeds limit %u", n, PROTO_FRAME_MAX);
        /* msgpack-c trusts announced sizes; walk the bytes first. */
        r = proto__msgpack_scan(payload, n, &size, err);
        if (r < 0)
                return r;
        if (size != n)
                return nm_error_set(err, -EBADMSG, "frame: %zu bytes of trailing garbage after the map",
                                    n - size);

        msgpack_unpacked_init(&u);
        ur = msgpack_unpack_next(&u, (const char *)payload, n, &off);
        m._zone = msgpack_unpacked_release_zone(&u);
        if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
                return nm_error_errno(err, -ENOMEM, "frame: cannot decode");
        if (ur != MSGPACK_UNPACK_SUCCESS || off != n)
                return nm_error_set(err, -EBADMSG, "frame: msgpack-c refused the map (%d)", (int)ur);
        /* msgpack-c drops its zone when the object needed none. */
        if (!m._zone) {
                m._zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
                if (!m._zone)
                        return nm_error_errno(err, -ENOMEM, "frame: cannot decode");
        }

        r = decode_map(&u.data, m._zone, &m, err);
        if (r < 0)
                return r;
        *ret = m;
        m = (proto_msg){}; /* transferred */
        return 0;
}

void proto_msg_done(proto_msg *m) {
        if (!m)
                return;
        if (m->_zone)
                msgpack_zone_free(m->_zone);
        *m = (proto_msg){};
}

/* ---- Names ---- */

const char *proto_msg_type_to_string(proto_msg_type t) {
        const proto__schema *s = proto__schema_get(t);
        return s ? s->name : NULL;
}

proto_msg_type proto_msg_type_from_string(const char *s) {
        if (s)
                for (int t = 0; t < _PROTO_MSG_TYPE_MAX; t++)
                        if (proto__schemas[t].name && strcmp(proto__schemas[t].name, s) == 0)
                                return (proto_msg_type)t;
        return _PROTO_MSG_TYPE_INVALID;
}

static const char *name_to_string(const char *const *names, size_t n, int v) {
        return v >= 0 && (size_t)v < n ? names[v] : NULL;
}

static int name_from_string(const char *const *names, size_t n, const char *s) {
        if (s)
                for (size_t i = 0; i < n; i++)
                        if (strcmp(names[i], s) == 0)
                                return (int)i;
        return -EINVAL;
}

const char *proto_role_to_string(proto_role r) {
        return name_to_string(proto__role_names, _PROTO_ROLE_MAX, r);
}

const char *proto_reject_code_to_string(proto_reject_code c) {
        return name_to_string(proto__reject_code_names, _PROTO_REJECT_CODE_MAX, c);
}

proto_reject_code proto_reject_code_from_string(const char *s) {
        return name_from_string(proto__reject_code_names, _PROTO_REJECT_CODE_MAX, s);
}

const char *proto_outcome_to_string(proto_outcome o) {
        return name_to_string(proto__outcome_names, _PROTO_OUTCOME_MAX, o);
}

proto_outcome proto_outcome_from_string(const char *s) {
        return name_from_string(proto__outcome_names, _PROTO_OUTCOME_MAX, s);
}

const char *proto_decision_to_string(proto_decision d) {
        return name_to_string(proto__decision_names, _PROTO_DECISION_MAX, d);
}

const char *proto_msg_mig(const proto_msg *m) {
        const proto__schema *s = m ? proto__schema_get(m->type) : NULL;

        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_fields; i++)
                if (strcmp(s->fields[i].key, "mig") == 0)
                        return *(const char *const *)field_cptr(m, &s->fields[i]);
        return NULL;
}

const proto_opt *proto_opts_get(const proto_opts *opts, const char *key) {
        if (!opts || !key)
                return NULL;
        for (size_t i = 0; i < opts->n; i++)
                if (strcmp(opts->v[i].key, key) == 0)
                        return &opts->v[i];
        return NULL;
}

bool proto_hello_has_feature(const proto_hello *h, const char *feature) {
        if (!h || !feature)
                return false;
        for (size_t i = 0; i < h->features.n; i++)
                if (strcmp(h->features.v[i], feature) == 0)
                        return true;
        return false;
}
