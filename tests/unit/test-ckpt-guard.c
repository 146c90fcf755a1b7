/* SPDX-License-Identifier: Apache-2.0 */
/* The page files' guard (ckpt/criu-guard.c) on real fanotify: a stranger's
 * open is refused while it stands, a stranger's write is reported, the
 * keeper's tree passes, and once it has stopped nothing waits on it any
 * more, though the group itself is released on a thread of its own. With
 * a gate, the keeper's opens wait until it opens, and are refused if it is
 * barred or the guard stops first. Needs root (fanotify permission events). */
#include <dirent.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "ckpt-internal.h"
#include "test-ckpt-util.h"
#include "test-time.h"

typedef struct {
        char *dir;
        int dirfd;
} fx;

static int setup(void **state) {
        fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        if (geteuid() != 0) {
                /* Skipped, not passed: tests/run fails a skip as root. */
                print_message("not root: fanotify's permission events need CAP_SYS_ADMIN\n");
                free(f);
                skip();
        }
        f->dir = tu_tmpdir();
        tu_write_str(f->dir, "pages-1.img", "page bytes");
        tu_write_str(f->dir, "pagemap-1.img", "map");
        f->dirfd = tu_open_dir(f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fx *f = *state;

        if (!f)
                return 0;
        close(f->dirfd);
        tu_rm(f->dir);
        free(f);
        return 0;
}

/* In a child (a stranger to the guard unless it is the keeper): open NAME
 * for reading; the child's exit status is 0, or the errno of the open. */
static pid_t child_open(const char *dir, const char *name, int go_fd) {
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                char c, path[4096];
                int fd;

                /* An open left waiting on a guard nobody answers ends here,
                 * as a failure, not a hang. */
                alarm((unsigned)(t_ms(10000) / 1000));
                if (go_fd >= 0 && read(go_fd, &c, 1) != 1)
                        _exit(100);
                snprintf(path, sizeof(path), "%s/%s", dir, name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                _exit(fd >= 0 ? 0 : errno);
        }
        return pid;
}

static int child_status(pid_t pid) {
        int st = 0;

        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        return WEXITSTATUS(st);
}

/* The marks the process's fanotify descriptors still show (fdinfo's
 * "fanotify ino:" lines), how many such descriptors are open, and the last
 * one's number. */
static unsigned fanotify_marks(unsigned *groups, int *last) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        unsigned marks = 0;

        assert_non_null(d);
        *groups = 0;
        while ((de = readdir(d))) {
                char link[64], target[64] = "", info[64], *text = NULL;
                ssize_t n;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
                n = readlink(link, target, sizeof(target) - 1);
                if (n <= 0 || strcmp(target, "anon_inode:[fanotify]") != 0)
                        continue;
                snprintf(info, sizeof(info), "/proc/self/fdinfo/%s", de->d_name);
                if (read_file_at(AT_FDCWD, info, 1 << 16, &text, NULL) < 0)
                        continue; /* released meanwhile */
                (*groups)++;
                if (last)
                        *last = (int)strtol(de->d_name, NULL, 10);
                for (const char *p = text; (p = strstr(p, "fanotify ino:")); p++)
                        marks++;
                free(text);
        }
        closedir(d);
        return marks;
}

/* Waits until WANT fanotify descriptors are open (the count in *groups);
 * -ETIMEDOUT after a bound that only guards against a hang. */
static int wait_groups(unsigned want, unsigned *groups) {
        uint64_t until = t_now_ms() + t_ms(10000);

        for (;;) {
                (void)fanotify_marks(groups, NULL);
                if (*groups == want)
                        return 0;
                if (t_now_ms() > until)
                        return -ETIMEDOUT;
                t_stall_ms(5);
        }
}

static void test_stranger_refused_keeper_allowed(void **state) {
        fx *f = *state;
        ckpt__guard *g = NULL;
        nm_error err = {};
        char msg[256];
        int go[2], fd;
        pid_t keeper;

        assert_int_equal(ckpt__guard_start(f->dirfd, NULL, &g, &err), 0);
        /* Ourselves: allowed. */
        fd = openat(f->dirfd, "pages-1.img", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        close(fd);
        /* A stranger: refused. Only page files are marked. */
        assert_int_equal(child_status(child_open(f->dir, "pages-1.img", -1)), EPERM);
        assert_int_equal(child_status(child_open(f->dir, "pagemap-1.img", -1)), 0);
        /* The keeper (CRIU, when it runs): allowed. */
        assert_int_equal(pipe2(go, O_CLOEXEC), 0);
        keeper = child_open(f->dir, "pages-1.img", go[0]);
        ckpt__guard_set_keeper(g, keeper);
        assert_int_equal(write(go[1], "x", 1), 1);
        assert_int_equal(child_status(keeper), 0);
        close(go[0]);
        close(go[1]);

        assert_int_equal(ckpt__guard_stop(g, msg, sizeof(msg)), 0);
        assert_non_null(strstr(msg, "0 change(s) and 1 refused open(s)"));
}

static void test_stranger_write_reported(void **state) {
        fx *f = *state;
        ckpt__guard *g = NULL;
        nm_error err = {};
        char msg[256], c;
        int go[2], opened[2], st = 0;
        pid_t pid;

        /* A stranger that opened the file before the guard stood. */
        assert_int_equal(pipe2(go, O_CLOEXEC), 0);
        assert_int_equal(pipe2(opened, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char path[4096];
                int fd;
                snprintf(path, sizeof(path), "%s/pages-1.img", f->dir);
                fd = open(path, O_WRONLY | O_CLOEXEC);
                if (fd < 0 || write(opened[1], "o", 1) != 1 || read(go[0], &c, 1) != 1)
                        _exit(1);
                _exit(pwrite(fd, "X", 1, 0) == 1 ? 0 : 2);
        }
        assert_int_equal(read(opened[0], &c, 1), 1);
        assert_int_equal(ckpt__guard_start_dir(f->dirfd, &g, &err), 0);
        assert_int_equal(write(go[1], "x", 1), 1);
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        for (int i = 0; i < 2; i++) {
                close(go[i]);
                close(opened[i]);
        }
        assert_int_equal(ckpt__guard_stop(g, msg, sizeof(msg)), -EBADMSG);
        assert_non_null(strstr(msg, "1 change(s)"));
}

/* Stopped: its marks are gone at once, so no open waits on a group nobody
 * answers any more, however long the group's release takes (here: until
 * the test lets go of the copy of its descriptor it holds); and the guard's
 * own descriptor is released. */
static void test_stopped_holds_nothing(void **state) {
        fx *f = *state;
        ckpt__guard *g = NULL;
        nm_error err = {};
        unsigned groups = 0;
        int fan = -1, held;

        /* The earlier tests' groups are released on threads of their own:
         * wait until they are, so that the only group here is this one. */
        assert_int_equal(wait_groups(0, &groups), 0);
        assert_int_equal(ckpt__guard_start(f->dirfd, NULL, &g, &err), 0);
        assert_int_equal(fanotify_marks(&groups, &fan), 1);
        assert_int_equal(groups, 1);
        held = fcntl(fan, F_DUPFD_CLOEXEC, 3);
        assert_true(held >= 0);

        assert_int_equal(ckpt__guard_stop(g, NULL, 0), 0);
        assert_int_equal(fanotify_marks(&groups, NULL), 0);
        assert_int_equal(child_status(child_open(f->dir, "pages-1.img", -1)), 0);

        assert_int_equal(wait_groups(1, &groups), 0); /* only the copy */
        close(held);
}

/* Waits until PID is inside openat (the guard holds its open unanswered);
 * -ETIMEDOUT after a bound that only guards against a hang. */
static int wait_in_openat(pid_t pid) {
        uint64_t until = t_now_ms() + t_ms(10000);
        char path[64], want[32];

        snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
        snprintf(want, sizeof(want), "%d ", (int)SYS_openat);
        for (;;) {
                _cleanup_free_ char *text = NULL;
                if (read_file_at(AT_FDCWD, path, 4096, &text, NULL) >= 0 &&
                    strncmp(text, want, strlen(want)) == 0)
                        return 0;
                if (t_now_ms() > until)
                        return -ETIMEDOUT;
                t_stall_ms(5);
        }
}

/* The keeper (CRIU), made known to the guard before it opens the page
 * file. */
static pid_t keeper_open(fx *f, ckpt__guard *g) {
        int go[2];
        pid_t keeper;

        assert_int_equal(pipe2(go, O_CLOEXEC), 0);
        keeper = child_open(f->dir, "pages-1.img", go[0]);
        ckpt__guard_set_keeper(g, keeper);
        assert_int_equal(write(go[1], "x", 1), 1);
        close(go[0]);
        close(go[1]);
        return keeper;
}

/* The keeper opening the page file under a shut gate: held until the gate
 * says how; a held open has not returned. */
static pid_t keeper_held(fx *f, ckpt__guard *g) {
        pid_t keeper = keeper_open(f, g);

        assert_int_equal(wait_in_openat(keeper), 0);
        assert_int_equal(waitpid(keeper, NULL, WNOHANG), 0);
        return keeper;
}

/* A guard over the fixture's page file, with a shut gate. */
static ckpt__guard *gated_guard(fx *f, ckpt__gate *gate) {
        ckpt__guard *g = NULL;
        nm_error err = {};

        *gate = (ckpt__gate){.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), .state = CKPT__GATE_SHUT};
        assert_true(gate->fd >= 0);
        assert_int_equal(ckpt__guard_start(f->dirfd, gate, &g, &err), 0);
        return g;
}

static void gate_set(ckpt__gate *gate, ckpt__gate_state state) {
        gate->state = state;
        assert_int_equal(eventfd_write(gate->fd, 1), 0);
}

static void test_gate_holds_keeper_until_open(void **state) {
        fx *f = *state;
        ckpt__gate gate;
        ckpt__guard *g = gated_guard(f, &gate);
        pid_t keeper = keeper_held(f, g);
        char msg[256];
        int fd;

        /* Ourselves (the signing): never held, the keeper's open waits on. */
        fd = openat(f->dirfd, "pages-1.img", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(waitpid(keeper, NULL, WNOHANG), 0);
        /* A stranger: refused at once, gate or not. */
        assert_int_equal(child_status(child_open(f->dir, "pages-1.img", -1)), EPERM);

        gate_set(&gate, CKPT__GATE_OPEN);
        assert_int_equal(child_status(keeper), 0);
        assert_int_equal(ckpt__guard_stop(g, msg, sizeof(msg)), 0);
        assert_non_null(strstr(msg, "0 change(s) and 1 refused open(s)"));
        close(gate.fd);
}

static void test_gate_barred_refuses_keeper(void **state) {
        fx *f = *state;
        ckpt__gate gate;
        ckpt__guard *g = gated_guard(f, &gate);
        pid_t keeper = keeper_held(f, g);
        char msg[256];

        gate_set(&gate, CKPT__GATE_BARRED);
        assert_int_equal(child_status(keeper), EPERM);
        /* Barred stays barred: a later open of CRIU's is refused at once. */
        assert_int_equal(child_status(keeper_open(f, g)), EPERM);
        /* CRIU refused is not a stranger refused. */
        assert_int_equal(ckpt__guard_stop(g, msg, sizeof(msg)), 0);
        assert_string_equal(msg, "");
        close(gate.fd);
}

static void test_gate_shut_at_stop_refuses(void **state) {
        fx *f = *state;
        ckpt__gate gate;
        ckpt__guard *g = gated_guard(f, &gate);
        pid_t keeper = keeper_held(f, g);

        assert_int_equal(ckpt__guard_stop(g, NULL, 0), 0);
        assert_int_equal(child_status(keeper), EPERM);
        close(gate.fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_stranger_refused_keeper_allowed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stranger_write_reported, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stopped_holds_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gate_holds_keeper_until_open, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gate_barred_refuses_keeper, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gate_shut_at_stop_refuses, setup, teardown),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
