/* SPDX-License-Identifier: Apache-2.0 */
/* nm-ps-dump: the two ends of a dump whose pages go to a page server while
 * CRIU runs (CKPT_PAGES_TO_SERVER), joined by a socketpair on one node,
 * through ckpt exactly as an agent calls it.
 *
 *   nm-ps-dump [--no-server] [--if-safe] CONTAINER SRC DST WORK
 *
 * CONTAINER (a nucleus id or name in $NUCLEUS_STATE_DIR) is dumped into
 * SRC, held stopped (--if-safe: CKPT_HOLD_IF_SAFE instead of always); its
 * pages go to `criu page-server`, which writes them into DST/images. CRIU's
 * work directories are under WORK. --no-server: nobody reads the socket.
 * Prints one line per end:
 *   dump: status=S outcome=O pages=here|server stopped=0|1 running=0|1
 *   page-server: status=S     (or "not used" when the pages stayed in SRC)
 * and exits 0 when both ends succeeded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ckpt.h"

typedef enum end_state {
        END_RUNNING,
        END_OK,
        END_FAILED,
        END_ABSENT,
} end_state;

typedef struct run {
        end_state dump, server;
        int dump_fd;
        ckpt_page_server *ps;
} run;

static const char *outcome_name(ckpt_dump_outcome o) {
        switch (o) {
        case CKPT_DUMP_OK: return "ok";
        case CKPT_DUMP_FAILED_RUNNING: return "failed-running";
        case CKPT_DUMP_FAILED_IMAGES: return "failed-images";
        case CKPT_DUMP_FAILED_GONE: return "failed-gone";
        }
        return "?";
}

static void on_dumped(ckpt_dump_req *req, int status) {
        run *rn = req->data;

        /* CRIU is done with the socket: the server sees its end. */
        close(rn->dump_fd);
        rn->dump_fd = -1;
        rn->dump = status == 0 ? END_OK : END_FAILED;
        printf("dump: status=%d outcome=%s pages=%s stopped=%d running=%d\n", status,
               outcome_name(req->outcome), req->pages == CKPT_PAGES_TO_SERVER ? "server" : "here",
               req->stopped, req->source_running);
        if (status < 0)
                printf("dump: error: %s\n", nm_error_msg(&req->error));
        if (status == 0 && req->pages == CKPT_PAGES_HERE && rn->ps) {
                /* The tree could not be held: its pages stayed here, and
                 * the server has nothing to wait for. */
                rn->ps = ckpt_page_server_free(rn->ps);
                rn->server = END_ABSENT;
                printf("page-server: not used\n");
        }
        fflush(stdout);
}

static void on_server_done(ckpt_page_server *ps, int status, void *ud) {
        run *rn = ud;

        rn->server = status == 0 ? END_OK : END_FAILED;
        printf("page-server: status=%d\n", status);
        fflush(stdout);
        rn->ps = ckpt_page_server_free(ps);
}

static char *join(const char *a, const char *b) {
        char *s;
        return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

int main(int argc, char **argv) {
        bool no_server = false;
        ckpt_dump_hold hold = CKPT_HOLD_ALWAYS;
        int i = 1;

        for (; i < argc && argv[i][0] == '-'; i++) {
                if (strcmp(argv[i], "--no-server") == 0)
                        no_server = true;
                else if (strcmp(argv[i], "--if-safe") == 0)
                        hold = CKPT_HOLD_IF_SAFE;
                else
                        break;
        }
        if (argc - i != 4) {
                fprintf(stderr, "usage: nm-ps-dump [--no-server] [--if-safe] CONTAINER SRC DST WORK\n");
                return 2;
        }
        const char *ref = argv[i], *src = argv[i + 1], *dst = argv[i + 2], *work = argv[i + 3];
        const char *state_dir = getenv("NUCLEUS_STATE_DIR");
        ckpt_container *c = NULL;
        ckpt_criu *criu = NULL;
        nm_error err = {};
        int sv[2], r;

        if (ckpt_container_find(state_dir ? state_dir : "/var/run/nucleus", ref, &c, &err) < 0 ||
            ckpt_criu_resolve(NULL, &criu, &err) < 0) {
                fprintf(stderr, "nm-ps-dump: %s\n", nm_error_msg(&err));
                return 1;
        }
        /* CRIU's end is inherited by `criu swrk`: no close-on-exec. */
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
                perror("nm-ps-dump: socketpair");
                return 1;
        }
        uv_loop_t loop;
        run rn = {.dump = END_RUNNING, .server = no_server ? END_ABSENT : END_RUNNING, .dump_fd = sv[0]};
        char *ps_work = join(work, "page-server"), *dump_work = join(work, "dump");
        if (!ps_work || !dump_work || uv_loop_init(&loop) < 0)
                return 1;
        if (no_server)
                close(sv[1]);
        else if (ckpt_page_server_start(&loop, criu, dst, ps_work, sv[1], on_server_done, &rn, &err,
                                        &rn.ps) < 0) {
                fprintf(stderr, "nm-ps-dump: %s\n", nm_error_msg(&err));
                return 1;
        }
        ckpt_dump_req req = {.data = &rn};
        ckpt_dump_opts opts = {
                .criu = {.criu = criu, .work_dir = dump_work},
                .sign = true,
                .hold = hold,
                .pages = CKPT_PAGES_TO_SERVER,
                .pages_ps_fd = sv[0],
        };
        r = ckpt_dump(&loop, &req, c, src, &opts, on_dumped);
        if (r < 0) {
                fprintf(stderr, "nm-ps-dump: %s\n", nm_error_msg(&req.error));
                return 1;
        }
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        ckpt_dump_req_done(&req);
        ckpt_container_free(c);
        ckpt_criu_free(criu);
        free(ps_work);
        free(dump_work);
        return rn.dump == END_OK && rn.server != END_FAILED ? 0 : 1;
}
