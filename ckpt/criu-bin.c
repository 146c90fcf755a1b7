/* SPDX-License-Identifier: Apache-2.0 */
/* Which criu binary to run: trusted paths, ownership and mode checks, and a
 * version that works on current kernels. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"

#define VERSION_TIMEOUT_MS 5000
#define NOTES_MAX 1200

static const char *const trusted_paths[] = {
        "/usr/local/sbin/criu", "/usr/sbin/criu", "/usr/local/bin/criu", "/usr/bin/criu", NULL,
};

ckpt_criu *ckpt_criu_free(ckpt_criu *c) {
        if (!c)
                return NULL;
        free(c->path);
        free(c->version);
        free(c);
        return NULL;
}

static bool owner_ok(uid_t uid) {
        return uid == 0 || uid == geteuid();
}

/* Every directory from the binary up to / must be owned by root or us and
 * not writable by others (a sticky directory like /tmp aside), or someone
 * else could swap the binary under its trusted name. */
static int check_parents(const char *real, char *why, size_t size) {
        _cleanup_free_ char *dir = strdup(real);
        struct stat st;
        char *slash;

        if (!dir)
                return -ENOMEM;
        while ((slash = strrchr(dir, '/'))) {
                if (slash == dir)
                        slash[1] = '\0';
                else
                        *slash = '\0';
                if (stat(dir, &st) < 0) {
                        snprintf(why, size, "cannot stat %s: %m", dir);
                        return negative_errno();
                }
                if (!owner_ok(st.st_uid)) {
                        snprintf(why, size, "its directory %s is owned by uid %u", dir, (unsigned)st.st_uid);
                        return -EPERM;
                }
                if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
                        snprintf(why, size, "its directory %s is writable by group/others (mode %03o)", dir,
                                 (unsigned)(st.st_mode & 0777));
                        return -EPERM;
                }
                if (strcmp(dir, "/") == 0)
                        break;
        }
        return 0;
}

static int check_binary(const char *path, char **ret_real, char *why, size_t size) {
        _cleanup_free_ char *real = NULL;
        struct stat st;
        int r;

        if (path[0] != '/') {
                snprintf(why, size, "not an absolute path");
                return -EINVAL;
        }
        real = realpath(path, NULL);
        if (!real) {
                r = negative_errno();
                snprintf(why, size, "%s", r == -ENOENT ? "not found" : strerror(-r));
                return r;
        }
        if (stat(real, &st) < 0) {
                r = negative_errno();
                snprintf(why, size, "cannot stat: %s", strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                snprintf(why, size, "not a regular file");
                return -EBADFD;
        }
        if (st.st_mode & 022) {
                snprintf(why, size, "writable by group/others (mode %03o)", (unsigned)(st.st_mode & 0777));
                return -EPERM;
        }
        if (!(st.st_mode & 0111)) {
                snprintf(why, size, "not executable");
                return -EACCES;
        }
        if (!owner_ok(st.st_uid)) {
                snprintf(why, size, "owned by uid %u (expected root or uid %u)", (unsigned)st.st_uid,
                         (unsigned)geteuid());
                return -EPERM;
        }
        /* Both the name we were given and where it leads. */
        r = check_parents(path, why, size);
        if (r >= 0)
                r = check_parents(real, why, size);
        if (r < 0)
                return r;
        *ret_real = TAKE_PTR(real);
        return 0;
}

/* A decimal number at *p, at most max: no sign, no space, no overflow. */
static int parse_num(const char **p, unsigned max, unsigned *ret) {
        unsigned long v;
        char *end;

        if (**p < '0' || **p > '9')
                return -EBADMSG;
        errno = 0;
        v = strtoul(*p, &end, 10);
        if (errno || v > max)
                return -EBADMSG;
        *p = end;
        *ret = (unsigned)v;
        return 0;
}

int ckpt__criu_parse_version(const char *out, char **ret_version, unsigned *ret_num) {
        const char *line = out, *q;
        unsigned major, minor, sub = 0;

        while (line && strncmp(line, "Version:", 8) != 0) {
                line = strchr(line, '\n');
                if (line)
                        line++;
        }
        if (!line)
                return -EBADMSG;
        line += 8;
        while (*line == ' ' || *line == '\t')
                line++;
        q = line;
        if (parse_num(&q, 1000, &major) < 0 || *q++ != '.' || parse_num(&q, 99, &minor) < 0)
                return -EBADMSG;
        if (*q == '.') {
                q++;
                if (parse_num(&q, 99, &sub) < 0)
                        return -EBADMSG;
        }
        size_t len = strcspn(line, " \t\n");
        char *v = strndup(line, len);
        if (!v)
                return -ENOMEM;
        *ret_version = v;
        *ret_num = major * 10000 + minor * 100 + sub;
        return 0;
}

int ckpt__run_capture(const char *path, char *const argv[], unsigned timeout_ms, char *out, size_t size,
                      int *ret_status) {
        static char *const envp[] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C", NULL};
        posix_spawn_file_actions_t fa;
        int p[2], status = 0, r;
        size_t used = 0;
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
                return negative_errno();
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        posix_spawn_file_actions_adddup2(&fa, p[1], 2);
        r = posix_spawn(&pid, path, &fa, NULL, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        if (r != 0) {
                close(p[0]);
                return -r;
        }
        uint64_t deadline = ckpt__now_usec() + timeout_ms * 1000ull;
        for (;;) {
                uint64_t now = ckpt__now_usec();
                struct pollfd pfd = {.fd = p[0], .events = POLLIN};
                if (now >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                int k = poll(&pfd, 1, (int)((deadline - now) / 1000) + 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k == 0 ? -ETIMEDOUT : negative_errno();
                        break;
                }
                ssize_t n = read(p[0], out + used, size - 1 - used);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0 || (used += (size_t)n) >= size - 1) {
                        r = n < 0 ? negative_errno() : 0;
                        break;
                }
        }
        close(p[0]);
        out[used] = '\0';
        if (r < 0)
                (void)kill(pid, SIGKILL);
        /* Only our own child, by pid. */
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        *ret_status = status;
        return r;
}

/* Runs `<path> --version` with a clean environment and a timeout. */
static int run_version(const char *path, char *out, size_t size, char *why, size_t whysize) {
        char *const argv[] = {(char *)path, (char *)"--version", NULL};
        int status = 0, r;

        r = ckpt__run_capture(path, argv, VERSION_TIMEOUT_MS, out, size, &status);
        if (r == -ETIMEDOUT) {
                snprintf(why, whysize, "`--version` did not answer within %d s", VERSION_TIMEOUT_MS / 1000);
                return r;
        }
        if (r < 0) {
                snprintf(why, whysize, "cannot run it: %s", strerror(-r));
                return r;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                snprintf(why, whysize, "`--version` failed (status %d)", status);
                return -EIO;
        }
        return 0;
}

/* Checks one candidate; on success fills ret, else explains in why. */
static int try_candidate(const char *path, ckpt_criu **ret, char *why, size_t size) {
        _cleanup_(ckpt_criu_freep) ckpt_criu *c = NULL;
        char out[4096] = ""; /* a string on every path */
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = check_binary(path, &c->path, why, size);
        if (r < 0)
                return r;
        assert(c->path); /* check_binary sets it on success */
        r = run_version(c->path, out, sizeof(out), why, size);
        if (r < 0)
                return r;
        r = ckpt__criu_parse_version(out, &c->version, &c->version_num);
        if (r < 0) {
                snprintf(why, size, "no \"Version: X.Y\" line in its `--version` output");
                return r;
        }
        if (c->version_num < CKPT_CRIU_MIN_VERSION) {
                snprintf(why, size,
                         "version %s is older than %u.%u (3.17 fails on current kernels, 4.1 cannot "
                         "dump TCP/UDP sockets on Linux >= 6.16)",
                         c->version, CKPT_CRIU_MIN_VERSION / 10000, CKPT_CRIU_MIN_VERSION / 100 % 100);
                return -EPROTONOSUPPORT;
        }
        /* Keep the name we were given (the symlink, not its target): libcriu
         * runs this path, and it is what the operator knows. */
        free(c->path);
        c->path = strdup(path);
        if (!c->path)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

static void add_note(char *notes, const char *path, const char *why) {
        size_t used = strlen(notes);
        if (used < NOTES_MAX)
                snprintf(notes + used, NOTES_MAX - used, "%s%s: %s", used ? "; " : "", path, why);
}

int ckpt__criu_resolve_from(const char *const *candidates, const char *configured, ckpt_criu **ret,
                            nm_error *err) {
        char notes[NOTES_MAX] = "", why[512];
        int r;

        if (configured) {
                why[0] = '\0';
                r = try_candidate(configured, ret, why, sizeof(why));
                if (r < 0)
                        return nm_error_set(err, r, "refusing configured criu %s: %s", configured, why);
                return 0;
        }
        for (const char *const *p = candidates; *p; p++) {
                why[0] = '\0';
                r = try_candidate(*p, ret, why, sizeof(why));
                if (r >= 0)
                        return 0;
                if (r == -ENOMEM)
                        return r;
                if (r != -ENOENT)
                        add_note(notes, *p, why);
        }
        /* $PATH only for unprivileged callers: as root an environment could
         * otherwise point us at any binary. */
        const char *path = getenv("PATH");
        if (geteuid() != 0 && path) {
                _cleanup_free_ char *copy = strdup(path);
                char *save = NULL;
                if (!copy)
                        return -ENOMEM;
                for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                        char cand[PATH_MAX];
                        if (d[0] != '/' ||
                            (size_t)snprintf(cand, sizeof(cand), "%s/criu", d) >= sizeof(cand))
                                continue;
                        why[0] = '\0';
                        r = try_candidate(cand, ret, why, sizeof(why));
                        if (r >= 0)
                                return 0;
                        if (r != -ENOENT)
                                add_note(notes, cand, why);
                }
        }
        return nm_error_set(err, -ENOENT, "no usable criu >= %u.%u in the trusted paths (%s)%s%s",
                            CKPT_CRIU_MIN_VERSION / 10000, CKPT_CRIU_MIN_VERSION / 100 % 100,
                            "/usr/local/sbin, /usr/sbin, /usr/local/bin, /usr/bin",
                            notes[0] ? "; passed over: " : "", notes);
}

int ckpt_criu_resolve(const char *configured, ckpt_criu **ret, nm_error *err) {
        return ckpt__criu_resolve_from(trusted_paths, configured, ret, err);
}
