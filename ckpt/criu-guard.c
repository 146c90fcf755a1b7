/* SPDX-License-Identifier: Apache-2.0 */
/* The page files' guard: while a restore consumes the staged pages, their
 * immutable seal is off (CRIU punches each page out once it is read), and
 * only CRIU may touch them.
 *
 * The guard is a fanotify group with a permission mark on each page file's
 * inode (whatever name or link reaches it): every open of one waits for the
 * guard's answer. Opens by this process (the restore's own probe) and by
 * the CRIU keeper's descendants (CRIU and the tasks it restores, which read
 * their own pages) are allowed; any other is denied, so nothing else ever
 * holds a descriptor that can write them. Writes that need no descriptor of
 * one's own (truncate by name) are seen afterwards as modifications by a
 * stranger, and fail the restore before the copy can resume. The marks go
 * when the guard stops, the group a moment later (an open still waiting is
 * then allowed by the kernel, and only CRIU's can be waiting).
 *
 * With a gate (a signing of the staging that must read every page before
 * CRIU punches it out), CRIU's opens are held, unanswered, until the
 * signing is over: allowed once it succeeded, refused if it failed. CRIU
 * reads no page without an open, so none is punched before it was signed,
 * and all of CRIU's work before its first open runs beside the signing.
 *
 * The same guard keeps a page server's output: a mark on the images
 * directory covers every file in it, those CRIU has yet to create too,
 * until the files are sealed (ckpt__guard_start_dir). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "fs-util.h"
#include "macro.h"

struct ckpt__guard {
        int fan;
        int stop[2];
        pthread_t thread;
        bool running;
        _Atomic pid_t keeper; /* 0 until CRIU runs */
        pthread_mutex_t lock;
        const char *during; /* for the verdict: when the guard stood */
        unsigned denied, strange_writes;
        pid_t first_pid; /* the first stranger */
        char first_comm[32];
        ckpt__gate *gate; /* NULL: CRIU's opens are answered at once */
        int *held;        /* CRIU's opens waiting for the gate (their event fds) */
        size_t n_held, cap_held;
};

static pid_t parent_of(pid_t pid) {
        char path[64], buf[1024];
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;
        char *p;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        p = strstr(buf, "\nPPid:");
        return p ? (pid_t)strtol(p + 6, NULL, 10) : 0;
}

/* This process, or a descendant of the keeper (CRIU and its tree). */
static bool allowed(ckpt__guard *g, pid_t pid) {
        pid_t keeper = g->keeper;

        if (pid == getpid())
                return true;
        for (int depth = 0; keeper > 0 && pid > 1 && depth < 64; depth++) {
                if (pid == keeper)
                        return true;
                pid = parent_of(pid);
        }
        return false;
}

static void note_stranger(ckpt__guard *g, pid_t pid, bool denied) {
        char path[64];
        _cleanup_free_ char *comm = NULL;

        snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        (void)read_file_at(AT_FDCWD, path, 64, &comm, NULL);
        pthread_mutex_lock(&g->lock);
        if (denied)
                g->denied++;
        else
                g->strange_writes++;
        if (!g->first_pid) {
                g->first_pid = pid;
                snprintf(g->first_comm, sizeof(g->first_comm), "%s", comm ? comm : "?");
                g->first_comm[strcspn(g->first_comm, "\n")] = '\0';
        }
        pthread_mutex_unlock(&g->lock);
}

static ckpt__gate_state gate_state(const ckpt__guard *g) {
        return g->gate ? g->gate->state : CKPT__GATE_OPEN;
}

static void answer(ckpt__guard *g, int fd, bool allow) {
        struct fanotify_response resp = {.fd = fd, .response = allow ? FAN_ALLOW : FAN_DENY};
        (void)!write(g->fan, &resp, sizeof(resp));
        close(fd);
}

/* Keeps CRIU's open waiting; false when there is no room to (out of
 * memory: it is then refused, and the restore fails). */
static bool hold(ckpt__guard *g, int fd) {
        if (g->n_held == g->cap_held) {
                size_t cap = g->cap_held ? g->cap_held * 2 : 8;
                int *held = realloc(g->held, cap * sizeof(*held));
                if (!held)
                        return false;
                g->held = held;
                g->cap_held = cap;
        }
        g->held[g->n_held++] = fd;
        return true;
}

/* The gate has opened or been barred: every open held for it is answered. */
static void release_held(ckpt__guard *g, bool allow) {
        for (size_t i = 0; i < g->n_held; i++)
                answer(g, g->held[i], allow);
        g->n_held = 0;
}

typedef enum open_verdict {
        OPEN_ALLOW,
        OPEN_HOLD, /* CRIU's, until the gate opens */
        OPEN_DENY,
} open_verdict;

/* For an open by this process or the keeper's tree. */
static open_verdict verdict_for(ckpt__guard *g, pid_t pid) {
        if (pid == getpid())
                return OPEN_ALLOW; /* ours: the probe, the signing itself */
        switch (gate_state(g)) {
        case CKPT__GATE_SHUT:
                return OPEN_HOLD;
        case CKPT__GATE_OPEN:
                return OPEN_ALLOW;
        case CKPT__GATE_BARRED:
                return OPEN_DENY;
        }
        return OPEN_DENY;
}

static void handle(ckpt__guard *g, const struct fanotify_event_metadata *m) {
        bool ok = allowed(g, m->pid);

        if (m->mask & FAN_OPEN_PERM) {
                open_verdict v = ok ? verdict_for(g, m->pid) : OPEN_DENY;
                if (v == OPEN_HOLD && hold(g, m->fd))
                        return;
                answer(g, m->fd, v == OPEN_ALLOW);
                if (!ok)
                        note_stranger(g, m->pid, true);
                return;
        }
        if ((m->mask & FAN_MODIFY) && !ok)
                note_stranger(g, m->pid, false);
        if (m->fd >= 0)
                close(m->fd);
}

static void *guard_main(void *arg) {
        ckpt__guard *g = arg;
        char buf[4096] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));

        for (;;) {
                ckpt__gate_state gs = gate_state(g);
                struct pollfd p[3] = {{.fd = g->fan, .events = POLLIN},
                                      {.fd = g->stop[0], .events = POLLIN},
                                      {.fd = g->gate ? g->gate->fd : -1, .events = POLLIN}};
                ssize_t n;

                if (gs != CKPT__GATE_SHUT)
                        release_held(g, gs == CKPT__GATE_OPEN);
                if (poll(p, gs == CKPT__GATE_SHUT ? 3 : 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[0].revents & POLLIN) {
                        n = read(g->fan, buf, sizeof(buf));
                        if (n > 0) {
                                const struct fanotify_event_metadata *m = (const void *)buf;
                                for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n))
                                        if (m->vers == FANOTIFY_METADATA_VERSION)
                                                handle(g, m);
                        }
                        continue; /* answer every waiting open before stopping */
                }
                if (p[1].revents)
                        break;
        }
        /* CRIU is over (the guard stops after it): nothing waits for these */
        release_held(g, false);
        return NULL;
}

static bool is_pages(const char *name) {
        size_t n = strlen(name);
        return strncmp(name, "pages-", 6) == 0 && n > 10 && strcmp(name + n - 4, ".img") == 0;
}

/* The group, before any mark; NULL with *r set on failure. */
static ckpt__guard *guard_new(const char *during, int *r, nm_error *err) {
        ckpt__guard *g = calloc(1, sizeof(*g));

        if (!g) {
                *r = nm_error_set(err, -ENOMEM, "out of memory");
                return NULL;
        }
        g->fan = g->stop[0] = g->stop[1] = -EBADF;
        g->during = during;
        pthread_mutex_init(&g->lock, NULL);
        g->fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
        if (g->fan < 0) {
                *r = nm_error_errno(err, negative_errno(), "cannot guard the staged pages (fanotify)");
                (void)ckpt__guard_stop(g, NULL, 0);
                return NULL;
        }
        *r = 0;
        return g;
}

/* Once marked: the thread that answers. */
static int guard_run(ckpt__guard *g, nm_error *err) {
        int r;

        if (pipe2(g->stop, O_CLOEXEC) < 0)
                return nm_error_errno(err, negative_errno(), "pipe2");
        r = -pthread_create(&g->thread, NULL, guard_main, g);
        if (r < 0)
                return nm_error_errno(err, r, "cannot start the page files' guard");
        g->running = true;
        return 0;
}

int ckpt__guard_start(int imgfd, ckpt__gate *gate, ckpt__guard **ret, nm_error *err) {
        ckpt__guard *g;
        DIR *d = NULL;
        struct dirent *de;
        int fd, r;

        *ret = NULL;
        g = guard_new("during the restore", &r, err);
        if (!g)
                return r;
        g->gate = gate;
        fd = openat(imgfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d) {
                r = nm_error_errno(err, negative_errno(), "cannot list the images to guard");
                if (fd >= 0)
                        close(fd);
                goto fail;
        }
        while ((de = readdir(d)))
                if (is_pages(de->d_name) &&
                    fanotify_mark(g->fan, FAN_MARK_ADD, FAN_OPEN_PERM | FAN_MODIFY, imgfd, de->d_name) < 0) {
                        r = nm_error_errno(err, negative_errno(), "cannot guard %s (fanotify)", de->d_name);
                        break;
                }
        closedir(d);
        if (r < 0 || (r = guard_run(g, err)) < 0)
                goto fail;
        *ret = g;
        return 0;
fail:
        (void)ckpt__guard_stop(g, NULL, 0);
        return r;
}

int ckpt__guard_start_dir(int dirfd, ckpt__guard **ret, nm_error *err) {
        ckpt__guard *g;
        int r;

        *ret = NULL;
        g = guard_new("while the page server wrote them", &r, err);
        if (!g)
                return r;
        /* Its files, not the directory itself (no FAN_ONDIR): listing it
         * stays free. */
        if (fanotify_mark(g->fan, FAN_MARK_ADD, FAN_OPEN_PERM | FAN_MODIFY | FAN_EVENT_ON_CHILD, dirfd,
                          NULL) < 0)
                r = nm_error_errno(err, negative_errno(),
                                   "cannot guard the page server's images (fanotify)");
        if (r < 0 || (r = guard_run(g, err)) < 0) {
                (void)ckpt__guard_stop(g, NULL, 0);
                return r;
        }
        *ret = g;
        return 0;
}

static void *group_close_main(void *arg) {
        close((int)(intptr_t)arg);
        return NULL;
}

/* Releasing a fanotify group waits for the kernel's SRCU grace period:
 * 0.1 to 20 ms here, measured, and the agent stops a guard while the
 * container is frozen (a page server's exit, a restore's end). Its marks go
 * at once (no open waits on the group from here on; one already waiting is
 * allowed when the group goes, as before), and the release runs on a
 * thread of its own. */
static void group_release(int fan) {
        pthread_attr_t a;
        pthread_t t;
        int r;

        (void)fanotify_mark(fan, FAN_MARK_FLUSH, 0, AT_FDCWD, NULL);
        if (pthread_attr_init(&a) != 0) {
                close(fan);
                return;
        }
        r = pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (r == 0)
                r = pthread_create(&t, &a, group_close_main, (void *)(intptr_t)fan);
        pthread_attr_destroy(&a);
        if (r != 0)
                close(fan);
}

void ckpt__guard_set_keeper(ckpt__guard *g, pid_t keeper) {
        if (g)
                g->keeper = keeper;
}

int ckpt__guard_stop(ckpt__guard *g, char *msg, size_t size) {
        int r = 0;

        if (!g)
                return 0;
        if (g->running) {
                (void)!write(g->stop[1], "x", 1);
                pthread_join(g->thread, NULL);
        }
        if (g->fan >= 0)
                group_release(g->fan);
        if (g->stop[0] >= 0)
                close(g->stop[0]);
        if (g->stop[1] >= 0)
                close(g->stop[1]);
        if (g->strange_writes)
                r = -EBADMSG;
        if (msg && size && (g->strange_writes || g->denied))
                snprintf(msg, size,
                         "%u change(s) and %u refused open(s) of the staged page files by another process "
                         "(first: pid %d, %s) %s",
                         g->strange_writes, g->denied, (int)g->first_pid, g->first_comm, g->during);
        else if (msg && size)
                msg[0] = '\0';
        pthread_mutex_destroy(&g->lock);
        free(g->held);
        free(g);
        return r;
}
