/* SPDX-License-Identifier: Apache-2.0 */
/* The receiving half of the image stream: a sink fed with decoded FILE,
 * DATA, FILE_END and IMAGES_DONE messages by whoever owns the connection(s).
 *
 * Everything the peer says is checked before a byte lands: paths again with
 * proto_path_check(), the canonical order (names under images/ strictly
 * increasing, metadata.json last), the announced sizes, each file's SHA-256
 * and the tree HMAC, recomputed with ckpt's (ckpt_hmac_*, which checks the
 * canonical order once more). Files are created without a name (O_TMPFILE) in a
 * staging directory we create ourselves, named (never over an existing
 * name) once their SHA-256 matched, and sealed immutable: nothing can be
 * written outside staging, and no path ever leads to unchecked bytes. The
 * loop checks and hashes; the writes run on the threadpool, in order
 * (recv-write.c), and fsync too, per file as soon as the file is sealed,
 * overlapping with the next one. When the writes fall behind, the caller
 * stops reading the peer (xfer_recv_full()) until they caught up. Any
 * failure removes the staging directory. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ckpt-format.h"
#include "fs-util.h"
#include "macro.h"
#include "transfer-internal.h"

static_assert(XFER_HMAC_HEX_MAX == CKPT_HMAC_HEX_LEN + 1, "the tree HMAC in hex, and a NUL");
static_assert(PROTO_SHA256_LEN == CKPT_HMAC_HEX_LEN / 2, "FILE_MAC carries ckpt_hmac_mark()");

/* The idle timeout measures progress, not chatter: it restarts only after
 * this many bytes of file data, so that a stream of tiny DATA frames (a
 * never-ending slow stream) ends like a silent one. Any real sender moves
 * this much in a fraction of a second. */
#define XFER_RECV_PROGRESS_BYTES (64u * 1024u)

/* How far the writes into staging may fall behind the stream before the
 * caller stops reading, and where it reads on. In bytes, and in steps: each
 * write holds a buffer of PROTO_DATA_MAX, however small its frame. */
#define XFER_RECV_BEHIND_BYTES (8u * 1024u * 1024u)
#define XFER_RECV_BEHIND_STEPS 64u
#define XFER_RECV_CAUGHT_UP_BYTES (2u * 1024u * 1024u)
#define XFER_RECV_CAUGHT_UP_STEPS 16u

/* Whether the sender's first frame came: the idle timeout runs from it. */
typedef enum xfer_recv_begun {
        XFER_RECV_NOT_BEGUN,
        XFER_RECV_BEGUN,
        _XFER_RECV_BEGUN_MAX,
        _XFER_RECV_BEGUN_INVALID = -EINVAL,
} xfer_recv_begun;

typedef enum xfer_recv_staging {
        XFER_RECV_STAGING_ABSENT, /* not made yet, or removed */
        XFER_RECV_STAGING_PRESENT,
        XFER_RECV_STAGING_DOOMED, /* removed when the running batch of writes ends */
        _XFER_RECV_STAGING_MAX,
        _XFER_RECV_STAGING_INVALID = -EINVAL,
} xfer_recv_staging;

typedef enum xfer_recv_throttle {
        XFER_RECV_READING,
        XFER_RECV_THROTTLED, /* xfer_recv_full() said so; drained() ends it */
        _XFER_RECV_THROTTLE_MAX,
        _XFER_RECV_THROTTLE_INVALID = -EINVAL,
} xfer_recv_throttle;

typedef enum xfer_recv_state {
        XFER_RECV_EXPECT_FILE,
        XFER_RECV_IN_FILE,
        XFER_RECV_SYNCING,
        XFER_RECV_SUCCEEDED,
        XFER_RECV_FAILED,
        _XFER_RECV_STATE_MAX,
        _XFER_RECV_STATE_INVALID = -EINVAL,
} xfer_recv_state;

typedef struct xfer_sync_job {
        uv_work_t work;
        xfer_recv *r;
        int fds[3];
        size_t n_fds;
        int result;
        bool final;
} xfer_sync_job;

struct xfer_recv {
        uv_loop_t *loop;
        xfer_recv_state state;
        ckpt_hmac *hmac; /* the tree HMAC, recomputed as bytes arrive */
        char *mig;
        uint64_t max_bytes, max_files, expected_bytes, idle_ms, progress_ms;
        xfer_progress_cb progress;
        int (*reserve)(void *userdata, uint64_t bytes, nm_error *err);
        void (*drained)(void *userdata);
        void *userdata;
        xfer_recv_done_cb cb;

        int parent_fd, dir_fd, images_fd;
        char *name;
        xfer_recv_staging staging;
        xfer_writer *w;
        xfer_recv_throttle throttle;

        char last_image[PROTO_FILE_NAME_MAX + 1];
        bool have_image, images_hashed, metadata_done;

        char path[PROTO_PATH_MAX + 1];
        uint64_t size, got;
        EVP_MD_CTX *sha;
        bool file_mac;
        proto_zctx *zctx; /* ZDATA: made at the first one */

        unsigned jobs_pending;
        uv_timer_t timer; /* idle deadline, then the deferred callback */
        bool timer_open, freed, ended, cb_pending;
        int status;
        uint64_t start_ms, last_activity_ms, last_progress_ms;
        uint64_t last_msg_ms, window_bytes; /* since last_activity_ms */
        uint64_t first_ms;                  /* the wait for the first frame */
        xfer_recv_begun begun;
        xfer__idle_check idle_check;
        xfer_recv_result res;
        nm_error err;
};

static void recv_maybe_free(xfer_recv *r);
static void timer_cb(uv_timer_t *t);

/* How long the sender may stay quiet now. */
static uint64_t recv_window(const xfer_recv *r) {
        return r->begun == XFER_RECV_BEGUN || r->first_ms == 0 ? r->idle_ms : r->first_ms;
}

/* The sender's first frame, or page bytes that count as its progress: the
 * idle timeout runs from here. */
static void recv_begin(xfer_recv *r) {
        if (r->begun == XFER_RECV_BEGUN)
                return;
        r->begun = XFER_RECV_BEGUN;
        r->last_activity_ms = r->last_msg_ms = xfer__now_ms(r->loop);
        r->window_bytes = 0;
        if (r->idle_ms && r->timer_open && !r->cb_pending)
                (void)uv_timer_start(&r->timer, timer_cb, r->idle_ms, 0);
}

static void report_progress(xfer_recv *r, bool force) {
        uint64_t now = uv_now(r->loop);
        xfer_progress p;

        if (!r->progress || (!force && now - r->last_progress_ms < r->progress_ms))
                return;
        r->last_progress_ms = now;
        p = (xfer_progress){
                .bytes = r->res.bytes,
                .files = r->res.files,
                .total_bytes = r->expected_bytes,
                .elapsed_ms = now - r->start_ms,
        };
        p.rate = p.elapsed_ms ? (double)p.bytes * 1000.0 / (double)p.elapsed_ms : 0.0;
        r->progress(&p, r->userdata);
}

/* Now, or when the running batch of writes ends: a file it names while
 * the directory is being removed would outlive the removal. */
static void remove_staging(xfer_recv *r) {
        if (r->staging == XFER_RECV_STAGING_ABSENT)
                return;
        xfer__writer_cancel(r->w);
        if (xfer__writer_busy(r->w)) {
                r->staging = XFER_RECV_STAGING_DOOMED;
                return;
        }
        if (r->images_fd >= 0)
                close(TAKE_FD(r->images_fd));
        if (r->dir_fd >= 0)
                close(TAKE_FD(r->dir_fd));
        (void)rm_rf_at(r->parent_fd, r->name);
        r->staging = XFER_RECV_STAGING_ABSENT;
}

/* Ends the transfer. The callback runs from the timer, so never inside
 * xfer_recv_feed() or xfer_recv_abort(). */
static int recv_fail(xfer_recv *r, int code, const nm_error *err) {
        if (r->ended)
                return code;
        if (err && err->msg[0])
                nm_error_set(&r->err, code, "%s", err->msg);
        else
                nm_error_errno(&r->err, code, "receiving the images failed");
        r->ended = true;
        r->status = code;
        r->state = XFER_RECV_FAILED;
        remove_staging(r);
        if (r->throttle == XFER_RECV_THROTTLED) {
                /* Nothing more is written: a caller that stopped reading
                 * for us must not wait for a drain that never comes. */
                r->throttle = XFER_RECV_READING;
                if (r->drained && !r->freed)
                        r->drained(r->userdata);
        }
        r->cb_pending = true;
        (void)uv_timer_stop(&r->timer);
        (void)uv_timer_start(&r->timer, timer_cb, 0, 0);
        return code;
}

static void recv_succeed(xfer_recv *r) {
        r->ended = true;
        r->status = 0;
        r->state = XFER_RECV_SUCCEEDED;
        (void)uv_timer_stop(&r->timer);
        report_progress(r, true);
        if (r->cb && !r->freed)
                r->cb(r, 0, NULL, &r->res, r->userdata);
}

static void timer_cb(uv_timer_t *t) {
        xfer_recv *r = container_of(t, xfer_recv, timer);
        nm_error e = {};
        uint64_t window;

        if (r->cb_pending) {
                if (r->staging == XFER_RECV_STAGING_DOOMED)
                        return; /* writer_batch_done() starts us again */
                r->cb_pending = false;
                if (r->cb && !r->freed)
                        r->cb(r, r->status, &r->err, NULL, r->userdata);
                return;
        }
        if (r->ended || r->idle_ms == 0)
                return;
        window = recv_window(r);
        if (r->throttle == XFER_RECV_THROTTLED) {
                /* The peer waits for our writes, not we for it. */
                r->last_activity_ms = r->last_msg_ms = uv_now(r->loop);
                r->idle_check = XFER__IDLE_WATCHING;
        }
        if (uv_now(r->loop) - r->last_activity_ms < window) {
                (void)uv_timer_start(&r->timer, timer_cb, r->last_activity_ms + window - uv_now(r->loop), 0);
                return;
        }
        if (r->idle_check == XFER__IDLE_WATCHING) {
                /* Frames may wait unread in the connection: see them first. */
                r->idle_check = XFER__IDLE_LOOKING;
                (void)uv_timer_start(&r->timer, timer_cb, XFER__IDLE_LOOK_MS, 0);
                return;
        }
        if (r->begun == XFER_RECV_NOT_BEGUN)
                nm_error_set(&e, -ETIMEDOUT,
                             "the sender sent nothing for %llu ms: it never began (after "
                             "%llu files, %llu bytes)",
                             (unsigned long long)window, (unsigned long long)r->res.files,
                             (unsigned long long)r->res.bytes);
        else if (uv_now(r->loop) - r->last_msg_ms >= r->idle_ms)
                nm_error_set(&e, -ETIMEDOUT,
                             "the sender went silent: nothing received for %llu ms (after %llu files, %llu "
                             "bytes)",
                             (unsigned long long)r->idle_ms, (unsigned long long)r->res.files,
                             (unsigned long long)r->res.bytes);
        else
                nm_error_set(
                        &e, -ETIMEDOUT,
                        "the sender is too slow: %llu bytes in %llu ms, at least %u expected (after %llu "
                        "files, %llu bytes)",
                        (unsigned long long)r->window_bytes, (unsigned long long)r->idle_ms,
                        XFER_RECV_PROGRESS_BYTES, (unsigned long long)r->res.files,
                        (unsigned long long)r->res.bytes);
        recv_fail(r, -ETIMEDOUT, &e);
}

/* ---- fsync on the threadpool ------------------------------------------------ */

static void sync_work(uv_work_t *w) {
        xfer_sync_job *j = container_of(w, xfer_sync_job, work);

        j->result = 0;
        for (size_t i = 0; i < j->n_fds; i++) {
                if (fsync(j->fds[i]) < 0 && j->result == 0)
                        j->result = -errno;
                close(j->fds[i]);
        }
}

static void final_sync_maybe(xfer_recv *r);

static void sync_done(uv_work_t *w, int status) {
        xfer_sync_job *j = container_of(w, xfer_sync_job, work);
        xfer_recv *r = j->r;
        nm_error e = {};
        int result = status < 0 ? status : j->result;
        bool final = j->final;

        free(j);
        r->jobs_pending--;
        if (r->freed) {
                recv_maybe_free(r);
                return;
        }
        if (r->ended)
                return;
        if (result < 0) {
                nm_error_errno(&e, result, "cannot flush the received images to disk");
                recv_fail(r, result, &e);
                return;
        }
        if (final && r->state == XFER_RECV_SYNCING) {
                recv_succeed(r);
                return;
        }
        final_sync_maybe(r);
}

/* Queues fsync+close of fds (taken over, also on failure). */
static int queue_sync(xfer_recv *r, const int *fds, size_t n, bool final) {
        xfer_sync_job *j = calloc(1, sizeof(*j));
        int q;

        if (!j) {
                for (size_t i = 0; i < n; i++)
                        close(fds[i]);
                return -ENOMEM;
        }
        j->r = r;
        j->final = final;
        j->n_fds = n;
        memcpy(j->fds, fds, n * sizeof(int));
        q = uv_queue_work(r->loop, &j->work, sync_work, sync_done);
        if (q < 0) {
                for (size_t i = 0; i < n; i++)
                        close(fds[i]);
                free(j);
                return -EIO;
        }
        r->jobs_pending++;
        return 0;
}

/* The directories last: their entries must be durable after the files. */
static int start_final_sync(xfer_recv *r) {
        int fds[3] = {-1, -1, -1};
        size_t n = 0;

        fds[n] = fcntl(r->images_fd, F_DUPFD_CLOEXEC, 3);
        if (fds[n] >= 0)
                n++;
        fds[n] = fcntl(r->dir_fd, F_DUPFD_CLOEXEC, 3);
        if (fds[n] >= 0)
                n++;
        fds[n] = fcntl(r->parent_fd, F_DUPFD_CLOEXEC, 3);
        if (fds[n] >= 0)
                n++;
        if (n != 3) {
                for (size_t i = 0; i < n; i++)
                        close(fds[i]);
                return -EMFILE;
        }
        return queue_sync(r, fds, n, true);
}

/* After IMAGES_DONE, once every file is written and flushed. */
static void final_sync_maybe(xfer_recv *r) {
        nm_error e = {};
        int q;

        if (r->state != XFER_RECV_SYNCING || r->jobs_pending > 0 || xfer__writer_busy(r->w))
                return;
        q = start_final_sync(r);
        if (q < 0) {
                nm_error_errno(&e, q, "cannot flush the received images to disk");
                recv_fail(r, q, &e);
        }
}

/* ---- the writes (recv-write.c) ----------------------------------------------- */

static void writer_sealed(int fd, void *userdata) {
        xfer_recv *r = userdata;
        nm_error e = {};
        int q;

        if (r->ended) {
                close(fd);
                return;
        }
        q = queue_sync(r, &fd, 1, false);
        if (q < 0) {
                nm_error_errno(&e, q, "cannot flush a received image");
                recv_fail(r, q, &e);
        }
}

static void writer_batch_done(int status, const nm_error *err, void *userdata) {
        xfer_recv *r = userdata;

        if (r->staging == XFER_RECV_STAGING_DOOMED) {
                remove_staging(r);
                if (r->cb_pending)
                        (void)uv_timer_start(&r->timer, timer_cb, 0, 0);
        }
        if (r->freed) {
                recv_maybe_free(r);
                return;
        }
        if (status < 0) {
                recv_fail(r, status, err);
                return;
        }
        if (r->ended)
                return;
        if (r->throttle == XFER_RECV_THROTTLED &&
            !xfer__writer_above(r->w, XFER_RECV_CAUGHT_UP_BYTES, XFER_RECV_CAUGHT_UP_STEPS)) {
                /* The peer's idle window starts again: it waited for us. */
                r->last_activity_ms = r->last_msg_ms = xfer__now_ms(r->loop);
                r->throttle = XFER_RECV_READING;
                if (r->drained)
                        r->drained(r->userdata);
        }
        final_sync_maybe(r);
}

/* ---- the messages ------------------------------------------------------------- */

static int hash_error(nm_error *err, int code, const nm_error *he, const char *what) {
        if (he->msg[0])
                return nm_error_set(err, code, "hashing %s failed: %s", what, he->msg);
        return nm_error_errno(err, code, "hashing %s failed", what);
}

static int on_file(xfer_recv *r, const proto_file *f, nm_error *err) {
        nm_error he = {};
        const char *name;
        int kind, q;

        if (r->state != XFER_RECV_EXPECT_FILE)
                return nm_error_set(err, -EBADMSG, "FILE %s arrived before FILE_END of %s", f->path,
                                    r->path);
        kind = proto_path_check(f->path, strlen(f->path), err);
        if (kind < 0)
                return nm_error_prefix(err, "refusing file from the peer");
        if (r->metadata_done)
                return nm_error_set(err, -EBADMSG, "FILE %s after metadata.json, which must come last",
                                    f->path);
        if (r->res.files >= r->max_files)
                return nm_error_set(err, -EFBIG,
                                    "FILE %s would be file %llu of an image set; the limit is %llu", f->path,
                                    (unsigned long long)r->res.files + 1, (unsigned long long)r->max_files);
        if (r->max_bytes && (f->size > r->max_bytes || r->res.bytes + f->size > r->max_bytes))
                return nm_error_set(err, -EFBIG, "FILE %s of %llu bytes exceeds the limit of %llu bytes",
                                    f->path, (unsigned long long)f->size, (unsigned long long)r->max_bytes);
        if (r->reserve && (q = r->reserve(r->userdata, f->size, err)) < 0)
                return q;
        if (kind == PROTO_PATH_IMAGE) {
                name = f->path + strlen("images/");
                if (r->have_image && strcmp(name, r->last_image) <= 0)
                        return nm_error_set(
                                err, -EBADMSG,
                                "FILE %s out of order: names under images/ must arrive sorted and "
                                "once (previous: images/%s)",
                                f->path, r->last_image);
        } else
                name = "metadata.json";
        if (!r->images_hashed) {
                /* The tree's one directory: its record comes first. */
                q = ckpt_hmac_dir(r->hmac, CKPT_IMAGES_DIR, &he);
                if (q < 0)
                        return hash_error(err, q, &he, "images/");
                r->images_hashed = true;
        }
        /* Created without a name (O_TMPFILE), named and sealed immutable
         * only once its SHA-256 matched: no path ever leads to bytes that
         * were not checked, so what CRIU reads is what was hashed. */
        q = xfer__writer_open(r->w, kind == PROTO_PATH_IMAGE ? XFER_WDIR_IMAGES : XFER_WDIR_TOP, f->path,
                              name);
        if (q < 0)
                return nm_error_errno(err, q, "cannot create %s in the staging directory", f->path);
        q = ckpt_hmac_file_begin(r->hmac, f->path, f->size, &he);
        if (q < 0)
                return hash_error(err, q, &he, f->path);
        if (!r->file_mac && EVP_DigestInit_ex(r->sha, EVP_sha256(), NULL) != 1)
                return nm_error_set(err, -EIO, "cannot start SHA-256");
        if (kind == PROTO_PATH_IMAGE) {
                snprintf(r->last_image, sizeof(r->last_image), "%s", name);
                r->have_image = true;
        } else
                r->metadata_done = true;
        snprintf(r->path, sizeof(r->path), "%s", f->path);
        r->size = f->size;
        r->got = 0;
        r->state = XFER_RECV_IN_FILE;
        return 0;
}

/* Hashed here, in the writer's space, then queued to be written as it is. */
static int on_bytes(xfer_recv *r, const uint8_t *buf, size_t n, nm_error *err) {
        nm_error he = {};
        int q;

        if (!r->file_mac && EVP_DigestUpdate(r->sha, buf, n) != 1)
                return nm_error_set(err, -EIO, "SHA-256 failed");
        q = ckpt_hmac_update(r->hmac, buf, n, &he);
        if (q < 0)
                return hash_error(err, q, &he, r->path);
        q = xfer__writer_commit(r->w, n);
        if (q < 0)
                return nm_error_errno(err, q, "cannot write %s in the staging directory", r->path);
        r->got += n;
        r->res.bytes += n;
        r->window_bytes += n; /* file bytes, plain or decompressed: progress */
        return 0;
}

static int check_more(xfer_recv *r, const char *what, uint64_t n, nm_error *err) {
        if (r->state != XFER_RECV_IN_FILE)
                return nm_error_set(err, -EBADMSG, "%s outside a file", what);
        if (n > r->size - r->got)
                return nm_error_set(err, -EBADMSG, "more %s for %s than the %llu bytes announced", what,
                                    r->path, (unsigned long long)r->size);
        return 0;
}

static int on_data(xfer_recv *r, const proto_data *d, nm_error *err) {
        uint8_t *buf;
        int q = check_more(r, "DATA", d->data.len, err);

        if (q < 0)
                return q;
        if (d->data.len > PROTO_DATA_MAX)
                return nm_error_set(err, -EBADMSG, "DATA of %zu bytes for %s, more than a frame holds",
                                    d->data.len, r->path);
        buf = xfer__writer_space(r->w, d->data.len);
        if (!buf)
                return nm_error_set(err, -ENOMEM, "cannot buffer %s", r->path);
        memcpy(buf, d->data.ptr, d->data.len);
        return on_bytes(r, buf, d->data.len, err);
}

static int on_zdata(xfer_recv *r, const proto_zdata *d, nm_error *err) {
        uint8_t *buf;
        size_t cap;
        int q;

        /* The announced size is checked before anything is decoded. */
        q = check_more(r, "ZDATA", d->size, err);
        if (q < 0)
                return q;
        if (!r->zctx && proto_zctx_new(XFER_ZSTD_LEVEL, &r->zctx) < 0)
                return nm_error_set(err, -ENOMEM, "cannot set up zstd");
        /* The decoder refuses a size beyond PROTO_DATA_MAX, or 0. */
        cap = MIN((size_t)d->size, (size_t)PROTO_DATA_MAX);
        buf = xfer__writer_space(r->w, cap);
        if (!buf)
                return nm_error_set(err, -ENOMEM, "cannot buffer %s", r->path);
        q = proto_zdata_decompress(r->zctx, d, buf, cap, err);
        if (q < 0)
                return nm_error_prefix(err, "refusing %s", r->path);
        return on_bytes(r, buf, d->size, err);
}

/* The file is complete and checked: name it once it is written, then
 * flush it in the background (writer_sealed()). */
static int file_done(xfer_recv *r, nm_error *err) {
        int q = xfer__writer_seal(r->w);
        if (q < 0)
                return nm_error_errno(err, q, "cannot name %s in the staging directory", r->path);
        r->res.files++;
        r->state = XFER_RECV_EXPECT_FILE;
        return 0;
}

static int check_file_end(xfer_recv *r, const char *what, nm_error *err) {
        if (r->state != XFER_RECV_IN_FILE)
                return nm_error_set(err, -EBADMSG, "%s outside a file", what);
        if (r->got != r->size)
                return nm_error_set(err, -EBADMSG, "%s for %s after %llu of the %llu bytes announced", what,
                                    r->path, (unsigned long long)r->got, (unsigned long long)r->size);
        if (r->file_mac != (strcmp(what, "FILE_MAC") == 0))
                return nm_error_set(err, -EBADMSG, "%s for %s, but the peers agreed on %s", what, r->path,
                                    r->file_mac ? "FILE_MAC" : "FILE_END");
        return 0;
}

static int on_file_end(xfer_recv *r, const proto_file_end *fe, nm_error *err) {
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        int q;

        q = check_file_end(r, "FILE_END", err);
        if (q < 0)
                return q;
        if (EVP_DigestFinal_ex(r->sha, md, &len) != 1 || len != PROTO_SHA256_LEN)
                return nm_error_set(err, -EIO, "SHA-256 failed");
        if (CRYPTO_memcmp(md, fe->sha256, PROTO_SHA256_LEN) != 0)
                return nm_error_set(err, -EBADMSG,
                                    "SHA-256 of %s does not match what the sender computed: the bytes were "
                                    "damaged on the way",
                                    r->path);
        return file_done(r, err);
}

static int on_file_mac(xfer_recv *r, const proto_file_mac *fm, nm_error *err) {
        uint8_t mac[PROTO_SHA256_LEN];
        nm_error he = {};
        int q;

        q = check_file_end(r, "FILE_MAC", err);
        if (q < 0)
                return q;
        q = ckpt_hmac_mark(r->hmac, mac, &he);
        if (q < 0)
                return hash_error(err, q, &he, r->path);
        if (CRYPTO_memcmp(mac, fm->mac, PROTO_SHA256_LEN) != 0)
                return nm_error_set(
                        err, -EBADMSG,
                        "the checkpoint HMAC up to %s does not match what the sender computed: the "
                        "bytes were damaged on the way, or the two nodes do not share the same "
                        "checkpoint key",
                        r->path);
        return file_done(r, err);
}

static int write_hmac_file(xfer_recv *r, nm_error *err) {
        char line[XFER_HMAC_HEX_MAX + 1];
        _cleanup_close_ int fd = -EBADF;
        int n, q;

        /* As ckpt_sign_at() writes it: the hex digits, no newline. */
        n = snprintf(line, sizeof(line), "%s", r->res.hmac);
        fd = openat(r->dir_fd, "checkpoint.hmac", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
        if (fd < 0)
                return nm_error_errno(err, negative_errno(), "cannot create checkpoint.hmac in staging");
        q = loop_write(fd, line, (size_t)n);
        if (q < 0)
                return nm_error_errno(err, q, "cannot write checkpoint.hmac in staging");
        q = queue_sync(r, (int[]){TAKE_FD(fd)}, 1, false);
        return q < 0 ? nm_error_errno(err, q, "cannot flush checkpoint.hmac") : 0;
}

static int on_images_done(xfer_recv *r, const proto_images_done *d, nm_error *err) {
        nm_error he = {};
        char hex[XFER_HMAC_HEX_MAX] = {};
        size_t len;
        int q;

        if (r->state != XFER_RECV_EXPECT_FILE)
                return nm_error_set(err, -EBADMSG, "IMAGES_DONE before FILE_END of %s", r->path);
        if (!r->metadata_done)
                return nm_error_set(err, -EBADMSG, "IMAGES_DONE without metadata.json");
        if (d->files != r->res.files || d->bytes != r->res.bytes)
                return nm_error_set(
                        err, -EBADMSG,
                        "IMAGES_DONE announces %llu files and %llu bytes, but %llu files and %llu "
                        "bytes arrived",
                        (unsigned long long)d->files, (unsigned long long)d->bytes,
                        (unsigned long long)r->res.files, (unsigned long long)r->res.bytes);
        q = ckpt_hmac_final(r->hmac, hex, &he);
        if (q < 0)
                return hash_error(err, q, &he, "the tree");
        len = strnlen(hex, sizeof(hex));
        if (strlen(d->hmac) != len || CRYPTO_memcmp(hex, d->hmac, len) != 0)
                return nm_error_set(
                        err, -EBADMSG,
                        "the checkpoint HMAC does not verify: the images were altered, or the two "
                        "nodes do not share the same checkpoint key");
        memcpy(r->res.hmac, hex, len + 1);
        snprintf(r->res.binding, sizeof(r->res.binding), "%s", d->binding ? d->binding : "");
        q = write_hmac_file(r, err);
        if (q < 0)
                return q;
        /* checkpoint.hmac's own sync is pending: the final sync starts
         * when the last file's is done (sync_done). */
        r->state = XFER_RECV_SYNCING;
        (void)uv_timer_stop(&r->timer);
        return 0;
}

int xfer_recv_feed(xfer_recv *r, const proto_msg *m, nm_error *err) {
        nm_error e = {};
        const char *mig;
        int q;

        if (!r || !m)
                return -EINVAL;
        if (r->ended || r->state == XFER_RECV_SYNCING)
                return nm_error_set(err, -ESTALE, "the image transfer has already ended");
        mig = proto_msg_mig(m);
        if (r->mig && (!mig || strcmp(mig, r->mig) != 0))
                q = nm_error_set(&e, -EBADMSG, "%s for migration '%s' in the stream of migration '%s'",
                                 strna(proto_msg_type_to_string(m->type)), strna(mig), r->mig);
        else {
                /* Not a switch: -Wswitch-enum would want every message type. */
                if (m->type == PROTO_MSG_FILE)
                        q = on_file(r, &m->file, &e);
                else if (m->type == PROTO_MSG_DATA)
                        q = on_data(r, &m->data, &e);
                else if (m->type == PROTO_MSG_ZDATA)
                        q = on_zdata(r, &m->zdata, &e);
                else if (m->type == PROTO_MSG_FILE_END)
                        q = on_file_end(r, &m->file_end, &e);
                else if (m->type == PROTO_MSG_FILE_MAC)
                        q = on_file_mac(r, &m->file_mac, &e);
                else if (m->type == PROTO_MSG_IMAGES_DONE)
                        q = on_images_done(r, &m->images_done, &e);
                else
                        q = nm_error_set(&e, -EPROTO, "unexpected %s during the image transfer",
                                         strna(proto_msg_type_to_string(m->type)));
        }
        if (q < 0) {
                recv_fail(r, q, &e);
                if (err)
                        nm_error_set(err, q, "%s", r->err.msg);
                return q;
        }
        recv_begin(r);
        /* Stamped now, not at the start of the loop's iteration: a long
         * iteration of frames must not look like silence. */
        r->last_msg_ms = xfer__now_ms(r->loop);
        if (r->window_bytes >= XFER_RECV_PROGRESS_BYTES) {
                r->last_activity_ms = r->last_msg_ms;
                r->window_bytes = 0;
                r->idle_check = XFER__IDLE_WATCHING;
        }
        if (xfer__writer_above(r->w, XFER_RECV_BEHIND_BYTES, XFER_RECV_BEHIND_STEPS))
                r->throttle = XFER_RECV_THROTTLED;
        report_progress(r, false);
        return 0;
}

bool xfer_recv_full(const xfer_recv *r) {
        return r && !r->ended && r->throttle == XFER_RECV_THROTTLED;
}

void xfer_recv_progress(xfer_recv *r, size_t n) {
        if (!r || r->ended)
                return;
        recv_begin(r);
        r->window_bytes += n;
        r->last_msg_ms = xfer__now_ms(r->loop);
        if (r->window_bytes >= XFER_RECV_PROGRESS_BYTES) {
                r->last_activity_ms = r->last_msg_ms;
                r->window_bytes = 0;
                r->idle_check = XFER__IDLE_WATCHING;
        }
}

void xfer_recv_abort(xfer_recv *r, int status, const nm_error *err) {
        nm_error e = {};

        if (!r || r->ended)
                return;
        if (!err || !err->msg[0]) {
                nm_error_errno(&e, status < 0 ? status : -ECANCELED, "the image transfer was aborted");
                err = &e;
        }
        recv_fail(r, status < 0 ? status : -ECANCELED, err);
}

/* ---- lifetime ----------------------------------------------------------------- */

static void recv_release(xfer_recv *r) {
        xfer__writer_free(r->w);
        if (r->images_fd >= 0)
                close(r->images_fd);
        if (r->dir_fd >= 0)
                close(r->dir_fd);
        if (r->parent_fd >= 0)
                close(r->parent_fd);
        EVP_MD_CTX_free(r->sha);
        ckpt_hmac_free(r->hmac);
        proto_zctx_free(r->zctx);
        free(r->mig);
        free(r->name);
        free(r);
}

static void timer_closed_cb(uv_handle_t *h) {
        xfer_recv *r = container_of((uv_timer_t *)h, xfer_recv, timer);
        r->timer_open = false;
        recv_maybe_free(r);
}

static void recv_maybe_free(xfer_recv *r) {
        if (!r->freed || r->jobs_pending > 0 || xfer__writer_busy(r->w))
                return;
        if (r->timer_open) {
                if (!uv_is_closing((uv_handle_t *)&r->timer))
                        uv_close((uv_handle_t *)&r->timer, timer_closed_cb);
                return;
        }
        recv_release(r);
}

xfer_recv *xfer_recv_free(xfer_recv *r) {
        if (!r)
                return NULL;
        if (r->state != XFER_RECV_SUCCEEDED) {
                r->ended = true;
                r->state = XFER_RECV_FAILED;
                remove_staging(r);
        }
        r->freed = true;
        recv_maybe_free(r);
        return NULL;
}

int xfer_recv_new(uv_loop_t *loop, int parent_fd, const char *name, const xfer_recv_options *o,
                  xfer_recv_done_cb cb, void *userdata, nm_error *err, xfer_recv **ret) {
        xfer_recv *r;
        int q;

        if (!loop || parent_fd < 0 || !name || !o || !o->key || o->key_len == 0 || !cb || !ret)
                return -EINVAL;
        if (!name[0] || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return nm_error_set(err, -EINVAL, "staging directory name '%s' is not a single component",
                                    name);
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->loop = loop;
        r->dir_fd = r->images_fd = -EBADF;
        r->max_bytes = o->max_bytes;
        r->max_files = o->max_files ? o->max_files : XFER_RECV_MAX_FILES;
        r->expected_bytes = o->expected_bytes;
        r->idle_ms = o->idle_timeout_ms;
        r->first_ms = o->first_frame_timeout_ms;
        r->progress_ms = o->progress_interval_ms ? o->progress_interval_ms : 1000;
        r->progress = o->progress;
        r->file_mac = o->file_mac;
        r->reserve = o->reserve;
        r->drained = o->drained;
        r->userdata = userdata;
        r->cb = cb;
        r->name = strdup(name);
        r->mig = o->mig ? strdup(o->mig) : NULL;
        r->sha = EVP_MD_CTX_new();
        r->parent_fd = fcntl(parent_fd, F_DUPFD_CLOEXEC, 3);
        q = r->parent_fd < 0 ? negative_errno() : ckpt_hmac_new(o->key, o->key_len, &r->hmac);
        if (!r->name || (o->mig && !r->mig) || !r->sha || q < 0) {
                q = q < 0 ? q : -ENOMEM;
                recv_release(r);
                return nm_error_errno(err, q, "cannot set up the image receiver");
        }
        /* A fresh directory only: one that exists may hold anything. */
        if (mkdirat(r->parent_fd, name, 0700) < 0) {
                q = negative_errno();
                recv_release(r);
                return nm_error_errno(err, q, "cannot create staging directory '%s'", name);
        }
        r->staging = XFER_RECV_STAGING_PRESENT;
        r->dir_fd = openat(r->parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (r->dir_fd >= 0 && mkdirat(r->dir_fd, "images", 0700) == 0)
                r->images_fd = openat(r->dir_fd, "images", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (r->images_fd < 0)
                q = negative_errno();
        else
                q = xfer__writer_new(
                        loop, r->dir_fd, r->images_fd, o->test_write_gate, o->test_gate_after,
                        &(xfer_writer_callbacks){.sealed = writer_sealed, .batch_done = writer_batch_done},
                        r, &r->w);
        if (q < 0) {
                remove_staging(r);
                recv_release(r);
                return nm_error_errno(err, q, "cannot set up staging directory '%s'", name);
        }
        (void)uv_timer_init(loop, &r->timer);
        r->timer_open = true;
        r->start_ms = r->last_activity_ms = r->last_progress_ms = r->last_msg_ms = xfer__now_ms(loop);
        if (r->idle_ms)
                (void)uv_timer_start(&r->timer, timer_cb, recv_window(r), 0);
        *ret = r;
        return 0;
}
