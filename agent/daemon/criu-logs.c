/* SPDX-License-Identifier: Apache-2.0 */
/* CRIU's logs (its work directories, outside the signed trees) of
 * migrations that ended: kept for a post-mortem, then removed, so that a
 * node that moves containers for months does not fill its disk. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
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

void criu_logs_prune(agent *a) {
        int fd = open_dir_nofollow(a->criu_work_dir);
        time_t now = time(NULL);
        struct dirent *de;
        struct stat st;
        DIR *d;

        a->t_logs_pruned = now_usec();
        if (fd < 0)
                return;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || criu_dir_active(a, de->d_name))
                        continue;
                if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    now - st.st_mtime < CRIU_LOGS_KEEP_S)
                        continue;
                log_info("removing CRIU's logs %s/%s (older than %d days)", a->criu_work_dir, de->d_name,
                         CRIU_LOGS_KEEP_S / (24 * 3600));
                (void)rm_rf_at(fd, de->d_name);
        }
        closedir(d); /* and fd with it */
}
