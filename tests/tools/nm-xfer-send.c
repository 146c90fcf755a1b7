/* SPDX-License-Identifier: Apache-2.0 */
/* nm-xfer-send: streams a checkpoint directory the way the source agent
 * will, for tests: over SSH (libssh2 on libuv) to a command on the peer,
 * normally `nucleus-agent dial-stdio`, or straight to a unix socket with
 * --local-socket. Waits for VERIFIED. With --parallel N it opens N channels
 * on one SSH session and streams the directory on each at once (migration
 * ids <mig>-1 ... <mig>-N). Prints on success:
 *   SENT <files> <bytes> <hmac> <seconds> <MB/s>
 * (files and bytes summed over the streams) and on failure the reason on
 * stderr, exit 1. With --hold-reading it never reads its connections (what
 * the peer says must reach it anyway when the peer ends) and says
 * ALL-SENT <mig> on stderr once a stream's bytes have left. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fs-util.h"
#include "mem.h"
#include "transfer.h"

#define MAX_STREAMS 16

typedef struct sender sender;

typedef struct stream {
        sender *t;
        xfer_conn *c;
        xfer_send *x;
        char mig[PROTO_ID_MAX + 1];
        bool verified, closed;
        xfer_send_result res;
} stream;

struct sender {
        uv_loop_t loop;
        xfer_session *s;
        stream streams[MAX_STREAMS];
        unsigned n_streams, n_opened, n_closed;
        const char *key;
        size_t key_len;
        int dir_fd;
        const char *command, *mig, *bad_digest;
        uint64_t idle_ms;
        bool progress, no_verify, hold;
        bool zstd, file_mac;
        int zstd_level;
        int status;
        nm_error err;
        uint64_t start_ns, end_ns;
};

static void fail(sender *t, int code, const nm_error *err, const char *what) {
        if (t->status < 0)
                return;
        t->status = code < 0 ? code : -EIO;
        if (err && err->msg[0])
                nm_error_set(&t->err, t->status, "%s", err->msg);
        else
                nm_error_errno(&t->err, t->status, "%s", what ? what : "failed");
}

/* Ends what is still open; the session goes once every stream closed. */
static void end(sender *t) {
        bool open = false;
        for (unsigned i = 0; i < t->n_opened; i++)
                if (t->streams[i].c) {
                        xfer_conn_close(t->streams[i].c, t->status < 0 ? t->status : 0,
                                        t->status < 0 ? &t->err : NULL);
                        open = true;
                }
        if (!open && t->s) {
                xfer_session_close(t->s, NULL, NULL);
                t->s = NULL;
        }
}

static void on_progress(const xfer_progress *p, void *ud) {
        stream *st = ud;
        if (st->t->progress)
                fprintf(stderr, "%s: %llu/%llu bytes, %llu/%llu files, %.1f MB/s\n", st->mig,
                        (unsigned long long)p->bytes, (unsigned long long)p->total_bytes,
                        (unsigned long long)p->files, (unsigned long long)p->total_files, p->rate / 1e6);
}

static void send_done(xfer_send *x, int status, const nm_error *err, const xfer_send_result *res, void *ud) {
        stream *st = ud;
        (void)x;
        if (status < 0) {
                fail(st->t, status, err, "sending failed");
                end(st->t);
                return;
        }
        st->res = *res;
        if (st->t->hold)
                fprintf(stderr, "ALL-SENT %s\n", st->mig);
        if (st->t->no_verify) {
                /* Throughput runs against `cat >/dev/null`: done once the
                 * bytes have left and the channel closed. */
                st->verified = true;
                xfer_conn_close(st->c, 0, NULL);
        }
        /* Otherwise wait for the verdict. */
}

static void on_message(xfer_conn *c, const proto_msg *m, void *ud) {
        stream *st = ud;
        nm_error e = {};

        if (m->type == PROTO_MSG_VERIFIED) {
                st->verified = true;
                xfer_conn_close(c, 0, NULL);
        } else if (m->type == PROTO_MSG_ERROR) {
                nm_error_set(&e, m->error.code, "the receiver refused the images: %s", m->error.reason);
                fail(st->t, m->error.code, &e, NULL);
                xfer_conn_close(c, m->error.code, &e);
        }
}

static void on_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        stream *st = ud;
        sender *t = st->t;
        (void)c;

        st->c = NULL;
        st->closed = true;
        if (status < 0)
                fail(t, status, err, "connection failed");
        else if (!st->verified)
                fail(t, -EPIPE, NULL, "the peer closed the connection before verifying the images");
        xfer_send_abort(st->x, status < 0 ? status : -EPIPE, err);
        st->x = xfer_send_free(st->x);
        if (++t->n_closed == t->n_streams || t->status < 0) {
                t->end_ns = uv_hrtime();
                end(t);
        }
}

static void start_send(stream *st) {
        sender *t = st->t;
        xfer_send_options o = {
                .key = t->key,
                .key_len = t->key_len,
                .mig = st->mig,
                .progress = on_progress,
                .test_bad_digest = t->bad_digest,
                .zstd = t->zstd,
                .zstd_level = t->zstd_level,
                .file_mac = t->file_mac,
        };
        nm_error e = {};

        if (t->idle_ms)
                xfer_conn_set_idle_timeout(st->c, t->idle_ms);
        if (t->hold)
                xfer_conn_hold_reading(st->c, true);
        if (xfer_send_dir(st->c, t->dir_fd, &o, send_done, st, &e, &st->x) < 0) {
                fail(t, e.code, &e, "cannot send");
                end(t);
        }
}

static void open_next(sender *t);

static void exec_cb(xfer_session *s, int status, const nm_error *err, xfer_conn *conn, void *ud) {
        sender *t = ud;
        stream *st = &t->streams[t->n_opened];
        (void)s;
        if (status < 0) {
                fail(t, status, err, "exec failed");
                t->n_streams = t->n_opened;
                end(t);
                return;
        }
        st->c = conn;
        t->n_opened++;
        start_send(st);
        open_next(t);
}

/* What the remote command says on stderr while it runs, for the test. */
static void on_remark(xfer_conn *c, const char *line, void *ud) {
        (void)c;
        (void)ud;
        fprintf(stderr, "REMARK %s\n", line);
}

static void open_next(sender *t) {
        xfer_conn_callbacks cbs = {.message = on_message, .closed = on_closed, .remark = on_remark};
        int r;

        if (t->n_opened == t->n_streams || t->status < 0)
                return;
        r = xfer_session_exec(t->s, t->command, &cbs, &t->streams[t->n_opened], exec_cb, t);
        if (r < 0) {
                fail(t, r, NULL, "cannot run the remote command");
                t->n_streams = t->n_opened;
                end(t);
        }
}

static void connect_cb(xfer_session *s, int status, const nm_error *err, void *ud) {
        sender *t = ud;
        (void)s;
        if (status < 0) {
                fail(t, status, err, "connect failed");
                end(t);
                return;
        }
        t->start_ns = uv_hrtime();
        open_next(t);
}

static int connect_local(sender *t, const char *path) {
        xfer_conn_callbacks cbs = {.message = on_message, .closed = on_closed};
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        t->start_ns = uv_hrtime();
        for (unsigned i = 0; i < t->n_streams; i++) {
                stream *st = &t->streams[i];
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                        fprintf(stderr, "nm-xfer-send: cannot connect to %s: %m\n", path);
                        return -1;
                }
                if (xfer_conn_new_fd(&t->loop, fd, &cbs, st, NULL, &st->c) < 0)
                        return -1;
                t->n_opened++;
                start_send(st);
        }
        return 0;
}

/* --zstd[=LEVEL]: the level, or 0 (zstd's default) when none is given. */
static int zstd_level_arg(const char *arg) {
        return arg ? (int)strtol(arg, NULL, 10) : 0;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                {"host", required_argument, NULL, 'H'},
                {"port", required_argument, NULL, 'p'},
                {"user", required_argument, NULL, 'u'},
                {"key", required_argument, NULL, 'K'},
                {"known-hosts", required_argument, NULL, 'N'},
                {"accept-new", no_argument, NULL, 'A'},
                {"command", required_argument, NULL, 'C'},
                {"local-socket", required_argument, NULL, 'L'},
                {"mig", required_argument, NULL, 'm'},
                {"hmac-key", required_argument, NULL, 'k'},
                {"idle-timeout", required_argument, NULL, 'i'},
                {"connect-timeout", required_argument, NULL, 't'},
                {"bad-digest", required_argument, NULL, 'b'},
                {"parallel", required_argument, NULL, 'n'},
                {"progress", no_argument, NULL, 'P'},
                {"no-verify", no_argument, NULL, 'V'},
                {"zstd", optional_argument, NULL, 'Z'},
                {"file-mac", no_argument, NULL, 'M'},
                {"thread", no_argument, NULL, 'T'},
                {"hold-reading", no_argument, NULL, 'R'},
                {},
        };
        xfer_ssh_options so = {0};
        sender t = {.mig = "test-mig", .n_streams = 1};
        const char *keyfile = NULL, *local = NULL;
        char *key = NULL;
        size_t key_len = 0;
        uint64_t files = 0, bytes = 0, wire = 0;
        nm_error e = {};
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'H': so.host = optarg; break;
                case 'p': so.port = (uint16_t)strtoul(optarg, NULL, 10); break;
                case 'u': so.user = optarg; break;
                case 'K': so.key_file = optarg; break;
                case 'N': so.known_hosts = optarg; break;
                case 'A': so.accept_new = true; break;
                case 'C': t.command = optarg; break;
                case 'L': local = optarg; break;
                case 'm': t.mig = optarg; break;
                case 'k': keyfile = optarg; break;
                case 'i': t.idle_ms = strtoull(optarg, NULL, 10); break;
                case 't': so.connect_timeout_ms = strtoull(optarg, NULL, 10); break;
                case 'b': t.bad_digest = optarg; break;
                case 'n': t.n_streams = (unsigned)strtoul(optarg, NULL, 10); break;
                case 'P': t.progress = true; break;
                case 'V': t.no_verify = true; break;
                case 'Z':
                        t.zstd = true;
                        t.zstd_level = zstd_level_arg(optarg);
                        break;
                case 'M': t.file_mac = true; break;
                case 'T': so.thread = XFER_SSH_ON_THREAD; break;
                case 'R': t.hold = true; break;
                default: return 2;
                }
        }
        /* A session on its own thread opens one channel. */
        if (optind + 1 != argc || !keyfile || (!local && !so.host) || t.n_streams < 1 ||
            t.n_streams > MAX_STREAMS || (so.thread == XFER_SSH_ON_THREAD && t.n_streams > 1)) {
                fprintf(stderr,
                        "usage: nm-xfer-send (--host H --key K --known-hosts F [--command CMD] | "
                        "--local-socket PATH) --hmac-key FILE [--mig ID] [--parallel N] [--zstd[=LEVEL]] "
                        "[--file-mac] [--thread] [--hold-reading] DIR\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        r = read_file_at(AT_FDCWD, keyfile, 4096, &key, &key_len);
        if (r < 0 || key_len < 32) {
                fprintf(stderr, "nm-xfer-send: cannot use key %s\n", keyfile);
                return 1;
        }
        t.key = key;
        t.key_len = key_len;
        for (unsigned i = 0; i < t.n_streams; i++) {
                t.streams[i].t = &t;
                if (t.n_streams == 1)
                        snprintf(t.streams[i].mig, sizeof(t.streams[i].mig), "%s", t.mig);
                else
                        snprintf(t.streams[i].mig, sizeof(t.streams[i].mig), "%s-%u", t.mig, i + 1);
        }
        t.dir_fd = open_dir_nofollow(argv[optind]);
        if (t.dir_fd < 0) {
                fprintf(stderr, "nm-xfer-send: cannot open %s: %s\n", argv[optind], strerror(-t.dir_fd));
                return 1;
        }
        mem_keep_stream_buffers(); /* as the agent's sender does */
        (void)uv_loop_init(&t.loop);
        if (local) {
                if (connect_local(&t, local) < 0)
                        return 1;
        } else {
                r = xfer_session_new(&t.loop, &so, &e, &t.s);
                if (r >= 0)
                        r = xfer_session_connect(t.s, connect_cb, &t);
                if (r < 0) {
                        fprintf(stderr, "nm-xfer-send: %s\n", nm_error_msg(&e));
                        return 1;
                }
        }
        (void)uv_run(&t.loop, UV_RUN_DEFAULT);
        for (unsigned i = 0; i < t.n_streams; i++)
                t.streams[i].x = xfer_send_free(t.streams[i].x);
        (void)uv_run(&t.loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&t.loop) < 0)
                fprintf(stderr, "nm-xfer-send: loop not empty at exit\n");
        for (unsigned i = 0; i < t.n_streams; i++) {
                files += t.streams[i].res.files;
                bytes += t.streams[i].res.bytes;
                wire += t.streams[i].res.wire_bytes;
                if (!t.streams[i].verified && t.status == 0)
                        fail(&t, -EIO, NULL, "not verified");
        }
        free(key);
        close(t.dir_fd);
        if (t.status < 0) {
                fprintf(stderr, "nm-xfer-send: %s\n", t.err.msg);
                return 1;
        }
        double secs = (double)(t.end_ns - t.start_ns) / 1e9;
        if (t.zstd)
                fprintf(stderr, "nm-xfer-send: %llu payload bytes on the wire for %llu bytes (%.2fx)\n",
                        (unsigned long long)wire, (unsigned long long)bytes,
                        wire ? (double)bytes / (double)wire : 0.0);
        printf("SENT %llu %llu %s %.3f %.1f\n", (unsigned long long)files, (unsigned long long)bytes,
               t.streams[0].res.hmac, secs, secs > 0 ? (double)bytes / secs / 1e6 : 0.0);
        return 0;
}
