/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus-agent dial-stdio: hands the SSH session's stdin/stdout to the
 * local agent (RELAY_FDS), or relays them to its control socket when the
 * agent does not take them. It carries no logic of its own, so that
 * authorized_keys can pin it as the only command a peer key may run; the
 * pinned command names the peer whose key it is (--peer), and dial-stdio
 * says so to the agent (RELAY_FDS, RELAY) before the first byte of the
 * peer's. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli-client.h"
#include "cli.h"
#include "dial-stdio.h"
#include "exit-codes.h"
#include "log.h"
#include "transfer.h"

static void help(FILE *f) {
        fprintf(f,
                "Usage: %s dial-stdio [--peer NAME] [--config FILE | --socket PATH] [--relay]\n"
                "\n"
                "Connects a peer's SSH session to the local agent. When stdin and stdout are pipes\n"
                "or sockets (as sshd gives them), the agent takes them over and reads and writes\n"
                "the session itself, and this waits until the session ends; an agent that does\n"
                "not take them (one older than this command) gets the session relayed instead.\n"
                "It is the forced command of peer keys in authorized_keys: it does nothing else.\n"
                "\n"
                "  --peer NAME     the peer whose key runs this (authorized_keys pins it): the agent\n"
                "                  takes the session for that peer's, whatever its HELLO says\n"
                "  --config FILE   read the socket path from the agent's configuration\n"
                "  --socket PATH   agent socket (default: from the configuration, else %s)\n"
                "  --relay         relay the session's bytes; never hand the session over\n"
                "  -h, --help      show this help\n",
                cli_program, XFER_DEFAULT_SOCKET);
}

/* Grows a pipe from or to sshd. The migration user cannot once its pipes
 * together hold more than fs.pipe-user-pages-soft, and the stream through
 * us then only slows: that is said on stderr, which the dialing agent
 * logs. */
static void grow_pipe(int fd, const char *name) {
        struct passwd *pw;
        int r, size;

        r = xfer_dial_grow_pipe(fd);
        if (r >= 0)
                return;
        size = fcntl(fd, F_GETPIPE_SZ);
        pw = getpwuid(geteuid());
        log_warning(
                "%s stays a pipe of %d KiB, not %d KiB (%s): user %s's pipes are over "
                "fs.pipe-user-pages-soft, or %d KiB is above fs.pipe-max-size; streams through this relay "
                "will be slower",
                name, size > 0 ? size / 1024 : 0, XFER_DIAL_PIPE_SIZE / 1024, strerror(-r),
                pw ? pw->pw_name : "(unknown)", XFER_DIAL_PIPE_SIZE / 1024);
}

typedef enum dial_mode {
        DIAL_HAND_OVER, /* the agent takes the session's pipes if it can */
        DIAL_RELAY,     /* --relay: we copy the bytes */
        _DIAL_MODE_MAX,
        _DIAL_MODE_INVALID = -EINVAL,
} dial_mode;

/* hand_over()'s answer when the session is still ours to relay. */
#define DIAL_NOT_TAKEN (-1)

/* An exit code once the agent has taken the session and it has ended, or
 * DIAL_NOT_TAKEN when the agent did not take it (nothing was read). */
static int hand_over(const char *socket_path, const char *peer) {
        proto_msg m = {.type = PROTO_MSG_RELAY_FDS, .relay = {.peer = peer}};
        nm_error err = {};
        int r;

        r = xfer_dial_handoff(socket_path, STDIN_FILENO, STDOUT_FILENO, &m, &err);
        if (r > 0)
                return NM_EXIT_OK;
        if (r == 0) {
                log_debug("relaying the session: %s", err.msg);
                return DIAL_NOT_TAKEN;
        }
        log_error("%s", nm_error_msg(&err));
        return r == -ECONNREFUSED ? NM_EXIT_UNAVAILABLE : NM_EXIT_FAILURE;
}

typedef struct dial_result {
        bool done;
        int status;
        nm_error err;
} dial_result;

static void done_cb(int status, const nm_error *err, void *userdata) {
        dial_result *res = userdata;
        res->done = true;
        res->status = status;
        if (err)
                res->err = *err;
}

int verb_dial_stdio(int argc, char **argv) {
        static const struct option options[] = {
                {"peer", required_argument, NULL, 'p'},   {"socket", required_argument, NULL, 's'},
                {"config", required_argument, NULL, 'c'}, {"relay", no_argument, NULL, 'r'},
                {"help", no_argument, NULL, 'h'},         {},
        };
        const char *socket_path = NULL, *config = NULL, *peer = NULL;
        char buf[4096];
        dial_result res = {};
        dial_mode mode = DIAL_HAND_OVER;
        uv_loop_t loop;
        nm_error err = {};
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'p': peer = optarg; break;
                case 's': socket_path = optarg; break;
                case 'c': config = optarg; break;
                case 'r': mode = DIAL_RELAY; break;
                case 'h': help(stdout); return NM_EXIT_OK;
                default: help(stderr); return NM_EXIT_USAGE;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "%s dial-stdio: unexpected argument '%s'\n", cli_program, argv[optind]);
                return NM_EXIT_USAGE;
        }
        socket_path = cli_socket_path(socket_path, config, buf, sizeof(buf), &err);
        if (!socket_path) {
                log_error("%s", nm_error_msg(&err));
                return NM_EXIT_FAILURE;
        }
        /* A peer that goes away must show up as EPIPE, not kill us. */
        signal(SIGPIPE, SIG_IGN);
        grow_pipe(STDIN_FILENO, "stdin");
        grow_pipe(STDOUT_FILENO, "stdout");
        if (mode == DIAL_HAND_OVER) {
                r = hand_over(socket_path, peer);
                if (r != DIAL_NOT_TAKEN)
                        return r;
        }

        r = uv_loop_init(&loop);
        if (r < 0) {
                log_error("cannot create the event loop: %s", uv_strerror(r));
                return NM_EXIT_FAILURE;
        }
        /* Always sent, with or without a name: the agent then knows that the
         * first frame is ours, never the peer's. */
        proto_msg relay = {.type = PROTO_MSG_RELAY, .relay = {.peer = peer}};
        r = xfer_dial_stdio(&loop, socket_path, STDIN_FILENO, STDOUT_FILENO, &relay, done_cb, &res, &err);
        if (r < 0) {
                log_error("%s", nm_error_msg(&err));
                (void)uv_run(&loop, UV_RUN_DEFAULT);
                (void)uv_loop_close(&loop);
                return NM_EXIT_FAILURE;
        }
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        r = uv_loop_close(&loop);
        if (r < 0)
                log_debug("event loop not empty at exit: %s", uv_strerror(r));
        if (!res.done || res.status < 0) {
                log_error("%s", res.done ? nm_error_msg(&res.err) : "relay ended without a result");
                return res.status == -ECONNREFUSED ? NM_EXIT_UNAVAILABLE : NM_EXIT_FAILURE;
        }
        return NM_EXIT_OK;
}
