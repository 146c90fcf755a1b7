/* SPDX-License-Identifier: Apache-2.0 */
/* The sending half of the image stream.
 *
 * The tree is ckpt's: its canonical walk (ckpt_tree_walk(), with ckpt's path
 * rules) gives the files and their order, and ckpt's tree HMAC hashes them.
 *
 * Reads run on the libuv threadpool, up to XFER_JOBS_MAX chunks at once: a
 * worker reads a chunk, hashes it (the tree HMAC, and the file's SHA-256
 * unless FILE_MAC) in file order, taking its turn after the chunk before,
 * and compresses it (zstd, when the peer takes it) in parallel with the
 * others, so the loop thread keeps its time for the SSH encryption. A chunk
 * goes to the connection without a copy and comes back to a small pool once
 * sent; no chunk is read while the connection has max_queued bytes waiting. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <pthread.h>

#include "ckpt-format.h"
#include "fs-util.h"
#include "list.h"
#include "macro.h"
#include "pace.h"
#include "transfer-internal.h"

#define XFER_POOL_MAX 8
/* Reads in flight: with zstd, compression (the costly part) runs on as many
 * workers while hashing stays in order; without, one read ahead is enough. */
#define XFER_JOBS_MAX 3
/* zstd's backoff (proto_zbackoff): after a chunk that did not shrink, up
 * to this many go without a try; chunks below PROTO_ZBACKOFF_PROBE_MIN
 * (small images, the tails of files) are always tried. */
#define XFER_ZSTD_SKIP_MAX 32u

typedef enum xfer_send_state {
        XFER_SEND_START,
        XFER_SEND_NEXT_ENTRY,
        XFER_SEND_READ,
        XFER_SEND_DONE,
        XFER_SEND_FAILED,
        _XFER_SEND_STATE_MAX,
        _XFER_SEND_STATE_INVALID = -EINVAL,
} xfer_send_state;

typedef struct xfer_chunk xfer_chunk;
struct xfer_chunk {
        LIST_FIELDS(xfer_chunk, chunks); /* in the pool, or outstanding (in the conn) */
        xfer_send *owner;                /* NULL once the sender is gone: free on release */
        size_t cap;
        size_t zlen; /* compressed bytes at data + cap, or 0 */
        /* cap bytes, then (with zstd) room for the compressed chunk; on a
         * cache line, as io_buf_alloc() says why */
        uint8_t data[] __attribute__((aligned(64)));
};

/* One read on the thread pool: read, hash (in order), compress. */
typedef struct xfer_job {
        uv_work_t work;
        xfer_send *x;
        xfer_chunk *k;
        proto_zctx *zctx; /* each worker its own */
        uint64_t seq, off;
        size_t len;
        ssize_t got;
        int err;
        nm_error hash_err; /* the worker's own: the loop may write x->err meanwhile */
        bool busy, done;
        bool try_zstd; /* decided when the read starts (see zb) */
} xfer_job;

struct xfer_send {
        uv_loop_t *loop;
        xfer_conn *c;
        xfer_send_state state;
        ckpt_hmac *hmac; /* the tree HMAC, fed in canonical order */
        char *mig;
        char *bad_digest;
        char expect_hmac[XFER_HMAC_HEX_MAX];
        size_t chunk_size, max_queued;
        uint64_t overall_ms, progress_ms;
        xfer_progress_cb progress;
        int (*binding)(void *userdata, const char *tree_hex, char ret_hex[XFER_HMAC_HEX_MAX]);
        void *userdata;
        xfer_send_done_cb cb;

        int top_fd;
        ckpt_tree_entry *tree; /* ckpt_tree_walk(): images/, its files, metadata.json */
        size_t n_tree, idx;
        uint64_t n_files, total_bytes;

        /* the current file */
        int fd;
        uint64_t off;    /* bytes of it sent */
        uint64_t off_rd; /* bytes of it read or being read */
        EVP_MD_CTX *sha;
        bool file_mac;
        bool zstd;
        proto_zbackoff zb; /* which chunks zstd tries */

        /* the reads in flight, oldest first (jobs[(head + i) % n]) */
        xfer_job jobs[XFER_JOBS_MAX];
        unsigned n_jobs_max, head, n_jobs;
        uint64_t seq_next;
        /* chunks are hashed in file order, whichever worker reads first */
        pthread_mutex_t hash_lock;
        pthread_cond_t hash_cond;
        uint64_t hash_next;

        xfer_chunk *pool; /* free chunks to read into */
        size_t pool_n;
        xfer_chunk *outstanding; /* chunks the connection still holds */

        uv_timer_t timer; /* start, then the overall deadline */
        bool timer_open;
        uv_timer_t pace; /* waits out the bandwidth limit */
        bool pace_open;
        xfer_pace avg; /* [limits] bandwidth's share, averaged over res.bytes */
        bool freed, ended, abort_pending;
        uint64_t start_ms, last_progress_ms;
        xfer_send_result res;
        nm_error err;
};

static void send_step(xfer_send *x);
static void send_maybe_free(xfer_send *x);
static bool pace_wait(xfer_send *x);
static void timer_cb(uv_timer_t *t);

/* ---- chunks -------------------------------------------------------------- */

static xfer_chunk *chunk_get(xfer_send *x) {
        xfer_chunk *k = x->pool;
        if (k) {
                LIST_REMOVE(chunks, x->pool, k);
                x->pool_n--;
                return k;
        }
        k = io_buf_alloc(sizeof(*k) + x->chunk_size + (x->zstd ? x->chunk_size : 0));
        if (!k)
                return NULL;
        k->cap = x->chunk_size;
        k->owner = x;
        return k;
}

static void chunk_put(xfer_send *x, xfer_chunk *k) {
        if (x->pool_n >= XFER_POOL_MAX) {
                free(k);
                return;
        }
        LIST_PREPEND(chunks, x->pool, k);
        x->pool_n++;
}

static void chunk_released(void *ud) {
        xfer_chunk *k = ud;
        xfer_send *x = k->owner;

        if (!x) {
                free(k);
                return;
        }
        LIST_REMOVE(chunks, x->outstanding, k);
        chunk_put(x, k);
}

static void chunk_track(xfer_send *x, xfer_chunk *k) {
        LIST_PREPEND(chunks, x->outstanding, k);
}

/* ---- ending ---------------------------------------------------------------- */

static void report_progress(xfer_send *x, bool force) {
        uint64_t now = xfer__now_ms(x->loop);
        xfer_progress p;

        if (!x->progress || (!force && now - x->last_progress_ms < x->progress_ms))
                return;
        x->last_progress_ms = now;
        p = (xfer_progress){
                .bytes = x->res.bytes,
                .files = x->res.files,
                .total_bytes = x->total_bytes,
                .total_files = x->n_files,
                .elapsed_ms = now - x->start_ms,
        };
        p.rate = p.elapsed_ms ? (double)p.bytes * 1000.0 / (double)p.elapsed_ms : 0.0;
        x->progress(&p, x->userdata);
}

/* Reads in flight still use the file: it closes once the last is back. */
static void close_file(xfer_send *x) {
        if (x->fd >= 0 && x->n_jobs == 0)
                close(TAKE_FD(x->fd));
}

static void send_end(xfer_send *x, int status) {
        xfer_send_done_cb cb = x->cb;

        if (x->ended)
                return;
        x->ended = true;
        x->abort_pending = false;
        x->state = status < 0 ? XFER_SEND_FAILED : XFER_SEND_DONE;
        close_file(x);
        if (x->timer_open)
                (void)uv_timer_stop(&x->timer);
        if (x->pace_open)
                (void)uv_timer_stop(&x->pace);
        /* Once ended the sender never touches the connection again: it may
         * be gone by the time the owner frees us. */
        if (x->c)
                xfer_conn_set_drain(x->c, 0, NULL, NULL);
        x->c = NULL;
        if (status >= 0)
                report_progress(x, true);
        if (cb && !x->freed)
                cb(x, status, status < 0 ? &x->err : NULL, status < 0 ? NULL : &x->res, x->userdata);
}

static void send_fail(xfer_send *x, int code) {
        if (code >= 0)
                code = -EIO;
        if (x->err.code == 0)
                nm_error_errno(&x->err, code, "sending the images failed");
        send_end(x, code);
}

void xfer_send_abort(xfer_send *x, int status, const nm_error *err) {
        if (!x || x->ended || x->abort_pending)
                return;
        if (err && err->msg[0])
                nm_error_set(&x->err, status < 0 ? status : -ECANCELED, "%s", err->msg);
        else
                nm_error_set(&x->err, status < 0 ? status : -ECANCELED, "sending the images was aborted");
        /* The callback runs from the loop, not from inside this call. */
        x->state = XFER_SEND_FAILED;
        x->abort_pending = true;
        close_file(x);
        if (x->c)
                xfer_conn_set_drain(x->c, 0, NULL, NULL);
        x->c = NULL;
        (void)uv_timer_stop(&x->timer);
        (void)uv_timer_start(&x->timer, timer_cb, 0, 0);
}

/* ---- the tree ---------------------------------------------------------------- */

/* What the protocol carries of a tree: images/, flat regular files in it,
 * and metadata.json; checkpoint.hmac is outside the walk. */
static int check_entry(xfer_send *x, const ckpt_tree_entry *e) {
        if (!strchr(e->relpath, '/')) {
                if (e->type == CKPT_ENTRY_DIR ? strcmp(e->relpath, CKPT_IMAGES_DIR) == 0
                                              : strcmp(e->relpath, CKPT_METADATA_FILE) == 0)
                        return 0;
                return nm_error_set(&x->err, -EBADMSG,
                                    "unexpected entry '%s' in the checkpoint directory: only images/, "
                                    "metadata.json and checkpoint.hmac belong there",
                                    e->relpath);
        }
        /* Below images/, the only directory accepted above. */
        if (e->type == CKPT_ENTRY_DIR)
                return nm_error_set(&x->err, -EBADFD,
                                    "%s is a directory, not a regular file: refusing to send it",
                                    e->relpath);
        if (proto_path_check(e->relpath, strlen(e->relpath), &x->err) < 0)
                return nm_error_prefix(&x->err, "cannot send %s", e->relpath);
        return 0;
}

/* The canonical walk of the directory (ckpt refuses symlinks, special files
 * and bad names anywhere), checked against what the protocol carries. */
static int scan(xfer_send *x) {
        bool have_images = false, have_meta = false;
        int r;

        r = ckpt_tree_walk(x->top_fd, &x->tree, &x->n_tree, &x->err);
        if (r < 0)
                return nm_error_prefix(&x->err, "cannot send the checkpoint directory");
        for (size_t i = 0; i < x->n_tree; i++) {
                const ckpt_tree_entry *e = &x->tree[i];

                r = check_entry(x, e);
                if (r < 0)
                        return r;
                if (e->type == CKPT_ENTRY_FILE)
                        x->n_files++;
                have_images = have_images || strcmp(e->relpath, CKPT_IMAGES_DIR) == 0;
                have_meta = have_meta || strcmp(e->relpath, CKPT_METADATA_FILE) == 0;
        }
        if (!have_images || !have_meta)
                return nm_error_set(&x->err, -ENOENT, "the checkpoint directory has no %s",
                                    have_images ? "metadata.json" : "images/ directory");
        x->total_bytes = ckpt_tree_bytes(x->tree, x->n_tree);
        return 0;
}

/* ---- the stream -------------------------------------------------------------- */

static int send_msg(xfer_send *x, const proto_msg *m) {
        int r = xfer_conn_send(x->c, m, &x->err);
        return r < 0 ? r : 0;
}

static int hash_error(xfer_send *x, int code, const nm_error *he, const char *what) {
        if (he->msg[0])
                return nm_error_set(&x->err, code, "hashing %s failed: %s", what, he->msg);
        return nm_error_errno(&x->err, code, "hashing %s failed", what);
}

/* Opens the file as ckpt does (no symlink at any step, a regular file of
 * the size the walk saw) and announces it. */
static int begin_file(xfer_send *x) {
        nm_error he = {};
        const ckpt_tree_entry *f = &x->tree[x->idx];
        struct stat st;
        int r;

        assert(f->type == CKPT_ENTRY_FILE);
        x->fd = ckpt_tree_open_file(x->top_fd, f->relpath, f->size, &x->err);
        if (x->fd == -EBUSY) {
                /* Changed since the walk: the sender's code for that. */
                x->err.code = -ESTALE;
                return -ESTALE;
        }
        if (x->fd < 0)
                return x->fd;
        if (fstat(x->fd, &st) < 0)
                return nm_error_errno(&x->err, negative_errno(), "cannot stat %s", f->relpath);
        if (!x->file_mac && EVP_DigestInit_ex(x->sha, EVP_sha256(), NULL) != 1)
                return nm_error_set(&x->err, -EIO, "cannot start SHA-256");
        r = send_msg(x, &(proto_msg){.type = PROTO_MSG_FILE,
                                     .file = {.mig = x->mig,
                                              .path = f->relpath,
                                              .size = f->size,
                                              .mode = proto_file_mode(st.st_mode)}});
        if (r < 0)
                return r;
        r = ckpt_hmac_file_begin(x->hmac, f->relpath, f->size, &he);
        if (r < 0)
                return hash_error(x, r, &he, f->relpath);
        x->off = x->off_rd = 0;
        proto_zbackoff_try_next(&x->zb); /* every file gets a first try */
        return 0;
}

static int end_file_mac(xfer_send *x) {
        const ckpt_tree_entry *f = &x->tree[x->idx];
        proto_msg m = {.type = PROTO_MSG_FILE_MAC, .file_mac = {.mig = x->mig}};
        nm_error he = {};
        int r;

        r = ckpt_hmac_mark(x->hmac, m.file_mac.mac, &he);
        if (r < 0)
                return hash_error(x, r, &he, f->relpath);
        if (x->bad_digest && strcmp(x->bad_digest, f->relpath) == 0)
                m.file_mac.mac[0] ^= 0x01;
        return send_msg(x, &m);
}

static int end_file_sha(xfer_send *x) {
        const ckpt_tree_entry *f = &x->tree[x->idx];
        proto_msg m = {.type = PROTO_MSG_FILE_END, .file_end = {.mig = x->mig}};
        unsigned len = 0;

        if (EVP_DigestFinal_ex(x->sha, m.file_end.sha256, &len) != 1 || len != PROTO_SHA256_LEN)
                return nm_error_set(&x->err, -EIO, "cannot finish SHA-256 of %s", f->relpath);
        if (x->bad_digest && strcmp(x->bad_digest, f->relpath) == 0)
                m.file_end.sha256[0] ^= 0x01;
        return send_msg(x, &m);
}

static int end_file(xfer_send *x) {
        int r = x->file_mac ? end_file_mac(x) : end_file_sha(x);
        if (r < 0)
                return r;
        close_file(x);
        x->res.files++;
        x->idx++;
        return 0;
}

static int finish_stream(xfer_send *x) {
        nm_error he = {};
        char binding[XFER_HMAC_HEX_MAX] = "";
        int r = ckpt_hmac_final(x->hmac, x->res.hmac, &he);
        if (r < 0)
                return hash_error(x, r, &he, "the tree");
        if (x->expect_hmac[0] && strcmp(x->expect_hmac, x->res.hmac) != 0)
                return nm_error_set(&x->err, -EBADMSG,
                                    "the images changed after they were signed (they hash to %.16s..., "
                                    "signed %.16s...): not sent as good",
                                    x->res.hmac, x->expect_hmac);
        if (x->binding && (r = x->binding(x->userdata, x->res.hmac, binding)) < 0)
                return nm_error_set(&x->err, r, "cannot bind the images to migration %s", x->mig);
        x->res.zstd_untried = x->zb.untried;
        return send_msg(x, &(proto_msg){.type = PROTO_MSG_IMAGES_DONE,
                                        .images_done = {.mig = x->mig,
                                                        .hmac = x->res.hmac,
                                                        .files = x->res.files,
                                                        .bytes = x->res.bytes,
                                                        .binding = binding[0] ? binding : NULL}});
}

static void read_work(uv_work_t *w) {
        xfer_job *j = container_of(w, xfer_job, work);
        xfer_send *x = j->x;
        size_t done = 0;

        j->err = 0;
        nm_error_clear(&j->hash_err);
        while (done < j->len) {
                ssize_t n = pread(x->fd, j->k->data + done, j->len - done, (off_t)(j->off + done));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        j->err = -errno;
                        break;
                }
                if (n == 0)
                        break;
                done += (size_t)n;
        }
        j->got = (ssize_t)done;
        j->k->zlen = 0;
        /* The hashes see the chunks in file order: wait for our turn, and
         * always take it (a failed read too), so that no later chunk waits
         * forever. */
        pthread_mutex_lock(&x->hash_lock);
        while (x->hash_next != j->seq)
                pthread_cond_wait(&x->hash_cond, &x->hash_lock);
        if (j->err == 0 && done > 0) {
                if (!x->file_mac && EVP_DigestUpdate(x->sha, j->k->data, done) != 1)
                        j->err = -EIO;
                else {
                        int r = ckpt_hmac_update(x->hmac, j->k->data, done, &j->hash_err);
                        if (r < 0)
                                j->err = r;
                }
        }
        x->hash_next++;
        pthread_cond_broadcast(&x->hash_cond);
        pthread_mutex_unlock(&x->hash_lock);
        if (j->err == 0 && done > 0 && j->try_zstd) {
                int r = proto_zdata_compress(j->zctx, j->k->data, done, j->k->data + j->k->cap, &j->k->zlen);
                if (r < 0)
                        j->err = r;
        }
}

/* Sends the oldest read if it is done, and so on: DATA leaves in order. */
static int flush_jobs(xfer_send *x) {
        const ckpt_tree_entry *f = &x->tree[x->idx];
        int r;

        while (x->n_jobs > 0 && x->jobs[x->head].done) {
                xfer_job *j = &x->jobs[x->head];
                xfer_chunk *k = TAKE_PTR(j->k);

                j->busy = j->done = false;
                x->head = (x->head + 1) % x->n_jobs_max;
                x->n_jobs--;
                if (j->err < 0) {
                        free(k);
                        if (j->hash_err.msg[0])
                                return hash_error(x, j->err, &j->hash_err, f->relpath);
                        return nm_error_errno(&x->err, j->err, "reading %s failed", f->relpath);
                }
                if ((size_t)j->got != j->len) {
                        free(k);
                        return nm_error_set(&x->err, -ESTALE, "%s shrank while being sent", f->relpath);
                }
                if (j->try_zstd)
                        proto_zbackoff_tried(&x->zb, j->len, k->zlen > 0);
                if (k->zlen > 0)
                        r = xfer_conn_send_zdata(x->c, x->mig, (uint32_t)j->len, k->data + k->cap, k->zlen,
                                                 chunk_released, k, &x->err);
                else
                        r = xfer_conn_send_data(x->c, x->mig, k->data, j->len, chunk_released, k, &x->err);
                if (r < 0) {
                        free(k);
                        return r;
                }
                x->res.wire_bytes += k->zlen > 0 ? k->zlen : j->len;
                chunk_track(x, k);
                x->off += j->len;
                x->res.bytes += j->len;
        }
        return 0;
}

static void read_done(uv_work_t *w, int status) {
        xfer_job *j = container_of(w, xfer_job, work);
        xfer_send *x = j->x;
        int r;

        j->done = true;
        if (status < 0 && j->err == 0)
                j->err = status;
        if (x->freed || x->state != XFER_SEND_READ) {
                /* Ending: drop what comes back. */
                free(TAKE_PTR(j->k));
                j->busy = j->done = false;
                x->n_jobs--;
                close_file(x);
                if (x->freed)
                        send_maybe_free(x);
                return;
        }
        r = flush_jobs(x);
        if (r < 0) {
                send_fail(x, r);
                return;
        }
        report_progress(x, false);
        send_step(x);
}

static int start_read(xfer_send *x) {
        const ckpt_tree_entry *f = &x->tree[x->idx];
        uint64_t left = f->size - x->off_rd;
        xfer_job *j = &x->jobs[(x->head + x->n_jobs) % x->n_jobs_max];
        int r;

        assert(!j->busy);
        j->k = chunk_get(x);
        if (!j->k)
                return -ENOMEM;
        j->k->owner = x;
        j->x = x;
        j->off = x->off_rd;
        j->len = left < x->chunk_size ? (size_t)left : x->chunk_size;
        j->seq = x->seq_next;
        j->done = false;
        j->try_zstd = j->zctx && proto_zbackoff_try(&x->zb, j->len);
        r = uv_queue_work(x->loop, &j->work, read_work, read_done);
        if (r < 0) {
                free(TAKE_PTR(j->k));
                return nm_error_set(&x->err, -EIO, "cannot queue a read: %s", uv_strerror(r));
        }
        j->busy = true;
        x->seq_next++;
        x->n_jobs++;
        x->off_rd += j->len;
        return 0;
}

/* A directory of the walk is hashed only: the receiver makes images/
 * itself, and hashes it before the first file. */
static int hash_dir(xfer_send *x) {
        const ckpt_tree_entry *e = &x->tree[x->idx];
        nm_error he = {};
        int r;

        assert(e->type == CKPT_ENTRY_DIR);
        r = ckpt_hmac_dir(x->hmac, e->relpath, &he);
        if (r < 0)
                return hash_error(x, r, &he, e->relpath);
        x->idx++;
        return 0;
}

/* Advances as far as possible: walks the tree, sends FILE/FILE_END, and
 * starts the next read unless one is in flight or the connection is full. */
static void send_step(xfer_send *x) {
        int r = 0;

        while (r >= 0) {
                switch (x->state) {
                case XFER_SEND_START: x->state = XFER_SEND_NEXT_ENTRY; continue;
                case XFER_SEND_NEXT_ENTRY:
                        if (x->idx == x->n_tree) {
                                r = finish_stream(x);
                                if (r >= 0)
                                        send_end(x, 0);
                                break;
                        }
                        if (x->tree[x->idx].type == CKPT_ENTRY_DIR) {
                                r = hash_dir(x);
                                continue;
                        }
                        r = begin_file(x);
                        if (r >= 0)
                                x->state = XFER_SEND_READ;
                        continue;
                case XFER_SEND_READ:
                        if (x->off == x->tree[x->idx].size && x->n_jobs == 0) {
                                r = end_file(x);
                                if (r >= 0)
                                        x->state = XFER_SEND_NEXT_ENTRY;
                                continue;
                        }
                        /* More reads while the file has bytes left, a worker
                         * is free, and the connection wants more. */
                        if (x->off_rd == x->tree[x->idx].size || x->n_jobs == x->n_jobs_max)
                                return; /* read_done continues */
                        if (xfer_conn_queued(x->c) >= x->max_queued)
                                return; /* the drain callback continues */
                        if (pace_wait(x))
                                return; /* the pace timer continues */
                        r = start_read(x);
                        if (r >= 0)
                                continue;
                        break;
                case XFER_SEND_DONE:
                case XFER_SEND_FAILED:
                case _XFER_SEND_STATE_MAX:
                case _XFER_SEND_STATE_INVALID: return;
                }
                break;
        }
        if (r < 0)
                send_fail(x, r);
}

static void pace_cb(uv_timer_t *t) {
        send_step(container_of(t, xfer_send, pace));
}

/* With a bandwidth limit, the next chunk may be read only once the bytes
 * sent so far fit the limit's average. */
static bool pace_wait(xfer_send *x) {
        uint64_t wait;

        if (!x->avg.rate)
                return false;
        if (uv_is_active((uv_handle_t *)&x->pace))
                return true;
        wait = xfer_pace_wait_ms(&x->avg, xfer__now_ms(x->loop), x->res.bytes);
        if (!wait)
                return false;
        (void)uv_timer_start(&x->pace, pace_cb, wait, 0);
        return true;
}

void xfer_send_set_rate(xfer_send *x, uint64_t rate_limit) {
        if (!x || x->freed || x->ended ||
            !xfer_pace_set(&x->avg, rate_limit, xfer__now_ms(x->loop), x->res.bytes))
                return;
        /* A timer set for the old rate judges again under the new one. */
        if (x->pace_open && uv_is_active((uv_handle_t *)&x->pace))
                (void)uv_timer_start(&x->pace, pace_cb, 0, 0);
}

static void drain_cb(xfer_conn *c, void *userdata) {
        (void)c;
        send_step(userdata);
}

static void timer_cb(uv_timer_t *t) {
        xfer_send *x = container_of(t, xfer_send, timer);

        if (x->abort_pending) {
                /* xfer_send_abort() deferred its callback to here. */
                send_end(x, x->err.code < 0 ? x->err.code : -ECANCELED);
                return;
        }
        switch (x->state) {
        case XFER_SEND_START:
                send_step(x);
                if (x->state != XFER_SEND_DONE && x->state != XFER_SEND_FAILED && x->overall_ms)
                        (void)uv_timer_start(&x->timer, timer_cb, x->overall_ms, 0);
                return;
        case XFER_SEND_NEXT_ENTRY:
        case XFER_SEND_READ:
                nm_error_set(&x->err, -ETIMEDOUT, "sending the images took longer than %llu ms",
                             (unsigned long long)x->overall_ms);
                send_fail(x, -ETIMEDOUT);
                return;
        case XFER_SEND_DONE:
        case XFER_SEND_FAILED:
        case _XFER_SEND_STATE_MAX:
        case _XFER_SEND_STATE_INVALID: return;
        }
}

/* ---- lifetime ---------------------------------------------------------------- */

static void send_release_memory(xfer_send *x) {
        xfer_chunk *k, *next;

        LIST_FOREACH(chunks, k, x->outstanding) {
                k->owner = NULL; /* the connection frees them when done */
        }
        LIST_FOREACH_SAFE(chunks, k, next, x->pool) {
                free(k);
        }
        ckpt_tree_entries_free(x->tree, x->n_tree);
        ckpt_hmac_free(x->hmac);
        if (x->top_fd >= 0)
                close(x->top_fd);
        close_file(x);
        EVP_MD_CTX_free(x->sha);
        for (unsigned i = 0; i < XFER_JOBS_MAX; i++)
                proto_zctx_free(x->jobs[i].zctx);
        pthread_cond_destroy(&x->hash_cond);
        pthread_mutex_destroy(&x->hash_lock);
        free(x->mig);
        free(x->bad_digest);
        free(x);
}

static void timer_closed_cb(uv_handle_t *h) {
        xfer_send *x = h->data;
        if (h == (uv_handle_t *)&x->timer)
                x->timer_open = false;
        else
                x->pace_open = false;
        send_maybe_free(x);
}

static void send_maybe_free(xfer_send *x) {
        if (!x->freed || x->n_jobs > 0)
                return;
        if (x->timer_open || x->pace_open) {
                x->timer.data = x->pace.data = x;
                if (x->timer_open && !uv_is_closing((uv_handle_t *)&x->timer))
                        uv_close((uv_handle_t *)&x->timer, timer_closed_cb);
                if (x->pace_open && !uv_is_closing((uv_handle_t *)&x->pace))
                        uv_close((uv_handle_t *)&x->pace, timer_closed_cb);
                return;
        }
        send_release_memory(x);
}

xfer_send *xfer_send_free(xfer_send *x) {
        if (!x)
                return NULL;
        if (x->c)
                xfer_conn_set_drain(x->c, 0, NULL, NULL);
        x->c = NULL;
        x->freed = true;
        close_file(x);
        if (x->state != XFER_SEND_DONE)
                x->state = XFER_SEND_FAILED;
        send_maybe_free(x);
        return NULL;
}

int xfer_send_dir(xfer_conn *c, int dir_fd, const xfer_send_options *o, xfer_send_done_cb cb, void *userdata,
                  nm_error *err, xfer_send **ret) {
        xfer_send *x;
        int r;

        if (!c || dir_fd < 0 || !o || !o->key || o->key_len == 0 || !o->mig || !cb || !ret)
                return -EINVAL;
        x = calloc(1, sizeof(*x));
        if (!x)
                return -ENOMEM;
        x->loop = xfer__conn_loop(c);
        x->c = c;
        x->fd = x->top_fd = -EBADF;
        x->chunk_size = o->chunk_size ? o->chunk_size : XFER_CHUNK_SIZE;
        if (x->chunk_size > PROTO_DATA_MAX)
                x->chunk_size = PROTO_DATA_MAX;
        x->max_queued = o->max_queued ? o->max_queued : 4 * x->chunk_size;
        x->overall_ms = o->overall_timeout_ms;
        x->progress_ms = o->progress_interval_ms ? o->progress_interval_ms : 1000;
        x->progress = o->progress;
        x->binding = o->binding;
        x->userdata = userdata;
        x->cb = cb;
        x->mig = strdup(o->mig);
        if (o->expect_hmac)
                snprintf(x->expect_hmac, sizeof(x->expect_hmac), "%s", o->expect_hmac);
        x->bad_digest = o->test_bad_digest ? strdup(o->test_bad_digest) : NULL;
        x->sha = EVP_MD_CTX_new();
        x->file_mac = o->file_mac;
        x->zstd = o->zstd;
        x->zb = (proto_zbackoff){.probe_min = PROTO_ZBACKOFF_PROBE_MIN, .skip_max = XFER_ZSTD_SKIP_MAX};
        x->n_jobs_max = o->zstd ? XFER_JOBS_MAX : 2;
        (void)pthread_mutex_init(&x->hash_lock, NULL);
        (void)pthread_cond_init(&x->hash_cond, NULL);
        x->top_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        r = ckpt_hmac_new(o->key, o->key_len, &x->hmac);
        for (unsigned i = 0; o->zstd && i < x->n_jobs_max && r >= 0; i++)
                r = proto_zctx_new(o->zstd_level ? o->zstd_level : XFER_ZSTD_LEVEL, &x->jobs[i].zctx);
        if (!x->mig || !x->sha || (o->test_bad_digest && !x->bad_digest) || x->top_fd < 0 || r < 0) {
                r = r < 0 ? r : x->top_fd < 0 ? negative_errno() : -ENOMEM;
                send_release_memory(x);
                return nm_error_errno(err, r, "cannot start sending the images");
        }
        r = scan(x);
        if (r < 0) {
                if (err)
                        nm_error_set(err, r, "%s", x->err.msg[0] ? x->err.msg : strerror(-r));
                send_release_memory(x);
                return r;
        }
        x->start_ms = x->last_progress_ms = xfer__now_ms(x->loop);
        (void)xfer_pace_set(&x->avg, o->rate_limit, x->start_ms, 0);
        (void)uv_timer_init(x->loop, &x->timer);
        x->timer_open = true;
        (void)uv_timer_init(x->loop, &x->pace);
        x->pace_open = true;
        /* Start from the loop: the callback never runs inside this call. */
        (void)uv_timer_start(&x->timer, timer_cb, 0, 0);
        xfer_conn_set_drain(c, x->max_queued / 2, drain_cb, x);
        *ret = x;
        return 0;
}
