/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `nucleus-migrate resolve MIG [--commit|--abort] [--force]`: a migration
 * held in doubt on this node, its destination, settled from the facts both
 * nodes can tell, or by the operator where they cannot (see
 * dst_resolve_decide); both journals record the decision. */

#include "agent.h"

/* The CLI's RESOLVE; 0 when under way (the RESULT follows), else -errno
 * with the reason (not in doubt, unknown). */
int resolve_start(ctl_conn *cc, const proto_resolve *req, nm_error *err);
/* The CLI that asked has gone: the decision is still carried out. */
void resolve_cli_gone(resolver *rv);

/* As a source: a QUERY that names the container also learns our phase and
 * whether a copy of the container runs here. */
void resolve_answer_query(ctl_conn *cc, const proto_query *q);
/* As a source: the destination settled one of our migrations. */
void resolve_record(ctl_conn *cc, const proto_resolved *r);
