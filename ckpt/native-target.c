/* SPDX-License-Identifier: Apache-2.0 */
/* The node that restores a native container: what it must offer (checked
 * before anything is frozen), the address reservation nucleus keeps in
 * <state dir>/ip-alloc/, and the source's side of a move that left its
 * tasks stopped: resumed in place (rollback) or ended (commit). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

#define IP_ALLOC_DIR "ip-alloc"
#define ROOT_SLACK (16u << 20) /* besides the root's bytes, for the restore itself */

static const char *bind_path(const ckpt_native_mount *m, const ckpt_native_target *t) {
        for (size_t i = 0; t && i < t->n_ext_mounts; i++)
                if (t->ext_mounts[i].key && strcmp(t->ext_mounts[i].key, m->target) == 0)
                        return t->ext_mounts[i].val;
        return m->source;
}

static int check_binds(const ckpt_native *n, const ckpt_native_target *t, nm_error *err) {
        for (size_t i = 0; i < n->n_mounts; i++) {
                const ckpt_native_mount *m = &n->mounts[i];
                const char *path;
                struct stat st;
                if (m->kind != CKPT_MOUNT_HOST_BIND)
                        continue;
                path = bind_path(m, t);
                if (stat(path, &st) < 0)
                        return nm_error_errno(err, -ENOENT,
                                              "the container binds %s at %s, which this node lacks", path,
                                              m->target);
                if (S_ISDIR(st.st_mode) == m->is_file)
                        return nm_error_set(err, -ENOENT, "the container binds %s %s at %s; here it is %s",
                                            m->is_file ? "the file" : "the directory", path, m->target,
                                            S_ISDIR(st.st_mode) ? "a directory" : "not a directory");
        }
        return 0;
}

/* The id whose reservation file holds address, if any ("" if none). */
static int address_holder(const char *state_dir, const char *address, char *ret_id, size_t size) {
        char dir[4096];
        struct dirent *de;
        DIR *d;
        int fd;

        ret_id[0] = '\0';
        snprintf(dir, sizeof(dir), "%s/%s", state_dir, IP_ALLOC_DIR);
        fd = open_dir_nofollow(dir);
        if (fd == -ENOENT)
                return 0;
        if (fd < 0 || !(d = fdopendir(fd))) {
                if (fd >= 0)
                        close(fd);
                return fd < 0 ? fd : negative_errno();
        }
        while ((de = readdir(d))) {
                _cleanup_free_ char *text = NULL;
                size_t n = strlen(de->d_name);
                if (n < 4 || strcmp(de->d_name + n - 3, ".ip") != 0)
                        continue;
                if (read_file_at(dirfd(d), de->d_name, 256, &text, NULL) < 0)
                        continue;
                text[strcspn(text, " \n")] = '\0';
                if (strcmp(text, address) == 0) {
                        snprintf(ret_id, size, "%.*s", (int)(n - 3), de->d_name);
                        break;
                }
        }
        closedir(d);
        return 0;
}

/* The published ports: asked here, or what the caller asked before, in
 * its place among the checks (the first failure is the one reported). */
static int check_ports(const ckpt_native *n, const ckpt_native_target *t, nm_error *err) {
        if (!t->ports)
                return ckpt_native_check_ports(n, err);
        if (t->ports->code < 0)
                return nm_error_set(err, t->ports->code, "%s", t->ports->msg);
        return 0;
}

static int check_net(const ckpt_native *n, const ckpt_native_target *t, nm_error *err) {
        const char *bridge = t->bridge ? t->bridge : n->bridge;
        ckpt__link *l = NULL;
        size_t count = 0;
        char holder[256], net[64];
        int r;

        if (n->net != CKPT_NET_BRIDGE)
                return 0;
        r = ckpt__links(&l, &count);
        if (r < 0)
                return nm_error_errno(err, r, "cannot list this node's interfaces");
        const ckpt__link *br = ckpt__link_by_name(l, count, bridge);
        snprintf(net, sizeof(net), "%s/%u", br ? br->addr : "", br ? br->prefix : 0);
        if (!br || strcmp(br->kind, "bridge") != 0)
                r = nm_error_set(err, -EOPNOTSUPP, "this node has no bridge %s", bridge);
        else if (n->bridge_net && strcmp(net, n->bridge_net) != 0)
                r = nm_error_set(err, -EOPNOTSUPP, "bridge %s is %s here, %s on the source", bridge, net,
                                 n->bridge_net);
        else if (ckpt__link_by_name(l, count, n->veth))
                r = nm_error_set(err, -EEXIST, "interface %s exists on this node already", n->veth);
        for (size_t i = 0; r >= 0 && i < count; i++)
                if (strcmp(l[i].addr, n->address) == 0)
                        r = nm_error_set(err, -EADDRINUSE, "address %s is on %s of this node", n->address,
                                         l[i].name);
        free(l);
        if (r >= 0)
                r = check_ports(n, t, err);
        if (r < 0 || !t->state_dir)
                return r;
        r = address_holder(t->state_dir, n->address, holder, sizeof(holder));
        if (r < 0)
                return nm_error_errno(err, r, "cannot read %s/%s", t->state_dir, IP_ALLOC_DIR);
        if (holder[0] && (!t->id || strcmp(holder, t->id) != 0))
                return nm_error_set(err, -EADDRINUSE, "address %s is reserved for container %s on this node",
                                    n->address, holder);
        return 0;
}

static uint64_t mem_available(void) {
        _cleanup_free_ char *text = NULL;
        const char *p;
        if (read_file_at(AT_FDCWD, "/proc/meminfo", 1 << 16, &text, NULL) < 0 ||
            !(p = strstr(text, "MemAvailable:")))
                return UINT64_MAX;
        return strtoull(p + 13, NULL, 10) * 1024;
}

int ckpt_native_check_target(const ckpt_native *n, const ckpt_native_target *t, nm_error *err) {
        static const ckpt_native_target none = {};
        struct stat st;
        uint64_t avail;
        int r;

        if (!t)
                t = &none;
        if (!n->own_mount_ns)
                return check_net(n, t, err);
        r = check_binds(n, t, err);
        if (r >= 0)
                r = check_net(n, t, err);
        if (r < 0)
                return r;
        avail = mem_available();
        if (avail < n->root_bytes + ROOT_SLACK)
                return nm_error_set(
                        err, -ENOMEM, "the root tmpfs holds %llu MiB; this node has %llu MiB available",
                        (unsigned long long)(n->root_bytes >> 20), (unsigned long long)(avail >> 20));
        if (t->cgroup_dir && lstat(t->cgroup_dir, &st) == 0)
                return nm_error_set(err, -EEXIST, "cgroup %s exists on this node already", t->cgroup_dir);
        return 0;
}

/* ---- ip-alloc ------------------------------------------------------------------ */

int ckpt_native_address_reserve(const char *state_dir, const char *id, const char *address, nm_error *err) {
        _cleanup_close_ int dfd = -EBADF, fd = -EBADF;
        char dir[4096], name[NAME_MAX + 1], holder[256];
        int r;

        if (!ckpt_container_id_valid(id))
                return nm_error_set(err, -EINVAL, "invalid container id '%s'", id);
        r = address_holder(state_dir, address, holder, sizeof(holder));
        if (r < 0)
                return nm_error_errno(err, r, "cannot read %s/%s", state_dir, IP_ALLOC_DIR);
        if (holder[0])
                return strcmp(holder, id) == 0
                               ? 0
                               : nm_error_set(err, -EADDRINUSE, "address %s is reserved for container %s",
                                              address, holder);
        snprintf(dir, sizeof(dir), "%s/%s", state_dir, IP_ALLOC_DIR);
        dfd = mkdir_p_secure(dir, 0700);
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot create %s", dir);
        snprintf(name, sizeof(name), "%s.ip", id);
        fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return nm_error_errno(err, negative_errno(), "cannot reserve %s in %s/%s", address, dir,
                                      name);
        r = loop_write(fd, address, strlen(address));
        if (r >= 0 && fsync(fd) < 0)
                r = negative_errno();
        if (r < 0) {
                (void)unlinkat(dfd, name, 0);
                return nm_error_errno(err, r, "cannot write %s/%s", dir, name);
        }
        return 0;
}

int ckpt_native_address_release(const char *state_dir, const char *id, const char *address, nm_error *err) {
        char holder[256], path[4096];
        int r = address_holder(state_dir, address, holder, sizeof(holder));
        if (r < 0)
                return nm_error_errno(err, r, "cannot read %s/%s", state_dir, IP_ALLOC_DIR);
        if (strcmp(holder, id) != 0)
                return 0; /* not ours (any more) */
        snprintf(path, sizeof(path), "%s/%s/%s.ip", state_dir, IP_ALLOC_DIR, id);
        if (unlink(path) < 0 && errno != ENOENT)
                return nm_error_errno(err, negative_errno(), "cannot remove %s", path);
        return 0;
}

/* ---- the source after a dump that left the tasks stopped ------------------------ */

int ckpt_source_resume(const ckpt_native *n, pid_t root, uint64_t root_start_ticks,
                       const ckpt_stopped_tasks *keep_stopped, nm_error *err) {
        ckpt_container c = {.pid = root, .start_ticks = root_start_ticks, .status = CKPT_STATUS_RUNNING};
        int r;

        if (root_start_ticks && !ckpt_container_is_running(&c))
                return nm_error_set(err, -ESRCH, "pid %d is gone or is another process now", (int)root);
        r = ckpt__cgroup_undo_dump(n, root, err);
        if (r < 0)
                return r;
        /* A dump that keeps the tasks leaves their TCP sockets in repair
         * mode and their network locked: both undone before they run. */
        r = ckpt__tcp_repair_off(root, err);
        if (r < 0)
                return r;
        if (!ckpt__same_ns(root, "net")) {
                r = ckpt_lazy_unlock_network(root, err);
                if (r < 0)
                        return r;
        }
        return ckpt_resume(root, root_start_ticks, keep_stopped, err);
}

int ckpt_source_end(const ckpt_native *n, pid_t root, uint64_t root_start_ticks, nm_error *err) {
        int r = ckpt_kill_tree(root, root_start_ticks, err);
        if (r < 0)
                return r;
        if (n && n->cgroup_dump)
                return ckpt__cgroup_remove(n->cgroup_dump, err);
        return 0;
}

char *ckpt_native_cgroup_path(const char *cgroup_root, const char *id) {
        char *path;
        return asprintf(&path, "%s/nucleus-%s", cgroup_root, id) < 0 ? NULL : path;
}

int ckpt_native_forget(const char *state_dir, const char *id, const ckpt_native *n, pid_t pid,
                       nm_error *err) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        _cleanup_free_ char *text = NULL;
        char path[4096];
        int r = 0;

        if (n && n->net == CKPT_NET_BRIDGE && n->address)
                r = ckpt_native_address_release(state_dir, id, n->address, err);
        if (r >= 0 && n && n->cgroup && n->cgroup_fs) {
                snprintf(path, sizeof(path), "%s%s", n->cgroup_fs, n->cgroup);
                r = ckpt__cgroup_remove(path, err);
        }
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "%s/%s.json", state_dir, id);
        if (read_file_at(AT_FDCWD, path, 1 << 20, &text, NULL) < 0)
                return 0;
        if (ckpt_container_from_json(text, strlen(text), &c, NULL) < 0 || c->pid != pid)
                return 0; /* another copy's by now */
        return ckpt_state_remove(state_dir, id, err);
}
