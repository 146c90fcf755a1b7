/* SPDX-License-Identifier: Apache-2.0 */
/* Start-up: every migration the journal holds is finished or rolled back
 * (the handoff's cores decide which), and staging directories and source
 * images that no migration owns are removed. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "mig.h"

/* What is left of the tree a source record was moving: its root by pid
 * and start ticks, and whether it is stopped (held by our dump). */
static src_tree source_tree(json_t *rec) {
        pid_t pid = (pid_t)json_integer_value(json_object_get(rec, "pid"));
        uint64_t want = (uint64_t)json_integer_value(json_object_get(rec, "start_ticks")), ticks = 0;

        if (pid <= 0 || !want || ckpt_proc_start_ticks(pid, &ticks) < 0 || ticks != want)
                return SRC_TREE_GONE;
        return ckpt_proc_stopped(pid) ? SRC_TREE_STOPPED : SRC_TREE_RUNNING;
}

static int recover_one(agent *a, json_t *rec, nm_error *err) {
        const char *id = json_string_value(json_object_get(rec, "mig"));
        const char *phase = json_string_value(json_object_get(rec, "phase"));
        mig_role role = mig_role_from_string(json_string_value(json_object_get(rec, "role")));

        if (!id || !journal_valid_id(id) || role < 0 || !phase)
                return nm_error_set(err, -EBADMSG, "journal record %s is incomplete", strna(id));
        /* A phase of the other side is a corrupt record, never guessed at:
         * each role knows only its own phases. */
        if (role == MIG_ROLE_SOURCE)
                return mig_src_recover(a, rec, source_tree(rec), err);
        return mig_dst_recover(a, rec, err);
}

/* Staging directories are named after their migration; one without an
 * active destination record is a leftover. */
static void sweep_staging(agent *a) {
        DIR *d = fs_opendir_dup(a->staging_fd);
        struct dirent *de;
        if (!d)
                return;
        rewinddir(d);
        while ((de = readdir(d))) {
                mig *m;
                if (de->d_name[0] == '.')
                        continue;
                m = mig_find(a, de->d_name);
                if (m && m->role == MIG_ROLE_DEST)
                        continue;
                log_info("removing leftover staging directory %s/%s", a->staging_dir, de->d_name);
                (void)rm_rf_at(a->staging_fd, de->d_name);
        }
        closedir(d);
}

/* The phase a finished migration's archived record ended in; NULL when
 * there is none (never started here, or pruned from done/). */
static const char *done_phase(json_t *done, const char *id) {
        json_t *rec;
        size_t i;
        json_array_foreach(done, i, rec) {
                const char *rid = json_string_value(json_object_get(rec, "mig"));
                if (rid && strcmp(rid, id) == 0)
                        return json_string_value(json_object_get(rec, "phase"));
        }
        return NULL;
}

/* Source images are named after their migration. One that no migration
 * owns is a leftover (a dump CRIU went on with after its agent died, a
 * removal a crash cut short), except the images of a migration that ended
 * `lost`, which are the container (the operator restores them), and a
 * signed set nothing says anything about. */
static void sweep_checkpoints(agent *a) {
        _cleanup_close_ int fd = open_dir_nofollow(a->checkpoints_dir);
        json_t *done = NULL;
        struct dirent *de;
        nm_error err = {};
        DIR *d;

        if (fd < 0 || journal_load_done(a->journal, JOURNAL_KEEP_DONE, &done, &err) < 0)
                return;
        d = fs_opendir_dup(fd);
        if (!d) {
                json_decref(done);
                return;
        }
        while ((de = readdir(d))) {
                const char *phase;
                char hmac[PATH_MAX];
                if (de->d_name[0] == '.' || mig_find(a, de->d_name))
                        continue;
                phase = done_phase(done, de->d_name);
                snprintf(hmac, sizeof(hmac), "%s/%s", de->d_name, CKPT_HMAC_FILE);
                if ((phase && strcmp(phase, "lost") == 0) ||
                    (!phase && faccessat(fd, hmac, F_OK, AT_SYMLINK_NOFOLLOW) == 0)) {
                        log_warning("keeping images %s/%s: %s", a->checkpoints_dir, de->d_name,
                                    phase ? "its migration ended lost, they are the container"
                                          : "a complete, signed set no journal record accounts for");
                        continue;
                }
                log_info("removing leftover images %s/%s (migration %s)", a->checkpoints_dir, de->d_name,
                         phase ? phase : "unknown");
                (void)rm_rf_at(fd, de->d_name);
        }
        closedir(d);
        json_decref(done);
}

int recover_all(agent *a, nm_error *err) {
        json_t *active = NULL, *rec;
        size_t i;
        int r;

        criu_restore_roots_release(a);
        r = journal_load_active(a->journal, &active, err);
        if (r < 0)
                return r;
        if (json_array_size(active))
                log_info("recovering %zu migration(s) from the journal", json_array_size(active));
        json_array_foreach(active, i, rec) {
                nm_error e = {};
                if (recover_one(a, rec, &e) < 0)
                        log_error("cannot recover: %s", e.msg);
        }
        json_decref(active);
        sweep_staging(a);
        sweep_checkpoints(a);
        criu_logs_prune(a);
        return 0;
}
