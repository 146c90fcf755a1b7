/* SPDX-License-Identifier: Apache-2.0 */
/* Stopped process trees, as CRIU's --leave-stopped leaves them: listing,
 * resuming every task, killing them all. Our own children stand in for a
 * restored tree, so no root is needed. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "test-ckpt-util.h"
#include "test-time.h"

/* A parent that forks a child; both wait. The grandchild reports its pid
 * itself once it has asked to die with its parent, so that no test can kill
 * the parent before that and leave the grandchild behind. */
static pid_t spawn_tree(pid_t *ret_grandchild) {
        int p[2];
        pid_t pid, gc = 0;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                pid_t middle = getpid();
                pid_t c = fork();
                if (c == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        if (getppid() != middle)
                                _exit(1);
                        pid_t self = getpid();
                        (void)!write(p[1], &self, sizeof(self));
                }
                for (;;)
                        pause();
        }
        assert_int_equal(read(p[0], &gc, sizeof(gc)), sizeof(gc));
        close(p[0]);
        close(p[1]);
        *ret_grandchild = gc;
        return pid;
}

static char state_of(pid_t pid) {
        _cleanup_free_ char *stat = NULL;
        if (ckpt__proc_read(pid, "stat", &stat, NULL) < 0)
                return '-';
        const char *p = strrchr(stat, ')');
        if (!p)
                return '?';
        return p[2];
}

/* The grandchild is not ours to wait for: its state is polled, with a
 * bound against hanging only (scaled, see test-time.h). */
static void wait_state(pid_t pid, const char *states) {
        uint64_t deadline = t_now_ms() + t_ms(30000);

        while (!strchr(states, state_of(pid))) {
                if (t_now_ms() >= deadline)
                        fail_msg("pid %d stays in state %c, expected one of %s", (int)pid, state_of(pid),
                                 states);
                usleep(5000);
        }
}

static void test_tree_pids(void **state) {
        (void)state;
        pid_t gc, pid = spawn_tree(&gc);
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;

        assert_int_equal(ckpt_tree_pids(pid, &pids, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(pids[0], pid);
        assert_int_equal(pids[1], gc);
        assert_int_equal(ckpt_tree_pids(1, &pids, &n), -EINVAL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        wait_state(gc, "-ZX");
        _cleanup_free_ pid_t *none = NULL;
        assert_int_equal(ckpt_tree_pids(pid, &none, &n), -ESRCH);
}

/* Stopped like CRIU leaves them: every task, not only the root. Resuming
 * must reach the grandchild too. */
static void test_resume_every_task(void **state) {
        (void)state;
        pid_t gc, pid = spawn_tree(&gc);
        uint64_t ticks;
        nm_error err = {};

        assert_int_equal(kill(pid, SIGSTOP), 0);
        assert_int_equal(kill(gc, SIGSTOP), 0);
        wait_state(pid, "T");
        wait_state(gc, "T");
        assert_int_equal(ckpt_proc_start_ticks(pid, &ticks), 0);

        /* The wrong start time: a reused pid is never touched. */
        assert_int_equal(ckpt_resume(pid, ticks + 1, NULL, &err), -ESRCH);
        assert_msg_contains(&err, "another process");
        usleep(20000);
        assert_int_equal(state_of(pid), 'T');
        assert_int_equal(state_of(gc), 'T');

        assert_int_equal(ckpt_resume(pid, ticks, NULL, NULL), 0);
        wait_state(pid, "S");
        wait_state(gc, "S");

        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

/* A task that was stopped before the dump stays stopped: CRIU's images name
 * it by its pid in the tree's pid namespace (here our own), and resuming
 * must pass it over while continuing the rest. Without the keep set, the
 * same resume wakes it. */
static void test_resume_keeps_stopped(void **state) {
        (void)state;
        pid_t gc, pid = spawn_tree(&gc);
        pid_t stopped[] = {gc};
        ckpt_stopped_tasks keep = {.ns_pids = stopped, .n = 1};
        ckpt_stopped_tasks other = {.ns_pids = (pid_t[]){pid + 100000}, .n = 1};
        uint64_t ticks;
        nm_error err = {};

        assert_true(ckpt_stopped_tasks_has(&keep, gc));
        assert_false(ckpt_stopped_tasks_has(&keep, pid));
        assert_false(ckpt_stopped_tasks_has(NULL, gc));
        assert_int_equal(kill(pid, SIGSTOP), 0);
        assert_int_equal(kill(gc, SIGSTOP), 0);
        wait_state(pid, "T");
        wait_state(gc, "T");
        assert_int_equal(ckpt_proc_start_ticks(pid, &ticks), 0);

        assert_int_equal(ckpt_resume(pid, ticks, &keep, &err), 0);
        wait_state(pid, "S");
        usleep(50000);
        assert_int_equal(state_of(gc), 'T');
        /* Again (a retried commit): still only the others. */
        assert_int_equal(ckpt_resume(pid, ticks, &keep, &err), 0);
        usleep(20000);
        assert_int_equal(state_of(gc), 'T');

        /* A set that names nobody in the tree continues everything. */
        assert_int_equal(kill(pid, SIGSTOP), 0);
        wait_state(pid, "T");
        assert_int_equal(ckpt_resume(pid, ticks, &other, &err), 0);
        wait_state(pid, "S");
        wait_state(gc, "S");

        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

static void test_kill_tree(void **state) {
        (void)state;
        pid_t gc, pid = spawn_tree(&gc);
        uint64_t ticks, gticks;
        int status;

        assert_int_equal(ckpt_proc_start_ticks(gc, &gticks), 0);
        assert_int_equal(kill(pid, SIGSTOP), 0);
        assert_int_equal(kill(gc, SIGSTOP), 0);
        wait_state(gc, "T");
        assert_int_equal(ckpt_proc_start_ticks(pid, &ticks), 0);
        assert_int_equal(ckpt_kill_tree(pid, ticks, NULL), 0);
        /* Gone right away: exited, or a zombie for its parent to reap. */
        assert_true(strchr("-ZX", state_of(pid)) != NULL);
        uint64_t now;
        assert_true(ckpt_proc_start_ticks(gc, &now) < 0 || now != gticks || strchr("ZX", state_of(gc)));
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGKILL);
        /* Nothing left to kill is success. */
        assert_int_equal(ckpt_kill_tree(pid, ticks, NULL), 0);
}

/* One parser for /proc/<pid>/stat: a command with spaces and parentheses
 * in it does not shift the fields after it; a short or bad text is refused. */
static void test_stat_fields(void **state) {
        (void)state;
        const char *odd = "42 (a) (b c)) T 1 42 42 34817 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 0 0\n";
        long long v = 0;
        uint64_t ticks = 0;

        assert_int_equal(ckpt__stat_state(odd), 'T');
        assert_int_equal(ckpt__stat_field(odd, 4, &v), 0);
        assert_int_equal(v, 1);
        assert_int_equal(ckpt__stat_field(odd, 7, &v), 0); /* tty_nr */
        assert_int_equal(v, 34817);
        assert_int_equal(ckpt__stat_field(odd, 8, &v), 0);
        assert_int_equal(v, -1);
        assert_int_equal(ckpt__stat_field(odd, 9, &v), 0); /* flags */
        assert_int_equal(v, 4194560);
        assert_int_equal(ckpt__parse_start_ticks(odd, &ticks), 0);
        assert_int_equal(ticks, 777);
        assert_int_equal(ckpt__stat_field(odd, 25, &v), -EBADMSG); /* past the end */
        assert_int_equal(ckpt__stat_field(odd, 2, &v), -EBADMSG);  /* the command is not a number */
        assert_int_equal(ckpt__stat_field(odd, 3, &v), -EBADMSG);  /* nor is the state */
        assert_int_equal(ckpt__stat_state("42 (x)"), '\0');
        assert_int_equal(ckpt__stat_state("42 (x) Sx 1"), '\0');
        assert_int_equal(ckpt__stat_state("no parenthesis S 1"), '\0');
        assert_int_equal(ckpt__parse_start_ticks("42 (x) S 1 2 3", &ticks), -EBADMSG);
        assert_int_equal(ckpt__stat_field(NULL, 4, &v), -EBADMSG);
}

/* A task on its way out is told from one that runs: PF_EXITING in its
 * flags, or SIGKILL pending (shared or its own); other pending signals and
 * other flags are not. */
static void test_parse_dying(void **state) {
        (void)state;
        /* flags 0x400100: PF_RANDOMIZE | PF_FORKNOEXEC, as a running task. */
        const char *running = "42 (nm memhog) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 0 0";
        const char *exiting = "42 (nm memhog) D 1 42 42 0 -1 4194564 100 0 0 0 1 2 0 0 20 0 1 0 777 0 0";
        const char *quiet = "Name:\tnm-memhog\nSigQ:\t0/1\nSigPnd:\t0000000000000000\n"
                            "ShdPnd:\t0000000000004000\nSigBlk:\t0000000000000000\n";
        const char *shared_kill = "Name:\tx\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n";
        const char *own_kill = "Name:\tx\nSigPnd:\t0000000000000102\nShdPnd:\t0000000000000000\n";

        assert_false(ckpt__parse_dying(running, quiet));
        assert_true(ckpt__parse_dying(exiting, quiet));
        assert_true(ckpt__parse_dying(running, shared_kill));
        assert_true(ckpt__parse_dying(running, own_kill));
        assert_false(ckpt__parse_dying(running, NULL));
        assert_false(ckpt__parse_dying(NULL, NULL));
        assert_false(ckpt__parse_dying("garbage", "garbage"));
        /* A live task of ours runs: it is not dying. */
        assert_false(ckpt__proc_dying(getpid()));
        /* A pid that is gone is not dying either: it is gone. */
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0)
                _exit(0);
        assert_int_equal(waitpid(child, NULL, 0), child);
        assert_false(ckpt__proc_dying(child));
}

/* A tree in our pid namespace cannot be held: its copy needs its pids. */
static void test_holdable_shared_pid_ns(void **state) {
        (void)state;
        pid_t gc, pid = spawn_tree(&gc);
        char why[256] = "";

        assert_int_equal(ckpt_tree_holdable(pid, why, sizeof(why)), 0);
        assert_non_null(strstr(why, "pid namespace"));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        wait_state(gc, "-ZX");
}

typedef enum holder {
        HOLDER_PLAIN,
        HOLDER_FLOCK,
        HOLDER_PTY,
} holder;

/* The init of a new pid namespace, holding what h says; its host pid in
 * *ret_init. The middle process (ours to wait for) dies with it. */
static pid_t spawn_ns_init(holder h, const char *lock_file, pid_t *ret_init) {
        int pid_pipe[2], ready[2];
        pid_t mid, init = 0;
        char ok = 0;

        assert_int_equal(pipe(pid_pipe), 0);
        assert_int_equal(pipe(ready), 0);
        mid = fork();
        assert_true(mid >= 0);
        if (mid == 0) {
                if (unshare(CLONE_NEWPID) < 0)
                        _exit(1);
                pid_t c = fork();
                if (c == 0) {
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        int fd = -1;
                        if (h == HOLDER_FLOCK)
                                fd = open(lock_file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                        if (h == HOLDER_FLOCK && (fd < 0 || flock(fd, LOCK_EX) < 0))
                                _exit(1);
                        if (h == HOLDER_PTY && posix_openpt(O_RDWR | O_NOCTTY) < 0)
                                _exit(1);
                        ok = 1;
                        (void)!write(ready[1], &ok, 1);
                        for (;;)
                                pause();
                }
                (void)!write(pid_pipe[1], &c, sizeof(c));
                (void)waitpid(c, NULL, 0);
                _exit(0);
        }
        close(pid_pipe[1]);
        close(ready[1]);
        assert_int_equal(read(pid_pipe[0], &init, sizeof(init)), sizeof(init));
        assert_int_equal(read(ready[0], &ok, 1), 1);
        close(pid_pipe[0]);
        close(ready[0]);
        *ret_init = init;
        return mid;
}

static void ns_init_end(pid_t mid, pid_t init) {
        kill(init, SIGKILL);
        assert_int_equal(waitpid(mid, NULL, 0), mid);
}

/* In a pid namespace of its own (root only: it makes one), a tree is held
 * unless a task holds a file lock or a terminal its copy needs again. */
static void test_holdable_own_pid_ns(void **state) {
        (void)state;
        if (geteuid() != 0)
                skip();
        char *dir = tu_tmpdir(), lock[512], why[256];
        static const struct {
                holder h;
                int expect;
                const char *reason;
        } cases[] = {
                {HOLDER_PLAIN, 1, NULL},
                {HOLDER_FLOCK, 0, "a file lock"},
                {HOLDER_PTY, 0, "a terminal"},
        };

        snprintf(lock, sizeof(lock), "%s/lock", dir);
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                pid_t init, mid = spawn_ns_init(cases[i].h, lock, &init);
                why[0] = '\0';
                int r = ckpt_tree_holdable(init, why, sizeof(why));
                ns_init_end(mid, init);
                if (r != cases[i].expect)
                        fail_msg("case %zu: %d, expected %d (%s)", i, r, cases[i].expect, why);
                if (cases[i].reason)
                        assert_non_null(strstr(why, cases[i].reason));
        }
        tu_rm(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tree_pids),
                cmocka_unit_test(test_resume_every_task),
                cmocka_unit_test(test_resume_keeps_stopped),
                cmocka_unit_test(test_kill_tree),
                cmocka_unit_test(test_stat_fields),
                cmocka_unit_test(test_parse_dying),
                cmocka_unit_test(test_holdable_shared_pid_ns),
                cmocka_unit_test(test_holdable_own_pid_ns),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
