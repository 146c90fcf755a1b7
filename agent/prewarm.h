/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Warm memory for a restore. On a VM that hands free memory back to its
 * host (virtio-balloon free page reporting), memory touched for the first
 * time in a while faults in several times slower than memory freed a moment
 * ago: a 1 GiB restore took 2.5-2.9 s on cold memory and 0.35-0.5 s on warm
 * memory (measured by hand with criu dump/restore). The destination
 * therefore faults in about the image size of anonymous memory while the
 * source is still running, holds it, and frees it right before CRIU
 * restores, which then gets those pages back from the allocator. On bare
 * metal it costs a short delay before ACCEPT and nothing else. */

#include <stdint.h>
#include <uv.h>

typedef struct prewarm prewarm;

/* Runs once on the loop: warmed is how much was faulted in (less than asked
 * when the deadline came first or the memory could not be mapped). */
typedef void (*prewarm_cb)(prewarm *p, uint64_t warmed, void *userdata);

/* Faults in bytes of anonymous memory on the thread pool, for at most
 * max_ms, then runs cb. The memory is held until prewarm_free(). */
int prewarm_start(uv_loop_t *loop, uint64_t bytes, uint64_t max_ms, prewarm_cb cb, void *userdata,
                  prewarm **ret);

/* Frees the warm memory now (or, while the worker still runs, as soon as it
 * stops) and the object; cb does not run after this. Returns NULL. */
prewarm *prewarm_free(prewarm *p);

/* How much to warm for copies x image_bytes of fresh memory: all of it
 * when MemAvailable leaves room for the images, the restored memory and the
 * warm memory at once, else nothing. */
uint64_t prewarm_bytes_for(uint64_t image_bytes, unsigned copies);
