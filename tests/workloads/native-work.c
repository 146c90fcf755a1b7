/* SPDX-License-Identifier: Apache-2.0 */
/* The workload of a native container: it keeps state where real ones keep
 * it and checks it itself, so that a move that loses any of it shows.
 *
 *   nm-native-work --status DIR [--period MS] [--listen PORT | --connect ADDR:PORT]
 *
 * PID 1 counts in memory and appends every value to /tmp/nm-log (root
 * tmpfs, an fd kept open). It keeps 256 KiB of known bytes in /tmp/nm-data
 * and in /dev/shm/nm-data (fds kept open) and checks them on every tick. Its
 * children:
 *   nm-lock     holds an flock and a POSIX write lock on /tmp/nm-lock;
 *               PID 1 checks both are held on every tick;
 *   nm-stopped  stops itself at once; PID 1 reports its state (T: stopped);
 *   nm-probe    waits for SIGUSR2, then makes a forbidden system call
 *               (ptrace): under the seccomp filter it dies of SIGSYS (and
 *               PID 1 starts another one);
 *   nm-tcp      keeps one TCP connection (server: echoes 8-byte sequence
 *               numbers, one connection after the other; client: sends one
 *               per tick and checks the echo, never reconnecting).
 * Every tick PID 1 rewrites DIR/status (tmp + rename) with one line:
 *   count=N pid=1 tmp=ok shm=ok lock=ok stopped=T probe=waiting|killed-31
 *   probes_killed=K landlock=denied|allowed max_gap_ms=G
 * and nm-tcp rewrites DIR/tcp with "rounds=N err=TEXT probes=P". */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DATA_BYTES (256 * 1024)

static const char *status_dir = "/data";
static char last_tcp_err[128] = "none";

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

static void die(const char *what) {
        fprintf(stderr, "nm-native-work: %s: %s\n", what, strerror(errno));
        exit(1);
}

/* Rewrites DIR/name atomically. */
static void publish(const char *name, const char *line) {
        char tmp[512], path[512];
        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", status_dir, name);
        snprintf(path, sizeof(path), "%s/%s", status_dir, name);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return;
        size_t n = strlen(line);
        if (write(fd, line, n) == (ssize_t)n)
                (void)rename(tmp, path);
        close(fd);
}

/* ---- data files ---------------------------------------------------------- */

static uint64_t fnv(const unsigned char *p, size_t n) {
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 1099511628211ull;
        return h;
}

typedef struct data_file {
        int fd;
        uint64_t sum;
} data_file;

static data_file data_create(const char *path, unsigned seed) {
        static unsigned char buf[DATA_BYTES];
        data_file d;
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (unsigned char)((i * 131 + seed) ^ (i >> 9));
        d.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (d.fd < 0 || pwrite(d.fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
                die(path);
        d.sum = fnv(buf, sizeof(buf));
        return d;
}

static bool data_ok(const data_file *d) {
        static unsigned char buf[DATA_BYTES];
        return pread(d->fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf) && fnv(buf, sizeof(buf)) == d->sum;
}

/* ---- children ------------------------------------------------------------ */

static pid_t spawn(const char *name, void (*fn)(void *), void *arg) {
        pid_t pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                prctl(PR_SET_NAME, name);
                fn(arg);
                _exit(0);
        }
        return pid;
}

static void run_lock(void *arg) {
        (void)arg;
        int fd = open("/tmp/nm-lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fd < 0 || flock(fd, LOCK_EX) < 0 || fcntl(fd, F_SETLK, &fl) < 0)
                die("locks");
        for (;;)
                pause();
}

/* Both locks still held by the holder, as seen by a second open. */
static bool locks_held(pid_t holder) {
        int fd = open("/tmp/nm-lock", O_RDWR | O_CLOEXEC);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        bool ok;
        if (fd < 0)
                return false;
        ok = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
        ok = ok && fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_pid == holder;
        close(fd);
        return ok;
}

static void run_stopped(void *arg) {
        (void)arg;
        raise(SIGSTOP);
        /* Continued: whoever resumed the container woke a task that was
         * stopped before. Leave a mark. */
        int fd = open("/tmp/nm-woke", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
                close(fd);
        for (;;)
                pause();
}

static char proc_state(pid_t pid) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return '-';
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return '-';
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        if (!p || p[1] != ' ')
                return '?';
        return p[2];
}

static void on_usr2(int sig) {
        (void)sig;
}

static void run_probe(void *arg) {
        sigset_t wait_set;
        (void)arg;
        sigemptyset(&wait_set);
        signal(SIGUSR2, on_usr2);
        sigsuspend(&wait_set);
        /* Forbidden by the container's seccomp filter: the kernel kills the
         * process (SIGSYS) before it returns. */
        syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
        _exit(42);
}

/* ---- TCP ------------------------------------------------------------------- */

typedef struct tcp_cfg {
        int port;         /* listen */
        const char *peer; /* connect: ADDR:PORT */
        long period;
} tcp_cfg;

static unsigned long long probes;

static void tcp_report(unsigned long long rounds) {
        char line[256];
        snprintf(line, sizeof(line), "rounds=%llu err=%s probes=%llu\n", rounds, last_tcp_err, probes);
        publish("tcp", line);
}

static int full_io(int fd, void *buf, size_t n, bool writing) {
        size_t done = 0;
        while (done < n) {
                ssize_t k = writing ? write(fd, (char *)buf + done, n - done)
                                    : read(fd, (char *)buf + done, n - done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        snprintf(last_tcp_err, sizeof(last_tcp_err), "%s", k == 0 ? "eof" : strerror(errno));
                        return -1;
                }
                done += (size_t)k;
        }
        return 0;
}

/* Echoes its peer's sequence numbers. A connection that arrives while one
 * is served (someone checking that the port answers) is accepted, counted
 * and closed at once: nothing stays in the accept queue, which CRIU could
 * not dump ("In-flight connection"). */
static void tcp_server(const tcp_cfg *t) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port)};
        unsigned long long rounds = 0, seq;
        int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), fd = -1;

        if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4) < 0)
                die("listen");
        tcp_report(0);
        for (;;) {
                struct pollfd p[2] = {{.fd = ls, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
                if (poll(p, fd >= 0 ? 2 : 1, -1) < 0)
                        continue;
                if (p[0].revents & POLLIN) {
                        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
                        if (c >= 0 && fd < 0)
                                fd = c;
                        else if (c >= 0) {
                                close(c);
                                probes++;
                                tcp_report(rounds);
                        }
                }
                if (fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
                        if (full_io(fd, &seq, sizeof(seq), false) == 0 &&
                            full_io(fd, &seq, sizeof(seq), true) == 0)
                                rounds++;
                        else {
                                close(fd);
                                fd = -1;
                        }
                        tcp_report(rounds);
                }
        }
}

static void tcp_client(const tcp_cfg *t) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        char addr[64];
        unsigned long long rounds = 0, seq, echo;
        const char *colon = strchr(t->peer, ':');
        int fd;

        if (!colon || (size_t)(colon - t->peer) >= sizeof(addr))
                die("--connect wants ADDR:PORT");
        memcpy(addr, t->peer, (size_t)(colon - t->peer));
        addr[colon - t->peer] = '\0';
        sa.sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10));
        if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
                die("--connect address");
        for (;;) {
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                        break;
                snprintf(last_tcp_err, sizeof(last_tcp_err), "connect:%s", strerror(errno));
                if (fd >= 0)
                        close(fd);
                tcp_report(0);
                sleep_ms(100);
        }
        snprintf(last_tcp_err, sizeof(last_tcp_err), "none");
        for (seq = 1;; seq++) {
                if (full_io(fd, &seq, sizeof(seq), true) < 0 ||
                    full_io(fd, &echo, sizeof(echo), false) < 0) {
                        tcp_report(rounds);
                        for (;;)
                                pause();
                }
                if (echo != seq) {
                        snprintf(last_tcp_err, sizeof(last_tcp_err), "echo-%llu-for-%llu", echo, seq);
                        tcp_report(rounds);
                        for (;;)
                                pause();
                }
                tcp_report(++rounds);
                sleep_ms(t->period);
        }
}

static void run_tcp(void *arg) {
        const tcp_cfg *t = arg;
        if (t->peer)
                tcp_client(t);
        else
                tcp_server(t);
}

/* ---- PID 1 ------------------------------------------------------------------- */

static const char *landlock_state(void) {
        int fd = open("/etc/nm-landlock-probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return errno == EACCES ? "denied" : "error";
        close(fd);
        unlink("/etc/nm-landlock-probe");
        return "allowed";
}

static char probe_state[32] = "waiting";
static unsigned long probes_killed;

/* Reaps whatever ended. A probe that ended is counted and replaced, so
 * that the filter can be tried again after every move. */
static void reap(pid_t *probe) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                if (pid == *probe) {
                        if (WIFSIGNALED(status)) {
                                snprintf(probe_state, sizeof(probe_state), "killed-%d", WTERMSIG(status));
                                probes_killed++;
                        } else
                                snprintf(probe_state, sizeof(probe_state), "survived-%d",
                                         WEXITSTATUS(status));
                        *probe = spawn("nm-probe", run_probe, NULL);
                }
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"status", required_argument, NULL, 's'},
                {"period", required_argument, NULL, 'p'},
                {"listen", required_argument, NULL, 'l'},
                {"connect", required_argument, NULL, 'c'},
                {},
        };
        tcp_cfg tcp = {.period = 100};
        unsigned long long count = 0;
        long long last, max_gap = 0;
        int c, logfd;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case 's': status_dir = optarg; break;
                case 'p': tcp.period = strtol(optarg, NULL, 10); break;
                case 'l': tcp.port = (int)strtol(optarg, NULL, 10); break;
                case 'c': tcp.peer = optarg; break;
                default: return 2;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        /* One line on stdout: it shows where the container's output goes. */
        printf("nm-native-work: started as pid %d\n", (int)getpid());
        fflush(stdout);
        logfd = open("/tmp/nm-log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0)
                die("/tmp/nm-log");
        data_file tmp = data_create("/tmp/nm-data", 7), shm = data_create("/dev/shm/nm-data", 11);
        pid_t lock = spawn("nm-lock", run_lock, NULL);
        pid_t stopped = spawn("nm-stopped", run_stopped, NULL);
        pid_t probe = spawn("nm-probe", run_probe, NULL);
        if (tcp.port || tcp.peer)
                spawn("nm-tcp", run_tcp, &tcp);
        last = now_ms();
        for (;;) {
                char line[512];
                long long t = now_ms();
                if (t - last > max_gap)
                        max_gap = t - last;
                last = t;
                count++;
                int n = snprintf(line, sizeof(line), "%llu\n", count);
                if (write(logfd, line, (size_t)n) != n)
                        die("/tmp/nm-log");
                reap(&probe);
                snprintf(line, sizeof(line),
                         "count=%llu pid=%d tmp=%s shm=%s lock=%s stopped=%c probe=%s probes_killed=%lu "
                         "landlock=%s max_gap_ms=%lld\n",
                         count, (int)getpid(), data_ok(&tmp) ? "ok" : "BAD", data_ok(&shm) ? "ok" : "BAD",
                         locks_held(lock) ? "ok" : "BAD", proc_state(stopped), probe_state, probes_killed,
                         landlock_state(), max_gap);
                publish("status", line);
                sleep_ms(tcp.period);
        }
}
