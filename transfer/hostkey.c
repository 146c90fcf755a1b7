/* SPDX-License-Identifier: Apache-2.0 */
/* Host-key policy: strict checking against one known_hosts file, as
 * OpenSSH's StrictHostKeyChecking=yes, or accept-new when asked. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "fs-util.h"
#include "macro.h"
#include "transfer-internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(LIBSSH2_KNOWNHOSTS *, libssh2_knownhost_free);

static void base64_nopad(const unsigned char *in, size_t n, char *out, size_t size) {
        /* EVP_EncodeBlock writes 4 bytes per 3, plus a NUL. */
        if (size < ((n + 2) / 3) * 4 + 1) {
                out[0] = '\0';
                return;
        }
        int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
        while (len > 0 && out[len - 1] == '=')
                out[--len] = '\0';
}

int xfer__fingerprint(LIBSSH2_SESSION *ssh, char *buf, size_t size) {
        const char *h = libssh2_hostkey_hash(ssh, LIBSSH2_HOSTKEY_HASH_SHA256);
        char b64[64];

        if (!h)
                return -ENODATA;
        base64_nopad((const unsigned char *)h, 32, b64, sizeof(b64));
        if ((size_t)snprintf(buf, size, "SHA256:%s", b64) >= size)
                return -ENOBUFS;
        return 0;
}

static const char *key_type_name(int type) {
        switch (type) {
        case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
        case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
        case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
        default: return NULL;
        }
}

static int key_type_mask(int type) {
        switch (type) {
        case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
        case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
        case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
        default: return -1;
        }
}

/* known_hosts names a non-default port as "[host]:port". */
static void host_spec(const char *host, uint16_t port, char *buf, size_t size) {
        if (port == 22)
                snprintf(buf, size, "%s", host);
        else
                snprintf(buf, size, "[%s]:%u", host, port);
}

/* Appends "<host> <type> <base64 key>" the way ssh-keyscan prints it, after
 * a newline if the file does not end with one. */
static int known_hosts_append(const char *path, const char *spec, const char *type, const char *key,
                              size_t len) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *line = NULL, *b64 = NULL;
        struct stat st;
        char last = '\n';
        int n;

        b64 = malloc(((len + 2) / 3) * 4 + 1);
        if (!b64)
                return -ENOMEM;
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)key, (int)len);
        fd = open_regular_at(AT_FDCWD, path, O_RDWR | O_APPEND | O_CREAT, 0600, &st);
        if (fd < 0)
                return fd;
        if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) != 1)
                return negative_errno();
        n = asprintf(&line, "%s%s %s %s\n", last == '\n' ? "" : "\n", spec, type, b64);
        if (n < 0)
                return -ENOMEM;
        int r = loop_write(fd, line, (size_t)n);
        if (r < 0)
                return r;
        return fsync(fd) < 0 ? negative_errno() : 0;
}

int xfer__hostkey_check(LIBSSH2_SESSION *ssh, const char *host, uint16_t port, const char *known_hosts,
                        bool accept_new, nm_error *err) {
        _cleanup_(libssh2_knownhost_freep) LIBSSH2_KNOWNHOSTS *kh = NULL;
        struct libssh2_knownhost *found = NULL;
        const char *key, *tname;
        char fp[128], spec[300];
        size_t len = 0;
        int type = 0, mask, r;

        key = libssh2_session_hostkey(ssh, &len, &type);
        if (!key)
                return nm_error_set(err, -EPROTO, "%s did not present a host key", host);
        r = xfer__fingerprint(ssh, fp, sizeof(fp));
        if (r < 0)
                return nm_error_errno(err, r, "cannot compute the host key fingerprint of %s", host);
        tname = key_type_name(type);
        mask = key_type_mask(type);
        if (!tname || mask < 0)
                return nm_error_set(err, -EPERM, "%s presented a host key of unknown type %d (%s)", host,
                                    type, fp);

        kh = libssh2_knownhost_init(ssh);
        if (!kh)
                return nm_error_set(err, -ENOMEM, "cannot allocate the known hosts list");
        if (access(known_hosts, F_OK) < 0) {
                if (errno != ENOENT || !accept_new)
                        return nm_error_errno(err, negative_errno(),
                                              "cannot read known hosts file %s; the host key of %s (%s %s) "
                                              "cannot be checked",
                                              known_hosts, host, tname, fp);
        } else if (libssh2_knownhost_readfile(kh, known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
                return nm_error_set(err, -EINVAL, "cannot parse known hosts file %s", known_hosts);
        }

        r = libssh2_knownhost_checkp(kh, host, port, key, len,
                                     LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | mask,
                                     &found);
        switch (r) {
        case LIBSSH2_KNOWNHOST_CHECK_MATCH: return 0;
        case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
                return nm_error_set(
                        err, -EPERM,
                        "host key verification failed: the %s key of %s port %u is %s, which does "
                        "not match the key recorded in %s (the host key changed, or someone is "
                        "intercepting the connection); refusing to connect",
                        tname, host, port, fp, known_hosts);
        case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
                if (!accept_new)
                        return nm_error_set(
                                err, -EPERM,
                                "host key verification failed: %s port %u is not in %s (its %s key "
                                "is %s); add the key to known_hosts after checking it, or allow "
                                "accept-new",
                                host, port, known_hosts, tname, fp);
                host_spec(host, port, spec, sizeof(spec));
                r = known_hosts_append(known_hosts, spec, tname, key, len);
                if (r < 0)
                        return nm_error_errno(err, r, "cannot add the host key of %s (%s) to %s", host, fp,
                                              known_hosts);
                return 0;
        case LIBSSH2_KNOWNHOST_CHECK_FAILURE:
        default:
                return nm_error_set(err, -EPERM, "cannot check the host key of %s (%s) against %s", host, fp,
                                    known_hosts);
        }
}
