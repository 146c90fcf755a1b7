/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli-output.h"
#include "config.h"
#include "fs-util.h"
#include "history.h"
#include "journal.h"
#include "macro.h"

static char *make_tmpdir(void) {
        char *t = strdup("/tmp/nm-test-agent-XXXXXX");
        assert_non_null(mkdtemp(t));
        return t;
}

static char *write_conf(const char *dir, const char *text) {
        char *path = NULL;
        assert_true(asprintf(&path, "%s/agent.conf", dir) > 0);
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        return path;
}

static void test_config_file_and_overrides(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_free_ char *path = write_conf(dir, "[agent]\n"
                                                    "node = node1\n"
                                                    "work_dir = /srv/nm\n"
                                                    "tcp = close\n"
                                                    "[ssh]\n"
                                                    "idle_timeout = 7\n"
                                                    "accept_new = yes\n"
                                                    "thread = yes\n"
                                                    "lanes = 3\n"
                                                    "[limits]\n"
                                                    "parallel = 3\n"
                                                    "peer_parallel = 1\n"
                                                    "staging_max = 2G\n"
                                                    "[peer node2]\n"
                                                    "host = 198.18.0.2\n"
                                                    "port = 2222\n");
        agent_config c;
        nm_error err = {};

        assert_int_equal(agent_config_init(&c), 0);
        assert_int_equal(c.tcp, AGENT_TCP_AUTO);
        assert_false(c.ssh_thread);
        assert_int_equal(c.lanes, 0); /* auto */
        assert_int_equal(agent_config_load(&c, path, true, &err), 0);
        assert_string_equal(c.node, "node1");
        assert_int_equal(c.tcp, AGENT_TCP_CLOSE);
        assert_string_equal(c.work_dir, "/srv/nm");
        assert_int_equal(c.idle_timeout_s, 7);
        assert_true(c.accept_new);
        assert_true(c.ssh_thread);
        assert_int_equal(c.lanes, 3);
        assert_int_equal(c.parallel, 3);
        assert_int_equal(c.peer_parallel, 1);
        assert_int_equal(c.staging_max, 2ULL << 30);
        assert_int_equal(c.n_peers, 1);
        const agent_peer *p = agent_config_peer(&c, "node2");
        assert_non_null(p);
        assert_string_equal(p->host, "198.18.0.2");
        assert_int_equal(p->port, 2222);
        assert_ptr_equal(agent_config_peer(&c, "198.18.0.2"), p);
        assert_null(agent_config_peer(&c, "node3"));

        /* Flags override the file through the same setter. */
        assert_int_equal(agent_config_set_assignment(&c, "limits.parallel=5", &err), 0);
        assert_int_equal(c.parallel, 5);
        assert_int_equal(agent_config_set_assignment(&c, "ssh.lanes=auto", &err), 0);
        assert_int_equal(c.lanes, 0);
        assert_int_equal(agent_config_set_assignment(&c, "ssh.lanes=5", &err), -EINVAL);
        nm_error_clear(&err);
        assert_int_equal(agent_config_set_assignment(&c, "ssh.lanes=0", &err), -EINVAL);
        nm_error_clear(&err);
        assert_int_equal(agent_config_set_assignment(&c, "peer.node3.host=198.18.0.3", &err), 0);
        assert_int_equal(c.n_peers, 2);
        assert_int_equal(agent_config_check(&c, &err), 0);
        _cleanup_free_ char *staging = agent_config_path(&c, "staging");
        assert_string_equal(staging, "/srv/nm/staging");
        agent_config_done(&c);
        rm_rf_path(dir);
}

static void test_config_errors_name_the_line(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_free_ char *path = write_conf(dir, "[agent]\nnode = n1\n[limits]\nparallel = many\n");
        agent_config c;
        nm_error err = {};

        assert_int_equal(agent_config_init(&c), 0);
        assert_int_equal(agent_config_load(&c, path, true, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "agent.conf:4"));
        assert_non_null(strstr(err.msg, "parallel"));
        nm_error_clear(&err);
        assert_int_equal(agent_config_set_assignment(&c, "agent.nosuch=1", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "unknown key \"nosuch\""));
        nm_error_clear(&err);
        assert_int_equal(agent_config_set_assignment(&c, "parallel", &err), -EINVAL);
        nm_error_clear(&err);
        /* A TCP policy that does not exist is refused and changes nothing. */
        assert_int_equal(agent_config_set_assignment(&c, "agent.tcp=move", &err), 0);
        assert_int_equal(c.tcp, AGENT_TCP_MOVE);
        assert_int_equal(agent_config_set_assignment(&c, "agent.tcp=refuse", &err), -EINVAL);
        assert_non_null(strstr(err.msg, "tcp"));
        assert_int_equal(c.tcp, AGENT_TCP_MOVE);
        assert_string_equal(agent_tcp_policy_to_string(AGENT_TCP_AUTO), "auto");
        assert_null(agent_tcp_policy_to_string(_AGENT_TCP_POLICY_MAX));
        nm_error_clear(&err);
        assert_int_equal(agent_config_set(&c, "agent", "work_dir", "relative/path", &err), 0);
        assert_int_equal(agent_config_check(&c, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "work_dir must be an absolute path"));
        nm_error_clear(&err);
        assert_int_equal(agent_config_load(&c, "/nonexistent/agent.conf", false, &err), 0);
        assert_true(agent_config_load(&c, "/nonexistent/agent.conf", true, &err) < 0);
        agent_config_done(&c);
        rm_rf_path(dir);
}

static void test_parse_size(void **state) {
        (void)state;
        uint64_t v;
        assert_int_equal(parse_size("4096", &v), 0);
        assert_int_equal(v, 4096);
        assert_int_equal(parse_size("512M", &v), 0);
        assert_int_equal(v, 512ULL << 20);
        assert_int_equal(parse_size("1GiB", &v), 0);
        assert_int_equal(v, 1ULL << 30);
        assert_int_equal(parse_size("-1", &v), -EINVAL);
        assert_int_equal(parse_size("12X", &v), -EINVAL);
        assert_int_equal(parse_size("99999999999T", &v), -ERANGE);
}

/* Finished records are kept by time, not by count: more than
 * JOURNAL_KEEP_DONE of them stay, those older than the keep are removed at
 * the next finish (or journal_prune), and `--since` reads by their end. */
static void test_journal_history_by_time(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        char jdir[512], path[700];
        journal *j = NULL;
        json_t *all = NULL, *one = NULL;
        nm_error err = {};
        time_t now = time(NULL);

        snprintf(jdir, sizeof(jdir), "%s/journal", dir);
        assert_int_equal(journal_open(jdir, &j, &err), 0);
        journal_set_keep(j, 7 * 86400);
        for (int i = 0; i < JOURNAL_KEEP_DONE + 5; i++) {
                char id[32];
                snprintf(id, sizeof(id), "m%d", i);
                json_t *rec = json_pack("{s:s}", "mig", id);
                assert_int_equal(journal_put(j, id, rec, &err), 0);
                json_decref(rec);
                assert_int_equal(journal_finish(j, id, &err), 0);
        }
        /* Two of them ended long ago (their files' mtime says when). */
        for (int i = 0; i < 2; i++) {
                struct timespec ts[2] = {{.tv_sec = now - (i ? 10 : 3) * 86400},
                                         {.tv_sec = now - (i ? 10 : 3) * 86400}};
                snprintf(path, sizeof(path), "%s/done/m%d.json", jdir, i);
                assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
        }
        assert_int_equal(journal_load_done(j, SIZE_MAX, &all, &err), 0);
        assert_int_equal(json_array_size(all), JOURNAL_KEEP_DONE + 5);
        json_decref(all);
        assert_int_equal(journal_load_done_since(j, SIZE_MAX, now - 86400, &all, &err), 0);
        assert_int_equal(json_array_size(all), JOURNAL_KEEP_DONE + 3);
        json_decref(all);
        assert_int_equal(journal_load_done_one(j, "m0", &one), 0);
        assert_string_equal(json_string_value(json_object_get(one, "mig")), "m0");
        json_decref(one);
        journal_prune(j);
        /* m1 (10 days) is gone, m0 (3 days) stays. */
        assert_int_equal(journal_load_done_one(j, "m1", &one), -ENOENT);
        assert_int_equal(journal_load_done_one(j, "m0", &one), 0);
        json_decref(one);
        assert_int_equal(journal_load_done(j, SIZE_MAX, &all, &err), 0);
        assert_int_equal(json_array_size(all), JOURNAL_KEEP_DONE + 4);
        json_decref(all);
        journal_free(j);
        rm_rf_path(dir);
}

static void test_journal_lifecycle(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        char jdir[512];
        journal *j = NULL;
        json_t *all = NULL, *rec;
        nm_error err = {};
        struct stat st;

        snprintf(jdir, sizeof(jdir), "%s/journal", dir);
        assert_int_equal(journal_open(jdir, &j, &err), 0);
        assert_int_equal(stat(jdir, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);

        rec = json_pack("{s:s, s:s}", "mig", "m1", "step", "DUMPED");
        assert_int_equal(journal_put(j, "m1", rec, &err), 0);
        json_object_set_new(rec, "step", json_string("COMMITTED"));
        assert_int_equal(journal_put(j, "m1", rec, &err), 0);
        json_decref(rec);
        rec = json_pack("{s:s, s:s}", "mig", "m2", "step", "RECEIVING");
        assert_int_equal(journal_put(j, "m2", rec, &err), 0);
        json_decref(rec);
        json_t *empty = json_object();
        assert_int_equal(journal_put(j, "../evil", empty, &err), -EINVAL);
        json_decref(empty);
        nm_error_clear(&err);

        /* A crash between temp write and rename leaves a .tmp that is not a record. */
        char tmp[600];
        snprintf(tmp, sizeof(tmp), "%s/m3.json.tmp", jdir);
        FILE *f = fopen(tmp, "we");
        fputs("{\"mig\":", f);
        fclose(f);

        assert_int_equal(journal_load_active(j, &all, &err), 0);
        assert_int_equal(json_array_size(all), 2);
        size_t i;
        json_t *v;
        bool saw_commit = false;
        json_array_foreach(all, i, v) {
                if (strcmp(json_string_value(json_object_get(v, "mig")), "m1") == 0)
                        saw_commit = strcmp(json_string_value(json_object_get(v, "step")), "COMMITTED") == 0;
        }
        assert_true(saw_commit);
        json_decref(all);

        assert_int_equal(journal_finish(j, "m1", &err), 0);
        assert_int_equal(journal_load_active(j, &all, &err), 0);
        assert_int_equal(json_array_size(all), 1);
        json_decref(all);
        assert_int_equal(journal_load_done(j, 10, &all, &err), 0);
        assert_int_equal(json_array_size(all), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(all, 0), "mig")), "m1");
        json_decref(all);
        /* Forgotten: gone from done/; forgetting again is no error. */
        assert_int_equal(journal_forget(j, "m1", &err), 0);
        assert_int_equal(journal_forget(j, "m1", &err), 0);
        assert_int_equal(journal_load_done(j, 10, &all, &err), 0);
        assert_int_equal(json_array_size(all), 0);
        json_decref(all);
        {
                nm_error e2 = {};
                assert_int_equal(journal_forget(j, "../x", &e2), -EINVAL);
        }

        /* A corrupt active record is reported, not skipped silently. */
        snprintf(tmp, sizeof(tmp), "%s/m4.json", jdir);
        f = fopen(tmp, "we");
        fputs("{\"mig\":", f);
        fclose(f);
        assert_int_equal(journal_load_active(j, &all, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "m4.json is corrupt"));

        j = journal_free(j);
        rm_rf_path(dir);
}

static json_t *done_rec(const char *id, const char *role, const char *peer, int64_t created) {
        return json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "mig", id, "role", role, "phase",
                         strcmp(role, "source") == 0 ? "done" : "running", "peer", peer, "restored_pid", 42,
                         "created_at", (json_int_t)created);
}

static void add(history *h, json_t *rec, int64_t now, json_t *forget) {
        assert_int_equal(history_add(h, rec, now, forget), 0);
        json_decref(rec);
}

/* A flood of one peer's records pushes out only that peer's oldest: never
 * another peer's, never our own moves. */
static void test_history_per_peer(void **state) {
        history *h = history_new(HISTORY_KEEP_MS);
        json_t *forget = json_array();
        char id[32];
        const int64_t now = 1700000000000;
        (void)state;

        add(h, done_rec("real", "destination", "node1", now), now, forget);
        add(h, done_rec("ours", "source", "node3", now), now, forget);
        for (int i = 0; i < HISTORY_KEEP_PER_PEER + 205; i++) {
                snprintf(id, sizeof(id), "flood-%d", i);
                add(h, done_rec(id, "destination", "node3", now), now, forget);
        }
        assert_non_null(history_get(h, "real"));
        assert_string_equal(json_string_value(json_object_get(history_get(h, "real"), "phase")), "running");
        assert_int_equal(json_integer_value(json_object_get(history_get(h, "real"), "restored_pid")), 42);
        assert_non_null(history_get(h, "ours"));
        assert_int_equal(json_array_size(forget), 205);
        assert_string_equal(json_string_value(json_array_get(forget, 0)), "flood-0");
        assert_null(history_get(h, "flood-204"));
        assert_non_null(history_get(h, "flood-205"));
        assert_int_equal(history_size(h), HISTORY_KEEP_PER_PEER + 2);
        assert_null(history_get(h, "nope"));
        assert_null(history_get(h, NULL));
        json_t *no_id = json_object();
        assert_int_equal(history_add(h, no_id, now, forget), -EINVAL);
        json_decref(no_id);
        json_decref(forget);
        history_free(h);
}

/* Records go by age, counted from their start (a restart does not make
 * them young again). */
static void test_history_age(void **state) {
        history *h = history_new(HISTORY_KEEP_MS);
        json_t *forget = json_array();
        const int64_t now = 1700000000000;
        (void)state;

        add(h, done_rec("old", "destination", "node1", now - HISTORY_KEEP_MS - 1), now, forget);
        assert_int_equal(json_array_size(forget), 1); /* its own age: gone at once */
        add(h, done_rec("young", "destination", "node1", now - 1000), now, forget);
        assert_null(history_get(h, "old"));
        assert_non_null(history_get(h, "young"));
        add(h, done_rec("later", "source", "node2", now), now + HISTORY_KEEP_MS, forget);
        assert_null(history_get(h, "young"));
        assert_non_null(history_get(h, "later"));
        assert_int_equal(json_array_size(forget), 2);
        json_decref(forget);
        history_free(h);
}

static void test_formatting(void **state) {
        (void)state;
        char b[64];
        format_bytes(b, sizeof(b), 512);
        assert_string_equal(b, "512 B");
        format_bytes(b, sizeof(b), 3ULL << 29);
        assert_string_equal(b, "1.5 GiB");
        format_rate(b, sizeof(b), 250000000);
        assert_string_equal(b, "250 MB/s");
        format_rate(b, sizeof(b), 0);
        assert_string_equal(b, "-");
        format_duration_ms(b, sizeof(b), 340);
        assert_string_equal(b, "340 ms");
        format_duration_ms(b, sizeof(b), 1250);
        assert_string_equal(b, "1.25 s");
        format_duration_ms(b, sizeof(b), 125000);
        assert_string_equal(b, "2m05s");
}

static void test_progress_json_lines(void **state) {
        (void)state;
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        cli_out o;
        json_error_t jerr;

        cli_out_init(&o, f, true);
        cli_progress p = {
                .mig = "m1", .phase = "streaming", .bytes_done = 10, .bytes_total = 100, .rate = 5};
        cli_out_progress(&o, &p);
        json_t *doc = json_pack("{s:s, s:i}", "outcome", "done", "new_pid", 42);
        cli_out_result(&o, doc, NULL);
        json_decref(doc);
        fclose(f);

        /* Two lines, each a JSON object a machine can parse. */
        char *nl = strchr(buf, '\n');
        assert_non_null(nl);
        *nl = '\0';
        json_t *e1 = json_loads(buf, 0, &jerr), *e2 = json_loads(nl + 1, 0, &jerr);
        assert_non_null(e1);
        assert_non_null(e2);
        assert_string_equal(json_string_value(json_object_get(e1, "phase")), "streaming");
        assert_int_equal(json_integer_value(json_object_get(e1, "bytes_total")), 100);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(e2, "result"), "new_pid")), 42);
        json_decref(e1);
        json_decref(e2);
        free(buf);
}

/* Keys and configuration with loose modes are refused, with how to fix them
 * (owners are checked by the safety-files integration test, as root). */
static void test_check_file(void **state) {
        (void)state;
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_free_ char *key = NULL, *sub = NULL;
        agent_config c;
        nm_error err = {};

        assert_true(asprintf(&key, "%s/id_ed25519", dir) > 0);
        assert_int_equal(agent_check_file(key, "SSH key", AGENT_FILE_SECRET, &err), -ENOENT);
        assert_non_null(strstr(err.msg, key));
        _cleanup_close_ int fd = open(key, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(fchmod(fd, 0600), 0); /* whatever the umask */
        nm_error_clear(&err);
        assert_int_equal(agent_check_file(key, "SSH key", AGENT_FILE_SECRET, &err), 0);
        for (mode_t m = 0604; m <= 0640; m += 036) {
                assert_int_equal(chmod(key, m), 0);
                nm_error_clear(&err);
                assert_int_equal(agent_check_file(key, "SSH key", AGENT_FILE_SECRET, &err), -EPERM);
                assert_non_null(strstr(err.msg, "group or others may read it"));
                assert_non_null(strstr(err.msg, "fix with: chmod 600"));
        }
        /* Readable is fine for a trusted file; writable is not. */
        assert_int_equal(chmod(key, 0644), 0);
        assert_int_equal(agent_check_file(key, "known_hosts", AGENT_FILE_TRUSTED, NULL), 0);
        assert_int_equal(chmod(key, 0664), 0);
        nm_error_clear(&err);
        assert_int_equal(agent_check_file(key, "known_hosts", AGENT_FILE_TRUSTED, &err), -EPERM);
        assert_non_null(strstr(err.msg, "fix with: chmod go-w"));
        assert_int_equal(chmod(key, 0600), 0);
        /* The directory: writable by others is refused, unless sticky. */
        assert_int_equal(chmod(dir, 0777), 0);
        nm_error_clear(&err);
        assert_int_equal(agent_check_file(key, "SSH key", AGENT_FILE_SECRET, &err), -EPERM);
        assert_non_null(strstr(err.msg, "its directory"));
        assert_int_equal(chmod(dir, 01777), 0);
        assert_int_equal(agent_check_file(key, "SSH key", AGENT_FILE_SECRET, NULL), 0);
        assert_int_equal(chmod(dir, 0700), 0);
        /* Not a regular file. */
        assert_true(asprintf(&sub, "%s/sub", dir) > 0);
        assert_int_equal(mkdir(sub, 0700), 0);
        assert_int_equal(agent_check_file(sub, "SSH key", AGENT_FILE_SECRET, NULL), -EINVAL);
        /* A configuration others may change is not read at all. */
        _cleanup_free_ char *conf = write_conf(dir, "[agent]\nnode = n1\n");
        assert_int_equal(chmod(conf, 0666), 0);
        assert_int_equal(agent_config_init(&c), 0);
        nm_error_clear(&err);
        assert_int_equal(agent_config_load(&c, conf, true, &err), -EPERM);
        assert_non_null(strstr(err.msg, "refusing configuration"));
        agent_config_done(&c);
        assert_int_equal(rm_rf_path(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_config_file_and_overrides),
                cmocka_unit_test(test_config_errors_name_the_line),
                cmocka_unit_test(test_parse_size),
                cmocka_unit_test(test_journal_lifecycle),
                cmocka_unit_test(test_journal_history_by_time),
                cmocka_unit_test(test_history_per_peer),
                cmocka_unit_test(test_history_age),
                cmocka_unit_test(test_formatting),
                cmocka_unit_test(test_progress_json_lines),
                cmocka_unit_test(test_check_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
