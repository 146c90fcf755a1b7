/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Time in unit tests (tests/README.md, "Time"). A test waits on an event;
 * where it needs a time limit (an idle window it wants to see fire, a bound
 * against hanging) the limit scales with the fixture's timeout multiplier,
 * NM_TIMEOUT_MULT (as tests/lib/common.sh reads it), and only ever bounds
 * from one side: a slow machine may make a test take longer, never fail. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* NM_TIMEOUT_MULT as a whole number >= 1 (1 when unset or not a number). */
static inline uint64_t t_timeout_mult(void) {
        const char *s = getenv("NM_TIMEOUT_MULT");
        char *end = NULL;
        unsigned long long m;

        if (!s || !*s)
                return 1;
        errno = 0;
        m = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0' || m == 0 || m > 1000)
                return 1;
        return m;
}

/* MS milliseconds, scaled by the multiplier. */
static inline uint64_t t_ms(uint64_t ms) {
        return ms * t_timeout_mult();
}

/* CLOCK_MONOTONIC in milliseconds. */
static inline uint64_t t_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sleeps at least MS milliseconds: a stall a test makes on purpose (it is a
 * lower bound, so it does not depend on the machine's speed). */
static inline void t_stall_ms(uint64_t ms) {
        struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}
