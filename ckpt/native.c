/* SPDX-License-Identifier: Apache-2.0 */
/* Describing a native nucleus container from /proc: its mounts (which are
 * host binds, which is the root tmpfs, which CRIU dumps itself), network,
 * cgroup, security settings and stdio, and what among them cannot move. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

/* ---- freeing -------------------------------------------------------------------- */

ckpt_native *ckpt_native_free(ckpt_native *n) {
        if (!n)
                return NULL;
        for (size_t i = 0; i < n->n_mounts; i++) {
                free(n->mounts[i].target);
                free(n->mounts[i].fstype);
                free(n->mounts[i].source);
                free(n->mounts[i].options);
        }
        free(n->mounts);
        char **s[] = {&n->iface,         &n->vethc,       &n->veth,      &n->bridge,
                      &n->address,       &n->bridge_net,  &n->cgroup,    &n->cgroup_inside,
                      &n->cgroupns_root, &n->cgroup_dump, &n->cgroup_fs, &n->init_outside,
                      &n->memfd_mount};
        for (size_t i = 0; i < ARRAY_SIZE(s); i++)
                free(*s[i]);
        for (size_t i = 0; i < ARRAY_SIZE(n->stdio); i++)
                free(n->stdio[i].key);
        free(n->ports);
        free(n);
        return NULL;
}

/* ---- mounts ------------------------------------------------------------------- */

static bool same_dev(const ckpt__mnt *a, const ckpt__mnt *b) {
        return a->major == b->major && a->minor == b->minor;
}

/* root is prefix, at a path component boundary, of path. */
static size_t path_prefix(const char *prefix, const char *path) {
        size_t n = strlen(prefix);
        if (strcmp(prefix, "/") == 0)
                return 0;
        if (strncmp(prefix, path, n) != 0 || (path[n] != '\0' && path[n] != '/'))
                return SIZE_MAX;
        return n;
}

/* The host path a container mount binds: the host mount of the same file
 * system whose root holds the bind's root, checked by inode. NULL (and 0)
 * when no host path shows the same object. */
static int bind_source(pid_t pid, const ckpt__mnt *m, const ckpt__mnt *host, size_t n_host, char **ret) {
        const ckpt__mnt *best = NULL;
        size_t best_len = 0;
        char path[8192], inside[8192];
        struct stat a, b;

        *ret = NULL;
        for (size_t i = 0; i < n_host; i++) {
                size_t k;
                if (!same_dev(&host[i], m) || (k = path_prefix(host[i].root, m->root)) == SIZE_MAX)
                        continue;
                if (!best || k > best_len ||
                    (k == best_len && strlen(host[i].target) < strlen(best->target))) {
                        best = &host[i];
                        best_len = k;
                }
        }
        if (!best)
                return 0;
        snprintf(path, sizeof(path), "%s%s%s", strcmp(best->target, "/") == 0 ? "" : best->target,
                 m->root + best_len, "");
        if (!path[0])
                snprintf(path, sizeof(path), "/");
        snprintf(inside, sizeof(inside), "/proc/%d/root%s", (int)pid, m->target);
        if (stat(path, &a) < 0 || stat(inside, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
                return 0;
        *ret = strdup(path);
        return *ret ? 0 : -ENOMEM;
}

static bool dev_on_host(const ckpt__mnt *m, const ckpt__mnt *host, size_t n_host) {
        for (size_t i = 0; i < n_host; i++)
                if (same_dev(&host[i], m))
                        return true;
        return false;
}

/* The tmpfs options of a superblock option string, without "rw"/"ro". */
static char *fs_options(const char *super) {
        _cleanup_free_ char *copy = strdup(super);
        char *out = calloc(1, strlen(super) + 1), *save = NULL;
        size_t used = 0;
        if (!copy || !out) {
                free(out);
                return NULL;
        }
        for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
                size_t n = strlen(o);
                if (strcmp(o, "rw") == 0 || strcmp(o, "ro") == 0)
                        continue;
                if (used)
                        out[used++] = ',';
                memcpy(out + used, o, n + 1); /* out is as long as super */
                used += n;
        }
        return out;
}

static int describe_mount(pid_t pid, const ckpt__mnt *m, const ckpt__mnt *host, size_t n_host,
                          ckpt_native *n) {
        ckpt_native_mount *nm = &n->mounts[n->n_mounts];
        struct stat st;
        char inside[8192];
        int r;

        *nm = (ckpt_native_mount){.flags = ckpt__mnt_flags(m->opts)};
        nm->target = strdup(m->target);
        nm->fstype = strdup(m->fstype);
        if (!nm->target || !nm->fstype)
                return -ENOMEM;
        n->n_mounts++;
        snprintf(inside, sizeof(inside), "/proc/%d/root%s", (int)pid, m->target);
        nm->is_file = stat(inside, &st) == 0 && !S_ISDIR(st.st_mode);
        if (strcmp(m->target, "/") == 0) {
                nm->kind = CKPT_MOUNT_ROOT;
                nm->options = fs_options(m->super_opts);
                return nm->options ? 0 : -ENOMEM;
        }
        if (strncmp(m->root, "/memfd:", 7) == 0 && !n->memfd_mount) {
                n->memfd_mount = strdup(m->target);
                return n->memfd_mount ? 0 : -ENOMEM;
        }
        if (!dev_on_host(m, host, n_host)) {
                nm->kind = CKPT_MOUNT_CRIU;
                return 0;
        }
        nm->kind = CKPT_MOUNT_HOST_BIND;
        r = bind_source(pid, m, host, n_host, &nm->source);
        return r;
}

static int describe_mounts(pid_t pid, const ckpt__mnt *host, size_t n_host, ckpt_native *n, nm_error *err) {
        ckpt__mnt *m = NULL;
        size_t count = 0;
        struct statfs sf;
        char root[64];
        int r;

        r = ckpt__mountinfo_read(pid, &m, &count);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read the mounts of pid %d", (int)pid);
        n->mounts = calloc(count ? count : 1, sizeof(*n->mounts));
        if (!n->mounts)
                r = -ENOMEM;
        for (size_t i = 0; i < count && r >= 0; i++)
                r = describe_mount(pid, &m[i], host, n_host, n);
        ckpt__mountinfo_free(m, count);
        if (r < 0)
                return nm_error_errno(err, r, "cannot describe the mounts of pid %d", (int)pid);
        snprintf(root, sizeof(root), "/proc/%d/root", (int)pid);
        if (statfs(root, &sf) == 0)
                n->root_bytes = (uint64_t)(sf.f_blocks - sf.f_bfree) * (uint64_t)sf.f_bsize;
        return 0;
}

/* The init's executable on a mount the container does not have (nucleus's
 * production-mode init, run from a host path). */
static int describe_init(pid_t pid, ckpt_native *n) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *info = NULL;
        ckpt__mnt *m = NULL;
        size_t count = 0;
        char path[64], exe[4096], what[64];
        const char *p;
        int mnt_id = -1, r;
        bool found = false;
        ssize_t k;

        snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
        fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return 0; /* a kernel thread or gone: nothing to say */
        snprintf(what, sizeof(what), "/proc/self/fdinfo/%d", fd);
        if (read_file_at(AT_FDCWD, what, 4096, &info, NULL) < 0 || !(p = strstr(info, "mnt_id:")))
                return 0;
        mnt_id = (int)strtol(p + 7, NULL, 10);
        r = ckpt__mountinfo_read(pid, &m, &count);
        if (r < 0)
                return r;
        for (size_t i = 0; i < count; i++)
                found = found || m[i].id == mnt_id;
        ckpt__mountinfo_free(m, count);
        if (found)
                return 0;
        k = readlink(path, exe, sizeof(exe) - 1);
        exe[k > 0 ? k : 0] = '\0';
        n->init_outside = strdup(exe[0] ? exe : "?");
        return n->init_outside ? 0 : -ENOMEM;
}

/* ---- network -------------------------------------------------------------------- */

typedef struct links_job {
        ckpt__link *l;
        size_t n;
} links_job;

static int links_in_ns(void *arg) {
        links_job *j = arg;
        return ckpt__links(&j->l, &j->n);
}

static int describe_net(pid_t pid, ckpt_native *n, nm_error *err) {
        links_job in = {};
        ckpt__link *here = NULL;
        size_t n_here = 0;
        int r;

        if (ckpt__same_ns(pid, "net")) {
                n->net = CKPT_NET_HOST;
                return 0;
        }
        r = ckpt__in_ns(pid, CLONE_NEWNET, links_in_ns, &in);
        if (r < 0)
                return nm_error_errno(err, r, "cannot list the interfaces of pid %d", (int)pid);
        n->net = CKPT_NET_NONE;
        for (size_t i = 0; i < in.n && r >= 0; i++) {
                const ckpt__link *k = &in.l[i];
                if (strcmp(k->name, "lo") == 0)
                        continue;
                if (n->net == CKPT_NET_NONE && strcmp(k->kind, "veth") == 0 &&
                    strncmp(k->name, "vethc-", 6) == 0) {
                        n->net = CKPT_NET_BRIDGE;
                        n->vethc = strdup(k->name);
                        n->address = k->addr[0] ? strdup(k->addr) : NULL;
                        n->prefix = k->prefix;
                        if (asprintf(&n->veth, "veth-%s", k->name + 6) < 0)
                                n->veth = NULL;
                        continue;
                }
                /* Anything else decides: a tun/tap device (slirp4netns), or
                 * an interface nucleus does not make. */
                n->net = strcmp(k->kind, "tun") == 0 ? CKPT_NET_TAP : CKPT_NET_OTHER;
                free(n->iface);
                n->iface = strdup(k->name);
                break;
        }
        free(in.l);
        if (n->net != CKPT_NET_BRIDGE)
                return 0;
        r = ckpt__links(&here, &n_here);
        if (r < 0)
                return nm_error_errno(err, r, "cannot list this node's interfaces");
        const ckpt__link *veth = ckpt__link_by_name(here, n_here, n->veth);
        const ckpt__link *br = veth ? ckpt__link_by_index(here, n_here, veth->master) : NULL;
        if (!veth) {
                free(n->veth); /* not on this node: check_source says so */
                n->veth = NULL;
        }
        if (br) {
                n->bridge = strdup(br->name);
                if (br->addr[0] && asprintf(&n->bridge_net, "%s/%u", br->addr, br->prefix) < 0)
                        n->bridge_net = NULL;
        }
        free(here);
        return ckpt__native_describe_ports(n, err);
}

/* ---- stdio ------------------------------------------------------------------------ */

static int fdinfo_field(pid_t pid, int fd, const char *field, long *ret) {
        _cleanup_free_ char *info = NULL;
        char what[64];
        const char *p;
        snprintf(what, sizeof(what), "fdinfo/%d", fd);
        if (ckpt__proc_read(pid, what, &info, NULL) < 0 || !(p = strstr(info, field)))
                return -ENOENT;
        *ret = strtol(p + strlen(field), NULL, strcmp(field, "flags:") == 0 ? 8 : 10);
        return 0;
}

static bool in_file(pid_t pid, const char *what, const char *needle) {
        _cleanup_free_ char *text = NULL;
        return ckpt__proc_read(pid, what, &text, NULL) >= 0 && strstr(text, needle);
}

/* Does a process of the tree hold the pipe "pipe:[ino]" with the other
 * access mode than the init's fd? */
static bool pipe_closed_inside(pid_t root, const char *link, long accmode) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        if (ckpt_tree_pids(root, &pids, &n) < 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                char dir[64];
                struct dirent *de;
                DIR *d;
                snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pids[i]);
                if (!(d = opendir(dir)))
                        continue;
                while ((de = readdir(d))) {
                        char path[128], target[64];
                        long flags;
                        ssize_t k;
                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                        k = readlink(path, target, sizeof(target) - 1);
                        if (k <= 0)
                                continue;
                        target[k] = '\0';
                        if (strcmp(target, link) == 0 &&
                            fdinfo_field(pids[i], (int)strtol(de->d_name, NULL, 10), "flags:", &flags) ==
                                    0 &&
                            (flags & O_ACCMODE) != accmode) {
                                closedir(d);
                                return true;
                        }
                }
                closedir(d);
        }
        return false;
}

static bool mount_id_inside(pid_t pid, long mnt_id) {
        ckpt__mnt *m = NULL;
        size_t count = 0;
        bool found = false;
        if (ckpt__mountinfo_read(pid, &m, &count) < 0)
                return true;
        for (size_t i = 0; i < count; i++)
                found = found || m[i].id == mnt_id;
        ckpt__mountinfo_free(m, count);
        return found;
}

static int describe_stdio_fd(pid_t pid, int fd, ckpt_native *n, ckpt_native_stdio *s) {
        char path[64], link[4096], needle[64];
        struct stat st;
        long mnt_id = -1, flags = 0;
        ssize_t k;

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
        k = readlink(path, link, sizeof(link) - 1);
        s->kind = CKPT_STDIO_INSIDE;
        if (k <= 0)
                return 0; /* closed */
        link[k] = '\0';
        (void)fdinfo_field(pid, fd, "flags:", &flags);
        s->write = (flags & O_ACCMODE) != O_RDONLY;
        if (strncmp(link, "socket:[", 8) == 0) {
                /* A socket of the container's network namespace is CRIU's to
                 * dump; one of another namespace (journald's stream, made by
                 * systemd in the host's) is not found by CRIU at all. */
                snprintf(needle, sizeof(needle), " %.*s", (int)(k - 9), link + 8);
                if (!in_file(pid, "net/unix", needle) && !ckpt__same_ns(pid, "net"))
                        s->kind = CKPT_STDIO_FOREIGN;
                return 0;
        }
        if (strncmp(link, "pipe:[", 6) == 0) {
                if (!pipe_closed_inside(pid, link, flags & O_ACCMODE)) {
                        s->kind = CKPT_STDIO_PIPE;
                        s->key = strdup(link);
                        return s->key ? 0 : -ENOMEM;
                }
                return 0;
        }
        if (link[0] != '/' || stat(path, &st) < 0)
                return 0; /* anon_inode:..., CRIU's to judge */
        if (S_ISCHR(st.st_mode) &&
            (major(st.st_rdev) == 136 || major(st.st_rdev) == 4 || major(st.st_rdev) == 5)) {
                s->kind = CKPT_STDIO_TTY;
                return 0;
        }
        if (!n->own_mount_ns || fdinfo_field(pid, fd, "mnt_id:", &mnt_id) < 0 ||
            mount_id_inside(pid, mnt_id))
                return 0;
        s->kind = S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3 ? CKPT_STDIO_NULL
                                                                                          : CKPT_STDIO_FILE;
        return asprintf(&s->key, "file[%lx:%llx]", mnt_id, (unsigned long long)st.st_ino) < 0 ? -ENOMEM : 0;
}

/* ---- security ----------------------------------------------------------------------- */

static void describe_security(pid_t pid, const ckpt_container *c, ckpt_native *n) {
        _cleanup_free_ char *status = NULL;
        const char *p;
        if (ckpt__proc_read(pid, "status", &status, NULL) < 0)
                return;
        if ((p = strstr(status, "\nSeccomp:")))
                n->seccomp = (int)strtol(p + 9, NULL, 10);
        if ((p = strstr(status, "\nNoNewPrivs:")))
                n->no_new_privs = strtol(p + 12, NULL, 10) != 0;
        if ((p = strstr(status, "\nCapEff:")))
                n->cap_eff = strtoull(p + 8, NULL, 16);
        n->user_ns = !ckpt__same_ns(pid, "user");
        /* Nothing in /proc tells a Landlock domain; nucleus sets one up by
         * default, so a nucleus container is taken to have one. */
        n->landlock = n->own_mount_ns && !c->bare ? CKPT_LANDLOCK_ASSUMED : CKPT_LANDLOCK_NONE;
}

int ckpt_native_describe(const ckpt_container *c, ckpt_native **ret, nm_error *err) {
        _cleanup_(ckpt_native_freep) ckpt_native *n = calloc(1, sizeof(*n));
        ckpt__mnt *host = NULL;
        size_t n_host = 0;
        pid_t pid = c->pid;
        int r;

        if (!n)
                return -ENOMEM;
        n->own_mount_ns = !ckpt__same_ns(pid, "mnt");
        r = ckpt__mountinfo_read(0, &host, &n_host);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read this process's mount table");
        if (n->own_mount_ns) {
                r = describe_mounts(pid, host, n_host, n, err);
                if (r >= 0)
                        r = describe_init(pid, n);
        }
        if (r >= 0)
                r = describe_net(pid, n, err);
        if (r >= 0)
                r = ckpt__cgroup_describe(pid, host, n_host, n, err);
        ckpt__mountinfo_free(host, n_host);
        for (int fd = 0; fd < 3 && r >= 0; fd++)
                r = describe_stdio_fd(pid, fd, n, &n->stdio[fd]);
        if (r < 0) {
                if (err && err->code == 0)
                        nm_error_errno(err, r, "cannot describe pid %d", (int)pid);
                return r;
        }
        describe_security(pid, c, n);
        *ret = TAKE_PTR(n);
        return 0;
}

/* ---- refusals on the source ---------------------------------------------------------- */

static const ckpt_native_mount *root_mount(const ckpt_native *n) {
        for (size_t i = 0; i < n->n_mounts; i++)
                if (n->mounts[i].kind == CKPT_MOUNT_ROOT)
                        return &n->mounts[i];
        return NULL;
}

static int check_mounts(const ckpt_native *n, nm_error *err) {
        const ckpt_native_mount *root = root_mount(n);
        if (!root)
                return nm_error_set(err, -EOPNOTSUPP, "its mount namespace has no root mount");
        if (strcmp(root->fstype, "tmpfs") != 0)
                return nm_error_set(
                        err, -EOPNOTSUPP,
                        "its root file system is %s, not the tmpfs of a native nucleus container",
                        root->fstype);
        if (n->memfd_mount)
                return nm_error_set(
                        err, -EOPNOTSUPP,
                        "a memfd is bound over %s (nucleus does this for resolv.conf with --rootfs and "
                        "bridge networking); CRIU cannot dump a memfd mount",
                        n->memfd_mount);
        for (size_t i = 0; i < n->n_mounts; i++)
                if (n->mounts[i].kind == CKPT_MOUNT_HOST_BIND && !n->mounts[i].source)
                        return nm_error_set(
                                err, -EOPNOTSUPP,
                                "the host path bound at %s cannot be found on this node (overmounted or "
                                "removed), so the target could not be given it",
                                n->mounts[i].target);
        return 0;
}

static int check_net(const ckpt_native *n, nm_error *err) {
        switch (n->net) {
        case CKPT_NET_TAP:
                return nm_error_set(
                        err, -EOPNOTSUPP,
                        "it uses tap device %s, as slirp4netns networking (rootless nucleus) does; its "
                        "other end is held outside the container, which CRIU cannot dump",
                        strna(n->iface));
        case CKPT_NET_OTHER:
                return nm_error_set(
                        err, -EOPNOTSUPP,
                        "its network interface %s is not one nucleus makes (lo, or one veth vethc-*)",
                        strna(n->iface));
        case CKPT_NET_BRIDGE:
                if (!n->veth || !n->bridge || !n->address)
                        return nm_error_set(
                                err, -EOPNOTSUPP,
                                "its veth %s has no peer %s on a bridge of this node, or no address",
                                strna(n->vethc), n->vethc ? n->vethc + 6 : "?");
                return 0;
        case CKPT_NET_HOST:
        case CKPT_NET_NONE:
        case _CKPT_NET_MODE_MAX:
        case _CKPT_NET_MODE_INVALID: return 0;
        }
        return 0;
}

static int check_stdio(const ckpt_native *n, nm_error *err) {
        for (int fd = 0; fd < 3; fd++) {
                if (n->stdio[fd].kind == CKPT_STDIO_FOREIGN)
                        return nm_error_set(
                                err, -EOPNOTSUPP,
                                "its fd %d is a socket of another network namespace (the journald stream "
                                "of a detached nucleus container); CRIU 4.2 cannot find it (\"unix: Unix "
                                "socket N not found\")",
                                fd);
                if (n->stdio[fd].kind == CKPT_STDIO_FILE)
                        return nm_error_set(
                                err, -EOPNOTSUPP,
                                "its fd %d is a file outside the container, which CRIU would need "
                                "unchanged (same size) on the target; nucleus gives /dev/null, journald "
                                "or a pipe",
                                fd);
                if (n->stdio[fd].kind == CKPT_STDIO_TTY)
                        return nm_error_set(
                                err, -EOPNOTSUPP,
                                "its fd %d is a terminal (nucleus in the foreground); run it detached", fd);
        }
        return 0;
}

int ckpt_native_check_source(const ckpt_native *n, const ckpt_native_policy *p, nm_error *err) {
        int r;
        if (n->user_ns)
                return nm_error_set(
                        err, -EOPNOTSUPP,
                        "it has a user namespace of its own (rootless or production-mode nucleus); that "
                        "is not supported yet");
        if (n->own_mount_ns) {
                r = check_mounts(n, err);
                if (r < 0)
                        return r;
                if (n->init_outside)
                        return nm_error_set(
                                err, -EOPNOTSUPP,
                                "its init %s lives on a host path the container does not mount (nucleus's "
                                "production-mode init); CRIU cannot dump it (\"Can't lookup mount\")",
                                n->init_outside);
        }
        r = check_net(n, err);
        if (r < 0)
                return r;
        if (n->cgroup_inside && strncmp(n->cgroup_inside, "/..", 3) == 0 && !n->cgroupns_root)
                return nm_error_set(
                        err, -EOPNOTSUPP,
                        "it sees its cgroup as %s (its cgroup namespace's root is elsewhere) and that root "
                        "could not be found; CRIU refuses such a tree (\"invalid cgroup configuration\")",
                        n->cgroup_inside);
        r = check_stdio(n, err);
        if (r < 0)
                return r;
        if (n->landlock == CKPT_LANDLOCK_ASSUMED && !(p && p->accept_landlock_loss))
                return nm_error_set(
                        err, -EOPNOTSUPP,
                        "nucleus confines its containers with Landlock, which CRIU 4.2 does not carry: the "
                        "moved copy would run without it (and no kernel interface shows whether this one "
                        "has it). Accept that explicitly to move it");
        return 0;
}
