/* SPDX-License-Identifier: Apache-2.0 */
/* The cgroup (v2) of a native container.
 *
 * nucleus unshares the cgroup namespace in C1 before its supervisor moves
 * PID 1 into nucleus-<id>, so the namespace's root is the supervisor's
 * cgroup and the container sees itself as "/../../nucleus-<id>". CRIU 4.2.1
 * refuses that: "invalid cgroup configuration, /../../nucleus-<id> is not a
 * suffix of /nucleus-<id>" (its cgroup-namespace prefix logic needs the
 * inside path to be a suffix of the outside one), whatever the cgroup mode.
 * So for the dump the tasks are put into a cgroup below the namespace's
 * root (found by mounting cgroup2 from inside the namespace and opening
 * that root by file handle here); a rollback puts them back. On the target
 * CRIU leaves cgroups alone (mode ignore) and the tasks, still stopped, are
 * moved into a fresh nucleus-<id> made with the source's limits. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

#define CGROUP_TEXT_MAX (64 * 1024)
#define MOVE_ROUNDS 8

/* The v2 line ("0::/path") of a /proc/<pid>/cgroup text. */
static int v2_path(const char *text, char **ret) {
        const char *p = text;
        while (p && *p) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                if (len >= 3 && strncmp(p, "0::", 3) == 0) {
                        *ret = strndup(p + 3, len - 3);
                        return *ret ? 0 : -ENOMEM;
                }
                p = nl ? nl + 1 : NULL;
        }
        return -ENOENT;
}

typedef struct inside_read {
        pid_t pid;
        char *path;
} inside_read;

/* In the container's cgroup namespace: how the container sees its cgroup. */
static int read_inside(void *arg) {
        inside_read *ir = arg;
        _cleanup_free_ char *text = NULL;
        int r = ckpt__proc_read(ir->pid, "cgroup", &text, NULL);
        return r < 0 ? r : v2_path(text, &ir->path);
}

typedef struct root_handle {
        struct file_handle *h;
} root_handle;

/* In the container's cgroup namespace: a file handle of the namespace's
 * root cgroup (a cgroup2 mount made there is rooted at it; detached, it
 * is seen by nobody). */
static int handle_of_ns_root(void *arg) {
        root_handle *rh = arg;
        _cleanup_close_ int fs = -EBADF, mnt = -EBADF;
        int mount_id;

        fs = fsopen("cgroup2", FSOPEN_CLOEXEC);
        if (fs < 0 || fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return negative_errno();
        mnt = fsmount(fs, FSMOUNT_CLOEXEC, 0);
        if (mnt < 0)
                return negative_errno();
        rh->h = calloc(1, sizeof(struct file_handle) + MAX_HANDLE_SZ);
        if (!rh->h)
                return -ENOMEM;
        rh->h->handle_bytes = MAX_HANDLE_SZ;
        if (name_to_handle_at(mnt, "", rh->h, &mount_id, AT_EMPTY_PATH) < 0)
                return negative_errno();
        return 0;
}

/* The host path of the root of pid's cgroup namespace, through the
 * unified hierarchy mounted at cgroup_fs here. */
static int find_ns_root(pid_t pid, const char *cgroup_fs, char **ret) {
        root_handle rh = {};
        _cleanup_close_ int mnt = -EBADF, dir = -EBADF;
        char link[64], path[4096];
        ssize_t n;
        int r;

        r = ckpt__in_ns(pid, CLONE_NEWCGROUP, handle_of_ns_root, &rh);
        if (r < 0) {
                free(rh.h);
                return r;
        }
        mnt = open(cgroup_fs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (mnt >= 0)
                dir = open_by_handle_at(mnt, rh.h, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(rh.h);
        if (dir < 0)
                return negative_errno();
        snprintf(link, sizeof(link), "/proc/self/fd/%d", dir);
        n = readlink(link, path, sizeof(path) - 1);
        if (n < 0)
                return negative_errno();
        path[n] = '\0';
        *ret = strdup(path);
        return *ret ? 0 : -ENOMEM;
}

static const ckpt__mnt *unified_mount(const ckpt__mnt *m, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(m[i].fstype, "cgroup2") == 0 && strcmp(m[i].root, "/") == 0)
                        return &m[i];
        return NULL;
}

int ckpt__cgroup_describe(pid_t pid, const ckpt__mnt *host, size_t n_host, ckpt_native *n, nm_error *err) {
        _cleanup_free_ char *text = NULL;
        inside_read ir = {.pid = pid};
        const ckpt__mnt *u = unified_mount(host, n_host);
        int r;

        r = ckpt__proc_read(pid, "cgroup", &text, NULL);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read /proc/%d/cgroup", (int)pid);
        r = v2_path(text, &n->cgroup);
        if (r == -ENOENT || !u)
                return 0; /* no unified hierarchy: nothing of nucleus's */
        if (r < 0)
                return r;
        n->cgroup_fs = strdup(u->target);
        if (!n->cgroup_fs)
                return -ENOMEM;
        if (ckpt__same_ns(pid, "cgroup")) {
                n->cgroup_inside = strdup(n->cgroup);
                return n->cgroup_inside ? 0 : -ENOMEM;
        }
        r = ckpt__in_ns(pid, CLONE_NEWCGROUP, read_inside, &ir);
        if (r < 0)
                return nm_error_errno(err, r, "cannot see pid %d's cgroup from its cgroup namespace",
                                      (int)pid);
        n->cgroup_inside = ir.path;
        if (strncmp(n->cgroup_inside, "/..", 3) != 0)
                return 0;
        /* Left NULL when it cannot be found: ckpt_native_check_source
         * refuses the container then. */
        (void)find_ns_root(pid, n->cgroup_fs, &n->cgroupns_root);
        return 0;
}

static int write_pid(const char *dir, pid_t pid) {
        char path[4096 + 16], v[16];
        _cleanup_close_ int fd = -EBADF;
        int k = snprintf(v, sizeof(v), "%d", (int)pid);

        snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (write(fd, v, (size_t)k) < 0)
                return errno == ESRCH ? 0 : negative_errno(); /* gone meanwhile */
        return 0;
}

int ckpt__cgroup_move_tree(pid_t pid, const char *dir, nm_error *err) {
        /* A task that forks while the tree is moved leaves its child behind:
         * go round until every process is there. */
        for (int round = 0; round < MOVE_ROUNDS; round++) {
                _cleanup_free_ pid_t *pids = NULL;
                size_t n = 0, moved = 0;
                int r = ckpt_tree_pids(pid, &pids, &n);
                if (r < 0)
                        return nm_error_errno(err, r, "cannot list the processes of %d", (int)pid);
                for (size_t i = 0; i < n; i++) {
                        r = write_pid(dir, pids[i]);
                        if (r < 0)
                                return nm_error_errno(err, r, "cannot move pid %d into cgroup %s",
                                                      (int)pids[i], dir);
                        moved++;
                }
                _cleanup_free_ pid_t *again = NULL;
                size_t m = 0;
                r = ckpt_tree_pids(pid, &again, &m);
                if (r >= 0 && m == n && memcmp(again, pids, n * sizeof(pid_t)) == 0)
                        return (int)moved;
        }
        return nm_error_set(err, -EAGAIN, "the tree of %d kept changing while it was moved into %s",
                            (int)pid, dir);
}

int ckpt__cgroup_prepare_dump(ckpt_native *n, const char *id, pid_t pid, nm_error *err) {
        char dir[4096];
        int r;

        if (!n->cgroupns_root)
                return 0;
        snprintf(dir, sizeof(dir), "%s/nm-dump-%s", n->cgroupns_root, id);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return nm_error_errno(err, negative_errno(), "cannot create cgroup %s for the dump", dir);
        free(n->cgroup_dump);
        n->cgroup_dump = strdup(dir);
        if (!n->cgroup_dump)
                return -ENOMEM;
        r = ckpt__cgroup_move_tree(pid, dir, err);
        return r < 0 ? r : 0;
}

int ckpt__cgroup_remove(const char *dir, nm_error *err) {
        const struct timespec tick = {0, 20 * 1000 * 1000};
        for (int i = 0; i < 100; i++) {
                if (rmdir(dir) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY)
                        break;
                nanosleep(&tick, NULL);
        }
        return nm_error_errno(err, negative_errno(), "cannot remove cgroup %s", dir);
}

int ckpt__cgroup_undo_dump(const ckpt_native *n, pid_t pid, nm_error *err) {
        char home[4096];
        int r;

        if (!n || !n->cgroup_dump)
                return 0;
        snprintf(home, sizeof(home), "%s%s", n->cgroup_fs, n->cgroup);
        r = ckpt__cgroup_move_tree(pid, home, err);
        if (r < 0)
                return r;
        return ckpt__cgroup_remove(n->cgroup_dump, err);
}

/* ---- the target's cgroup ---------------------------------------------------- */

static int write_value(int dfd, const char *file, const char *value, unsigned *skipped) {
        _cleanup_close_ int fd = openat(dfd, file, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                if (errno != ENOENT)
                        return negative_errno();
                (*skipped)++; /* this hierarchy has no such controller here */
                return 0;
        }
        return write(fd, value, strlen(value)) < 0 ? negative_errno() : 0;
}

/* A limit value of resource_limits: a number, or null for "max". */
static void limit_text(const json_t *v, char *buf, size_t size) {
        uint64_t x;
        if (!v || json_is_null(v) || ckpt__json_get_u64(v, &x) < 0)
                snprintf(buf, size, "max");
        else
                snprintf(buf, size, "%llu", (unsigned long long)x);
}

static void write_io_limits(int dfd, const json_t *io, unsigned *skipped) {
        static const char *const keys[] = {"rbps", "wbps", "riops", "wiops"};
        size_t i;
        const json_t *e;

        json_array_foreach(io, i, e) {
                char line[256], v[32];
                const char *dev = json_string_value(json_object_get(e, "device"));
                int k;
                if (!dev)
                        continue;
                k = snprintf(line, sizeof(line), "%s", dev);
                for (size_t j = 0; j < ARRAY_SIZE(keys); j++) {
                        limit_text(json_object_get(e, keys[j]), v, sizeof(v));
                        k += snprintf(line + k, sizeof(line) - (size_t)k, " %s=%s", keys[j], v);
                }
                /* Device numbers may differ between nodes: a refusal here
                 * is the node's, not a reason to lose the container. */
                if (write_value(dfd, "io.max", line, skipped) < 0)
                        (*skipped)++;
        }
}

int ckpt__cgroup_create(const char *dir, const json_t *limits, unsigned *ret_skipped, nm_error *err) {
        static const struct {
                const char *key, *file;
        } plain[] = {{"memory_bytes", "memory.max"},
                     {"memory_high", "memory.high"},
                     {"memory_swap_max", "memory.swap.max"},
                     {"cpu_weight", "cpu.weight"},
                     {"pids_max", "pids.max"}};
        _cleanup_close_ int dfd = -EBADF;
        unsigned skipped = 0;
        char v[64], cpu[96];
        int r = 0;

        if (mkdir(dir, 0755) < 0)
                return nm_error_errno(err, negative_errno(), "cannot create cgroup %s", dir);
        dfd = open_dir_nofollow(dir);
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open cgroup %s", dir);
        if (limits && json_is_object(limits)) {
                for (size_t i = 0; i < ARRAY_SIZE(plain) && r >= 0; i++) {
                        const json_t *x = json_object_get(limits, plain[i].key);
                        if (!x)
                                continue;
                        limit_text(x, v, sizeof(v));
                        r = write_value(dfd, plain[i].file, v, &skipped);
                }
                if (r >= 0 && json_object_get(limits, "cpu_period_us")) {
                        uint64_t period = 100000;
                        (void)ckpt__json_get_u64(json_object_get(limits, "cpu_period_us"), &period);
                        limit_text(json_object_get(limits, "cpu_quota_us"), v, sizeof(v));
                        snprintf(cpu, sizeof(cpu), "%s %llu", v, (unsigned long long)period);
                        r = write_value(dfd, "cpu.max", cpu, &skipped);
                }
                if (r >= 0 && json_object_get(limits, "memory_bytes"))
                        r = write_value(dfd, "memory.oom.group", "1", &skipped);
                if (r >= 0 && json_is_array(json_object_get(limits, "io_limits")))
                        write_io_limits(dfd, json_object_get(limits, "io_limits"), &skipped);
        }
        if (r < 0) {
                (void)rmdir(dir);
                return nm_error_errno(err, r, "cannot write the limits of cgroup %s", dir);
        }
        if (ret_skipped)
                *ret_skipped = skipped;
        return 0;
}
