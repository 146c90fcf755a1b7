/* SPDX-License-Identifier: Apache-2.0 */
/* What CRIU says about this node: `criu check`, and the CPU's features as
 * CRIU records and compares them (`criu cpuinfo dump|check`). Blocking:
 * start-up and the thread pool only. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

#define NODE_TIMEOUT_MS 60000
#define CPUINFO_IMG "cpuinfo.img"
#define CPUINFO_MAX (64u << 10)

/* CRIU's error lines of out (its warnings are noise here), else its last
 * line: what an operator needs to see in a refusal. */
static void excerpt(const char *out, char *buf, size_t size) {
        const char *line = out, *last = NULL;
        size_t used = 0;

        buf[0] = '\0';
        while (line && *line) {
                const char *end = strchrnul(line, '\n');
                int len = (int)(end - line);
                if (len > 0)
                        last = line;
                if (len > 0 && strstr(line, "Error") && strstr(line, "Error") < end && used + 3 < size)
                        used += (size_t)snprintf(buf + used, size - used, "%s%.*s", used ? "; " : "", len,
                                                 line);
                line = *end ? end + 1 : NULL;
        }
        if (!buf[0] && last)
                snprintf(buf, size, "%.*s", (int)(strchrnul(last, '\n') - last), last);
        if (!buf[0])
                snprintf(buf, size, "no output");
}

/* Runs criu with args; 0 when it exited 0, else -EOPNOTSUPP with what it
 * said, or -errno when it could not run. */
static int run(const ckpt_criu *c, const char *what, char *const argv[], nm_error *err) {
        _cleanup_free_ char *out = malloc(16384);
        char ex[1024];
        int status = 0, r;

        if (!out)
                return -ENOMEM;
        r = ckpt__run_capture(c->path, argv, NODE_TIMEOUT_MS, out, 16384, &status);
        if (r == -ETIMEDOUT)
                return nm_error_set(err, r, "`%s %s` did not finish within %d s", c->path, what,
                                    NODE_TIMEOUT_MS / 1000);
        if (r < 0)
                return nm_error_errno(err, r, "cannot run `%s %s`", c->path, what);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        excerpt(out, ex, sizeof(ex));
        return nm_error_set(err, -EOPNOTSUPP, "`criu %s` fails (status %d): %s", what,
                            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), ex);
}

int ckpt_criu_check(const ckpt_criu *c, nm_error *err) {
        char *const argv[] = {c->path, (char *)"check", NULL};
        return run(c, "check", argv, err);
}

static int make_tmp(const char *parent, char dir[static PATH_MAX], nm_error *err) {
        if (snprintf(dir, PATH_MAX, "%s/cpuinfo.XXXXXX", parent) >= PATH_MAX)
                return nm_error_set(err, -ENAMETOOLONG, "%s: path too long", parent);
        if (!mkdtemp(dir))
                return nm_error_errno(err, negative_errno(), "cannot make a directory in %s", parent);
        return 0;
}

static void remove_tmp(const char *dir) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/" CPUINFO_IMG, dir);
        (void)unlink(path);
        (void)rmdir(dir);
}

int ckpt_cpuinfo_dump(const ckpt_criu *c, const char *tmp_parent, uint8_t **ret, size_t *ret_len,
                      nm_error *err) {
        char dir[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r;

        r = make_tmp(tmp_parent, dir, err);
        if (r < 0)
                return r;
        char *const argv[] = {c->path, (char *)"cpuinfo", (char *)"dump", (char *)"-D", dir, NULL};
        r = run(c, "cpuinfo dump", argv, err);
        if (r >= 0) {
                _cleanup_close_ int dfd = open_dir_nofollow(dir);
                r = dfd < 0 ? dfd : read_file_at(dfd, CPUINFO_IMG, CPUINFO_MAX, &text, &len);
                if (r < 0)
                        nm_error_errno(err, r, "cannot read what `criu cpuinfo dump` wrote");
                else if (len == 0)
                        r = nm_error_set(err, -EIO, "`criu cpuinfo dump` wrote an empty image");
        }
        remove_tmp(dir);
        if (r < 0)
                return r;
        *ret = (uint8_t *)TAKE_PTR(text);
        *ret_len = len;
        return 0;
}

int ckpt_cpuinfo_check(const ckpt_criu *c, const char *tmp_parent, const uint8_t *img, size_t len,
                       nm_error *err) {
        char dir[PATH_MAX];
        int r;

        r = make_tmp(tmp_parent, dir, err);
        if (r < 0)
                return r;
        {
                _cleanup_close_ int dfd = open_dir_nofollow(dir);
                r = dfd < 0 ? dfd : write_file_atomic_at(dfd, CPUINFO_IMG, img, len, 0600);
        }
        if (r < 0) {
                remove_tmp(dir);
                return nm_error_errno(err, r, "cannot write the source's CPU image into %s", dir);
        }
        /* Instructions the tasks may use, and the FPU state layout CRIU
         * restores: what a task needs from the CPU it wakes up on. */
        char *const argv[] = {
                c->path, (char *)"cpuinfo", (char *)"check", (char *)"-D", dir, (char *)"--cpu-cap=fpu,ins",
                NULL};
        r = run(c, "cpuinfo check", argv, err);
        remove_tmp(dir);
        return r;
}
