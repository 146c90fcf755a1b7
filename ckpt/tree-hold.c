/* SPDX-License-Identifier: Apache-2.0 */
/* Whether a tree may be held stopped on the source while its copy is
 * restored (see ckpt_tree_holdable in ckpt.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"
#include "macro.h"

/* Unix98 pty slaves (136-143) and /dev/ptmx (5:2), /dev/tty (5:0), the
 * console (5:1) and the virtual consoles (4): an index that a copy on the
 * same kernel must get back while the original still holds it. */
static bool is_terminal(dev_t rdev) {
        unsigned ma = major(rdev), mi = minor(rdev);
        return (ma >= 136 && ma <= 143) || (ma == 5 && mi <= 2) || ma == 4;
}

/* What in one fd keeps a copy from being restored beside the original;
 * NULL when nothing does. A fd that is gone by now holds nothing. */
static const char *fd_blocker(pid_t pid, const char *fd) {
        _cleanup_free_ char *info = NULL;
        char path[96];
        struct stat st;

        snprintf(path, sizeof(path), "/proc/%d/fd/%s", (int)pid, fd);
        if (stat(path, &st) == 0 && S_ISCHR(st.st_mode) && is_terminal(st.st_rdev))
                return "a terminal";
        snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", (int)pid, fd);
        if (read_file_at(AT_FDCWD, path, 64 * 1024, &info, NULL) >= 0 &&
            (strncmp(info, "lock:", 5) == 0 || strstr(info, "\nlock:")))
                return "a file lock";
        return NULL;
}

static int task_blocker(pid_t pid, char *why, size_t n) {
        _cleanup_free_ char *stat = NULL;
        char path[64];
        long long tty = 0;
        struct dirent *de;
        DIR *d;

        /* Field 7: the controlling terminal, with or without a fd on it. */
        if (ckpt__proc_read(pid, "stat", &stat, NULL) == 0 && ckpt__stat_field(stat, 7, &tty) == 0 &&
            tty != 0) {
                snprintf(why, n, "process %d has a controlling terminal", (int)pid);
                return 0;
        }
        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        d = opendir(path);
        if (!d)
                return errno == ENOENT ? 1 : -errno;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                const char *what = fd_blocker(pid, de->d_name);
                if (what) {
                        snprintf(why, n, "process %d holds %s (fd %s)", (int)pid, what, de->d_name);
                        closedir(d);
                        return 0;
                }
        }
        closedir(d);
        return 1;
}

int ckpt_tree_holdable(pid_t root, char *why, size_t n) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t npids = 0;
        int r;

        if (ckpt__same_ns(root, "pid")) {
                snprintf(why, n, "it shares this node's pid namespace: its copy needs the same pids");
                return 0;
        }
        r = ckpt_tree_pids(root, &pids, &npids);
        if (r < 0)
                return r;
        for (size_t i = 0; i < npids; i++) {
                r = task_blocker(pids[i], why, n);
                if (r <= 0)
                        return r;
        }
        return 1;
}
