/* SPDX-License-Identifier: Apache-2.0 */
/* A container workload whose state shows whether it survived a move.
 *
 *   nm-counter DIR [PERIOD_MS]
 *
 * The init keeps a counter in memory and sends every value through a pipe to
 * a child, which appends it to DIR/log through a file it keeps open. The init
 * also rewrites DIR/state (through a file it keeps open) with the counter,
 * its pid and the largest gap it has seen between two ticks. After a
 * checkpoint and restore, the log must go on without a hole and the counter
 * must never go back: memory, the pipe, both open files and both processes
 * came through. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define STATE_RECORD 128

/* The wall clock, not CLOCK_MONOTONIC: CRIU restores a tree into a time
 * namespace whose monotonic clock carries on from the dump, which would hide
 * the downtime from the workload. */
static long long now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int open_in(const char *dir, const char *name, int flags) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        int fd = open(path, flags | O_CLOEXEC, 0644);
        if (fd < 0) {
                fprintf(stderr, "nm-counter: open %s: %s\n", path, strerror(errno));
                exit(1);
        }
        return fd;
}

/* The child: one line in the log for every value that came through the pipe. */
static void run_logger(int rfd, int logfd) {
        char buf[64];
        size_t have = 0;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
                ssize_t n = read(rfd, buf + have, sizeof(buf) - have);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        _exit(0);
                have += (size_t)n;
                char *nl;
                while ((nl = memchr(buf, '\n', have))) {
                        size_t len = (size_t)(nl - buf) + 1;
                        if (write(logfd, buf, len) != (ssize_t)len)
                                _exit(1);
                        memmove(buf, nl + 1, have - len);
                        have -= len;
                }
        }
}

int main(int argc, char **argv) {
        int pfd[2], statefd, logfd;
        long period = argc > 2 ? strtol(argv[2], NULL, 10) : 100;
        unsigned long long counter = 0;
        long long last, max_gap = 0;

        if (argc < 2) {
                fprintf(stderr, "usage: nm-counter DIR [PERIOD_MS]\n");
                return 2;
        }
        statefd = open_in(argv[1], "state", O_RDWR | O_CREAT | O_TRUNC);
        logfd = open_in(argv[1], "log", O_WRONLY | O_CREAT | O_APPEND);
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return 1;
        pid_t child = fork();
        if (child < 0)
                return 1;
        if (child == 0) {
                close(pfd[1]);
                close(statefd);
                run_logger(pfd[0], logfd);
        }
        close(pfd[0]);
        close(logfd);
        signal(SIGPIPE, SIG_IGN);
        last = now_ms();
        for (;;) {
                char line[256];
                long long t = now_ms();
                if (t - last > max_gap)
                        max_gap = t - last;
                last = t;
                counter++;
                int n = snprintf(line, sizeof(line), "%llu\n", counter);
                if (write(pfd[1], line, (size_t)n) != n)
                        return 1;
                /* One fixed-size record, rewritten in place: a reader never
                 * sees a truncated file. */
                memset(line, ' ', STATE_RECORD);
                n = snprintf(line, sizeof(line), "count=%llu pid=%d child=%d max_gap_ms=%lld", counter,
                             (int)getpid(), (int)child, max_gap);
                line[n] = ' ';
                line[STATE_RECORD - 1] = '\n';
                if (pwrite(statefd, line, STATE_RECORD, 0) != STATE_RECORD)
                        return 1;
                sleep_ms(period);
        }
}
