/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A framed connection is a core and a transport. The core (conn.c) owns
 * what every connection has: the queue's accounting and back-pressure, the
 * frame reader, the idle and close timers, the state and the one closed
 * callback. A transport moves the bytes, behind the small table of
 * operations below: conn-stream.c over a uv stream (the control socket,
 * dial-stdio), conn-channel.c over an SSH channel stepped by its session.
 * Only conn*.c include this. */

#include "transfer-internal.h"

typedef enum xfer_conn_state {
        XFER_CONN_OPEN,
        XFER_CONN_CLOSING,   /* status 0: flushing the queue, then EOF; < 0: a channel's goodbye */
        XFER_CONN_FINISHING, /* handles closing; the closed callback is next */
        _XFER_CONN_STATE_MAX,
        _XFER_CONN_STATE_INVALID = -EINVAL,
} xfer_conn_state;

/* What comes from the peer. */
typedef enum xfer_conn_input {
        XFER_CONN_INPUT_READING,
        XFER_CONN_INPUT_PAUSED, /* too much of ours is queued, or the caller holds reading: frames wait in
                                 * the reader */
        XFER_CONN_INPUT_ENDED,  /* the peer ended its side */
        _XFER_CONN_INPUT_MAX,
        _XFER_CONN_INPUT_INVALID = -EINVAL,
} xfer_conn_input;

/* Whether the caller takes frames (xfer_conn_hold_reading). */
typedef enum xfer_conn_taking {
        XFER_CONN_TAKING,
        XFER_CONN_HELD, /* what the caller feeds the frames to is behind */
        _XFER_CONN_TAKING_MAX,
        _XFER_CONN_TAKING_INVALID = -EINVAL,
} xfer_conn_taking;

/* One frame on its way out. A DATA segment carries its header inline and
 * points at the caller's payload (no copy). */
typedef struct xfer_seg xfer_seg;
struct xfer_seg {
        xfer_seg *next; /* a channel's queue */
        xfer_conn *conn;
        uv_write_t req;         /* a stream's write */
        uint8_t *owned;         /* a whole encoded frame, or NULL */
        const uint8_t *payload; /* DATA payload (the caller's), or NULL */
        size_t hdr_len, payload_len, off;
        void (*release)(void *ud);
        void *release_ud;
        uint8_t hdr[PROTO_DATA_HDR_MAX];
};

/* What a transport does for the core. */
typedef struct xfer_conn_ops {
        /* Takes a queued segment (counted already): writes it, or keeps it
         * for its next step. -EPIPE with a sentence when it cannot. */
        int (*write)(xfer_conn *c, xfer_seg *g, nm_error *err);
        /* Takes no more bytes from the peer for now (the queue is full, the
         * caller holds reading, or a frame was refused). */
        void (*read_stop)(xfer_conn *c);
        /* The caller stopped holding reading: take the frames that waited
         * and read on, now or at the transport's next step, unless the
         * queue keeps reading paused. */
        void (*resume)(xfer_conn *c);
        /* The connection is CLOSING with status 0: the queue, then EOF. */
        void (*close)(xfer_conn *c);
        /* The connection fails (its status is set): the queue goes. The
         * transport finishes it, now or after its goodbye. */
        void (*abort)(xfer_conn *c);
        /* The close deadline passed while CLOSING after an error: let go of
         * what is stuck (the connection finishes next). NULL: the deadline
         * fails the connection like any close that takes too long. */
        void (*abandon)(xfer_conn *c);
        /* The connection finishes: drop what is left and close the
         * transport's handles, each with xfer__conn_handle_closed() (and
         * counted in handles_open). */
        void (*finish)(xfer_conn *c);
        /* After the closed callback, before the memory goes. */
        void (*release)(xfer_conn *c);
} xfer_conn_ops;

/* Transports embed this first in their own struct. */
struct xfer_conn {
        const xfer_conn_ops *ops;
        xfer_conn_state state;
        xfer_conn_input input;
        xfer_conn_taking taking;
        uv_loop_t *loop;
        xfer_conn_callbacks cbs;
        void *userdata;

        size_t queued, low_water;
        size_t n_segs;    /* segments queued (each one an allocation) */
        uint64_t written; /* bytes handed on since the start */
        xfer_conn_drain_cb drain_cb;
        void *drain_ud;

        proto_reader *reader;

        uv_timer_t timer; /* idle, then close deadline */
        uint64_t idle_ms, last_activity;
        xfer__idle_check idle_check;
        unsigned handles_open;

        /* A session dial-stdio handed over (xfer_conn_take_relay) and the
         * socket dial-stdio waits on: each ends the other. */
        xfer_conn *lifeline, *session;

        int status;
        nm_error err;
};

/* Allocates size bytes (the transport's struct, xfer_conn first) with the
 * core set up: its timer is handle 1 of handles_open. */
int xfer__conn_new(uv_loop_t *loop, size_t size, const xfer_conn_ops *ops, const xfer_conn_callbacks *cbs,
                   void *userdata, xfer_conn **ret);
/* Frees a connection that never started (the caller keeps its transport):
 * no callback runs. */
void xfer__conn_discard(xfer_conn *c);
/* The close callback of every handle of a connection (h->data = c). */
void xfer__conn_handle_closed(uv_handle_t *h);

/* Closes the handles; the closed callback runs after the last one. */
void xfer__conn_finish(xfer_conn *c);
/* Ends the connection with an error (the first error is kept). */
void xfer__conn_fail(xfer_conn *c, int status, const nm_error *err);
/* Re-arms the idle or close timer. */
void xfer__conn_timer_arm(xfer_conn *c);
/* A deadline of ms for a transport's goodbye. */
void xfer__conn_deadline(xfer_conn *c, uint64_t ms);

/* Queues n bytes that are framed already (a relay of our own frames),
 * without a copy, as xfer_conn_send_data() queues a payload. */
int xfer__conn_send_raw(xfer_conn *c, const void *bytes, size_t n, void (*release)(void *ud), void *release_ud,
                        nm_error *err);

/* n bytes of the queue left; g (may be NULL) is then complete and freed. */
void xfer__conn_written(xfer_conn *c, xfer_seg *g, size_t n);
/* A segment that will never be written, with what was left of it. */
void xfer__conn_dropped(xfer_conn *c, xfer_seg *g);
/* Reading may go on after a pause: the queue shrank enough, and the caller
 * does not hold it. */
bool xfer__conn_queue_drained(const xfer_conn *c);

/* Decodes and hands out every complete frame in the reader, until the
 * queue is full (input PAUSED). < 0 after refusing a frame. */
int xfer__conn_deliver(xfer_conn *c);
/* n bytes were read into the reader's buffer: hands out the frames they
 * complete. < 0 when the connection refused them (it is failing). */
int xfer__conn_received(xfer_conn *c, size_t n);
/* Reading was paused: hands out the frames that waited. 1 when reading may
 * go on, 0 when paused again or no longer open, < 0 when refused. */
int xfer__conn_resume(xfer_conn *c);
/* The peer ended its side: at a frame boundary a clean end. */
void xfer__conn_peer_ended(xfer_conn *c);
