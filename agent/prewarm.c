/* SPDX-License-Identifier: Apache-2.0 */
#include "prewarm.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"

/* Touched per step between looks at the clock and the cancel flag. */
#define PREWARM_STEP (2u << 20)
#define PREWARM_MIN (16u << 20)
#define PREWARM_SLACK (512ull << 20)

struct prewarm {
        uv_work_t work;
        uint8_t *mem;
        uint64_t len, touched, max_ms;
        atomic_bool cancel;
        bool running, freed;
        prewarm_cb cb;
        void *userdata;
};

static uint64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Once the worker is done, exactly [mem, mem + touched) is mapped. */
static void release(prewarm *p) {
        if (p->mem && p->touched > 0)
                (void)munmap(p->mem, p->touched);
        p->mem = NULL;
        p->touched = 0;
}

static void warm_work(uv_work_t *w) {
        prewarm *p = container_of(w, prewarm, work);
        uint64_t deadline = mono_ms() + p->max_ms;
        long page = sysconf(_SC_PAGESIZE);
        void *m;

        m = mmap(NULL, p->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
                return;
        p->mem = m;
        /* One write per page makes the kernel (and the host) back it; the
         * steps keep a cancel or the deadline from waiting long. */
        while (p->touched < p->len && !atomic_load(&p->cancel) && mono_ms() < deadline) {
                uint64_t end = p->touched + PREWARM_STEP < p->len ? p->touched + PREWARM_STEP : p->len;
                for (uint64_t off = p->touched; off < end; off += (uint64_t)page)
                        p->mem[off] = 1;
                p->touched = end;
        }
}

static void warm_done(uv_work_t *w, int status) {
        prewarm *p = container_of(w, prewarm, work);
        (void)status;
        p->running = false;
        if (p->mem && p->touched < p->len) {
                /* Stopped early: the part never touched goes at once. */
                (void)munmap(p->mem + p->touched, p->len - p->touched);
                if (p->touched == 0)
                        p->mem = NULL;
        }
        if (p->freed) {
                release(p);
                free(p);
                return;
        }
        if (p->cb)
                p->cb(p, p->touched, p->userdata);
}

int prewarm_start(uv_loop_t *loop, uint64_t bytes, uint64_t max_ms, prewarm_cb cb, void *userdata,
                  prewarm **ret) {
        prewarm *p;
        int r;

        if (!loop || !cb || !ret || bytes == 0)
                return -EINVAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        /* Whole steps, so that every boundary is page-aligned. */
        p->len = (bytes + PREWARM_STEP - 1) / PREWARM_STEP * PREWARM_STEP;
        p->max_ms = max_ms;
        p->cb = cb;
        p->userdata = userdata;
        atomic_init(&p->cancel, false);
        r = uv_queue_work(loop, &p->work, warm_work, warm_done);
        if (r < 0) {
                free(p);
                return r;
        }
        p->running = true;
        *ret = p;
        return 0;
}

prewarm *prewarm_free(prewarm *p) {
        if (!p)
                return NULL;
        if (p->running) {
                /* The worker still writes into the mapping: it goes once the
                 * worker has stopped (warm_done). */
                p->freed = true;
                atomic_store(&p->cancel, true);
                return NULL;
        }
        release(p);
        free(p);
        return NULL;
}

static uint64_t mem_available(void) {
        _cleanup_free_ char *text = NULL;
        unsigned long long kb;
        const char *s;

        if (read_file_at(AT_FDCWD, "/proc/meminfo", 1 << 16, &text, NULL) < 0)
                return 0;
        s = strstr(text, "MemAvailable:");
        if (!s || sscanf(s + strlen("MemAvailable:"), "%llu", &kb) != 1)
                return 0;
        return (uint64_t)kb * 1024;
}

uint64_t prewarm_bytes_for(uint64_t image_bytes, unsigned copies) {
        uint64_t avail = mem_available();

        if (image_bytes < PREWARM_MIN || copies == 0)
                return 0;
        /* Staged images (when staging is a tmpfs), the restored memory and the
         * warm memory may all be resident at once for a moment. */
        if (avail < (copies + 2) * image_bytes + PREWARM_SLACK)
                return 0;
        return copies * image_bytes;
}
