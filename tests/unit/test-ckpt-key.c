/* SPDX-License-Identifier: Apache-2.0 */
/* The HMAC key file rules, as nucleus enforces them. */
#include "ckpt-format.h"
#include "test-ckpt-util.h"

typedef struct key_env {
        char *root;    /* tmp dir */
        char *keydir;  /* root/keys, 0700 */
        char *keypath; /* root/keys/hmac.key */
} key_env;

static int setup(void **state) {
        key_env *k = calloc(1, sizeof(*k));
        assert_non_null(k);
        k->root = tu_tmpdir();
        tu_mkdir(k->root, "keys", 0700);
        k->keydir = tu_join(k->root, "keys");
        k->keypath = tu_join(k->root, "keys/hmac.key");
        *state = k;
        return 0;
}

static int teardown(void **state) {
        key_env *k = *state;
        tu_rm(k->root);
        free(k->keydir);
        free(k->keypath);
        free(k);
        unsetenv(CKPT_KEY_ENV);
        return 0;
}

static void write_key(key_env *k, size_t len, mode_t mode) {
        uint8_t buf[200];
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t)(i + 3);
        assert_true(len <= sizeof(buf));
        tu_write(k->keydir, "hmac.key", buf, len, mode);
}

static void test_missing_key_is_created(void **state) {
        key_env *k = *state;
        uint8_t *key = NULL, *again = NULL;
        size_t len = 0, len2 = 0;
        nm_error err = {};
        struct stat st;

        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, &err), 0);
        assert_int_equal(len, 32);
        assert_int_equal(lstat(k->keypath, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(st.st_size, 32);
        assert_int_equal(st.st_uid, geteuid());
        /* Loaded again: the same bytes, not a new key. */
        assert_int_equal(ckpt_key_load(k->keypath, &again, &len2, &err), 0);
        assert_int_equal(len2, 32);
        assert_memory_equal(key, again, 32);
        /* Random, not a constant: two fresh keys differ. */
        _cleanup_free_ char *other = tu_join(k->root, "keys/other.key");
        uint8_t *third = NULL;
        size_t len3 = 0;
        assert_int_equal(ckpt_key_load(other, &third, &len3, &err), 0);
        assert_memory_not_equal(key, third, 32);
        ckpt_key_free(key, len);
        ckpt_key_free(again, len2);
        ckpt_key_free(third, len3);
}

/* The agent's way: a missing key (or key directory) is an error that says
 * how to install the cluster's key, and nothing is created. */
static void test_missing_key_refused(void **state) {
        key_env *k = *state;
        uint8_t *key = NULL;
        size_t len = 0;
        nm_error err = {};
        struct stat st;
        _cleanup_free_ char *nodir = tu_join(k->root, "absent/hmac.key");

        assert_int_equal(ckpt_key_load_mode(k->keypath, CKPT_KEY_REFUSE, &key, &len, &err), -ENOENT);
        assert_null(key);
        assert_non_null(strstr(err.msg, "does not exist"));
        assert_non_null(strstr(err.msg, "nucleus-provision hmac-key --print"));
        assert_int_equal(lstat(k->keypath, &st), -1);
        nm_error_clear(&err);
        assert_int_equal(ckpt_key_load_mode(nodir, CKPT_KEY_REFUSE, &key, &len, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "hmac-key --install"));
        _cleanup_free_ char *dir = tu_join(k->root, "absent");
        assert_int_equal(lstat(dir, &st), -1);
        /* An existing key loads as ever. */
        write_key(k, 40, 0600);
        assert_int_equal(ckpt_key_load_mode(k->keypath, CKPT_KEY_REFUSE, &key, &len, NULL), 0);
        assert_int_equal(len, 40);
        ckpt_key_free(key, len);
}

/* The identity agents exchange: the same for the same key, different for
 * another, and neither the key nor its plain SHA-256. */
static void test_key_identity(void **state) {
        uint8_t a[32], b[32];
        char ia[65], ia2[65], ib[65];
        (void)state;

        memset(a, 7, sizeof(a));
        memset(b, 7, sizeof(b));
        b[31] = 8;
        assert_int_equal(ckpt_key_identity(a, sizeof(a), ia), 0);
        assert_int_equal(ckpt_key_identity(a, sizeof(a), ia2), 0);
        assert_int_equal(ckpt_key_identity(b, sizeof(b), ib), 0);
        assert_int_equal(strlen(ia), 64);
        assert_string_equal(ia, ia2);
        assert_string_not_equal(ia, ib);
        assert_null(strstr(ia, "0707070707"));
        /* not sha256 of the key */
        assert_string_not_equal(ia, "4bb06f8e4e3a7715d201d573d0aa423762e55dabd61a2c02278fa56cc6d294e0");
        /* the format, pinned (agents of different builds compare it):
         * openssl dgst -sha256 -mac HMAC -macopt hexkey:0707...07 of the domain */
        assert_string_equal(ia, "cf857e3b032307d12340c767b87623d6d963c4a28832d541ebaf706125d0eb9e");
}

static void test_missing_dir_is_created_0700(void **state) {
        key_env *k = *state;
        _cleanup_free_ char *path = tu_join(k->root, "new/dir/hmac.key");
        _cleanup_free_ char *dir = tu_join(k->root, "new/dir");
        uint8_t *key = NULL;
        size_t len = 0;
        struct stat st;

        assert_int_equal(ckpt_key_load(path, &key, &len, NULL), 0);
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        ckpt_key_free(key, len);
}

static void test_existing_key_read(void **state) {
        key_env *k = *state;
        uint8_t *key = NULL;
        size_t len = 0;

        write_key(k, 100, 0400);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, NULL), 0);
        assert_int_equal(len, 100);
        assert_int_equal(key[0], 3);
        assert_int_equal(key[99], 102);
        ckpt_key_free(key, len);
}

static void test_short_key_refused(void **state) {
        key_env *k = *state;
        uint8_t *key = NULL;
        size_t len = 0;
        nm_error err = {};

        write_key(k, 31, 0600);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, &err), -EINVAL);
        assert_null(key);
        assert_msg_contains(&err, "too short (31 bytes");
        assert_msg_contains(&err, "/dev/urandom");
}

static void test_group_readable_key_refused(void **state) {
        key_env *k = *state;
        uint8_t *key = NULL;
        size_t len = 0;
        nm_error err = {};

        write_key(k, 32, 0640);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, &err), -EPERM);
        assert_msg_contains(&err, "chmod 600");
        nm_error_clear(&err);
        write_key(k, 32, 0604);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, &err), -EPERM);
        assert_msg_contains(&err, "insecure mode 604");
}

static void test_loose_key_dir_refused(void **state) {
        key_env *k = *state;
        uint8_t *key = NULL;
        size_t len = 0;
        nm_error err = {};

        write_key(k, 32, 0600);
        assert_int_equal(chmod(k->keydir, 0750), 0);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, &err), -EPERM);
        assert_msg_contains(&err, "chmod 700");
        assert_int_equal(chmod(k->keydir, 0701), 0);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, NULL), -EPERM);
        assert_int_equal(chmod(k->keydir, 0700), 0);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, NULL), 0);
        ckpt_key_free(key, len);
}

static void test_symlinks_refused(void **state) {
        key_env *k = *state;
        _cleanup_free_ char *real = tu_join(k->root, "keys/real.key");
        _cleanup_free_ char *linkdir = tu_join(k->root, "linkdir");
        _cleanup_free_ char *via_linkdir = tu_join(k->root, "linkdir/real.key");
        uint8_t *key = NULL;
        size_t len = 0;
        nm_error err = {};

        tu_write(k->keydir, "real.key", "0123456789abcdef0123456789abcdef", 32, 0600);
        assert_int_equal(symlink(real, k->keypath), 0);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, &err), -ELOOP);
        assert_msg_contains(&err, "symlink");
        /* A symlinked key directory. */
        assert_int_equal(symlink(k->keydir, linkdir), 0);
        nm_error_clear(&err);
        assert_int_equal(ckpt_key_load(via_linkdir, &key, &len, &err), -ELOOP);
        assert_msg_contains(&err, "symlink");
        /* A dangling symlink is not "missing": no key is created through it. */
        _cleanup_free_ char *dangling = tu_join(k->root, "keys/dangling.key");
        _cleanup_free_ char *target = tu_join(k->root, "keys/created-through-link");
        assert_int_equal(symlink(target, dangling), 0);
        assert_int_equal(ckpt_key_load(dangling, &key, &len, NULL), -ELOOP);
        assert_int_equal(access(target, F_OK), -1);
}

static void test_special_file_refused(void **state) {
        key_env *k = *state;
        uint8_t *key = NULL;
        size_t len = 0;
        nm_error err = {};

        /* A fifo would block a reader forever; it must be refused at once. */
        assert_int_equal(mkfifo(k->keypath, 0600), 0);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, &err), -EBADFD);
        assert_msg_contains(&err, "not a regular file");
}

static void test_wrong_owner_refused(void **state) {
        key_env *k = *state;
        uint8_t *key = NULL;
        size_t len = 0;
        nm_error err = {};

        if (geteuid() != 0) {
                /* Skipped, not passed: tests/run fails a skip as root. */
                print_message("not root: cannot make a file owned by someone else\n");
                skip();
        }
        write_key(k, 32, 0600);
        assert_int_equal(chown(k->keypath, 65534, 65534), 0);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, &err), -EPERM);
        assert_msg_contains(&err, "owned by uid 65534");
        nm_error_clear(&err);
        assert_int_equal(chown(k->keypath, 0, 0), 0);
        assert_int_equal(chown(k->keydir, 65534, 65534), 0);
        assert_int_equal(ckpt_key_load(k->keypath, &key, &len, &err), -EPERM);
        assert_msg_contains(&err, "directory");
        assert_int_equal(chown(k->keydir, 0, 0), 0);
}

static void test_key_path_from_env(void **state) {
        key_env *k = *state;
        _cleanup_free_ char *p = NULL, *q = NULL;
        uint8_t *key = NULL;
        size_t len = 0;

        assert_int_equal(setenv(CKPT_KEY_ENV, k->keypath, 1), 0);
        assert_int_equal(ckpt_key_path(&p), 0);
        assert_string_equal(p, k->keypath);
        write_key(k, 40, 0600);
        assert_int_equal(ckpt_key_load(NULL, &key, &len, NULL), 0);
        assert_int_equal(len, 40);
        ckpt_key_free(key, len);
        /* Empty means unset, as in nucleus. */
        assert_int_equal(setenv(CKPT_KEY_ENV, "", 1), 0);
        assert_int_equal(ckpt_key_path(&q), 0);
        if (geteuid() == 0)
                assert_string_equal(q, CKPT_KEY_PATH_ROOT);
        else
                assert_string_not_equal(q, "");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_missing_key_is_created, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_dir_is_created_0700, setup, teardown),
                cmocka_unit_test_setup_teardown(test_existing_key_read, setup, teardown),
                cmocka_unit_test_setup_teardown(test_short_key_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_group_readable_key_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_loose_key_dir_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlinks_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_special_file_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_owner_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_key_path_from_env, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_key_refused, setup, teardown),
                cmocka_unit_test(test_key_identity),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
