/* SPDX-License-Identifier: Apache-2.0 */
/* The checkpoint HMAC key file, with nucleus's rules (see ckpt-format.h). */
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "fs-util.h"

#define KEY_NEW_LEN 32

int ckpt_key_path(char **ret) {
        const char *env = getenv(CKPT_KEY_ENV), *xdg, *home;
        char *p = NULL;

        if (env && env[0])
                p = strdup(env);
        else if (geteuid() == 0)
                p = strdup(CKPT_KEY_PATH_ROOT);
        else if ((xdg = getenv("XDG_DATA_HOME")) && xdg[0] == '/')
                (void)!asprintf(&p, "%s/nucleus/checkpoint-hmac.key", xdg);
        else if ((home = getenv("HOME")) && home[0] == '/')
                (void)!asprintf(&p, "%s/.local/share/nucleus/checkpoint-hmac.key", home);
        else
                p = strdup("/tmp/nucleus-checkpoint-hmac.key");
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

void ckpt_key_free(uint8_t *key, size_t len) {
        if (!key)
                return;
        OPENSSL_cleanse(key, len);
        free(key);
}

/* Opens (or creates 0700) the key's directory and checks it on the open fd,
 * so that what was checked is what is used. */
static int open_key_dir(const char *dir, ckpt_key_missing missing, nm_error *err) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        fd = open_dir_nofollow(dir);
        if (fd == -ENOENT && missing == CKPT_KEY_CREATE) {
                fd = mkdir_p_secure(dir, 0700);
                if (fd < 0)
                        return nm_error_errno(err, fd, "cannot create checkpoint HMAC key directory %s",
                                              dir);
        }
        if (fd == -ENOENT)
                return fd; /* the caller says what to do */
        if (fd == -ELOOP)
                return nm_error_set(
                        err, -ELOOP,
                        "refusing symlink checkpoint HMAC key directory %s; use a real directory", dir);
        if (fd == -ENOTDIR)
                return nm_error_set(err, -ENOTDIR, "checkpoint HMAC key directory %s is not a directory",
                                    dir);
        if (fd < 0)
                return nm_error_errno(err, fd, "cannot open checkpoint HMAC key directory %s", dir);
        if (fstat(fd, &st) < 0)
                return nm_error_errno(err, negative_errno(), "cannot stat %s", dir);
        if (st.st_uid != geteuid())
                return nm_error_set(err, -EPERM,
                                    "checkpoint HMAC key directory %s is owned by uid %u (expected %u); "
                                    "fix with: chown %u %s",
                                    dir, (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), dir);
        if (st.st_mode & 077)
                return nm_error_set(err, -EPERM,
                                    "checkpoint HMAC key directory %s has insecure mode %03o; "
                                    "fix with: chmod 700 %s",
                                    dir, (unsigned)(st.st_mode & 0777), dir);
        return TAKE_FD(fd);
}

static int random_bytes(uint8_t *buf, size_t len, nm_error *err) {
        _cleanup_close_ int fd = open("/dev/urandom", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        ssize_t n;

        if (fd < 0)
                return nm_error_errno(err, negative_errno(), "cannot open /dev/urandom for a new HMAC key");
        if (fstat(fd, &st) < 0)
                return nm_error_errno(err, negative_errno(), "cannot stat /dev/urandom");
        if (!S_ISCHR(st.st_mode))
                return nm_error_set(err, -EBADFD, "/dev/urandom is not a character device; refusing it");
        n = loop_read(fd, buf, len);
        if (n < 0)
                return nm_error_errno(err, (int)n, "cannot read /dev/urandom");
        if ((size_t)n != len)
                return nm_error_set(err, -EIO, "short read from /dev/urandom");
        return 0;
}

static int create_key(int dfd, const char *base, const char *path, uint8_t **ret_key, size_t *ret_len,
                      nm_error *err) {
        _cleanup_close_ int fd = -EBADF;
        uint8_t *key = malloc(KEY_NEW_LEN);
        int r;

        if (!key)
                return -ENOMEM;
        r = random_bytes(key, KEY_NEW_LEN, err);
        if (r < 0)
                goto fail;
        fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                r = negative_errno();
                if (r != -EEXIST)
                        nm_error_errno(err, r, "cannot create checkpoint HMAC key %s", path);
                goto fail;
        }
        r = loop_write(fd, key, KEY_NEW_LEN);
        if (r >= 0 && fsync(fd) < 0)
                r = negative_errno();
        if (r >= 0 && fsync(dfd) < 0)
                r = negative_errno();
        if (r < 0) {
                nm_error_errno(err, r, "cannot write checkpoint HMAC key %s", path);
                (void)unlinkat(dfd, base, 0);
                goto fail;
        }
        *ret_key = key;
        *ret_len = KEY_NEW_LEN;
        return 0;
fail:
        ckpt_key_free(key, KEY_NEW_LEN);
        return r;
}

static int read_key(int fd, const char *path, uint8_t **ret_key, size_t *ret_len, nm_error *err) {
        uint8_t *key;
        struct stat st;
        ssize_t n;

        if (fstat(fd, &st) < 0)
                return nm_error_errno(err, negative_errno(), "cannot stat checkpoint HMAC key %s", path);
        if (!S_ISREG(st.st_mode))
                return nm_error_set(err, -EBADFD, "checkpoint HMAC key %s is not a regular file", path);
        if (st.st_uid != geteuid())
                return nm_error_set(
                        err, -EPERM,
                        "checkpoint HMAC key %s is owned by uid %u (expected %u); fix with: chown %u %s",
                        path, (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), path);
        if (st.st_mode & 077)
                return nm_error_set(err, -EPERM,
                                    "checkpoint HMAC key %s has insecure mode %03o; fix with: chmod 600 %s",
                                    path, (unsigned)(st.st_mode & 0777), path);
        key = malloc(CKPT_KEY_MAX_LEN + 1);
        if (!key)
                return -ENOMEM;
        n = loop_read(fd, key, CKPT_KEY_MAX_LEN + 1);
        if (n < 0) {
                ckpt_key_free(key, CKPT_KEY_MAX_LEN + 1);
                return nm_error_errno(err, (int)n, "cannot read checkpoint HMAC key %s", path);
        }
        if (n > CKPT_KEY_MAX_LEN || n < CKPT_KEY_MIN_LEN) {
                ckpt_key_free(key, CKPT_KEY_MAX_LEN + 1);
                if (n > CKPT_KEY_MAX_LEN)
                        return nm_error_set(err, -EFBIG, "checkpoint HMAC key %s is larger than %d bytes",
                                            path, CKPT_KEY_MAX_LEN);
                return nm_error_set(err, -EINVAL,
                                    "checkpoint HMAC key %s is too short (%zd bytes, at least %d needed); "
                                    "replace it with e.g.: head -c 32 /dev/urandom > %s",
                                    path, n, CKPT_KEY_MIN_LEN, path);
        }
        *ret_key = key;
        *ret_len = (size_t)n;
        return 0;
}

static int key_missing(const char *path, nm_error *err) {
        return nm_error_set(err, -ENOENT,
                            "checkpoint HMAC key %s does not exist; every node of a cluster must hold the "
                            "same key, so none is made here: install the cluster's key with "
                            "`nucleus-provision hmac-key --print | ssh root@THIS-NODE nucleus-provision "
                            "hmac-key --install -` run on a node that has it (or `nucleus-provision "
                            "hmac-key --generate` on the first node of a new cluster)",
                            path);
}

int ckpt_key_load_mode(const char *path, ckpt_key_missing missing, uint8_t **ret_key, size_t *ret_len,
                       nm_error *err) {
        _cleanup_free_ char *own = NULL, *dcopy = NULL, *bcopy = NULL;
        _cleanup_close_ int dfd = -EBADF;
        const char *dir, *base;
        int r;

        if (!path) {
                r = ckpt_key_path(&own);
                if (r < 0)
                        return r;
                path = own;
        }
        dcopy = strdup(path);
        bcopy = strdup(path);
        if (!dcopy || !bcopy)
                return -ENOMEM;
        dir = dirname(dcopy);
        base = basename(bcopy);
        if (!base[0] || strcmp(base, "/") == 0 || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
                return nm_error_set(err, -EINVAL, "checkpoint HMAC key path '%s' names no file", path);
        dfd = open_key_dir(dir, missing, err);
        if (dfd == -ENOENT)
                return key_missing(path, err);
        if (dfd < 0)
                return dfd;
        /* Two tries: another process may create the key between our open
         * and our O_EXCL create; then we read the one it wrote. */
        for (int attempt = 0; attempt < 2; attempt++) {
                _cleanup_close_ int fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
                if (fd >= 0)
                        return read_key(fd, path, ret_key, ret_len, err);
                if (errno == ELOOP)
                        return nm_error_set(err, -ELOOP, "refusing symlink checkpoint HMAC key %s", path);
                if (errno != ENOENT)
                        return nm_error_errno(err, negative_errno(), "cannot open checkpoint HMAC key %s",
                                              path);
                if (missing == CKPT_KEY_REFUSE)
                        return key_missing(path, err);
                r = create_key(dfd, base, path, ret_key, ret_len, err);
                if (r != -EEXIST)
                        return r;
        }
        return nm_error_set(err, -EBUSY, "checkpoint HMAC key %s keeps changing", path);
}

int ckpt_key_load(const char *path, uint8_t **ret_key, size_t *ret_len, nm_error *err) {
        return ckpt_key_load_mode(path, CKPT_KEY_CREATE, ret_key, ret_len, err);
}

/* Not the key's hash: a MAC under the key of a message no tree record
 * stream can begin with (those begin with "D\0" or "F\0"), so the identity
 * is no tag any checkpoint could carry, and tells nothing about the key. */
#define KEY_IDENTITY_DOMAIN "nucleus-migrate key identity v1"

int ckpt_key_identity(const uint8_t *key, size_t len, char ret_hex[static CKPT_HMAC_HEX_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";
        uint8_t mac[CKPT_HMAC_HEX_LEN / 2];
        size_t n = 0;

        if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, len, (const uint8_t *)KEY_IDENTITY_DOMAIN,
                       strlen(KEY_IDENTITY_DOMAIN), mac, sizeof(mac), &n) ||
            n != sizeof(mac))
                return -EIO;
        for (size_t i = 0; i < sizeof(mac); i++) {
                ret_hex[2 * i] = hex[mac[i] >> 4];
                ret_hex[2 * i + 1] = hex[mac[i] & 15];
        }
        ret_hex[CKPT_HMAC_HEX_LEN] = '\0';
        return 0;
}
