/* SPDX-License-Identifier: Apache-2.0 */
/* nm-fake-criu: a stand-in CRIU for ckpt's unit tests of the CRIU turn,
 * which need dumps that stand still at a notification of their choosing.
 *
 *   nm-fake-criu --version   says it is CRIU 4.2.1
 *   nm-fake-criu swrk FD     answers one libcriu request on FD
 *
 * A dump sends the notifications a real one sends before it returns,
 * "pre-dump", and for a lazy dump (its request or its configuration file
 * says lazy-pages) "post-dump" (the images are complete and CRIU serves
 * the pages), each answered by libcriu; it then stands still
 * while the file $NM_FAKE_CRIU_DIR/hold-PID exists (PID: the tree it was
 * asked to dump), and fails. Any other request fails at once. Nothing is
 * dumped: the tests prove the turn, not CRIU. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criu/rpc.pb-c.h>

#define FAKE_MSG_MAX (64 * 1024)
#define FAKE_HOLD_POLL_US 10000

static int send_resp(int fd, const CriuResp *resp) {
        uint8_t buf[FAKE_MSG_MAX];
        size_t n = criu_resp__get_packed_size(resp);

        if (n > sizeof(buf))
                return -EMSGSIZE;
        criu_resp__pack(resp, buf);
        return send(fd, buf, n, 0) == (ssize_t)n ? 0 : -errno;
}

static CriuReq *recv_req(int fd) {
        uint8_t buf[FAKE_MSG_MAX];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);

        return n > 0 ? criu_req__unpack(NULL, (size_t)n, buf) : NULL;
}

/* A notification, and libcriu's answer: false when it asked CRIU to stop. */
static bool notify(int fd, const char *script) {
        CriuNotify note = CRIU_NOTIFY__INIT;
        CriuResp resp = CRIU_RESP__INIT;
        CriuReq *ack;
        bool go_on;

        note.script = (char *)script;
        resp.type = CRIU_REQ_TYPE__NOTIFY;
        resp.success = true;
        resp.notify = &note;
        if (send_resp(fd, &resp) < 0)
                return false;
        ack = recv_req(fd);
        go_on = ack && ack->type == CRIU_REQ_TYPE__NOTIFY && ack->has_notify_success && ack->notify_success;
        if (ack)
                criu_req__free_unpacked(ack, NULL);
        return go_on;
}

static void hold_while_asked(int pid) {
        const char *dir = getenv("NM_FAKE_CRIU_DIR");
        char path[4096];

        if (!dir)
                return;
        snprintf(path, sizeof(path), "%s/hold-%d", dir, pid);
        while (access(path, F_OK) == 0)
                usleep(FAKE_HOLD_POLL_US);
}

/* A lazy dump: asked for in the request or, as ckpt does, in its
 * configuration file (a line "lazy-pages"). */
static bool dump_is_lazy(const CriuOpts *o) {
        char line[256];
        bool lazy = o->has_lazy_pages && o->lazy_pages;
        FILE *f = o->config_file ? fopen(o->config_file, "re") : NULL;

        while (f && !lazy && fgets(line, sizeof(line), f))
                lazy = strcmp(line, "lazy-pages\n") == 0;
        if (f)
                fclose(f);
        return lazy;
}

static void dump(int fd, const CriuOpts *o) {
        if (o->has_notify_scripts && o->notify_scripts) {
                if (!notify(fd, "pre-dump"))
                        return;
                if (dump_is_lazy(o) && !notify(fd, "post-dump"))
                        return;
        }
        hold_while_asked(o->pid);
}

int main(int argc, char **argv) {
        CriuResp resp = CRIU_RESP__INIT;
        CriuReq *req;
        char *end;
        int fd;

        if (argc == 2 && strcmp(argv[1], "--version") == 0) {
                printf("Version: 4.2.1\nGitID: v4.2.1\n");
                return 0;
        }
        if (argc != 3 || strcmp(argv[1], "swrk") != 0) {
                fprintf(stderr, "usage: nm-fake-criu --version | swrk FD\n");
                return 2;
        }
        fd = (int)strtol(argv[2], &end, 10);
        if (*end || fd < 0) {
                fprintf(stderr, "nm-fake-criu: bad descriptor '%s'\n", argv[2]);
                return 2;
        }
        req = recv_req(fd);
        if (!req)
                return 1;
        if (req->type == CRIU_REQ_TYPE__DUMP && req->opts)
                dump(fd, req->opts);
        resp.type = req->type;
        resp.success = false;
        resp.cr_errmsg = (char *)"the stand-in CRIU dumps nothing";
        (void)send_resp(fd, &resp);
        criu_req__free_unpacked(req, NULL);
        return 1;
}
