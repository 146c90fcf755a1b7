/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Finished migrations in memory: one summary per record in journal/done/
 * (role, phase, peer, restored_pid), so that a COMMIT or QUERY for a move
 * that is over, and an OFFER that reuses an id, are answered without
 * reading the disk.
 *
 * What is kept is not a count a peer can drive: records go when they are
 * older than the keep time ([agent] history_days; 0: never), or when one (role, peer) has more than
 * HISTORY_KEEP_PER_PEER, and then only that peer's own oldest. A flood of
 * OFFER+ABORT from one peer never pushes out another's records. */

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HISTORY_KEEP_MS (30ll * 24 * 3600 * 1000) /* the default: [agent] history_days = 30 */
#define HISTORY_KEEP_PER_PEER 1000

typedef struct history history;

history *history_new(int64_t keep_ms);
/* A new keep time (a reload), applied as records come and go. */
void history_set_keep(history *h, int64_t keep_ms);
history *history_free(history *h);

/* Adds the summary of a finished record (its "mig", "role", "phase",
 * "peer", "restored_pid"; its age from "created_at", else now_ms). The ids of records that are no
 * longer kept are appended to forget (a JSON array of strings): the
 * caller removes their files. -EINVAL for a record without an id. */
int history_add(history *h, const json_t *rec, int64_t now_ms, json_t *forget);

/* The summary of id ({"role", "phase", "peer", "restored_pid"}), or NULL. */
const json_t *history_get(const history *h, const char *id);

size_t history_size(const history *h);
