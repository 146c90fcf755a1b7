/* SPDX-License-Identifier: Apache-2.0 */
/* systemd's two datagram protocols, spoken directly (no libsystemd): the
 * service manager's notification socket ($NOTIFY_SOCKET) and the journal's
 * native socket. Both are documented interfaces: sd_notify(3) and
 * systemd.journal-fields(7) / the journal's native protocol. */
#include "sd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

/* The project's tests listen on a socket of their own. */
static const char *journal_socket(void) {
        const char *p = getenv("NM_JOURNAL_SOCKET");
        return p && *p ? p : JOURNAL_SOCKET;
}

static int unix_dgram_send(const char *path, const void *buf, size_t len) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t n = strlen(path);
        socklen_t salen;
        int fd, r = 0;

        if (n == 0 || n >= sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, path, n);
        if (sa.sun_path[0] == '@') /* an abstract socket */
                sa.sun_path[0] = '\0';
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (sendto(fd, buf, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
                r = negative_errno();
        close(fd);
        return r;
}

int sd_notify_send(const char *state) {
        const char *path = getenv("NOTIFY_SOCKET");
        if (!path || !*path)
                return 0;
        return unix_dgram_send(path, state, strlen(state));
}

uint64_t sd_watchdog_usec(void) {
        const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
        char *end;

        if (!usec)
                return 0;
        if (pid && strtol(pid, &end, 10) != (long)getpid())
                return 0;
        errno = 0;
        unsigned long long v = strtoull(usec, &end, 10);
        return errno || *end || v == 0 ? 0 : v;
}

bool sd_journal_wanted(void) {
        /* Our stderr goes to the journal (systemd says so) and its native
         * socket is there: fields, not text. */
        return getenv("JOURNAL_STREAM") && access(journal_socket(), W_OK) == 0;
}

/* Appends "KEY=value\n"; a value with a newline goes in the binary form
 * (KEY\n, little-endian 64-bit length, value, \n). */
static void field(char *buf, size_t size, size_t *len, const char *key, const char *value) {
        size_t k = strlen(key), v = strlen(value);
        if (!strchr(value, '\n')) {
                if (*len + k + v + 2 >= size) /* and snprintf's NUL */
                        return;
                *len += (size_t)snprintf(buf + *len, size - *len, "%s=%s\n", key, value);
                return;
        }
        if (*len + k + 1 + 8 + v + 1 > size)
                return;
        /* Bytes, not a string: the record is no C string. */
        for (size_t i = 0; i < k; i++)
                buf[(*len)++] = key[i];
        buf[(*len)++] = '\n';
        for (int i = 0; i < 8; i++)
                buf[(*len)++] = (char)((uint64_t)v >> (8 * i));
        for (size_t i = 0; i < v; i++)
                buf[(*len)++] = value[i];
        buf[(*len)++] = '\n';
}

size_t sd_journal_format(char *buf, size_t size, const char *const *kv, size_t n) {
        size_t len = 0;
        for (size_t i = 0; i + 1 < n; i += 2)
                if (kv[i] && kv[i + 1])
                        field(buf, size, &len, kv[i], kv[i + 1]);
        return len;
}

int sd_journal_send_fields(const char *const *kv, size_t n) {
        char buf[16384];
        return unix_dgram_send(journal_socket(), buf, sd_journal_format(buf, sizeof(buf), kv, n));
}
