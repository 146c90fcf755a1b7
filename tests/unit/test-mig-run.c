/* SPDX-License-Identifier: Apache-2.0 */
/* The runner (agent/daemon/mig-run.c) on a real loop and a real journal,
 * with a scripted role in place of a core: one event at a time, actions in
 * order, a journal write holding its list until the record is on disk, a
 * failed action ending its list, events that came meanwhile waiting their
 * turn, and the end heard by watchers from the loop once the record is
 * archived. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs-util.h"
#include "macro.h"
#include "mig.h"

/* The scripted role: an event's "kind" picks a list of actions. */
enum { EV_GO, EV_LATE, EV_FAILED, EV_FINISH };
enum { DO_MARK, DO_JOURNAL, DO_FAIL, DO_FINISH };

typedef struct script {
        int lists[4][4]; /* per event kind: actions, -1 ends */
        char seen[256];  /* what happened, in order */
        char journal_dir[256];
        bool on_disk_before_mark; /* a DO_MARK after DO_JOURNAL saw the record */
        int finished_calls, after_end_calls;
        bool finished_inside_feed;
        bool feeding;
} script;

static script S;

static void seen(const char *what) {
        size_t n = strlen(S.seen);
        snprintf(S.seen + n, sizeof(S.seen) - n, "%s%s", n ? " " : "", what);
}

static handoff_verdict step(mig *m, const mig_event *ev) {
        size_t n = 0;
        static const char *const names[] = {"go", "late", "failed", "finish"};

        seen(names[ev->src.code]);
        while (n < 4 && S.lists[ev->src.code][n] >= 0) {
                m->src_acts.v[n].kind = (src_action_kind)S.lists[ev->src.code][n];
                n++;
        }
        m->src_acts.n = n;
        m->n_acts = n;
        return HANDOFF_TAKEN;
}

static mig_act_result perform(mig *m, size_t i, mig_event *ret) {
        struct stat st;
        char path[512];

        switch ((int)m->src_acts.v[i].kind) {
        case DO_MARK:
                snprintf(path, sizeof(path), "%s/%s.json", S.journal_dir, m->id);
                S.on_disk_before_mark = stat(path, &st) == 0;
                seen("mark");
                return MIG_ACT_DONE;
        case DO_JOURNAL:
                seen("journal");
                return mig_journal(m, "dumping", &(mig_event){.src = {.code = EV_FAILED}}, ret);
        case DO_FAIL:
                seen("fail");
                *ret = (mig_event){.src = {.code = EV_FAILED}};
                return MIG_ACT_FAILED;
        case DO_FINISH:
                seen("finish");
                mig_finish(m);
                return MIG_ACT_DONE;
        default: break;
        }
        return MIG_ACT_DONE;
}

static void after_end(mig *m, const mig_event *ev) {
        (void)m;
        (void)ev;
        S.after_end_calls++;
}

static const mig_role_ops ops = {.step = step, .perform = perform, .after_end = after_end};

static void finished(void *ud, const char *id, json_t *doc) {
        char path[512];
        struct stat st;
        (void)ud;
        (void)doc;
        S.finished_calls++;
        S.finished_inside_feed = S.feeding;
        /* Heard once the record is in done/. */
        snprintf(path, sizeof(path), "%s/done/%s.json", S.journal_dir, id);
        assert_int_equal(stat(path, &st), 0);
}

static const mig_watch_ops watch = {.finished = finished};

typedef struct fixture {
        uv_loop_t loop;
        agent a;
        char *dir;
} fixture;

static void fixture_init(fixture *f) {
        nm_error err = {};
        f->dir = strdup("/tmp/nm-test-mig-run-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(S.journal_dir, sizeof(S.journal_dir), "%s/journal", f->dir);
        assert_int_equal(uv_loop_init(&f->loop), 0);
        f->a = (agent){.loop = &f->loop, .staging_fd = -EBADF};
        f->a.cfg.node = (char *)"node1";
        assert_int_equal(journal_open(S.journal_dir, &f->a.journal, &err), 0);
}

static void fixture_done(fixture *f) {
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&f->loop), 0);
        journal_free(f->a.journal);
        assert_int_equal(rm_rf_path(f->dir), 0);
        free(f->dir);
}

static void feed(mig *m, int kind) {
        S.feeding = true;
        mig_feed(m, &(mig_event){.src = {.code = kind}});
        S.feeding = false;
}

static void set_list(int ev, const int *acts, size_t n) {
        for (size_t i = 0; i < 4; i++)
                S.lists[ev][i] = i < n ? acts[i] : -1;
}

/* The journal write holds its list; an event meanwhile waits; the end is
 * heard from the loop, after the archive. */
static void test_order(void **state) {
        fixture f;
        mig *m;
        (void)state;

        S = (script){};
        set_list(EV_GO, (int[]){DO_JOURNAL, DO_MARK}, 2);
        set_list(EV_LATE, (int[]){DO_MARK, DO_FINISH}, 2);
        set_list(EV_FAILED, NULL, 0);
        set_list(EV_FINISH, NULL, 0);
        fixture_init(&f);
        m = mig_new(&f.a, MIG_ROLE_SOURCE, "m1", &ops);
        assert_non_null(m);
        assert_int_equal(mig_watch_add(m, &watch, NULL), 0);
        feed(m, EV_GO);
        /* The write is on the thread pool: the list waits, the next event
         * too. */
        assert_string_equal(S.seen, "go journal");
        assert_int_equal(m->run, MIG_RUN_WAITING);
        feed(m, EV_LATE);
        assert_string_equal(S.seen, "go journal");
        uv_run(&f.loop, UV_RUN_DEFAULT);
        assert_string_equal(S.seen, "go journal mark late mark finish");
        assert_true(S.on_disk_before_mark);
        assert_int_equal(S.finished_calls, 1);
        assert_false(S.finished_inside_feed);
        fixture_done(&f);
}

/* A failed action ends its list; its failure is the next event. */
static void test_failed_action(void **state) {
        fixture f;
        mig *m;
        (void)state;

        S = (script){};
        set_list(EV_GO, (int[]){DO_MARK, DO_FAIL, DO_MARK}, 3);
        set_list(EV_FAILED, (int[]){DO_FINISH}, 1);
        set_list(EV_LATE, NULL, 0);
        set_list(EV_FINISH, NULL, 0);
        fixture_init(&f);
        m = mig_new(&f.a, MIG_ROLE_SOURCE, "m2", &ops);
        assert_int_equal(mig_watch_add(m, &watch, NULL), 0);
        feed(m, EV_GO);
        assert_string_equal(S.seen, "go mark fail failed finish");
        /* Finished inside the feed, heard only from the loop. */
        assert_int_equal(S.finished_calls, 0);
        uv_run(&f.loop, UV_RUN_DEFAULT);
        assert_int_equal(S.finished_calls, 1);
        assert_false(S.finished_inside_feed);
        fixture_done(&f);
}

/* Events that waited for a list that ended the migration go to the
 * role's after_end, not to its core. */
static void test_after_end(void **state) {
        fixture f;
        mig *m;
        (void)state;

        S = (script){};
        set_list(EV_GO, (int[]){DO_JOURNAL, DO_FINISH}, 2);
        set_list(EV_LATE, (int[]){DO_MARK}, 1);
        set_list(EV_FAILED, NULL, 0);
        set_list(EV_FINISH, NULL, 0);
        fixture_init(&f);
        m = mig_new(&f.a, MIG_ROLE_SOURCE, "m3", &ops);
        feed(m, EV_GO);
        feed(m, EV_LATE);
        feed(m, EV_LATE);
        uv_run(&f.loop, UV_RUN_DEFAULT);
        assert_string_equal(S.seen, "go journal finish");
        assert_int_equal(S.after_end_calls, 2);
        fixture_done(&f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_order),
                cmocka_unit_test(test_failed_action),
                cmocka_unit_test(test_after_end),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
