/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* [limits] bandwidth as an average: the bytes sent since the mark must fit
 * the rate over the time since the mark. The mark moves whenever the rate
 * changes, so a larger share does not burst to catch up and a smaller one
 * does not stall for what went before. Both senders (the image stream and
 * the pages streamed while CRIU dumps) pace with it. */
typedef struct xfer_pace {
        uint64_t rate;       /* bytes per second; 0: no limit */
        uint64_t mark_ms;    /* the average's start: the first byte, or the rate's last change */
        uint64_t mark_bytes; /* bytes sent before mark_ms */
} xfer_pace;

/* A rate from now on, with `bytes` sent so far. False if it was the rate
 * already (the mark stays). */
bool xfer_pace_set(xfer_pace *p, uint64_t rate, uint64_t now_ms, uint64_t bytes);

/* How many ms to wait before sending more, `bytes` sent so far: 0 when the
 * average fits (or there is no limit). */
uint64_t xfer_pace_wait_ms(const xfer_pace *p, uint64_t now_ms, uint64_t bytes);
