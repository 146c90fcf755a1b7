/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One agent's end of a page stream: the pages a dump sends its page server
 * while CRIU runs, carried between two nodes as frames over the peer
 * session. Each end's CRIU (the source's dump, the target's `criu
 * page-server`) talks CRIU's page-server protocol on a socketpair
 * (ps_relay); what it writes leaves as frames, each with a ps_mac tag, and
 * what arrives is checked before a byte reaches it. Two tagged streams, one
 * per direction, each bound to the migration and to its direction: the
 * pages, source to target, closed by an end frame once the dump's CRIU has
 * closed its socket; and the page server's few replies, target to source.
 *
 * A frame that fails its check, or comes after the end, breaks the link
 * for good: our CRIU is made to fail (a dump then lets the tasks run on,
 * a page server exits non-zero) and nothing more reaches it.
 *
 * The source's end also reads what its dump asks (ps-owed.h): a target
 * that lets a reply the dump waits for go unanswered past the reply
 * timeout breaks the link the same way, rather than hold the tasks frozen
 * until CRIU's own timeout. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proto.h"
#include "ps-mac.h"

typedef struct ps_link ps_link;

typedef enum ps_link_role {
        PS_LINK_SOURCE, /* our CRIU is the dump: pages leave, replies arrive */
        PS_LINK_TARGET, /* our CRIU is the page server: pages arrive, replies leave */
} ps_link_role;

typedef enum ps_link_state {
        PS_LINK_OPEN,   /* frames flow */
        PS_LINK_ENDED,  /* source: its CRIU closed the socket and the end frame left;
                         * target: the end frame was checked (every page byte is in) */
        PS_LINK_BROKEN, /* a check or the socket failed: our CRIU was made to fail */
} ps_link_state;

/* Whether frames are compressed, and what a compressed frame's tag covers
 * (the two HELLOs decide, proto/PROTOCOL.md "ps-ztag"). */
typedef enum ps_link_zstd {
        PS_ZSTD_OFF,  /* frames leave plain; a compressed frame arriving is refused */
        PS_ZSTD_RAW,  /* compressed where it pays, tagged over the bytes CRIU wrote */
        PS_ZSTD_WIRE, /* compressed where it pays, tagged as it travels: checked before
                       * it is decompressed, each wire byte hashed once */
} ps_link_zstd;

/* A frame from this size on counts for zstd's backoff: after one that did
 * not shrink, the next 1, 2, 4... up to PS_ZSTD_SKIP_MAX such frames leave
 * without a try. */
#define PS_ZSTD_PROBE_MIN PROTO_ZBACKOFF_PROBE_MIN
#define PS_ZSTD_SKIP_MAX 16u

/* What the two streams are bound to: the migration and its two nodes; and
 * the MAC their frames carry (the two HELLOs decide, proto/PROTOCOL.md
 * "ps-poly1305"; zero: HMAC-SHA256). */
typedef struct ps_link_binding {
        const char *mig, *source, *target;
        ps_mac_alg mac;
} ps_link_binding;

typedef struct ps_link_ops {
        /* A frame for the peer and its tag (both valid during the call
         * only): bytes our CRIU wrote (size 0), or one zstd frame of
         * exactly size of them. */
        void (*frame)(ps_link *l, const void *buf, size_t n, uint32_t size,
                      const uint8_t tag[static PS_MAC_LEN], void *ud);
        /* Source only: the dump's CRIU closed its socket; the end frame for
         * the peer. */
        void (*end)(ps_link *l, const uint8_t tag[static PS_MAC_LEN], void *ud);
        /* Our CRIU's socket failed (once): the link is broken. A failed
         * check is not reported here: ps_link_feed's return says it. */
        void (*broken)(ps_link *l, int status, const char *why, void *ud);
        /* Optional: our CRIU took what was queued for it after
         * ps_link_full() said stop; the peer may be read again. */
        void (*drained)(ps_link *l, void *ud);
        /* Optional, source: a reply has been owed for the reply timeout
         * and none of it came. True when the peer is still taking our
         * bytes (the request may still be on its way behind pages): the
         * wait starts again. Otherwise, or without this, the link breaks
         * and broken runs with -ETIMEDOUT. */
        bool (*overdue)(ps_link *l, void *ud);
} ps_link_ops;

/* key: the shared key (copied into the MACs). *ret_criu_fd is our CRIU's
 * end of the socketpair (close-on-exec, see ps_relay_new), the caller's
 * to hand over and close. */
int ps_link_new(uv_loop_t *loop, ps_link_role role, const void *key, size_t key_len,
                const ps_link_binding *b, const ps_link_ops *ops, void *ud, int *ret_criu_fd, ps_link **ret);

/* How frames are compressed and checked from now on (PS_ZSTD_OFF until
 * then); level is zstd's. 0, or -ENOMEM. */
int ps_link_set_zstd(ps_link *l, ps_link_zstd mode, int level);

/* A frame from the peer (size as in the frame callback): checked, then
 * queued for our CRIU. -EBADMSG when it failed its check, -EPROTO when it
 * came compressed unasked or is not one zstd frame of exactly size bytes,
 * -EPIPE once the link had ended or broken: in each case the link is
 * broken now (no callback runs). */
int ps_link_feed(ps_link *l, const void *buf, size_t n, uint32_t size, const uint8_t tag[static PS_MAC_LEN]);

/* Our CRIU has more than it takes at once waiting (PS_RELAY_HIGH): stop
 * reading frames from the peer until the drained callback. A peer that is
 * faster than our CRIU must not grow our memory. */
bool ps_link_full(const ps_link *l);

/* Target only: the source's end frame. 0: every page byte arrived, in order,
 * and reached our CRIU's queue; otherwise as ps_link_feed. */
int ps_link_feed_end(ps_link *l, const uint8_t tag[static PS_MAC_LEN]);

/* Source: how long a reply the dump waits for may stay unanswered (0, the
 * default: as long as CRIU waits). */
void ps_link_set_reply_timeout(ps_link *l, uint64_t ms);

/* Stops or resumes reading from our CRIU (back-pressure on the session). */
void ps_link_pause(ps_link *l, bool pause);

/* Breaks the link from our side (an abort, a lost peer): our CRIU is made
 * to fail. No callback runs. */
void ps_link_break(ps_link *l);

ps_link_state ps_link_get_state(const ps_link *l);
/* The MAC its frames carry (its binding's). */
ps_mac_alg ps_link_mac(const ps_link *l);
/* BROKEN by the link itself (a socket, a signature, an unanswered
 * request), or by a frame ps_link_feed refused with -EPROTO: what broke
 * it, else "". */
const char *ps_link_why(const ps_link *l);
/* Source: bytes of replies the dump waits for now, as far as its requests
 * could be read (ps-owed.h). */
uint64_t ps_link_replies_owed(const ps_link *l);
/* Source: the dump's requests that wanted a reply so far (0 when its
 * requests could not be read). */
uint64_t ps_link_replies_asked(const ps_link *l);
/* Frames and bytes so far, leaving (sent) and arriving (checked). */
uint64_t ps_link_frames_out(const ps_link *l);
uint64_t ps_link_bytes_out(const ps_link *l);
uint64_t ps_link_frames_in(const ps_link *l);
uint64_t ps_link_bytes_in(const ps_link *l);
/* Source: large frames sent without trying zstd, after frames that did not
 * shrink (PS_ZSTD_SKIP_MAX). */
uint64_t ps_link_frames_untried(const ps_link *l);

/* Closes our end (our CRIU sees EOF once queued bytes are out); callbacks
 * no longer run. Returns NULL. */
ps_link *ps_link_free(ps_link *l);
