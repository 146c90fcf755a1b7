/* SPDX-License-Identifier: Apache-2.0 */
/* The root file system of a native container, built by C2 in its new mount
 * namespace as nucleus builds it: a tmpfs (size, nosuid, nodev) mounted
 * over <runtime dir>/nucleus-runtime-XXXXXX with the skeleton and mknod'ed
 * device nodes, read-only recursive binds of the host's /bin /usr /lib
 * /lib64 /nix (those that exist), /dev/shm, a /run/secrets tmpfs with one
 * bind per secret, volume binds, a read-only procfs with read-only
 * self-binds, the host's /dev/null over the dangerous proc files and a
 * size=0 tmpfs over /proc/acpi and /proc/scsi; then pivot_root and a
 * detached unmount of the old root. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"
#include "native.h"

int native_init_fd = -1;

static const char *const host_dirs[] = {"/bin", "/usr", "/lib", "/lib64", "/nix"};
static const char *const proc_ro[] = {"bus", "fs", "irq", "sys"};
static const char *const proc_masked[] = {"kcore",         "keys",          "timer_list", "sched_debug",
                                          "sysrq-trigger", "latency_stats", "kallsyms"};
static const char *const proc_empty[] = {"acpi", "scsi"};

static const struct {
        const char *name;
        unsigned major, minor;
} devices[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}};

static int fail(char *err, size_t errsz, const char *fmt, ...) {
        int e = errno;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < errsz)
                snprintf(err + n, errsz - (size_t)n, ": %s", strerror(e));
        return -1;
}

static int mkdirs(const char *root, const char *rel, mode_t mode) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", root, rel[0] == '/' ? rel + 1 : rel);
        for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        return -1;
                *p = '/';
        }
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                return -1;
        return chmod(path, mode);
}

static int read_only(const char *path, bool recursive) {
        struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY};
        return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &a, sizeof(a));
}

static int bind(const char *src, const char *dst, bool ro, bool recursive) {
        if (mount(src, dst, NULL, MS_BIND | (recursive ? MS_REC : 0), NULL) < 0)
                return -1;
        return ro ? read_only(dst, recursive) : 0;
}

static int write_file(const char *root, const char *rel, const char *text, mode_t mode) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -1;
        int r = loop_write(fd, text, strlen(text));
        close(fd);
        return r < 0 ? -1 : 0;
}

static int skeleton(const native_cfg *cfg, const char *root) {
        static const char *const dirs[] = {"dev",  "etc", "proc",    "run",    "root",
                                           "home", "var", "var/tmp", "context"};
        char path[4096];

        for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
                if (mkdirs(root, dirs[i], 0755) < 0)
                        return -1;
        if (mkdirs(root, "tmp", 01777) < 0)
                return -1;
        for (size_t i = 0; i < ARRAY_SIZE(devices); i++) {
                snprintf(path, sizeof(path), "%s/dev/%s", root, devices[i].name);
                if (mknod(path, S_IFCHR | 0666, makedev(devices[i].major, devices[i].minor)) < 0 ||
                    chmod(path, 0666) < 0)
                        return -1;
        }
        snprintf(path, sizeof(path), "%s\n", cfg->name);
        if (write_file(root, "etc/hostname", path, 0644) < 0 ||
            write_file(root, "etc/hosts", "127.0.0.1 localhost\n", 0644) < 0 ||
            write_file(root, "etc/resolv.conf", "nameserver 10.0.42.1\n", 0644) < 0)
                return -1;
        return 0;
}

/* Copy mode: the context directory's regular files, one level deep. */
static int copy_context(const native_cfg *cfg, const char *root) {
        char cmd[8192];
        if (!cfg->context)
                return 0;
        snprintf(cmd, sizeof(cmd), "%s/context", root);
        char *argv[] = {"cp", "-a", "--", (char *)cfg->context, cmd, NULL};
        /* cp -a DIR into context/ makes context/<basename>: copy the
         * contents instead. */
        snprintf(cmd, sizeof(cmd), "%s/.", cfg->context);
        argv[3] = cmd;
        char dst[4096];
        snprintf(dst, sizeof(dst), "%s/context", root);
        argv[4] = dst;
        return native_run(argv);
}

static int host_binds(const char *root) {
        char dst[4096];
        struct stat st;
        for (size_t i = 0; i < ARRAY_SIZE(host_dirs); i++) {
                if (stat(host_dirs[i], &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (mkdirs(root, host_dirs[i], 0755) < 0)
                        return -1;
                snprintf(dst, sizeof(dst), "%s%s", root, host_dirs[i]);
                if (bind(host_dirs[i], dst, true, true) < 0)
                        return -1;
        }
        return 0;
}

static int secrets(const native_cfg *cfg, const char *root) {
        char dst[4096];
        if (mkdirs(root, "run/secrets", 0700) < 0)
                return -1;
        snprintf(dst, sizeof(dst), "%s/run/secrets", root);
        if (mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=0700") < 0)
                return -1;
        for (unsigned i = 0; i < cfg->n_secrets; i++) {
                snprintf(dst, sizeof(dst), "%s/run/secrets/%s", root, cfg->secrets[i].ctr);
                int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0400);
                if (fd < 0)
                        return -1;
                close(fd);
                if (bind(cfg->secrets[i].host, dst, true, false) < 0)
                        return -1;
        }
        return 0;
}

static int volumes(const native_cfg *cfg, const char *root) {
        char dst[4096];
        for (unsigned i = 0; i < cfg->n_volumes; i++) {
                if (mkdirs(root, cfg->volumes[i].ctr, 0755) < 0)
                        return -1;
                snprintf(dst, sizeof(dst), "%s%s", root, cfg->volumes[i].ctr);
                if (bind(cfg->volumes[i].host, dst, cfg->volumes[i].ro, true) < 0)
                        return -1;
        }
        return 0;
}

/* A memfd bound over /etc/resolv.conf (nucleus with --rootfs and bridge
 * networking). The memfd stays alive through the mount. */
static int memfd_resolv(const char *root) {
        char src[64], dst[4096];
        int fd = memfd_create("resolv.conf", MFD_CLOEXEC);
        if (fd < 0 || loop_write(fd, "nameserver 10.0.42.1\n", 21) < 0)
                return -1;
        snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
        snprintf(dst, sizeof(dst), "%s/etc/resolv.conf", root);
        int r = mount(src, dst, NULL, MS_BIND, NULL);
        close(fd);
        return r;
}

static int procfs(const char *root) {
        char dst[4096];
        struct stat st;

        snprintf(dst, sizeof(dst), "%s/proc", root);
        if (mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                return -1;
        for (size_t i = 0; i < ARRAY_SIZE(proc_ro); i++) {
                snprintf(dst, sizeof(dst), "%s/proc/%s", root, proc_ro[i]);
                if (stat(dst, &st) == 0 && bind(dst, dst, true, true) < 0)
                        return -1;
        }
        for (size_t i = 0; i < ARRAY_SIZE(proc_masked); i++) {
                snprintf(dst, sizeof(dst), "%s/proc/%s", root, proc_masked[i]);
                /* The host's /dev/null: the old root is still there. */
                if (stat(dst, &st) == 0 && bind("/dev/null", dst, false, false) < 0)
                        return -1;
        }
        for (size_t i = 0; i < ARRAY_SIZE(proc_empty); i++) {
                snprintf(dst, sizeof(dst), "%s/proc/%s", root, proc_empty[i]);
                if (stat(dst, &st) == 0 &&
                    mount("tmpfs", dst, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0") < 0)
                        return -1;
        }
        snprintf(dst, sizeof(dst), "%s/proc", root);
        return read_only(dst, false);
}

static int enter_root(const char *root) {
        if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
                return -1;
        /* The old root is stacked under the new one: detach it. */
        if (umount2(".", MNT_DETACH) < 0)
                return -1;
        return chdir("/");
}

int native_root_setup(const native_cfg *cfg, char *err, size_t errsz) {
        char root[4096], opts[128], shm[4096 + 16];

        if (mkdirs("", cfg->runtime_dir, 0700) < 0)
                return fail(err, errsz, "cannot create %s", cfg->runtime_dir);
        snprintf(root, sizeof(root), "%s/nucleus-runtime-XXXXXX", cfg->runtime_dir);
        if (!mkdtemp(root))
                return fail(err, errsz, "mkdtemp in %s", cfg->runtime_dir);
        snprintf(opts, sizeof(opts), "size=%s,mode=0755", cfg->rootfs_size);
        if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                return fail(err, errsz, "mount the root tmpfs on %s", root);
        if (skeleton(cfg, root) < 0)
                return fail(err, errsz, "skeleton of the root");
        if (copy_context(cfg, root) < 0)
                return fail(err, errsz, "copy context %s", cfg->context);
        if (host_binds(root) < 0)
                return fail(err, errsz, "read-only binds of the host's directories");
        snprintf(shm, sizeof(shm), "%s/dev/shm", root);
        if (mkdir(shm, 01777) < 0 ||
            mount("tmpfs", shm, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777") < 0)
                return fail(err, errsz, "/dev/shm");
        if (secrets(cfg, root) < 0)
                return fail(err, errsz, "/run/secrets");
        if (volumes(cfg, root) < 0)
                return fail(err, errsz, "volume binds");
        if (cfg->memfd_resolv && memfd_resolv(root) < 0)
                return fail(err, errsz, "memfd over /etc/resolv.conf");
        if (procfs(root) < 0)
                return fail(err, errsz, "/proc");
        if (cfg->init) {
                native_init_fd = open(cfg->init, O_PATH | O_CLOEXEC);
                if (native_init_fd < 0)
                        return fail(err, errsz, "open the init %s", cfg->init);
        }
        if (enter_root(root) < 0)
                return fail(err, errsz, "pivot_root into %s", root);
        return 0;
}
