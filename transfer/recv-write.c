/* SPDX-License-Identifier: Apache-2.0 */
/* The receiver's writes into staging, off the loop thread.
 *
 * A write into staging is not always quick: into memory a VM's host must
 * fault back in it ran at a quarter of a GiB a second, and on a disk it may
 * wait for writeback. On the loop that stalled every other session of the
 * agent, and the stream itself, which could not read, check and decompress
 * the next frames meanwhile. So the loop only checks and hashes; what it
 * checked goes here as an ordered list of steps (create a file, write a
 * buffer, name and seal the file), run in batches on the threadpool, one
 * batch at a time, in order. Frames that arrive while a batch runs fill the
 * last waiting buffer before a new one is taken: one write per MiB, and a
 * few buffers used again instead of fresh memory for every frame.
 *
 * The loop owns the list; a running batch is the thread's until its
 * completion runs on the loop. The writer holds its own copies of the
 * staging directories' descriptors, so the receiver may close its own at
 * any time; it must not remove the directory while a batch runs (a file
 * named meanwhile would survive the removal). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"
#include "transfer-internal.h"

/* Buffers kept for reuse when a batch returns them: enough for the queue
 * to refill without touching the allocator, whose fresh pages fault in
 * slowly on a VM that reports free memory to its host. */
#define XFER_WRITER_SPARE_BUFS 12u

typedef enum xfer_wop_kind {
        XFER_WOP_OPEN,
        XFER_WOP_WRITE,
        XFER_WOP_SEAL,
        _XFER_WOP_KIND_MAX,
        _XFER_WOP_KIND_INVALID = -EINVAL,
} xfer_wop_kind;

typedef struct xfer_wop {
        struct xfer_wop *next;
        xfer_wop_kind kind;
        xfer_wdir dir;    /* OPEN */
        char *path;       /* OPEN: the file's path in the stream, for messages */
        const char *name; /* OPEN: its last component, in path */
        uint8_t *buf;     /* WRITE: the writer's buffer */
        size_t len;
        int fd; /* SEAL: the named file, for the loop to flush */
} xfer_wop;

typedef struct xfer_wbuf {
        struct xfer_wbuf *next;
} xfer_wbuf;

typedef enum xfer_writer_state {
        XFER_WRITER_IDLE,    /* no batch runs */
        XFER_WRITER_RUNNING, /* a batch is the thread's */
        XFER_WRITER_FAILED,  /* a step failed or was cancelled: nothing more runs */
        _XFER_WRITER_STATE_MAX,
        _XFER_WRITER_STATE_INVALID = -EINVAL,
} xfer_writer_state;

struct xfer_writer {
        uv_loop_t *loop;
        xfer_writer_callbacks cbs;
        void *userdata;
        xfer_writer_state state;
        uv_work_t work;

        xfer_wop *pending, **pending_tail; /* the loop's */
        xfer_wop *last_write;              /* the last of pending, when it is a WRITE */
        xfer_wop *fresh;                   /* a WRITE of buffer, not queued yet */
        xfer_wop *filling;                 /* where the last space went: last_write or fresh */
        xfer_wop *running;                 /* the batch's while RUNNING */
        size_t queued_bytes, queued_ops;   /* pending and running */
        xfer_wbuf *spare;
        unsigned n_spare;

        /* Touched by the thread while RUNNING, by the loop otherwise. */
        int dirs[_XFER_WDIR_MAX];
        int dir; /* the current file's directory, one of dirs */
        int fd;  /* the file being written, or -EBADF */
        bool anonymous;
        const char *name;
        char path[PROTO_PATH_MAX + 1];
        char *gate;           /* a test's stalled file system: see xfer_recv_options */
        xfer_gate_after gate_after;
        int result;           /* the batch's: 0, or -errno of the failed step */
        xfer_wop_kind failed; /* which step */
        atomic_bool cancelled;
};

/* ---- on the thread ------------------------------------------------------------ */

/* Without a name (O_TMPFILE) until it is sealed: no path leads to a file
 * whose bytes are not all written. Where O_TMPFILE is missing, the name is
 * made at once, O_EXCL. */
static int step_open(xfer_writer *w, const xfer_wop *op) {
        int dir = w->dir = w->dirs[op->dir];

        /* The step is freed with its batch; the seal may come in a later one. */
        snprintf(w->path, sizeof(w->path), "%s", op->path);
        w->name = w->path + (op->name - op->path);
        w->fd = openat(dir, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        w->anonymous = w->fd >= 0;
        if (w->fd >= 0)
                return 0;
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
                return negative_errno();
        w->fd = openat(dir, op->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        return w->fd < 0 ? negative_errno() : 0;
}

static int step_seal(xfer_writer *w, xfer_wop *op) {
        char proc[64];
        int q;

        if (w->anonymous) {
                /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc works without. */
                q = linkat(w->fd, "", w->dir, w->name, AT_EMPTY_PATH);
                if (q < 0 && (errno == ENOENT || errno == EPERM)) {
                        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", w->fd);
                        q = linkat(AT_FDCWD, proc, w->dir, w->name, AT_SYMLINK_FOLLOW);
                }
                if (q < 0)
                        return negative_errno();
                w->anonymous = false;
        }
        q = fs_set_immutable(w->fd, true);
        if (q < 0 && q != -ENOTTY && q != -EOPNOTSUPP && q != -EPERM)
                return q;
        op->fd = TAKE_FD(w->fd);
        return 0;
}

static int step_run(xfer_writer *w, xfer_wop *op) {
        if (op->kind == XFER_WOP_OPEN)
                return w->fd < 0 ? step_open(w, op) : -EBADF;
        if (w->fd < 0)
                return -EBADF; /* the loop orders the steps: not reached */
        if (op->kind == XFER_WOP_WRITE)
                return loop_write(w->fd, op->buf, op->len);
        return step_seal(w, op);
}

/* Waits while the test's gate exists; says what the batch does next. */
static xfer_gate_after test_gate_wait(xfer_writer *w) {
        bool waited = false;

        while (access(w->gate, F_OK) == 0 && !atomic_load(&w->cancelled)) {
                waited = true;
                usleep(20000);
        }
        return waited ? w->gate_after : XFER_GATE_THEN_WRITE;
}

static void batch_work(uv_work_t *wk) {
        xfer_writer *w = container_of(wk, xfer_writer, work);

        w->result = 0;
        if (w->gate && test_gate_wait(w) == XFER_GATE_THEN_FAIL) {
                w->result = -EIO;
                w->failed = XFER_WOP_WRITE;
                return;
        }
        for (xfer_wop *op = w->running; op; op = op->next) {
                int q;

                if (atomic_load(&w->cancelled)) {
                        w->result = -ECANCELED;
                        return;
                }
                q = step_run(w, op);
                if (q < 0) {
                        w->result = q;
                        w->failed = op->kind;
                        return;
                }
        }
}

/* ---- on the loop --------------------------------------------------------------- */

static void buf_put(xfer_writer *w, uint8_t *buf) {
        xfer_wbuf *b = (xfer_wbuf *)buf;

        if (!buf)
                return;
        if (w->n_spare >= XFER_WRITER_SPARE_BUFS) {
                free(buf);
                return;
        }
        b->next = w->spare;
        w->spare = b;
        w->n_spare++;
}

static void ops_free(xfer_writer *w, xfer_wop *op) {
        while (op) {
                xfer_wop *next = op->next;
                if (op->fd >= 0)
                        close(op->fd);
                buf_put(w, op->buf);
                free(op->path);
                free(op);
                op = next;
        }
}

static void drop_queued(xfer_writer *w) {
        ops_free(w, TAKE_PTR(w->pending));
        ops_free(w, TAKE_PTR(w->running));
        w->pending_tail = &w->pending;
        w->last_write = NULL;
        w->queued_bytes = w->queued_ops = 0;
}

static void batch_done(uv_work_t *wk, int status);

/* 0, or < 0 when the threadpool refused the batch: the writer has failed. */
static int batch_start(xfer_writer *w) {
        if (w->state != XFER_WRITER_IDLE || !w->pending)
                return 0;
        w->running = TAKE_PTR(w->pending);
        w->pending_tail = &w->pending;
        w->last_write = NULL;
        w->state = XFER_WRITER_RUNNING;
        if (uv_queue_work(w->loop, &w->work, batch_work, batch_done) < 0) {
                w->state = XFER_WRITER_FAILED;
                drop_queued(w);
                return -EIO;
        }
        return 0;
}

static void fail_message(xfer_writer *w, nm_error *e) {
        const char *path = w->path[0] ? w->path : "a file";

        if (w->result == -ECANCELED)
                nm_error_errno(e, w->result, "the writes into staging were cancelled");
        else if (w->failed == XFER_WOP_OPEN)
                nm_error_errno(e, w->result, "cannot create %s in the staging directory", path);
        else if (w->failed == XFER_WOP_SEAL)
                nm_error_errno(e, w->result, "cannot name %s in the staging directory", path);
        else
                nm_error_errno(e, w->result, "cannot write %s in the staging directory", path);
}

static void batch_done(uv_work_t *wk, int status) {
        xfer_writer *w = container_of(wk, xfer_writer, work);
        xfer_wop *done = TAKE_PTR(w->running);
        nm_error e = {};

        if (status < 0 && w->result == 0)
                w->result = status;
        if (atomic_load(&w->cancelled))
                w->result = -ECANCELED;
        for (xfer_wop *op = done; op; op = op->next) {
                w->queued_ops--;
                w->queued_bytes -= op->len;
                if (op->kind == XFER_WOP_SEAL && op->fd >= 0 && w->result == 0)
                        w->cbs.sealed(TAKE_FD(op->fd), w->userdata);
        }
        ops_free(w, done);
        w->state = XFER_WRITER_IDLE;
        if (w->result == 0) {
                /* Once the next batch is queued, result, failed, path and fd
                 * are its thread's: nothing here may read them after. */
                if (batch_start(w) == 0) {
                        w->cbs.batch_done(0, NULL, w->userdata);
                        return;
                }
                w->result = -EIO;
                w->failed = XFER_WOP_WRITE;
        }
        w->state = XFER_WRITER_FAILED;
        drop_queued(w);
        fail_message(w, &e);
        w->cbs.batch_done(w->result, &e, w->userdata);
}

static int op_push(xfer_writer *w, xfer_wop *op) {
        if (w->state == XFER_WRITER_FAILED) {
                ops_free(w, op);
                return -ECANCELED;
        }
        op->next = NULL;
        *w->pending_tail = op;
        w->pending_tail = &op->next;
        w->last_write = op->kind == XFER_WOP_WRITE ? op : NULL;
        w->queued_ops++;
        w->queued_bytes += op->len;
        return batch_start(w);
}

static xfer_wop *op_new(xfer_wop_kind kind) {
        xfer_wop *op = calloc(1, sizeof(*op));
        if (op) {
                op->kind = kind;
                op->fd = -EBADF;
        }
        return op;
}

static uint8_t *buf_get(xfer_writer *w) {
        xfer_wbuf *b = w->spare;

        if (!b)
                return io_buf_alloc(PROTO_DATA_MAX);
        w->spare = b->next;
        w->n_spare--;
        return (uint8_t *)b;
}

uint8_t *xfer__writer_space(xfer_writer *w, size_t len) {
        xfer_wop *op = w->last_write;

        assert(len <= PROTO_DATA_MAX);
        w->filling = NULL;
        if (op && PROTO_DATA_MAX - op->len >= len) {
                /* Still waiting: no batch has it, and none starts before
                 * the running one ends, which is a turn of the loop away. */
                w->filling = op;
                return op->buf + op->len;
        }
        if (!w->fresh) {
                op = op_new(XFER_WOP_WRITE);
                if (!op || !(op->buf = buf_get(w))) {
                        free(op);
                        return NULL;
                }
                w->fresh = op;
        }
        w->filling = w->fresh;
        return w->fresh->buf;
}

int xfer__writer_commit(xfer_writer *w, size_t len) {
        xfer_wop *op = TAKE_PTR(w->filling);

        assert(op);
        if (op != w->fresh) {
                op->len += len;
                w->queued_bytes += len;
                return 0;
        }
        w->fresh = NULL;
        op->len = len;
        return op_push(w, op);
}

int xfer__writer_open(xfer_writer *w, xfer_wdir dir, const char *path, const char *name) {
        xfer_wop *op = op_new(XFER_WOP_OPEN);
        size_t off;

        if (!op || !(op->path = strdup(path))) {
                free(op);
                return -ENOMEM;
        }
        off = strlen(path) - strlen(name);
        if (strcmp(path + off, name) != 0) {
                ops_free(w, op);
                return -EINVAL;
        }
        op->dir = dir;
        op->name = op->path + off;
        return op_push(w, op);
}

int xfer__writer_seal(xfer_writer *w) {
        xfer_wop *op = op_new(XFER_WOP_SEAL);
        return op ? op_push(w, op) : -ENOMEM;
}

bool xfer__writer_above(const xfer_writer *w, size_t bytes, size_t ops) {
        return w->queued_bytes >= bytes || w->queued_ops >= ops;
}

bool xfer__writer_busy(const xfer_writer *w) {
        return w && w->state == XFER_WRITER_RUNNING;
}

void xfer__writer_cancel(xfer_writer *w) {
        if (!w || w->state == XFER_WRITER_FAILED)
                return;
        if (w->state == XFER_WRITER_RUNNING) {
                /* The batch stops at its next step; its completion says so. */
                ops_free(w, TAKE_PTR(w->pending));
                w->pending_tail = &w->pending;
                w->last_write = NULL;
                atomic_store(&w->cancelled, true);
                return;
        }
        w->state = XFER_WRITER_FAILED;
        drop_queued(w);
}

xfer_writer *xfer__writer_free(xfer_writer *w) {
        if (!w)
                return NULL;
        assert(w->state != XFER_WRITER_RUNNING);
        drop_queued(w);
        ops_free(w, w->fresh);
        if (w->fd >= 0)
                close(w->fd);
        for (size_t i = 0; i < _XFER_WDIR_MAX; i++)
                if (w->dirs[i] >= 0)
                        close(w->dirs[i]);
        free(w->gate);
        while (w->spare) {
                xfer_wbuf *next = w->spare->next;
                free(w->spare);
                w->spare = next;
        }
        free(w);
        return NULL;
}

int xfer__writer_new(uv_loop_t *loop, int top_fd, int images_fd, const char *gate, xfer_gate_after after,
                     const xfer_writer_callbacks *cbs, void *userdata, xfer_writer **ret) {
        xfer_writer *w = calloc(1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        w->loop = loop;
        w->cbs = *cbs;
        w->userdata = userdata;
        w->fd = w->dir = -EBADF;
        w->pending_tail = &w->pending;
        w->dirs[XFER_WDIR_TOP] = fcntl(top_fd, F_DUPFD_CLOEXEC, 3);
        w->dirs[XFER_WDIR_IMAGES] = fcntl(images_fd, F_DUPFD_CLOEXEC, 3);
        w->gate = gate ? strdup(gate) : NULL;
        w->gate_after = after;
        if (w->dirs[XFER_WDIR_TOP] < 0 || w->dirs[XFER_WDIR_IMAGES] < 0 || (gate && !w->gate)) {
                int q = w->dirs[XFER_WDIR_TOP] < 0 || w->dirs[XFER_WDIR_IMAGES] < 0 ? negative_errno()
                                                                                    : -ENOMEM;
                xfer__writer_free(w);
                return q;
        }
        *ret = w;
        return 0;
}
