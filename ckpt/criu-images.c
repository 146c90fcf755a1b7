/* SPDX-License-Identifier: Apache-2.0 */
/* Facts CRIU recorded at the freeze, read from its images: which tasks were
 * stopped (pstree.img, core-<pid>.img) and whether TCP connections were
 * dumped to be closed (inventory.img). Only the few fields needed are
 * decoded, by a minimal protobuf reader; no libcriu here.
 *
 * An image file is a magic (after IMG_COMMON_MAGIC or IMG_SERVICE_MAGIC for
 * all but the inventory), then entries, each a 32-bit little-endian size and
 * one protobuf message (criu/image.c, criu/protobuf.c). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

#define IMG_COMMON_MAGIC 0x54564319u
#define IMG_SERVICE_MAGIC 0x55105940u
#define INVENTORY_MAGIC 0x58313116u
#define PSTREE_MAGIC 0x50273030u
#define CORE_MAGIC 0x55053847u

/* Sizes are bounded so that a hostile image cannot make us read much. */
#define SMALL_IMAGE_MAX (1u << 20)
#define PSTREE_IMAGE_MAX (64u << 20)

/* criu/include/pid.h: a task CRIU found in group stop. */
#define CRIU_TASK_STOPPED 3

/* ---- protobuf ---------------------------------------------------------- */

static int pb_varint(ckpt__pb *pb, uint64_t *ret) {
        uint64_t v = 0;
        for (unsigned shift = 0; shift < 64; shift += 7) {
                if (pb->p >= pb->end)
                        return -EBADMSG;
                uint8_t b = *pb->p++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

int ckpt__pb_next(ckpt__pb *pb, ckpt__pb_field *f) {
        uint64_t key, len;

        if (pb->p >= pb->end)
                return 0;
        if (pb_varint(pb, &key) < 0 || key >> 3 == 0 || key >> 3 > UINT32_MAX)
                return -EBADMSG;
        *f = (ckpt__pb_field){.number = (uint32_t)(key >> 3), .wire = (unsigned)(key & 7)};
        switch (f->wire) {
        case CKPT__PB_VARINT: return pb_varint(pb, &f->v) < 0 ? -EBADMSG : 1;
        case CKPT__PB_FIXED64:
                if (pb->end - pb->p < 8)
                        return -EBADMSG;
                memcpy(&f->v, pb->p, 8);
                pb->p += 8;
                return 1;
        case CKPT__PB_BYTES:
                if (pb_varint(pb, &len) < 0 || len > (uint64_t)(pb->end - pb->p))
                        return -EBADMSG;
                f->data = pb->p;
                f->len = (size_t)len;
                pb->p += len;
                return 1;
        case CKPT__PB_FIXED32:
                if (pb->end - pb->p < 4)
                        return -EBADMSG;
                memcpy(&f->v, pb->p, 4);
                pb->p += 4;
                return 1;
        default: return -EBADMSG;
        }
}

/* Finds the first field number in a message; 1 found, 0 absent. A repeated
 * scalar field may come packed: the caller asked for wire type want. */
static int pb_find(const uint8_t *msg, size_t len, unsigned number, unsigned want, ckpt__pb_field *ret) {
        ckpt__pb pb = {msg, msg + len};
        ckpt__pb_field f;
        int r;

        while ((r = ckpt__pb_next(&pb, &f)) > 0)
                if (f.number == number) {
                        if (f.wire != want)
                                return -EBADMSG;
                        *ret = f;
                        return 1;
                }
        return r;
}

/* ---- image files ------------------------------------------------------- */

int ckpt__img_init(ckpt__img *img, const uint8_t *buf, size_t len, uint32_t magic) {
        uint32_t m;

        if (len < 4)
                return -EBADMSG;
        memcpy(&m, buf, 4);
        if (m == IMG_COMMON_MAGIC || m == IMG_SERVICE_MAGIC) {
                if (len < 8)
                        return -EBADMSG;
                memcpy(&m, buf + 4, 4);
                buf += 4;
                len -= 4;
        }
        if (m != magic)
                return -EBADMSG;
        *img = (ckpt__img){.p = buf + 4, .end = buf + len};
        return 0;
}

int ckpt__img_next(ckpt__img *img, const uint8_t **ret_msg, size_t *ret_len) {
        uint32_t size;

        if (img->p == img->end)
                return 0;
        if (img->end - img->p < 4)
                return -EBADMSG;
        memcpy(&size, img->p, 4);
        img->p += 4;
        if (size > (size_t)(img->end - img->p))
                return -EBADMSG;
        *ret_msg = img->p;
        *ret_len = size;
        img->p += size;
        return 1;
}

/* Reads name below imgfd and returns its first entry. */
static int read_first_entry(int imgfd, const char *name, uint32_t magic, size_t max, char **ret_buf,
                            const uint8_t **ret_msg, size_t *ret_len) {
        _cleanup_free_ char *buf = NULL;
        ckpt__img img;
        size_t len;
        int r;

        r = read_file_at(imgfd, name, max, &buf, &len);
        if (r < 0)
                return r;
        r = ckpt__img_init(&img, (const uint8_t *)buf, len, magic);
        if (r >= 0)
                r = ckpt__img_next(&img, ret_msg, ret_len);
        if (r == 0)
                r = -EBADMSG;
        if (r < 0)
                return r;
        *ret_buf = TAKE_PTR(buf);
        return 0;
}

/* ---- what the images say ----------------------------------------------- */

int ckpt__images_tcp_close(int imgfd, bool *ret) {
        _cleanup_free_ char *buf = NULL;
        const uint8_t *msg;
        ckpt__pb_field f;
        size_t len;
        int r;

        r = read_first_entry(imgfd, "inventory.img", INVENTORY_MAGIC, SMALL_IMAGE_MAX, &buf, &msg, &len);
        if (r < 0)
                return r;
        /* inventory_entry.tcp_close = 10 */
        r = pb_find(msg, len, 10, CKPT__PB_VARINT, &f);
        if (r < 0)
                return r;
        *ret = r > 0 && f.v != 0;
        return 0;
}

/* 1 when core-<pid>.img says the task was stopped at the freeze. */
static int core_stopped(int imgfd, uint32_t pid) {
        _cleanup_free_ char *buf = NULL;
        const uint8_t *msg;
        ckpt__pb_field tc, state;
        char name[32];
        size_t len;
        int r;

        snprintf(name, sizeof(name), "core-%u.img", pid);
        r = read_first_entry(imgfd, name, CORE_MAGIC, SMALL_IMAGE_MAX, &buf, &msg, &len);
        if (r < 0)
                return r;
        /* core_entry.tc = 3 (task_core_entry), its task_state = 1 */
        r = pb_find(msg, len, 3, CKPT__PB_BYTES, &tc);
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;
        r = pb_find(tc.data, tc.len, 1, CKPT__PB_VARINT, &state);
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;
        return state.v == CRIU_TASK_STOPPED;
}

static int stopped_add(ckpt_stopped_tasks *s, pid_t pid) {
        pid_t *np = realloc(s->ns_pids, (s->n + 1) * sizeof(pid_t));
        if (!np)
                return -ENOMEM;
        s->ns_pids = np;
        s->ns_pids[s->n++] = pid;
        return 0;
}

/* One pstree_entry: its pid (field 1) is the process's pid in the tree's
 * own pid namespace, the one CRIU named its core image after. Adds it to s
 * when that image says it was stopped. */
static int pstree_entry_stopped(int imgfd, const uint8_t *msg, size_t len, ckpt_stopped_tasks *s,
                                nm_error *err) {
        ckpt__pb_field pid = {};
        int r = pb_find(msg, len, 1, CKPT__PB_VARINT, &pid);

        if (r == 0 || pid.v == 0 || pid.v > INT32_MAX)
                r = -EBADMSG;
        if (r < 0)
                return nm_error_errno(err, r, "cannot parse CRIU's pstree.img");
        r = core_stopped(imgfd, (uint32_t)pid.v);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read the state of task %u from core-%u.img",
                                      (unsigned)pid.v, (unsigned)pid.v);
        return r > 0 ? stopped_add(s, (pid_t)pid.v) : 0;
}

int ckpt__stopped_tasks_at(int imgfd, ckpt_stopped_tasks *ret, nm_error *err) {
        _cleanup_free_ char *buf = NULL;
        ckpt_stopped_tasks s = {};
        const uint8_t *msg;
        ckpt__img img;
        size_t len;
        int r;

        r = read_file_at(imgfd, "pstree.img", PSTREE_IMAGE_MAX, &buf, &len);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read CRIU's pstree.img");
        r = ckpt__img_init(&img, (const uint8_t *)buf, len, PSTREE_MAGIC);
        if (r < 0)
                return nm_error_errno(err, r, "cannot parse CRIU's pstree.img");
        while ((r = ckpt__img_next(&img, &msg, &len)) > 0) {
                r = pstree_entry_stopped(imgfd, msg, len, &s, err);
                if (r < 0)
                        break;
        }
        if (r < 0) {
                ckpt_stopped_tasks_done(&s);
                if (err && err->code == 0)
                        nm_error_errno(err, r, "cannot parse CRIU's pstree.img");
                return r;
        }
        *ret = s;
        return 0;
}

int ckpt_stopped_tasks_load(const char *dir, ckpt_stopped_tasks *ret, nm_error *err) {
        _cleanup_close_ int dfd = -EBADF, imgfd = -EBADF;

        dfd = open_dir_nofollow(dir);
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open checkpoint directory %s", dir);
        imgfd = openat_dir_beneath(dfd, CKPT_IMAGES_DIR);
        if (imgfd < 0)
                return nm_error_errno(err, imgfd, "cannot open %s/%s", dir, CKPT_IMAGES_DIR);
        return ckpt__stopped_tasks_at(imgfd, ret, err);
}

void ckpt_stopped_tasks_done(ckpt_stopped_tasks *s) {
        if (!s)
                return;
        free(s->ns_pids);
        *s = (ckpt_stopped_tasks){};
}

bool ckpt_stopped_tasks_has(const ckpt_stopped_tasks *s, pid_t ns_pid) {
        for (size_t i = 0; s && i < s->n; i++)
                if (s->ns_pids[i] == ns_pid)
                        return true;
        return false;
}
