/* SPDX-License-Identifier: Apache-2.0 */
/* The nucleus runtime's container state files: parsing with the types its
 * serde structs enforce, and rewriting with every unknown field kept. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt-internal.h"
#include "fs-util.h"

static const char *const status_names[_CKPT_STATUS_MAX] = {
        [CKPT_STATUS_CREATING] = "creating",
        [CKPT_STATUS_CREATED] = "created",
        [CKPT_STATUS_RUNNING] = "running",
        [CKPT_STATUS_STOPPED] = "stopped",
};

const char *ckpt_status_to_string(ckpt_status s) {
        if (s < 0 || s >= _CKPT_STATUS_MAX)
                return NULL;
        return status_names[s];
}

ckpt_status ckpt_status_from_string(const char *s) {
        for (int i = 0; s && i < _CKPT_STATUS_MAX; i++)
                if (strcmp(s, status_names[i]) == 0)
                        return (ckpt_status)i;
        return _CKPT_STATUS_INVALID;
}

bool ckpt_container_id_valid(const char *id) {
        if (!id || !id[0])
                return false;
        for (const char *p = id; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_'))
                        return false;
        return true;
}

ckpt_container *ckpt_container_free(ckpt_container *c) {
        if (!c)
                return NULL;
        free(c->id);
        free(c->name);
        free(c->cgroup_path);
        ckpt__strv_free(c->command);
        json_decref(c->json);
        free(c);
        return NULL;
}

static int check_optional_fields(const json_t *o, nm_error *err) {
        static const char *const u64_fields[] = {"memory_limit", "cpu_limit", "config_hash", "started_at"};
        static const char *const u32_fields[] = {"creator_uid", "process_uid", "process_gid"};
        const char *s;
        const json_t *v, *e;
        const char *key;
        uint64_t x;
        size_t i;
        int r;

        for (i = 0; i < ARRAY_SIZE(u64_fields); i++) {
                r = ckpt__json_u64_field(o, u64_fields[i], false, UINT64_MAX, &x, NULL, err);
                if (r < 0)
                        return r;
        }
        for (i = 0; i < ARRAY_SIZE(u32_fields); i++) {
                r = ckpt__json_u64_field(o, u32_fields[i], false, UINT32_MAX, &x, NULL, err);
                if (r < 0)
                        return r;
        }
        r = ckpt__json_string(o, "bundle_path", false, &s, err);
        if (r < 0)
                return r;
        v = json_object_get(o, "additional_gids");
        if (v && !json_is_null(v)) {
                if (!json_is_array(v))
                        return nm_error_set(err, -EBADMSG, "field 'additional_gids' is not an array");
                json_array_foreach(v, i, e) if (
                        ckpt__json_get_u64(e, &x) < 0 ||
                        x > UINT32_MAX) return nm_error_set(err, -EBADMSG,
                                                            "field 'additional_gids' holds a bad gid");
        }
        v = json_object_get(o, "annotations");
        if (v && !json_is_null(v)) {
                if (!json_is_object(v))
                        return nm_error_set(err, -EBADMSG, "field 'annotations' is not an object");
                json_object_foreach((json_t *)v, key, e) if (!json_is_string(e)) return nm_error_set(
                        err, -EBADMSG, "annotation '%s' is not a string", key);
        }
        return 0;
}

static int container_fill(ckpt_container *c, const json_t *o, nm_error *err) {
        const char *id, *name, *cgroup, *status;
        uint64_t pid, started, ticks;
        int r;

        r = ckpt__json_string(o, "id", true, &id, err);
        if (r < 0)
                return r;
        if (!ckpt_container_id_valid(id))
                return nm_error_set(err, -EBADMSG, "invalid container id '%s' (allowed: a-zA-Z0-9_-)", id);
        r = ckpt__json_string(o, "name", true, &name, err);
        if (r < 0)
                return r;
        r = ckpt__json_u64_field(o, "pid", true, INT_MAX, &pid, NULL, err);
        if (r < 0)
                return r;
        r = ckpt__json_string_array(o, "command", &c->command, err);
        if (r < 0)
                return r;
        r = ckpt__json_u64_field(o, "started_at", true, UINT64_MAX, &started, NULL, err);
        if (r < 0)
                return r;
        r = ckpt__json_bool(o, "using_gvisor", true, &c->using_gvisor, err);
        if (r < 0)
                return r;
        r = ckpt__json_bool(o, "rootless", true, &c->rootless, err);
        if (r < 0)
                return r;
        r = ckpt__json_string(o, "cgroup_path", false, &cgroup, err);
        if (r < 0)
                return r;
        r = ckpt__json_u64_field(o, "start_ticks", false, UINT64_MAX, &ticks, NULL, err);
        if (r < 0)
                return r;
        r = ckpt__json_string(o, "status", false, &status, err);
        if (r < 0)
                return r;
        c->status = status ? ckpt_status_from_string(status) : CKPT_STATUS_STOPPED;
        if (c->status < 0)
                return nm_error_set(err, -EBADMSG, "field 'status' has unknown value '%s'", status);
        r = check_optional_fields(o, err);
        if (r < 0)
                return r;
        c->id = strdup(id);
        c->name = strdup(name);
        c->cgroup_path = cgroup ? strdup(cgroup) : NULL;
        if (!c->id || !c->name || (cgroup && !c->cgroup_path))
                return -ENOMEM;
        c->pid = (pid_t)pid;
        c->start_ticks = ticks;
        return 0;
}

int ckpt_container_from_json(const char *text, size_t len, ckpt_container **ret, nm_error *err) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        json_error_t jerr;
        json_t *o;
        int r;

        o = ckpt__json_loadb(text, len, &jerr);
        if (!o)
                return nm_error_set(err, -EBADMSG, "bad JSON at line %d column %d: %s", jerr.line,
                                    jerr.column, jerr.text);
        if (!json_is_object(o)) {
                json_decref(o);
                return nm_error_set(err, -EBADMSG, "state is not a JSON object");
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                json_decref(o);
                return -ENOMEM;
        }
        c->json = o;
        r = container_fill(c, o, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

int ckpt_container_format(const ckpt_container *c, char **ret_text, nm_error *err) {
        json_t *o;
        char *text;

        if (!c->json)
                return nm_error_set(err, -EINVAL, "container %s has no state file", c->id);
        o = json_deep_copy(c->json);
        if (!o)
                return -ENOMEM;
        /* Replacing a key keeps its place; a key the file lacked goes last. */
        if (json_object_set_new(o, "pid", json_integer(c->pid)) < 0 ||
            json_object_set_new(o, "start_ticks", ckpt__json_u64(c->start_ticks)) < 0 ||
            json_object_set_new(o, "status", json_string(ckpt_status_to_string(c->status))) < 0) {
                json_decref(o);
                return -ENOMEM;
        }
        text = ckpt__json_dumps(o);
        json_decref(o);
        if (!text)
                return nm_error_set(err, -ENOMEM, "cannot format the state of %s", c->id);
        *ret_text = text;
        return 0;
}

int ckpt__proc_read(pid_t pid, const char *what, char **ret, size_t *ret_len) {
        char path[64];
        if (pid <= 0)
                return -ESRCH;
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
        int r = read_file_at(AT_FDCWD, path, 1 << 20, ret, ret_len);
        return r == -ENOENT ? -ESRCH : r;
}

/* comm (field 2) may hold spaces and parentheses: the fields after the
 * last ')' are plain. NULL when there is no such field. */
static const char *stat_field_at(const char *stat, int n) {
        const char *p = stat ? strrchr(stat, ')') : NULL;

        if (!p || n < 3)
                return NULL;
        p++;
        for (int field = 3;; field++) {
                p += strspn(p, " ");
                if (!*p || *p == '\n')
                        return NULL;
                if (field == n)
                        return p;
                p += strcspn(p, " \n");
        }
}

int ckpt__stat_field(const char *stat, int n, long long *ret) {
        const char *p = stat_field_at(stat, n);
        char *end;
        long long v;

        if (!p)
                return -EBADMSG;
        errno = 0;
        v = strtoll(p, &end, 10);
        if (errno != 0 || end == p || (*end && *end != ' ' && *end != '\n'))
                return -EBADMSG;
        *ret = v;
        return 0;
}

char ckpt__stat_state(const char *stat) {
        const char *p = stat_field_at(stat, 3);
        if (!p || (p[1] != ' ' && p[1] != '\n' && p[1] != '\0'))
                return '\0';
        return p[0];
}

int ckpt__parse_start_ticks(const char *stat, uint64_t *ret) {
        long long v;
        int r = ckpt__stat_field(stat, 22, &v);
        if (r < 0)
                return r;
        if (v < 0)
                return -EBADMSG;
        *ret = (uint64_t)v;
        return 0;
}

int ckpt_proc_start_ticks(pid_t pid, uint64_t *ret) {
        _cleanup_free_ char *stat = NULL;
        int r = ckpt__proc_read(pid, "stat", &stat, NULL);
        if (r < 0)
                return r;
        return ckpt__parse_start_ticks(stat, ret);
}

uint64_t ckpt__now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
