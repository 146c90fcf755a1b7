/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Declarations shared by transfer/'s files; not part of the public API. */

#include <errno.h>

#include <libssh2.h>

#include "transfer.h"

/* ---- ssh-io.c: what an SSH session's channels share -------------------------
 *
 * The session (ssh.c) owns one and steps its channels; the channels
 * (conn-channel.c) use it, and never call the session itself: the kick
 * timer runs the session's step, and a lost connection is reported through
 * the `lost` callback.
 *
 * libssh2 keeps one partly sent packet per session, and the call that left
 * it must be repeated before any other call sends anything: otherwise
 * LIBSSH2_ERROR_BAD_USE. Whoever (a channel, or the session itself) got
 * EAGAIN while sending holds the session's send token until that same call
 * returns something else; nobody else may call into libssh2 meanwhile. */

typedef struct xfer_channel xfer_channel;
typedef struct xfer_ssh_io xfer_ssh_io;

struct xfer_ssh_io {
        uv_loop_t *loop;
        LIBSSH2_SESSION *ssh;
        const char *host;       /* the session's, for messages */
        int blocked;            /* LIBSSH2_SESSION_BLOCK_* seen during this step */
        const void *send_owner; /* holds the send token, or NULL */
        uv_timer_t kick;        /* zero-delay: the session's step, soon */
        uv_timer_cb step;       /* what the kick runs */
        /* A socket error: the SSH connection is gone. */
        void (*lost)(xfer_ssh_io *io);
        xfer_channel *channels;  /* the open channel connections (conn-channel.c) */
        unsigned channels_alive; /* those, and the unlinked ones not yet freed */
};

/* Records the directions libssh2 blocked on after an EAGAIN, so that the
 * session's poll is re-armed for them. */
void xfer__ssh_blocked(xfer_ssh_io *io);
/* The same, and who now holds the send token (if libssh2 waits to send). */
void xfer__ssh_blocked_by(xfer_ssh_io *io, const void *who);
void xfer__ssh_unblocked(xfer_ssh_io *io, const void *who);
bool xfer__ssh_may_send(const xfer_ssh_io *io, const void *who);
bool xfer__ssh_holds(const xfer_ssh_io *io, const void *who);
/* Asks for a step of the session soon (new bytes queued, close requested). */
void xfer__ssh_kick(xfer_ssh_io *io);
/* A channel connection was freed: it holds nothing any more, and a closing
 * session may go on. */
void xfer__ssh_detach(xfer_ssh_io *io, const void *who);
/* Maps the session's last libssh2 error to -errno with a sentence. */
int xfer__ssh_error(xfer_ssh_io *io, int rc, nm_error *err, const char *what);

/* ---- the two ways an xfer_session runs ------------------------------------
 *
 * ssh-session.c holds the public xfer_session_*() functions and hands each
 * call to one of these, as the session's options chose. Both take their
 * arguments as checked, and give their callbacks the handle `outer`. */

/* ssh.c: on the caller's loop. */
typedef struct xfer__ssh_loop xfer__ssh_loop;

/* outer may be NULL: the thread's own session has no public handle. */
int xfer__ssh_loop_new(uv_loop_t *loop, const xfer_ssh_options *o, xfer_session *outer,
                       xfer__ssh_loop **ret);
int xfer__ssh_loop_connect(xfer__ssh_loop *l, xfer_session_connect_cb cb, void *userdata);
int xfer__ssh_loop_exec(xfer__ssh_loop *l, const char *command, const xfer_conn_callbacks *cbs,
                        void *conn_userdata, xfer_session_exec_cb cb, void *userdata);
/* Calls cb, then frees l. */
void xfer__ssh_loop_close(xfer__ssh_loop *l, xfer_session_close_cb cb, void *userdata);
const char *xfer__ssh_loop_fingerprint(const xfer__ssh_loop *l);

/* ssh-thread.c: on a thread of its own, running an xfer__ssh_loop there. */
typedef struct xfer__ssh_thread xfer__ssh_thread;

int xfer__ssh_thread_new(uv_loop_t *loop, const xfer_ssh_options *o, xfer_session *outer, nm_error *err,
                         xfer__ssh_thread **ret);
int xfer__ssh_thread_connect(xfer__ssh_thread *t, xfer_session_connect_cb cb, void *userdata);
int xfer__ssh_thread_exec(xfer__ssh_thread *t, const char *command, const xfer_conn_callbacks *cbs,
                          void *conn_userdata, xfer_session_exec_cb cb, void *userdata);
/* Calls cb, then frees t. */
void xfer__ssh_thread_close(xfer__ssh_thread *t, xfer_session_close_cb cb, void *userdata);
const char *xfer__ssh_thread_fingerprint(const xfer__ssh_thread *t);

/* ---- conn-channel.c: a connection over an SSH channel ---------------------- */

/* Wraps a started exec channel and links it into io->channels. */
int xfer__channel_new(xfer_ssh_io *io, LIBSSH2_CHANNEL *ch, const char *remote,
                      const xfer_conn_callbacks *cbs, void *userdata, xfer_conn **ret);
/* Steps every channel once: reads, writes and closes as far as possible
 * without blocking. true when any made progress. */
bool xfer__channels_step(xfer_ssh_io *io);
/* Asks every channel to end (status < 0), e.g. when the session closes;
 * the next step finishes them. */
void xfer__channels_cancel(xfer_ssh_io *io, int status);

/* ---- recv-write.c: the receiver's writes, off the loop ---------------------- */

typedef struct xfer_writer xfer_writer;

typedef enum xfer_wdir {
        XFER_WDIR_TOP,    /* the staging directory itself */
        XFER_WDIR_IMAGES, /* its images/ */
        _XFER_WDIR_MAX,
        _XFER_WDIR_INVALID = -EINVAL,
} xfer_wdir;

typedef struct xfer_writer_callbacks {
        /* A file is written, named and sealed: fd is the callee's. */
        void (*sealed)(int fd, void *userdata);
        /* A batch ended: status < 0 (err says what) when a step failed or
         * the writer was cancelled; nothing more is written then. */
        void (*batch_done)(int status, const nm_error *err, void *userdata);
} xfer_writer_callbacks;

/* The writer keeps its own copies of the two directories' descriptors.
 * gate, after: a test's stalled file system (xfer_recv_options), or NULL. */
int xfer__writer_new(uv_loop_t *loop, int top_fd, int images_fd, const char *gate, xfer_gate_after after,
                     const xfer_writer_callbacks *cbs, void *userdata, xfer_writer **ret);
/* Only while no batch runs (xfer__writer_busy() false). */
xfer_writer *xfer__writer_free(xfer_writer *w);
/* The steps, run in this order: create the file path (whose last component
 * is name) in dir without a name; write bytes; name it and seal it
 * immutable. < 0: the writer has failed. Bytes are written where
 * xfer__writer_space() says (room for len <= PROTO_DATA_MAX bytes, or NULL
 * without memory), and queued by xfer__writer_commit(len) before any other
 * call; space that is not committed is given out again. */
int xfer__writer_open(xfer_writer *w, xfer_wdir dir, const char *path, const char *name);
uint8_t *xfer__writer_space(xfer_writer *w, size_t len);
int xfer__writer_commit(xfer_writer *w, size_t len);
int xfer__writer_seal(xfer_writer *w);
/* At least this many bytes or steps wait or run. */
bool xfer__writer_above(const xfer_writer *w, size_t bytes, size_t ops);
/* A batch is the thread's: the staging directory must not be removed. */
bool xfer__writer_busy(const xfer_writer *w);
/* Drops the waiting steps and stops a running batch at its next step. */
void xfer__writer_cancel(xfer_writer *w);

/* ---- conn.c ---------------------------------------------------------------- */

uv_loop_t *xfer__conn_loop(xfer_conn *c);

/* ---- hostkey.c ----------------------------------------------------------------- */

/* "SHA256:<base64 without padding>" as OpenSSH prints it. */
int xfer__fingerprint(LIBSSH2_SESSION *ssh, char *buf, size_t size);
/* Checks the server's host key against known_hosts; with accept_new, an
 * unknown host's key is appended. -EPERM (unknown, changed) with the
 * fingerprint in err. */
int xfer__hostkey_check(LIBSSH2_SESSION *ssh, const char *host, uint16_t port, const char *known_hosts,
                        bool accept_new, nm_error *err);

#define _fallthrough_ __attribute__((fallthrough))

/* The loop's clock brought up to date, in ms. */
static inline uint64_t xfer__now_ms(uv_loop_t *loop) {
        uv_update_time(loop);
        return uv_now(loop);
}

/* An idle timer that finds its window elapsed does not judge at once: the
 * clock also runs while the loop is busy with other work or the process is
 * not scheduled, and what the peer sent or read meanwhile is still waiting
 * for the loop to look. The verdict waits for one more pass of the loop
 * through its I/O (XFER__IDLE_LOOK_MS puts one poll in between). */
typedef enum xfer__idle_check {
        XFER__IDLE_WATCHING, /* the window has not elapsed since the last activity */
        XFER__IDLE_LOOKING,  /* it has: idle only if the next look finds nothing */
        _XFER__IDLE_CHECK_MAX,
        _XFER__IDLE_CHECK_INVALID = -EINVAL,
} xfer__idle_check;
#define XFER__IDLE_LOOK_MS 1
