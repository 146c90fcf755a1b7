/* SPDX-License-Identifier: Apache-2.0 */
/* The root tmpfs of a native container, which CRIU never dumps: taken from
 * the source through a detached clone of that one mount (nothing mounted on
 * top of it comes along), made again on the target as a fresh tmpfs with the
 * same options for CRIU's --root; and the mount flags CRIU does not bring
 * back by itself. */
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

typedef struct clone_job {
        int fd;
} clone_job;

/* In the container's mount namespace, whose root is now ours. */
static int clone_root(void *arg) {
        clone_job *j = arg;
        j->fd = open_tree(AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        return j->fd < 0 ? negative_errno() : 0;
}

int ckpt__root_clone(pid_t pid, int *ret_fd, nm_error *err) {
        clone_job j = {.fd = -EBADF};
        int r = ckpt__in_ns(pid, CLONE_NEWNS, clone_root, &j);
        if (r < 0)
                return nm_error_errno(err, r, "cannot take hold of the root file system of pid %d",
                                      (int)pid);
        *ret_fd = j.fd;
        return 0;
}

int ckpt__fs_used(int fd, uint64_t *ret) {
        struct statfs s;
        if (fstatfs(fd, &s) < 0)
                return negative_errno();
        *ret = (uint64_t)(s.f_blocks - s.f_bfree) * (uint64_t)s.f_bsize;
        return 0;
}

/* tmpfs options that describe the file system (not the mount). */
static bool tmpfs_option(const char *key) {
        static const char *const known[] = {"size", "nr_blocks", "nr_inodes", "mode",    "uid",   "gid",
                                            "huge", "mpol",      "inode32",   "inode64", "noswap"};
        for (size_t i = 0; i < ARRAY_SIZE(known); i++)
                if (strcmp(key, known[i]) == 0)
                        return true;
        return false;
}

static int configure_tmpfs(int fs, const char *options, nm_error *err) {
        _cleanup_free_ char *copy = strdup(options ? options : "");
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(o, '=');
                int r;
                if (eq)
                        *eq = '\0';
                if (!tmpfs_option(o))
                        continue;
                r = eq ? fsconfig(fs, FSCONFIG_SET_STRING, o, eq + 1, 0)
                       : fsconfig(fs, FSCONFIG_SET_FLAG, o, NULL, 0);
                if (r < 0)
                        return nm_error_errno(err, negative_errno(), "tmpfs option %s%s%s refused", o,
                                              eq ? "=" : "", eq ? eq + 1 : "");
        }
        return 0;
}

static unsigned mount_attrs(unsigned flags) {
        return (flags & CKPT_MNT_NOSUID ? MOUNT_ATTR_NOSUID : 0) |
               (flags & CKPT_MNT_NODEV ? MOUNT_ATTR_NODEV : 0) |
               (flags & CKPT_MNT_NOEXEC ? MOUNT_ATTR_NOEXEC : 0);
}

int ckpt__root_make(const ckpt_native_mount *root, int tarfd, const char *dir, nm_error *err) {
        _cleanup_close_ int fs = -EBADF, mnt = -EBADF, dfd = -EBADF;
        int r;

        fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
        if (fs < 0)
                return nm_error_errno(err, negative_errno(), "cannot make a tmpfs for the root");
        r = configure_tmpfs(fs, root->options, err);
        if (r < 0)
                return r;
        (void)fsconfig(fs, FSCONFIG_SET_STRING, "source", "tmpfs", 0);
        if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return nm_error_errno(err, negative_errno(), "cannot make a tmpfs (%s) for the root",
                                      root->options);
        mnt = fsmount(fs, FSMOUNT_CLOEXEC, mount_attrs(root->flags));
        if (mnt < 0)
                return nm_error_errno(err, negative_errno(), "cannot mount the root tmpfs");
        r = ckpt__tar_extract(tarfd, mnt, err);
        if (r < 0) {
                nm_error_prefix(err, "cannot fill the root tmpfs");
                return r;
        }
        if (root->flags & CKPT_MNT_RDONLY) {
                struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY};
                if (mount_setattr(mnt, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0)
                        return nm_error_errno(err, negative_errno(), "cannot make the root read-only");
        }
        dfd = mkdir_p_secure(dir, 0700);
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot create %s for the root", dir);
        if (move_mount(mnt, "", dfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return nm_error_errno(err, negative_errno(), "cannot mount the root at %s", dir);
        return 0;
}

void ckpt__root_unmake(const char *dir) {
        if (!dir)
                return;
        /* The restored container holds its own reference; only this one
         * view of it goes. */
        while (umount2(dir, MNT_DETACH) == 0)
                ;
        (void)rmdir(dir);
}

/* ---- mount flags after the restore ----------------------------------------- */

typedef struct fixup_job {
        const ckpt_native *n;
        const ckpt__mnt *now;
        size_t n_now;
        int fixed;
} fixup_job;

/* The topmost mount at target in a mount table. */
static const ckpt__mnt *mount_at(const ckpt__mnt *m, size_t n, const char *target) {
        const ckpt__mnt *hit = NULL;
        for (size_t i = 0; i < n; i++)
                if (strcmp(m[i].target, target) == 0)
                        hit = &m[i];
        return hit;
}

static unsigned flags_missing(const ckpt_native_mount *want, const ckpt__mnt *now) {
        return want->flags & ~ckpt__mnt_flags(now->opts);
}

/* In the restored container's mount namespace. */
static int fixup_in_ns(void *arg) {
        fixup_job *j = arg;
        for (size_t i = 0; i < j->n->n_mounts; i++) {
                const ckpt_native_mount *want = &j->n->mounts[i];
                const ckpt__mnt *now = mount_at(j->now, j->n_now, want->target);
                unsigned missing;
                if (!now)
                        continue;
                missing = flags_missing(want, now);
                if (!missing)
                        continue;
                struct mount_attr a = {.attr_set = (missing & CKPT_MNT_RDONLY ? MOUNT_ATTR_RDONLY : 0) |
                                                   mount_attrs(missing)};
                if (mount_setattr(AT_FDCWD, want->target, 0, &a, sizeof(a)) < 0)
                        return negative_errno();
                j->fixed++;
        }
        return 0;
}

int ckpt__mounts_fixup(pid_t pid, const ckpt_native *n, nm_error *err) {
        fixup_job j = {.n = n};
        ckpt__mnt *now = NULL;
        size_t n_now = 0;
        int r;

        r = ckpt__mountinfo_read(pid, &now, &n_now);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read the mounts of restored pid %d", (int)pid);
        j.now = now;
        j.n_now = n_now;
        r = ckpt__in_ns(pid, CLONE_NEWNS, fixup_in_ns, &j);
        ckpt__mountinfo_free(now, n_now);
        if (r < 0)
                return nm_error_errno(err, r, "cannot set the mount flags of restored pid %d", (int)pid);
        /* Check: every mount is there with at least the source's flags. */
        r = ckpt__mountinfo_read(pid, &now, &n_now);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read the mounts of restored pid %d", (int)pid);
        for (size_t i = 0; i < n->n_mounts && r >= 0; i++) {
                const ckpt__mnt *m = mount_at(now, n_now, n->mounts[i].target);
                if (!m)
                        r = nm_error_set(err, -EIO, "restored container lacks the mount at %s",
                                         n->mounts[i].target);
                else if (flags_missing(&n->mounts[i], m))
                        r = nm_error_set(err, -EIO, "restored mount %s is '%s', the source's had flags 0x%x",
                                         n->mounts[i].target, m->opts, n->mounts[i].flags);
        }
        ckpt__mountinfo_free(now, n_now);
        return r < 0 ? r : j.fixed;
}

/* ---- TCP out of repair mode -------------------------------------------------- */

static bool is_tcp(int fd) {
        int v = 0;
        socklen_t len = sizeof(v);
        if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) < 0 || v != IPPROTO_TCP)
                return false;
        len = sizeof(v);
        return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) == 0 && (v == AF_INET || v == AF_INET6);
}

static int repair_off_in(pid_t pid) {
        char dir[64], link[64], target[64];
        _cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        struct dirent *de;
        DIR *d;
        int count = 0;

        if (pidfd < 0)
                return errno == ESRCH ? 0 : negative_errno();
        snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
        d = opendir(dir);
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                int target_fd, fd, off = 0;
                ssize_t n;
                if (de->d_name[0] == '.')
                        continue;
                snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
                n = readlink(link, target, sizeof(target) - 1);
                if (n <= 0)
                        continue;
                target[n] = '\0';
                if (strncmp(target, "socket:", 7) != 0)
                        continue;
                target_fd = (int)strtol(de->d_name, NULL, 10);
                fd = (int)syscall(SYS_pidfd_getfd, pidfd, target_fd, 0);
                if (fd < 0)
                        continue;
                /* Left in repair mode by a dump that kept the tasks; listening
                 * and closed sockets refuse the option, harmlessly. */
                if (is_tcp(fd) && setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)) == 0)
                        count++;
                close(fd);
        }
        closedir(d);
        return count;
}

int ckpt__tcp_repair_off(pid_t root, nm_error *err) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r, count = 0;

        r = ckpt_tree_pids(root, &pids, &n);
        if (r < 0)
                return nm_error_errno(err, r, "cannot list the processes of %d", (int)root);
        for (size_t i = 0; i < n; i++) {
                r = repair_off_in(pids[i]);
                if (r < 0)
                        return nm_error_errno(err, r, "cannot reach the sockets of pid %d", (int)pids[i]);
                count += r;
        }
        return count;
}
