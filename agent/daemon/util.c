/* SPDX-License-Identifier: Apache-2.0 */
/* Small things the daemon's parts share: the clock and migration ids. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "agent.h"

uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int64_t unix_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void agent_new_id(char out[33]) {
        uint8_t raw[8];
        struct timespec ts;
        /* Time first, so that ids sort by age in listings. */
        clock_gettime(CLOCK_REALTIME, &ts);
        if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
                memset(raw, 0, sizeof(raw));
        snprintf(out, 33, "%08lx%02x%02x%02x%02x", (unsigned long)ts.tv_sec & 0xffffffffUL, raw[0], raw[1],
                 raw[2], raw[3]);
}
