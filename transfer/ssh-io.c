/* SPDX-License-Identifier: Apache-2.0 */
/* What an SSH session's channels share: the send token, the directions
 * libssh2 blocked on, the kick that asks the session for a step, and the
 * mapping of libssh2's errors (transfer-internal.h). Below both the session
 * and its channels, so that neither calls up into the other. */
#include <assert.h>
#include <errno.h>

#include "macro.h"
#include "transfer-internal.h"

void xfer__ssh_blocked(xfer_ssh_io *io) {
        io->blocked |= libssh2_session_block_directions(io->ssh);
}

void xfer__ssh_blocked_by(xfer_ssh_io *io, const void *who) {
        int dirs = libssh2_session_block_directions(io->ssh);

        io->blocked |= dirs;
        if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
                io->send_owner = who;
        else if (io->send_owner == who)
                io->send_owner = NULL; /* waiting to read only: nothing half sent */
}

void xfer__ssh_unblocked(xfer_ssh_io *io, const void *who) {
        if (io->send_owner == who)
                io->send_owner = NULL;
}

bool xfer__ssh_may_send(const xfer_ssh_io *io, const void *who) {
        return !io->send_owner || io->send_owner == who;
}

bool xfer__ssh_holds(const xfer_ssh_io *io, const void *who) {
        return io->send_owner == who;
}

void xfer__ssh_kick(xfer_ssh_io *io) {
        if (!uv_is_active((uv_handle_t *)&io->kick))
                (void)uv_timer_start(&io->kick, io->step, 0, 0);
}

void xfer__ssh_detach(xfer_ssh_io *io, const void *who) {
        /* A connection that ended with a half-sent packet (its link is
         * gone) no longer blocks the others; a later call may then fail with
         * BAD_USE, which ends that call like any other error. */
        xfer__ssh_unblocked(io, who);
        assert(io->channels_alive > 0);
        io->channels_alive--;
        /* A closing session waits for this; an open one finds nothing new. */
        xfer__ssh_kick(io);
}

int xfer__ssh_error(xfer_ssh_io *io, int rc, nm_error *err, const char *what) {
        char *msg = NULL;
        int code;

        (void)libssh2_session_last_error(io->ssh, &msg, NULL, 0);
        switch (rc) {
        case LIBSSH2_ERROR_SOCKET_SEND:
        case LIBSSH2_ERROR_SOCKET_RECV:
        case LIBSSH2_ERROR_SOCKET_DISCONNECT:
        case LIBSSH2_ERROR_SOCKET_NONE:
                code = -ECONNRESET;
                io->lost(io);
                return nm_error_set(err, code, "%s: the SSH connection to %s was lost (%s)", what, io->host,
                                    strna(msg));
        case LIBSSH2_ERROR_SOCKET_TIMEOUT:
        case LIBSSH2_ERROR_TIMEOUT: code = -ETIMEDOUT; break;
        case LIBSSH2_ERROR_ALLOC: code = -ENOMEM; break;
        case LIBSSH2_ERROR_CHANNEL_CLOSED:
        case LIBSSH2_ERROR_CHANNEL_EOF_SENT: code = -EPIPE; break;
        default: code = -EPROTO; break;
        }
        return nm_error_set(err, code, "%s: SSH error with %s: %s (libssh2 %d)", what, io->host, strna(msg),
                            rc);
}
