/* SPDX-License-Identifier: Apache-2.0 */
/* Finding containers in the nucleus state directory, and writing the state
 * file of a restored one. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

#define STATE_FILE_MAX (1 << 20)
#define CANDIDATES_SHOWN 8

int ckpt_state_dir(char **ret) {
        const char *env = getenv(CKPT_STATE_DIR_ENV), *xdg, *home;
        char *p = NULL;

        if (env && env[0])
                p = strdup(env);
        else if (geteuid() == 0)
                p = strdup(CKPT_STATE_DIR_ROOT);
        else if ((xdg = getenv("XDG_RUNTIME_DIR")) && xdg[0] == '/')
                (void)!asprintf(&p, "%s/nucleus", xdg);
        else if ((home = getenv("HOME")) && home[0] == '/')
                (void)!asprintf(&p, "%s/.local/share/nucleus", home);
        else
                (void)!asprintf(&p, "/tmp/nucleus-%u", (unsigned)geteuid());
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

void ckpt_container_list_free(ckpt_container **l, size_t n) {
        for (size_t i = 0; l && i < n; i++)
                ckpt_container_free(l[i]);
        free(l);
}

static bool is_state_file_name(const char *name) {
        size_t n = strlen(name);
        return n > 5 && strcmp(name + n - 5, ".json") == 0;
}

static int load_state_file(int dfd, const char *name, ckpt_container **ret) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        /* O_NOFOLLOW: a symlink planted in the state directory is not read. */
        int r = read_file_at(dfd, name, STATE_FILE_MAX, &text, &len);
        if (r < 0)
                return r;
        return ckpt_container_from_json(text, len, ret, NULL);
}

int ckpt_container_list(const char *state_dir, ckpt_container ***ret, size_t *ret_n, size_t *ret_skipped,
                        nm_error *err) {
        ckpt_container **l = NULL;
        size_t n = 0, skipped = 0;
        struct dirent *de;
        DIR *d;
        int fd;

        fd = open_dir_nofollow(state_dir);
        if (fd == -ENOENT) {
                *ret = NULL;
                *ret_n = 0;
                if (ret_skipped)
                        *ret_skipped = 0;
                return 0;
        }
        if (fd == -ELOOP)
                return nm_error_set(err, -ELOOP, "refusing symlink state directory %s; use a real directory",
                                    state_dir);
        if (fd < 0)
                return nm_error_errno(err, fd, "cannot open state directory %s", state_dir);
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return nm_error_errno(err, negative_errno(), "cannot read state directory %s", state_dir);
        }
        while ((de = readdir(d))) {
                ckpt_container *c = NULL;
                if (!is_state_file_name(de->d_name))
                        continue;
                if (load_state_file(dirfd(d), de->d_name, &c) < 0) {
                        skipped++;
                        continue;
                }
                /* An array of pointers: NOLINTNEXTLINE(bugprone-sizeof-expression) */
                ckpt_container **nl = realloc(l, (n + 1) * sizeof(*nl));
                if (!nl) {
                        ckpt_container_free(c);
                        ckpt_container_list_free(l, n);
                        closedir(d);
                        return -ENOMEM;
                }
                l = nl;
                l[n++] = c;
        }
        closedir(d);
        *ret = l;
        *ret_n = n;
        if (ret_skipped)
                *ret_skipped = skipped;
        return 0;
}

static void append_candidates(char *buf, size_t size, ckpt_container **l, size_t n,
                              bool (*match)(const ckpt_container *, const char *), const char *ref) {
        size_t shown = 0, total = 0, used = strlen(buf);
        for (size_t i = 0; i < n; i++) {
                if (match && !match(l[i], ref))
                        continue;
                total++;
                if (shown >= CANDIDATES_SHOWN)
                        continue;
                int k = snprintf(buf + used, size - used, "%s%s (%s)", shown ? ", " : "", l[i]->id,
                                 l[i]->name);
                if (k < 0 || (size_t)k >= size - used)
                        return;
                used += (size_t)k;
                shown++;
        }
        if (total > shown)
                snprintf(buf + used, size - used, ", and %zu more", total - shown);
}

static bool match_name(const ckpt_container *c, const char *ref) {
        return strcmp(c->name, ref) == 0;
}

static bool match_prefix(const ckpt_container *c, const char *ref) {
        return strncmp(c->id, ref, strlen(ref)) == 0;
}

static int take(ckpt_container **l, size_t i, ckpt_container **ret) {
        *ret = TAKE_PTR(l[i]);
        return 0;
}

int ckpt_container_find(const char *state_dir, const char *ref, ckpt_container **ret, nm_error *err) {
        ckpt_container **l = NULL;
        size_t n = 0, skipped = 0, hits = 0, hit = 0;
        char list[1024] = "";
        int r;

        if (!ref || !ref[0])
                return nm_error_set(err, -EINVAL, "empty container reference");
        r = ckpt_container_list(state_dir, &l, &n, &skipped, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (strcmp(l[i]->id, ref) == 0) {
                        r = take(l, i, ret);
                        goto out;
                }
        for (bool (*match)(const ckpt_container *, const char *) = match_name;; match = match_prefix) {
                hits = 0;
                for (size_t i = 0; i < n; i++)
                        if (match(l[i], ref)) {
                                hits++;
                                hit = i;
                        }
                if (hits == 1) {
                        r = take(l, hit, ret);
                        goto out;
                }
                if (hits > 1) {
                        append_candidates(list, sizeof(list), l, n, match, ref);
                        r = nm_error_set(err, -ENOTUNIQ,
                                         "'%s' is ambiguous: it %s %zu containers: %s; use the id", ref,
                                         match == match_name ? "names" : "prefixes", hits, list);
                        goto out;
                }
                if (match == match_prefix)
                        break;
        }
        append_candidates(list, sizeof(list), l, n, NULL, ref);
        r = nm_error_set(err, -ENOENT, "no container '%s' in %s (%s%s)%s", ref, state_dir,
                         n ? "containers: " : "it holds none", list,
                         skipped ? "; some state files there could not be read" : "");
out:
        ckpt_container_list_free(l, n);
        return r;
}

int ckpt_container_from_pid(pid_t pid, ckpt_container **ret, nm_error *err) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        _cleanup_free_ char *cmdline = NULL;
        size_t len = 0, nargs = 0;
        int r;

        if (pid <= 1)
                return nm_error_set(err, -EINVAL, "refusing pid %d", (int)pid);
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        r = ckpt_proc_start_ticks(pid, &c->start_ticks);
        if (r < 0)
                return nm_error_errno(err, r, "no process %d", (int)pid);
        r = ckpt__proc_read(pid, "cmdline", &cmdline, &len);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read the command line of %d", (int)pid);
        for (size_t i = 0; i < len; i++)
                if (cmdline[i] == '\0')
                        nargs++;
        c->command = calloc(nargs + 1, sizeof(char *));
        if (!c->command)
                return -ENOMEM;
        for (size_t i = 0, off = 0; i < nargs; i++) {
                c->command[i] = strdup(cmdline + off);
                if (!c->command[i])
                        return -ENOMEM;
                off += strlen(cmdline + off) + 1;
        }
        if (asprintf(&c->id, "pid-%d", (int)pid) < 0) {
                c->id = NULL;
                return -ENOMEM;
        }
        c->name = strdup(c->id);
        if (!c->name)
                return -ENOMEM;
        c->pid = pid;
        c->status = CKPT_STATUS_RUNNING;
        c->bare = true;
        *ret = TAKE_PTR(c);
        return 0;
}

/* The state letter of /proc/<pid>/stat (R, S, T, Z, ...); 0 when it cannot
 * be read. */
static char proc_state(pid_t pid) {
        _cleanup_free_ char *stat = NULL;
        if (ckpt__proc_read(pid, "stat", &stat, NULL) < 0)
                return '\0';
        return ckpt__stat_state(stat);
}

/* A zombie keeps its start time; it is still not running. */
static bool pid_is_zombie(pid_t pid) {
        char s = proc_state(pid);
        return s == '\0' || s == 'Z' || s == 'X';
}

bool ckpt_proc_stopped(pid_t pid) {
        char s = proc_state(pid);
        return s == 'T' || s == 't';
}

bool ckpt_container_is_running(const ckpt_container *c) {
        uint64_t ticks;
        if (!c || c->status == CKPT_STATUS_STOPPED || c->start_ticks == 0 || c->pid <= 0)
                return false;
        if (ckpt_proc_start_ticks(c->pid, &ticks) < 0 || ticks != c->start_ticks)
                return false;
        return !pid_is_zombie(c->pid);
}

int ckpt_container_check_movable(const ckpt_container *c, nm_error *err) {
        if (c->using_gvisor)
                return nm_error_set(
                        err, -EOPNOTSUPP,
                        "container %s (%s) runs under gVisor; CRIU cannot checkpoint a gVisor sandbox",
                        c->id, c->name);
        if (c->status == CKPT_STATUS_STOPPED)
                return nm_error_set(err, -ESRCH, "container %s (%s) is not running (status stopped)", c->id,
                                    c->name);
        if (c->start_ticks == 0)
                return nm_error_set(
                        err, -ESRCH,
                        "container %s (%s): its state file has no start_ticks, so pid %d cannot be "
                        "told from a reused pid",
                        c->id, c->name, (int)c->pid);
        if (!ckpt_container_is_running(c))
                return nm_error_set(
                        err, -ESRCH,
                        "container %s (%s) is not running: pid %d is gone or is another process now", c->id,
                        c->name, (int)c->pid);
        if (c->pid <= 1)
                return nm_error_set(err, -EINVAL, "container %s has pid %d", c->id, (int)c->pid);
        return 0;
}

static int open_state_dir_for_write(const char *state_dir, nm_error *err) {
        int fd = mkdir_p_secure(state_dir, 0700);
        if (fd == -ELOOP)
                return nm_error_set(err, -ELOOP, "refusing symlink state directory %s; use a real directory",
                                    state_dir);
        if (fd < 0)
                return nm_error_errno(err, fd, "cannot create state directory %s", state_dir);
        return fd;
}

int ckpt_state_write_restored(const char *state_dir, const ckpt_container *c, pid_t new_pid,
                              uint64_t new_start_ticks, nm_error *err) {
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int dfd = -EBADF;
        char name[NAME_MAX + 1];
        int r;

        if (!ckpt_container_id_valid(c->id))
                return nm_error_set(err, -EINVAL, "invalid container id '%s'", c->id);
        if (!c->json)
                return nm_error_set(err, -EINVAL, "%s is a bare process tree; it has no state file", c->id);
        if (new_start_ticks == 0) {
                r = ckpt_proc_start_ticks(new_pid, &new_start_ticks);
                if (r < 0)
                        return nm_error_errno(err, r, "cannot read the start time of restored pid %d",
                                              (int)new_pid);
        }
        /* Borrows c's id and json: only the three rewritten fields differ. */
        const ckpt_container restored = {
                .id = c->id,
                .pid = new_pid,
                .start_ticks = new_start_ticks,
                .status = CKPT_STATUS_RUNNING,
                .json = c->json,
        };
        r = ckpt_container_format(&restored, &text, err);
        if (r < 0)
                return r;
        dfd = open_state_dir_for_write(state_dir, err);
        if (dfd < 0)
                return dfd;
        snprintf(name, sizeof(name), "%s.json", c->id);
        r = write_file_atomic_at(dfd, name, text, strlen(text), 0600);
        if (r < 0)
                return nm_error_errno(err, r, "cannot write %s/%s", state_dir, name);
        return 0;
}

int ckpt_state_remove(const char *state_dir, const char *id, nm_error *err) {
        _cleanup_close_ int dfd = -EBADF;
        char name[NAME_MAX + 1];

        if (!ckpt_container_id_valid(id))
                return nm_error_set(err, -EINVAL, "invalid container id '%s'", id);
        if ((size_t)snprintf(name, sizeof(name), "%s.json", id) >= sizeof(name))
                return nm_error_set(err, -ENAMETOOLONG, "container id too long");
        dfd = open_dir_nofollow(state_dir);
        if (dfd == -ENOENT)
                return 0;
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open state directory %s", state_dir);
        if (unlinkat(dfd, name, 0) < 0) {
                if (errno == ENOENT)
                        return 0;
                return nm_error_errno(err, negative_errno(), "cannot remove %s/%s", state_dir, name);
        }
        if (fsync(dfd) < 0)
                return nm_error_errno(err, negative_errno(), "cannot sync %s", state_dir);
        return 0;
}

int ckpt_state_check_not_running(const char *state_dir, const char *id, nm_error *err) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        _cleanup_close_ int dfd = -EBADF;
        char name[NAME_MAX + 1];
        int r;

        if (!ckpt_container_id_valid(id))
                return nm_error_set(err, -EINVAL, "invalid container id '%s'", id);
        snprintf(name, sizeof(name), "%s.json", id);
        dfd = open_dir_nofollow(state_dir);
        if (dfd == -ENOENT)
                return 0;
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open state directory %s", state_dir);
        r = load_state_file(dfd, name, &c);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return nm_error_errno(err, r, "cannot read %s/%s", state_dir, name);
        if (ckpt_container_is_running(c))
                return nm_error_set(
                        err, -EEXIST,
                        "container %s (%s) already runs on this node as pid %d; refusing to restore "
                        "a second copy",
                        c->id, c->name, (int)c->pid);
        return 0;
}

/* Whether a file can be created in dfd: an unnamed one where the file
 * system has them, else a named one, removed at once. */
static int probe_writable(int dfd, const char *id) {
        char name[NAME_MAX + 1];
        int fd = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);

        if (fd >= 0) {
                close(fd);
                return 0;
        }
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
                return negative_errno();
        snprintf(name, sizeof(name), ".%s.json.probe", id);
        fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return negative_errno();
        close(fd);
        (void)unlinkat(dfd, name, 0);
        return 0;
}

int ckpt_state_check_restorable(const char *state_dir, const ckpt_container *c, nm_error *err) {
        ckpt_container **all = NULL;
        _cleanup_close_ int dfd = -EBADF;
        size_t n = 0;
        int r;

        if (c->bare)
                return 0;
        if (!ckpt_container_id_valid(c->id) || !c->json)
                return nm_error_set(err, -EINVAL, "container %s has no usable state", strna(c->id));
        r = ckpt_state_check_not_running(state_dir, c->id, err);
        if (r < 0)
                return r;
        r = ckpt_container_list(state_dir, &all, &n, NULL, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++)
                if (c->name && all[i]->name && strcmp(all[i]->id, c->id) != 0 &&
                    strcmp(all[i]->name, c->name) == 0 && ckpt_container_is_running(all[i]))
                        r = nm_error_set(err, -EEXIST,
                                         "another container named %s (%s) runs on this node as pid %d: the "
                                         "name would no longer name one container",
                                         c->name, all[i]->id, (int)all[i]->pid);
        ckpt_container_list_free(all, n);
        if (r < 0)
                return r;
        dfd = open_state_dir_for_write(state_dir, err);
        if (dfd < 0)
                return dfd;
        r = probe_writable(dfd, c->id);
        if (r < 0)
                return nm_error_errno(err, r, "cannot write a state file in %s", state_dir);
        return 0;
}

int ckpt_state_set_cgroup(ckpt_container *c, const char *cgroup_path, nm_error *err) {
        char *copy = NULL;
        if (!c->json)
                return nm_error_set(err, -EINVAL, "%s is a bare process tree; it has no state file", c->id);
        if (cgroup_path && !(copy = strdup(cgroup_path)))
                return -ENOMEM;
        if (json_object_set_new(c->json, "cgroup_path",
                                cgroup_path ? json_string(cgroup_path) : json_null()) < 0) {
                free(copy);
                return -ENOMEM;
        }
        free(c->cgroup_path);
        c->cgroup_path = copy;
        return 0;
}
