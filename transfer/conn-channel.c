/* SPDX-License-Identifier: Apache-2.0 */
/* The SSH channel transport of a framed connection. Its session steps it
 * (xfer__channels_step): the queue head goes out with
 * libssh2_channel_write(), which takes at most one SSH packet per call and
 * must be called again with the same bytes after EAGAIN; incoming bytes are
 * read straight into the frame reader's buffer; a close is EOF, the peer's
 * EOF, close, wait, free, one non-blocking call per step. Only the session's
 * shared part (xfer_ssh_io) is used here, never the session itself. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "conn-internal.h"
#include "list.h"
#include "macro.h"

/* Bytes read from one channel per step before writes get their turn, and
 * written per step before the session's other channels get theirs. */
#define XFER_READ_BUDGET (1024u * 1024u)
#define XFER_WRITE_BUDGET (256u * 1024u)
/* An aborted channel gets this long to send its close before it is left to
 * the session. */
#define XFER_CONN_ABORT_TIMEOUT_MS 2000

/* Closing steps of a channel. */
typedef enum xfer_chan_close {
        XFER_CHAN_SEND_EOF,
        XFER_CHAN_WAIT_EOF,
        XFER_CHAN_CLOSE,
        XFER_CHAN_WAIT_CLOSED,
        XFER_CHAN_NOTE_EXIT, /* what the remote command said becomes part of the status */
        XFER_CHAN_FREE,
        XFER_CHAN_FREED,
        _XFER_CHAN_CLOSE_MAX,
        _XFER_CHAN_CLOSE_INVALID = -EINVAL,
} xfer_chan_close;

/* What the queue's last write waited for. */
typedef enum xfer_chan_write_wait {
        XFER_CHAN_WRITE_WAITS_NOT,
        XFER_CHAN_WRITE_WAITS_SOCKET, /* the TCP connection took no more */
        XFER_CHAN_WRITE_WAITS_WINDOW, /* the peer's channel window was shut */
        _XFER_CHAN_WRITE_WAIT_MAX,
        _XFER_CHAN_WRITE_WAIT_INVALID = -EINVAL,
} xfer_chan_write_wait;

/* The libssh2 calls of a channel that may leave a packet half sent. */
typedef enum xfer_chan_op {
        XFER_CHAN_OP_WRITE,
        XFER_CHAN_OP_READ, /* a read may send a window adjust */
        XFER_CHAN_OP_CLOSE,
        _XFER_CHAN_OP_MAX,
        _XFER_CHAN_OP_INVALID = -EINVAL,
} xfer_chan_op;

struct xfer_channel {
        xfer_conn conn; /* first: the core */
        xfer_ssh_io *io;
        LIBSSH2_CHANNEL *ch;
        LIST_FIELDS(xfer_channel, channels);
        xfer_seg *head, *tail; /* queued, not yet written (FIFO) */
        xfer_chan_close close_step;
        int exit_status;       /* -1 until the peer reported the command's end */
        char exit_signal[32];  /* the signal that ended it, or "" */
        char *remote;          /* "'<command>' on <host>", for messages */
        char stderr_tail[512]; /* the last words of the remote command */
        size_t stderr_len;
        char line[XFER_REMARK_MAX + 1]; /* the stderr line being read, for remark() */
        size_t line_len;
        unsigned remarks;        /* lines passed to remark() */
        xfer_chan_op pending_op; /* the call to repeat while holding the send token */
        xfer_chan_write_wait write_wait;
};

static xfer_channel *channel_of(xfer_conn *c) {
        return container_of(c, xfer_channel, conn);
}

static void drop_queue(xfer_channel *h) {
        while (h->head) {
                xfer_seg *g = h->head;
                h->head = g->next;
                xfer__conn_dropped(&h->conn, g);
        }
        h->tail = NULL;
}

/* ---- the transport's operations -------------------------------------------- */

static int channel_write_op(xfer_conn *c, xfer_seg *g, nm_error *err) {
        xfer_channel *h = channel_of(c);
        (void)err;

        g->next = NULL;
        if (h->tail)
                h->tail->next = g;
        else
                h->head = g;
        h->tail = g;
        xfer__ssh_kick(h->io);
        return 0;
}

static void channel_read_stop(xfer_conn *c) {
        /* Not reading leaves the channel window shut: the peer waits. */
        (void)c;
}

/* The session's next step reads the channel again (chan_read). */
static void channel_resume(xfer_conn *c) {
        xfer__ssh_kick(channel_of(c)->io);
}

static void channel_close(xfer_conn *c) {
        xfer_channel *h = channel_of(c);

        h->close_step = XFER_CHAN_SEND_EOF;
        xfer__ssh_kick(h->io);
}

/* The session's step says goodbye to the channel (bounded by the session)
 * and then finishes the connection. */
static void channel_abort(xfer_conn *c) {
        xfer_channel *h = channel_of(c);

        c->state = XFER_CONN_CLOSING;
        h->close_step = XFER_CHAN_CLOSE;
        if (xfer__ssh_holds(h->io, h) && h->pending_op == XFER_CHAN_OP_WRITE && h->head) {
                /* libssh2 must finish the packet it started before it sends
                 * our close: keep that segment alone. */
                xfer_seg *g = h->head;
                h->head = g->next;
                drop_queue(h);
                g->next = NULL;
                h->head = h->tail = g;
        } else
                drop_queue(h);
        xfer__conn_deadline(c, XFER_CONN_ABORT_TIMEOUT_MS);
        xfer__ssh_kick(h->io);
}

static void channel_abandon(xfer_conn *c) {
        /* The goodbye is stuck: the channel is left to
         * libssh2_session_free(). */
        channel_of(c)->ch = NULL;
}

static void channel_finish(xfer_conn *c) {
        xfer_channel *h = channel_of(c);

        drop_queue(h);
        /* Unlinked now, so the session's step no longer sees it; the session
         * waits for the detach in channel_release. */
        LIST_REMOVE(channels, h->io->channels, h);
}

static void channel_release(xfer_conn *c) {
        xfer_channel *h = channel_of(c);

        xfer__ssh_detach(h->io, h);
        free(h->remote);
}

/* ---- I/O ---------------------------------------------------------------------- */

static int chan_error(xfer_channel *h, int rc, const char *what) {
        nm_error e = {};
        int r = xfer__ssh_error(h->io, rc, &e, what);
        xfer__conn_fail(&h->conn, r, &e);
        return r;
}

static void chan_blocked(xfer_channel *h, xfer_chan_op op) {
        xfer__ssh_blocked_by(h->io, h);
        if (xfer__ssh_holds(h->io, h))
                h->pending_op = op;
}

/* Keeps the last bytes of the remote command's stderr. */
static void stderr_keep(xfer_channel *h, const char *buf, size_t k) {
        size_t cap = sizeof(h->stderr_tail) - 1;

        if (k >= cap) {
                memcpy(h->stderr_tail, buf + k - cap, cap);
                h->stderr_len = cap;
        } else {
                if (h->stderr_len + k > cap) {
                        size_t drop = h->stderr_len + k - cap;
                        memmove(h->stderr_tail, h->stderr_tail + drop, h->stderr_len - drop);
                        h->stderr_len -= drop;
                }
                memcpy(h->stderr_tail + h->stderr_len, buf, k);
                h->stderr_len += k;
        }
        h->stderr_tail[h->stderr_len] = '\0';
}

/* A line the remote command wrote, passed on while it runs (a warning of
 * the peer's relay would otherwise show only if the connection failed). The
 * peer may be hostile: what reaches the log is printable, a line is cut at
 * XFER_REMARK_MAX bytes, and a channel passes on XFER_REMARKS_MAX lines. */
static void remark_flush(xfer_channel *h) {
        xfer_conn *c = &h->conn;
        size_t len = h->line_len;

        h->line_len = 0;
        if (len == 0 || !c->cbs.remark)
                return;
        h->line[len] = '\0';
        if (h->remarks < XFER_REMARKS_MAX)
                c->cbs.remark(c, h->line, c->userdata);
        else if (h->remarks == XFER_REMARKS_MAX)
                c->cbs.remark(c, "(further lines not shown)", c->userdata);
        h->remarks++;
}

static void remark_feed(xfer_channel *h, const char *buf, size_t k) {
        for (size_t i = 0; i < k; i++) {
                unsigned char ch = (unsigned char)buf[i];

                if (ch == '\n') {
                        remark_flush(h);
                        continue;
                }
                if (h->line_len == XFER_REMARK_MAX)
                        continue; /* the rest of a long line is dropped */
                if (ch >= 0x20 && ch < 0x7f)
                        h->line[h->line_len++] = buf[i];
                else
                        h->line[h->line_len++] = '?';
        }
}

/* The remote command's stderr is read as it comes (unread, it would eat
 * the channel window): its lines are passed on and its tail kept for error
 * messages. */
static int chan_read_stderr(xfer_channel *h) {
        char buf[1024];

        for (;;) {
                ssize_t n = libssh2_channel_read_stderr(h->ch, buf, sizeof(buf));
                if (n == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(h, XFER_CHAN_OP_READ);
                        /* A window adjust half sent must be finished first. */
                        return xfer__ssh_holds(h->io, h) ? 0 : 1;
                }
                xfer__ssh_unblocked(h->io, h);
                if (n <= 0)
                        return 1; /* EOF, or an error the stdout read reports */
                stderr_keep(h, buf, (size_t)n);
                remark_feed(h, buf, (size_t)n);
        }
}

/* The remote command's end as the peer reported it. A command killed by a
 * signal has no exit status (libssh2 says 0), only the signal's name, which
 * comes from the peer: kept to the characters a signal name has. */
static void chan_take_exit(xfer_channel *h) {
        char *sig = NULL;
        size_t len = 0, i, n = 0;

        h->exit_status = libssh2_channel_get_exit_status(h->ch);
        if (libssh2_channel_get_exit_signal(h->ch, &sig, &len, NULL, NULL, NULL, NULL) < 0 || !sig)
                return;
        for (i = 0; i < len && n + 1 < sizeof(h->exit_signal); i++)
                if (isalnum((unsigned char)sig[i]) || sig[i] == '_' || sig[i] == '-')
                        h->exit_signal[n++] = sig[i];
        h->exit_signal[n] = '\0';
        if (n == 0)
                snprintf(h->exit_signal, sizeof(h->exit_signal), "?");
        libssh2_free(h->io->ssh, sig);
}

static bool chan_exit_failed(const xfer_channel *h) {
        return h->exit_status > 0 || h->exit_signal[0];
}

/* "exited with status 9", "was killed by signal KILL" */
static const char *chan_exit_words(const xfer_channel *h, char *buf, size_t size) {
        if (h->exit_signal[0])
                snprintf(buf, size, "was killed by signal %s", h->exit_signal);
        else
                snprintf(buf, size, "exited with status %d", h->exit_status);
        return buf;
}

/* A remote command that failed makes the end of its connection an error,
 * with what it said on stderr. */
static void chan_note_exit(xfer_channel *h) {
        xfer_conn *c = &h->conn;
        char said[sizeof(h->stderr_tail)], how[64];
        size_t len;

        (void)chan_read_stderr(h);
        remark_flush(h); /* a last line without its newline */
        if (h->exit_status < 0 && libssh2_channel_eof(h->ch) == 1)
                chan_take_exit(h);
        snprintf(said, sizeof(said), "%s", h->stderr_tail);
        for (len = strlen(said); len > 0 && (said[len - 1] == '\n' || said[len - 1] == ' '); len--)
                said[len - 1] = '\0';
        if (chan_exit_failed(h) && c->status == 0) {
                c->status = -ECONNABORTED;
                nm_error_set(&c->err, -ECONNABORTED, "%s %s%s%s", strna(h->remote),
                             chan_exit_words(h, how, sizeof(how)), said[0] ? ": " : "", said);
        } else if (c->status < 0 && chan_exit_failed(h)) {
                len = strlen(c->err.msg);
                snprintf(c->err.msg + len, sizeof(c->err.msg) - len, " (%s %s%s%s)", strna(h->remote),
                         chan_exit_words(h, how, sizeof(how)), said[0] ? ": " : "", said);
        } else if (c->status < 0 && said[0]) {
                len = strlen(c->err.msg);
                snprintf(c->err.msg + len, sizeof(c->err.msg) - len, " (%s said: %s)", strna(h->remote),
                         said);
        }
}

/* Returns 1 on progress, 0 when blocked, < 0 after failing the conn. */
static int chan_write(xfer_channel *h) {
        size_t budget = XFER_WRITE_BUDGET;
        int progress = 0;

        while (h->head && budget > 0) {
                xfer_seg *g = h->head, *done = NULL;
                const uint8_t *p;
                size_t left;
                ssize_t n;

                if (g->off < g->hdr_len) {
                        p = (g->owned ? g->owned : g->hdr) + g->off;
                        left = g->hdr_len - g->off;
                } else {
                        p = g->payload + (g->off - g->hdr_len);
                        left = g->payload_len - (g->off - g->hdr_len);
                }
                n = libssh2_channel_write(h->ch, (const char *)p, left);
                if (n == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(h, XFER_CHAN_OP_WRITE);
                        h->write_wait = libssh2_channel_window_write(h->ch) == 0 ? XFER_CHAN_WRITE_WAITS_WINDOW
                                                                                 : XFER_CHAN_WRITE_WAITS_SOCKET;
                        return progress;
                }
                h->write_wait = XFER_CHAN_WRITE_WAITS_NOT;
                xfer__ssh_unblocked(h->io, h);
                if (n < 0)
                        return chan_error(h, (int)n, "sending to the peer");
                g->off += (size_t)n;
                budget -= (size_t)n < budget ? (size_t)n : budget;
                progress = 1;
                if (g->off == g->hdr_len + g->payload_len) {
                        h->head = g->next;
                        if (!h->head)
                                h->tail = NULL;
                        done = g;
                }
                xfer__conn_written(&h->conn, done, (size_t)n);
                if (h->conn.state == XFER_CONN_FINISHING)
                        return 1;
        }
        return progress;
}

/* A caller that holds reading still hears at once that the remote command
 * failed, as it does from a session on a thread of its own: the frames wait,
 * but the SSH packets after them are taken in (a read of no bytes takes no
 * data), and once the peer has ended with nothing left unread and closed
 * the channel, a non-zero exit status or a killing signal ends the
 * connection now (its goodbye makes that end and the command's last words
 * the error). A clean end
 * waits for the caller to take the frames before it. Returns 1 on
 * progress, 0 when waiting, < 0 after failing the conn. */
static int chan_watch_end(xfer_channel *h) {
        char none;
        int rc;

        if (h->exit_status < 0) {
                rc = (int)libssh2_channel_read(h->ch, &none, 0);
                if (rc == 0 && libssh2_channel_eof(h->ch) == 1)
                        rc = libssh2_channel_wait_closed(h->ch);
                else if (rc == 0)
                        rc = LIBSSH2_ERROR_EAGAIN; /* data the caller has yet to take, or none yet */
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(h, XFER_CHAN_OP_READ);
                        return 0;
                }
                xfer__ssh_unblocked(h->io, h);
                if (rc < 0)
                        return chan_error(h, rc, "receiving from the peer");
                chan_take_exit(h);
        }
        if (!chan_exit_failed(h))
                return 0;
        xfer_conn_close(&h->conn, 0, NULL);
        return 1;
}

/* Reads what the peer sent, or (discard) reads and drops it while closing.
 * Returns 1 on progress, 0 when blocked, < 0 after failing the conn. */
static int chan_read(xfer_channel *h, bool discard) {
        xfer_conn *c = &h->conn;
        size_t budget = XFER_READ_BUDGET;
        int progress = 0, r;

        if (chan_read_stderr(h) == 0)
                return 0;
        if (!discard && c->input == XFER_CONN_INPUT_PAUSED) {
                /* Not reading leaves the channel window shut: the peer waits. */
                if (c->taking == XFER_CONN_HELD)
                        return chan_watch_end(h);
                if (!xfer__conn_queue_drained(c))
                        return 0;
                r = xfer__conn_resume(c);
                if (r < 0)
                        return -EBADMSG;
                if (r == 0)
                        return 1;
                progress = 1;
        }
        while (budget > 0 && c->state != XFER_CONN_FINISHING) {
                uint8_t sink[16384];
                uint8_t *p;
                size_t n;
                ssize_t rc;
                nm_error e = {};

                if (discard) {
                        p = sink;
                        n = sizeof(sink);
                } else if (proto_reader_get_buffer(c->reader, &p, &n, &e) < 0) {
                        xfer__conn_fail(c, -EPROTO, &e);
                        return -EPROTO;
                }
                rc = libssh2_channel_read(h->ch, (char *)p, n);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(h, XFER_CHAN_OP_READ);
                        return progress;
                }
                xfer__ssh_unblocked(h->io, h);
                if (rc < 0)
                        return chan_error(h, (int)rc, "receiving from the peer");
                if (rc == 0) {
                        if (libssh2_channel_eof(h->ch)) {
                                if (c->input != XFER_CONN_INPUT_ENDED && !discard)
                                        xfer__conn_peer_ended(c);
                                c->input = XFER_CONN_INPUT_ENDED;
                                return 1;
                        }
                        return progress;
                }
                progress = 1;
                budget -= (size_t)rc < budget ? (size_t)rc : budget;
                if (discard)
                        continue;
                if (xfer__conn_received(c, (size_t)rc) < 0)
                        return -EBADMSG;
                if (c->state != XFER_CONN_OPEN || c->input == XFER_CONN_INPUT_PAUSED)
                        return 1;
        }
        return progress;
}

/* One step of a channel's goodbye. Returns 1 on progress, 0 when blocked. */
static int chan_close_step(xfer_channel *h) {
        xfer_conn *c = &h->conn;
        int rc;

        switch (h->close_step) {
        case XFER_CHAN_SEND_EOF:
                if (h->head)
                        return chan_write(h);
                rc = libssh2_channel_send_eof(h->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(h, XFER_CHAN_OP_CLOSE);
                        return 0;
                }
                xfer__ssh_unblocked(h->io, h);
                if (rc < 0)
                        return chan_error(h, rc, "closing the channel");
                h->close_step = XFER_CHAN_WAIT_EOF;
                return 1;
        case XFER_CHAN_WAIT_EOF:
                /* The remote command answers our EOF with its own, after its
                 * last output, and then exits. */
                if (c->input != XFER_CONN_INPUT_ENDED) {
                        rc = chan_read(h, true);
                        if (rc < 0 || c->input != XFER_CONN_INPUT_ENDED)
                                return rc < 0 ? 1 : rc;
                }
                h->close_step = XFER_CHAN_CLOSE;
                return 1;
        case XFER_CHAN_CLOSE:
                rc = libssh2_channel_close(h->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(h, XFER_CHAN_OP_CLOSE);
                        return 0;
                }
                xfer__ssh_unblocked(h->io, h);
                h->close_step = rc < 0 ? XFER_CHAN_NOTE_EXIT : XFER_CHAN_WAIT_CLOSED;
                return 1;
        case XFER_CHAN_WAIT_CLOSED:
                if (c->status < 0) {
                        /* An abort does not wait for the peer. */
                        h->close_step = XFER_CHAN_NOTE_EXIT;
                        return 1;
                }
                rc = libssh2_channel_wait_closed(h->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(h, XFER_CHAN_OP_CLOSE);
                        return 0;
                }
                xfer__ssh_unblocked(h->io, h);
                if (rc == 0)
                        chan_take_exit(h);
                h->close_step = XFER_CHAN_NOTE_EXIT;
                return 1;
        case XFER_CHAN_NOTE_EXIT:
                chan_note_exit(h);
                h->close_step = XFER_CHAN_FREE;
                _fallthrough_;
        case XFER_CHAN_FREE:
                rc = libssh2_channel_free(h->ch);
                if (rc == LIBSSH2_ERROR_EAGAIN) {
                        chan_blocked(h, XFER_CHAN_OP_CLOSE);
                        return 0;
                }
                xfer__ssh_unblocked(h->io, h);
                /* On another error libssh2_session_free() frees it. */
                h->ch = NULL;
                h->close_step = XFER_CHAN_FREED;
                xfer__conn_finish(c);
                return 1;
        case XFER_CHAN_FREED:
        case _XFER_CHAN_CLOSE_MAX:
        case _XFER_CHAN_CLOSE_INVALID: break;
        }
        return 0;
}

/* Repeats the call that left a packet half sent. */
static int chan_retry(xfer_channel *h) {
        switch (h->pending_op) {
        case XFER_CHAN_OP_WRITE: return chan_write(h);
        case XFER_CHAN_OP_READ: return chan_read(h, h->conn.state != XFER_CONN_OPEN);
        case XFER_CHAN_OP_CLOSE: return chan_close_step(h);
        case _XFER_CHAN_OP_MAX:
        case _XFER_CHAN_OP_INVALID: break;
        }
        return 0;
}

/* One step: the half-sent call first, then writes, reads, or the goodbye.
 * true on progress. */
static bool channel_step(xfer_channel *h) {
        xfer_conn *c = &h->conn;
        bool progress = false;

        if (c->state == XFER_CONN_FINISHING)
                return false;
        if (!xfer__ssh_may_send(h->io, h))
                return false; /* another channel's half-sent packet goes first */
        if (xfer__ssh_holds(h->io, h) && chan_retry(h) != 0)
                progress = true;
        if (c->state == XFER_CONN_OPEN && !xfer__ssh_holds(h->io, h)) {
                if (chan_write(h) != 0)
                        progress = true;
                if (c->state == XFER_CONN_OPEN && !xfer__ssh_holds(h->io, h) && chan_read(h, false) != 0)
                        progress = true;
        }
        if (c->state == XFER_CONN_CLOSING && !xfer__ssh_holds(h->io, h) && chan_close_step(h) != 0)
                progress = true;
        if (c->state == XFER_CONN_FINISHING)
                return false; /* gone: its closed callback is on its way */
        xfer__conn_timer_arm(c);
        return progress;
}

/* A read (this channel's or another's: libssh2 takes in whatever packet
 * comes) may have taken in the window adjust a write waited for. libssh2
 * then has nothing left to read, and the session's poll would wait for the
 * peer, which waits for our bytes: the write must go again now. */
static bool chan_window_opened(xfer_channel *h) {
        if (h->conn.state != XFER_CONN_OPEN || !h->head || h->write_wait != XFER_CHAN_WRITE_WAITS_WINDOW ||
            libssh2_channel_window_write(h->ch) == 0)
                return false;
        h->write_wait = XFER_CHAN_WRITE_WAITS_NOT;
        return true;
}

bool xfer__channels_step(xfer_ssh_io *io) {
        xfer_channel *h, *next;
        bool progress = false;

        LIST_FOREACH_SAFE(channels, h, next, io->channels) {
                if (channel_step(h))
                        progress = true;
        }
        LIST_FOREACH(channels, h, io->channels)
        if (chan_window_opened(h))
                progress = true;
        return progress;
}

void xfer__channels_cancel(xfer_ssh_io *io, int status) {
        xfer_channel *h;

        assert(status < 0);
        LIST_FOREACH(channels, h, io->channels) {
                /* Not one that is saying goodbye already. */
                if (h->conn.state == XFER_CONN_OPEN ||
                    (h->conn.state == XFER_CONN_CLOSING && h->close_step < XFER_CHAN_CLOSE))
                        xfer__conn_fail(&h->conn, status, NULL);
        }
}

/* ---- construction ------------------------------------------------------------ */

static const xfer_conn_ops channel_ops = {
        .write = channel_write_op,
        .read_stop = channel_read_stop,
        .resume = channel_resume,
        .close = channel_close,
        .abort = channel_abort,
        .abandon = channel_abandon,
        .finish = channel_finish,
        .release = channel_release,
};

int xfer__channel_new(xfer_ssh_io *io, LIBSSH2_CHANNEL *ch, const char *remote,
                      const xfer_conn_callbacks *cbs, void *userdata, xfer_conn **ret) {
        xfer_channel *h;
        xfer_conn *c = NULL;
        int r;

        assert(io && ch && remote && ret);
        r = xfer__conn_new(io->loop, sizeof(xfer_channel), &channel_ops, cbs, userdata, &c);
        if (r < 0)
                return r;
        h = channel_of(c);
        h->io = io;
        h->ch = ch;
        h->exit_status = -1;
        h->remote = strdup(remote);
        LIST_PREPEND(channels, io->channels, h);
        io->channels_alive++;
        *ret = c;
        return 0;
}
