/* SPDX-License-Identifier: Apache-2.0 */
/* Restored process trees: listing, resuming and killing them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"

#define TREE_MAX 65536
#define KILL_WAIT_USEC (2 * 1000 * 1000)

typedef struct pid_set {
        pid_t *p;
        size_t n, cap;
} pid_set;

static bool pid_set_has(const pid_set *s, pid_t pid) {
        for (size_t i = 0; i < s->n; i++)
                if (s->p[i] == pid)
                        return true;
        return false;
}

static int pid_set_add(pid_set *s, pid_t pid) {
        if (pid_set_has(s, pid))
                return 0;
        if (s->n >= TREE_MAX)
                return -E2BIG;
        if (s->n == s->cap) {
                size_t ncap = s->cap ? s->cap * 2 : 16;
                pid_t *np = realloc(s->p, ncap * sizeof(pid_t));
                if (!np)
                        return -ENOMEM;
                s->p = np;
                s->cap = ncap;
        }
        s->p[s->n++] = pid;
        return 0;
}

/* Adds the children of every thread of pid. A process that is gone by now
 * simply has no children. */
static int add_children(pid_set *s, pid_t pid) {
        char path[64];
        struct dirent *de;
        DIR *d;
        int r = 0;

        snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
        d = opendir(path);
        if (!d)
                return 0;
        while (r >= 0 && (de = readdir(d))) {
                _cleanup_free_ char *text = NULL;
                char what[96];
                if (de->d_name[0] == '.')
                        continue;
                snprintf(what, sizeof(what), "task/%s/children", de->d_name);
                if (ckpt__proc_read(pid, what, &text, NULL) < 0)
                        continue;
                char *save = NULL;
                for (char *t = strtok_r(text, " \n", &save); t && r >= 0; t = strtok_r(NULL, " \n", &save)) {
                        long c = strtol(t, NULL, 10);
                        if (c > 0)
                                r = pid_set_add(s, (pid_t)c);
                }
        }
        closedir(d);
        return r;
}

int ckpt_tree_pids(pid_t root, pid_t **ret, size_t *ret_n) {
        pid_set s = {};
        uint64_t ticks;
        int r;

        if (root <= 1)
                return -EINVAL;
        r = ckpt_proc_start_ticks(root, &ticks);
        if (r < 0)
                return r;
        r = pid_set_add(&s, root);
        /* Breadth first: s grows while it is walked. */
        for (size_t i = 0; r >= 0 && i < s.n; i++)
                r = add_children(&s, s.p[i]);
        if (r < 0) {
                free(s.p);
                return r;
        }
        *ret = s.p;
        *ret_n = s.n;
        return 0;
}

static int check_root(pid_t root, uint64_t root_start_ticks, nm_error *err) {
        uint64_t ticks;
        int r = ckpt_proc_start_ticks(root, &ticks);
        if (r == -ESRCH)
                return nm_error_set(err, -ESRCH, "process %d is gone", (int)root);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read /proc/%d/stat", (int)root);
        if (root_start_ticks && ticks != root_start_ticks)
                return nm_error_set(
                        err, -ESRCH, "pid %d is another process now (start time %llu, expected %llu)",
                        (int)root, (unsigned long long)ticks, (unsigned long long)root_start_ticks);
        return 0;
}

/* The pids of a process in each pid namespace it is in, outermost first
 * (the NSpid line of /proc/<pid>/status). */
static int ns_pids_of(pid_t pid, pid_t *ret, size_t max, size_t *ret_n) {
        _cleanup_free_ char *status = NULL;
        const char *line;
        size_t n = 0;
        int r;

        r = ckpt__proc_read(pid, "status", &status, NULL);
        if (r < 0)
                return r;
        line = strstr(status, "\nNSpid:");
        if (!line)
                return -EBADMSG;
        line += strlen("\nNSpid:");
        for (;;) {
                char *end;
                long v;
                while (*line == ' ' || *line == '\t')
                        line++;
                if (*line == '\n' || *line == '\0')
                        break;
                errno = 0;
                v = strtol(line, &end, 10);
                if (errno || end == line || v <= 0 || n >= max)
                        return -EBADMSG;
                ret[n++] = (pid_t)v;
                line = end;
        }
        if (n == 0)
                return -EBADMSG;
        *ret_n = n;
        return 0;
}

#define NS_DEPTH_MAX 33 /* the kernel nests at most 32 pid namespaces */

/* Whether pid must stay stopped: its pid at the depth of the root's
 * innermost namespace (the tree's own, whose pids CRIU recorded) is in
 * keep. */
static int must_stay_stopped(pid_t pid, size_t depth, const ckpt_stopped_tasks *keep) {
        pid_t ns[NS_DEPTH_MAX];
        size_t n;
        int r = ns_pids_of(pid, ns, NS_DEPTH_MAX, &n);
        if (r < 0)
                return r;
        if (n < depth)
                return -EBADMSG; /* not inside the root's namespace: not of this tree */
        return ckpt_stopped_tasks_has(keep, ns[depth - 1]);
}

int ckpt_resume(pid_t root, uint64_t root_start_ticks, const ckpt_stopped_tasks *keep_stopped,
                nm_error *err) {
        _cleanup_free_ pid_t *pids = NULL;
        pid_t ns[NS_DEPTH_MAX];
        size_t n = 0, depth = 0;
        int r;

        r = check_root(root, root_start_ticks, err);
        if (r < 0)
                return r;
        if (keep_stopped && keep_stopped->n > 0) {
                r = ns_pids_of(root, ns, NS_DEPTH_MAX, &depth);
                if (r < 0)
                        return nm_error_errno(err, r, "cannot read the pid namespaces of %d", (int)root);
        }
        r = ckpt_tree_pids(root, &pids, &n);
        if (r < 0)
                return nm_error_errno(err, r, "cannot list the process tree of %d", (int)root);
        for (size_t i = 0; i < n; i++) {
                if (depth > 0) {
                        r = must_stay_stopped(pids[i], depth, keep_stopped);
                        if (r == -ESRCH || r == -ENOENT)
                                continue; /* gone meanwhile */
                        if (r < 0)
                                return nm_error_errno(err, r,
                                                      "cannot tell whether pid %d was stopped before the "
                                                      "dump; the tree stays stopped",
                                                      (int)pids[i]);
                        if (r > 0)
                                continue;
                }
                /* kill(), not tgkill(): SIGCONT ends the group stop of every
                 * thread of a process. */
                if (kill(pids[i], SIGCONT) < 0 && errno != ESRCH)
                        return nm_error_errno(err, negative_errno(), "cannot continue pid %d", (int)pids[i]);
        }
        return 0;
}

/* Gone: no such pid, another process under it, or a zombie. */
static bool pid_gone(pid_t pid, uint64_t ticks) {
        _cleanup_free_ char *stat = NULL;
        uint64_t now;
        char state;

        if (ckpt__proc_read(pid, "stat", &stat, NULL) < 0)
                return true;
        if (ckpt__parse_start_ticks(stat, &now) < 0 || now != ticks)
                return true;
        state = ckpt__stat_state(stat);
        return state == 'Z' || state == 'X';
}

/* Each task's pidfd (-1 where there is none), to wait on their exits. */
static struct pollfd *exit_watch(const pid_t *pids, const uint64_t *ticks, size_t n) {
        struct pollfd *p = calloc(n, sizeof(*p));

        for (size_t i = 0; p && i < n; i++)
                p[i] = (struct pollfd){
                        .fd = ticks[i] ? (int)syscall(SYS_pidfd_open, pids[i], 0) : -1,
                        .events = POLLIN,
                };
        return p;
}

static void exit_watch_free(struct pollfd *p, size_t n) {
        for (size_t i = 0; p && i < n; i++)
                if (p[i].fd >= 0)
                        close(p[i].fd);
        free(p);
}

int ckpt_kill_tree(pid_t root, uint64_t root_start_ticks, nm_error *err) {
        _cleanup_free_ pid_t *pids = NULL;
        _cleanup_free_ uint64_t *ticks = NULL;
        struct pollfd *watch;
        size_t n = 0;
        uint64_t deadline;
        int r;

        r = check_root(root, root_start_ticks, err);
        if (r == -ESRCH)
                return 0; /* already gone */
        if (r < 0)
                return r;
        r = ckpt_tree_pids(root, &pids, &n);
        if (r == -ESRCH)
                return 0;
        if (r < 0)
                return nm_error_errno(err, r, "cannot list the process tree of %d", (int)root);
        ticks = calloc(n, sizeof(uint64_t));
        if (!ticks)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (ckpt_proc_start_ticks(pids[i], &ticks[i]) < 0)
                        ticks[i] = 0;
        for (size_t i = 0; i < n; i++)
                if (ticks[i] && kill(pids[i], SIGKILL) < 0 && errno != ESRCH)
                        return nm_error_errno(err, negative_errno(), "cannot kill pid %d", (int)pids[i]);
        /* The source ends its stopped copy while the container is frozen on
         * the target: woken by the exits (a pidfd is readable once its task
         * has exited), not by the next look every 5 ms. /proc decides, as a
         * pid may have been taken by another process before its pidfd. */
        watch = exit_watch(pids, ticks, n);
        deadline = ckpt__now_usec() + KILL_WAIT_USEC;
        for (;;) {
                size_t left = 0;
                pid_t one = 0;
                for (size_t i = 0; i < n; i++) {
                        if (!ticks[i])
                                continue;
                        if (pid_gone(pids[i], ticks[i])) {
                                ticks[i] = 0;
                                if (watch && watch[i].fd >= 0) {
                                        close(watch[i].fd);
                                        watch[i].fd = -1;
                                }
                                continue;
                        }
                        left++;
                        one = pids[i];
                }
                if (left == 0)
                        break;
                if (ckpt__now_usec() > deadline) {
                        exit_watch_free(watch, n);
                        return nm_error_set(err, -ETIMEDOUT,
                                            "%zu process(es) of the tree of %d survived SIGKILL (e.g. %d)",
                                            left, (int)root, (int)one);
                }
                if (!watch || poll(watch, n, 5) < 0)
                        (void)nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
        }
        exit_watch_free(watch, n);
        return 0;
}

/* PF_EXITING in the flags field of /proc/<pid>/stat (include/linux/sched.h). */
#define PROC_PF_EXITING 0x00000004u

static bool sigkill_in(const char *status, const char *field) {
        const char *line = strstr(status, field);
        unsigned long long mask;
        char *end;
        if (!line)
                return false;
        errno = 0;
        mask = strtoull(line + strlen(field), &end, 16);
        if (errno || end == line + strlen(field))
                return false;
        return mask & (1ULL << (SIGKILL - 1));
}

/* Field 9 of /proc/<pid>/stat (flags): the sixth field after the state,
 * which follows the last ')' (the name may hold spaces and parentheses). */
/* A task that was sent SIGKILL can never run again, though until it has
 * torn down its memory (long, for a large heap) it is neither gone nor a
 * zombie, and a stopped or traced task may not have acted on the signal
 * yet. */
bool ckpt__parse_dying(const char *stat, const char *status) {
        long long flags; /* field 9 */
        if (ckpt__stat_field(stat, 9, &flags) == 0 && ((unsigned long long)flags & PROC_PF_EXITING))
                return true;
        return status && (sigkill_in(status, "\nShdPnd:") || sigkill_in(status, "\nSigPnd:"));
}

bool ckpt__proc_dying(pid_t pid) {
        _cleanup_free_ char *stat = NULL, *status = NULL;
        if (ckpt__proc_read(pid, "stat", &stat, NULL) < 0)
                return false;
        (void)ckpt__proc_read(pid, "status", &status, NULL);
        return ckpt__parse_dying(stat, status);
}
