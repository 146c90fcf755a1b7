/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The MAC of a page stream: the bytes a dump sends its page server through
 * the peer session while CRIU runs. Each frame's tag is computed with the
 * shared key over the stream's binding (the migration's id and whatever
 * else the caller binds it to), the frame's number, its kind and its bytes;
 * the end frame carries no bytes and counts the frames and bytes before it.
 * Two algorithms (ps_mac_alg), which the two ends agree on beforehand.
 * A compressed frame (ps_mac_sign_z) is tagged as it travels: its kind, its
 * number, the length it decompresses to and its compressed bytes, so that
 * the receiver checks it before a decompressor sees it, and hashes each
 * byte of the wire once; its length counts in the stream's bytes.
 * The receiver checks a frame before its bytes go anywhere: a flipped,
 * dropped, repeated or reordered frame, one of another migration, or a
 * stream cut before its end fails, and so does every frame after. */

#include <stddef.h>
#include <stdint.h>

#define PS_MAC_LEN 32u
#define PS_MAC_PARTS_MAX 8u

typedef enum ps_mac_state {
        PS_MAC_OPEN,   /* frames may follow */
        PS_MAC_ENDED,  /* the end frame was made or checked: nothing may follow */
        PS_MAC_BROKEN, /* a check failed: nothing is believed any more */
} ps_mac_state;

typedef enum ps_mac_alg {
        /* HMAC-SHA256 over the binding, the frame's number, kind, length and bytes. */
        PS_MAC_HMAC_SHA256,
        /* Poly1305, about seven times cheaper per byte here: the stream's own
         * key is HMAC-SHA256 of the shared key over the binding; each frame's
         * tag is ChaCha20-Poly1305's over its kind, number, length and bytes
         * as associated data, with nothing encrypted and the frame's number
         * as the nonce. A stream's key is used for one stream only (its
         * binding names the migration, whose id is never reused), and no
         * number twice within it, so no nonce repeats under a key. The tag's
         * 16 bytes are followed by 16 zero bytes on the wire, checked too. */
        PS_MAC_POLY1305,
        _PS_MAC_ALG_MAX,
} ps_mac_alg;

typedef struct ps_mac ps_mac;

/* parts: the binding (e.g. the migration id, the two node names), each
 * non-NULL; n_parts <= PS_MAC_PARTS_MAX. */
int ps_mac_new(const void *key, size_t key_len, ps_mac_alg alg, const char *const *parts, size_t n_parts,
               ps_mac **ret);
ps_mac *ps_mac_free(ps_mac *m);

/* The sender: the tag of the next data frame (n >= 1), or of the end. */
int ps_mac_sign(ps_mac *m, const void *buf, size_t n, uint8_t ret_tag[static PS_MAC_LEN]);
int ps_mac_sign_end(ps_mac *m, uint8_t ret_tag[static PS_MAC_LEN]);
/* The tag of the next frame sent compressed: zbuf[0..zn) decompresses to
 * exactly raw_len bytes (which the receiver must then enforce). */
int ps_mac_sign_z(ps_mac *m, size_t raw_len, const void *zbuf, size_t zn,
                  uint8_t ret_tag[static PS_MAC_LEN]);

/* The receiver: 0 when tag is the next data frame's (or the end's), else
 * -EBADMSG (and the stream is broken for good); -EPIPE once ended or broken. */
int ps_mac_check(ps_mac *m, const void *buf, size_t n, const uint8_t tag[static PS_MAC_LEN]);
int ps_mac_check_end(ps_mac *m, const uint8_t tag[static PS_MAC_LEN]);
int ps_mac_check_z(ps_mac *m, size_t raw_len, const void *zbuf, size_t zn,
                   const uint8_t tag[static PS_MAC_LEN]);

ps_mac_state ps_mac_get_state(const ps_mac *m);
/* "HMAC-SHA256" or "Poly1305", for logs. */
const char *ps_mac_alg_name(ps_mac_alg alg);
ps_mac_alg ps_mac_get_alg(const ps_mac *m);
/* Data frames and bytes so far. */
uint64_t ps_mac_frames(const ps_mac *m);
uint64_t ps_mac_bytes(const ps_mac *m);
