/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* transfer/: moves bytes between agents. An SSH client session driven by the
 * caller's libuv loop (libssh2 in non-blocking mode, one uv_poll_t per
 * session), or by a loop on a thread of its own (XFER_SSH_ON_THREAD); a
 * framed message connection (xfer_conn) over an SSH exec channel or a uv
 * stream; the image stream (xfer_send_dir on the source, the xfer_recv sink
 * on the destination) and the dial-stdio relay.
 *
 * transfer/ does not know what a container is. It knows the checkpoint tree
 * format, from ckpt/'s libckpt_format (ckpt-format.h), the one home of the
 * canonical walk, its path rules and the tree HMAC: the sender walks the
 * directory with ckpt_tree_walk() and both ends hash with ckpt_hmac_*.
 *
 * Callbacks follow one rule: a function that returns 0 after being given a
 * callback runs that callback exactly once, later, from the loop, never from
 * inside the call itself; a function that fails synchronously (< 0) never
 * runs it.
 *
 * The process must ignore SIGPIPE: a peer that hangs up must show up as an
 * EPIPE error, not kill the agent. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "error.h"
#include "proto.h"

#define XFER_DEFAULT_COMMAND "nucleus-agent dial-stdio"
#define XFER_DEFAULT_SOCKET "/run/nucleus-migrate/agent.sock"
/* Largest DATA payload the sender produces; reads of this size keep the
 * number of frames (and syscalls) per GiB low. */
#define XFER_CHUNK_SIZE (256u * 1024u)
/* Receive window offered for SSH channels: large enough that the peer can
 * keep sending while we are busy hashing. */
#define XFER_CHANNEL_WINDOW (16u * 1024u * 1024u)
/* zstd's fast level -2: on checkpoint pages about 1 GB/s and 2.6x on a
 * mixed heap (zstd 1: 0.64 GB/s, 2.7x); one libssh2 channel moves only
 * ~250 MB/s, so bytes saved cost far less than bytes sent. */
#define XFER_ZSTD_LEVEL (-2)
/* The tree HMAC as hex digits and a NUL (CKPT_HMAC_HEX_LEN + 1). */
#define XFER_HMAC_HEX_MAX 65
/* Files in one image set, at most: CRIU writes a handful per task, so this
 * is far above a real container, and it keeps a hostile peer from using up
 * the staging file system's inodes with empty files. */
#define XFER_RECV_MAX_FILES (256u * 1024u)

/* ------------------------------------------------------------------------ */
/* Progress */

typedef struct xfer_progress {
        uint64_t bytes;       /* file payload bytes so far */
        uint64_t files;       /* files completed so far */
        uint64_t total_bytes; /* announced or known total; 0 when unknown */
        uint64_t total_files; /* 0 when unknown */
        double rate;          /* bytes per second since the start */
        uint64_t elapsed_ms;
} xfer_progress;

typedef void (*xfer_progress_cb)(const xfer_progress *p, void *userdata);

/* ------------------------------------------------------------------------ */
/* SSH client session */

typedef struct xfer_session xfer_session;
typedef struct xfer_conn xfer_conn;

/* Where a session's SSH work (libssh2: encryption, MACs, packets) runs. */
typedef enum xfer_ssh_thread {
        XFER_SSH_ON_LOOP,   /* on the caller's loop, beside the caller's own work */
        XFER_SSH_ON_THREAD, /* on a thread of its own (ssh-thread.c); the caller's loop relays frames */
        _XFER_SSH_THREAD_MAX,
        _XFER_SSH_THREAD_INVALID = -EINVAL,
} xfer_ssh_thread;

typedef struct xfer_ssh_options {
        const char *host;            /* name or address */
        uint16_t port;               /* 0: 22 */
        const char *user;            /* NULL: "root" */
        const char *key_file;        /* private key (ed25519); "<key_file>.pub" is used when present */
        const char *known_hosts;     /* required */
        bool accept_new;             /* unknown hosts: append their key instead of refusing */
        uint64_t connect_timeout_ms; /* resolve + TCP + handshake + auth; 0: 30 s */
        /* XFER_SSH_ON_THREAD: the session runs on a thread of its own, and
         * its exec channel's frames come and go through a socketpair: the
         * same API, callbacks and errors, with the encryption on another
         * core than the caller's work. */
        xfer_ssh_thread thread;
} xfer_ssh_options;

typedef void (*xfer_session_connect_cb)(xfer_session *s, int status, const nm_error *err, void *userdata);
typedef void (*xfer_session_close_cb)(xfer_session *s, void *userdata);

/* Allocates a session; copies the options. Nothing happens on the network
 * until xfer_session_connect(). */
int xfer_session_new(uv_loop_t *loop, const xfer_ssh_options *opts, nm_error *err, xfer_session **ret);

/* Resolves, connects, checks the host key, authenticates. cb runs once:
 * status 0 when the session is ready, -ETIMEDOUT, -ECONNREFUSED,
 * -EHOSTUNREACH, -EACCES (auth refused), -EPERM (host key unknown or
 * changed), -ECANCELED (closed), ... with a sentence in err. */
int xfer_session_connect(xfer_session *s, xfer_session_connect_cb cb, void *userdata);

/* The exec channel's framed connection: cbs as in xfer_conn_new_stream. */
typedef struct xfer_conn_callbacks xfer_conn_callbacks;
typedef void (*xfer_session_exec_cb)(xfer_session *s, int status, const nm_error *err, xfer_conn *conn,
                                     void *userdata);

/* Opens a session channel with a large window and runs command on it (NULL:
 * XFER_DEFAULT_COMMAND; a forced command in authorized_keys overrides it).
 * cb gets the connection (owned by the session until its closed callback
 * has run) or an error. One exec may be pending at a time (-EBUSY). */
int xfer_session_exec(xfer_session *s, const char *command, const xfer_conn_callbacks *cbs,
                      void *conn_userdata, xfer_session_exec_cb cb, void *userdata);

/* Ends everything: a pending connect or exec gets -ECANCELED, open
 * connections close with -ECANCELED, the SSH session is disconnected (best
 * effort, bounded in time), handles are closed, then cb (may be NULL) runs
 * and the session is freed. */
void xfer_session_close(xfer_session *s, xfer_session_close_cb cb, void *userdata);

/* "SHA256:<base64>" of the server's host key once the handshake is done. */
const char *xfer_session_fingerprint(const xfer_session *s);

/* ------------------------------------------------------------------------ */
/* Framed message connection */

struct xfer_conn_callbacks {
        /* A decoded message. msg belongs to the connection and is valid during
         * the call only. Not called after xfer_conn_close(). */
        void (*message)(xfer_conn *c, const proto_msg *msg, void *userdata);
        /* Runs exactly once; the connection is freed after it returns.
         * status is 0 when closed with status 0 or when the peer ended the
         * stream at a frame boundary; < 0 otherwise (err says why). */
        void (*closed)(xfer_conn *c, int status, const nm_error *err, void *userdata);
        /* Optional, SSH channels only: a line the remote command wrote on
         * stderr, as it comes. Printable ASCII (others are '?'), at most
         * XFER_REMARK_MAX bytes, at most XFER_REMARKS_MAX lines and then
         * one "(further lines not shown)". Must not close the connection. */
        void (*remark)(xfer_conn *c, const char *line, void *userdata);
};

#define XFER_REMARK_MAX 200
#define XFER_REMARKS_MAX 16

/* Wraps a connected stream (uv_pipe_t, uv_tcp_t; allocated with malloc()).
 * The stream is transferred: the connection closes and frees it. Starts
 * reading at once. */
int xfer_conn_new_stream(uv_stream_t *stream, const xfer_conn_callbacks *cbs, void *userdata, nm_error *err,
                         xfer_conn **ret);

/* Same, for an fd (a pipe or a socket). The fd is transferred, also when
 * this fails. */
int xfer_conn_new_fd(uv_loop_t *loop, int fd, const xfer_conn_callbacks *cbs, void *userdata, nm_error *err,
                     xfer_conn **ret);

/* Same, reading in and writing out (both malloc()ed, transferred on
 * success; the caller keeps them when this fails). */
int xfer_conn_new_pair(uv_stream_t *in, uv_stream_t *out, const xfer_conn_callbacks *cbs, void *userdata,
                       nm_error *err, xfer_conn **ret);

/* From the message callback of a RELAY_FDS frame on c, a control-socket
 * connection made on a uv_pipe_t initialised with ipc 1: the two fds that
 * came with the frame (the SSH session's stdin and stdout, as dial-stdio had
 * them) become *ret, a connection with cbs and userdata that the caller
 * takes for c. c's callbacks are not called again: c answers RELAY_FDS to
 * dial-stdio and stays open until *ret ends (then dial-stdio exits); if
 * dial-stdio goes first, *ret ends with -ECONNRESET. Fails, leaving c's
 * callbacks as they were (the fds are closed), when the frame did not come
 * with exactly two pipes or sockets. fds
 * that came with any other frame are closed once it has been handed out. */
int xfer_conn_take_relay(xfer_conn *c, const xfer_conn_callbacks *cbs, void *userdata, nm_error *err,
                         xfer_conn **ret);

/* Encodes msg and queues it. Fails with -EPIPE once the connection is
 * closing; err says why. */
int xfer_conn_send(xfer_conn *c, const proto_msg *msg, nm_error *err);

/* Queues a DATA frame without copying its payload: the header is encoded
 * separately and payload is written from where it is. release(release_ud)
 * runs exactly once when the bytes have left or the connection is gone;
 * when this call fails, it does not run and the caller keeps payload. */
int xfer_conn_send_data(xfer_conn *c, const char *mig, const void *payload, size_t n,
                        void (*release)(void *ud), void *release_ud, nm_error *err);

/* The same for a ZDATA frame: payload is one zstd frame of size bytes
 * (proto_zdata_compress()). */
int xfer_conn_send_zdata(xfer_conn *c, const char *mig, uint32_t size, const void *payload, size_t n,
                         void (*release)(void *ud), void *release_ud, nm_error *err);

/* Bytes queued and not yet handed to the kernel (or to libssh2). */
size_t xfer_conn_queued(const xfer_conn *c);
/* Bytes handed to the kernel (or to libssh2) since the start: grows while
 * the peer takes what we send. */
uint64_t xfer_conn_written(const xfer_conn *c);

/* Back-pressure for one producer at a time (xfer_send_dir uses it): cb runs
 * whenever the queue shrinks from above low_water to at most low_water,
 * from the loop, never from inside a send. cb NULL removes it. */
typedef void (*xfer_conn_drain_cb)(xfer_conn *c, void *userdata);
void xfer_conn_set_drain(xfer_conn *c, size_t low_water, xfer_conn_drain_cb cb, void *userdata);

/* hold: no further frame is handed out (they wait in the socket or the
 * channel window, and the peer waits) until called again with false, for a
 * caller whose own consumer is behind (the relay to a CRIU page server).
 * The idle timeout does not count that time against the peer. A remote
 * command over SSH that fails meanwhile (a non-zero status, or killed by a
 * signal) still closes the connection at once, with that end; one that
 * ends cleanly is seen after the frames before its end. */
void xfer_conn_hold_reading(xfer_conn *c, bool hold);

/* Closes the connection with ms of neither bytes received nor queued bytes
 * leaving (-ETIMEDOUT). 0 turns it off (the default). */
void xfer_conn_set_idle_timeout(xfer_conn *c, uint64_t ms);

/* Stops delivering messages and ends the connection. With status 0 the
 * queued bytes are written first (an SSH channel gets EOF); with status < 0
 * the queue is dropped. err (may be NULL) is copied and handed to the closed
 * callback. Calling it again is harmless. */
void xfer_conn_close(xfer_conn *c, int status, const nm_error *err);

/* ------------------------------------------------------------------------ */
/* Image stream: sender */

typedef struct xfer_send xfer_send;

typedef struct xfer_send_result {
        uint64_t files;
        uint64_t bytes;
        uint64_t wire_bytes;          /* DATA and ZDATA payload bytes sent for them */
        uint64_t zstd_untried;        /* chunks sent without a try (proto_zbackoff) */
        char hmac[XFER_HMAC_HEX_MAX]; /* the tree digest sent in IMAGES_DONE */
} xfer_send_result;

typedef void (*xfer_send_done_cb)(xfer_send *x, int status, const nm_error *err, const xfer_send_result *res,
                                  void *userdata);

typedef struct xfer_send_options {
        /* The checkpoint HMAC key (required; copied): the tree is hashed
         * with ckpt's HMAC once per byte, as the bytes are read. */
        const void *key;
        size_t key_len;
        const char *mig;               /* migration id carried in every frame */
        size_t chunk_size;             /* 0: XFER_CHUNK_SIZE */
        size_t max_queued;             /* stop reading above this many queued bytes; 0: 4 chunks */
        uint64_t overall_timeout_ms;   /* 0: none */
        uint64_t rate_limit;           /* bytes per second, averaged from the start; 0: none */
        uint64_t progress_interval_ms; /* 0: 1000 */
        xfer_progress_cb progress;     /* optional */
        /* Test hook: corrupt the SHA-256 (or FILE_MAC) of this file
         * (relpath), to check that the receiver refuses it. NULL in
         * production. */
        const char *test_bad_digest;
        /* The receiver listed "zstd": chunks that shrink go as ZDATA,
         * compressed at zstd_level (0: XFER_ZSTD_LEVEL). */
        bool zstd;
        int zstd_level;
        /* The receiver listed "file-mac": FILE_MAC (the tree HMAC so far,
         * ckpt_hmac_mark()) instead of FILE_END, and no SHA-256 per file:
         * each byte is hashed once. */
        bool file_mac;
        /* Optional: IMAGES_DONE's "binding" from the final tree HMAC (hex),
         * into ret_hex (64 hex digits); < 0 fails the stream. The caller
         * knows what the images are bound to (transfer/ does not). */
        int (*binding)(void *userdata, const char *tree_hex, char ret_hex[XFER_HMAC_HEX_MAX]);
        /* The tree HMAC the images were signed with right after CRIU wrote
         * them (hex; NULL or "": none). A stream whose bytes hash otherwise
         * fails before IMAGES_DONE: the images changed after they were
         * signed, and the target must never verify what CRIU did not write. */
        const char *expect_hmac;
} xfer_send_options;

/* Streams the checkpoint directory dir_fd (<dir>/images/ flat files, then
 * <dir>/metadata.json; checkpoint.hmac is not sent) over c as FILE, DATA...,
 * FILE_END per file in the canonical order of ckpt_tree_walk(), then
 * IMAGES_DONE. A tree the walk refuses (symlink, special file, bad name) or
 * that holds anything else is refused before a byte is sent. Memory stays
 * bounded: the next chunk is read only while c's queue is below max_queued.
 * Files are read on the libuv threadpool. dir_fd stays the caller's. cb runs
 * once when IMAGES_DONE has been queued (0) or on error; the connection is
 * not closed by the sender. The owner of the connection calls
 * xfer_send_abort() (or xfer_send_free()) from the connection's closed
 * callback at the latest: after its callback the sender no longer touches
 * the connection. */
int xfer_send_dir(xfer_conn *c, int dir_fd, const xfer_send_options *opts, xfer_send_done_cb cb,
                  void *userdata, nm_error *err, xfer_send **ret);

/* Changes the bandwidth limit of a running send (bytes/s, 0: none), averaged
 * from now on. Harmless after the end. */
void xfer_send_set_rate(xfer_send *x, uint64_t rate_limit);

/* Ends a running send: cb runs with status (< 0). Harmless after the end. */
void xfer_send_abort(xfer_send *x, int status, const nm_error *err);

/* Frees a send whose callback has run, or cancels one whose callback has
 * not (cb then never runs). Returns NULL. */
xfer_send *xfer_send_free(xfer_send *x);

/* ------------------------------------------------------------------------ */
/* Image stream: receiver sink */

typedef struct xfer_recv xfer_recv;

typedef struct xfer_recv_result {
        uint64_t files;
        uint64_t bytes;
        char hmac[XFER_HMAC_HEX_MAX];
        char binding[XFER_HMAC_HEX_MAX]; /* IMAGES_DONE's binding, "" without one: the caller checks it */
} xfer_recv_result;

typedef void (*xfer_recv_done_cb)(xfer_recv *r, int status, const nm_error *err, const xfer_recv_result *res,
                                  void *userdata);

/* A test's stalled file system, once it recovers (xfer_recv_options). */
typedef enum xfer_gate_after {
        XFER_GATE_THEN_WRITE, /* the writes go on */
        XFER_GATE_THEN_FAIL,  /* the write that waited fails with EIO: it broke meanwhile */
        _XFER_GATE_AFTER_MAX,
        _XFER_GATE_AFTER_INVALID = -EINVAL,
} xfer_gate_after;

typedef struct xfer_recv_options {
        /* The checkpoint HMAC key (required; copied): the tree HMAC is
         * recomputed with ckpt's as bytes arrive and compared at IMAGES_DONE. */
        const void *key;
        size_t key_len;
        const char *mig;         /* when set, every message must carry this migration id */
        uint64_t expected_bytes; /* for progress only (e.g. OFFER's estimate); 0: unknown */
        uint64_t max_bytes;      /* refuse a stream larger than this; 0: no limit */
        uint64_t max_files;      /* refuse a stream of more files; 0: XFER_RECV_MAX_FILES */
        /* Ends the transfer when it makes no progress for this long: no frame,
         * or less than 64 KiB of file data (a trickle); 0: none. */
        uint64_t idle_timeout_ms;
        /* How long the sender may take before its first frame (a source's
         * dump, which may first wait for its node's CRIU): the idle timeout
         * applies from that frame on; 0: idle_timeout_ms from the start. */
        uint64_t first_frame_timeout_ms;
        uint64_t progress_interval_ms; /* 0: 1000 */
        xfer_progress_cb progress;     /* optional */
        /* Files end with FILE_MAC (both sides listed "file-mac") and
         * FILE_END is refused; else the reverse. ZDATA is accepted either
         * way. */
        bool file_mac;
        /* Optional: asked at each FILE for its announced size (which its
         * DATA may not exceed): < 0 (with err) refuses the file and ends
         * the transfer. A quota on what lands in staging, across whatever
         * the caller receives at once. */
        int (*reserve)(void *userdata, uint64_t bytes, nm_error *err);
        /* Optional: the writes into staging caught up after
         * xfer_recv_full() said stop; the peer may be read again. */
        void (*drained)(void *userdata);
        /* Test hook: while this file exists, the writes into staging wait,
         * as on a stalled file system (copied). NULL in production. */
        const char *test_write_gate;
        /* Test hook: what a write that waited at the gate does once it is
         * gone. */
        xfer_gate_after test_gate_after;
} xfer_recv_options;

/* Creates the staging directory name (one component) below parent_fd, mode
 * 0700; fails with -EEXIST when it exists. parent_fd stays the caller's. */
int xfer_recv_new(uv_loop_t *loop, int parent_fd, const char *name, const xfer_recv_options *opts,
                  xfer_recv_done_cb cb, void *userdata, nm_error *err, xfer_recv **ret);

/* Feeds one FILE, DATA, ZDATA, FILE_END, FILE_MAC or IMAGES_DONE message
 * (others: -EPROTO).
 * Returns < 0 when the stream is refused: err says why, and cb runs later
 * with the same error, once the staging directory is removed (at once, or
 * when the batch of writes running on the threadpool has ended).
 * After IMAGES_DONE has been verified the files and directories are fsynced
 * on the threadpool and cb runs with 0: the staging directory is then a
 * complete checkpoint directory with checkpoint.hmac, and it is the
 * caller's. */
int xfer_recv_feed(xfer_recv *r, const proto_msg *msg, nm_error *err);

/* n bytes of the same move that came another way (its pages, streamed to a
 * page server while CRIU dumps): the sender is making progress, which the
 * idle timeout must see. */
void xfer_recv_progress(xfer_recv *r, size_t n);

/* The writes into staging run on the threadpool, and they are far behind
 * what was fed: stop reading the peer until the drained callback. A caller
 * that reads on anyway grows the receiver's memory, nothing worse. */
bool xfer_recv_full(const xfer_recv *r);

/* Ends the transfer (dropped connection, ABORT from the peer, ...): removes
 * staging; cb runs with status. Harmless after the end. */
void xfer_recv_abort(xfer_recv *r, int status, const nm_error *err);

/* Frees the sink; a transfer that has not succeeded is aborted first and its
 * staging removed; cb does not run after this. Returns NULL. */
xfer_recv *xfer_recv_free(xfer_recv *r);

/* ------------------------------------------------------------------------ */
/* dial-stdio */

typedef void (*xfer_dial_done_cb)(int status, const nm_error *err, void *userdata);

/* Connects to the unix socket socket_path and relays stdin to it and its
 * replies to stdout until both directions have ended (EOF is passed on as a
 * shutdown). stdin and stdout may be pipes, sockets, ttys or files. first
 * (may be NULL) is written to the socket before any byte of stdin. cb runs
 * once, after every handle is closed. */
int xfer_dial_stdio(uv_loop_t *loop, const char *socket_path, int in_fd, int out_fd, const proto_msg *first,
                    xfer_dial_done_cb cb, void *userdata, nm_error *err);

/* Hands stdin and stdout (pipes or sockets, as sshd gives them) to the
 * agent on socket_path with first, a RELAY_FDS frame, instead of relaying
 * them (xfer_conn_take_relay() on the agent's side), and waits until the
 * agent has ended the session. Blocking. 1: the agent took them and the
 * session is over (in_fd and out_fd are /dev/null now). 0: it did not (an
 * older agent answers ERROR), nothing was read from in_fd, and err says why:
 * relay with xfer_dial_stdio(). < 0: the agent cannot be reached
 * (-ECONNREFUSED), or the session broke after the hand-over. */
int xfer_dial_handoff(const char *socket_path, int in_fd, int out_fd, const proto_msg *first, nm_error *err);

/* Grows fd, when it is a pipe, to XFER_DIAL_PIPE_SIZE: a relay's pipes from
 * and to sshd, before xfer_dial_stdio(). With the default 64 KiB, sshd
 * hands the relay 64 KiB per turn of its loop while it reads 256 KiB from
 * the network: its channel buffer grows to the window (MBs) in steps, each
 * a fresh allocation whose pages fault in slowly, and a small image set
 * crawls (measured: 64 KiB per ~100 ms at the start of every stream).
 * 0 when grown or not a pipe; -EPERM when the kernel refused (an
 * unprivileged user whose pipes are over fs.pipe-user-pages-soft, or a
 * size above fs.pipe-max-size): the relay works, slower. */
#define XFER_DIAL_PIPE_SIZE (1024 * 1024) /* the default fs.pipe-max-size */
int xfer_dial_grow_pipe(int fd);
