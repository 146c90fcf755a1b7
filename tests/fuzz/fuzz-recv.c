/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the receiving sink (transfer/recv.c), fed as the
 * destination agent feeds it: the input is a peer's byte stream (frames as
 * on the wire); each message it decodes to goes to xfer_recv_feed(), into a
 * staging directory on tmpfs; a frame that does not decode ends the stream,
 * as it ends the connection.
 *
 * Two conventions let the fuzzer reach the end of a stream: a FILE_END whose
 * sha256 is 32 zero bytes gets the real digest of the file's DATA, and an
 * IMAGES_DONE whose hmac is 64 '0's gets the real tree HMAC (under the key
 * below). Checked after every input: the sink reports exactly once when the
 * stream was refused or verified, and with a reason when refused; a refused
 * or unfinished stream leaves no staging directory; a verified one leaves
 * exactly the files it was sent, plus checkpoint.hmac; nothing appears
 * outside the staging directory; the loop closes with no handle left. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ckpt-format.h"
#include "fs-util.h"
#include "macro.h"
#include "proto.h"
#include "transfer.h"

#define MIG "fz"
#define STAGING "s"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char key[] = "fuzz-recv-key-0123456789abcdef-0123456789";
static char *jail; /* holds only parent/ */
static int jail_fd = -1, parent_fd = -1;

static void die(const char *what, const char *detail) {
        fprintf(stderr, "fuzz-recv: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
        abort();
}

static void cleanup(void) {
        if (jail)
                (void)rm_rf_path(jail);
}

static void setup_once(void) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

        if (jail)
                return;
        if (asprintf(&jail, "%s/nm-fuzz-recv-XXXXXX", base) < 0 || !mkdtemp(jail))
                die("cannot create the jail", base);
        atexit(cleanup);
        jail_fd = open_dir_nofollow(jail);
        if (jail_fd < 0 || mkdirat(jail_fd, "parent", 0700) < 0)
                die("cannot set up", jail);
        parent_fd = openat(jail_fd, "parent", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent_fd < 0)
                die("cannot open parent", jail);
}

/* Names in a directory, "." and ".." aside. */
static size_t count_entries(int dfd, const char *only) {
        DIR *d = fdopendir(fcntl(dfd, F_DUPFD_CLOEXEC, 3));
        struct dirent *de;
        size_t n = 0;

        if (!d)
                die("cannot list a directory", NULL);
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                        if (only && strcmp(de->d_name, only) != 0)
                                die("something was written outside the staging directory", de->d_name);
                        n++;
                }
        closedir(d);
        return n;
}

typedef struct run {
        int calls, status;
        xfer_recv_result res;
} run;

static void done_cb(xfer_recv *r, int status, const nm_error *err, const xfer_recv_result *res, void *ud) {
        run *u = ud;
        (void)r;
        u->calls++;
        u->status = status;
        if (status < 0 && (!err || !err->msg[0]))
                die("refused without a reason", NULL);
        if (status < 0 && faccessat(parent_fd, STAGING, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                die("staging still there when the refusal was reported", NULL);
        if (status == 0) {
                if (!res)
                        die("success without a result", NULL);
                u->res = *res;
        }
}

/* What an honest sender would compute, following along (ckpt's HMAC, which
 * refuses what breaks the format: its digest then stays the zeros). */
typedef struct mirror {
        ckpt_hmac *hmac;
        EVP_MD_CTX *sha;
        bool dir_done;
        uint64_t files; /* FILE_ENDs fed */
} mirror;

static void mirror_msg(mirror *mi, proto_msg *m, char hex[XFER_HMAC_HEX_MAX]) {
        static const uint8_t zero[PROTO_SHA256_LEN];
        unsigned len = 0;

        switch ((int)m->type) {
        case PROTO_MSG_FILE:
                if (!mi->dir_done) {
                        (void)ckpt_hmac_dir(mi->hmac, CKPT_IMAGES_DIR, NULL);
                        mi->dir_done = true;
                }
                (void)ckpt_hmac_file_begin(mi->hmac, m->file.path, m->file.size, NULL);
                (void)EVP_DigestInit_ex(mi->sha, EVP_sha256(), NULL);
                break;
        case PROTO_MSG_DATA:
                (void)ckpt_hmac_update(mi->hmac, m->data.data.ptr, m->data.data.len, NULL);
                (void)EVP_DigestUpdate(mi->sha, m->data.data.ptr, m->data.data.len);
                break;
        case PROTO_MSG_FILE_END:
                if (memcmp(m->file_end.sha256, zero, sizeof(zero)) == 0)
                        (void)EVP_DigestFinal_ex(mi->sha, m->file_end.sha256, &len);
                mi->files++;
                break;
        case PROTO_MSG_IMAGES_DONE:
                if (strspn(m->images_done.hmac, "0") == PROTO_HMAC_HEX_LEN &&
                    ckpt_hmac_final(mi->hmac, hex, NULL) >= 0)
                        m->images_done.hmac = hex;
                break;
        default: break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(proto_reader_freep) proto_reader *rd = NULL;
        mirror mi = {};
        run u = {};
        uv_loop_t loop;
        xfer_recv *r = NULL;
        nm_error err = {};
        bool refused = false, done = false;
        char hex[XFER_HMAC_HEX_MAX];

        setup_once();
        if (uv_loop_init(&loop) < 0 || ckpt_hmac_new(key, strlen(key), &mi.hmac) < 0 ||
            !(mi.sha = EVP_MD_CTX_new()) || proto_reader_new(0, &rd) < 0)
                die("cannot set up a run", NULL);
        xfer_recv_options o = {.key = key, .key_len = strlen(key), .mig = MIG, .max_bytes = 1u << 20};
        if (xfer_recv_new(&loop, parent_fd, STAGING, &o, done_cb, &u, &err, &r) < 0)
                die("xfer_recv_new", err.msg);

        if (proto_reader_feed(rd, data, size, &err) >= 0)
                for (;;) {
                        _cleanup_proto_msg_ proto_msg m = {};
                        const uint8_t *payload;
                        size_t n;
                        if (proto_reader_next(rd, &payload, &n, &err) <= 0 ||
                            proto_decode(payload, n, &m, &err) < 0)
                                break; /* the connection would end here */
                        mirror_msg(&mi, &m, hex);
                        nm_error_clear(&err);
                        if (xfer_recv_feed(r, &m, &err) < 0) {
                                if (!err.msg[0])
                                        die("a refused message without a reason", NULL);
                                refused = true;
                                break;
                        }
                        if (m.type == PROTO_MSG_IMAGES_DONE) {
                                done = true;
                                break;
                        }
                }
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        /* Removed before the report, once a running batch of writes ended. */
        if (refused && faccessat(parent_fd, STAGING, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                die("staging left after a refusal", err.msg);
        if ((refused || done) && u.calls != 1)
                die("the sink did not report exactly once", NULL);
        if (!refused && !done && u.calls != 0)
                die("the sink reported on an unfinished stream", NULL);
        if (refused && u.status >= 0)
                die("a refusal reported as success", NULL);
        if (done && u.status == 0) {
                _cleanup_close_ int sfd =
                        openat(parent_fd, STAGING, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                _cleanup_close_ int ifd = -EBADF;
                if (sfd < 0 || faccessat(sfd, "checkpoint.hmac", F_OK, AT_SYMLINK_NOFOLLOW) < 0 ||
                    faccessat(sfd, "metadata.json", F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                        die("a verified stream without its files", NULL);
                ifd = openat(sfd, "images", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (ifd < 0 || count_entries(sfd, NULL) != 3 ||
                    count_entries(ifd, NULL) + 1 != u.res.files || u.res.files != mi.files)
                        die("a verified staging directory holds other files than were sent", NULL);
                (void)rm_rf_at(parent_fd, STAGING); /* it is the caller's now */
        }
        if (getenv("FUZZ_RECV_VERBOSE"))
                fprintf(stderr, "  -> %s\n",
                        done && u.status == 0 ? "verified"
                        : refused || done     ? "refused"
                                              : "unfinished");
        r = xfer_recv_free(r);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop) != 0)
                die("handles left on the loop", NULL);
        if (count_entries(parent_fd, NULL) != 0)
                die("a staging directory was left", NULL);
        (void)count_entries(jail_fd, "parent");
        ckpt_hmac_free(mi.hmac);
        EVP_MD_CTX_free(mi.sha);
        return 0;
}
