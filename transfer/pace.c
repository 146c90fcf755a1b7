/* SPDX-License-Identifier: Apache-2.0 */
#include "pace.h"

bool xfer_pace_set(xfer_pace *p, uint64_t rate, uint64_t now_ms, uint64_t bytes) {
        if (p->rate == rate)
                return false;
        p->rate = rate;
        p->mark_ms = now_ms;
        p->mark_bytes = bytes;
        return true;
}

uint64_t xfer_pace_wait_ms(const xfer_pace *p, uint64_t now_ms, uint64_t bytes) {
        uint64_t due;

        if (!p->rate || bytes <= p->mark_bytes)
                return 0;
        due = p->mark_ms + (bytes - p->mark_bytes) * 1000 / p->rate;
        return due > now_ms ? due - now_ms : 0;
}
