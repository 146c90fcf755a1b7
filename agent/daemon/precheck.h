/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What a move checks before anything is frozen, beyond the OFFER's own
 * checks: that both nodes hold the same HMAC key (HELLO's key_id), that
 * CRIU works on both (`criu check`), and that the target's CPU offers what
 * the source's did (CRIU's cpuinfo image of the source, checked by CRIU on
 * the target, on the thread pool: offer-check.h). A failure refuses the
 * move (exit 3) with the reason.
 *
 * `criu check` and this CPU's cpuinfo image are facts of the node: taken at
 * start-up, kept in <work_dir>/node-facts.json for as long as the criu
 * binary (device, inode, size, mtime), the kernel and the boot stay the
 * same, and taken again on the thread pool when one of them changed (moves
 * are refused as busy meanwhile). */

#include "agent.h"

typedef enum node_check_state {
        NODE_CHECK_PASSED,
        NODE_CHECK_FAILED,
        NODE_CHECK_RUNNING, /* taken again, on the thread pool */
        _NODE_CHECK_STATE_MAX,
        _NODE_CHECK_STATE_INVALID = -EINVAL,
} node_check_state;

/* At start-up, before the loop runs: the cached facts, or CRIU asked now. */
int precheck_setup(agent *a, nm_error *err);
void precheck_free(agent *a);

/* The source, before its OFFER: 0, or -EOPNOTSUPP (keys differ, CRIU fails
 * here) / -EBUSY (CRIU being checked again) with the reason. peer_key_id
 * "" (a peer that sends none) is not compared. */
int precheck_source(agent *a, const char *peer, const char *peer_key_id, nm_error *err);

/* This CPU as CRIU records it (for the OFFER); NULL when CRIU could not. */
const uint8_t *precheck_cpuinfo(agent *a, size_t *ret_len);

/* The target, on an OFFER: the key and `criu check`; 0, or -1 with the
 * REJECT's code and reason. */
int precheck_target(agent *a, const ctl_conn *cc, proto_reject_code *ret_code, char *why, size_t n);

/* For status: "passed", "failed", "running". */
const char *node_check_state_to_string(node_check_state s);
json_t *precheck_status(agent *a);
