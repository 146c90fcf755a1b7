/* SPDX-License-Identifier: Apache-2.0 */
/* Starts a command as a native nucleus container, in the shape the nucleus
 * runtime gives one (root, detached), and supervises it.
 *
 *   nm-native-start --state-dir DIR [OPTIONS] -- CMD [ARG...]
 *
 * Process tree, as nucleus makes it:
 *   P0  the supervisor (`nucleus create --detach`: a unit of its own). It
 *       creates the cgroup, forks C1, moves C2 into the cgroup, sets up the
 *       veth, address and NAT, writes the state file, then waits; when C1
 *       exits it cleans up: veth, one MASQUERADE rule, the address
 *       reservation, the cgroup and the state file.
 *   C1  unshares mnt, uts, ipc, net, pid and cgroup namespaces, makes `/`
 *       rprivate, forks C2 and waits for it: in the host pid namespace, in
 *       every other namespace of the container.
 *   C2  PID 1 of the new pid namespace (a session leader): builds the tmpfs
 *       root and pivots into it (native-root.c), drops privileges
 *       (native-sec.c) and execs CMD (or, with --init, a host binary as the
 *       production-mode init).
 * The state file's pid is C2's host pid. The invoking process prints
 * "<id> <pid>" once CMD runs and exits; P0 lives on. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"
#include "native.h"

#define USAGE                                                                                            \
        "usage: nm-native-start --state-dir DIR [--name NAME] [--runtime-dir DIR] [--context DIR]\n"     \
        "         [--cgroup-root DIR] [--no-cgroup] [--supervisor-cgroup DIR] [--no-cgroupns]\n"         \
        "         [--memory BYTES] [--cpu-quota US] [--pids-max N]\n"                                    \
        "         [--network none|bridge|tap] [--bridge NAME] [--address IP] [--rootfs-size SIZE]\n"     \
        "         [--publish [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|udp]]...\n"                               \
        "         [--volume HOST:CTR[:ro]]... [--secret HOST:NAME]...\n"                                 \
        "         [--stdio journal:SOCKET|pipe:FILE|null] [--landlock] [--init PATH] [--memfd-resolv]\n" \
        "         [--supervisor-log FILE] [--gvisor] -- CMD [ARG...]\n"

static FILE *logf_;

void native_log(const char *fmt, ...) {
        va_list ap;
        FILE *f = logf_ ? logf_ : stderr;
        fprintf(f, "[nm-native-start %d] ", (int)getpid());
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        fputc('\n', f);
        fflush(f);
}

/* Runs argv (PATH lookup), its output into the log; the exit status. */
int native_run(char *const argv[]) {
        int status;
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int fd = logf_ ? fileno(logf_) : 2;
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (null >= 0)
                        dup2(null, 0);
                dup2(fd, 1);
                dup2(fd, 2);
                execvp(argv[0], argv);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                native_log("command failed (status 0x%x): %s ...", status, argv[0]);
                return -EIO;
        }
        return 0;
}

int native_write_str(const char *path, const char *s) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        int r = 0;
        if (fd < 0)
                return -errno;
        if (write(fd, s, strlen(s)) < 0)
                r = -errno;
        close(fd);
        return r;
}

/* ---- options ------------------------------------------------------------ */

static int parse_bind(char *arg, native_bind *b, bool secret) {
        char *colon = strchr(arg, ':');
        if (!colon || colon == arg || !colon[1])
                return -EINVAL;
        *colon = '\0';
        b->host = arg;
        b->ctr = colon + 1;
        char *ro = strrchr(b->ctr, ':');
        if (!secret && ro && strcmp(ro, ":ro") == 0) {
                *ro = '\0';
                b->ro = true;
        }
        return secret ? (strchr(b->ctr, '/') ? -EINVAL : 0) : (b->ctr[0] == '/' ? 0 : -EINVAL);
}

static int parse_stdio(const char *arg, native_cfg *cfg) {
        if (strcmp(arg, "null") == 0) {
                cfg->stdio = NATIVE_STDIO_NULL;
                return 0;
        }
        if (strncmp(arg, "journal:", 8) == 0 && arg[8]) {
                cfg->stdio = NATIVE_STDIO_JOURNAL;
                cfg->stdio_target = arg + 8;
                return 0;
        }
        if (strncmp(arg, "pipe:", 5) == 0 && arg[5]) {
                cfg->stdio = NATIVE_STDIO_PIPE;
                cfg->stdio_target = arg + 5;
                return 0;
        }
        return -EINVAL;
}

static int parse_net(const char *arg, native_cfg *cfg) {
        static const char *const names[] = {
                [NATIVE_NET_NONE] = "none", [NATIVE_NET_BRIDGE] = "bridge", [NATIVE_NET_TAP] = "tap"};
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (strcmp(arg, names[i]) == 0) {
                        cfg->net = (native_net)i;
                        return 0;
                }
        return -EINVAL;
}

enum {
        O_STATE = 0x100,
        O_NAME,
        O_RUNTIME,
        O_CONTEXT,
        O_CGROOT,
        O_NOCG,
        O_SUPCG,
        O_NOCGNS,
        O_MEM,
        O_CPU,
        O_PIDS,
        O_NET,
        O_BRIDGE,
        O_ADDR,
        O_RSIZE,
        O_VOL,
        O_SECRET,
        O_STDIO,
        O_LANDLOCK,
        O_INIT,
        O_MEMFD,
        O_SUPLOG,
        O_GVISOR,
        O_PUBLISH,
};

/* [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|udp], split in place. */
static int parse_port(char *arg, native_port *p) {
        char *slash = strchr(arg, '/'), *f[3];
        unsigned n = 0;

        p->proto = "tcp";
        if (slash) {
                *slash = '\0';
                p->proto = slash + 1;
                if (strcmp(p->proto, "tcp") != 0 && strcmp(p->proto, "udp") != 0)
                        return -EINVAL;
        }
        for (char *s = arg; s && n < 3; n++) {
                f[n] = s;
                s = strchr(s, ':');
                if (s)
                        *s++ = '\0';
        }
        if (n < 2)
                return -EINVAL;
        p->host_ip = n == 3 ? f[0] : NULL;
        p->host_port = f[n - 2];
        p->ctr_port = f[n - 1];
        for (unsigned i = n - 2; i < n; i++) {
                char *end;
                unsigned long v = strtoul(f[i], &end, 10);
                if (*end || v == 0 || v > 65535)
                        return -EINVAL;
        }
        return 0;
}

static int parse_args(int argc, char **argv, native_cfg *cfg, const char **suplog) {
        static const struct option opts[] = {
                {"state-dir", required_argument, NULL, O_STATE},
                {"name", required_argument, NULL, O_NAME},
                {"runtime-dir", required_argument, NULL, O_RUNTIME},
                {"context", required_argument, NULL, O_CONTEXT},
                {"cgroup-root", required_argument, NULL, O_CGROOT},
                {"no-cgroup", no_argument, NULL, O_NOCG},
                {"supervisor-cgroup", required_argument, NULL, O_SUPCG},
                {"no-cgroupns", no_argument, NULL, O_NOCGNS},
                {"memory", required_argument, NULL, O_MEM},
                {"cpu-quota", required_argument, NULL, O_CPU},
                {"pids-max", required_argument, NULL, O_PIDS},
                {"network", required_argument, NULL, O_NET},
                {"bridge", required_argument, NULL, O_BRIDGE},
                {"address", required_argument, NULL, O_ADDR},
                {"rootfs-size", required_argument, NULL, O_RSIZE},
                {"volume", required_argument, NULL, O_VOL},
                {"secret", required_argument, NULL, O_SECRET},
                {"stdio", required_argument, NULL, O_STDIO},
                {"landlock", no_argument, NULL, O_LANDLOCK},
                {"init", required_argument, NULL, O_INIT},
                {"memfd-resolv", no_argument, NULL, O_MEMFD},
                {"supervisor-log", required_argument, NULL, O_SUPLOG},
                {"gvisor", no_argument, NULL, O_GVISOR},
                {"publish", required_argument, NULL, O_PUBLISH},
                {},
        };
        bool no_cgroup = false;
        int c;

        while ((c = getopt_long(argc, argv, "+", opts, NULL)) >= 0) {
                int r = 0;
                switch (c) {
                case O_STATE: cfg->state_dir = optarg; break;
                case O_NAME: cfg->name = optarg; break;
                case O_RUNTIME: cfg->runtime_dir = optarg; break;
                case O_CONTEXT: cfg->context = optarg; break;
                case O_CGROOT: cfg->cgroup_root = optarg; break;
                case O_NOCG: no_cgroup = true; break;
                case O_SUPCG: cfg->supervisor_cgroup = optarg; break;
                case O_NOCGNS: cfg->cgroupns = false; break;
                case O_MEM: cfg->memory_max = strtoull(optarg, NULL, 10); break;
                case O_CPU: cfg->cpu_quota_us = strtoull(optarg, NULL, 10); break;
                case O_PIDS: cfg->pids_max = strtoull(optarg, NULL, 10); break;
                case O_NET: r = parse_net(optarg, cfg); break;
                case O_BRIDGE: cfg->bridge = optarg; break;
                case O_ADDR: cfg->address = optarg; break;
                case O_RSIZE: cfg->rootfs_size = optarg; break;
                case O_VOL:
                        r = cfg->n_volumes < NATIVE_MAX_BINDS
                                    ? parse_bind(optarg, &cfg->volumes[cfg->n_volumes++], false)
                                    : -E2BIG;
                        break;
                case O_SECRET:
                        r = cfg->n_secrets < NATIVE_MAX_BINDS
                                    ? parse_bind(optarg, &cfg->secrets[cfg->n_secrets++], true)
                                    : -E2BIG;
                        break;
                case O_STDIO: r = parse_stdio(optarg, cfg); break;
                case O_LANDLOCK: cfg->landlock = true; break;
                case O_INIT: cfg->init = optarg; break;
                case O_MEMFD: cfg->memfd_resolv = true; break;
                case O_SUPLOG: *suplog = optarg; break;
                case O_GVISOR: cfg->gvisor = true; break;
                case O_PUBLISH:
                        r = cfg->n_ports < NATIVE_MAX_PORTS ? parse_port(optarg, &cfg->ports[cfg->n_ports++])
                                                            : -E2BIG;
                        break;
                default: r = -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "nm-native-start: bad option %s\n%s", argv[optind - 1], USAGE);
                        return -EINVAL;
                }
        }
        if (!cfg->state_dir || optind >= argc) {
                fputs(USAGE, stderr);
                return -EINVAL;
        }
        if (no_cgroup)
                cfg->cgroup_root = NULL;
        cfg->command = argv + optind;
        return 0;
}

static void make_id(native_cfg *cfg) {
        unsigned char raw[16];
        if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
                abort();
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(cfg->id + 2 * i, 3, "%02x", raw[i]);
        if (!cfg->name)
                cfg->name = cfg->id;
}

/* ---- stdio -------------------------------------------------------------- */

/* A journald stdout stream: connect, then the header journald expects
 * (identifier, unit id, priority, level prefix, forward to syslog, kmsg,
 * console), then the lines. */
static int journal_connect(const native_cfg *cfg) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char header[256];
        int fd;

        if (strlen(cfg->stdio_target) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, cfg->stdio_target, strlen(cfg->stdio_target) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        int n = snprintf(header, sizeof(header), "nucleus-%.12s\nnucleus-%.12s.service\n6\n0\n0\n0\n0\n",
                         cfg->id, cfg->id);
        if (loop_write(fd, header, (size_t)n) < 0) {
                close(fd);
                return -EIO;
        }
        return fd;
}

/* The container's 0, 1, 2 (dup2'ed in C1) and what P0 keeps: the read end
 * of the pipe it drains, else -1. */
typedef struct native_stdio_fds {
        int in, out, err;
        int drain;
        int drain_to;
} native_stdio_fds;

static int stdio_open(const native_cfg *cfg, native_stdio_fds *s) {
        int p[2];
        *s = (native_stdio_fds){-1, -1, -1, -1, -1};
        /* The host's /dev/null, opened before any namespace exists: the
         * container's stdin lives on a mount it cannot see. */
        s->in = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (s->in < 0)
                return -errno;
        switch (cfg->stdio) {
        case NATIVE_STDIO_NULL: s->out = s->err = s->in; return 0;
        case NATIVE_STDIO_JOURNAL:
                s->out = journal_connect(cfg);
                if (s->out < 0)
                        return s->out;
                s->err = s->out;
                return 0;
        case NATIVE_STDIO_PIPE:
                s->drain_to = open(cfg->stdio_target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (s->drain_to < 0 || pipe2(p, O_CLOEXEC) < 0)
                        return -errno;
                s->drain = p[0];
                s->out = s->err = p[1];
                return 0;
        }
        return -EINVAL;
}

/* ---- the state file ------------------------------------------------------- */

static int read_start_ticks(pid_t pid, uint64_t *ret) {
        _cleanup_free_ char *buf = NULL;
        char path[64], *p;
        size_t len;
        int r;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        r = read_file_at(AT_FDCWD, path, 4096, &buf, &len);
        if (r < 0)
                return r;
        p = strrchr(buf, ')');
        for (int field = 2; p && field < 22; field++)
                p = strchr(p + 1, ' ');
        if (!p || p[1] < '0' || p[1] > '9')
                return -EBADMSG;
        *ret = strtoull(p + 1, NULL, 10);
        return 0;
}

static json_t *u64_or_null(uint64_t v) {
        return v ? json_integer((json_int_t)v) : json_null();
}

/* Field order and types as nucleus writes them. */
static json_t *state_json(const native_cfg *cfg, const native_node_state *st, pid_t pid, uint64_t ticks) {
        json_t *o = json_object(), *argv = json_array();
        for (char **a = cfg->command; *a; a++)
                json_array_append_new(argv, json_string(*a));
        json_object_set_new(o, "id", json_string(cfg->id));
        json_object_set_new(o, "name", json_string(cfg->name));
        json_object_set_new(o, "pid", json_integer(pid));
        json_object_set_new(o, "command", argv);
        json_object_set_new(o, "started_at", json_integer((json_int_t)time(NULL)));
        json_object_set_new(o, "memory_limit", u64_or_null(cfg->memory_max));
        json_object_set_new(o, "cpu_limit", u64_or_null(cfg->cpu_quota_us));
        json_object_set_new(o, "using_gvisor", json_boolean(cfg->gvisor));
        json_object_set_new(o, "rootless", json_false());
        json_object_set_new(o, "cgroup_path",
                            st->cgroup_path[0] ? json_string(st->cgroup_path) : json_null());
        json_object_set_new(o, "config_hash", json_null());
        json_object_set_new(o, "creator_uid", json_integer(getuid()));
        json_object_set_new(o, "process_uid", json_integer(0));
        json_object_set_new(o, "process_gid", json_integer(0));
        json_object_set_new(o, "additional_gids", json_array());
        json_object_set_new(o, "start_ticks", json_integer((json_int_t)ticks));
        json_object_set_new(o, "status", json_string("running"));
        json_object_set_new(o, "bundle_path", json_null());
        json_object_set_new(o, "annotations", json_object());
        return o;
}

static int write_state(const native_cfg *cfg, const native_node_state *st, pid_t pid) {
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int dfd = -EBADF;
        char file[64];
        uint64_t ticks;
        json_t *o;
        int r;

        r = read_start_ticks(pid, &ticks);
        if (r < 0)
                return r;
        o = state_json(cfg, st, pid, ticks);
        text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (!text)
                return -ENOMEM;
        dfd = mkdir_p_secure(cfg->state_dir, 0700);
        if (dfd < 0)
                return dfd;
        snprintf(file, sizeof(file), "%s.json", cfg->id);
        return write_file_atomic_at(dfd, file, text, strlen(text), 0600);
}

/* Removes the state file only while it still names this container's pid: a
 * copy restored on this node meanwhile has its own. */
static void remove_state(const native_cfg *cfg, pid_t pid) {
        _cleanup_free_ char *text = NULL;
        char path[4096];
        json_t *o;

        snprintf(path, sizeof(path), "%s/%s.json", cfg->state_dir, cfg->id);
        if (read_file_at(AT_FDCWD, path, 1 << 20, &text, NULL) < 0)
                return;
        o = json_loads(text, 0, NULL);
        if (o && json_integer_value(json_object_get(o, "pid")) == pid) {
                if (unlink(path) == 0)
                        native_log("removed state file %s", path);
        } else
                native_log("state file %s belongs to another copy now; kept", path);
        json_decref(o);
}

/* ---- C1 and C2 -------------------------------------------------------------- */

typedef struct native_pipes {
        int c2pid[2]; /* C1 -> P0: C2's host pid */
        int go[2];    /* P0 -> C2: cgroup and network are ready */
        int exec[2];  /* C2 -> P0: an error text, or EOF at exec (CLOEXEC) */
} native_pipes;

static void report_and_exit(int fd, const char *msg) {
        (void)!write(fd, msg, strlen(msg));
        _exit(127);
}

__attribute__((noreturn)) static void run_c2(const native_cfg *cfg, native_pipes *p) {
        char err[512] = "", c;

        close(p->go[1]);
        close(p->exec[0]);
        if (setsid() < 0)
                report_and_exit(p->exec[1], "setsid failed");
        if (read(p->go[0], &c, 1) != 1)
                _exit(1); /* P0 gave up */
        close(p->go[0]);
        if (sethostname(cfg->name, strlen(cfg->name)) < 0)
                report_and_exit(p->exec[1], "sethostname failed");
        if (native_root_setup(cfg, err, sizeof(err)) < 0 || native_security_apply(cfg, err, sizeof(err)) < 0)
                report_and_exit(p->exec[1], err);
        if (native_init_fd >= 0) {
                /* Production mode: the init comes from the host, never from the
                 * container's root; it runs the command as its child. */
                size_t n = 0;
                while (cfg->command[n])
                        n++;
                char **argv = calloc(n + 3, sizeof(char *));
                if (!argv)
                        report_and_exit(p->exec[1], "out of memory");
                argv[0] = (char *)"nm-native-init";
                argv[1] = (char *)"--";
                memcpy(argv + 2, cfg->command, n * sizeof(char *));
                extern char **environ;
                syscall(SYS_execveat, native_init_fd, "", argv, environ, AT_EMPTY_PATH);
        } else
                execvp(cfg->command[0], cfg->command);
        snprintf(err, sizeof(err), "exec %s: %s", cfg->command[0], strerror(errno));
        report_and_exit(p->exec[1], err);
        _exit(127);
}

__attribute__((noreturn)) static void run_c1(const native_cfg *cfg, native_pipes *p, native_stdio_fds *s) {
        int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID;
        int status;
        pid_t c2;

        if (cfg->cgroupns)
                flags |= CLONE_NEWCGROUP;
        if (dup2(s->in, 0) < 0 || dup2(s->out, 1) < 0 || dup2(s->err, 2) < 0)
                _exit(126);
        if (unshare(flags) < 0)
                report_and_exit(p->exec[1], "unshare failed");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                report_and_exit(p->exec[1], "cannot make / rprivate");
        c2 = fork();
        if (c2 < 0)
                report_and_exit(p->exec[1], "fork of C2 failed");
        if (c2 == 0)
                run_c2(cfg, p);
        close(p->go[0]);
        close(p->go[1]);
        close(p->exec[1]);
        if (write(p->c2pid[1], &c2, sizeof(c2)) != sizeof(c2))
                _exit(1);
        close(p->c2pid[1]);
        while (waitpid(c2, &status, 0) < 0 && errno == EINTR)
                ;
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* ---- P0 --------------------------------------------------------------------- */

static void drain_pipe(native_stdio_fds *s) {
        char buf[4096];
        ssize_t n = read(s->drain, buf, sizeof(buf));
        if (n > 0)
                (void)loop_write(s->drain_to, buf, (size_t)n);
        else if (n == 0) {
                close(s->drain);
                s->drain = -1;
        }
}

/* Waits for C1 (and with it the container) to exit, draining the stdio
 * pipe meanwhile. A stopped container (a dump that left it stopped) is no
 * exit: nothing happens until its tasks are continued or killed. */
static int supervise(pid_t c1, native_stdio_fds *s) {
        int pidfd = (int)syscall(SYS_pidfd_open, c1, 0), status = 0;

        for (;;) {
                struct pollfd pfd[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = s->drain, .events = POLLIN}};
                if (poll(pfd, s->drain >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
                        break;
                if (s->drain >= 0 && pfd[1].revents)
                        drain_pipe(s);
                if (pfd[0].revents)
                        break;
        }
        while (waitpid(c1, &status, 0) < 0 && errno == EINTR)
                ;
        while (s->drain >= 0)
                drain_pipe(s);
        close(pidfd);
        return status;
}

static void tell(int fd, const char *fmt, ...) {
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n > 0)
                (void)!write(fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static int enter_supervisor_cgroup(const native_cfg *cfg) {
        char procs[4096];
        int fd;
        if (!cfg->supervisor_cgroup)
                return 0;
        fd = mkdir_p_secure(cfg->supervisor_cgroup, 0755);
        if (fd < 0)
                return fd;
        close(fd);
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", cfg->supervisor_cgroup);
        return native_write_str(procs, "0");
}

/* Brings the container up; on failure everything set up so far is undone
 * and the reason goes to `ready`. Returns C1's pid. */
static pid_t bring_up(const native_cfg *cfg, native_node_state *st, native_stdio_fds *s, int ready,
                      pid_t *ret_c2) {
        native_pipes p;
        char err[512];
        ssize_t n;
        pid_t c1, c2 = 0;
        int r;

        if (pipe2(p.c2pid, O_CLOEXEC) < 0 || pipe2(p.go, O_CLOEXEC) < 0 || pipe2(p.exec, O_CLOEXEC) < 0)
                return tell(ready, "ERR pipes: %s\n", strerror(errno)), -1;
        r = native_cgroup_create(cfg, st);
        if (r < 0)
                return tell(ready, "ERR cgroup under %s: %s\n", cfg->cgroup_root, strerror(-r)), -1;
        c1 = fork();
        if (c1 < 0)
                return tell(ready, "ERR fork: %s\n", strerror(errno)), -1;
        if (c1 == 0)
                run_c1(cfg, &p, s);
        close(p.c2pid[1]);
        close(p.go[0]);
        close(p.exec[1]);
        if (s->out != s->in && s->drain >= 0)
                close(s->out); /* only the container writes into the pipe */
        if (read(p.c2pid[0], &c2, sizeof(c2)) != sizeof(c2)) {
                n = read(p.exec[0], err, sizeof(err) - 1);
                err[n > 0 ? n : 0] = '\0';
                tell(ready, "ERR C1: %s\n", err[0] ? err : "exited early");
                goto fail;
        }
        if (st->cgroup_path[0]) {
                r = native_cgroup_enter(st->cgroup_path, c2);
                if (r < 0) {
                        tell(ready, "ERR cannot move C2 into %s: %s\n", st->cgroup_path, strerror(-r));
                        goto fail;
                }
        }
        r = native_net_setup(cfg, c2, st);
        if (r < 0) {
                tell(ready, "ERR network setup failed: %s (see the supervisor log)\n", strerror(-r));
                goto fail;
        }
        if (write(p.go[1], "g", 1) != 1) {
                tell(ready, "ERR C2 is gone\n");
                goto fail;
        }
        close(p.go[1]);
        n = read(p.exec[0], err, sizeof(err) - 1);
        if (n > 0) {
                err[n] = '\0';
                tell(ready, "ERR container setup: %s\n", err);
                goto fail;
        }
        close(p.exec[0]);
        close(p.c2pid[0]);
        *ret_c2 = c2;
        return c1;
fail:
        kill(c1, SIGKILL);
        if (c2 > 0)
                kill(c2, SIGKILL);
        waitpid(c1, NULL, 0);
        native_node_cleanup(cfg, st);
        return -1;
}

__attribute__((noreturn)) static void run_p0(const native_cfg *cfg, int ready, const char *suplog) {
        native_node_state st = {.tap_fd = -1};
        native_stdio_fds s;
        pid_t c1, c2 = 0;
        int r, status;

        (void)setsid();
        if (suplog)
                logf_ = fopen(suplog, "ae");
        r = enter_supervisor_cgroup(cfg);
        if (r < 0) {
                tell(ready, "ERR supervisor cgroup %s: %s\n", cfg->supervisor_cgroup, strerror(-r));
                _exit(1);
        }
        r = stdio_open(cfg, &s);
        if (r < 0) {
                tell(ready, "ERR stdio %s: %s\n", strna(cfg->stdio_target), strerror(-r));
                _exit(1);
        }
        c1 = bring_up(cfg, &st, &s, ready, &c2);
        if (c1 < 0)
                _exit(1);
        r = write_state(cfg, &st, c2);
        if (r < 0) {
                tell(ready, "ERR state file in %s: %s\n", cfg->state_dir, strerror(-r));
                kill(c2, SIGKILL);
                waitpid(c1, NULL, 0);
                native_node_cleanup(cfg, &st);
                _exit(1);
        }
        native_log("container %s runs: C1 %d, C2 %d, cgroup %s, address %s", cfg->id, (int)c1, (int)c2,
                   st.cgroup_path[0] ? st.cgroup_path : "none", st.address[0] ? st.address : "none");
        tell(ready, "OK %s %d\n", cfg->id, (int)c2);
        close(ready);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null, 0);
        dup2(logf_ ? fileno(logf_) : null, 1);
        dup2(logf_ ? fileno(logf_) : null, 2);
        status = supervise(c1, &s);
        native_log("container %s exited (C1 status 0x%x); cleaning up", cfg->id, status);
        native_node_cleanup(cfg, &st);
        remove_state(cfg, c2);
        _exit(0);
}

int main(int argc, char **argv) {
        native_cfg cfg = {
                .runtime_dir = "/run/nucleus",
                .cgroupns = true,
                .pids_max = 512,
                .bridge = "nucleus0",
                .rootfs_size = "1G",
                .stdio = NATIVE_STDIO_NULL,
        };
        const char *suplog = NULL;
        char answer[1024];
        int ready[2];
        ssize_t n;

        /* Nothing the caller left open may reach the container. */
        (void)syscall(SYS_close_range, 3U, ~0U, 0U);
        cfg.cgroup_root = getenv("NUCLEUS_CGROUP_ROOT");
        if (!cfg.cgroup_root || !cfg.cgroup_root[0])
                cfg.cgroup_root = "/sys/fs/cgroup";
        if (parse_args(argc, argv, &cfg, &suplog) < 0)
                return 2;
        make_id(&cfg);
        if (pipe2(ready, O_CLOEXEC) < 0)
                return 1;
        pid_t p0 = fork();
        if (p0 < 0)
                return 1;
        if (p0 == 0) {
                close(ready[0]);
                run_p0(&cfg, ready[1], suplog);
        }
        close(ready[1]);
        n = read(ready[0], answer, sizeof(answer) - 1);
        answer[n > 0 ? n : 0] = '\0';
        if (strncmp(answer, "OK ", 3) != 0) {
                fprintf(stderr, "nm-native-start: %s", answer[0] ? answer + 4 : "the supervisor died\n");
                return 1;
        }
        fputs(answer + 3, stdout);
        return 0;
}
