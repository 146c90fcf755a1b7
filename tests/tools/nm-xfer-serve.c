/* SPDX-License-Identifier: Apache-2.0 */
/* nm-xfer-serve: a stand-in for the agent's receiving side, for tests.
 * Listens on a unix socket; each connection may stream one image set into
 * <staging-dir>/<mig>, which is verified with HMAC-SHA256 under the key in
 * --hmac-key. Answers VERIFIED or ERROR. Prints one line per transfer:
 *   RECEIVED <mig> <files> <bytes> <hmac>
 *   FAILED <mig> <reason>
 * and one per session dial-stdio handed over (RELAY_FDS):
 *   TAKEN the session's pipes from dial-stdio
 * With --once (--count N) it exits after the first (N) transfers ended: 0
 * if all verified. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fs-util.h"
#include "transfer.h"

typedef struct server {
        uv_loop_t *loop;
        uv_pipe_t listener;
        uv_signal_t sigterm, sigint;
        int staging_fd;
        const char *key;
        size_t key_len;
        uint64_t idle_ms;
        unsigned count, reported; /* stop after count transfers (0: never) */
        bool stopping;
        bool file_mac; /* files end with FILE_MAC */
        int result;    /* -1: nothing yet, 0 ok, 1 failed */
} server;

typedef struct session {
        server *srv;
        xfer_conn *c;
        xfer_recv *r;
        char mig[PROTO_ID_MAX + 1];
        bool reported;
} session;

static void server_stop(server *srv);

static void report(session *s, int status, const char *msg, const xfer_recv_result *res) {
        if (s->reported)
                return;
        s->reported = true;
        if (status == 0 && res)
                printf("RECEIVED %s %llu %llu %s\n", s->mig, (unsigned long long)res->files,
                       (unsigned long long)res->bytes, res->hmac);
        else
                printf("FAILED %s %s\n", s->mig[0] ? s->mig : "-", msg);
        fflush(stdout);
        if (s->srv->result != 1)
                s->srv->result = status == 0 ? 0 : 1;
        if (s->srv->count && ++s->srv->reported == s->srv->count)
                server_stop(s->srv);
}

static void recv_done(xfer_recv *r, int status, const nm_error *err, const xfer_recv_result *res, void *ud) {
        session *s = ud;
        nm_error e = {};
        (void)r;

        report(s, status, nm_error_msg(err), res);
        if (!s->c)
                return;
        if (status == 0) {
                (void)xfer_conn_send(
                        s->c, &(proto_msg){.type = PROTO_MSG_VERIFIED, .verified = {.mig = s->mig}}, &e);
                xfer_conn_close(s->c, 0, NULL);
                return;
        }
        (void)xfer_conn_send(s->c,
                             &(proto_msg){.type = PROTO_MSG_ERROR,
                                          .error = {.mig = s->mig, .code = status, .reason = err->msg}},
                             NULL);
        xfer_conn_close(s->c, 0, NULL);
}

static void on_closed(xfer_conn *c, int status, const nm_error *err, void *ud);
static void on_message(xfer_conn *c, const proto_msg *m, void *ud);

/* dial-stdio hands the SSH session's pipes over, as to the agent. */
static void take_session(session *s, xfer_conn *c) {
        xfer_conn_callbacks cbs = {.message = on_message, .closed = on_closed};
        nm_error e = {};

        if (xfer_conn_take_relay(c, &cbs, s, &e, &s->c) < 0) {
                (void)xfer_conn_send(
                        c, &(proto_msg){.type = PROTO_MSG_ERROR, .error = {.code = e.code, .reason = e.msg}},
                        NULL);
                xfer_conn_close(c, 0, NULL);
                return;
        }
        printf("TAKEN the session's pipes from dial-stdio\n");
        fflush(stdout);
}

/* The staging writes caught up: read the peer again. */
static void on_drained(void *ud) {
        session *s = ud;
        if (s->c)
                xfer_conn_hold_reading(s->c, false);
}

static void on_message(xfer_conn *c, const proto_msg *m, void *ud) {
        session *s = ud;
        nm_error e = {};
        (void)c;

        if (m->type == PROTO_MSG_PING) {
                (void)xfer_conn_send(c, &(proto_msg){.type = PROTO_MSG_PONG, .pong = {.seq = m->ping.seq}},
                                     NULL);
                return;
        }
        /* dial-stdio says who the peer is before relaying: nothing to
         * check here. */
        if (m->type == PROTO_MSG_RELAY && !s->r)
                return;
        if (m->type == PROTO_MSG_RELAY_FDS && !s->r) {
                take_session(s, c);
                return;
        }
        if (!s->r) {
                const char *mig = proto_msg_mig(m);
                xfer_recv_options o = {
                        .key = s->srv->key,
                        .key_len = s->srv->key_len,
                        .mig = mig,
                        .idle_timeout_ms = s->srv->idle_ms,
                        .file_mac = s->srv->file_mac,
                        .drained = on_drained,
                };
                if (m->type != PROTO_MSG_FILE || !mig) {
                        report(s, -EPROTO, "the stream did not start with FILE", NULL);
                        xfer_conn_close(c, -EPROTO, NULL);
                        return;
                }
                snprintf(s->mig, sizeof(s->mig), "%s", mig);
                if (xfer_recv_new(s->srv->loop, s->srv->staging_fd, s->mig, &o, recv_done, s, &e, &s->r) <
                    0) {
                        report(s, e.code, e.msg, NULL);
                        xfer_conn_close(c, e.code, &e);
                        return;
                }
        }
        /* A refusal reaches recv_done, which answers the peer. */
        if (xfer_recv_feed(s->r, m, &e) == 0 && xfer_recv_full(s->r))
                xfer_conn_hold_reading(c, true);
}

static void on_closed(xfer_conn *c, int status, const nm_error *err, void *ud) {
        session *s = ud;
        nm_error e = {};
        (void)c;

        s->c = NULL;
        if (!s->reported && (s->r || status < 0)) {
                nm_error_set(&e, status < 0 ? status : -EPIPE,
                             "the connection ended before the transfer did: %s",
                             status < 0 ? nm_error_msg(err) : "closed by the peer");
                xfer_recv_abort(s->r, e.code, &e);
                report(s, e.code, e.msg, NULL);
        }
        s->r = xfer_recv_free(s->r);
        free(s);
}

static void free_handle(uv_handle_t *h) {
        free(h);
}

static void on_connection(uv_stream_t *listener, int status) {
        server *srv = listener->data;
        xfer_conn_callbacks cbs = {.message = on_message, .closed = on_closed};
        uv_pipe_t *client;
        session *s;
        nm_error e = {};

        if (status < 0)
                return;
        client = malloc(sizeof(*client));
        s = calloc(1, sizeof(*s));
        if (!client || !s) {
                free(client);
                free(s);
                return;
        }
        (void)uv_pipe_init(srv->loop, client, 1); /* ipc: RELAY_FDS */
        if (uv_accept(listener, (uv_stream_t *)client) < 0 ||
            xfer_conn_new_stream((uv_stream_t *)client, &cbs, s, &e, &s->c) < 0) {
                uv_close((uv_handle_t *)client, free_handle);
                free(s);
                return;
        }
        s->srv = srv;
}

static void server_stop(server *srv) {
        if (srv->stopping)
                return;
        srv->stopping = true;
        uv_close((uv_handle_t *)&srv->listener, NULL);
        uv_close((uv_handle_t *)&srv->sigterm, NULL);
        uv_close((uv_handle_t *)&srv->sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
        (void)signum;
        server_stop(h->data);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                {"socket", required_argument, NULL, 's'},   {"staging-dir", required_argument, NULL, 'd'},
                {"hmac-key", required_argument, NULL, 'k'}, {"idle-timeout", required_argument, NULL, 'i'},
                {"once", no_argument, NULL, 'o'},           {"count", required_argument, NULL, 'n'},
                {"file-mac", no_argument, NULL, 'M'},       {},
        };
        const char *sock = NULL, *dir = NULL, *keyfile = NULL;
        server srv = {.result = -1};
        uv_loop_t loop;
        char *key = NULL;
        size_t key_len = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 's': sock = optarg; break;
                case 'd': dir = optarg; break;
                case 'k': keyfile = optarg; break;
                case 'i': srv.idle_ms = strtoull(optarg, NULL, 10); break;
                case 'o': srv.count = 1; break;
                case 'n': srv.count = (unsigned)strtoul(optarg, NULL, 10); break;
                case 'M': srv.file_mac = true; break;
                default: return 2;
                }
        }
        if (!sock || !dir || !keyfile) {
                fprintf(stderr, "usage: nm-xfer-serve --socket PATH --staging-dir DIR --hmac-key FILE "
                                "[--idle-timeout MS] [--once | --count N] [--file-mac]\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        r = read_file_at(AT_FDCWD, keyfile, 4096, &key, &key_len);
        if (r < 0 || key_len < 32) {
                fprintf(stderr, "nm-xfer-serve: cannot use key %s\n", keyfile);
                return 1;
        }
        srv.key = key;
        srv.key_len = key_len;
        srv.staging_fd = open_dir_nofollow(dir);
        if (srv.staging_fd < 0) {
                fprintf(stderr, "nm-xfer-serve: cannot open %s: %s\n", dir, strerror(-srv.staging_fd));
                return 1;
        }
        (void)uv_loop_init(&loop);
        srv.loop = &loop;
        (void)uv_pipe_init(&loop, &srv.listener, 0);
        srv.listener.data = &srv;
        (void)unlink(sock);
        r = uv_pipe_bind(&srv.listener, sock);
        if (r >= 0)
                r = uv_listen((uv_stream_t *)&srv.listener, 16, on_connection);
        if (r < 0) {
                fprintf(stderr, "nm-xfer-serve: cannot listen on %s: %s\n", sock, uv_strerror(r));
                return 1;
        }
        (void)uv_signal_init(&loop, &srv.sigterm);
        (void)uv_signal_init(&loop, &srv.sigint);
        srv.sigterm.data = srv.sigint.data = &srv;
        (void)uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
        (void)uv_signal_start(&srv.sigint, on_signal, SIGINT);
        printf("LISTENING %s\n", sock);
        fflush(stdout);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        r = uv_loop_close(&loop);
        if (r < 0)
                fprintf(stderr, "nm-xfer-serve: loop not empty at exit\n");
        (void)unlink(sock);
        close(srv.staging_fd);
        free(key);
        return srv.result == 0 ? 0 : 1;
}
