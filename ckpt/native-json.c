/* SPDX-License-Identifier: Apache-2.0 */
/* The description of a native container as metadata.json's "nm_native"
 * object (our own field: nucleus's serde ignores it), and back. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt-internal.h"
#include "ckpt.h"

static const char *const mount_kinds[_CKPT_MOUNT_KIND_MAX] = {
        [CKPT_MOUNT_ROOT] = "root", [CKPT_MOUNT_HOST_BIND] = "host-bind", [CKPT_MOUNT_CRIU] = "criu"};
static const char *const stdio_kinds[_CKPT_STDIO_KIND_MAX] = {
        [CKPT_STDIO_INSIDE] = "inside", [CKPT_STDIO_NULL] = "null",       [CKPT_STDIO_FILE] = "file",
        [CKPT_STDIO_PIPE] = "pipe",     [CKPT_STDIO_FOREIGN] = "foreign", [CKPT_STDIO_TTY] = "tty"};
static const char *const net_modes[_CKPT_NET_MODE_MAX] = {[CKPT_NET_HOST] = "host",
                                                          [CKPT_NET_NONE] = "none",
                                                          [CKPT_NET_BRIDGE] = "bridge",
                                                          [CKPT_NET_TAP] = "tap",
                                                          [CKPT_NET_OTHER] = "other"};
static const char *const landlocks[_CKPT_LANDLOCK_MAX] = {[CKPT_LANDLOCK_NONE] = "none",
                                                          [CKPT_LANDLOCK_ASSUMED] = "assumed",
                                                          [CKPT_LANDLOCK_ACCEPTED_LOSS] = "accepted-loss"};
static const struct {
        unsigned flag;
        const char *name;
} mount_flags[] = {{CKPT_MNT_RDONLY, "ro"},
                   {CKPT_MNT_NOSUID, "nosuid"},
                   {CKPT_MNT_NODEV, "nodev"},
                   {CKPT_MNT_NOEXEC, "noexec"}};

static int from_string(const char *const *names, int n, const char *s) {
        for (int i = 0; s && i < n; i++)
                if (names[i] && strcmp(names[i], s) == 0)
                        return i;
        return -EINVAL;
}

static json_t *str_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

/* ---- to JSON ------------------------------------------------------------------ */

static json_t *mount_json(const ckpt_native_mount *m) {
        json_t *o = json_object(), *flags = json_array();
        for (size_t i = 0; i < ARRAY_SIZE(mount_flags); i++)
                if (m->flags & mount_flags[i].flag)
                        json_array_append_new(flags, json_string(mount_flags[i].name));
        json_object_set_new(o, "kind", json_string(mount_kinds[m->kind]));
        json_object_set_new(o, "target", json_string(m->target));
        json_object_set_new(o, "fstype", json_string(m->fstype));
        json_object_set_new(o, "source", str_or_null(m->source));
        json_object_set_new(o, "options", str_or_null(m->options));
        json_object_set_new(o, "flags", flags);
        json_object_set_new(o, "file", json_boolean(m->is_file));
        return o;
}

int ckpt_native_to_json(const ckpt_native *n, json_t **ret) {
        json_t *o = json_object(), *mounts = json_array(), *net = json_object(), *cg = json_object(),
               *sec = json_object(), *stdio = json_array(), *criu = json_object();
        char cap[32];

        if (!o || !mounts || !net || !cg || !sec || !stdio || !criu) {
                json_decref(o);
                json_decref(mounts);
                json_decref(net);
                json_decref(cg);
                json_decref(sec);
                json_decref(stdio);
                json_decref(criu);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n->n_mounts; i++)
                json_array_append_new(mounts, mount_json(&n->mounts[i]));
        json_object_set_new(net, "mode", json_string(net_modes[n->net]));
        json_object_set_new(net, "iface", str_or_null(n->iface));
        json_object_set_new(net, "vethc", str_or_null(n->vethc));
        json_object_set_new(net, "veth", str_or_null(n->veth));
        json_object_set_new(net, "bridge", str_or_null(n->bridge));
        json_object_set_new(net, "address", str_or_null(n->address));
        json_object_set_new(net, "prefix", json_integer(n->prefix));
        json_object_set_new(net, "bridge_net", str_or_null(n->bridge_net));
        json_object_set_new(net, "ports", ckpt_native_ports_to_json(n->ports, n->n_ports));
        json_object_set_new(cg, "path", str_or_null(n->cgroup));
        json_object_set_new(cg, "inside", str_or_null(n->cgroup_inside));
        json_object_set_new(cg, "ns_root", str_or_null(n->cgroupns_root));
        json_object_set_new(cg, "dump", str_or_null(n->cgroup_dump));
        json_object_set_new(cg, "fs", str_or_null(n->cgroup_fs));
        snprintf(cap, sizeof(cap), "%016llx", (unsigned long long)n->cap_eff);
        json_object_set_new(sec, "seccomp", json_integer(n->seccomp));
        json_object_set_new(sec, "no_new_privs", json_boolean(n->no_new_privs));
        json_object_set_new(sec, "cap_eff", json_string(cap));
        json_object_set_new(sec, "landlock", json_string(landlocks[n->landlock]));
        json_object_set_new(sec, "user_ns", json_boolean(n->user_ns));
        for (size_t i = 0; i < ARRAY_SIZE(n->stdio); i++) {
                json_t *s = json_object();
                json_object_set_new(s, "kind", json_string(stdio_kinds[n->stdio[i].kind]));
                json_object_set_new(s, "key", str_or_null(n->stdio[i].key));
                json_object_set_new(s, "write", json_boolean(n->stdio[i].write));
                json_array_append_new(stdio, s);
        }
        json_object_set_new(criu, "tcp_established", json_boolean(n->tcp_established));
        json_object_set_new(criu, "file_locks", json_boolean(n->file_locks));
        json_object_set_new(o, "own_mount_ns", json_boolean(n->own_mount_ns));
        json_object_set_new(o, "mounts", mounts);
        json_object_set_new(o, "root_bytes", ckpt__json_u64(n->root_bytes));
        json_object_set_new(o, "net", net);
        json_object_set_new(o, "cgroup", cg);
        json_object_set_new(o, "security", sec);
        json_object_set_new(o, "stdio", stdio);
        json_object_set_new(o, "init_outside", str_or_null(n->init_outside));
        json_object_set_new(o, "memfd_mount", str_or_null(n->memfd_mount));
        json_object_set_new(o, "criu", criu);
        *ret = o;
        return 0;
}

/* ---- from JSON -------------------------------------------------------------------- */

static int opt_string(const json_t *o, const char *key, char **ret, nm_error *err) {
        const char *s = NULL;
        int r = ckpt__json_string(o, key, false, &s, err);
        if (r < 0)
                return r;
        *ret = s ? strdup(s) : NULL;
        return s && !*ret ? -ENOMEM : 0;
}

static int enum_field(const json_t *o, const char *key, const char *const *names, int n, int *ret,
                      nm_error *err) {
        const char *s = NULL;
        int r = ckpt__json_string(o, key, true, &s, err);
        if (r < 0)
                return r;
        r = from_string(names, n, s);
        if (r < 0)
                return nm_error_set(err, -EBADMSG, "nm_native: unknown %s '%s'", key, s);
        *ret = r;
        return 0;
}

static const json_t *object_field(const json_t *o, const char *key, nm_error *err) {
        const json_t *v = json_object_get(o, key);
        if (!json_is_object(v))
                nm_error_set(err, -EBADMSG, "nm_native: field '%s' is not an object", key);
        return json_is_object(v) ? v : NULL;
}

static int mount_from_json(const json_t *o, ckpt_native_mount *m, nm_error *err) {
        const json_t *flags = json_object_get(o, "flags"), *f;
        int kind, r;
        size_t i;

        if (!json_is_object(o) || !json_is_array(flags))
                return nm_error_set(err, -EBADMSG, "nm_native: a mount is malformed");
        r = enum_field(o, "kind", mount_kinds, _CKPT_MOUNT_KIND_MAX, &kind, err);
        if (r >= 0)
                r = opt_string(o, "target", &m->target, err);
        if (r >= 0)
                r = opt_string(o, "fstype", &m->fstype, err);
        if (r >= 0)
                r = opt_string(o, "source", &m->source, err);
        if (r >= 0)
                r = opt_string(o, "options", &m->options, err);
        if (r >= 0)
                r = ckpt__json_bool(o, "file", false, &m->is_file, err);
        if (r < 0)
                return r;
        m->kind = (ckpt_mount_kind)kind;
        if (!m->target || m->target[0] != '/' || !m->fstype ||
            (m->kind == CKPT_MOUNT_HOST_BIND && !m->source) || (m->source && m->source[0] != '/'))
                return nm_error_set(err, -EBADMSG, "nm_native: mount %s is incomplete", strna(m->target));
        json_array_foreach(flags, i, f) {
                size_t k;
                for (k = 0; k < ARRAY_SIZE(mount_flags); k++)
                        if (json_is_string(f) && strcmp(json_string_value(f), mount_flags[k].name) == 0)
                                break;
                if (k == ARRAY_SIZE(mount_flags))
                        return nm_error_set(err, -EBADMSG, "nm_native: unknown mount flag on %s", m->target);
                m->flags |= mount_flags[k].flag;
        }
        return 0;
}

json_t *ckpt_native_ports_to_json(const ckpt_native_port *ports, size_t n_ports) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n_ports; i++) {
                const ckpt_native_port *p = &ports[i];
                json_array_append_new(a, json_pack("{s:s, s:s?, s:i, s:i}", "proto",
                                                   ckpt_proto_to_string(p->proto), "host_ip",
                                                   p->host_ip[0] ? p->host_ip : NULL, "host_port",
                                                   (int)p->host_port, "ctr_port", (int)p->ctr_port));
        }
        return a;
}

static int port_from_json(const json_t *o, ckpt_native_port *p, nm_error *err) {
        const char *proto = NULL, *host_ip = NULL;
        uint64_t host_port = 0, ctr_port = 0;
        struct in_addr a;
        int r;

        if (!json_is_object(o))
                return nm_error_set(err, -EBADMSG, "nm_native: a published port is not an object");
        r = ckpt__json_string(o, "proto", true, &proto, err);
        if (r >= 0)
                r = ckpt__json_string(o, "host_ip", false, &host_ip, err);
        if (r >= 0)
                r = ckpt__json_u64_field(o, "host_port", true, 65535, &host_port, NULL, err);
        if (r >= 0)
                r = ckpt__json_u64_field(o, "ctr_port", true, 65535, &ctr_port, NULL, err);
        if (r < 0)
                return r;
        p->proto = ckpt_proto_from_string(proto);
        if (p->proto < 0 || host_port == 0 || ctr_port == 0 ||
            (host_ip && (strlen(host_ip) >= sizeof(p->host_ip) || inet_pton(AF_INET, host_ip, &a) != 1)))
                return nm_error_set(err, -EBADMSG, "nm_native: a bad published port");
        snprintf(p->host_ip, sizeof(p->host_ip), "%s", host_ip ? host_ip : "");
        p->host_port = (uint16_t)host_port;
        p->ctr_port = (uint16_t)ctr_port;
        return 0;
}

int ckpt_native_ports_from_json(const json_t *a, ckpt_native_port **ret, size_t *ret_n, nm_error *err) {
        _cleanup_free_ ckpt_native_port *ports = NULL;
        size_t n = json_array_size(a);

        if (a && !json_is_array(a) && !json_is_null(a))
                return nm_error_set(err, -EBADMSG, "nm_native: ports is not an array");
        if (n > 1024)
                return nm_error_set(err, -EBADMSG, "nm_native: too many published ports");
        if (n && !(ports = calloc(n, sizeof(*ports))))
                return nm_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                int r = port_from_json(json_array_get(a, i), &ports[i], err);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(ports);
        *ret_n = n;
        return 0;
}

static int net_from_json(const json_t *o, ckpt_native *n, nm_error *err) {
        int mode, r;
        uint64_t prefix;

        r = enum_field(o, "mode", net_modes, _CKPT_NET_MODE_MAX, &mode, err);
        if (r >= 0)
                r = opt_string(o, "iface", &n->iface, err);
        if (r >= 0)
                r = opt_string(o, "vethc", &n->vethc, err);
        if (r >= 0)
                r = opt_string(o, "veth", &n->veth, err);
        if (r >= 0)
                r = opt_string(o, "bridge", &n->bridge, err);
        if (r >= 0)
                r = opt_string(o, "address", &n->address, err);
        if (r >= 0)
                r = opt_string(o, "bridge_net", &n->bridge_net, err);
        if (r >= 0)
                r = ckpt__json_u64_field(o, "prefix", false, 32, &prefix, NULL, err);
        if (r >= 0) /* absent from older sources: none */
                r = ckpt_native_ports_from_json(json_object_get(o, "ports"), &n->ports, &n->n_ports, err);
        if (r < 0)
                return r;
        n->net = (ckpt_net_mode)mode;
        n->prefix = (unsigned)prefix;
        if (n->net == CKPT_NET_BRIDGE && (!n->vethc || !n->veth || !n->bridge || !n->address))
                return nm_error_set(err, -EBADMSG,
                                    "nm_native: bridge networking without veth, bridge or address");
        return 0;
}

static int cgroup_from_json(const json_t *o, ckpt_native *n, nm_error *err) {
        int r = opt_string(o, "path", &n->cgroup, err);
        if (r >= 0)
                r = opt_string(o, "inside", &n->cgroup_inside, err);
        if (r >= 0)
                r = opt_string(o, "ns_root", &n->cgroupns_root, err);
        if (r >= 0)
                r = opt_string(o, "dump", &n->cgroup_dump, err);
        if (r >= 0)
                r = opt_string(o, "fs", &n->cgroup_fs, err);
        return r;
}

static int security_from_json(const json_t *o, ckpt_native *n, nm_error *err) {
        const char *cap = NULL;
        uint64_t seccomp;
        int landlock, r;

        r = ckpt__json_u64_field(o, "seccomp", false, 2, &seccomp, NULL, err);
        if (r >= 0)
                r = ckpt__json_bool(o, "no_new_privs", false, &n->no_new_privs, err);
        if (r >= 0)
                r = ckpt__json_string(o, "cap_eff", false, &cap, err);
        if (r >= 0)
                r = enum_field(o, "landlock", landlocks, _CKPT_LANDLOCK_MAX, &landlock, err);
        if (r >= 0)
                r = ckpt__json_bool(o, "user_ns", false, &n->user_ns, err);
        if (r < 0)
                return r;
        n->seccomp = (int)seccomp;
        n->cap_eff = cap ? strtoull(cap, NULL, 16) : 0;
        n->landlock = (ckpt_landlock)landlock;
        return 0;
}

static int stdio_from_json(const json_t *a, ckpt_native *n, nm_error *err) {
        if (!json_is_array(a) || json_array_size(a) != ARRAY_SIZE(n->stdio))
                return nm_error_set(err, -EBADMSG, "nm_native: 'stdio' is not an array of three");
        for (size_t i = 0; i < ARRAY_SIZE(n->stdio); i++) {
                const json_t *s = json_array_get(a, i);
                int kind, r;
                if (!json_is_object(s))
                        return nm_error_set(err, -EBADMSG, "nm_native: stdio %zu is malformed", i);
                r = enum_field(s, "kind", stdio_kinds, _CKPT_STDIO_KIND_MAX, &kind, err);
                if (r >= 0)
                        r = opt_string(s, "key", &n->stdio[i].key, err);
                if (r >= 0)
                        r = ckpt__json_bool(s, "write", false, &n->stdio[i].write, err);
                if (r < 0)
                        return r;
                n->stdio[i].kind = (ckpt_stdio_kind)kind;
                if ((kind == CKPT_STDIO_NULL || kind == CKPT_STDIO_FILE || kind == CKPT_STDIO_PIPE) &&
                    !n->stdio[i].key)
                        return nm_error_set(err, -EBADMSG, "nm_native: stdio %zu has no key", i);
        }
        return 0;
}

int ckpt_native_from_json(const json_t *o, ckpt_native **ret, nm_error *err) {
        _cleanup_(ckpt_native_freep) ckpt_native *n = calloc(1, sizeof(*n));
        const json_t *mounts, *sub;
        size_t i;
        int r;

        if (!n)
                return -ENOMEM;
        if (!json_is_object(o))
                return nm_error_set(err, -EBADMSG, "nm_native is not an object");
        r = ckpt__json_bool(o, "own_mount_ns", true, &n->own_mount_ns, err);
        if (r < 0)
                return r;
        mounts = json_object_get(o, "mounts");
        if (!json_is_array(mounts))
                return nm_error_set(err, -EBADMSG, "nm_native: 'mounts' is not an array");
        n->mounts = calloc(json_array_size(mounts) + 1, sizeof(*n->mounts));
        if (!n->mounts)
                return -ENOMEM;
        json_array_foreach(mounts, i, sub) {
                r = mount_from_json(sub, &n->mounts[n->n_mounts++], err);
                if (r < 0)
                        return r;
        }
        r = ckpt__json_u64_field(o, "root_bytes", false, UINT64_MAX, &n->root_bytes, NULL, err);
        if (r < 0)
                return r;
        if (!(sub = object_field(o, "net", err)) || (r = net_from_json(sub, n, err)) < 0)
                return r < 0 ? r : -EBADMSG;
        if (!(sub = object_field(o, "cgroup", err)) || (r = cgroup_from_json(sub, n, err)) < 0)
                return r < 0 ? r : -EBADMSG;
        if (!(sub = object_field(o, "security", err)) || (r = security_from_json(sub, n, err)) < 0)
                return r < 0 ? r : -EBADMSG;
        r = stdio_from_json(json_object_get(o, "stdio"), n, err);
        if (r >= 0)
                r = opt_string(o, "init_outside", &n->init_outside, err);
        if (r >= 0)
                r = opt_string(o, "memfd_mount", &n->memfd_mount, err);
        if (r < 0)
                return r;
        if ((sub = json_object_get(o, "criu")) && json_is_object(sub)) {
                r = ckpt__json_bool(sub, "tcp_established", false, &n->tcp_established, err);
                if (r >= 0)
                        r = ckpt__json_bool(sub, "file_locks", false, &n->file_locks, err);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(n);
        return 0;
}

int ckpt_native_from_metadata(const ckpt_metadata *md, ckpt_native **ret, nm_error *err) {
        const json_t *o = json_object_get(md->json, "nm_native");
        int r;
        *ret = NULL;
        if (!o || json_is_null(o))
                return 0;
        r = ckpt_native_from_json(o, ret, err);
        if (r < 0)
                nm_error_prefix(err, "%s", CKPT_METADATA_FILE);
        return r;
}

void ckpt_metadata_source(const ckpt_metadata *md, pid_t *ret_pid, uint64_t *ret_start_ticks) {
        uint64_t ticks = 0;
        if (md->container_state)
                (void)ckpt__json_get_u64(json_object_get(md->container_state, "start_ticks"), &ticks);
        *ret_pid = (pid_t)md->original_pid;
        *ret_start_ticks = ticks;
}
