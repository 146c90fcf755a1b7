/* SPDX-License-Identifier: Apache-2.0 */
/* Starts a command as a nucleus-style container and registers it.
 *
 *   nm-ctr-start --state-dir DIR [--name NAME] [--gvisor] [--console FILE] -- CMD [ARG...]
 *
 * The command runs as the init of new pid, uts, ipc and net namespaces and
 * leads its own session (CRIU refuses a tree whose session leader is outside
 * its pid namespace). Its stdio goes to /dev/null or FILE, never to our
 * pipes, which CRIU could not dump. The state file DIR/<id>.json follows the
 * nucleus runtime's format and rules (0600, tmp+rename, 0700 directory). On
 * success it prints "<id> <host pid>" and exits; the container lives on,
 * reparented to init. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"

static int read_start_ticks(pid_t pid, unsigned long long *ret) {
        char path[64], *buf = NULL, *p;
        size_t len;
        int r;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        r = read_file_at(AT_FDCWD, path, 4096, &buf, &len);
        if (r < 0)
                return r;
        /* comm (field 2) may hold spaces; fields after the last ')' are plain. */
        p = strrchr(buf, ')');
        for (int field = 2; p && field < 22; field++)
                p = strchr(p + 1, ' ');
        if (p && p[1] >= '0' && p[1] <= '9') {
                *ret = strtoull(p + 1, NULL, 10);
                r = 0;
        } else
                r = -EBADMSG;
        free(buf);
        return r;
}

static void child_exec(int syncfd, const char *name, const char *console, char **cmd) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        int out = console ? open(console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : null;

        if (setsid() < 0 || sethostname(name, strlen(name)) < 0 || null < 0 || out < 0)
                goto fail;
        if (dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
                goto fail;
        execvp(cmd[0], cmd);
fail:;
        int e = errno;
        (void)!write(syncfd, &e, sizeof(e));
        _exit(127);
}

static json_t *state_json(const char *id, const char *name, pid_t pid, char **cmd, unsigned long long ticks,
                          bool gvisor) {
        json_t *o = json_object(), *argv = json_array();
        for (char **a = cmd; *a; a++)
                json_array_append_new(argv, json_string(*a));
        /* Field order as the nucleus runtime writes it. */
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "name", json_string(name));
        json_object_set_new(o, "pid", json_integer(pid));
        json_object_set_new(o, "command", argv);
        json_object_set_new(o, "started_at", json_integer((json_int_t)time(NULL)));
        json_object_set_new(o, "memory_limit", json_null());
        json_object_set_new(o, "cpu_limit", json_null());
        json_object_set_new(o, "using_gvisor", json_boolean(gvisor));
        json_object_set_new(o, "rootless", json_false());
        json_object_set_new(o, "cgroup_path", json_null());
        json_object_set_new(o, "config_hash", json_null());
        json_object_set_new(o, "creator_uid", json_integer(getuid()));
        json_object_set_new(o, "start_ticks", json_integer((json_int_t)ticks));
        json_object_set_new(o, "status", json_string("running"));
        json_object_set_new(o, "bundle_path", json_null());
        json_object_set_new(o, "annotations", json_object());
        return o;
}

static int write_state(const char *dir, const char *id, json_t *o) {
        _cleanup_free_ char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        _cleanup_close_ int dfd = -EBADF;
        char file[64];

        if (!text)
                return -ENOMEM;
        dfd = mkdir_p_secure(dir, 0700);
        if (dfd < 0)
                return dfd;
        snprintf(file, sizeof(file), "%s.json", id);
        return write_file_atomic_at(dfd, file, text, strlen(text), 0600);
}

/* Ends the process once it has left for new namespaces: _exit skips the
 * atexit handlers, where LeakSanitizer (in a sanitizer build) would clone
 * its tracer into the new pid namespace, unable to reach us, and spin. */
__attribute__((noreturn)) static void finish(int rc) {
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"state-dir", required_argument, NULL, 's'},
                {"name", required_argument, NULL, 'n'},
                {"gvisor", no_argument, NULL, 'g'},
                {"console", required_argument, NULL, 'c'},
                {},
        };
        const char *state_dir = NULL, *name = NULL, *console = NULL;
        bool gvisor = false;
        unsigned char raw[16];
        char id[33];
        unsigned long long ticks;
        int c, sync[2], err = 0, r;

        while ((c = getopt_long(argc, argv, "+", opts, NULL)) >= 0) {
                switch (c) {
                case 's': state_dir = optarg; break;
                case 'n': name = optarg; break;
                case 'g': gvisor = true; break;
                case 'c': console = optarg; break;
                default: return 2;
                }
        }
        if (!state_dir || optind >= argc) {
                fprintf(stderr, "usage: nm-ctr-start --state-dir DIR [--name NAME] [--gvisor] "
                                "[--console FILE] -- CMD [ARG...]\n");
                return 2;
        }
        if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
                return 1;
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(id + 2 * i, 3, "%02x", raw[i]);
        if (!name)
                name = id;
        if (pipe2(sync, O_CLOEXEC) < 0 ||
            unshare(CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET) < 0) {
                perror("nm-ctr-start: namespaces");
                return 1;
        }
        pid_t pid = fork();
        if (pid < 0)
                finish(1);
        if (pid == 0)
                child_exec(sync[1], name, console, argv + optind);
        close(sync[1]);
        if (read(sync[0], &err, sizeof(err)) == sizeof(err)) {
                fprintf(stderr, "nm-ctr-start: exec %s: %s\n", argv[optind], strerror(err));
                waitpid(pid, NULL, 0);
                finish(1);
        }
        r = read_start_ticks(pid, &ticks);
        if (r >= 0) {
                json_t *state = state_json(id, name, pid, argv + optind, ticks, gvisor);
                r = write_state(state_dir, id, state);
                json_decref(state);
        }
        if (r < 0) {
                fprintf(stderr, "nm-ctr-start: state file in %s: %s\n", state_dir, strerror(-r));
                kill(pid, SIGKILL);
                finish(1);
        }
        printf("%s %d\n", id, (int)pid);
        finish(0);
}
