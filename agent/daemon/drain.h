/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Draining this node: every running container moves to one of the targets,
 * N at a time, each to the target that reports the most room. One failure
 * does not stop the rest; the CLI gets a table at the end. */

#include "agent.h"

int drain_start(agent *a, ctl_conn *cli, const proto_drain *req, nm_error *err);
/* The CLI that asked left: the drain goes on without telling anyone. */
void drain_cli_gone(drain *d);
