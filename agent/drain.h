/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Draining this node: every running container moves to one of the targets,
 * N at a time, each to the target that reports the most room. One failure
 * does not stop the rest; the CLI gets a table at the end. */

#include "agent.h"

void drain_on_progress(drain *d, mig *m, const proto_event *ev);
void drain_on_finished(drain *d, mig *m);
