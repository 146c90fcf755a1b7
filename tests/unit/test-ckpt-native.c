/* SPDX-License-Identifier: Apache-2.0 */
/* Native containers without root: the root archive round trip and every
 * kind of hostile archive the extraction must refuse, the nm_native JSON
 * both ways, the refusals on the source, the memory check on the target,
 * and the mount table parser. */
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "test-ckpt-util.h"

/* dir/rel in one of a few rotating buffers: no allocation to free. */
static const char *at(const char *dir, const char *rel) {
        static char bufs[8][1024];
        static unsigned next;
        char *b = bufs[next++ % 8];
        snprintf(b, sizeof(bufs[0]), "%s/%s", dir, rel);
        return b;
}

/* ---- archives made by hand ---------------------------------------------------- */

typedef struct hdr {
        char name[100], mode[8], uid[8], gid[8], size[12], mtime[12], chksum[8], typeflag, linkname[100];
        char magic[6], version[2], uname[32], gname[32], devmajor[8], devminor[8], prefix[155], pad[12];
} hdr;

typedef struct archive {
        char *buf;
        size_t len;
} archive;

static void put(archive *a, const void *p, size_t n) {
        a->buf = realloc(a->buf, a->len + n);
        assert_non_null(a->buf);
        memcpy(a->buf + a->len, p, n);
        a->len += n;
}

static void entry(archive *a, const char *name, char type, const char *link, const char *data, unsigned maj,
                  unsigned min) {
        hdr h = {};
        size_t size = data ? strlen(data) : 0;
        unsigned sum = 0;
        snprintf(h.name, sizeof(h.name), "%s", name);
        snprintf(h.mode, sizeof(h.mode), "%07o", type == '5' ? 0755 : 0644);
        snprintf(h.uid, sizeof(h.uid), "%07o", (unsigned)getuid());
        snprintf(h.gid, sizeof(h.gid), "%07o", (unsigned)getgid());
        snprintf(h.size, sizeof(h.size), "%011zo", size);
        snprintf(h.mtime, sizeof(h.mtime), "%011o", 0);
        h.typeflag = type;
        if (link)
                snprintf(h.linkname, sizeof(h.linkname), "%s", link);
        memcpy(h.magic, "ustar", 6);
        memcpy(h.version, "00", 2);
        snprintf(h.devmajor, sizeof(h.devmajor), "%07o", maj);
        snprintf(h.devminor, sizeof(h.devminor), "%07o", min);
        memset(h.chksum, ' ', sizeof(h.chksum));
        for (size_t i = 0; i < sizeof(h); i++)
                sum += ((unsigned char *)&h)[i];
        snprintf(h.chksum, sizeof(h.chksum), "%06o", sum);
        put(a, &h, sizeof(h));
        if (size) {
                char pad[512] = {};
                put(a, data, size);
                if (size % 512)
                        put(a, pad, 512 - size % 512);
        }
}

static void end(archive *a) {
        char zero[1024] = {};
        put(a, zero, sizeof(zero));
}

/* Extracts a into a fresh directory; returns the status and the message. */
static int extract(const archive *a, char **ret_dir, char *msg, size_t size) {
        char *dir = tu_tmpdir();
        const char *file = at(dir, "../archive.tar");
        nm_error err = {};
        int in, root, r;

        in = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(in >= 0);
        assert_int_equal(loop_write(in, a->buf, a->len), 0);
        assert_int_equal(lseek(in, 0, SEEK_SET), 0);
        root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(root >= 0);
        r = ckpt__tar_extract(in, root, &err);
        snprintf(msg, size, "%s", err.msg);
        close(in);
        close(root);
        unlink(file);
        *ret_dir = dir;
        return r;
}

static void refused(archive *a, const char *pattern) {
        char msg[NM_ERROR_MSG_MAX], *dir = NULL;
        int r = extract(a, &dir, msg, sizeof(msg));
        if (r != -EBADMSG || !strstr(msg, pattern))
                fail_msg("expected -EBADMSG with '%s', got %d '%s'", pattern, r, msg);
        rm_rf_path(dir);
        free(dir);
        free(a->buf);
        *a = (archive){};
}

static void test_tar_refusals(void **state) {
        archive a = {};
        (void)state;

        entry(&a, "../escape", '0', NULL, "x", 0, 0);
        end(&a);
        refused(&a, "refusing path '../escape'");

        entry(&a, "/etc/passwd", '0', NULL, "x", 0, 0);
        end(&a);
        refused(&a, "refusing path '/etc/passwd'");

        entry(&a, "a/../../b", '0', NULL, "x", 0, 0);
        end(&a);
        refused(&a, "refusing path");

        /* A symlink, then a file "through" it: never followed. */
        entry(&a, "lnk", '2', "/tmp", NULL, 0, 0);
        entry(&a, "lnk/owned", '0', NULL, "x", 0, 0);
        end(&a);
        refused(&a, "the parent of 'lnk/owned' is not a directory inside the root");

        entry(&a, "dev", '5', NULL, NULL, 0, 0);
        entry(&a, "dev/sda", '3', NULL, NULL, 8, 0);
        end(&a);
        refused(&a, "refusing device node 'dev/sda' (8:0)");

        entry(&a, "tmp", '5', NULL, NULL, 0, 0);
        entry(&a, "tmp/null", '3', NULL, NULL, 1, 3); /* the right numbers, the wrong place */
        end(&a);
        refused(&a, "refusing device node 'tmp/null'");

        entry(&a, "disk", '4', NULL, NULL, 8, 0);
        end(&a);
        refused(&a, "refusing entry 'disk' of type '4'");

        entry(&a, "f", '0', NULL, "x", 0, 0);
        entry(&a, "h", '1', "../f", NULL, 0, 0);
        end(&a);
        refused(&a, "refusing path '../f'");

        entry(&a, "d", '5', NULL, NULL, 0, 0);
        entry(&a, "h", '1', "d", NULL, 0, 0);
        end(&a);
        refused(&a, "hard link 'h' to 'd', which is no regular file");

        entry(&a, "f", '0', NULL, "x", 0, 0);
        entry(&a, "f", '0', NULL, "y", 0, 0);
        end(&a);
        refused(&a, "cannot make 'f'");

        entry(&a, "long", 'L', NULL, "name", 0, 0);
        end(&a);
        refused(&a, "'long' of type 'L'");

        entry(&a, "f", '0', NULL, "x", 0, 0);
        a.buf[148] ^= 1; /* the checksum */
        end(&a);
        refused(&a, "not a valid ustar header");

        entry(&a, "f", '0', NULL, "content", 0, 0);
        a.len -= 512; /* the data is cut off */
        refused(&a, "ends early");
}

/* Everything a root tmpfs holds but device nodes (which need root) comes
 * back the same. */
static void test_tar_round_trip(void **state) {
        _cleanup_free_ char *src = tu_tmpdir(), *dst = tu_tmpdir();
        const char *tar = at(src, "../round.tar");
        char long_name[300], path[512], target[64];
        nm_error err = {};
        struct stat a, b;
        int in, root, out;
        (void)state;

        assert_int_equal(mkdir(at(src, "tmp"), 0700), 0);
        assert_int_equal(chmod(at(src, "tmp"), 01777), 0);
        tu_write(src, "tmp/data", "0123456789", 10, 0640);
        assert_int_equal(symlink("../tmp/data", at(src, "tmp/ln")), 0);
        assert_int_equal(link(at(src, "tmp/data"), at(src, "tmp/hard")), 0);
        assert_int_equal(mkfifo(at(src, "fifo"), 0600), 0);
        memset(long_name, 'n', 200);
        long_name[200] = '\0';
        assert_int_equal(mkdir(at(src, "deep"), 0700), 0);
        snprintf(path, sizeof(path), "deep/%s", long_name);
        tu_write(src, path, "long", 4, 0600);

        out = open(tar, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        root = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(ckpt__tar_write(root, out, &err), 0);
        close(root);
        assert_int_equal(lseek(out, 0, SEEK_SET), 0);
        in = out;
        root = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ckpt__tar_extract(in, root, &err) < 0)
                fail_msg("extract: %s", err.msg);
        close(root);
        close(in);
        unlink(tar);

        assert_int_equal(stat(at(dst, "tmp"), &b), 0);
        assert_int_equal(b.st_mode & 07777, 01777);
        assert_int_equal(stat(at(dst, "tmp/data"), &b), 0);
        assert_int_equal(b.st_mode & 07777, 0640);
        assert_int_equal(b.st_size, 10);
        assert_int_equal(b.st_nlink, 2);
        assert_int_equal(stat(at(dst, "tmp/hard"), &a), 0);
        assert_int_equal(a.st_ino, b.st_ino);
        ssize_t n = readlink(at(dst, "tmp/ln"), target, sizeof(target) - 1);
        assert_true(n > 0);
        target[n] = 0;
        assert_string_equal(target, "../tmp/data");
        assert_int_equal(lstat(at(dst, "fifo"), &b), 0);
        assert_true(S_ISFIFO(b.st_mode));
        assert_int_equal(stat(at(dst, path), &b), 0);
        assert_int_equal(b.st_size, 4);
        rm_rf_path(src);
        rm_rf_path(dst);
}

/* ---- nm_native --------------------------------------------------------------- */

static ckpt_native *sample(void) {
        ckpt_native *n = calloc(1, sizeof(*n));
        assert_non_null(n);
        n->own_mount_ns = true;
        n->mounts = calloc(3, sizeof(*n->mounts));
        n->n_mounts = 3;
        n->mounts[0] = (ckpt_native_mount){CKPT_MOUNT_ROOT,
                                           strdup("/"),
                                           strdup("tmpfs"),
                                           NULL,
                                           strdup("size=65536k,mode=755"),
                                           CKPT_MNT_NOSUID | CKPT_MNT_NODEV,
                                           false};
        n->mounts[1] = (ckpt_native_mount){
                CKPT_MOUNT_HOST_BIND, strdup("/usr"), strdup("ext4"), strdup("/usr"), NULL,
                CKPT_MNT_RDONLY,      false};
        n->mounts[2] = (ckpt_native_mount){
                CKPT_MOUNT_CRIU, strdup("/dev/shm"), strdup("tmpfs"), NULL, NULL, 0, false};
        n->root_bytes = 327680;
        n->net = CKPT_NET_BRIDGE;
        n->vethc = strdup("vethc-2b1");
        n->veth = strdup("veth-2b1");
        n->bridge = strdup("nucleus0");
        n->address = strdup("10.0.42.17");
        n->prefix = 24;
        n->bridge_net = strdup("10.0.42.1/24");
        n->cgroup = strdup("/nucleus-x");
        n->cgroup_inside = strdup("/../../nucleus-x");
        n->cgroupns_root = strdup("/sys/fs/cgroup/system.slice/nucleus-x.service");
        n->cgroup_fs = strdup("/sys/fs/cgroup");
        n->seccomp = 2;
        n->no_new_privs = true;
        n->landlock = CKPT_LANDLOCK_ACCEPTED_LOSS;
        n->stdio[0] = (ckpt_native_stdio){CKPT_STDIO_NULL, strdup("file[17:3]"), false};
        n->stdio[1] = (ckpt_native_stdio){CKPT_STDIO_PIPE, strdup("pipe:[4242]"), true};
        n->stdio[2] = (ckpt_native_stdio){CKPT_STDIO_PIPE, strdup("pipe:[4242]"), true};
        n->tcp_established = true;
        return n;
}

static void test_json_round_trip(void **state) {
        _cleanup_(ckpt_native_freep) ckpt_native *n = sample(), *back = NULL;
        json_t *j = NULL;
        char *t1, *t2;
        json_t *j2 = NULL;
        nm_error err = {};
        (void)state;

        assert_int_equal(ckpt_native_to_json(n, &j), 0);
        if (ckpt_native_from_json(j, &back, &err) < 0)
                fail_msg("%s", err.msg);
        assert_int_equal(ckpt_native_to_json(back, &j2), 0);
        t1 = json_dumps(j, JSON_SORT_KEYS);
        t2 = json_dumps(j2, JSON_SORT_KEYS);
        assert_string_equal(t1, t2);
        assert_int_equal(back->mounts[1].flags, CKPT_MNT_RDONLY);
        assert_string_equal(back->stdio[1].key, "pipe:[4242]");
        free(t1);
        free(t2);
        json_decref(j2);

        /* Malformed: each field checked. */
        json_object_set_new(json_array_get(json_object_get(j, "mounts"), 1), "kind", json_string("overlay"));
        ckpt_native *bad = NULL;
        assert_int_equal(ckpt_native_from_json(j, &bad, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "unknown kind 'overlay'"));
        json_decref(j);
}

static void expect_refusal(ckpt_native *n, const ckpt_native_policy *p, const char *pattern) {
        nm_error err = {};
        int r = ckpt_native_check_source(n, p, &err);
        if (r != -EOPNOTSUPP || !strstr(err.msg, pattern))
                fail_msg("expected a refusal with '%s', got %d '%s'", pattern, r, err.msg);
}

static void test_source_refusals(void **state) {
        const ckpt_native_policy accept = {.accept_landlock_loss = true};
        nm_error err = {};
        (void)state;

        ckpt_native *n = sample();
        assert_int_equal(ckpt_native_check_source(n, &accept, &err), 0);
        n->landlock = CKPT_LANDLOCK_ASSUMED;
        expect_refusal(n, NULL, "Landlock");
        assert_int_equal(ckpt_native_check_source(n, &accept, &err), 0);
        n->net = CKPT_NET_TAP;
        n->iface = strdup("tap0");
        expect_refusal(n, &accept, "tap device tap0");
        n->net = CKPT_NET_OTHER;
        expect_refusal(n, &accept, "not one nucleus makes");
        n->net = CKPT_NET_BRIDGE;
        n->init_outside = strdup("/usr/libexec/nucleus-init");
        expect_refusal(n, &accept, "production-mode init");
        free(n->init_outside);
        n->init_outside = NULL;
        n->memfd_mount = strdup("/etc/resolv.conf");
        expect_refusal(n, &accept, "memfd is bound over /etc/resolv.conf");
        free(n->memfd_mount);
        n->memfd_mount = NULL;
        free(n->cgroupns_root);
        n->cgroupns_root = NULL;
        expect_refusal(n, &accept, "invalid cgroup configuration");
        n->cgroupns_root = strdup("/x");
        n->stdio[1].kind = CKPT_STDIO_FOREIGN;
        expect_refusal(n, &accept, "Unix socket N not found");
        n->stdio[1].kind = CKPT_STDIO_TTY;
        expect_refusal(n, &accept, "terminal");
        n->stdio[1].kind = CKPT_STDIO_PIPE;
        n->user_ns = true;
        expect_refusal(n, &accept, "user namespace");
        n->user_ns = false;
        free(n->mounts[1].source);
        n->mounts[1].source = NULL;
        expect_refusal(n, &accept, "host path bound at /usr cannot be found");
        free(n->mounts[0].fstype);
        n->mounts[0].fstype = strdup("overlay");
        expect_refusal(n, &accept, "root file system is overlay");
        ckpt_native_free(n);
}

static void test_target_memory(void **state) {
        ckpt_native *n = sample();
        nm_error err = {};
        (void)state;
        n->net = CKPT_NET_NONE; /* no links to look at */
        free(n->mounts[1].source);
        n->mounts[1].source = strdup("/"); /* exists everywhere */
        n->root_bytes = 1ull << 60;
        assert_int_equal(ckpt_native_check_target(n, NULL, &err), -ENOMEM);
        assert_non_null(strstr(err.msg, "MiB available"));
        n->root_bytes = 4096;
        memset(&err, 0, sizeof(err));
        assert_int_equal(ckpt_native_check_target(n, NULL, &err), 0);
        ckpt_native_free(n);
}

static void test_mountinfo(void **state) {
        const char *text = "36 35 98:0 /a\\040b /mnt/with\\040space ro,nosuid master:1 - ext3 /dev/root rw\n"
                           "37 36 0:41 / / rw,nodev,noexec,relatime - tmpfs tmpfs rw,size=65536k,mode=755\n";
        ckpt__mnt *m = NULL;
        size_t n = 0;
        (void)state;
        assert_int_equal(ckpt__mountinfo_parse(text, &m, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(m[0].root, "/a b");
        assert_string_equal(m[0].target, "/mnt/with space");
        assert_int_equal(m[0].major, 98);
        assert_string_equal(m[0].fstype, "ext3");
        assert_int_equal(ckpt__mnt_flags(m[0].opts), CKPT_MNT_RDONLY | CKPT_MNT_NOSUID);
        assert_int_equal(ckpt__mnt_flags(m[1].opts), CKPT_MNT_NODEV | CKPT_MNT_NOEXEC);
        assert_string_equal(m[1].super_opts, "rw,size=65536k,mode=755");
        ckpt__mountinfo_free(m, n);
        assert_int_equal(ckpt__mountinfo_parse("1 2 3\n", &m, &n), -EBADMSG);
}

/* Lines as `iptables -t nat -S` prints nucleus's rules, and others. */
static void test_dnat_rules(void **state) {
        ckpt_native_port p;
        char to[16];
        (void)state;

        assert_int_equal(ckpt_native_parse_dnat("-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT "
                                                "--to-destination 10.0.42.17:80",
                                                &p, to, sizeof(to)),
                         1);
        assert_int_equal(p.proto, CKPT_PROTO_TCP);
        assert_string_equal(p.host_ip, "");
        assert_int_equal(p.host_port, 8080);
        assert_int_equal(p.ctr_port, 80);
        assert_string_equal(to, "10.0.42.17");
        assert_int_equal(
                ckpt_native_parse_dnat("-A PREROUTING -d 192.0.2.7/32 -p udp -m udp --dport 53 -j DNAT "
                                       "--to-destination 10.0.42.9:5353\n",
                                       &p, to, sizeof(to)),
                1);
        assert_int_equal(p.proto, CKPT_PROTO_UDP);
        assert_string_equal(p.host_ip, "192.0.2.7");
        assert_int_equal(p.ctr_port, 5353);
        assert_string_equal(to, "10.0.42.9");

        /* Not a published port: another chain or target, a negation, a
         * narrower match, a range, a port or address that does not parse. */
        const char *other[] = {
                "-P PREROUTING ACCEPT",
                "-A OUTPUT -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -j DNAT --to-destination "
                "10.0.42.17:80",
                "-A PREROUTING -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 80",
                "-A PREROUTING ! -d 127.0.0.0/8 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
                "10.0.42.17:80",
                "-A PREROUTING -s 192.0.2.0/24 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
                "10.0.42.17:80",
                "-A PREROUTING -p tcp -m tcp --dport 8080:8090 -j DNAT --to-destination 10.0.42.17:80",
                "-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.42.17:80-90",
                "-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.42.17",
                "-A PREROUTING -p tcp -m tcp --dport 0 -j DNAT --to-destination 10.0.42.17:80",
                "-A PREROUTING -d 10.0.0.0/8 -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
                "10.0.42.17:80",
                "-A PREROUTING -p sctp -m sctp --dport 8080 -j DNAT --to-destination 10.0.42.17:80",
                "-A PREROUTING -p tcp --dport",
                "",
        };
        for (size_t i = 0; i < ARRAY_SIZE(other); i++)
                if (ckpt_native_parse_dnat(other[i], &p, to, sizeof(to)) != 0)
                        fail_msg("taken for a published port: %s", other[i]);
}

static void test_ports_json_and_subnet(void **state) {
        const ckpt_native_port in[] = {
                {.proto = CKPT_PROTO_TCP, .host_port = 8080, .ctr_port = 80},
                {.proto = CKPT_PROTO_UDP, .host_ip = "192.0.2.7", .host_port = 53, .ctr_port = 53}};
        _cleanup_free_ ckpt_native_port *out = NULL;
        nm_error err = {};
        size_t n = 0;
        char buf[32];
        (void)state;

        json_t *a = ckpt_native_ports_to_json(in, ARRAY_SIZE(in));
        assert_int_equal(ckpt_native_ports_from_json(a, &out, &n, &err), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(out, in, sizeof(in));
        json_object_set_new(json_array_get(a, 1), "host_port", json_integer(0));
        ckpt_native_port *bad = NULL;
        assert_int_equal(ckpt_native_ports_from_json(a, &bad, &n, &err), -EBADMSG);
        json_decref(a);
        assert_int_equal(ckpt_native_ports_from_json(NULL, &bad, &n, &err), 0); /* an older source */
        assert_int_equal(n, 0);

        assert_int_equal(ckpt_native_subnet("10.0.42.1/24", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "10.0.42.0/24");
        assert_int_equal(ckpt_native_subnet("172.16.5.9/12", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "172.16.0.0/12");
        assert_int_equal(ckpt_native_subnet("10.0.42.1", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(ckpt_native_subnet("10.0.42.1/33", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(ckpt_native_subnet(NULL, buf, sizeof(buf)), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dnat_rules),      cmocka_unit_test(test_ports_json_and_subnet),
                cmocka_unit_test(test_tar_refusals),    cmocka_unit_test(test_tar_round_trip),
                cmocka_unit_test(test_json_round_trip), cmocka_unit_test(test_source_refusals),
                cmocka_unit_test(test_target_memory),   cmocka_unit_test(test_mountinfo),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
