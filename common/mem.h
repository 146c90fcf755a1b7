/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* How the process's heap treats the large buffers a stream churns through
 * (frames of up to a few MiB, allocated and freed by the hundred per
 * second): kept in the heap for the next one, not mapped and unmapped each
 * time. Call once, before the first stream. */
void mem_keep_stream_buffers(void);
