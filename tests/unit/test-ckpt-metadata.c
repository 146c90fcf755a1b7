/* SPDX-License-Identifier: Apache-2.0 */
/* metadata.json: nucleus's fields in nucleus's order and types (the shape of
 * serde_json::to_string_pretty), our nm_* fields after them, the cgroup
 * limits read as nucleus reads them, and the way back to a state file. */
#include "ckpt-format.h"
#include "nm-config.h"
#include "test-ckpt-util.h"

static void fake_cgroup(const char *dir) {
        tu_write_str(dir, "memory.max", "536870912\n");
        tu_write_str(dir, "memory.high", "max\n");
        tu_write_str(dir, "memory.swap.max", "0\n");
        tu_write_str(dir, "cpu.max", "50000 100000\n");
        tu_write_str(dir, "cpu.weight", "100\n");
        tu_write_str(dir, "pids.max", "256\n");
        /* What the kernel prints: every key, "max" included. */
        tu_write_str(dir, "io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max\n");
}

static char *replace_once(const char *s, const char *from, const char *to) {
        const char *p = strstr(s, from);
        char *r = NULL;
        assert_non_null(p);
        assert_true(asprintf(&r, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from)) > 0);
        return r;
}

static ckpt_container *container_in(const char *cgroup) {
        char text[1024];
        ckpt_container *c = NULL;
        nm_error err = {};
        snprintf(text, sizeof(text),
                 "{\"id\":\"0123456789abcdef0123456789abcdef\",\"name\":\"web\",\"pid\":4242,\"command\":["
                 "\"/bin/sh\"],"
                 "\"started_at\":1,\"using_gvisor\":false,\"rootless\":true,\"cgroup_path\":\"%s\","
                 "\"start_ticks\":5,\"status\":\"running\",\"x\":[]}",
                 cgroup);
        if (ckpt_container_from_json(text, strlen(text), &c, &err) < 0)
                fail_msg("%s", err.msg);
        return c;
}

static char *format(const ckpt_metadata *md) {
        char *text = NULL;
        assert_int_equal(ckpt_metadata_format(md, &text, NULL), 0);
        return text;
}

static void test_field_order_and_types(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_(ckpt_container_freep) ckpt_container *c = container_in(dir);
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_free_ char *text = NULL, *text2 = NULL, *want = NULL;
        nm_error err = {};

        fake_cgroup(dir);
        assert_int_equal(
                ckpt_metadata_capture(
                        c, &(ckpt_capture_info){.criu_version = "4.2.1", .node_name = "node-a"}, &md, &err),
                0);
        /* The two values that depend on the clock and the machine. */
        assert_true(json_integer_value(json_object_get(md->json, "checkpoint_at")) > 1700000000);
        json_object_set_new(md->json, "checkpoint_at", json_integer(1700000001));
        json_object_set_new(md->json, "nm_kernel_release", json_string("6.18.0"));
        text = format(md);
        assert_true(asprintf(&want,
                             "{\n"
                             "  \"container_id\": \"0123456789abcdef0123456789abcdef\",\n"
                             "  \"container_name\": \"web\",\n"
                             "  \"original_pid\": 4242,\n"
                             "  \"command\": [\n"
                             "    \"/bin/sh\"\n"
                             "  ],\n"
                             "  \"checkpoint_at\": 1700000001,\n"
                             "  \"version\": \"%s\",\n"
                             "  \"using_gvisor\": false,\n"
                             "  \"rootless\": true,\n"
                             "  \"cgroup_path\": \"%s\",\n"
                             "  \"resource_limits\": {\n"
                             "    \"memory_bytes\": 536870912,\n"
                             "    \"memory_high\": null,\n"
                             "    \"memory_swap_max\": 0,\n"
                             "    \"cpu_quota_us\": 50000,\n"
                             "    \"cpu_period_us\": 100000,\n"
                             "    \"cpu_weight\": 100,\n"
                             "    \"pids_max\": 256,\n"
                             "    \"io_limits\": [\n"
                             "      {\n"
                             "        \"device\": \"8:0\",\n"
                             "        \"riops\": null,\n"
                             "        \"wiops\": null,\n"
                             "        \"rbps\": 1048576,\n"
                             "        \"wbps\": null\n"
                             "      }\n"
                             "    ]\n"
                             "  },\n"
                             "  \"nm_format\": 1,\n"
                             "  \"nm_source_node\": \"node-a\",\n"
                             "  \"nm_kernel_release\": \"6.18.0\",\n"
                             "  \"nm_criu_version\": \"4.2.1\",\n"
                             "  \"nm_image_bytes\": null,\n"
                             "  \"nm_bare_pid\": false,\n"
                             "  \"nm_container_state\": {\n"
                             "    \"id\": \"0123456789abcdef0123456789abcdef\",\n"
                             "    \"name\": \"web\",\n"
                             "    \"pid\": 4242,\n"
                             "    \"command\": [\n"
                             "      \"/bin/sh\"\n"
                             "    ],\n"
                             "    \"started_at\": 1,\n"
                             "    \"using_gvisor\": false,\n"
                             "    \"rootless\": true,\n"
                             "    \"cgroup_path\": \"%s\",\n"
                             "    \"start_ticks\": 5,\n"
                             "    \"status\": \"running\",\n"
                             "    \"x\": []\n"
                             "  }\n"
                             "}",
                             NM_VERSION, dir, dir) > 0);
        assert_string_equal(text, want);

        /* After the dump: the one number, in its reserved place. */
        ckpt_metadata_set_image_bytes(md, 231525);
        text2 = format(md);
        _cleanup_free_ char *want2 =
                replace_once(want, "\"nm_image_bytes\": null", "\"nm_image_bytes\": 231525");
        assert_string_equal(text2, want2);
        tu_rm(dir);
}

static void test_parse_back(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_(ckpt_container_freep) ckpt_container *c = container_in(dir), *back = NULL;
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL, *md2 = NULL;
        _cleanup_free_ char *text = NULL, *state_text = NULL;
        _cleanup_close_ int dfd = -EBADF;
        nm_error err = {};

        fake_cgroup(dir);
        assert_int_equal(ckpt_metadata_capture(c, NULL, &md, &err), 0);
        ckpt_metadata_set_image_bytes(md, 42);
        dfd = tu_open_dir(dir);
        assert_int_equal(ckpt_metadata_write(dfd, md, &err), 0);
        struct stat st;
        assert_int_equal(fstatat(dfd, "metadata.json", &st, 0), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(ckpt_metadata_load(dfd, &md2, &err), 0);
        assert_string_equal(md2->container_id, c->id);
        assert_string_equal(md2->container_name, "web");
        assert_int_equal(md2->original_pid, 4242);
        assert_true(md2->rootless);
        assert_false(md2->bare);
        assert_true(md2->has_image_bytes);
        assert_int_equal(md2->image_bytes, 42);
        assert_non_null(md2->container_state);
        assert_string_equal(md2->cgroup_path, dir);

        /* Back to the state file: the source's, unknown fields and all. */
        assert_int_equal(ckpt_container_from_metadata(md2, &back, &err), 0);
        assert_string_equal(back->id, c->id);
        back->pid = c->pid;
        back->start_ticks = c->start_ticks;
        assert_int_equal(ckpt_container_format(back, &state_text, &err), 0);
        assert_int_equal(ckpt_container_format(c, &text, &err), 0);
        assert_string_equal(state_text, text);
        tu_rm(dir);
}

/* A checkpoint made by nucleus itself: no nm_* fields. */
static const char nucleus_md[] = "{\n"
                                 "  \"container_id\": \"abc123\",\n"
                                 "  \"container_name\": \"test\",\n"
                                 "  \"original_pid\": 1,\n"
                                 "  \"command\": [\n"
                                 "    \"/bin/sh\"\n"
                                 "  ],\n"
                                 "  \"checkpoint_at\": 0,\n"
                                 "  \"version\": \"0.3.1\",\n"
                                 "  \"using_gvisor\": false,\n"
                                 "  \"rootless\": false,\n"
                                 "  \"cgroup_path\": \"/sys/fs/cgroup/nucleus-test\",\n"
                                 "  \"resource_limits\": {\n"
                                 "    \"memory_bytes\": 536870912,\n"
                                 "    \"memory_high\": null,\n"
                                 "    \"memory_swap_max\": null,\n"
                                 "    \"cpu_quota_us\": 50000,\n"
                                 "    \"cpu_period_us\": %s,\n"
                                 "    \"cpu_weight\": null,\n"
                                 "    \"pids_max\": %s,\n"
                                 "    \"io_limits\": []\n"
                                 "  }\n"
                                 "}";

static int parse_nucleus(const char *period, const char *pids, ckpt_metadata **ret, nm_error *err) {
        char text[2048];
        snprintf(text, sizeof(text), nucleus_md, period, pids);
        return ckpt_metadata_parse(text, strlen(text), ret, err);
}

static void test_nucleus_metadata(void **state) {
        (void)state;
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        _cleanup_free_ char *text = NULL;
        ckpt_metadata *bad = NULL;
        nm_error err = {};

        assert_int_equal(parse_nucleus("100000", "256", &md, &err), 0);
        assert_false(md->has_image_bytes);
        assert_null(md->container_state);
        assert_int_equal(ckpt_container_from_metadata(md, &c, &err), 0);
        c->pid = 77;
        c->start_ticks = 88;
        assert_int_equal(ckpt_container_format(c, &text, &err), 0);
        /* A state file in nucleus's field order, limits derived as nucleus
         * derives them (cpu_limit in millicores). */
        const char *order[] = {"\"id\": \"abc123\"",    "\"name\": \"test\"",
                               "\"pid\": 77",           "\"command\": [",
                               "\"started_at\": ",      "\"memory_limit\": 536870912",
                               "\"cpu_limit\": 500",    "\"using_gvisor\": false",
                               "\"rootless\": false",   "\"cgroup_path\": \"/sys/fs/cgroup/nucleus-test\"",
                               "\"config_hash\": null", "\"creator_uid\": ",
                               "\"start_ticks\": 88",   "\"status\": \"running\"",
                               "\"bundle_path\": null", "\"annotations\": {}"};
        const char *p = text;
        for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
                const char *q = strstr(p, order[i]);
                if (!q) {
                        fail_msg("'%s' missing or out of order in:\n%s", order[i], text);
                        return;
                }
                p = q;
        }

        /* nucleus's own sanity checks on load. */
        nm_error_clear(&err);
        assert_int_equal(parse_nucleus("0", "256", &bad, &err), -EBADMSG);
        assert_msg_contains(&err, "CPU period");
        assert_int_equal(parse_nucleus("100000", "0", &bad, NULL), -EBADMSG);
        assert_int_equal(parse_nucleus("100000", "18446744073709551615", &bad, NULL), -EBADMSG);
        assert_int_equal(parse_nucleus("100000", "null", &bad, NULL), 0);
        ckpt_metadata_free(bad);
        bad = NULL;
        assert_int_equal(parse_nucleus("\"x\"", "1", &bad, NULL), -EBADMSG);
        static const char *const broken[] = {
                "{}",
                "{\"container_id\":\"../x\",\"container_name\":\"n\",\"original_pid\":1,\"command\":[],"
                "\"checkpoint_at\":0,\"version\":\"v\",\"using_gvisor\":false,\"rootless\":false}",
                "{\"container_id\":\"a\",\"container_name\":\"n\",\"original_pid\":1,\"command\":[],"
                "\"checkpoint_at\":0,\"version\":\"v\",\"using_gvisor\":false,\"rootless\":false,"
                "\"nm_container_state\":[]}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(broken); i++)
                assert_int_equal(ckpt_metadata_parse(broken[i], strlen(broken[i]), &bad, NULL), -EBADMSG);

        /* A carried state whose id is not the checkpoint's. */
        static const char mismatch[] =
                "{\"container_id\":\"a\",\"container_name\":\"n\",\"original_pid\":1,\"command\":[],"
                "\"checkpoint_at\":0,\"version\":\"v\",\"using_gvisor\":false,\"rootless\":false,"
                "\"nm_container_state\":{\"id\":\"b\",\"name\":\"n\",\"pid\":1,\"command\":[],\"started_"
                "at\":1,"
                "\"using_gvisor\":false,\"rootless\":false}}";
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *mm = NULL;
        ckpt_container *wrong = NULL;
        assert_int_equal(ckpt_metadata_parse(mismatch, strlen(mismatch), &mm, NULL), 0);
        nm_error_clear(&err);
        assert_int_equal(ckpt_container_from_metadata(mm, &wrong, &err), -EBADMSG);
        assert_msg_contains(&err, "differs");
}

static void test_cgroup_reading(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_close_ int dfd = -EBADF;
        nm_error err = {};
        json_t *o = NULL;

        fake_cgroup(dir);
        dfd = tu_open_dir(dir);
        tu_write_str(dir, "cpu.max", "max 100000\n");
        unlinkat(dfd, "io.max", 0);
        assert_int_equal(ckpt_resource_limits_read(dfd, &o, &err), 0);
        assert_true(json_is_null(json_object_get(o, "cpu_quota_us")));
        assert_int_equal(json_array_size(json_object_get(o, "io_limits")), 0);
        json_decref(o);

        tu_write_str(dir, "cpu.max", "max 0\n");
        assert_int_equal(ckpt_resource_limits_read(dfd, &o, &err), -EBADMSG);
        assert_msg_contains(&err, "cpu.max period");
        tu_write_str(dir, "cpu.max", "1000 100000\n");

        tu_write_str(dir, "io.max", "8:0 foo=1\n");
        assert_int_equal(ckpt_resource_limits_read(dfd, &o, NULL), -EBADMSG);
        tu_write_str(dir, "io.max", "sda rbps=1\n");
        assert_int_equal(ckpt_resource_limits_read(dfd, &o, NULL), -EBADMSG);
        tu_write_str(dir, "io.max",
                     "\n8:16 riops=5 wiops=6 rbps=7 wbps=8\n259:0 rbps=max wbps=max riops=max wiops=max\n");
        assert_int_equal(ckpt_resource_limits_read(dfd, &o, NULL), 0);
        json_t *io = json_object_get(o, "io_limits");
        assert_int_equal(json_array_size(io), 2);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(io, 0), "wiops")), 6);
        assert_true(json_is_null(json_object_get(json_array_get(io, 1), "rbps")));
        json_decref(o);

        tu_write_str(dir, "pids.max", "lots\n");
        assert_int_equal(ckpt_resource_limits_read(dfd, &o, NULL), -EBADMSG);
        tu_write_str(dir, "pids.max", "max\n");
        /* A missing limit file is an error, as in nucleus: a silently
         * unlimited container on the next node would be worse. */
        unlinkat(dfd, "memory.swap.max", 0);
        nm_error_clear(&err);
        assert_int_equal(ckpt_resource_limits_read(dfd, &o, &err), -ENOENT);
        assert_msg_contains(&err, "memory.swap.max");

        /* ... and makes the capture fail before anything is dumped. */
        _cleanup_(ckpt_container_freep) ckpt_container *c = container_in(dir);
        ckpt_metadata *md = NULL;
        assert_true(ckpt_metadata_capture(c, NULL, &md, NULL) < 0);
        assert_null(md);
        tu_rm(dir);
}

static void test_bare_tree(void **state) {
        (void)state;
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL, *md2 = NULL;
        _cleanup_(ckpt_container_freep) ckpt_container *back = NULL;
        _cleanup_free_ char *text = NULL;
        char *cmd[] = {(char *)"sleep", NULL};
        ckpt_container c = {.id = (char *)"pid-77",
                            .name = (char *)"pid-77",
                            .pid = 77,
                            .start_ticks = 9,
                            .status = CKPT_STATUS_RUNNING,
                            .command = cmd,
                            .bare = true};

        assert_int_equal(ckpt_metadata_capture(&c, NULL, &md, NULL), 0);
        text = format(md);
        assert_non_null(strstr(text, "\"cgroup_path\": null,\n  \"resource_limits\": null,\n"));
        assert_non_null(strstr(text, "\"nm_bare_pid\": true,\n  \"nm_container_state\": null\n}"));
        assert_int_equal(ckpt_metadata_parse(text, strlen(text), &md2, NULL), 0);
        assert_true(md2->bare);
        assert_int_equal(ckpt_container_from_metadata(md2, &back, NULL), 0);
        assert_true(back->bare);
        assert_null(back->json);
        assert_string_equal(back->id, "pid-77");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_field_order_and_types),
                cmocka_unit_test(test_parse_back),
                cmocka_unit_test(test_nucleus_metadata),
                cmocka_unit_test(test_cgroup_reading),
                cmocka_unit_test(test_bare_tree),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
