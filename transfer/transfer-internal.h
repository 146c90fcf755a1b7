/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Declarations shared by transfer/'s files; not part of the public API. */

#include <libssh2.h>

#include "transfer.h"

/* ssh.c: what a channel connection needs from its session. */
uv_loop_t *xfer__session_loop(xfer_session *s);
/* Records the directions libssh2 blocked on after an EAGAIN, so that the
 * session's poll is re-armed for them. */
void xfer__session_blocked(xfer_session *s);

/* libssh2 keeps one partly sent packet per session, and the call that left
 * it must be repeated before any other call sends anything: otherwise
 * LIBSSH2_ERROR_BAD_USE. Whoever (a connection, or the session itself) got
 * EAGAIN while sending holds the session's send token until that same call
 * returns something else; nobody else may call into libssh2 meanwhile. */
void xfer__session_blocked_by(xfer_session *s, const void *who);
void xfer__session_unblocked(xfer_session *s, const void *who);
bool xfer__session_may_send(const xfer_session *s, const void *who);
bool xfer__session_holds(const xfer_session *s, const void *who);
/* Asks for a step of the session soon (new bytes queued, close requested). */
void xfer__session_kick(xfer_session *s);
/* Takes a finishing channel connection off the session's step list. */
void xfer__session_unlink(xfer_session *s, xfer_conn *c);
/* The connection is freed: a closing session may go on. */
void xfer__session_detach(xfer_session *s, xfer_conn *c);
/* Maps the session's last libssh2 error to -errno with a sentence. */
int xfer__session_error(xfer_session *s, int rc, nm_error *err, const char *what);

/* conn.c: a connection over an SSH channel, stepped by its session. */
int xfer__conn_new_channel(xfer_session *s, LIBSSH2_CHANNEL *ch, const char *remote,
                           const xfer_conn_callbacks *cbs, void *userdata, xfer_conn **ret);
/* Reads, writes and closes as far as possible without blocking. Returns 1
 * when it made progress, 0 when blocked or idle, XFER__CONN_GONE when the
 * connection finished and was freed (its closed callback has run). */
#define XFER__CONN_GONE 2
int xfer__conn_channel_step(xfer_conn *c);
/* Asks a channel connection to end (status < 0), e.g. when its session
 * closes; the next step finishes it. */
void xfer__conn_channel_cancel(xfer_conn *c, int status, const nm_error *err);
uv_loop_t *xfer__conn_loop(xfer_conn *c);
/* The session's list of channel connections. */
xfer_conn *xfer__conn_next(xfer_conn *c);
void xfer__conn_link(xfer_conn *c, xfer_conn **head);
void xfer__conn_unlink(xfer_conn *c, xfer_conn **head);

/* hostkey.c */
/* "SHA256:<base64 without padding>" as OpenSSH prints it. */
int xfer__fingerprint(LIBSSH2_SESSION *ssh, char *buf, size_t size);
/* Checks the server's host key against known_hosts; with accept_new, an
 * unknown host's key is appended. -EPERM (unknown, changed) with the
 * fingerprint in err. */
int xfer__hostkey_check(LIBSSH2_SESSION *ssh, const char *host, uint16_t port, const char *known_hosts,
                        bool accept_new, nm_error *err);

#define _fallthrough_ __attribute__((fallthrough))

/* util */
uint64_t xfer__now_ms(uv_loop_t *loop);

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
