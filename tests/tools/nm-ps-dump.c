/* SPDX-License-Identifier: Apache-2.0 */
/* nm-ps-dump: the two ends of a dump whose pages go to a page server while
 * CRIU runs (CKPT_PAGES_TO_SERVER), joined by a socketpair on one node,
 * through ckpt exactly as an agent calls it.
 *
 *   nm-ps-dump [--no-server] [--if-safe] [--link [--flip N]] [--stranger] CONTAINER SRC DST WORK
 *
 * CONTAINER (a nucleus id or name in $NUCLEUS_STATE_DIR) is dumped into
 * SRC, held stopped (--if-safe: CKPT_HOLD_IF_SAFE instead of always); its
 * pages go to `criu page-server`, which writes them into DST/images. CRIU's
 * work directories are under WORK. --no-server: nobody reads the socket.
 * --link: the bytes go through two ps_links (the source agent's end and the
 * target's) as the agents carry them, every frame tagged and checked, the
 * session being this process; --flip N flips a byte of the Nth page frame
 * on its way, and the target refusing it aborts both ends, as an agent's
 * ABORT would. --stranger: once the page server runs, another process (a
 * child of this one, neither it nor CRIU) opens a file in DST/images for
 * writing, as a stray writer would; its guard must refuse it. Prints one
 * line per end:
 *   dump: status=S outcome=O pages=here|server stopped=0|1 running=0|1
 *   page-server: status=S [why=...]  (or "not used" when the pages stayed in SRC)
 *   stranger: refused|allowed (...)                             (--stranger)
 *   link: state=open|ended|broken frames=N bytes=B replies=R   (--link)
 *   link: frame N refused (...)                                (--flip)
 * and exits 0 when both ends succeeded. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "ps-link.h"

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
        ps_link *src, *dst; /* --link: the two agents' ends */
        uint64_t flip;      /* the page frame to flip (from 1), 0 for none */
        uv_timer_t finish;  /* reports the link off the links' own callbacks */
} run;

static void maybe_finish(run *rn);

static const char *link_state_name(ps_link_state s) {
        switch (s) {
        case PS_LINK_OPEN: return "open";
        case PS_LINK_ENDED: return "ended";
        case PS_LINK_BROKEN: return "broken";
        }
        return "?";
}

/* The target refused what the source sent: an agent would ABORT, which
 * breaks the source's end too (its dump fails, the tasks run on). */
static void link_refused(run *rn, const char *what, int r) {
        printf("link: %s refused (%s)\n", what, strerror(-r));
        fflush(stdout);
        ps_link_break(rn->src);
}

static void src_frame(ps_link *l, const void *buf, size_t n, uint32_t size,
                      const uint8_t tag[static PS_MAC_LEN], void *ud) {
        run *rn = ud;
        uint64_t number = ps_link_frames_out(l);
        char what[64];
        int r;

        if (number == rn->flip) {
                uint8_t *bent = malloc(n);
                if (!bent)
                        abort();
                memcpy(bent, buf, n);
                bent[n / 2] ^= 0x01;
                r = ps_link_feed(rn->dst, bent, n, size, tag);
                free(bent);
        } else {
                r = ps_link_feed(rn->dst, buf, n, size, tag);
        }
        if (r < 0) {
                snprintf(what, sizeof(what), "frame %llu", (unsigned long long)number);
                link_refused(rn, what, r);
        } else if (ps_link_full(rn->dst)) {
                /* As an agent stops reading its peer: the dump waits. */
                ps_link_pause(rn->src, true);
        }
}

static void dst_drained(ps_link *l, void *ud) {
        run *rn = ud;
        (void)l;
        ps_link_pause(rn->src, false);
}

static void src_end(ps_link *l, const uint8_t tag[static PS_MAC_LEN], void *ud) {
        run *rn = ud;
        int r = ps_link_feed_end(rn->dst, tag);
        (void)l;
        if (r < 0)
                link_refused(rn, "the end", r);
        maybe_finish(rn);
}

static void dst_frame(ps_link *l, const void *buf, size_t n, uint32_t size,
                      const uint8_t tag[static PS_MAC_LEN], void *ud) {
        run *rn = ud;
        (void)l;
        if (ps_link_feed(rn->src, buf, n, size, tag) < 0)
                ps_link_break(rn->dst);
}

static void link_broken(ps_link *l, int status, const char *why, void *ud) {
        run *rn = ud;
        printf("link: %s end broken: %s (%d)\n", l == rn->src ? "source" : "target", why, status);
        fflush(stdout);
        ps_link_break(l == rn->src ? rn->dst : rn->src);
        maybe_finish(rn);
}

static const ps_link_ops src_link_ops = {.frame = src_frame, .end = src_end, .broken = link_broken};
static const ps_link_ops dst_link_ops = {.frame = dst_frame, .broken = link_broken, .drained = dst_drained};

/* Both ends of the link; *dump_fd and *server_fd are the CRIUs' ends. */
static int link_up(uv_loop_t *loop, run *rn, int *dump_fd, int *server_fd) {
        static const ps_link_binding b = {.mig = "nm-ps-dump", .source = "node1", .target = "node2"};
        uint8_t *key = NULL;
        size_t key_len = 0;
        nm_error err = {};
        int r;

        if (ckpt_key_load(NULL, &key, &key_len, &err) < 0) {
                fprintf(stderr, "nm-ps-dump: %s\n", nm_error_msg(&err));
                return -1;
        }
        r = ps_link_new(loop, PS_LINK_SOURCE, key, key_len, &b, &src_link_ops, rn, dump_fd, &rn->src);
        if (r >= 0)
                r = ps_link_new(loop, PS_LINK_TARGET, key, key_len, &b, &dst_link_ops, rn, server_fd,
                                &rn->dst);
        ckpt_key_free(key, key_len);
        if (r < 0)
                fprintf(stderr, "nm-ps-dump: cannot set up the link: %s\n", strerror(-r));
        return r;
}

static void link_report(run *rn) {
        if (!rn->dst)
                return;
        printf("link: state=%s frames=%llu bytes=%llu replies=%llu\n",
               link_state_name(ps_link_get_state(rn->dst)), (unsigned long long)ps_link_frames_in(rn->dst),
               (unsigned long long)ps_link_bytes_in(rn->dst),
               (unsigned long long)ps_link_frames_in(rn->src));
        rn->src = ps_link_free(rn->src);
        rn->dst = ps_link_free(rn->dst);
}

static const char *outcome_name(ckpt_dump_outcome o) {
        switch (o) {
        case CKPT_DUMP_OK: return "ok";
        case CKPT_DUMP_FAILED_RUNNING: return "failed-running";
        case CKPT_DUMP_FAILED_IMAGES: return "failed-images";
        case CKPT_DUMP_FAILED_GONE: return "failed-gone";
        }
        return "?";
}

/* The links keep the loop alive: they go once both CRIUs are done and the
 * source's end has seen its CRIU's socket close (or broke). */
static void finish_cb(uv_timer_t *t) {
        run *rn = t->data;

        if (rn->dump == END_RUNNING || rn->server == END_RUNNING ||
            (rn->src && ps_link_get_state(rn->src) == PS_LINK_OPEN))
                return;
        link_report(rn);
        uv_close((uv_handle_t *)t, NULL);
}

static void maybe_finish(run *rn) {
        if (!uv_is_closing((uv_handle_t *)&rn->finish))
                (void)uv_timer_start(&rn->finish, finish_cb, 0, 0);
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
        maybe_finish(rn);
}

static void on_server_done(ckpt_page_server *ps, int status, const char *why, void *ud) {
        run *rn = ud;

        rn->server = status == 0 ? END_OK : END_FAILED;
        printf("page-server: status=%d%s%s\n", status, why[0] ? " why=" : "", why);
        fflush(stdout);
        rn->ps = ckpt_page_server_free(ps);
        maybe_finish(rn);
}

static char *join(const char *a, const char *b) {
        char *s;
        return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

/* A file of DST/images opened for writing by a process that is neither
 * this one nor CRIU. The file is made (and removed) by this process, which
 * the guard lets through. */
static void stranger_write(const char *dst) {
        char *path = NULL;
        int fd, status = 0;
        pid_t child;

        if (asprintf(&path, "%s/images/stranger.probe", dst) < 0)
                return;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
                printf("stranger: cannot make the probe: %s\n", strerror(errno));
                free(path);
                return;
        }
        close(fd);
        child = fork();
        if (child == 0) {
                fd = open(path, O_WRONLY | O_CLOEXEC);
                _exit(fd >= 0 ? 0 : errno == EPERM ? 1 : 2);
        }
        if (child < 0 || waitpid(child, &status, 0) < 0)
                printf("stranger: cannot run: %s\n", strerror(errno));
        else
                printf("stranger: %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 1 ? "refused (EPERM)"
                                         : WIFEXITED(status) && WEXITSTATUS(status) == 0
                                                 ? "allowed"
                                                 : "failed otherwise");
        (void)unlink(path);
        free(path);
        fflush(stdout);
}

int main(int argc, char **argv) {
        bool no_server = false, link = false, stranger = false;
        ckpt_dump_hold hold = CKPT_HOLD_ALWAYS;
        uint64_t flip = 0;
        int i = 1;

        for (; i < argc && argv[i][0] == '-'; i++) {
                if (strcmp(argv[i], "--no-server") == 0)
                        no_server = true;
                else if (strcmp(argv[i], "--if-safe") == 0)
                        hold = CKPT_HOLD_IF_SAFE;
                else if (strcmp(argv[i], "--link") == 0)
                        link = true;
                else if (strcmp(argv[i], "--flip") == 0 && i + 1 < argc)
                        flip = strtoull(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--stranger") == 0)
                        stranger = true;
                else
                        break;
        }
        /* A link writes to CRIU's sockets with write(): a CRIU that went
         * away must be an error, not the end of this process. */
        signal(SIGPIPE, SIG_IGN);
        if (argc - i != 4 || (link && no_server) || (flip && !link) || (stranger && no_server)) {
                fprintf(stderr,
                        "usage: nm-ps-dump [--no-server] [--if-safe] [--link [--flip N]] [--stranger] "
                        "CONTAINER SRC DST WORK\n");
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
        uv_loop_t loop;
        run rn = {.dump = END_RUNNING, .server = no_server ? END_ABSENT : END_RUNNING, .flip = flip};
        char *ps_work = join(work, "page-server"), *dump_work = join(work, "dump");
        if (!ps_work || !dump_work || uv_loop_init(&loop) < 0 || uv_timer_init(&loop, &rn.finish) < 0)
                return 1;
        rn.finish.data = &rn;
        /* CRIU's end is inherited by `criu swrk`: no close-on-exec. */
        if (link) {
                if (link_up(&loop, &rn, &sv[0], &sv[1]) < 0)
                        return 1;
        } else if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
                perror("nm-ps-dump: socketpair");
                return 1;
        }
        rn.dump_fd = sv[0];
        if (no_server)
                close(sv[1]);
        else if (ckpt_page_server_start(&loop, criu, dst, ps_work, sv[1], on_server_done, &rn, &err,
                                        &rn.ps) < 0) {
                fprintf(stderr, "nm-ps-dump: %s\n", nm_error_msg(&err));
                return 1;
        }
        if (stranger)
                stranger_write(dst);
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
