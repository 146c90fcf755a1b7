/* SPDX-License-Identifier: Apache-2.0 */
/* The keeper: every CRIU operation runs under a process of its own that
 * bounds it in time and owns whatever it leaves behind.
 *
 * libcriu would fork `criu swrk` itself and waitpid() only that child: a
 * half-restored task (PID 1 of a new pid namespace, forked by CRIU) that
 * still holds the RPC socket keeps libcriu waiting forever once swrk is
 * gone, and nothing ever learns that task's pid. So the worker forks a
 * keeper instead, which makes itself a child subreaper and runs swrk as its
 * child: every process CRIU forks is a descendant of the keeper, and
 * whatever loses its parent becomes the keeper's child, whether or not its
 * pid was ever reported. libcriu talks to swrk over the socket the worker
 * hands it (CRIU_COMM_FD).
 *
 * The keeper waits for one verdict byte from the worker ('k': CRIU
 * succeeded, leave what it made; anything else, or the worker's end
 * closing: CRIU failed or the caller is gone) or for the deadline. Without
 * a 'k' it kills swrk and then every process that is or becomes its child,
 * until none is left: a pid namespace goes with its init. libcriu then sees
 * the socket close and returns. The keeper's exit status tells the worker
 * which way it went.
 *
 * The keeper is forked from a threaded process and never execs: it uses
 * system calls only (no malloc, no stdio). It holds the agent's descriptors
 * while CRIU runs, as swrk does. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "macro.h"

/* After swrk died, how long its answer (if it sent one) may take to reach
 * the worker before whatever CRIU left is killed. */
#define KEEPER_GRACE_MS 2000

#define VERDICT_KEEP 'k'
#define VERDICT_KILL 'x'

static uint64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* fork() without the fork handlers: libuv's would close and remake its
 * signal pipe in the child (the keeper and swrk run no libuv). */
static pid_t raw_fork(void) {
        return (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, NULL, NULL, 0UL);
}

static int poll_ms(uint64_t deadline_ms, uint64_t now) {
        uint64_t left = deadline_ms > now ? deadline_ms - now : 0;
        return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Kills every current child (read from /proc: no allocation); returns how
 * many were signalled. */
static int kill_children(void) {
        char path[64] = "/proc/self/task/", buf[4096];
        char num[24];
        int n = 0, fd, len, i;
        pid_t self = getpid(), pid = 0;
        ssize_t got;
        bool in_num = false;

        /* "/proc/self/task/<tid>/children": itoa by hand. */
        len = 0;
        for (pid_t v = self; v > 0 && len < (int)sizeof(num); v /= 10)
                num[len++] = (char)('0' + v % 10);
        i = (int)strlen(path);
        while (len > 0)
                path[i++] = num[--len];
        memcpy(path + i, "/children", sizeof("/children"));
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        got = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (got <= 0)
                return 0;
        buf[got] = ' ';
        for (ssize_t k = 0; k <= got; k++) {
                if (buf[k] >= '0' && buf[k] <= '9') {
                        pid = pid * 10 + (buf[k] - '0');
                        in_num = true;
                } else if (in_num) {
                        (void)kill(pid, SIGKILL);
                        n++;
                        pid = 0;
                        in_num = false;
                }
        }
        return n;
}

/* Kills and reaps every descendant: orphans keep coming to the keeper
 * (subreaper) until the last one is gone. */
static void sweep(void) {
        for (;;) {
                int status;
                (void)kill_children();
                if (waitpid(-1, &status, __WALL) < 0 && errno == ECHILD)
                        return;
        }
}

static _Noreturn void keeper_main(const char *criu_path, char *const argv[], uint64_t deadline_ms,
                                  int ctl_fd, int sk_fd, const int *keep, unsigned n_keep) {
        struct pollfd p[2];
        pid_t swrk;
        int pidfd, status;
        bool swrk_gone = false;
        uint64_t grace_until = 0;
        char verdict = 0;

        /* The agent's handlers write into descriptors closed here. */
        (void)signal(SIGCHLD, SIG_DFL);
        (void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        (void)prctl(PR_SET_NAME, (unsigned long)"nm-criu-keeper", 0, 0, 0);
        swrk = raw_fork();
        if (swrk < 0)
                _exit(CKPT__KEEPER_NO_CRIU);
        if (swrk == 0) {
                /* swrk's descriptors of ours: the socket and what the
                 * call keeps for it, open across exec. */
                (void)close(ctl_fd);
                for (unsigned i = 0; i < n_keep; i++)
                        (void)fcntl(keep[i], F_SETFD, 0);
                execv(criu_path, argv);
                _exit(127);
        }
        /* Only swrk holds its end now: it closing is the end of CRIU. */
        (void)close(sk_fd);
        pidfd = (int)syscall(SYS_pidfd_open, swrk, 0);
        p[0] = (struct pollfd){.fd = ctl_fd, .events = POLLIN};
        p[1] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        while (!verdict) {
                uint64_t now = mono_ms();
                int r;
                if (now >= deadline_ms)
                        break;
                if (swrk_gone && !grace_until)
                        grace_until = now + KEEPER_GRACE_MS;
                if (grace_until && now >= grace_until) {
                        /* swrk died and no verdict came: something it
                         * forked holds its socket (libcriu would wait for
                         * ever), or it never answered. A success it did
                         * send and the worker reports late is turned into a
                         * failure by the worker (the status says SWEPT). */
                        verdict = VERDICT_KILL;
                        break;
                }
                r = poll(p, swrk_gone || pidfd < 0 ? 1 : 2,
                         poll_ms(grace_until && grace_until < deadline_ms ? grace_until : deadline_ms, now));
                if (r < 0 && errno != EINTR)
                        break;
                if (r <= 0)
                        continue;
                if (!swrk_gone && pidfd >= 0 && (p[1].revents & POLLIN)) {
                        (void)waitpid(swrk, &status, 0);
                        swrk_gone = true;
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        char c;
                        ssize_t n = read(ctl_fd, &c, 1);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n != 1)
                                c = VERDICT_KILL; /* the worker's end closed: it is gone */
                        verdict = c;
                }
        }
        if (verdict == VERDICT_KEEP) {
                /* CRIU succeeded: what it made is the caller's. swrk ends
                 * once libcriu closed its socket; its orphans (the restored
                 * tree) go on to this process's parent's reaper when we
                 * exit. */
                if (!swrk_gone) {
                        uint64_t now = mono_ms();
                        if (pidfd >= 0 && now < deadline_ms) {
                                p[1].revents = 0;
                                (void)poll(&p[1], 1, poll_ms(deadline_ms, now));
                        }
                        if (waitpid(swrk, &status, WNOHANG) == 0) {
                                (void)kill(swrk, SIGKILL);
                                (void)waitpid(swrk, &status, 0);
                        }
                }
                _exit(CKPT__KEEPER_KEPT);
        }
        (void)kill(swrk, SIGKILL);
        sweep();
        _exit(verdict ? CKPT__KEEPER_SWEPT : CKPT__KEEPER_TIMED_OUT);
}

/* In the forked keeper (async-signal-safe only): closes every descriptor
 * above stdio that is not in keep. */
static void close_others(int *keep, unsigned n) {
        unsigned first = 3;

        /* Sorted in place (a few entries; no allocation after fork). */
        for (unsigned i = 1; i < n; i++)
                for (unsigned j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
                        int t = keep[j];
                        keep[j] = keep[j - 1];
                        keep[j - 1] = t;
                }
        for (unsigned i = 0; i < n; i++) {
                if (keep[i] < (int)first)
                        continue;
                if ((unsigned)keep[i] > first)
                        (void)syscall(SYS_close_range, first, (unsigned)keep[i] - 1, 0);
                first = (unsigned)keep[i] + 1;
        }
        (void)syscall(SYS_close_range, first, ~0U, 0);
}

int ckpt__keeper_start(ckpt__keeper *k, const char *criu_path, uint64_t timeout_ms, const int *keep,
                       unsigned n_keep, nm_error *err) {
        int own[CKPT__KEEP_FDS_MAX + 2];
        unsigned n_own = 0;
        int sk[2], ctl[2];
        char fdarg[16];
        char *argv[] = {(char *)"criu", (char *)"swrk", fdarg, NULL};
        uint64_t deadline;
        pid_t pid;

        *k = (ckpt__keeper){.pid = -1, .sk = -EBADF, .ctl = -EBADF};
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sk) < 0)
                return nm_error_errno(err, negative_errno(), "cannot make CRIU's socket");
        snprintf(fdarg, sizeof(fdarg), "%d", sk[1]);
        if (pipe2(ctl, O_CLOEXEC) < 0) {
                int r = negative_errno();
                close(sk[0]);
                close(sk[1]);
                return nm_error_errno(err, r, "cannot make the CRIU keeper's pipe");
        }
        own[n_own++] = ctl[0];
        own[n_own++] = sk[1];
        for (unsigned i = 0; i < n_keep && i < CKPT__KEEP_FDS_MAX; i++)
                if (keep[i] >= 0)
                        own[n_own++] = keep[i];
        deadline = mono_ms() + timeout_ms;
        pid = raw_fork();
        if (pid < 0) {
                int r = negative_errno();
                close(sk[0]);
                close(sk[1]);
                close(ctl[0]);
                close(ctl[1]);
                return nm_error_errno(err, r, "cannot fork the CRIU keeper");
        }
        if (pid == 0) {
                /* Descriptors keep their numbers: CRIU inherits those the
                 * caller left open across exec for it (--inherit-fd, a
                 * dump's page-server socket), as with libcriu's own fork.
                 * Everything else goes: the agent's end of the socket (or
                 * swrk would never see it close), the worker's end of the
                 * pipe (its close is the agent's end), and what other
                 * operations left open for their own CRIU. */
                close_others(own, n_own);
                keeper_main(criu_path, argv, deadline, ctl[0], sk[1], own, n_own);
        }
        close(sk[1]);
        close(ctl[0]);
        k->pid = pid;
        k->sk = sk[0];
        k->ctl = ctl[1];
        return 0;
}

int ckpt__keeper_end(ckpt__keeper *k, bool keep) {
        int status = 0;
        char c = keep ? VERDICT_KEEP : VERDICT_KILL;

        if (k->pid < 0)
                return CKPT__KEEPER_NO_CRIU;
        if (k->sk >= 0)
                close(k->sk);
        k->sk = -EBADF;
        if (k->ctl >= 0) {
                (void)!write(k->ctl, &c, 1);
                close(k->ctl);
                k->ctl = -EBADF;
        }
        while (waitpid(k->pid, &status, 0) < 0)
                if (errno != EINTR)
                        return CKPT__KEEPER_NO_CRIU;
        k->pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : CKPT__KEEPER_NO_CRIU;
}
