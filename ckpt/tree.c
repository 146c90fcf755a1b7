/* SPDX-License-Identifier: Apache-2.0 */
/* The canonical walk of a checkpoint directory, hashing it, signing and
 * verifying checkpoint.hmac. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "fs-util.h"

#define HASH_BUF_SIZE (256 * 1024)

/* Called for every entry in canonical order. parent_fd/name locate it. */
typedef int (*walk_fn)(void *userdata, ckpt_entry_type type, const char *relpath, int parent_fd,
                       const char *name, const struct stat *st, nm_error *err);

static int cmp_names(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

/* The names in a directory, sorted bytewise, without "." and "..". */
static int read_names(int dfd, bool top, char ***ret, size_t *ret_n, nm_error *err) {
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d;

        if (fd < 0)
                return nm_error_errno(err, negative_errno(), "cannot open checkpoint directory");
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return nm_error_errno(err, negative_errno(), "cannot read checkpoint directory");
        }
        errno = 0;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                /* Only the top-level checkpoint.hmac is outside the tree,
                 * whatever its type: nucleus skips it by name. */
                if (top && strcmp(de->d_name, CKPT_HMAC_FILE) == 0)
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 32;
                        char **nn = realloc(names, ncap * sizeof(char *));
                        if (!nn)
                                goto oom;
                        names = nn;
                        cap = ncap;
                }
                names[n] = strdup(de->d_name);
                if (!names[n])
                        goto oom;
                n++;
                errno = 0;
        }
        if (errno != 0) {
                int r = negative_errno();
                closedir(d);
                names_free(names, n);
                return nm_error_errno(err, r, "cannot read checkpoint directory");
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(char *), cmp_names);
        *ret = names;
        *ret_n = n;
        return 0;
oom:
        closedir(d);
        names_free(names, n);
        return -ENOMEM;
}

static int walk_dir(int dfd, const char *prefix, unsigned depth, walk_fn fn, void *userdata, nm_error *err) {
        char **names = NULL;
        size_t n = 0;
        int r;

        if (depth > CKPT_TREE_MAX_DEPTH)
                return nm_error_set(err, -ELOOP, "checkpoint tree is nested deeper than %d levels at '%s'",
                                    CKPT_TREE_MAX_DEPTH, prefix);
        r = read_names(dfd, depth == 0, &names, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++) {
                char relpath[CKPT_TREE_MAX_PATH];
                struct stat st;

                if ((size_t)snprintf(relpath, sizeof(relpath), "%s%s%s", prefix, prefix[0] ? "/" : "",
                                     names[i]) >= sizeof(relpath)) {
                        r = nm_error_set(err, -ENAMETOOLONG, "path too long in checkpoint tree below '%s'",
                                         prefix);
                        break;
                }
                if (ckpt_relpath_check(relpath, NULL) < 0) {
                        /* Nucleus hashes names as UTF-8 strings; it could
                         * never verify a tree with such a name. */
                        r = nm_error_set(err, -EILSEQ, "checkpoint tree refuses name '%s' (not valid UTF-8)",
                                         relpath);
                        break;
                }
                if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        r = nm_error_errno(err, negative_errno(), "cannot stat '%s' in checkpoint tree",
                                           relpath);
                        break;
                }
                if (S_ISLNK(st.st_mode)) {
                        r = nm_error_set(err, -ELOOP, "checkpoint tree refuses symlink '%s'", relpath);
                } else if (S_ISDIR(st.st_mode)) {
                        r = fn(userdata, CKPT_ENTRY_DIR, relpath, dfd, names[i], &st, err);
                        if (r < 0)
                                break;
                        int sub = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub < 0) {
                                r = nm_error_errno(err, negative_errno(), "cannot open directory '%s'",
                                                   relpath);
                                break;
                        }
                        r = walk_dir(sub, relpath, depth + 1, fn, userdata, err);
                        close(sub);
                } else if (S_ISREG(st.st_mode)) {
                        r = fn(userdata, CKPT_ENTRY_FILE, relpath, dfd, names[i], &st, err);
                } else {
                        r = nm_error_set(err, -EBADFD, "checkpoint tree refuses special file '%s'", relpath);
                }
        }
        names_free(names, n);
        return r;
}

typedef struct entry_list {
        ckpt_tree_entry *e;
        size_t n, cap;
} entry_list;

static int list_add(void *userdata, ckpt_entry_type type, const char *relpath, int parent_fd,
                    const char *name, const struct stat *st, nm_error *err) {
        entry_list *l = userdata;
        (void)parent_fd;
        (void)name;
        (void)err;
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 64;
                ckpt_tree_entry *ne = realloc(l->e, ncap * sizeof(*ne));
                if (!ne)
                        return -ENOMEM;
                l->e = ne;
                l->cap = ncap;
        }
        char *p = strdup(relpath);
        if (!p)
                return -ENOMEM;
        l->e[l->n++] = (ckpt_tree_entry){
                .type = type,
                .relpath = p,
                .size = type == CKPT_ENTRY_FILE ? (uint64_t)st->st_size : 0,
        };
        return 0;
}

int ckpt_tree_walk(int dirfd, ckpt_tree_entry **ret, size_t *ret_n, nm_error *err) {
        entry_list l = {};
        int r = walk_dir(dirfd, "", 0, list_add, &l, err);
        if (r < 0) {
                ckpt_tree_entries_free(l.e, l.n);
                return r;
        }
        *ret = l.e;
        *ret_n = l.n;
        return 0;
}

void ckpt_tree_entries_free(ckpt_tree_entry *e, size_t n) {
        for (size_t i = 0; i < n && e; i++)
                free(e[i].relpath);
        free(e);
}

uint64_t ckpt_tree_bytes(const ckpt_tree_entry *e, size_t n) {
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++)
                if (e[i].type == CKPT_ENTRY_FILE)
                        sum += e[i].size;
        return sum;
}

int ckpt_tree_open_file(int dirfd, const char *relpath, uint64_t expected_size, nm_error *err) {
        _cleanup_free_ char *dir = NULL;
        _cleanup_close_ int pfd = -EBADF, fd = -EBADF;
        const char *slash, *base;
        struct stat st;
        int r;

        r = ckpt_relpath_check(relpath, err);
        if (r < 0)
                return r;
        slash = strrchr(relpath, '/');
        base = slash ? slash + 1 : relpath;
        if (slash) {
                dir = strndup(relpath, (size_t)(slash - relpath));
                if (!dir)
                        return -ENOMEM;
                pfd = openat_dir_beneath(dirfd, dir);
                if (pfd < 0)
                        return nm_error_errno(err, pfd, "cannot open directory of '%s' in checkpoint",
                                              relpath);
        }
        fd = open_regular_at(slash ? pfd : dirfd, base, O_RDONLY, 0, &st);
        if (fd == -EBADFD)
                return nm_error_set(err, fd, "'%s' in checkpoint is not a regular file", relpath);
        if (fd < 0)
                return nm_error_errno(err, fd, "cannot open '%s' in checkpoint", relpath);
        if (expected_size != UINT64_MAX && (uint64_t)st.st_size != expected_size)
                return nm_error_set(err, -EBUSY, "'%s' changed size (%llu bytes, expected %llu)", relpath,
                                    (unsigned long long)st.st_size, (unsigned long long)expected_size);
        return TAKE_FD(fd);
}

typedef struct hash_walk {
        ckpt_hmac *h;
        uint8_t *buf;
} hash_walk;

/* Hashes a file with the size of the opened file, and refuses a file that
 * grows or shrinks while it is read: the record's size must be its bytes. */
static int hash_entry(void *userdata, ckpt_entry_type type, const char *relpath, int parent_fd,
                      const char *name, const struct stat *lst, nm_error *err) {
        hash_walk *w = userdata;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        uint64_t left;
        (void)lst;

        if (type == CKPT_ENTRY_DIR)
                return ckpt_hmac_dir(w->h, relpath, err);
        fd = open_regular_at(parent_fd, name, O_RDONLY, 0, &st);
        if (fd == -EBADFD)
                return nm_error_set(err, fd, "checkpoint tree refuses special file '%s'", relpath);
        if (fd < 0)
                return nm_error_errno(err, fd, "cannot open '%s' in checkpoint tree", relpath);
        left = (uint64_t)st.st_size;
        int r = ckpt_hmac_file_begin(w->h, relpath, left, err);
        if (r < 0)
                return r;
        while (left > 0) {
                size_t want = left < HASH_BUF_SIZE ? (size_t)left : HASH_BUF_SIZE;
                ssize_t n = loop_read(fd, w->buf, want);
                if (n < 0)
                        return nm_error_errno(err, (int)n, "cannot read '%s'", relpath);
                if (n == 0)
                        return nm_error_set(err, -EBUSY, "'%s' shrank while it was hashed", relpath);
                r = ckpt_hmac_update(w->h, w->buf, (size_t)n, err);
                if (r < 0)
                        return r;
                left -= (uint64_t)n;
        }
        if (loop_read(fd, w->buf, 1) != 0)
                return nm_error_set(err, -EBUSY, "'%s' grew while it was hashed", relpath);
        return 0;
}

int ckpt_hmac_tree(int dirfd, const void *key, size_t key_len, char ret_hex[static CKPT_HMAC_HEX_LEN + 1],
                   nm_error *err) {
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h = NULL;
        _cleanup_free_ uint8_t *buf = io_buf_alloc(HASH_BUF_SIZE);
        hash_walk w;
        int r;

        if (!buf)
                return -ENOMEM;
        r = ckpt_hmac_new(key, key_len, &h);
        if (r < 0)
                return nm_error_errno(err, r, "cannot set up HMAC-SHA256");
        w = (hash_walk){.h = h, .buf = buf};
        r = walk_dir(dirfd, "", 0, hash_entry, &w, err);
        if (r < 0)
                return r;
        return ckpt_hmac_final(h, ret_hex, err);
}

typedef enum sign_write {
        SIGN_REPLACE,  /* a new file renamed over the old one */
        SIGN_IN_PLACE, /* the old file's bytes overwritten */
} sign_write;

static int sign_tree(int dirfd, const void *key, size_t key_len, sign_write how, char *ret_hex,
                     nm_error *err) {
        char hex[CKPT_HMAC_HEX_LEN + 1];
        int r;

        /* A stale temp file would be hashed as part of the tree; unlinkat
         * removes a symlink there without following it. */
        if (unlinkat(dirfd, CKPT_HMAC_FILE ".tmp", 0) < 0 && errno != ENOENT)
                return nm_error_errno(err, negative_errno(), "cannot remove stale %s.tmp", CKPT_HMAC_FILE);
        r = ckpt_hmac_tree(dirfd, key, key_len, hex, err);
        if (r < 0)
                return r;
        r = how == SIGN_IN_PLACE ? write_file_in_place_at(dirfd, CKPT_HMAC_FILE, hex, CKPT_HMAC_HEX_LEN)
                                 : -ENOENT;
        if (r == -ENOENT)
                r = write_file_atomic_at(dirfd, CKPT_HMAC_FILE, hex, CKPT_HMAC_HEX_LEN, 0600);
        if (r < 0)
                return nm_error_errno(err, r, "cannot write %s", CKPT_HMAC_FILE);
        if (ret_hex)
                memcpy(ret_hex, hex, sizeof(hex));
        return 0;
}

int ckpt_sign_at(int dirfd, const void *key, size_t key_len, char *ret_hex, nm_error *err) {
        return sign_tree(dirfd, key, key_len, SIGN_REPLACE, ret_hex, err);
}

int ckpt_sign_in_place_at(int dirfd, const void *key, size_t key_len, char *ret_hex, nm_error *err) {
        return sign_tree(dirfd, key, key_len, SIGN_IN_PLACE, ret_hex, err);
}

/* A tree the walk refuses (symlink, special file, bad name, a file changing
 * under us) cannot be a signed checkpoint: for the verifier that is an
 * integrity failure like a mismatch. */
static bool tree_refusal_is_integrity(int r) {
        return r == -ELOOP || r == -EBADFD || r == -EILSEQ || r == -ENAMETOOLONG || r == -EBUSY ||
               r == -EBADMSG;
}

static int integrity_error(nm_error *err) {
        if (err)
                err->code = -EBADMSG;
        return -EBADMSG;
}

int ckpt_verify_at(int dirfd, const void *key, size_t key_len, char *ret_hex, nm_error *err) {
        _cleanup_free_ char *text = NULL;
        char hex[CKPT_HMAC_HEX_LEN + 1];
        size_t len = 0;
        int r;

        r = read_file_at(dirfd, CKPT_HMAC_FILE, 4096, &text, &len);
        if (r == -ENOENT)
                return nm_error_set(err, -EBADMSG, "checkpoint is not signed: %s is missing",
                                    CKPT_HMAC_FILE);
        if (r < 0)
                return nm_error_errno(err, r == -ELOOP ? -EBADMSG : r, "cannot read %s", CKPT_HMAC_FILE);
        r = ckpt_hmac_tree(dirfd, key, key_len, hex, err);
        if (r < 0)
                return tree_refusal_is_integrity(r) ? integrity_error(err) : r;
        if (ret_hex)
                memcpy(ret_hex, hex, sizeof(hex));
        return ckpt_hmac_compare(text, len, hex, err);
}

int ckpt_sign(const char *dir, char *ret_hex, nm_error *err) {
        _cleanup_close_ int dfd = -EBADF;
        uint8_t *key = NULL;
        size_t key_len = 0;
        int r;

        r = ckpt_key_load(NULL, &key, &key_len, err);
        if (r < 0)
                return r;
        dfd = open_dir_nofollow(dir);
        if (dfd < 0)
                r = nm_error_errno(err, dfd, "cannot open checkpoint directory %s", dir);
        else
                r = ckpt_sign_at(dfd, key, key_len, ret_hex, err);
        ckpt_key_free(key, key_len);
        return r;
}
