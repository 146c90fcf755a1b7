/* SPDX-License-Identifier: Apache-2.0 */
/* nm-xfer-send: streams a checkpoint directory the way the source agent
 * will, for tests: over SSH (libssh2 on libuv) to a command on the peer,
 * normally `nucleus-agent dial-stdio`, or straight to a unix socket with
 * --local-socket. Waits for VERIFIED. Prints on success:
 *   SENT <files> <bytes> <hmac> <seconds> <MB/s>
 * and on failure the reason on stderr, exit 1. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fs-util.h"
#include "transfer.h"

typedef struct sender {
        uv_loop_t loop;
        xfer_session *s;
        xfer_conn *c;
        xfer_send *x;
        xfer_hmac_hooks *hooks;
        int dir_fd;
        const char *command, *mig, *bad_digest;
        uint64_t idle_ms;
        bool progress, verified, no_verify;
        int status;
        nm_error err;
        xfer_send_result res;
        uint64_t start_ns, end_ns;
} sender;

static void fail(sender *t, int code, const nm_error *err, const char *what) {
        if (t->status < 0)
                return;
        t->status = code < 0 ? code : -EIO;
        if (err && err->msg[0])
                nm_error_set(&t->err, t->status, "%s", err->msg);
        else
                nm_error_errno(&t->err, t->status, "%s", what ? what : "failed");
}

static void end(sender *t) {
        if (t->c)
                xfer_conn_close(t->c, t->status < 0 ? t->status : 0, t->status < 0 ? &t->err : NULL);
        else if (t->s) {
                xfer_session_close(t->s, NULL, NULL);
                t->s = NULL;
        }
}

static void on_progress(const xfer_progress *p, void *ud) {
        sender *t = ud;
        if (t->progress)
                fprintf(stderr, "progress: %llu/%llu bytes, %llu/%llu files, %.1f MB/s\n",
                        (unsigned long long)p->bytes, (unsigned long long)p->total_bytes,
                        (unsigned long long)p->files, (unsigned long long)p->total_files, p->rate / 1e6);
}

static void send_done(xfer_send *x, int status, const nm_error *err, const xfer_send_result *res, void *ud) {
        sender *t = ud;
        (void)x;
        if (status < 0) {
                fail(t, status, err, "sending failed");
                end(t);
                return;
        }
        t->res = *res;
        if (t->no_verify) {
                /* Throughput runs against `cat >/dev/null`: done once the
                 * bytes have left and the channel closed. */
                t->verified = true;
                xfer_conn_close(t->c, 0, NULL);
                return;
        }
        /* Now wait for the verdict. */
}

static void on_message(xfer_conn *c, const proto_msg *m, void *ud) {
        sender *t = ud;
        nm_error e = {};

        if (m->type == PROTO_MSG_VERIFIED) {
                t->verified = true;
                t->end_ns = uv_hrtime();
                xfer_conn_close(c, 0, NULL);
        } else if (m->type == PROTO_MSG_ERROR) {
                nm_error_set(&e, m->error.code, "the receiver refused the images: %s", m->error.reason);
                fail(t, m->error.code, &e, NULL);
                xfer_conn_close(c, m->error.code, &e);
        }
}

static void on_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        sender *t = ud;
        (void)c;

        t->c = NULL;
        if (t->no_verify && !t->end_ns)
                t->end_ns = uv_hrtime();
        if (status < 0)
                fail(t, status, err, "connection failed");
        else if (!t->verified)
                fail(t, -EPIPE, NULL, "the peer closed the connection before verifying the images");
        xfer_send_abort(t->x, status < 0 ? status : -EPIPE, err);
        t->x = xfer_send_free(t->x);
        if (xfer_conn_exit_status(c) > 0 && t->status == 0)
                fail(t, -EIO, NULL, "the remote command failed");
        if (t->s) {
                xfer_session_close(t->s, NULL, NULL);
                t->s = NULL;
        }
}

static void start_send(sender *t) {
        xfer_send_options o = {
                .hooks = xfer_hmac_hooks_get(t->hooks),
                .mig = t->mig,
                .progress = on_progress,
                .test_bad_digest = t->bad_digest,
        };
        nm_error e = {};

        if (t->idle_ms)
                xfer_conn_set_idle_timeout(t->c, t->idle_ms);
        t->start_ns = uv_hrtime();
        if (xfer_send_dir(t->c, t->dir_fd, &o, send_done, t, &e, &t->x) < 0) {
                fail(t, e.code, &e, "cannot send");
                end(t);
        }
}

static void exec_cb(xfer_session *s, int status, const nm_error *err, xfer_conn *conn, void *ud) {
        sender *t = ud;
        (void)s;
        if (status < 0) {
                fail(t, status, err, "exec failed");
                end(t);
                return;
        }
        t->c = conn;
        start_send(t);
}

static void connect_cb(xfer_session *s, int status, const nm_error *err, void *ud) {
        sender *t = ud;
        xfer_conn_callbacks cbs = {.message = on_message, .closed = on_closed};
        int r;

        if (status < 0) {
                fail(t, status, err, "connect failed");
                end(t);
                return;
        }
        r = xfer_session_exec(s, t->command, &cbs, t, exec_cb, t);
        if (r < 0) {
                fail(t, r, NULL, "cannot run the remote command");
                end(t);
        }
}

static int connect_local(sender *t, const char *path) {
        xfer_conn_callbacks cbs = {.message = on_message, .closed = on_closed};
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "nm-xfer-send: cannot connect to %s: %m\n", path);
                return -1;
        }
        if (xfer_conn_new_fd(&t->loop, fd, &cbs, t, NULL, &t->c) < 0)
                return -1;
        start_send(t);
        return 0;
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
                {"progress", no_argument, NULL, 'P'},
                {"no-verify", no_argument, NULL, 'V'},
                {},
        };
        xfer_ssh_options so = {0};
        sender t = {.mig = "test-mig"};
        const char *keyfile = NULL, *local = NULL;
        char *key = NULL;
        size_t key_len = 0;
        nm_error e = {};
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'H': so.host = optarg; break;
                case 'p': so.port = (uint16_t)atoi(optarg); break;
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
                case 'P': t.progress = true; break;
                case 'V': t.no_verify = true; break;
                default: return 2;
                }
        }
        if (optind + 1 != argc || !keyfile || (!local && !so.host)) {
                fprintf(stderr, "usage: nm-xfer-send (--host H --key K --known-hosts F [--command CMD] | "
                                "--local-socket PATH) --hmac-key FILE [--mig ID] DIR\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        r = read_file_at(AT_FDCWD, keyfile, 4096, &key, &key_len);
        if (r < 0 || key_len < 32 || xfer_hmac_hooks_new(key, key_len, &t.hooks) < 0) {
                fprintf(stderr, "nm-xfer-send: cannot use key %s\n", keyfile);
                return 1;
        }
        free(key);
        t.dir_fd = open_dir_nofollow(argv[optind]);
        if (t.dir_fd < 0) {
                fprintf(stderr, "nm-xfer-send: cannot open %s: %s\n", argv[optind], strerror(-t.dir_fd));
                return 1;
        }
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
        t.x = xfer_send_free(t.x);
        (void)uv_run(&t.loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&t.loop) < 0)
                fprintf(stderr, "nm-xfer-send: loop not empty at exit\n");
        xfer_hmac_hooks_free(t.hooks);
        close(t.dir_fd);
        if (t.status < 0 || !t.verified) {
                fprintf(stderr, "nm-xfer-send: %s\n", t.status < 0 ? t.err.msg : "not verified");
                return 1;
        }
        double secs = (double)(t.end_ns - t.start_ns) / 1e9;
        printf("SENT %llu %llu %s %.3f %.1f\n", (unsigned long long)t.res.files,
               (unsigned long long)t.res.bytes, t.res.hmac, secs,
               secs > 0 ? (double)t.res.bytes / secs / 1e6 : 0.0);
        return 0;
}
