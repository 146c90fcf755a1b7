/* SPDX-License-Identifier: Apache-2.0 */
/* `criu page-server` on a socket the caller relays: the receiving end of a
 * dump that sends its pages while it runs (CKPT_PAGES_TO_SERVER). Also the
 * spawn it shares with the lazy-pages daemon (lazy.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt-ps.h"
#include "ckpt.h"
#include "fs-util.h"
#include "macro.h"

#define PS_LOG "page-server.log"

typedef enum ps_phase {
        PS_RUNNING,
        PS_EXITED,
} ps_phase;

struct ckpt_page_server {
        uv_process_t proc;
        ps_phase phase;
        bool freed; /* the caller let go: the exit only closes the handle */
        int imgfd;
        /* From before CRIU starts until its files are sealed: nothing but
         * CRIU and this process opens or changes them (the pages were
         * checked on their way in, not on the disk). */
        ckpt__guard *guard;
        char why[320];
        ckpt_page_server_cb done;
        void *userdata;
};

char *ckpt__ps_images(const char *dir) {
        char *images;
        return asprintf(&images, "%s/%s", dir, CKPT_IMAGES_DIR) < 0 ? NULL : images;
}

int ckpt__ps_spawn(uv_loop_t *loop, uv_process_t *proc, const ckpt_criu *criu, const char *mode,
                   char *images, const char *work_dir, const char *log, int ps_fd, uv_exit_cb exit_cb,
                   nm_error *err) {
        bool lazy = strcmp(mode, "lazy-pages") == 0;
        int r;

        /* The socket is the child's fd 3. */
        char *args[] = {criu->path, (char *)mode, (char *)"--ps-socket", (char *)"3", (char *)"-D", images,
                        (char *)"-W", (char *)work_dir, (char *)"-o", (char *)log, (char *)"-v4",
                        /* lazy-pages fetches from a page server, not a socket of its own */
                        lazy ? (char *)"--page-server" : NULL, NULL};
        uv_stdio_container_t stdio[4] = {
                {.flags = UV_IGNORE},
                {.flags = UV_IGNORE},
                {.flags = UV_IGNORE},
                {.flags = UV_INHERIT_FD, .data.fd = ps_fd},
        };
        uv_process_options_t po = {
                .exit_cb = exit_cb,
                .file = criu->path,
                .args = args,
                .stdio = stdio,
                .stdio_count = 4,
        };
        r = uv_spawn(loop, proc, &po);
        close(ps_fd); /* the child has its own now */
        if (r < 0)
                return nm_error_set(err, r, "cannot start %s %s: %s", criu->path, mode, uv_strerror(r));
        return 0;
}

static void ps_handle_closed(uv_handle_t *h) {
        ckpt_page_server *ps = h->data;

        (void)ckpt__guard_stop(ps->guard, NULL, 0);
        if (ps->imgfd >= 0)
                close(ps->imgfd);
        free(ps);
}

/* CRIU's files sealed, then the guard's verdict: 0, or why they cannot be
 * trusted. */
static int ps_seal(ckpt_page_server *ps) {
        char msg[256];
        int r = fs_seal_dir_files(ps->imgfd);
        int g = ckpt__guard_stop(ps->guard, msg, sizeof(msg));

        ps->guard = NULL;
        if (g < 0) {
                snprintf(ps->why, sizeof(ps->why), "%s", msg);
                return g;
        }
        if (r < 0) {
                snprintf(ps->why, sizeof(ps->why), "cannot seal the page server's files: %s", strerror(-r));
                return r;
        }
        if (msg[0]) /* refused opens only: nothing changed */
                snprintf(ps->why, sizeof(ps->why), "%s", msg);
        return 0;
}

static void ps_exited(uv_process_t *p, int64_t exit_status, int term_signal) {
        ckpt_page_server *ps = p->data;
        int r = -EIO;

        ps->phase = PS_EXITED;
        if (exit_status == 0 && term_signal == 0)
                r = ps_seal(ps);
        else
                snprintf(ps->why, sizeof(ps->why), "criu page-server exited with %s %d",
                         term_signal ? "signal" : "status", term_signal ? term_signal : (int)exit_status);
        if (!ps->freed) {
                ps->done(ps, r, ps->why, ps->userdata);
                return;
        }
        uv_close((uv_handle_t *)&ps->proc, ps_handle_closed);
}

int ckpt_page_server_start(uv_loop_t *loop, const ckpt_criu *criu, const char *dir, const char *work_dir,
                           int ps_fd, ckpt_page_server_cb done, void *userdata, nm_error *err,
                           ckpt_page_server **ret) {
        _cleanup_free_ char *images = NULL;
        ckpt_page_server *ps;
        int wfd, r;

        if (!loop || !criu || !dir || !work_dir || ps_fd < 0 || !done || !ret) {
                if (ps_fd >= 0)
                        close(ps_fd);
                return -EINVAL;
        }
        wfd = mkdir_p_secure(work_dir, 0700);
        if (wfd < 0) {
                close(ps_fd);
                return nm_error_errno(err, wfd, "cannot create CRIU work directory %s", work_dir);
        }
        close(wfd);
        images = ckpt__ps_images(dir);
        ps = images ? calloc(1, sizeof(*ps)) : NULL;
        if (!ps) {
                close(ps_fd);
                return nm_error_set(err, -ENOMEM, "out of memory");
        }
        ps->done = done;
        ps->userdata = userdata;
        ps->proc.data = ps;
        ps->imgfd = open(images, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (ps->imgfd < 0) {
                r = nm_error_errno(err, negative_errno(), "cannot open %s", images);
                close(ps_fd);
                free(ps);
                return r;
        }
        r = ckpt__guard_start_dir(ps->imgfd, &ps->guard, err);
        if (r < 0) {
                close(ps_fd);
                close(ps->imgfd);
                free(ps);
                return r;
        }
        r = ckpt__ps_spawn(loop, &ps->proc, criu, "page-server", images, work_dir, PS_LOG, ps_fd, ps_exited,
                           err);
        if (r < 0) {
                /* uv_spawn initialised the handle even though it failed */
                uv_close((uv_handle_t *)&ps->proc, ps_handle_closed);
                return r;
        }
        ckpt__guard_set_keeper(ps->guard, ps->proc.pid);
        *ret = ps;
        return 0;
}

ckpt_page_server *ckpt_page_server_free(ckpt_page_server *ps) {
        if (!ps || ps->freed)
                return NULL;
        ps->freed = true;
        if (ps->phase == PS_RUNNING) {
                /* Its exit closes the handle (ps_exited). */
                (void)uv_process_kill(&ps->proc, SIGKILL);
                return NULL;
        }
        uv_close((uv_handle_t *)&ps->proc, ps_handle_closed);
        return NULL;
}
