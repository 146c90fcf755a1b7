/* SPDX-License-Identifier: Apache-2.0 */
/* The nucleus runtime's state files: parsing, byte-exact rewriting with
 * unknown fields kept, lookup, and the start-ticks liveness check. */
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "ckpt.h"
#include "test-ckpt-util.h"

/* serde_json::to_string_pretty of a nucleus ContainerState, plus a field
 * from the future. config_hash is above INT64_MAX, as hashes often are. */
static const char sample[] = "{\n"
                             "  \"id\": \"0123456789abcdef0123456789abcdef\",\n"
                             "  \"name\": \"web\",\n"
                             "  \"pid\": 4242,\n"
                             "  \"command\": [\n"
                             "    \"/bin/sh\",\n"
                             "    \"-c\",\n"
                             "    \"sleep 1\"\n"
                             "  ],\n"
                             "  \"started_at\": 1700000000,\n"
                             "  \"memory_limit\": 536870912,\n"
                             "  \"cpu_limit\": null,\n"
                             "  \"using_gvisor\": false,\n"
                             "  \"rootless\": false,\n"
                             "  \"cgroup_path\": \"/sys/fs/cgroup/nucleus-0123\",\n"
                             "  \"config_hash\": 18446744073709551615,\n"
                             "  \"creator_uid\": 0,\n"
                             "  \"process_uid\": 1000,\n"
                             "  \"process_gid\": 1000,\n"
                             "  \"additional_gids\": [],\n"
                             "  \"start_ticks\": 12345,\n"
                             "  \"status\": \"running\",\n"
                             "  \"bundle_path\": null,\n"
                             "  \"annotations\": {\n"
                             "    \"team\": \"edge\"\n"
                             "  },\n"
                             "  \"x_future\": {\n"
                             "    \"nested\": [\n"
                             "      1,\n"
                             "      true,\n"
                             "      \"s\"\n"
                             "    ],\n"
                             "    \"empty\": {}\n"
                             "  }\n"
                             "}";

static ckpt_container *parse(const char *text) {
        ckpt_container *c = NULL;
        nm_error err = {};
        if (ckpt_container_from_json(text, strlen(text), &c, &err) < 0)
                fail_msg("parse failed: %s", err.msg);
        return c;
}

static void test_parse_fields(void **state) {
        (void)state;
        _cleanup_(ckpt_container_freep) ckpt_container *c = parse(sample);
        assert_string_equal(c->id, "0123456789abcdef0123456789abcdef");
        assert_string_equal(c->name, "web");
        assert_int_equal(c->pid, 4242);
        assert_int_equal(c->start_ticks, 12345);
        assert_false(c->using_gvisor);
        assert_false(c->rootless);
        assert_string_equal(c->cgroup_path, "/sys/fs/cgroup/nucleus-0123");
        assert_int_equal(c->status, CKPT_STATUS_RUNNING);
        assert_string_equal(c->command[0], "/bin/sh");
        assert_string_equal(c->command[2], "sleep 1");
        assert_null(c->command[3]);
        assert_false(c->bare);

        /* Optional fields absent: nucleus's defaults. */
        static const char minimal[] =
                "{\"id\":\"abc\",\"name\":\"n\",\"pid\":7,\"command\":[],\"started_at\":1,"
                "\"using_gvisor\":true,\"rootless\":true}";
        _cleanup_(ckpt_container_freep) ckpt_container *m = parse(minimal);
        assert_int_equal(m->status, CKPT_STATUS_STOPPED);
        assert_int_equal(m->start_ticks, 0);
        assert_null(m->cgroup_path);
        assert_true(m->using_gvisor);
        assert_null(m->command[0]);
}

static void test_rewrite_is_byte_exact(void **state) {
        (void)state;
        _cleanup_(ckpt_container_freep) ckpt_container *c = parse(sample);
        _cleanup_free_ char *same = NULL, *moved = NULL;
        nm_error err = {};

        /* Unchanged fields: the very same bytes, the big u64 included. */
        assert_int_equal(ckpt_container_format(c, &same, &err), 0);
        assert_string_equal(same, sample);

        /* New pid, start_ticks and status in place; the rest untouched. */
        c->pid = 99;
        c->start_ticks = 777;
        c->status = CKPT_STATUS_CREATED;
        assert_int_equal(ckpt_container_format(c, &moved, &err), 0);
        char want[sizeof(sample) + 16];
        snprintf(want, sizeof(want), "%s", sample);
        char *p = strstr(want, "\"pid\": 4242");
        memcpy(p, "\"pid\": 99", 9);
        memmove(p + 9, p + 11, strlen(p + 11) + 1);
        p = strstr(want, "\"start_ticks\": 12345");
        memcpy(p, "\"start_ticks\": 777", 18);
        memmove(p + 18, p + 20, strlen(p + 20) + 1);
        p = strstr(want, "\"status\": \"running\"");
        memcpy(p, "\"status\": \"created\"", 19);
        assert_string_equal(moved, want);
}

static void test_bad_state_refused(void **state) {
        (void)state;
        static const struct {
                const char *text, *why;
        } bad[] = {
                {"{", "bad JSON"},
                {"[]", "not a JSON object"},
                {"{\"name\":\"n\",\"pid\":1,\"command\":[],\"started_at\":1,\"using_gvisor\":false,"
                 "\"rootless\":false}",
                 "missing field 'id'"},
                {"{\"id\":\"../"
                 "x\",\"name\":\"n\",\"pid\":1,\"command\":[],\"started_at\":1,\"using_gvisor\":false,"
                 "\"rootless\":false}",
                 "invalid container id"},
                {"{\"id\":\"a\",\"name\":\"n\",\"pid\":\"1\",\"command\":[],\"started_at\":1,\"using_"
                 "gvisor\":false,"
                 "\"rootless\":false}",
                 "field 'pid'"},
                {"{\"id\":\"a\",\"name\":\"n\",\"pid\":-1,\"command\":[],\"started_at\":1,\"using_gvisor\":"
                 "false,"
                 "\"rootless\":false}",
                 "field 'pid'"},
                {"{\"id\":\"a\",\"name\":\"n\",\"pid\":1,\"command\":[],\"started_at\":1,\"rootless\":"
                 "false}",
                 "missing field 'using_gvisor'"},
                {"{\"id\":\"a\",\"name\":\"n\",\"pid\":1,\"command\":[1],\"started_at\":1,\"using_gvisor\":"
                 "false,"
                 "\"rootless\":false}",
                 "field 'command'"},
                {"{\"id\":\"a\",\"name\":\"n\",\"pid\":1,\"command\":[],\"started_at\":1,\"using_gvisor\":"
                 "false,"
                 "\"rootless\":false,\"status\":\"paused\"}",
                 "field 'status'"},
                {"{\"id\":\"a\",\"name\":\"n\",\"pid\":1,\"command\":[],\"started_at\":1,\"using_gvisor\":"
                 "false,"
                 "\"rootless\":false,\"annotations\":{\"k\":1}}",
                 "annotation 'k'"},
                {"{\"id\":\"a\",\"name\":\"n\",\"pid\":1,\"command\":[],\"started_at\":1,\"using_gvisor\":"
                 "false,"
                 "\"rootless\":false,\"config_hash\":-5}",
                 "field 'config_hash'"},
                {"{\"id\":\"a\",\"name\":\"n\",\"pid\":1,\"command\":[],\"started_at\":1,\"using_gvisor\":"
                 "false,"
                 "\"rootless\":false,\"config_hash\":18446744073709551616}",
                 "bad JSON"},
                {"{\"id\":\"a\",\"name\":\"n\",\"pid\":1,\"command\":[],\"started_at\":1,\"using_gvisor\":"
                 "false,"
                 "\"rootless\":false,\"x\":\"\\u0001\\u006em-u64:5\"}",
                 "reserved"},
                {"{\"id\":\"a\",\"id\":\"b\",\"name\":\"n\",\"pid\":1,\"command\":[],\"started_at\":1,"
                 "\"using_gvisor\":false,\"rootless\":false}",
                 "duplicate"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                ckpt_container *c = NULL;
                nm_error err = {};
                int r = ckpt_container_from_json(bad[i].text, strlen(bad[i].text), &c, &err);
                if (r != -EBADMSG)
                        fail_msg("case %zu (%s) returned %d", i, bad[i].why, r);
                assert_null(c);
                assert_msg_contains(&err, bad[i].why);
        }
}

/* ---- lookup --------------------------------------------------------------- */

static void put_state(const char *dir, const char *id, const char *name, pid_t pid, uint64_t ticks,
                      const char *status) {
        char text[1024], file[128];
        snprintf(text, sizeof(text),
                 "{\"id\":\"%s\",\"name\":\"%s\",\"pid\":%d,\"command\":[\"x\"],\"started_at\":1,"
                 "\"memory_limit\":null,\"cpu_limit\":null,\"using_gvisor\":false,\"rootless\":false,"
                 "\"cgroup_path\":null,\"start_ticks\":%llu,\"status\":\"%s\"}",
                 id, name, (int)pid, (unsigned long long)ticks, status);
        snprintf(file, sizeof(file), "%s.json", id);
        tu_write_str(dir, file, text);
}

static const char *find_id(const char *dir, const char *ref, int *ret_r, nm_error *err) {
        static char id[64];
        ckpt_container *c = NULL;
        *ret_r = ckpt_container_find(dir, ref, &c, err);
        if (*ret_r < 0)
                return NULL;
        snprintf(id, sizeof(id), "%s", c->id);
        ckpt_container_free(c);
        return id;
}

static void test_lookup(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        nm_error err = {};
        int r;

        put_state(dir, "a1b2c3", "web", 10, 1, "running");
        put_state(dir, "a1ffff", "db", 11, 1, "running");
        put_state(dir, "b7eeee", "db", 12, 1, "running");
        put_state(dir, "c9dddd", "b7", 13, 1, "running");
        tu_write_str(dir, "bad.json", "{ not json");
        tu_write_str(dir, "notes.txt", "ignored");
        _cleanup_free_ char *target = tu_join(dir, "a1b2c3.json"), *evil = tu_join(dir, "evil.json");
        assert_int_equal(symlink(target, evil), 0);

        ckpt_container **l = NULL;
        size_t n = 0, skipped = 0;
        assert_int_equal(ckpt_container_list(dir, &l, &n, &skipped, &err), 0);
        assert_int_equal(n, 4);
        assert_int_equal(skipped, 2); /* bad.json and the symlink */
        ckpt_container_list_free(l, n);

        assert_string_equal(find_id(dir, "a1b2c3", &r, &err), "a1b2c3"); /* exact id */
        assert_string_equal(find_id(dir, "web", &r, &err), "a1b2c3");    /* exact name */
        assert_string_equal(find_id(dir, "c9", &r, &err), "c9dddd");     /* unique prefix */
        /* A name beats an id prefix. */
        assert_string_equal(find_id(dir, "b7", &r, &err), "c9dddd");

        nm_error_clear(&err);
        assert_null(find_id(dir, "db", &r, &err));
        assert_int_equal(r, -ENOTUNIQ);
        assert_msg_contains(&err, "a1ffff (db)");
        assert_msg_contains(&err, "b7eeee (db)");

        nm_error_clear(&err);
        assert_null(find_id(dir, "a1", &r, &err));
        assert_int_equal(r, -ENOTUNIQ);
        assert_msg_contains(&err, "a1b2c3 (web)");
        assert_msg_contains(&err, "a1ffff (db)");

        nm_error_clear(&err);
        assert_null(find_id(dir, "zz", &r, &err));
        assert_int_equal(r, -ENOENT);
        assert_msg_contains(&err, "no container 'zz'");
        assert_msg_contains(&err, "c9dddd (b7)");
        assert_msg_contains(&err, "could not be read");

        /* A symlinked state directory is refused; a missing one is empty. */
        _cleanup_free_ char *link = tu_join(dir, "linked"), *missing = tu_join(dir, "missing");
        assert_int_equal(symlink(dir, link), 0);
        assert_null(find_id(link, "web", &r, NULL));
        assert_int_equal(r, -ELOOP);
        assert_null(find_id(missing, "web", &r, NULL));
        assert_int_equal(r, -ENOENT);
        tu_rm(dir);
}

/* ---- liveness --------------------------------------------------------------- */

static pid_t spawn_sleeper(void) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* Dies with the test, whatever happens to the test. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                for (;;)
                        pause();
        }
        return pid;
}

static void test_is_running(void **state) {
        (void)state;
        pid_t pid = spawn_sleeper();
        uint64_t ticks = 0;
        int status;

        assert_int_equal(ckpt_proc_start_ticks(pid, &ticks), 0);
        assert_true(ticks > 0);
        ckpt_container c = {.id = (char *)"t",
                            .name = (char *)"t",
                            .pid = pid,
                            .start_ticks = ticks,
                            .status = CKPT_STATUS_RUNNING};
        assert_true(ckpt_container_is_running(&c));
        assert_int_equal(ckpt_container_check_movable(&c, NULL), 0);

        /* The same pid with another start time: a reused pid. */
        c.start_ticks = ticks + 1;
        assert_false(ckpt_container_is_running(&c));
        nm_error err = {};
        assert_int_equal(ckpt_container_check_movable(&c, &err), -ESRCH);
        assert_msg_contains(&err, "not running");
        c.start_ticks = 0;
        assert_false(ckpt_container_is_running(&c));
        c.start_ticks = ticks;
        c.status = CKPT_STATUS_STOPPED;
        assert_false(ckpt_container_is_running(&c));
        c.status = CKPT_STATUS_CREATED;
        assert_true(ckpt_container_is_running(&c));

        c.using_gvisor = true;
        nm_error_clear(&err);
        assert_int_equal(ckpt_container_check_movable(&c, &err), -EOPNOTSUPP);
        assert_msg_contains(&err, "gVisor");
        c.using_gvisor = false;

        /* A zombie keeps its start time but is not running. waitid() with
         * WNOWAIT returns once it is one, and leaves it so. */
        assert_int_equal(kill(pid, SIGKILL), 0);
        siginfo_t si = {};
        assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
        assert_false(ckpt_container_is_running(&c));
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_false(ckpt_container_is_running(&c));
}

static void test_from_pid(void **state) {
        (void)state;
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        pid_t pid = spawn_sleeper();
        char id[32];

        assert_int_equal(ckpt_container_from_pid(pid, &c, NULL), 0);
        snprintf(id, sizeof(id), "pid-%d", (int)pid);
        assert_string_equal(c->id, id);
        assert_true(ckpt_container_id_valid(c->id));
        assert_true(c->bare);
        assert_null(c->json);
        assert_non_null(c->command[0]);
        assert_true(ckpt_container_is_running(c));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        assert_int_equal(ckpt_container_from_pid(1, &c, NULL), -EINVAL);
}

/* ---- writing and removing ------------------------------------------------------ */

static void test_write_restored(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *sd = tu_join(dir, "state"), *text = NULL, *link = tu_join(dir, "link");
        _cleanup_(ckpt_container_freep) ckpt_container *c = parse(sample), *back = NULL;
        pid_t pid = spawn_sleeper();
        uint64_t ticks;
        nm_error err = {};
        struct stat st;
        size_t len;

        assert_int_equal(ckpt_proc_start_ticks(pid, &ticks), 0);
        assert_int_equal(ckpt_state_check_not_running(sd, c->id, NULL), 0);
        assert_int_equal(ckpt_state_write_restored(sd, c, pid, 0, &err), 0);
        assert_int_equal(stat(sd, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        text = tu_read(sd, "0123456789abcdef0123456789abcdef.json", &len);
        _cleanup_free_ char *fp = tu_join(sd, "0123456789abcdef0123456789abcdef.json");
        assert_int_equal(stat(fp, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        _cleanup_free_ char *tmp = tu_join(sd, "0123456789abcdef0123456789abcdef.json.tmp");
        assert_int_equal(access(tmp, F_OK), -1);
        back = parse(text);
        assert_int_equal(back->pid, pid);
        assert_int_equal(back->start_ticks, ticks);
        assert_int_equal(back->status, CKPT_STATUS_RUNNING);
        assert_non_null(strstr(text, "\"config_hash\": 18446744073709551615,\n"));
        assert_non_null(strstr(text, "\"x_future\": {\n    \"nested\": [\n"));
        assert_non_null(strstr(text, "\"team\": \"edge\""));

        /* The container runs now: a second copy must be refused. */
        nm_error_clear(&err);
        assert_int_equal(ckpt_state_check_not_running(sd, c->id, &err), -EEXIST);
        assert_msg_contains(&err, "already runs");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        assert_int_equal(ckpt_state_check_not_running(sd, c->id, NULL), 0);

        assert_int_equal(ckpt_state_remove(sd, c->id, NULL), 0);
        assert_int_equal(access(fp, F_OK), -1);
        assert_int_equal(ckpt_state_remove(sd, c->id, NULL), 0); /* missing is fine */
        assert_int_equal(ckpt_state_remove(sd, "../etc/passwd", NULL), -EINVAL);

        /* A symlinked state directory is refused for writing too. */
        assert_int_equal(symlink(sd, link), 0);
        assert_int_equal(ckpt_state_write_restored(link, c, getpid(), 0, NULL), -ELOOP);
        tu_rm(dir);
}

/* What registering a restored copy needs, checked before the restore. */
static void test_check_restorable(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_free_ char *sd = tu_join(dir, "state"), *link = tu_join(dir, "link"),
                            *file = tu_join(dir, "file"), *other_text = strdup(sample);
        _cleanup_(ckpt_container_freep) ckpt_container *c = parse(sample), *other = NULL;
        ckpt_container bare = {.id = (char *)"pid-1", .bare = true};
        pid_t pid = spawn_sleeper();
        nm_error err = {};

        assert_int_equal(ckpt_state_check_restorable(sd, c, &err), 0);
        /* Another id of the same name runs here: refused while it runs. */
        char *at = strstr(other_text, "0123456789abcdef0123456789abcdef");
        for (size_t i = 0; i < 16; i++)
                at[i] = "fedcba9876543210"[i];
        other = parse(other_text);
        assert_int_equal(ckpt_state_write_restored(sd, other, pid, 0, NULL), 0);
        assert_int_equal(ckpt_state_check_restorable(sd, c, &err), -EEXIST);
        assert_msg_contains(&err, "another container named web (fedcba98765432100123456789abcdef) runs");
        /* The same id running: refused too. */
        assert_int_equal(ckpt_state_write_restored(sd, c, pid, 0, NULL), 0);
        nm_error_clear(&err);
        assert_int_equal(ckpt_state_check_restorable(sd, c, &err), -EEXIST);
        assert_msg_contains(&err, "already runs");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        assert_int_equal(ckpt_state_check_restorable(sd, c, NULL), 0);
        /* Where no state file can be written. */
        assert_int_equal(symlink(sd, link), 0);
        assert_int_equal(ckpt_state_check_restorable(link, c, NULL), -ELOOP);
        tu_write_str(dir, "file", "x");
        _cleanup_free_ char *below = tu_join(file, "state");
        assert_true(ckpt_state_check_restorable(below, c, NULL) < 0);
        /* A bare tree has no state file to write. */
        assert_int_equal(ckpt_state_check_restorable(below, &bare, NULL), 0);
        tu_rm(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_fields),      cmocka_unit_test(test_rewrite_is_byte_exact),
                cmocka_unit_test(test_bad_state_refused), cmocka_unit_test(test_lookup),
                cmocka_unit_test(test_is_running),        cmocka_unit_test(test_from_pid),
                cmocka_unit_test(test_write_restored),    cmocka_unit_test(test_check_restorable),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
