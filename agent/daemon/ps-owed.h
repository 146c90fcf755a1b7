/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What CRIU's page server owes a dump: the dump's side of CRIU's page-server
 * protocol, read as it passes, for the one thing the agent needs to know of
 * it: whether the dump now waits for an answer, and for how many bytes.
 * Most of what a dump sends (pages) wants none; a few requests do (the open
 * of each pagemap, the final close), and CRIU blocks on them with its tasks
 * frozen. A target that never answers would hold them frozen until [agent]
 * criu_timeout; knowing that an answer is owed lets the agent give up on it
 * much sooner, without mistaking a dump that is busy with its own work (a
 * large tmpfs, a quiet socket) for a stalled one.
 *
 * The layout is CRIU 4.x's (the project needs >= 4.2): a 32-byte header
 * (u32 cmd, u64 nr_pages, vaddr, dst_id, naturally aligned), page bytes after
 * an ADD whose flags say present. Every header is checked against what CRIU
 * sends; anything else (another layout, a request this does not know, an
 * answer nobody owed) and the reading is lost for good: then nothing is
 * owed as far as this can tell, and the caller falls back on criu_timeout. */

#include <stddef.h>
#include <stdint.h>

#define PS_OWED_HDR_LEN 32u

typedef enum ps_owed_state {
        PS_OWED_FOLLOWING, /* every byte so far read as the protocol */
        PS_OWED_LOST,      /* something this does not know: no more judgments */
} ps_owed_state;

typedef struct ps_owed {
        ps_owed_state state;
        uint8_t hdr[PS_OWED_HDR_LEN];
        size_t hdr_have;     /* of the request header being read, once no pages are left */
        uint64_t pages_left; /* bytes of the current ADD's pages still to come: read before any header */
        uint64_t owed;       /* bytes of replies the dump waits for */
        uint64_t asked;      /* requests that wanted a reply, so far */
        uint64_t page_size;
        char why[96]; /* LOST: what could not be read */
} ps_owed;

void ps_owed_init(ps_owed *o);

/* Bytes the dump wrote to its page server, in order. */
void ps_owed_request(ps_owed *o, const void *buf, size_t n);

/* n bytes of replies reached the dump. More than was owed: lost. */
void ps_owed_reply(ps_owed *o, size_t n);

/* Bytes of replies the dump waits for now (0 once lost). */
uint64_t ps_owed_bytes(const ps_owed *o);
