/* SPDX-License-Identifier: Apache-2.0 */
/* The dump's side of CRIU's page-server protocol, read for the answers it
 * waits for (ps-owed.h). Numbers and layout as CRIU 4.x's page-xfer.c sends
 * them, in the host's byte order (the dump and we share the host). */
#include "ps-owed.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"

/* Requests (the low 16 bits of cmd; an ADD_F's flags are the high ones). */
enum {
        PS_CMD_ADD = 1,   /* pages follow (older CRIUs) */
        PS_CMD_HOLE = 2,  /* no pages */
        PS_CMD_OPEN = 3,  /* no answer (older CRIUs) */
        PS_CMD_OPEN2 = 4, /* answered with one byte: whether a parent exists */
        PS_CMD_PARENT = 5,
        PS_CMD_ADD_F = 6,
        PS_CMD_CLOSE = 0x1023, /* answered with a 32-bit status */
        PS_CMD_FORCE_CLOSE = 0x1024,
};

/* Pagemap flags an ADD_F may carry; pages follow when PRESENT is set. */
enum {
        PS_PE_PARENT = 1u << 0,
        PS_PE_LAZY = 1u << 1,
        PS_PE_PRESENT = 1u << 2,
};

/* What an OPEN2's or PARENT's dst_id names: a task's pagemap or shared
 * memory's (the low 8 bits). */
enum { PS_TYPE_PID = 1, PS_TYPE_SHMEM = 2 };

/* No ADD covers more than a 64-bit address space's 2^48 bytes. */
#define PS_ADD_BYTES_MAX (1ull << 48)

typedef struct ps_hdr {
        uint32_t cmd;
        uint64_t nr_pages, vaddr, dst_id;
} ps_hdr;

_printf_(2, 3) static void lose(ps_owed *o, const char *fmt, ...) {
        va_list ap;

        if (o->state == PS_OWED_LOST)
                return;
        o->state = PS_OWED_LOST;
        va_start(ap, fmt);
        (void)vsnprintf(o->why, sizeof(o->why), fmt, ap);
        va_end(ap);
}

void ps_owed_init(ps_owed *o) {
        long ps = sysconf(_SC_PAGESIZE);
        *o = (ps_owed){.state = PS_OWED_FOLLOWING};
        o->page_size = ps > 0 ? (uint64_t)ps : 4096;
}

static ps_hdr hdr_decode(const uint8_t b[static PS_OWED_HDR_LEN]) {
        ps_hdr h;
        memcpy(&h.cmd, b, 4);
        memcpy(&h.nr_pages, b + 8, 8);
        memcpy(&h.vaddr, b + 16, 8);
        memcpy(&h.dst_id, b + 24, 8);
        return h;
}

/* An open or parent query names a pagemap, and nothing else. */
static bool names_pagemap(const ps_hdr *h) {
        uint64_t type = h->dst_id & 0xff;
        return h->nr_pages == 0 && h->vaddr == 0 && (type == PS_TYPE_PID || type == PS_TYPE_SHMEM);
}

/* Pages an ADD brings (0: none), or lost. */
static void add_pages(ps_owed *o, const ps_hdr *h, uint32_t flags) {
        if (flags & ~(uint32_t)(PS_PE_PARENT | PS_PE_LAZY | PS_PE_PRESENT)) {
                lose(o, "an ADD with unknown flags %#x", flags);
                return;
        }
        if (!(flags & PS_PE_PRESENT))
                return;
        if (h->nr_pages == 0 || h->nr_pages > PS_ADD_BYTES_MAX / o->page_size) {
                lose(o, "an ADD of %llu pages", (unsigned long long)h->nr_pages);
                return;
        }
        o->pages_left = h->nr_pages * o->page_size;
}

static void on_header(ps_owed *o, const ps_hdr *h) {
        uint32_t cmd = h->cmd & 0xffff, flags = h->cmd >> 16;

        if (flags && cmd != PS_CMD_ADD_F) {
                lose(o, "request %#x with flags", h->cmd);
                return;
        }
        switch (cmd) {
        case PS_CMD_ADD_F: add_pages(o, h, flags); return;
        case PS_CMD_ADD: add_pages(o, h, PS_PE_PRESENT); return;
        case PS_CMD_HOLE: return;
        case PS_CMD_OPEN:
        case PS_CMD_OPEN2:
        case PS_CMD_PARENT:
                if (!names_pagemap(h)) {
                        lose(o, "an open of %#llx", (unsigned long long)h->dst_id);
                        return;
                }
                if (cmd != PS_CMD_OPEN) {
                        o->owed += cmd == PS_CMD_OPEN2 ? 1 : 4;
                        o->asked++;
                }
                return;
        case PS_CMD_CLOSE:
        case PS_CMD_FORCE_CLOSE:
                if (h->nr_pages || h->vaddr || h->dst_id) {
                        lose(o, "a close with arguments (%#x)", h->cmd);
                        return;
                }
                o->owed += 4;
                o->asked++;
                return;
        default: lose(o, "request %#x", h->cmd); return;
        }
}

void ps_owed_request(ps_owed *o, const void *buf, size_t n) {
        const uint8_t *p = buf;

        while (n > 0 && o->state == PS_OWED_FOLLOWING) {
                if (o->pages_left) {
                        size_t k = n < o->pages_left ? n : (size_t)o->pages_left;
                        o->pages_left -= k;
                        p += k;
                        n -= k;
                        continue;
                }
                size_t k = PS_OWED_HDR_LEN - o->hdr_have;
                if (k > n)
                        k = n;
                memcpy(o->hdr + o->hdr_have, p, k);
                o->hdr_have += k;
                p += k;
                n -= k;
                if (o->hdr_have < PS_OWED_HDR_LEN)
                        continue;
                o->hdr_have = 0;
                ps_hdr h = hdr_decode(o->hdr);
                on_header(o, &h);
        }
}

void ps_owed_reply(ps_owed *o, size_t n) {
        if (o->state != PS_OWED_FOLLOWING)
                return;
        if (n > o->owed) {
                lose(o, "%llu bytes of replies nobody asked for", (unsigned long long)(n - o->owed));
                return;
        }
        o->owed -= n;
}

uint64_t ps_owed_bytes(const ps_owed *o) {
        return o->state == PS_OWED_FOLLOWING ? o->owed : 0;
}
