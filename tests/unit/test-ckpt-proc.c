/* SPDX-License-Identifier: Apache-2.0 */
/* Stopped process trees, as CRIU's --leave-stopped leaves them: listing,
 * resuming every task, killing them all. Our own children stand in for a
 * restored tree, so no root is needed. */
#include <signal.h>
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tree_pids),
                cmocka_unit_test(test_resume_every_task),
                cmocka_unit_test(test_resume_keeps_stopped),
                cmocka_unit_test(test_kill_tree),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
