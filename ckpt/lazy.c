/* SPDX-License-Identifier: Apache-2.0 */
/* Post-copy helpers: the `criu lazy-pages` daemon that fills a lazily
 * restored tree's memory from a remote page server, and the network unlock
 * CRIU leaves undone when a lazy dump's transfer fails. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt-ps.h"
#include "ckpt.h"
#include "fs-util.h"
#include "macro.h"

#define LAZY_SOCKET "lazy-pages.socket"
#define LAZY_LOG "lazy-pages.log"
#define LAZY_POLL_MS 5
#define LAZY_READY_TIMEOUT_MS 10000

struct ckpt_lazy_pages {
        uv_process_t proc;
        uv_timer_t timer;
        int work_fd;
        unsigned handles;
        bool exited, ready_sent, freed;
        int status;
        uint64_t waited_ms;
        ckpt_lazy_pages_cb ready, done;
        void *userdata;
};

int ckpt_lazy_dump_check(nm_error *err) {
        _cleanup_free_ char *text = NULL;
        unsigned long long max;
        char *end;
        int r;

        r = read_file_at(AT_FDCWD, "/proc/sys/fs/pipe-max-size", 64, &text, NULL);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read /proc/sys/fs/pipe-max-size");
        errno = 0;
        max = strtoull(text, &end, 10);
        if (errno || end == text || (*end && *end != '\n'))
                return nm_error_set(err, -EIO, "cannot parse /proc/sys/fs/pipe-max-size");
        if (max < CKPT_LAZY_PIPE_MAX)
                return nm_error_set(err, -EOPNOTSUPP,
                                    "post-copy needs fs.pipe-max-size >= %u (it is %llu): CRIU's page "
                                    "server cannot grow its pipe; raise it (sysctl, or the "
                                    "nucleus-migrate sysctl.d file)",
                                    CKPT_LAZY_PIPE_MAX, max);
        return 0;
}

static void lp_release(ckpt_lazy_pages *lp) {
        if (lp->work_fd >= 0)
                close(lp->work_fd);
        free(lp);
}

static void lp_handle_closed(uv_handle_t *h) {
        ckpt_lazy_pages *lp = h->data;
        if (--lp->handles == 0)
                lp_release(lp);
}

static void lp_close_handles(ckpt_lazy_pages *lp) {
        if (!uv_is_closing((uv_handle_t *)&lp->timer))
                uv_close((uv_handle_t *)&lp->timer, lp_handle_closed);
        if (!uv_is_closing((uv_handle_t *)&lp->proc))
                uv_close((uv_handle_t *)&lp->proc, lp_handle_closed);
}

static void lp_ready(ckpt_lazy_pages *lp, int status) {
        if (lp->ready_sent)
                return;
        lp->ready_sent = true;
        uv_timer_stop(&lp->timer);
        if (!lp->freed && lp->ready)
                lp->ready(lp, status, lp->userdata);
}

static void on_exit_cb(uv_process_t *p, int64_t exit_status, int term_signal) {
        ckpt_lazy_pages *lp = container_of(p, ckpt_lazy_pages, proc);

        lp->exited = true;
        lp->status = exit_status == 0 && term_signal == 0 ? 0 : -EIO;
        lp_ready(lp, -EIO); /* a daemon that exits before listening failed */
        if (!lp->freed && lp->done)
                lp->done(lp, lp->status, lp->userdata);
        if (lp->freed)
                lp_close_handles(lp);
}

/* The daemon is ready once its socket exists: only then may the restore
 * connect to it. */
static void on_poll(uv_timer_t *t) {
        ckpt_lazy_pages *lp = container_of(t, ckpt_lazy_pages, timer);
        struct stat st;

        if (fstatat(lp->work_fd, LAZY_SOCKET, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode)) {
                lp_ready(lp, 0);
                return;
        }
        lp->waited_ms += LAZY_POLL_MS;
        if (lp->waited_ms >= LAZY_READY_TIMEOUT_MS) {
                lp_ready(lp, -ETIMEDOUT);
                return;
        }
        uv_timer_start(&lp->timer, on_poll, LAZY_POLL_MS, 0);
}

int ckpt_lazy_pages_start(uv_loop_t *loop, const ckpt_criu *criu, const char *dir, const char *work_dir,
                          int ps_fd, ckpt_lazy_pages_cb ready, ckpt_lazy_pages_cb done, void *userdata,
                          nm_error *err, ckpt_lazy_pages **ret) {
        _cleanup_free_ char *images = NULL;
        ckpt_lazy_pages *lp;
        int r;

        if (!loop || !criu || !dir || !work_dir || ps_fd < 0 || !ready || !done || !ret) {
                if (ps_fd >= 0)
                        close(ps_fd);
                return -EINVAL;
        }
        images = ckpt__ps_images(dir);
        lp = images ? calloc(1, sizeof(*lp)) : NULL;
        if (!lp) {
                close(ps_fd);
                return nm_error_set(err, -ENOMEM, "out of memory");
        }
        lp->work_fd = mkdir_p_secure(work_dir, 0700);
        if (lp->work_fd < 0) {
                r = lp->work_fd;
                close(ps_fd);
                lp_release(lp);
                return nm_error_errno(err, r, "cannot create CRIU work directory %s", work_dir);
        }
        (void)unlinkat(lp->work_fd, LAZY_SOCKET, 0);
        lp->ready = ready;
        lp->done = done;
        lp->userdata = userdata;
        lp->proc.data = lp->timer.data = lp;
        (void)uv_timer_init(loop, &lp->timer);
        lp->handles = 2;
        r = ckpt__ps_spawn(loop, &lp->proc, criu, "lazy-pages", images, work_dir, LAZY_LOG, ps_fd,
                           on_exit_cb, err);
        if (r < 0) {
                lp->freed = true;
                uv_close((uv_handle_t *)&lp->timer, lp_handle_closed);
                uv_close((uv_handle_t *)&lp->proc, lp_handle_closed);
                return r;
        }
        uv_timer_start(&lp->timer, on_poll, LAZY_POLL_MS, 0);
        *ret = lp;
        return 0;
}

ckpt_lazy_pages *ckpt_lazy_pages_free(ckpt_lazy_pages *lp) {
        if (!lp || lp->freed)
                return NULL;
        lp->freed = true;
        if (!lp->exited) {
                /* Its exit closes the handles (on_exit_cb). */
                (void)uv_process_kill(&lp->proc, SIGKILL);
                uv_timer_stop(&lp->timer);
                return NULL;
        }
        lp_close_handles(lp);
        return NULL;
}

/* Runs nft with args in pid's network namespace; its output (if out) into
 * out[0..cap). Returns its exit status, or < 0. */
static int nft_in(pid_t pid, char *const args[], char *out, size_t cap) {
        char ns[64];
        int pfd[2] = {-1, -1}, status = 0;
        size_t got = 0;
        pid_t child;

        snprintf(ns, sizeof(ns), "/proc/%d/ns/net", (int)pid);
        if (out && pipe2(pfd, O_CLOEXEC) < 0)
                return negative_errno();
        child = fork();
        if (child < 0) {
                int r = negative_errno();
                if (out) {
                        close(pfd[0]);
                        close(pfd[1]);
                }
                return r;
        }
        if (child == 0) {
                int fd = open(ns, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
                        _exit(126);
                if (out && dup2(pfd[1], STDOUT_FILENO) < 0)
                        _exit(126);
                execv("/usr/sbin/nft", args);
                _exit(127);
        }
        if (out) {
                ssize_t n;
                close(pfd[1]);
                while (got + 1 < cap && (n = read(pfd[0], out + got, cap - 1 - got)) != 0) {
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                break;
                        got += (size_t)n;
                }
                out[got] = '\0';
                close(pfd[0]);
        }
        while (waitpid(child, &status, 0) < 0)
                if (errno != EINTR)
                        return negative_errno();
        return WIFEXITED(status) ? WEXITSTATUS(status) : -EIO;
}

int ckpt_unlock_network_left(pid_t pid, nm_error *err) {
        if (ckpt__same_ns(pid, "net"))
                return 0;
        return ckpt_lazy_unlock_network(pid, err);
}

int ckpt_lazy_unlock_network(pid_t pid, nm_error *err) {
        char *list_args[] = {(char *)"nft", (char *)"list", (char *)"tables", NULL};
        char out[4096], *line, *save = NULL;
        int r, found = 0;

        /* The table is "inet CRIU-<run id>" (the dump's id, in its
         * inventory); the container's own namespace holds nothing else of
         * CRIU's. */
        r = nft_in(pid, list_args, out, sizeof(out));
        if (r != 0)
                return nm_error_set(err, r < 0 ? r : -EIO, "cannot list the nftables tables of pid %d",
                                    (int)pid);
        for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char name[128];
                if (sscanf(line, "table inet %127s", name) != 1 || strncmp(name, "CRIU-", 5) != 0)
                        continue;
                char *del_args[] = {(char *)"nft", (char *)"delete", (char *)"table", (char *)"inet", name,
                                    NULL};
                r = nft_in(pid, del_args, NULL, 0);
                if (r != 0)
                        return nm_error_set(
                                err, r < 0 ? r : -EIO,
                                "cannot remove CRIU's network lock (nft table inet %s of pid %d)", name,
                                (int)pid);
                found++;
        }
        return found;
}
