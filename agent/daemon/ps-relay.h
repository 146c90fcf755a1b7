/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One end of a socketpair whose other end a CRIU process (a lazy dump's
 * page server, or the lazy-pages daemon) talks its page-server protocol
 * on: the agent relays those bytes, unchanged, as PS_DATA over the peer
 * session (post-copy without any other port between the nodes). */

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct ps_relay ps_relay;

typedef struct ps_relay_ops {
        /* Bytes CRIU wrote (valid during the call only). */
        void (*data)(ps_relay *r, const void *buf, size_t n, void *ud);
        /* CRIU closed its end (0) or the socket failed (< 0); runs once. */
        void (*closed)(ps_relay *r, int status, void *ud);
        /* Optional: the bytes queued for CRIU were above PS_RELAY_HIGH and
         * are down to PS_RELAY_LOW again. */
        void (*drained)(ps_relay *r, void *ud);
} ps_relay_ops;

/* Bytes queued for CRIU above which the caller should stop feeding the
 * relay (ps_relay_full), and where it may start again (drained). Without
 * that, a peer faster than CRIU grows the queue as far as it likes. */
#define PS_RELAY_HIGH (2u * 1024u * 1024u)
#define PS_RELAY_LOW (512u * 1024u)

/* Makes the socketpair; *ret_criu_fd is CRIU's end, close-on-exec like
 * every descriptor of ours (ckpt hands it to exactly the CRIU it is for:
 * a keeper's call_keep_fd, or uv_spawn's stdio), the caller's to hand over
 * and close. */
int ps_relay_new(uv_loop_t *loop, const ps_relay_ops *ops, void *ud, int *ret_criu_fd, ps_relay **ret);

/* Queues bytes for CRIU (copied). */
int ps_relay_write(ps_relay *r, const void *buf, size_t n);

/* More than PS_RELAY_HIGH bytes wait for CRIU. */
bool ps_relay_full(const ps_relay *r);

/* Stops or resumes reading from CRIU (back-pressure). */
void ps_relay_pause(ps_relay *r, bool pause);

/* Makes CRIU's page server fail rather than see a clean end: a lazy dump
 * whose transfer fails lets the tasks run again, while an orderly close
 * (EOF) counts as success and ends them. CRIU then reads a short command
 * and EOF, and its writes fail (EPIPE), blocked ones too. */
void ps_relay_poison(ps_relay *r);

/* Closes our end (CRIU sees EOF once queued bytes are out); ops no longer
 * run. Returns NULL. */
ps_relay *ps_relay_free(ps_relay *r);
