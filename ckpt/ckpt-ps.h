/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The criu processes that talk CRIU's page-server protocol on a socket the
 * agent relays: `criu page-server` (page-server.c) and `criu lazy-pages`
 * (lazy.c). */

#include <uv.h>

#include "ckpt.h"
#include "error.h"

/* <dir>/images, where both write and read (NULL: out of memory). */
char *ckpt__ps_images(const char *dir);

/* Starts criu in mode ("page-server", "lazy-pages") on the images directory,
 * talking CRIU's page-server protocol on ps_fd (taken over: closed here),
 * its log in work_dir (which must exist). proc is initialised (to be
 * closed) even when it fails. */
int ckpt__ps_spawn(uv_loop_t *loop, uv_process_t *proc, const ckpt_criu *criu, const char *mode,
                   char *images, const char *work_dir, const char *log, int ps_fd, uv_exit_cb exit_cb,
                   nm_error *err);
