/* SPDX-License-Identifier: Apache-2.0 */
/* jansson with nucleus's u64 numbers, and serde-like field checks. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt-internal.h"

#define MARK_LEN (sizeof(CKPT_U64_MARK) - 1)

/* Appends to a growing buffer. */
typedef struct buf {
        char *p;
        size_t n, cap;
} buf;

static int buf_add(buf *b, const char *s, size_t n) {
        if (!b->p || b->n + n + 1 > b->cap) {
                size_t ncap = (b->cap ? b->cap * 2 : 256) + n;
                char *np = realloc(b->p, ncap);
                if (!np)
                        return -ENOMEM;
                b->p = np;
                b->cap = ncap;
        }
        memcpy(b->p + b->n, s, n);
        b->n += n;
        b->p[b->n] = '\0';
        return 0;
}

/* True for an unsigned decimal literal above INT64_MAX that fits a u64. */
static bool is_big_u64(const char *s, size_t n) {
        static const char max_i64[] = "9223372036854775807", max_u64[] = "18446744073709551615";
        if (n < sizeof(max_i64) - 1 || n > sizeof(max_u64) - 1 || s[0] == '0')
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        if (n == sizeof(max_i64) - 1 && memcmp(s, max_i64, n) <= 0)
                return false;
        if (n == sizeof(max_u64) - 1 && memcmp(s, max_u64, n) > 0)
                return false;
        return true;
}

/* Rewrites big unsigned number tokens outside strings into marker strings.
 * Only tokens that jansson would refuse are touched; the lexing is simple
 * because anything malformed is left for jansson to report. */
static char *mark_big_numbers(const char *text, size_t len, size_t *ret_len, int *ret_count) {
        buf b = {};
        size_t i = 0, copied = 0;
        bool in_str = false;

        while (i < len) {
                char c = text[i];
                if (in_str) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_str = false;
                        i++;
                        continue;
                }
                if (c == '"') {
                        in_str = true;
                        i++;
                        continue;
                }
                if ((c >= '0' && c <= '9') || c == '-') {
                        size_t s = i;
                        while (i < len && text[i] && strchr("0123456789+-.eE", text[i]))
                                i++;
                        if (is_big_u64(text + s, i - s)) {
                                if (buf_add(&b, text + copied, s - copied) < 0 || buf_add(&b, "\"", 1) < 0 ||
                                    buf_add(&b, "\\u0001", 6) < 0 ||
                                    buf_add(&b, CKPT_U64_MARK + 1, MARK_LEN - 1) < 0 ||
                                    buf_add(&b, text + s, i - s) < 0 || buf_add(&b, "\"", 1) < 0) {
                                        free(b.p);
                                        return NULL;
                                }
                                copied = i;
                                (*ret_count)++;
                        }
                        continue;
                }
                i++;
        }
        if (buf_add(&b, text + copied, len - copied) < 0) {
                free(b.p);
                return NULL;
        }
        *ret_len = b.n;
        return b.p;
}

/* Counts marker strings in values and refuses any in keys: the number must
 * equal the markers we inserted, or the input forged one (e.g. with escapes
 * spelling out the marker), which would turn into a number on the way out. */
static int count_markers(const json_t *v, unsigned depth) {
        const char *key;
        const json_t *e;
        size_t i;
        int n = 0, r;

        if (depth > 64)
                return -ELOOP;
        if (json_is_string(v))
                return strncmp(json_string_value(v), CKPT_U64_MARK, MARK_LEN) == 0;
        if (json_is_array(v))
                json_array_foreach(v, i, e) {
                        r = count_markers(e, depth + 1);
                        if (r < 0)
                                return r;
                        n += r;
                }
        if (json_is_object(v))
                json_object_foreach((json_t *)v, key, e) {
                        if (strncmp(key, CKPT_U64_MARK, MARK_LEN) == 0)
                                return -EINVAL;
                        r = count_markers(e, depth + 1);
                        if (r < 0)
                                return r;
                        n += r;
                }
        return n;
}

static json_t *load_fail(json_error_t *error, const char *what) {
        if (error) {
                memset(error, 0, sizeof(*error));
                snprintf(error->text, sizeof(error->text), "%s", what);
        }
        return NULL;
}

json_t *ckpt__json_loadb(const char *text, size_t len, json_error_t *error) {
        _cleanup_free_ char *marked = NULL;
        size_t mlen = 0;
        int inserted = 0;

        marked = mark_big_numbers(text, len, &mlen, &inserted);
        if (!marked)
                return load_fail(error, "out of memory");
        json_t *j = json_loadb(marked, mlen, JSON_REJECT_DUPLICATES, error);
        if (j && count_markers(j, 0) != inserted) {
                json_decref(j);
                return load_fail(error, "reserved string value");
        }
        return j;
}

char *ckpt__json_dumps(const json_t *json) {
        static const char pat[] = "\"\\u0001nm-u64:";
        _cleanup_free_ char *s = json_dumps(json, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        buf b = {};
        const char *p, *q;

        if (!s)
                return NULL;
        if (!strstr(s, pat))
                return TAKE_PTR(s);
        for (p = s; (q = strstr(p, pat)); p = q) {
                const char *digits = q + sizeof(pat) - 1, *end = strchr(digits, '"');
                if (!end || buf_add(&b, p, (size_t)(q - p)) < 0 ||
                    buf_add(&b, digits, (size_t)(end - digits)) < 0) {
                        free(b.p);
                        return NULL;
                }
                q = end + 1;
        }
        if (buf_add(&b, p, strlen(p)) < 0) {
                free(b.p);
                return NULL;
        }
        return b.p;
}

json_t *ckpt__json_u64(uint64_t v) {
        char tmp[64];
        if (v <= INT64_MAX)
                return json_integer((json_int_t)v);
        snprintf(tmp, sizeof(tmp), "%s%" PRIu64, CKPT_U64_MARK, v);
        return json_string(tmp);
}

int ckpt__json_get_u64(const json_t *v, uint64_t *ret) {
        if (json_is_integer(v)) {
                json_int_t i = json_integer_value(v);
                if (i < 0)
                        return -ERANGE;
                *ret = (uint64_t)i;
                return 0;
        }
        if (json_is_string(v) && strncmp(json_string_value(v), CKPT_U64_MARK, MARK_LEN) == 0) {
                const char *d = json_string_value(v) + MARK_LEN;
                char *end;
                errno = 0;
                unsigned long long x = strtoull(d, &end, 10);
                if (errno != 0 || *end || end == d)
                        return -ERANGE;
                *ret = x;
                return 0;
        }
        return -EINVAL;
}

static int field(const json_t *o, const char *key, bool required, const json_t **ret, nm_error *err) {
        const json_t *v = json_object_get(o, key);
        if (!v || json_is_null(v)) {
                if (required)
                        return nm_error_set(err, -EBADMSG, "missing field '%s'", key);
                *ret = NULL;
                return 0;
        }
        *ret = v;
        return 1;
}

int ckpt__json_string(const json_t *o, const char *key, bool required, const char **ret, nm_error *err) {
        const json_t *v = NULL;
        int r = field(o, key, required, &v, err);
        if (r <= 0) {
                if (r == 0)
                        *ret = NULL;
                return r;
        }
        if (!json_is_string(v) || strncmp(json_string_value(v), CKPT_U64_MARK, MARK_LEN) == 0)
                return nm_error_set(err, -EBADMSG, "field '%s' is not a string", key);
        *ret = json_string_value(v);
        return 0;
}

int ckpt__json_u64_field(const json_t *o, const char *key, bool required, uint64_t max, uint64_t *ret,
                         bool *ret_present, nm_error *err) {
        const json_t *v = NULL;
        uint64_t x;
        int r = field(o, key, required, &v, err);
        if (r < 0)
                return r;
        if (r == 0) {
                *ret = 0;
                if (ret_present)
                        *ret_present = false;
                return 0;
        }
        if (ckpt__json_get_u64(v, &x) < 0 || x > max)
                return nm_error_set(err, -EBADMSG, "field '%s' is not an unsigned integer in range", key);
        *ret = x;
        if (ret_present)
                *ret_present = true;
        return 0;
}

int ckpt__json_bool(const json_t *o, const char *key, bool required, bool *ret, nm_error *err) {
        const json_t *v = NULL;
        int r = field(o, key, required, &v, err);
        if (r <= 0) {
                if (r == 0)
                        *ret = false;
                return r;
        }
        if (!json_is_boolean(v))
                return nm_error_set(err, -EBADMSG, "field '%s' is not a boolean", key);
        *ret = json_is_true(v);
        return 0;
}

int ckpt__json_string_array(const json_t *o, const char *key, char ***ret, nm_error *err) {
        const json_t *v = json_object_get(o, key), *e;
        char **l;
        size_t i;

        if (!v)
                return nm_error_set(err, -EBADMSG, "missing field '%s'", key);
        if (!json_is_array(v))
                return nm_error_set(err, -EBADMSG, "field '%s' is not an array of strings", key);
        l = calloc(json_array_size(v) + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        json_array_foreach(v, i, e) {
                if (!json_is_string(e) || strncmp(json_string_value(e), CKPT_U64_MARK, MARK_LEN) == 0) {
                        ckpt__strv_free(l);
                        return nm_error_set(err, -EBADMSG, "field '%s' is not an array of strings", key);
                }
                l[i] = strdup(json_string_value(e));
                if (!l[i]) {
                        ckpt__strv_free(l);
                        return -ENOMEM;
                }
        }
        *ret = l;
        return 0;
}

char **ckpt__strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
        return NULL;
}

char **ckpt__strv_copy(char *const *l) {
        size_t n = 0;
        char **c;
        while (l && l[n])
                n++;
        c = calloc(n + 1, sizeof(char *));
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(l[i]);
                if (!c[i])
                        return ckpt__strv_free(c);
        }
        return c;
}
