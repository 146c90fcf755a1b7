/* SPDX-License-Identifier: Apache-2.0 */
#include "fs-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

int loop_write(int fd, const void *buf, size_t len) {
        const char *p = buf;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

ssize_t loop_read(int fd, void *buf, size_t len) {
        char *p = buf;
        size_t done = 0;
        while (done < len) {
                ssize_t n = read(fd, p + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                done += (size_t)n;
        }
        return (ssize_t)done;
}

void *io_buf_alloc(size_t len) {
        size_t line = 64;
        /* aligned_alloc() wants a multiple of the alignment */
        return aligned_alloc(line, (len + line - 1) / line * line);
}

static int open_subdir_nofollow(int dirfd, const char *name);

DIR *fs_opendir_dup(int dirfd) {
        int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        DIR *d;

        if (fd < 0)
                return NULL;
        d = fdopendir(fd);
        if (!d) {
                int e = errno;
                close(fd);
                errno = e;
        }
        return d;
}

int open_dir_nofollow(const char *path) {
        return open_subdir_nofollow(AT_FDCWD, path);
}

/* O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR; callers want to
 * tell "a symlink was refused" (ELOOP) from "not a directory". */
static int open_subdir_nofollow(int dirfd, const char *name) {
        struct stat st;
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
                return fd;
        if (errno == ENOTDIR && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                return -ELOOP;
        return negative_errno();
}

int openat_dir_beneath(int dirfd, const char *relpath) {
        _cleanup_free_ char *copy = strdup(relpath);
        _cleanup_close_ int cur = -EBADF;
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        cur = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cur < 0)
                return negative_errno();
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                if (strcmp(c, "..") == 0)
                        return -EPERM;
                int next = open_subdir_nofollow(cur, c);
                if (next < 0)
                        return next;
                close(cur);
                cur = next;
        }
        return TAKE_FD(cur);
}

int mkdirat_secure(int dirfd, const char *name, mode_t mode) {
        struct stat st;
        int fd;

        if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST)
                return negative_errno();
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return negative_errno();
        if (S_ISLNK(st.st_mode))
                return -ELOOP;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fchmod(fd, mode) < 0) {
                int r = negative_errno();
                close(fd);
                return r;
        }
        return fd;
}

int mkdir_p_secure(const char *path, mode_t mode) {
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_close_ int cur = -EBADF;
        char *save = NULL, *c, *next;

        if (!copy)
                return -ENOMEM;
        cur = open(path[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cur < 0)
                return negative_errno();
        for (c = strtok_r(copy, "/", &save); c; c = next) {
                int fd;
                next = strtok_r(NULL, "/", &save);
                if (!next)
                        return mkdirat_secure(cur, c, mode);
                /* Intermediate components may be system symlinks such as
                 * /var/run -> /run; only components we create are ours. */
                if (mkdirat(cur, c, mode) < 0 && errno != EEXIST)
                        return negative_errno();
                fd = openat(cur, c, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        return negative_errno();
                close(cur);
                cur = fd;
        }
        return -EINVAL;
}

int open_regular_at(int dirfd, const char *name, int flags, mode_t mode, struct stat *ret_st) {
        /* O_NONBLOCK: a FIFO put there must not block the open; a regular
         * file's reads and writes ignore it. */
        _cleanup_close_ int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
        struct stat st;

        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (ret_st)
                *ret_st = st;
        return TAKE_FD(fd);
}

int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode) {
        char tmp[NAME_MAX + 1];
        _cleanup_close_ int fd = -EBADF;
        int r;

        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= sizeof(tmp))
                return -ENAMETOOLONG;
        /* A stale temp file from a crash is removed; a symlink there is
         * removed too, never followed. */
        if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT)
                return negative_errno();
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return negative_errno();
        r = loop_write(fd, data, len);
        if (r >= 0 && fsync(fd) < 0)
                r = negative_errno();
        if (r >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                r = negative_errno();
        if (r < 0) {
                (void)unlinkat(dirfd, tmp, 0);
                return r;
        }
        if (fsync(dirfd) < 0)
                return negative_errno();
        return 0;
}

int write_file_in_place_at(int dirfd, const char *name, const void *data, size_t len) {
        _cleanup_close_ int fd = open_regular_at(dirfd, name, O_WRONLY, 0, NULL);
        ssize_t n;

        if (fd < 0)
                return fd;
        n = pwrite(fd, data, len, 0);
        if (n < 0)
                return negative_errno();
        if ((size_t)n != len)
                return -EIO;
        if (ftruncate(fd, (off_t)len) < 0 || fsync(fd) < 0)
                return negative_errno();
        return 0;
}

int read_file_at(int dirfd, const char *name, size_t max, char **ret_data, size_t *ret_len) {
        _cleanup_close_ int fd = open_regular_at(dirfd, name, O_RDONLY, 0, NULL);
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        if (fd < 0)
                return fd;
        /* Read to EOF rather than trusting st_size: /proc files report 0. */
        for (;;) {
                if (len == cap) {
                        size_t ncap = cap ? cap * 2 : 4096;
                        if (cap > max)
                                return -EFBIG;
                        char *n = realloc(buf, ncap + 1);
                        if (!n)
                                return -ENOMEM;
                        buf = n;
                        cap = ncap;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        if (len > max)
                return -EFBIG;
        buf[len] = '\0';
        if (ret_len)
                *ret_len = len;
        *ret_data = TAKE_PTR(buf);
        return 0;
}

static int rm_rf_children(int fd) {
        DIR *d = fdopendir(fd);
        struct dirent *de;
        int r = 0;

        if (!d) {
                close(fd);
                return negative_errno();
        }
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                int q = rm_rf_at(dirfd(d), de->d_name);
                if (q < 0 && r == 0)
                        r = q;
        }
        closedir(d);
        return r;
}

int fs_set_immutable(int fd, bool on) {
        int flags;
        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
                return negative_errno();
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        return ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0 ? negative_errno() : 0;
}

int fs_seal_dir_files(int dirfd) {
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *de;
        DIR *d;
        int r = 0;

        if (fd < 0)
                return negative_errno();
        d = fdopendir(fd); /* the DIR takes fd */
        if (!d) {
                r = negative_errno();
                close(fd);
                return r;
        }
        while (r >= 0 && (de = readdir(d))) {
                int ffd;
                if (de->d_type != DT_REG)
                        continue;
                ffd = openat(dirfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
                if (ffd < 0) {
                        r = negative_errno();
                        break;
                }
                r = fs_set_immutable(ffd, true);
                if (r == -ENOTTY || r == -EOPNOTSUPP)
                        r = 0;
                close(ffd);
        }
        closedir(d);
        return r;
}

/* A sealed (immutable) regular file cannot be unlinked: unseal, then retry. */
static int unlink_file_at(int dirfd, const char *name) {
        int fd;
        if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EPERM)
                return negative_errno();
        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return -EPERM;
        (void)fs_set_immutable(fd, false);
        close(fd);
        return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? negative_errno() : 0;
}

int rm_rf_at(int dirfd, const char *name) {
        struct stat st;
        int fd, r;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : negative_errno();
        if (S_ISREG(st.st_mode))
                return unlink_file_at(dirfd, name);
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? negative_errno() : 0;
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        r = rm_rf_children(fd);
        if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = negative_errno();
        return r;
}

int rm_rf_path(const char *path) {
        return rm_rf_at(AT_FDCWD, path);
}
