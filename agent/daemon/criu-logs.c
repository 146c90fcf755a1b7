/* SPDX-License-Identifier: Apache-2.0 */
/* CRIU's logs (its work directories, outside the signed trees) of
 * migrations that ended: kept for a post-mortem, then removed, so that a
 * node that moves containers for months does not fill its disk. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>

#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "mig.h"

/* CRIU's logs of a migration that ended: kept this long for a post-mortem,
 * then they go, so that a node that moves containers for months does not
 * fill its disk with them. */
#define CRIU_LOGS_KEEP_S (14 * 24 * 3600)

/* The migration a CRIU work directory belongs to: its name up to the first
 * '-' ("<id>-dump", "<id>-restore", "<id>-rollback-<n>"). */
static bool criu_dir_active(agent *a, const char *name) {
        char id[64];
        size_t n = strcspn(name, "-");
        mig *m;

        if (n == 0 || n >= sizeof(id))
                return false;
        memcpy(id, name, n);
        id[n] = '\0';
        m = mig_find(a, id);
        return m && !m->finished;
}

/* A native restore mounts the container's root tmpfs at <dir>/root and
 * detaches that view once CRIU is done; an agent that died in between left
 * it mounted (and its directory unremovable). */
static void unmount_restore_root(agent *a, int fd, const char *name) {
        static const char suffix[] = "-restore";
        size_t n = strlen(name);
        struct stat dir_st, root_st;
        char path[PATH_MAX];
        unsigned k = 0;

        if (n <= strlen(suffix) || strcmp(name + n - strlen(suffix), suffix) != 0)
                return;
        if (fstatat(fd, name, &dir_st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(dir_st.st_mode))
                return;
        snprintf(path, sizeof(path), "%s/%s/root", a->criu_work_dir, name);
        if (lstat(path, &root_st) < 0 || !S_ISDIR(root_st.st_mode) || root_st.st_dev == dir_st.st_dev)
                return;
        while (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
                k++;
        if (k)
                log_warning("unmounted %s: the root of a restore that did not finish (the agent stopped "
                            "during it)",
                            path);
}

/* Calls fn for every entry of the CRIU work directory but dot files. */
static void criu_work_each(agent *a, void (*fn)(agent *a, int fd, const char *name)) {
        int fd = open_dir_nofollow(a->criu_work_dir);
        struct dirent *de;
        DIR *d;

        if (fd < 0)
                return;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        fn(a, fd, de->d_name);
        closedir(d); /* and fd with it */
}

void criu_restore_roots_release(agent *a) {
        criu_work_each(a, unmount_restore_root);
}

static void prune_one(agent *a, int fd, const char *name) {
        struct stat st;

        if (criu_dir_active(a, name))
                return;
        if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || time(NULL) - st.st_mtime < CRIU_LOGS_KEEP_S)
                return;
        log_info("removing CRIU's logs %s/%s (older than %d days)", a->criu_work_dir, name,
                 CRIU_LOGS_KEEP_S / (24 * 3600));
        (void)rm_rf_at(fd, name);
}

void criu_logs_prune(agent *a) {
        a->t_logs_pruned = now_usec();
        criu_work_each(a, prune_one);
}
