/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* nucleus-migrate's side of the control socket: connect, HELLO as "cli",
 * send one request, then hand every EVENT to on_event until the RESULT (or
 * an ERROR) arrives. */

#include <jansson.h>

#include "cli-output.h"
#include "error.h"
#include "proto.h"

typedef struct cli_request {
        const char *socket;   /* NULL: from the configuration */
        const char *config;   /* NULL: the default file */
        const proto_msg *msg; /* the request */
        cli_out *out;         /* progress goes here */
        json_t *result;       /* out: the RESULT document (owned) */
        nm_error err;         /* out: an ERROR or a transport failure */
} cli_request;

/* Returns 0 with req->result set, or < 0 with req->err. -ECONNREFUSED and
 * -ENOENT mean no agent listens. */
int cli_call(cli_request *req);

/* The socket path from --socket, else the configuration, else the default;
 * NULL (err says why) when the configuration is refused. */
const char *cli_socket_path(const char *socket, const char *config, char *buf, size_t n, nm_error *err);
