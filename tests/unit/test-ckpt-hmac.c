/* SPDX-License-Identifier: Apache-2.0 */
/* The checkpoint tree HMAC against vectors derived from the format itself:
 * the expected value is OpenSSL's one-shot HMAC() over record bytes built by
 * hand here, never a value copied from the implementation. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "ckpt-format.h"
#include "test-ckpt-util.h"

static const uint8_t key32[32] = "0123456789abcdef0123456789abcdef";

/* ---- building the expected record stream by hand --------------------- */

typedef struct rec {
        uint8_t *p;
        size_t n;
} rec;

static void rec_add(rec *r, const void *data, size_t n) {
        r->p = realloc(r->p, r->n + n + 1);
        assert_non_null(r->p);
        memcpy(r->p + r->n, data, n);
        r->n += n;
}

static void rec_dir(rec *r, const char *path) {
        rec_add(r, "D", 1);
        rec_add(r, "", 1);
        rec_add(r, path, strlen(path));
        rec_add(r, "", 1);
}

static void rec_file(rec *r, const char *path, const void *data, size_t n) {
        uint8_t le[8];
        rec_add(r, "F", 1);
        rec_add(r, "", 1);
        rec_add(r, path, strlen(path));
        rec_add(r, "", 1);
        for (int i = 0; i < 8; i++)
                le[i] = (uint8_t)((uint64_t)n >> (8 * i));
        rec_add(r, le, 8);
        rec_add(r, data, n);
}

static void expected_hex(const uint8_t *key, size_t key_len, const rec *r, char out[65]) {
        unsigned char md[32];
        unsigned int md_len = 0;
        assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, r->p, r->n, md, &md_len));
        assert_int_equal(md_len, 32);
        for (int i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void assert_tree_hmac(const char *dir, const uint8_t *key, size_t key_len, const rec *r) {
        char want[65], got[65];
        _cleanup_close_ int dfd = tu_open_dir(dir);
        nm_error err = {};
        expected_hex(key, key_len, r, want);
        assert_int_equal(ckpt_hmac_tree(dfd, key, key_len, got, &err), 0);
        assert_string_equal(got, want);
}

/* ---- vectors ------------------------------------------------------------ */

static void test_vector_nested(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        rec r = {};

        tu_write_str(dir, "metadata.json", "{}");
        tu_mkdir(dir, "images", 0700);
        tu_write_str(dir, "images/core-1.img", "AAA");
        tu_mkdir(dir, "images/sub", 0700);
        tu_write(dir, "images/sub/empty", "", 0, 0600);
        tu_mkdir(dir, "images/sub/emptydir", 0700);

        rec_dir(&r, "images");
        rec_file(&r, "images/core-1.img", "AAA", 3);
        rec_dir(&r, "images/sub");
        rec_file(&r, "images/sub/empty", "", 0);
        rec_dir(&r, "images/sub/emptydir");
        rec_file(&r, "metadata.json", "{}", 2);
        assert_tree_hmac(dir, key32, sizeof(key32), &r);
        free(r.p);
        tu_rm(dir);
}

/* Bytewise by name per directory, depth first: "B" (0x42) before "a"; the
 * directory "a" and its contents before "a-b", "a.b" and "aa", although
 * "a/x" sorts after them as a whole path ('/' is 0x2f) and a locale would put
 * "a" before "B". */
static void test_vector_bytewise_order(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        rec r = {};

        tu_write_str(dir, "aa", "4");
        tu_write_str(dir, "a.b", "3");
        tu_write_str(dir, "a-b", "2");
        tu_mkdir(dir, "a", 0700);
        tu_write_str(dir, "a/x", "1");
        tu_write_str(dir, "B", "0");
        tu_write_str(dir, "\xc3\xa9", "5"); /* U+00E9, bytes 0xc3 0xa9: after every ASCII name */

        rec_file(&r, "B", "0", 1);
        rec_dir(&r, "a");
        rec_file(&r, "a/x", "1", 1);
        rec_file(&r, "a-b", "2", 1);
        rec_file(&r, "a.b", "3", 1);
        rec_file(&r, "aa", "4", 1);
        rec_file(&r, "\xc3\xa9", "5", 1);
        assert_tree_hmac(dir, key32, sizeof(key32), &r);
        free(r.p);
        tu_rm(dir);
}

/* Only the top-level checkpoint.hmac is outside the tree; one below it is an
 * ordinary file, and so is a stale checkpoint.hmac.tmp. */
static void test_vector_hmac_file_in_subdir(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        rec r = {};

        tu_write_str(dir, "checkpoint.hmac", "not part of the tree");
        tu_mkdir(dir, "images", 0700);
        tu_write_str(dir, "images/checkpoint.hmac", "hashed");

        rec_dir(&r, "images");
        rec_file(&r, "images/checkpoint.hmac", "hashed", 6);
        assert_tree_hmac(dir, key32, sizeof(key32), &r);

        tu_write_str(dir, "checkpoint.hmac", "changed: still not part of the tree");
        assert_tree_hmac(dir, key32, sizeof(key32), &r);
        free(r.p);
        tu_rm(dir);
}

static void test_vector_empty_tree(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        rec r = {};
        rec_add(&r, "", 0);
        assert_tree_hmac(dir, key32, sizeof(key32), &r);
        free(r.p);
        tu_rm(dir);
}

/* HMAC hashes keys longer than the block (64 bytes) with SHA-256 first: the
 * same digest as with SHA-256(key) as the key. nucleus does exactly this. */
static void test_long_key_is_hashed(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        uint8_t key[100], hashed[32];
        char via_hash[65];
        rec r = {};

        for (size_t i = 0; i < sizeof(key); i++)
                key[i] = (uint8_t)(i * 7 + 1);
        tu_write_str(dir, "f", "data");
        rec_file(&r, "f", "data", 4);
        assert_tree_hmac(dir, key, sizeof(key), &r);
        SHA256(key, sizeof(key), hashed);
        expected_hex(hashed, sizeof(hashed), &r, via_hash);
        assert_tree_hmac(dir, hashed, sizeof(hashed), &r);
        char a[65], b[65];
        expected_hex(key, sizeof(key), &r, a);
        expected_hex(hashed, sizeof(hashed), &r, b);
        assert_string_equal(a, b);
        free(r.p);
        tu_rm(dir);
}

/* ---- the incremental API ----------------------------------------------- */

static void test_incremental_equals_tree(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_close_ int dfd = -EBADF;
        ckpt_tree_entry *e = NULL;
        size_t n = 0;
        char whole[65], inc[65];
        nm_error err = {};
        uint8_t big[70000];

        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = (uint8_t)(i ^ (i >> 8));
        tu_write_str(dir, "metadata.json", "{\"container_id\": \"x\"}");
        tu_mkdir(dir, "images", 0700);
        tu_write(dir, "images/pages-1.img", big, sizeof(big), 0600);
        tu_write(dir, "images/pstree.img", "", 0, 0600);
        dfd = tu_open_dir(dir);
        assert_int_equal(ckpt_hmac_tree(dfd, key32, sizeof(key32), whole, &err), 0);

        assert_int_equal(ckpt_tree_walk(dfd, &e, &n, &err), 0);
        assert_int_equal(n, 4);
        assert_int_equal(ckpt_tree_bytes(e, n), sizeof(big) + strlen("{\"container_id\": \"x\"}"));
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h = NULL;
        assert_int_equal(ckpt_hmac_new(key32, sizeof(key32), &h), 0);
        for (size_t i = 0; i < n; i++) {
                if (e[i].type == CKPT_ENTRY_DIR) {
                        assert_int_equal(ckpt_hmac_dir(h, e[i].relpath, &err), 0);
                        continue;
                }
                _cleanup_close_ int fd = ckpt_tree_open_file(dfd, e[i].relpath, e[i].size, &err);
                assert_true(fd >= 0);
                assert_int_equal(ckpt_hmac_file_begin(h, e[i].relpath, e[i].size, &err), 0);
                /* Odd chunk sizes, as bytes arrive off a network. */
                uint8_t buf[777];
                size_t step = 0;
                ssize_t k;
                while ((k = read(fd, buf, 1 + (step++ * 7919) % sizeof(buf))) > 0)
                        assert_int_equal(ckpt_hmac_update(h, buf, (size_t)k, &err), 0);
        }
        assert_int_equal(ckpt_hmac_final(h, inc, &err), 0);
        assert_string_equal(inc, whole);
        ckpt_tree_entries_free(e, n);
        tu_rm(dir);
}

static ckpt_hmac *new_hmac(void) {
        ckpt_hmac *h = NULL;
        assert_int_equal(ckpt_hmac_new(key32, sizeof(key32), &h), 0);
        return h;
}

/* A mark is the final HMAC of the records so far, and the walk goes on
 * unchanged after it; in the middle of a file there is none. */
static void test_mark(void **state) {
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *a = new_hmac(), *b = new_hmac(), *c = new_hmac();
        uint8_t mac[32], mac2[32];
        char hex_b[65], hex_a[65], expect[65];
        nm_error err = {};
        (void)state;

        /* b: the tree that ends after images/a. */
        assert_int_equal(ckpt_hmac_dir(b, "images", &err), 0);
        assert_int_equal(ckpt_hmac_file_begin(b, "images/a", 3, &err), 0);
        assert_int_equal(ckpt_hmac_update(b, "abc", 3, &err), 0);
        assert_int_equal(ckpt_hmac_final(b, hex_b, &err), 0);
        /* a: the same records, marked, then more. */
        assert_int_equal(ckpt_hmac_dir(a, "images", &err), 0);
        assert_int_equal(ckpt_hmac_file_begin(a, "images/a", 3, &err), 0);
        assert_int_equal(ckpt_hmac_update(a, "ab", 2, &err), 0);
        assert_int_equal(ckpt_hmac_mark(a, mac, &err), -EBADMSG);
        nm_error_clear(&err);
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *a2 = new_hmac();
        assert_int_equal(ckpt_hmac_dir(a2, "images", &err), 0);
        assert_int_equal(ckpt_hmac_file_begin(a2, "images/a", 3, &err), 0);
        assert_int_equal(ckpt_hmac_update(a2, "abc", 3, &err), 0);
        assert_int_equal(ckpt_hmac_mark(a2, mac, &err), 0);
        assert_int_equal(ckpt_hmac_mark(a2, mac2, &err), 0);
        assert_memory_equal(mac, mac2, 32);
        for (size_t i = 0; i < 32; i++)
                snprintf(expect + 2 * i, 3, "%02x", mac[i]);
        assert_string_equal(expect, hex_b);
        assert_int_equal(ckpt_hmac_file_begin(a2, "metadata.json", 2, &err), 0);
        assert_int_equal(ckpt_hmac_update(a2, "{}", 2, &err), 0);
        assert_int_equal(ckpt_hmac_final(a2, hex_a, &err), 0);
        /* c: the whole tree without a mark. */
        assert_int_equal(ckpt_hmac_dir(c, "images", &err), 0);
        assert_int_equal(ckpt_hmac_file_begin(c, "images/a", 3, &err), 0);
        assert_int_equal(ckpt_hmac_update(c, "abc", 3, &err), 0);
        assert_int_equal(ckpt_hmac_file_begin(c, "metadata.json", 2, &err), 0);
        assert_int_equal(ckpt_hmac_update(c, "{}", 2, &err), 0);
        assert_int_equal(ckpt_hmac_final(c, expect, &err), 0);
        assert_string_equal(hex_a, expect);
}

static void test_incremental_refuses_disorder(void **state) {
        (void)state;
        nm_error err = {};
        char hex[65];

        /* Out of order within a directory. */
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h1 = new_hmac();
        assert_int_equal(ckpt_hmac_file_begin(h1, "metadata.json", 0, &err), 0);
        assert_int_equal(ckpt_hmac_dir(h1, "images", &err), -EBADMSG);
        assert_msg_contains(&err, "out of order");
        /* Poisoned: nothing works afterwards. */
        assert_true(ckpt_hmac_final(h1, hex, NULL) < 0);

        /* A file below a directory closed earlier. */
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h2 = new_hmac();
        nm_error_clear(&err);
        assert_int_equal(ckpt_hmac_dir(h2, "a", &err), 0);
        assert_int_equal(ckpt_hmac_file_begin(h2, "a-b", 0, &err), 0);
        assert_int_equal(ckpt_hmac_file_begin(h2, "a/x", 0, &err), -EBADMSG);

        /* A file whose directory was never announced. */
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h3 = new_hmac();
        assert_int_equal(ckpt_hmac_file_begin(h3, "images/core.img", 0, NULL), -EBADMSG);

        /* The same name twice. */
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h4 = new_hmac();
        assert_int_equal(ckpt_hmac_file_begin(h4, "x", 0, NULL), 0);
        assert_int_equal(ckpt_hmac_file_begin(h4, "x", 0, NULL), -EBADMSG);

        /* The top-level checkpoint.hmac is never a record; one below is. */
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h5 = new_hmac();
        assert_int_equal(ckpt_hmac_file_begin(h5, "checkpoint.hmac", 0, NULL), -EBADMSG);
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h6 = new_hmac();
        assert_int_equal(ckpt_hmac_dir(h6, "images", NULL), 0);
        assert_int_equal(ckpt_hmac_file_begin(h6, "images/checkpoint.hmac", 0, NULL), 0);
        assert_int_equal(ckpt_hmac_final(h6, hex, NULL), 0);
}

static void test_incremental_refuses_bad_paths_and_sizes(void **state) {
        (void)state;
        static const char *const bad[] = {"",  "/abs", "a//b",     "a/",      "..", "a/../b",
                                          ".", "./a",  "\xff\xfe", "\xc0\xaf" /* overlong '/' */};
        nm_error err = {};
        char hex[65];

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                _cleanup_(ckpt_hmac_freep) ckpt_hmac *h = new_hmac();
                if (ckpt_hmac_file_begin(h, bad[i], 0, NULL) != -EBADMSG)
                        fail_msg("path '%s' was accepted", bad[i]);
        }
        /* Short: the next record (or the end) finds bytes missing. */
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h1 = new_hmac();
        assert_int_equal(ckpt_hmac_file_begin(h1, "a", 4, &err), 0);
        assert_int_equal(ckpt_hmac_update(h1, "abc", 3, &err), 0);
        assert_int_equal(ckpt_hmac_final(h1, hex, &err), -EBADMSG);
        assert_msg_contains(&err, "short");
        /* Long: refused as soon as it overflows. */
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h2 = new_hmac();
        assert_int_equal(ckpt_hmac_file_begin(h2, "a", 2, NULL), 0);
        assert_int_equal(ckpt_hmac_update(h2, "abc", 3, NULL), -EFBIG);
        /* Bytes with no file open. */
        _cleanup_(ckpt_hmac_freep) ckpt_hmac *h3 = new_hmac();
        assert_int_equal(ckpt_hmac_dir(h3, "d", NULL), 0);
        assert_true(ckpt_hmac_update(h3, "x", 1, NULL) < 0);
}

static void test_order_checker_alone(void **state) {
        (void)state;
        _cleanup_(ckpt_tree_order_freep) ckpt_tree_order *o = NULL;
        assert_int_equal(ckpt_tree_order_new(&o), 0);
        assert_int_equal(ckpt_tree_order_next(o, CKPT_ENTRY_DIR, "images", NULL), 0);
        assert_int_equal(ckpt_tree_order_next(o, CKPT_ENTRY_FILE, "images/a", NULL), 0);
        assert_int_equal(ckpt_tree_order_next(o, CKPT_ENTRY_FILE, "images/b", NULL), 0);
        assert_int_equal(ckpt_tree_order_next(o, CKPT_ENTRY_FILE, "metadata.json", NULL), 0);
        assert_int_equal(ckpt_tree_order_next(o, CKPT_ENTRY_FILE, "images/c", NULL), -EBADMSG);
}

/* ---- sign, verify, tamper ---------------------------------------------- */

static void make_checkpoint(const char *dir) {
        tu_write_str(dir, "metadata.json", "{\"container_id\": \"abc\"}");
        tu_mkdir(dir, "images", 0700);
        tu_write_str(dir, "images/pages-1.img", "snapshot");
        tu_write_str(dir, "images/core-1.img", "core");
}

static void test_sign_writes_bare_lowercase_hex(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_close_ int dfd = -EBADF;
        _cleanup_free_ char *text = NULL, *victim = NULL;
        char hex[65], again[65];
        nm_error err = {};
        struct stat st;
        size_t len;

        make_checkpoint(dir);
        dfd = tu_open_dir(dir);
        /* A stale temp file that is a symlink: removed, never followed. */
        victim = tu_join(dir, "victim");
        tu_write_str(dir, "victim", "keep");
        assert_int_equal(symlinkat(victim, dfd, "checkpoint.hmac.tmp"), 0);
        assert_int_equal(ckpt_sign_at(dfd, key32, sizeof(key32), hex, &err), 0);
        text = tu_read(dir, "checkpoint.hmac", &len);
        assert_int_equal(len, 64);
        assert_memory_equal(text, hex, 64);
        for (size_t i = 0; i < len; i++)
                assert_true((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f'));
        assert_int_equal(fstatat(dfd, "checkpoint.hmac", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(faccessat(dfd, "checkpoint.hmac.tmp", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        free(text);
        text = tu_read(dir, "victim", NULL);
        assert_string_equal(text, "keep");
        /* The victim file is part of the tree now; the digest says so. */
        assert_int_equal(ckpt_verify_at(dfd, key32, sizeof(key32), again, &err), 0);
        assert_string_equal(again, hex);
        /* nucleus trims surrounding whitespace when it reads the file. */
        char padded[70];
        snprintf(padded, sizeof(padded), " %s\n", hex);
        tu_write_str(dir, "checkpoint.hmac", padded);
        assert_int_equal(ckpt_verify_at(dfd, key32, sizeof(key32), NULL, &err), 0);
        tu_rm(dir);
}

/* In place: the signature lands in the inode already there (a longer one
 * is cut to 64 bytes), and verifies; with none there, one is made; a
 * directory in its place fails it. */
static void test_sign_in_place(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_close_ int dfd = -EBADF;
        _cleanup_free_ char *text = NULL;
        char hex[65], again[65], old[80];
        nm_error err = {};
        struct stat before, after;
        size_t len;

        make_checkpoint(dir);
        dfd = tu_open_dir(dir);
        memset(old, 'x', sizeof(old) - 1);
        old[sizeof(old) - 1] = '\0';
        tu_write_str(dir, "checkpoint.hmac", old);
        assert_int_equal(fstatat(dfd, "checkpoint.hmac", &before, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(ckpt_sign_in_place_at(dfd, key32, sizeof(key32), hex, &err), 0);
        assert_int_equal(fstatat(dfd, "checkpoint.hmac", &after, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(after.st_ino, before.st_ino);
        text = tu_read(dir, "checkpoint.hmac", &len);
        assert_int_equal(len, 64);
        assert_memory_equal(text, hex, 64);
        assert_int_equal(ckpt_verify_at(dfd, key32, sizeof(key32), again, &err), 0);
        assert_string_equal(again, hex);

        assert_int_equal(unlinkat(dfd, "checkpoint.hmac", 0), 0);
        assert_int_equal(ckpt_sign_in_place_at(dfd, key32, sizeof(key32), again, &err), 0);
        assert_string_equal(again, hex);
        assert_int_equal(ckpt_verify_at(dfd, key32, sizeof(key32), NULL, &err), 0);

        assert_int_equal(unlinkat(dfd, "checkpoint.hmac", 0), 0);
        assert_int_equal(mkdirat(dfd, "checkpoint.hmac", 0700), 0);
        assert_true(ckpt_sign_in_place_at(dfd, key32, sizeof(key32), NULL, &err) < 0);
        assert_non_null(strstr(err.msg, "cannot write checkpoint.hmac"));
        tu_rm(dir);
}

static void assert_verify_fails(int dfd, const char *why) {
        nm_error err = {};
        int r = ckpt_verify_at(dfd, key32, sizeof(key32), NULL, &err);
        if (r != -EBADMSG)
                fail_msg("%s: verify returned %d (%s)", why, r, err.msg);
}

static void test_tamper_detected(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_close_ int dfd = -EBADF;
        nm_error err = {};

        make_checkpoint(dir);
        dfd = tu_open_dir(dir);
        assert_int_equal(ckpt_sign_at(dfd, key32, sizeof(key32), NULL, &err), 0);
        assert_int_equal(ckpt_verify_at(dfd, key32, sizeof(key32), NULL, &err), 0);

        /* One flipped byte. */
        tu_write_str(dir, "images/pages-1.img", "snapshou");
        assert_verify_fails(dfd, "flipped byte");
        nm_error_clear(&err);
        assert_int_equal(ckpt_verify_at(dfd, key32, sizeof(key32), NULL, &err), -EBADMSG);
        assert_msg_contains(&err, "HMAC mismatch (expected ");
        tu_write_str(dir, "images/pages-1.img", "snapshot");
        assert_int_equal(ckpt_verify_at(dfd, key32, sizeof(key32), NULL, &err), 0);

        /* A renamed file. */
        assert_int_equal(renameat(dfd, "images/core-1.img", dfd, "images/core-2.img"), 0);
        assert_verify_fails(dfd, "renamed file");
        assert_int_equal(renameat(dfd, "images/core-2.img", dfd, "images/core-1.img"), 0);
        assert_int_equal(ckpt_verify_at(dfd, key32, sizeof(key32), NULL, &err), 0);

        /* An added empty file. */
        tu_write(dir, "images/extra.img", "", 0, 0600);
        assert_verify_fails(dfd, "added empty file");
        assert_int_equal(unlinkat(dfd, "images/extra.img", 0), 0);

        /* An added empty directory. */
        tu_mkdir(dir, "images/d", 0700);
        assert_verify_fails(dfd, "added empty directory");
        assert_int_equal(unlinkat(dfd, "images/d", AT_REMOVEDIR), 0);

        /* Another key. */
        uint8_t other[32];
        memcpy(other, key32, sizeof(other));
        other[0] ^= 1;
        assert_int_equal(ckpt_verify_at(dfd, other, sizeof(other), NULL, &err), -EBADMSG);

        /* Missing or malformed checkpoint.hmac. */
        tu_write_str(dir, "checkpoint.hmac", "abc");
        assert_verify_fails(dfd, "malformed checkpoint.hmac");
        assert_int_equal(unlinkat(dfd, "checkpoint.hmac", 0), 0);
        assert_verify_fails(dfd, "missing checkpoint.hmac");
        tu_rm(dir);
}

static void test_symlink_and_special_refused(void **state) {
        (void)state;
        char *dir = tu_tmpdir();
        _cleanup_close_ int dfd = -EBADF;
        _cleanup_free_ char *fifo = NULL;
        ckpt_tree_entry *e = NULL;
        size_t n = 0;
        char hex[65];
        nm_error err = {};

        make_checkpoint(dir);
        dfd = tu_open_dir(dir);
        assert_int_equal(ckpt_sign_at(dfd, key32, sizeof(key32), NULL, &err), 0);

        assert_int_equal(symlinkat("../metadata.json", dfd, "images/link"), 0);
        assert_int_equal(ckpt_tree_walk(dfd, &e, &n, &err), -ELOOP);
        assert_msg_contains(&err, "symlink");
        nm_error_clear(&err);
        assert_int_equal(ckpt_hmac_tree(dfd, key32, sizeof(key32), hex, &err), -ELOOP);
        assert_int_equal(ckpt_sign_at(dfd, key32, sizeof(key32), NULL, NULL), -ELOOP);
        assert_verify_fails(dfd, "symlink in the tree");
        assert_int_equal(unlinkat(dfd, "images/link", 0), 0);

        fifo = tu_join(dir, "images/fifo");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        nm_error_clear(&err);
        assert_int_equal(ckpt_hmac_tree(dfd, key32, sizeof(key32), hex, &err), -EBADFD);
        assert_msg_contains(&err, "special file");
        assert_verify_fails(dfd, "fifo in the tree");
        assert_int_equal(unlinkat(dfd, "images/fifo", 0), 0);

        /* A name nucleus could not hash (not UTF-8). */
        tu_write_str(dir, "images/bad\xff", "x");
        assert_int_equal(ckpt_hmac_tree(dfd, key32, sizeof(key32), hex, NULL), -EILSEQ);
        assert_int_equal(unlinkat(dfd, "images/bad\xff", 0), 0);

        /* A symlink at the top-level checkpoint.hmac is read with O_NOFOLLOW. */
        assert_int_equal(unlinkat(dfd, "checkpoint.hmac", 0), 0);
        assert_int_equal(symlinkat("metadata.json", dfd, "checkpoint.hmac"), 0);
        assert_verify_fails(dfd, "symlinked checkpoint.hmac");

        /* The open helper refuses symlinks on the way and wrong sizes. */
        assert_int_equal(ckpt_tree_open_file(dfd, "checkpoint.hmac", UINT64_MAX, NULL), -ELOOP);
        assert_int_equal(ckpt_tree_open_file(dfd, "images/pages-1.img", 3, NULL), -EBUSY);
        assert_int_equal(ckpt_tree_open_file(dfd, "../x", UINT64_MAX, NULL), -EINVAL);
        tu_rm(dir);
}

static void test_compare(void **state) {
        (void)state;
        char a[65];
        nm_error err = {};
        memset(a, 'a', 64);
        a[64] = '\0';
        assert_int_equal(ckpt_hmac_compare(a, 64, a, NULL), 0);
        assert_int_equal(ckpt_hmac_compare("\n\t", 2, a, &err), -EBADMSG);
        assert_msg_contains(&err, "empty");
        assert_int_equal(ckpt_hmac_compare(a, 63, a, NULL), -EBADMSG);
        char upper[65];
        memcpy(upper, a, sizeof(upper));
        upper[0] = 'A';
        /* nucleus compares strings: uppercase hex does not match. */
        assert_int_equal(ckpt_hmac_compare(upper, 64, a, NULL), -EBADMSG);
}

/* The binding of an image set to a migration: a known answer (computed
 * with `openssl dgst -sha256 -mac HMAC` over the same bytes), and parts
 * that cannot be shifted into one another. */
static void test_binding(void **state) {
        const char *key = "0123456789abcdef0123456789abcdef";
        const char *tree = "abababababababababababababababababababababababababababababababab";
        const char *parts[] = {"m1", "node1", "node2", "c0ffee"};
        const char *shifted[] = {"m1", "node1n", "ode2", "c0ffee"};
        const char *other[] = {"m2", "node1", "node2", "c0ffee"};
        char a[CKPT_HMAC_HEX_LEN + 1], b[CKPT_HMAC_HEX_LEN + 1];
        (void)state;

        assert_int_equal(ckpt_binding(key, strlen(key), parts, 4, tree, a), 0);
        assert_string_equal(a, "dc4dd0b03200dff15ebadaea3804847e11700f5139f53bba4ddd61a83ff15291");
        assert_int_equal(ckpt_binding(key, strlen(key), shifted, 4, tree, b), 0);
        assert_string_not_equal(a, b);
        assert_int_equal(ckpt_binding(key, strlen(key), other, 4, tree, b), 0);
        assert_string_not_equal(a, b);
        assert_int_equal(ckpt_binding(key, strlen(key), parts, 3, tree, b), 0);
        assert_string_not_equal(a, b);
        assert_int_equal(ckpt_binding("other key", 9, parts, 4, tree, b), 0);
        assert_string_not_equal(a, b);
        assert_int_equal(ckpt_binding(key, 0, parts, 4, tree, b), -EINVAL);
        assert_int_equal(ckpt_binding(key, strlen(key), parts, 4, NULL, b), -EINVAL);
        assert_int_equal(ckpt_binding(key, strlen(key), (const char *[]){"m1", NULL}, 2, tree, b), -EINVAL);
        assert_int_equal(ckpt_binding(key, strlen(key), parts, CKPT_BINDING_PARTS_MAX + 1, tree, b),
                         -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vector_nested),
                cmocka_unit_test(test_binding),
                cmocka_unit_test(test_vector_bytewise_order),
                cmocka_unit_test(test_vector_hmac_file_in_subdir),
                cmocka_unit_test(test_vector_empty_tree),
                cmocka_unit_test(test_long_key_is_hashed),
                cmocka_unit_test(test_incremental_equals_tree),
                cmocka_unit_test(test_mark),
                cmocka_unit_test(test_incremental_refuses_disorder),
                cmocka_unit_test(test_incremental_refuses_bad_paths_and_sizes),
                cmocka_unit_test(test_order_checker_alone),
                cmocka_unit_test(test_sign_writes_bare_lowercase_hex),
                cmocka_unit_test(test_sign_in_place),
                cmocka_unit_test(test_tamper_detected),
                cmocka_unit_test(test_symlink_and_special_refused),
                cmocka_unit_test(test_compare),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
