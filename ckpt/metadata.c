/* SPDX-License-Identifier: Apache-2.0 */
/* metadata.json: nucleus's CheckpointMetadata, field for field, plus ours. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "fs-util.h"
#include "nm-config.h"

#define METADATA_MAX (4 << 20)
#define NM_METADATA_FORMAT 1

/* ---- cgroup limits, read the way nucleus reads them ------------------- */

static char *trim(char *s) {
        char *e;
        while (*s == ' ' || *s == '\t' || *s == '\n')
                s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n'))
                *--e = '\0';
        return s;
}

static int parse_u64_strict(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;
        if (!s[0] || s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* "max" is null; anything else must be a u64. */
static int limit_value(const char *s, json_t **ret) {
        uint64_t v;
        if (strcmp(s, "max") == 0) {
                *ret = json_null();
                return 0;
        }
        if (parse_u64_strict(s, &v) < 0)
                return -EINVAL;
        *ret = ckpt__json_u64(v);
        return *ret ? 0 : -ENOMEM;
}

static int read_limit_file(int dfd, const char *name, char **ret, nm_error *err) {
        int r = read_file_at(dfd, name, 64 * 1024, ret, NULL);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read cgroup limit file %s", name);
        return 0;
}

static int read_optional_u64(int dfd, const char *name, json_t *o, const char *key, nm_error *err) {
        _cleanup_free_ char *text = NULL;
        json_t *v;
        int r = read_limit_file(dfd, name, &text, err);
        if (r < 0)
                return r;
        if (limit_value(trim(text), &v) < 0)
                return nm_error_set(err, -EBADMSG, "cannot parse cgroup limit file %s: '%s'", name,
                                    trim(text));
        return json_object_set_new(o, key, v) < 0 ? -ENOMEM : 0;
}

static int read_cpu_max(int dfd, json_t *o, nm_error *err) {
        _cleanup_free_ char *text = NULL;
        char quota[64], period[64], extra[2];
        uint64_t p;
        json_t *q;
        int r = read_limit_file(dfd, "cpu.max", &text, err);
        if (r < 0)
                return r;
        if (sscanf(text, "%63s %63s %1s", quota, period, extra) != 2)
                return nm_error_set(err, -EBADMSG, "invalid cpu.max format: '%s'", trim(text));
        if (limit_value(quota, &q) < 0)
                return nm_error_set(err, -EBADMSG, "cannot parse cpu.max quota '%s'", quota);
        if (parse_u64_strict(period, &p) < 0 || p == 0) {
                json_decref(q);
                return nm_error_set(err, -EBADMSG, "invalid cpu.max period '%s' (must be > 0)", period);
        }
        if (json_object_set_new(o, "cpu_quota_us", q) < 0 ||
            json_object_set_new(o, "cpu_period_us", ckpt__json_u64(p)) < 0)
                return -ENOMEM;
        return 0;
}

/* One io.max line: "MAJ:MIN rbps=N wbps=max riops=N wiops=max". The kernel
 * prints every key, "max" included; nucleus's parser would reject "max" (it
 * wants u64), we record it as null, which nucleus reads as no limit. */
/* "major:minor", decimal, nothing else. */
static bool is_device(const char *s) {
        size_t a = strspn(s, "0123456789"), b;
        if (a == 0 || s[a] != ':')
                return false;
        b = strspn(s + a + 1, "0123456789");
        return b > 0 && s[a + 1 + b] == '\0';
}

static int parse_io_line(char *line, json_t **ret, nm_error *err) {
        static const char *const keys[] = {"riops", "wiops", "rbps", "wbps"};
        json_t *vals[4] = {}, *o;
        char *save = NULL, *dev, *tok;

        dev = strtok_r(line, " \t", &save);
        if (!dev || !is_device(dev))
                return nm_error_set(err, -EBADMSG, "io.max: invalid device '%s', expected 'major:minor'",
                                    strna(dev));
        while ((tok = strtok_r(NULL, " \t", &save))) {
                char *eq = strchr(tok, '=');
                size_t k;
                if (!eq)
                        goto bad;
                *eq = '\0';
                for (k = 0; k < ARRAY_SIZE(keys) && strcmp(tok, keys[k]) != 0; k++)
                        ;
                if (k == ARRAY_SIZE(keys) || vals[k] || limit_value(eq + 1, &vals[k]) < 0)
                        goto bad;
        }
        o = json_object();
        if (!o || json_object_set_new(o, "device", json_string(dev)) < 0)
                goto oom;
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
                if (json_object_set_new(o, keys[k], vals[k] ? vals[k] : json_null()) < 0) {
                        vals[k] = NULL;
                        goto oom;
                }
                vals[k] = NULL;
        }
        *ret = o;
        return 0;
oom:
        json_decref(o);
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
                json_decref(vals[k]);
        return -ENOMEM;
bad:
        for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
                json_decref(vals[k]);
        return nm_error_set(err, -EBADMSG, "io.max: invalid parameter '%s'", tok);
}

static int read_io_max(int dfd, json_t *o, nm_error *err) {
        _cleanup_free_ char *text = NULL;
        json_t *arr = json_array();
        char *save = NULL;
        int r;

        if (!arr || json_object_set_new(o, "io_limits", arr) < 0)
                return -ENOMEM;
        r = read_file_at(dfd, "io.max", 1 << 20, &text, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return nm_error_errno(err, r, "cannot read io.max");
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                json_t *e = NULL;
                if (!trim(line)[0])
                        continue;
                r = parse_io_line(trim(line), &e, err);
                if (r < 0)
                        return r;
                if (json_array_append_new(arr, e) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int ckpt_resource_limits_read(int dfd, json_t **ret, nm_error *err) {
        json_t *o = json_object();
        int r;

        if (!o)
                return -ENOMEM;
        /* nucleus's field order */
        r = read_optional_u64(dfd, "memory.max", o, "memory_bytes", err);
        if (r >= 0)
                r = read_optional_u64(dfd, "memory.high", o, "memory_high", err);
        if (r >= 0)
                r = read_optional_u64(dfd, "memory.swap.max", o, "memory_swap_max", err);
        if (r >= 0)
                r = read_cpu_max(dfd, o, err);
        if (r >= 0)
                r = read_optional_u64(dfd, "cpu.weight", o, "cpu_weight", err);
        if (r >= 0)
                r = read_optional_u64(dfd, "pids.max", o, "pids_max", err);
        if (r >= 0)
                r = read_io_max(dfd, o, err);
        if (r < 0) {
                json_decref(o);
                return r;
        }
        *ret = o;
        return 0;
}

/* ---- the metadata object ---------------------------------------------- */

ckpt_metadata *ckpt_metadata_free(ckpt_metadata *md) {
        if (!md)
                return NULL;
        json_decref(md->json);
        free(md);
        return NULL;
}

static int set(json_t *o, const char *key, json_t *v) {
        return json_object_set_new(o, key, v) < 0 ? -ENOMEM : 0;
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *strv_to_json(char *const *l) {
        json_t *a = json_array();
        for (size_t i = 0; a && l && l[i]; i++)
                if (json_array_append_new(a, json_string(l[i])) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

/* Fills the borrowed views from md->json; also the check used on load. */
static int metadata_views(ckpt_metadata *md, nm_error *err) {
        const json_t *o = md->json, *rl, *st;
        uint64_t x;
        bool present;
        int r;

        if (!json_is_object(o))
                return nm_error_set(err, -EBADMSG, "metadata is not a JSON object");
        r = ckpt__json_string(o, "container_id", true, &md->container_id, err);
        if (r < 0)
                return r;
        if (!ckpt_container_id_valid(md->container_id))
                return nm_error_set(err, -EBADMSG, "invalid container_id '%s' (allowed: a-zA-Z0-9_-)",
                                    md->container_id);
        r = ckpt__json_string(o, "container_name", true, &md->container_name, err);
        if (r >= 0)
                r = ckpt__json_u64_field(o, "original_pid", true, UINT32_MAX, &x, NULL, err);
        if (r < 0)
                return r;
        md->original_pid = (uint32_t)x;
        _cleanup_(ckpt__strv_freep) char **cmd = NULL;
        r = ckpt__json_string_array(o, "command", &cmd, err);
        if (r >= 0)
                r = ckpt__json_u64_field(o, "checkpoint_at", true, UINT64_MAX, &md->checkpoint_at, NULL,
                                         err);
        const char *version;
        if (r >= 0)
                r = ckpt__json_string(o, "version", true, &version, err);
        if (r >= 0)
                r = ckpt__json_bool(o, "using_gvisor", true, &md->using_gvisor, err);
        if (r >= 0)
                r = ckpt__json_bool(o, "rootless", true, &md->rootless, err);
        if (r >= 0)
                r = ckpt__json_string(o, "cgroup_path", false, &md->cgroup_path, err);
        if (r < 0)
                return r;
        rl = json_object_get(o, "resource_limits");
        if (rl && !json_is_null(rl)) {
                static const char *const opt[] = {"memory_bytes", "memory_high", "memory_swap_max",
                                                  "cpu_quota_us", "cpu_weight"};
                if (!json_is_object(rl))
                        return nm_error_set(err, -EBADMSG, "field 'resource_limits' is not an object");
                for (size_t i = 0; i < ARRAY_SIZE(opt); i++) {
                        r = ckpt__json_u64_field(rl, opt[i], false, UINT64_MAX, &x, NULL, err);
                        if (r < 0)
                                return r;
                }
                /* nucleus's validate_runtime_sanity */
                r = ckpt__json_u64_field(rl, "cpu_period_us", true, UINT64_MAX, &x, NULL, err);
                if (r < 0)
                        return r;
                if (x == 0)
                        return nm_error_set(err, -EBADMSG,
                                            "invalid checkpoint resource limits: CPU period is 0");
                r = ckpt__json_u64_field(rl, "pids_max", false, UINT64_MAX, &x, &present, err);
                if (r < 0)
                        return r;
                if (present && (x == 0 || x == UINT64_MAX))
                        return nm_error_set(err, -EBADMSG,
                                            "invalid checkpoint resource limits: pids_max %llu",
                                            (unsigned long long)x);
                if (!json_is_array(json_object_get(rl, "io_limits")))
                        return nm_error_set(err, -EBADMSG, "field 'io_limits' is not an array");
        }
        r = ckpt__json_bool(o, "nm_bare_pid", false, &md->bare, err);
        if (r >= 0)
                r = ckpt__json_u64_field(o, "nm_image_bytes", false, UINT64_MAX, &md->image_bytes,
                                         &md->has_image_bytes, err);
        if (r < 0)
                return r;
        st = json_object_get(o, "nm_container_state");
        if (st && !json_is_null(st) && !json_is_object(st))
                return nm_error_set(err, -EBADMSG, "field 'nm_container_state' is not an object");
        md->container_state = st && json_is_object(st) ? st : NULL;
        return 0;
}

static bool has_any_limit_file(int dfd) {
        static const char *const files[] = {"memory.max", "cpu.max", "pids.max", "io.max"};
        for (size_t i = 0; i < ARRAY_SIZE(files); i++)
                if (faccessat(dfd, files[i], F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                        return true;
        return false;
}

static int capture_limits(const char *cgroup_path, json_t **ret, nm_error *err) {
        _cleanup_close_ int dfd = -EBADF;
        int r;

        if (!cgroup_path) {
                *ret = json_null();
                return 0;
        }
        dfd = open_dir_nofollow(cgroup_path);
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open the container's cgroup %s", cgroup_path);
        /* A cgroup in a hierarchy that offers no controller (the unified
         * hierarchy of a hybrid host) has no limits to read at all: null,
         * as for a container without a cgroup. */
        if (!has_any_limit_file(dfd)) {
                *ret = json_null();
                return 0;
        }
        r = ckpt_resource_limits_read(dfd, ret, err);
        if (r < 0) {
                nm_error_prefix(err, "cgroup %s", cgroup_path);
                return r;
        }
        return 0;
}

int ckpt_metadata_capture(const ckpt_container *c, const ckpt_capture_info *info, ckpt_metadata **ret,
                          nm_error *err) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        json_t *o, *limits = NULL, *state;
        struct utsname u;
        int r;

        if (uname(&u) < 0)
                return nm_error_errno(err, negative_errno(), "uname");
        r = capture_limits(c->cgroup_path, &limits, err);
        if (r < 0)
                return r;
        md = calloc(1, sizeof(*md));
        o = json_object();
        if (!md || !o) {
                json_decref(o);
                json_decref(limits);
                return -ENOMEM;
        }
        md->json = o;
        state = c->json ? json_deep_copy(c->json) : json_null();
        /* Nucleus's order first (serde serialises struct fields in order). */
        if (set(o, "container_id", json_string(c->id)) < 0 ||
            set(o, "container_name", json_string(c->name)) < 0 ||
            set(o, "original_pid", json_integer(c->pid)) < 0 ||
            set(o, "command", strv_to_json(c->command)) < 0 ||
            set(o, "checkpoint_at", ckpt__json_u64((uint64_t)time(NULL))) < 0 ||
            set(o, "version", json_string(NM_VERSION)) < 0 ||
            set(o, "using_gvisor", json_boolean(c->using_gvisor)) < 0 ||
            set(o, "rootless", json_boolean(c->rootless)) < 0 ||
            set(o, "cgroup_path", string_or_null(c->cgroup_path)) < 0 ||
            set(o, "resource_limits", limits) < 0 ||
            /* ours */
            set(o, "nm_format", json_integer(NM_METADATA_FORMAT)) < 0 ||
            set(o, "nm_source_node", json_string(info && info->node_name ? info->node_name : u.nodename)) <
                    0 ||
            set(o, "nm_kernel_release", json_string(u.release)) < 0 ||
            set(o, "nm_criu_version", string_or_null(info ? info->criu_version : NULL)) < 0 ||
            set(o, "nm_image_bytes", json_null()) < 0 || set(o, "nm_bare_pid", json_boolean(c->bare)) < 0 ||
            set(o, "nm_container_state", state) < 0)
                return nm_error_set(err, -ENOMEM, "cannot build metadata for %s", c->id);
        r = metadata_views(md, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(md);
        return 0;
}

void ckpt_metadata_set_image_bytes(ckpt_metadata *md, uint64_t bytes) {
        json_t *v = json_object_get(md->json, "nm_image_bytes");

        md->image_bytes = bytes;
        md->has_image_bytes = true;
        /* The slot exists since capture; replacing a null by an integer
         * allocates one small value, and if even that fails the file keeps
         * null, which every reader accepts. */
        if (v && json_is_integer(v))
                json_integer_set(v, (json_int_t)(bytes > INT64_MAX ? INT64_MAX : bytes));
        else
                (void)json_object_set_new(md->json, "nm_image_bytes", ckpt__json_u64(bytes));
}

int ckpt_metadata_format(const ckpt_metadata *md, char **ret_text, nm_error *err) {
        char *text = ckpt__json_dumps(md->json);
        if (!text)
                return nm_error_set(err, -ENOMEM, "cannot format metadata.json");
        *ret_text = text;
        return 0;
}

int ckpt_metadata_write(int dirfd, const ckpt_metadata *md, nm_error *err) {
        _cleanup_free_ char *text = NULL;
        int r = ckpt_metadata_format(md, &text, err);
        if (r < 0)
                return r;
        r = write_file_atomic_at(dirfd, CKPT_METADATA_FILE, text, strlen(text), 0600);
        if (r < 0)
                return nm_error_errno(err, r, "cannot write %s", CKPT_METADATA_FILE);
        return 0;
}

int ckpt_metadata_parse(const char *text, size_t len, ckpt_metadata **ret, nm_error *err) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = calloc(1, sizeof(*md));
        json_error_t jerr;
        int r;

        if (!md)
                return -ENOMEM;
        md->json = ckpt__json_loadb(text, len, &jerr);
        if (!md->json)
                return nm_error_set(err, -EBADMSG, "bad JSON in %s at line %d column %d: %s",
                                    CKPT_METADATA_FILE, jerr.line, jerr.column, jerr.text);
        r = metadata_views(md, err);
        if (r < 0) {
                nm_error_prefix(err, "%s", CKPT_METADATA_FILE);
                return r;
        }
        *ret = TAKE_PTR(md);
        return 0;
}

int ckpt_metadata_load(int dirfd, ckpt_metadata **ret, nm_error *err) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_file_at(dirfd, CKPT_METADATA_FILE, METADATA_MAX, &text, &len);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read %s", CKPT_METADATA_FILE);
        return ckpt_metadata_parse(text, len, ret, err);
}

/* A state object in nucleus's field order, for checkpoints that carry no
 * copy of the source's state file (made by nucleus itself). */
static json_t *state_from_metadata(const ckpt_metadata *md) {
        const json_t *o = md->json, *rl = json_object_get(o, "resource_limits");
        json_t *s = json_object(), *mem = json_null(), *cpu = json_null();
        uint64_t quota, period;

        if (json_is_object(rl)) {
                const json_t *m = json_object_get(rl, "memory_bytes");
                if (m && !json_is_null(m))
                        mem = json_deep_copy(m);
                if (ckpt__json_get_u64(json_object_get(rl, "cpu_quota_us"), &quota) >= 0 &&
                    ckpt__json_get_u64(json_object_get(rl, "cpu_period_us"), &period) >= 0 && period > 0)
                        cpu = ckpt__json_u64(quota * 1000 / period);
        }
        if (!s || set(s, "id", json_string(md->container_id)) < 0 ||
            set(s, "name", json_string(md->container_name)) < 0 || set(s, "pid", json_integer(0)) < 0 ||
            set(s, "command", json_deep_copy(json_object_get(o, "command"))) < 0 ||
            set(s, "started_at", ckpt__json_u64((uint64_t)time(NULL))) < 0 ||
            set(s, "memory_limit", mem) < 0 || set(s, "cpu_limit", cpu) < 0 ||
            set(s, "using_gvisor", json_boolean(md->using_gvisor)) < 0 ||
            set(s, "rootless", json_boolean(md->rootless)) < 0 ||
            set(s, "cgroup_path", string_or_null(md->cgroup_path)) < 0 ||
            set(s, "config_hash", json_null()) < 0 || set(s, "creator_uid", json_integer(geteuid())) < 0 ||
            set(s, "start_ticks", json_integer(0)) < 0 || set(s, "status", json_string("running")) < 0 ||
            set(s, "bundle_path", json_null()) < 0 || set(s, "annotations", json_object()) < 0) {
                json_decref(s);
                return NULL;
        }
        return s;
}

int ckpt_container_from_metadata(const ckpt_metadata *md, ckpt_container **ret, nm_error *err) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        _cleanup_free_ char *text = NULL;
        json_t *s;
        int r;

        if (md->bare) {
                c = calloc(1, sizeof(*c));
                if (!c)
                        return -ENOMEM;
                c->id = strdup(md->container_id);
                c->name = strdup(md->container_name);
                c->command = calloc(1, sizeof(char *));
                if (!c->id || !c->name || !c->command)
                        return -ENOMEM;
                c->bare = true;
                c->status = CKPT_STATUS_RUNNING;
                *ret = TAKE_PTR(c);
                return 0;
        }
        s = md->container_state ? json_deep_copy(md->container_state) : state_from_metadata(md);
        if (!s)
                return -ENOMEM;
        /* Parse through the text so that the same type checks apply as to a
         * state file read from disk. */
        text = ckpt__json_dumps(s);
        json_decref(s);
        if (!text)
                return -ENOMEM;
        r = ckpt_container_from_json(text, strlen(text), &c, err);
        if (r < 0) {
                nm_error_prefix(err, "container state in %s", CKPT_METADATA_FILE);
                return r;
        }
        if (strcmp(c->id, md->container_id) != 0)
                return nm_error_set(err, -EBADMSG, "%s: container_id '%s' differs from its state's id '%s'",
                                    CKPT_METADATA_FILE, md->container_id, c->id);
        *ret = TAKE_PTR(c);
        return 0;
}
