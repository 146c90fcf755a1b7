/* SPDX-License-Identifier: Apache-2.0 */
/* The heap's policy for a streaming process (mem.h).
 *
 * glibc maps a block above its mmap threshold (128 KiB at first) on its
 * own and unmaps it when freed, and gives the top of the heap back once
 * more than the trim threshold is free there. A stream allocates a frame
 * of 256 KiB or more for every message it encodes and frees it once sent:
 * each one then came from fresh pages, faulted in and zeroed by the
 * kernel, and on the source's loop thread, which paces a dump that streams
 * its pages, that was a third of its kernel time (perf, a 1 GiB
 * incompressible move: 222 of its 627 kernel samples, 1686 in all).
 * With both thresholds raised the frames reuse the heap's pages; a node
 * keeps up to STREAM_TRIM_BYTES of freed heap resident between moves. */
#include "mem.h"

#include <malloc.h>

/* Above the largest frame (4 MiB and its header, in a buffer grown by
 * doubling): larger blocks are rare and still mapped on their own. */
#define STREAM_MMAP_BYTES (16 * 1024 * 1024)
/* A move's queue holds up to 8 MiB of frames, in buffers of up to twice
 * their size: twice that leaves room for a second move at once. */
#define STREAM_TRIM_BYTES (32 * 1024 * 1024)

void mem_keep_stream_buffers(void) {
        /* Best effort: without it the process only runs slower. */
        (void)mallopt(M_MMAP_THRESHOLD, STREAM_MMAP_BYTES);
        (void)mallopt(M_TRIM_THRESHOLD, STREAM_TRIM_BYTES);
}
