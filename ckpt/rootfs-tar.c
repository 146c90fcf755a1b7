/* SPDX-License-Identifier: Apache-2.0 */
/* The root tmpfs as a POSIX tar (ustar headers, pax records for long names
 * and big numbers), written from a detached mount and extracted into a
 * fresh one. CRIU itself carries other tmpfs mounts as tar; this one is
 * ours because CRIU never dumps the root mount.
 *
 * The archive is signed with the images, but extraction does not lean on
 * that: every path is checked and resolved below the root with openat2's
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (a symlink anywhere in a parent is
 * refused, never followed), entries are created with O_EXCL/O_NOFOLLOW,
 * hard links must stay inside and point at regular files, and the only
 * device nodes are the skeleton's. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

#define BLOCK 512
#define PATH_LIMIT 4096
#define DEPTH_LIMIT 256
#define PAX_LIMIT (64 * 1024)
#define ENTRY_LIMIT 1000000
#define IOBUF (64 * 1024)
#define OCTAL_MAX(width) ((1ull << (3 * ((width)-1))) - 1)

typedef struct ustar {
        char name[100];
        char mode[8];
        char uid[8];
        char gid[8];
        char size[12];
        char mtime[12];
        char chksum[8];
        char typeflag;
        char linkname[100];
        char magic[6];
        char version[2];
        char uname[32];
        char gname[32];
        char devmajor[8];
        char devminor[8];
        char prefix[155];
        char pad[12];
} ustar;

_Static_assert(sizeof(ustar) == BLOCK, "a tar header is one block");

/* The skeleton's device nodes: the only ones an archive may hold. */
static const struct {
        const char *path;
        unsigned major, minor;
} skeleton_devices[] = {{"dev/null", 1, 3},
                        {"dev/zero", 1, 5},
                        {"dev/full", 1, 7},
                        {"dev/random", 1, 8},
                        {"dev/urandom", 1, 9}};

/* ---- writing ----------------------------------------------------------------- */

typedef struct link_seen {
        ino_t ino;
        char *path;
} link_seen;

typedef struct tar_writer {
        int out;
        char buf[IOBUF];
        size_t used;
        link_seen *links;
        size_t n_links;
        nm_error *err;
} tar_writer;

static int w_flush(tar_writer *w) {
        int r = loop_write(w->out, w->buf, w->used);
        w->used = 0;
        return r < 0 ? nm_error_errno(w->err, r, "cannot write the root archive") : 0;
}

static int w_put(tar_writer *w, const void *p, size_t n) {
        while (n > 0) {
                size_t k = sizeof(w->buf) - w->used < n ? sizeof(w->buf) - w->used : n;
                memcpy(w->buf + w->used, p, k);
                w->used += k;
                p = (const char *)p + k;
                n -= k;
                if (w->used == sizeof(w->buf) && w_flush(w) < 0)
                        return -EIO;
        }
        return 0;
}

static int w_pad(tar_writer *w, uint64_t size) {
        static const char zero[BLOCK];
        size_t rest = (size_t)(size % BLOCK);
        return rest ? w_put(w, zero, BLOCK - rest) : 0;
}

static void octal(char *field, size_t width, uint64_t v) {
        snprintf(field, width, "%0*llo", (int)width - 1, (unsigned long long)v);
}

static void checksum(ustar *h) {
        unsigned sum = 0;
        memset(h->chksum, ' ', sizeof(h->chksum));
        for (size_t i = 0; i < BLOCK; i++)
                sum += ((unsigned char *)h)[i];
        snprintf(h->chksum, sizeof(h->chksum), "%06o", sum);
        h->chksum[7] = ' ';
}

/* One pax record "<len> key=value\n", len counting itself. */
static int pax_record(char *buf, size_t size, size_t *used, const char *key, const char *value) {
        size_t body = strlen(key) + strlen(value) + 3, len = body + 1;
        while (snprintf(NULL, 0, "%zu", len) + body != len)
                len++;
        if (*used + len >= size)
                return -ENAMETOOLONG;
        *used += (size_t)snprintf(buf + *used, size - *used, "%zu %s=%s\n", len, key, value);
        return 0;
}

static int w_header(tar_writer *w, const char *path, const struct stat *st, char type, const char *link,
                    uint64_t size) {
        ustar h = {};
        char pax[3 * PATH_LIMIT], num[32];
        size_t pax_used = 0;
        int r = 0;

        if (strlen(path) >= sizeof(h.name))
                r = pax_record(pax, sizeof(pax), &pax_used, "path", path);
        if (r >= 0 && link && strlen(link) >= sizeof(h.linkname))
                r = pax_record(pax, sizeof(pax), &pax_used, "linkpath", link);
        if (r >= 0 && size > OCTAL_MAX(sizeof(h.size))) {
                snprintf(num, sizeof(num), "%llu", (unsigned long long)size);
                r = pax_record(pax, sizeof(pax), &pax_used, "size", num);
        }
        if (r >= 0 && (st->st_uid > OCTAL_MAX(sizeof(h.uid)) || st->st_gid > OCTAL_MAX(sizeof(h.gid)))) {
                snprintf(num, sizeof(num), "%u", (unsigned)st->st_uid);
                r = pax_record(pax, sizeof(pax), &pax_used, "uid", num);
                snprintf(num, sizeof(num), "%u", (unsigned)st->st_gid);
                if (r >= 0)
                        r = pax_record(pax, sizeof(pax), &pax_used, "gid", num);
        }
        if (r < 0)
                return nm_error_set(w->err, r, "%s: name too long for the root archive", path);
        if (pax_used) {
                ustar x = {};
                snprintf(x.name, sizeof(x.name), "PaxHeaders/entry");
                octal(x.mode, sizeof(x.mode), 0644);
                octal(x.uid, sizeof(x.uid), 0);
                octal(x.gid, sizeof(x.gid), 0);
                octal(x.size, sizeof(x.size), pax_used);
                octal(x.mtime, sizeof(x.mtime), 0);
                x.typeflag = 'x';
                memcpy(x.magic, "ustar", 6);
                memcpy(x.version, "00", 2);
                checksum(&x);
                if (w_put(w, &x, BLOCK) < 0 || w_put(w, pax, pax_used) < 0 || w_pad(w, pax_used) < 0)
                        return -EIO;
        }
        /* Fields need no NUL when full; a longer name went into the pax
         * record above and this is its truncated fallback. */
        memcpy(h.name, path, strnlen(path, sizeof(h.name)));
        octal(h.mode, sizeof(h.mode), st->st_mode & 07777);
        octal(h.uid, sizeof(h.uid), st->st_uid <= OCTAL_MAX(sizeof(h.uid)) ? st->st_uid : 0);
        octal(h.gid, sizeof(h.gid), st->st_gid <= OCTAL_MAX(sizeof(h.gid)) ? st->st_gid : 0);
        octal(h.size, sizeof(h.size), size <= OCTAL_MAX(sizeof(h.size)) ? size : 0);
        octal(h.mtime, sizeof(h.mtime), st->st_mtime > 0 ? (uint64_t)st->st_mtime : 0);
        h.typeflag = type;
        if (link)
                memcpy(h.linkname, link, strnlen(link, sizeof(h.linkname)));
        memcpy(h.magic, "ustar", 6);
        memcpy(h.version, "00", 2);
        if (type == '3' || type == '4') {
                octal(h.devmajor, sizeof(h.devmajor), major(st->st_rdev));
                octal(h.devminor, sizeof(h.devminor), minor(st->st_rdev));
        }
        checksum(&h);
        return w_put(w, &h, BLOCK);
}

static int w_file(tar_writer *w, int dfd, const char *name, const char *path, const struct stat *st) {
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        uint64_t left = (uint64_t)st->st_size;
        char buf[IOBUF];

        if (fd < 0)
                return nm_error_errno(w->err, negative_errno(), "cannot open %s in the root", path);
        if (w_header(w, path, st, '0', NULL, left) < 0)
                return -EIO;
        while (left > 0) {
                ssize_t n = read(fd, buf, left < sizeof(buf) ? left : sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) /* the tree is frozen: a file cannot shrink */
                        return nm_error_set(w->err, -EIO, "%s in the root changed while it was archived",
                                            path);
                if (w_put(w, buf, (size_t)n) < 0)
                        return -EIO;
                left -= (uint64_t)n;
        }
        return w_pad(w, (uint64_t)st->st_size);
}

/* A hard link to a file archived before, when there is one. */
static int w_link_or_remember(tar_writer *w, const char *path, const struct stat *st, bool *ret_linked) {
        *ret_linked = false;
        if (st->st_nlink < 2)
                return 0;
        for (size_t i = 0; i < w->n_links; i++)
                if (w->links[i].ino == st->st_ino) {
                        *ret_linked = true;
                        return w_header(w, path, st, '1', w->links[i].path, 0);
                }
        link_seen *nl = realloc(w->links, (w->n_links + 1) * sizeof(*nl));
        if (!nl)
                return -ENOMEM;
        w->links = nl;
        w->links[w->n_links].ino = st->st_ino;
        w->links[w->n_links].path = strdup(path);
        if (!w->links[w->n_links].path)
                return -ENOMEM;
        w->n_links++;
        return 0;
}

static int w_dir(tar_writer *w, int dfd, const char *prefix, unsigned depth);

static int w_entry(tar_writer *w, int dfd, const char *name, const char *prefix, unsigned depth) {
        char path[PATH_LIMIT], target[PATH_LIMIT];
        struct stat st;
        bool linked;
        ssize_t n;
        int r;

        if ((size_t)snprintf(path, sizeof(path), "%s%s", prefix, name) >= sizeof(path) - 1)
                return nm_error_set(w->err, -ENAMETOOLONG, "a path in the root is too long: %s...", prefix);
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return nm_error_errno(w->err, negative_errno(), "cannot stat %s in the root", path);
        switch (st.st_mode & S_IFMT) {
        case S_IFDIR: {
                _cleanup_close_ int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0)
                        return nm_error_errno(w->err, negative_errno(), "cannot open %s in the root", path);
                size_t len = strlen(path); /* room was checked above */
                path[len] = '/';
                path[len + 1] = '\0';
                r = w_header(w, path, &st, '5', NULL, 0);
                return r < 0 ? r : w_dir(w, sub, path, depth + 1);
        }
        case S_IFREG:
                r = w_link_or_remember(w, path, &st, &linked);
                if (r < 0 || linked)
                        return r;
                return w_file(w, dfd, name, path, &st);
        case S_IFLNK:
                n = readlinkat(dfd, name, target, sizeof(target) - 1);
                if (n < 0)
                        return nm_error_errno(w->err, negative_errno(), "cannot read symlink %s", path);
                target[n] = '\0';
                return w_header(w, path, &st, '2', target, 0);
        case S_IFCHR: return w_header(w, path, &st, '3', NULL, 0);
        case S_IFBLK: return w_header(w, path, &st, '4', NULL, 0);
        case S_IFIFO: return w_header(w, path, &st, '6', NULL, 0);
        default: return 0; /* a socket file: whoever bound it binds again after the restore */
        }
}

static int w_dir(tar_writer *w, int dfd, const char *prefix, unsigned depth) {
        struct dirent *de;
        DIR *d;
        int fd, r = 0;

        if (depth > DEPTH_LIMIT)
                return nm_error_set(w->err, -ELOOP, "the root is nested deeper than %d at %s", DEPTH_LIMIT,
                                    prefix);
        fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                r = negative_errno();
                if (fd >= 0)
                        close(fd);
                return nm_error_errno(w->err, r, "cannot list %s in the root", prefix[0] ? prefix : "/");
        }
        while (r >= 0 && (de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        r = w_entry(w, dirfd(d), de->d_name, prefix, depth);
        closedir(d);
        return r;
}

int ckpt__tar_write(int rootfd, int outfd, nm_error *err) {
        static const char end[2 * BLOCK];
        tar_writer *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        w->out = outfd;
        w->err = err;
        r = w_dir(w, rootfd, "", 0);
        if (r >= 0)
                r = w_put(w, end, sizeof(end));
        if (r >= 0)
                r = w_flush(w);
        for (size_t i = 0; i < w->n_links; i++)
                free(w->links[i].path);
        free(w->links);
        free(w);
        return r < 0 ? (err && err->code ? err->code : r) : 0;
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct tar_reader {
        int in;
        char buf[IOBUF];
        size_t have, pos;
        bool eof;
        nm_error *err;
} tar_reader;

static int r_get(tar_reader *t, void *p, size_t n) {
        while (n > 0) {
                if (t->pos == t->have) {
                        ssize_t k = read(t->in, t->buf, sizeof(t->buf));
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0)
                                return nm_error_errno(t->err, negative_errno(),
                                                      "cannot read the root archive");
                        if (k == 0)
                                return nm_error_set(t->err, -EBADMSG, "the root archive ends early");
                        t->have = (size_t)k;
                        t->pos = 0;
                }
                size_t c = t->have - t->pos < n ? t->have - t->pos : n;
                if (p) {
                        memcpy(p, t->buf + t->pos, c);
                        p = (char *)p + c;
                }
                t->pos += c;
                n -= c;
        }
        return 0;
}

static int r_skip_pad(tar_reader *t, uint64_t size) {
        size_t rest = (size_t)(size % BLOCK);
        return rest ? r_get(t, NULL, BLOCK - rest) : 0;
}

/* A NUL- or space-terminated octal number filling at most the field. */
static int parse_octal(const char *f, size_t width, uint64_t *ret) {
        uint64_t v = 0;
        size_t i = 0;
        while (i < width && f[i] == ' ')
                i++;
        if (i == width || f[i] < '0' || f[i] > '7')
                return -EBADMSG;
        for (; i < width && f[i] >= '0' && f[i] <= '7'; i++)
                v = v * 8 + (uint64_t)(f[i] - '0');
        for (; i < width; i++)
                if (f[i] != '\0' && f[i] != ' ')
                        return -EBADMSG;
        *ret = v;
        return 0;
}

static bool checksum_ok(const ustar *h) {
        uint64_t want;
        unsigned sum = 0;
        if (parse_octal(h->chksum, sizeof(h->chksum), &want) < 0)
                return false;
        for (size_t i = 0; i < BLOCK; i++) {
                unsigned char c = ((const unsigned char *)h)[i];
                sum += (i >= offsetof(ustar, chksum) && i < offsetof(ustar, chksum) + sizeof(h->chksum))
                               ? ' '
                               : c;
        }
        return sum == want;
}

static bool all_zero(const void *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (((const unsigned char *)p)[i])
                        return false;
        return true;
}

/* Makes path canonical in place: no leading "./", no trailing "/"; refuses
 * absolute paths, "..", ".", empty components and over-long ones. */
static int clean_path(char *path, nm_error *err) {
        char *p = path;
        size_t n;
        while (strncmp(p, "./", 2) == 0)
                p += 2;
        memmove(path, p, strlen(p) + 1);
        n = strlen(path);
        while (n > 0 && path[n - 1] == '/')
                path[--n] = '\0';
        if (n == 0 || path[0] == '/' || n >= PATH_LIMIT)
                return nm_error_set(err, -EBADMSG, "root archive: refusing path '%s'", path);
        for (char *c = path; c;) {
                char *s = strchr(c, '/');
                size_t len = s ? (size_t)(s - c) : strlen(c);
                if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
                        return nm_error_set(err, -EBADMSG, "root archive: refusing path '%s'", path);
                c = s ? s + 1 : NULL;
        }
        return 0;
}

/* The directory that will hold path, resolved strictly below rootfd. */
static int open_parent(int rootfd, const char *path, const char **ret_base, nm_error *err) {
        struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                                          RESOLVE_NO_XDEV};
        char parent[PATH_LIMIT];
        const char *slash = strrchr(path, '/');
        int fd;

        if (!slash) {
                *ret_base = path;
                snprintf(parent, sizeof(parent), ".");
        } else {
                *ret_base = slash + 1;
                snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
        }
        fd = (int)syscall(SYS_openat2, rootfd, parent, &how, sizeof(how));
        if (fd < 0) /* a symlink on the way, or no such directory: the archive's fault */
                return nm_error_set(
                        err, -EBADMSG,
                        "root archive: the parent of '%s' is not a directory inside the root (%s)", path,
                        strerror(errno));
        return fd;
}

typedef struct entry {
        char type;
        char path[PATH_LIMIT];
        char link[PATH_LIMIT];
        uint64_t mode, uid, gid, size, mtime, devmajor, devminor;
} entry;

/* The records of a pax header that we write: path, linkpath, size, uid, gid. */
static int apply_pax(char *p, size_t n, entry *e, bool *has_size, nm_error *err) {
        while (n > 0) {
                char *end, *eq;
                unsigned long len = strtoul(p, &end, 10);
                if (end == p || *end != ' ' || len == 0 || len > n || p[len - 1] != '\n')
                        return nm_error_set(err, -EBADMSG, "root archive: malformed pax record");
                p[len - 1] = '\0';
                eq = strchr(end + 1, '=');
                if (!eq)
                        return nm_error_set(err, -EBADMSG, "root archive: malformed pax record");
                *eq = '\0';
                const char *key = end + 1, *val = eq + 1;
                if (strcmp(key, "path") == 0)
                        snprintf(e->path, sizeof(e->path), "%s", val);
                else if (strcmp(key, "linkpath") == 0)
                        snprintf(e->link, sizeof(e->link), "%s", val);
                else if (strcmp(key, "size") == 0) {
                        e->size = strtoull(val, NULL, 10);
                        *has_size = true;
                } else if (strcmp(key, "uid") == 0)
                        e->uid = strtoull(val, NULL, 10);
                else if (strcmp(key, "gid") == 0)
                        e->gid = strtoull(val, NULL, 10);
                p += len;
                n -= len;
        }
        return 0;
}

/* The next entry; 0 at the end of the archive (two zero blocks). */
static int r_entry(tar_reader *t, entry *e) {
        ustar h = {};
        bool pax_path = false, pax_link = false, pax_size = false;
        uint64_t v = 0;

        for (;;) {
                if (r_get(t, &h, BLOCK) < 0)
                        return -EBADMSG;
                if (all_zero(&h, BLOCK)) {
                        if (r_get(t, &h, BLOCK) < 0 || !all_zero(&h, BLOCK))
                                return nm_error_set(t->err, -EBADMSG, "root archive: a lone zero block");
                        return 0;
                }
                if (memcmp(h.magic, "ustar", 6) != 0 || memcmp(h.version, "00", 2) != 0 || !checksum_ok(&h))
                        return nm_error_set(t->err, -EBADMSG, "root archive: not a valid ustar header");
                if (parse_octal(h.size, sizeof(h.size), &v) < 0)
                        return nm_error_set(t->err, -EBADMSG, "root archive: bad size field");
                if (h.typeflag != 'x')
                        break;
                if (v > PAX_LIMIT)
                        return nm_error_set(t->err, -EBADMSG, "root archive: pax header too large");
                _cleanup_free_ char *pax = malloc(v + 1);
                if (!pax)
                        return -ENOMEM;
                if (r_get(t, pax, v) < 0 || r_skip_pad(t, v) < 0)
                        return -EBADMSG;
                pax[v] = '\0';
                e->path[0] = e->link[0] = '\0';
                if (apply_pax(pax, v, e, &pax_size, t->err) < 0)
                        return -EBADMSG;
                pax_path = e->path[0] != '\0';
                pax_link = e->link[0] != '\0';
        }
        e->type = h.typeflag;
        if (!e->type) /* old archives */
                e->type = '0';
        if (!pax_size)
                e->size = v;
        if (!pax_path) {
                if (h.prefix[0])
                        snprintf(e->path, sizeof(e->path), "%.*s/%.*s",
                                 (int)strnlen(h.prefix, sizeof(h.prefix)), h.prefix,
                                 (int)strnlen(h.name, sizeof(h.name)), h.name);
                else
                        snprintf(e->path, sizeof(e->path), "%.*s", (int)strnlen(h.name, sizeof(h.name)),
                                 h.name);
        }
        if (!pax_link)
                snprintf(e->link, sizeof(e->link), "%.*s", (int)strnlen(h.linkname, sizeof(h.linkname)),
                         h.linkname);
        if (parse_octal(h.mode, sizeof(h.mode), &e->mode) < 0 ||
            parse_octal(h.mtime, sizeof(h.mtime), &e->mtime) < 0)
                return nm_error_set(t->err, -EBADMSG, "root archive: bad number in the header of '%s'",
                                    e->path);
        if (parse_octal(h.uid, sizeof(h.uid), &v) == 0 && !e->uid)
                e->uid = v;
        if (parse_octal(h.gid, sizeof(h.gid), &v) == 0 && !e->gid)
                e->gid = v;
        if ((e->type == '3' || e->type == '4') &&
            (parse_octal(h.devmajor, sizeof(h.devmajor), &e->devmajor) < 0 ||
             parse_octal(h.devminor, sizeof(h.devminor), &e->devminor) < 0))
                return nm_error_set(t->err, -EBADMSG, "root archive: bad device numbers for '%s'", e->path);
        return 1;
}

static int set_owner_mode(int fd, const entry *e) {
        if (fchown(fd, (uid_t)e->uid, (gid_t)e->gid) < 0 || fchmod(fd, (mode_t)(e->mode & 07777)) < 0)
                return negative_errno();
        return 0;
}

static int x_dir(int pfd, const char *base, const entry *e) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        if (mkdirat(pfd, base, 0700) < 0) {
                if (errno != EEXIST || fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISDIR(st.st_mode))
                        return -EEXIST;
        }
        fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? negative_errno() : set_owner_mode(fd, e);
}

static int x_file(tar_reader *t, int pfd, const char *base, const entry *e) {
        _cleanup_close_ int fd =
                openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        uint64_t left = e->size;
        char buf[IOBUF];
        int r;

        if (fd < 0)
                return negative_errno();
        while (left > 0) {
                size_t k = left < sizeof(buf) ? (size_t)left : sizeof(buf);
                if (r_get(t, buf, k) < 0)
                        return -EBADMSG;
                r = loop_write(fd, buf, k);
                if (r < 0)
                        return r;
                left -= k;
        }
        r = set_owner_mode(fd, e);
        if (r < 0)
                return r;
        struct timespec ts[2] = {{(time_t)e->mtime, 0}, {(time_t)e->mtime, 0}};
        (void)futimens(fd, ts);
        return 0;
}

static bool skeleton_device(const entry *e) {
        for (size_t i = 0; i < ARRAY_SIZE(skeleton_devices); i++)
                if (strcmp(e->path, skeleton_devices[i].path) == 0 &&
                    e->devmajor == skeleton_devices[i].major && e->devminor == skeleton_devices[i].minor)
                        return true;
        return false;
}

static int x_node(int pfd, const char *base, const entry *e, mode_t type, dev_t dev) {
        if (mknodat(pfd, base, type | (mode_t)(e->mode & 0777), dev) < 0)
                return negative_errno();
        if (fchownat(pfd, base, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW) < 0)
                return negative_errno();
        /* mknod applied the umask: the mode again, on the node itself */
        return fchmodat(pfd, base, (mode_t)(e->mode & 07777), 0) < 0 ? negative_errno() : 0;
}

static int x_hardlink(int rootfd, int pfd, const char *base, entry *e, nm_error *err) {
        _cleanup_close_ int src_parent = -EBADF;
        const char *src_base;
        struct stat st;
        int r = clean_path(e->link, err);
        if (r < 0)
                return r;
        src_parent = open_parent(rootfd, e->link, &src_base, err);
        if (src_parent < 0)
                return src_parent;
        if (fstatat(src_parent, src_base, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                return nm_error_set(err, -EBADMSG,
                                    "root archive: hard link '%s' to '%s', which is no regular file",
                                    e->path, e->link);
        return linkat(src_parent, src_base, pfd, base, 0) < 0 ? negative_errno() : 0;
}

static int x_entry(tar_reader *t, int rootfd, entry *e) {
        _cleanup_close_ int pfd = -EBADF;
        const char *base;
        int r;

        r = clean_path(e->path, t->err);
        if (r < 0)
                return r;
        pfd = open_parent(rootfd, e->path, &base, t->err);
        if (pfd < 0)
                return pfd;
        if (e->type != '0' && e->size != 0)
                return nm_error_set(t->err, -EBADMSG, "root archive: '%s' of type '%c' carries data",
                                    e->path, e->type);
        switch (e->type) {
        case '0': r = x_file(t, pfd, base, e); break;
        case '5': r = x_dir(pfd, base, e); break;
        case '2':
                if (!e->link[0])
                        return nm_error_set(t->err, -EBADMSG, "root archive: symlink '%s' without target",
                                            e->path);
                r = symlinkat(e->link, pfd, base) < 0 ? negative_errno() : 0;
                if (r >= 0 && fchownat(pfd, base, (uid_t)e->uid, (gid_t)e->gid, AT_SYMLINK_NOFOLLOW) < 0)
                        r = negative_errno();
                break;
        case '1': r = x_hardlink(rootfd, pfd, base, e, t->err); break;
        case '6': r = x_node(pfd, base, e, S_IFIFO, 0); break;
        case '3':
                if (!skeleton_device(e))
                        return nm_error_set(t->err, -EBADMSG,
                                            "root archive: refusing device node '%s' (%llu:%llu): only the "
                                            "skeleton's /dev/null, zero, full, random and urandom are made",
                                            e->path, (unsigned long long)e->devmajor,
                                            (unsigned long long)e->devminor);
                r = x_node(pfd, base, e, S_IFCHR, makedev(e->devmajor, e->devminor));
                break;
        default:
                return nm_error_set(t->err, -EBADMSG, "root archive: refusing entry '%s' of type '%c'",
                                    e->path, e->type);
        }
        if (r < 0 && t->err->code == 0)
                return nm_error_errno(t->err, r == -EEXIST ? -EBADMSG : r, "root archive: cannot make '%s'",
                                      e->path);
        if (r >= 0 && e->type == '0')
                r = r_skip_pad(t, e->size);
        return r;
}

int ckpt__tar_extract(int infd, int rootfd, nm_error *err) {
        _cleanup_free_ tar_reader *t = calloc(1, sizeof(*t));
        _cleanup_free_ entry *e = calloc(1, sizeof(*e));
        nm_error local = {};
        int r;

        if (!t || !e)
                return -ENOMEM;
        t->in = infd;
        t->err = err ? err : &local;
        for (unsigned n = 0;; n++) {
                if (n >= ENTRY_LIMIT)
                        return nm_error_set(t->err, -EBADMSG, "root archive: more than %d entries",
                                            ENTRY_LIMIT);
                *e = (entry){};
                r = r_entry(t, e);
                if (r <= 0)
                        return r;
                r = x_entry(t, rootfd, e);
                if (r < 0)
                        return r;
        }
}
