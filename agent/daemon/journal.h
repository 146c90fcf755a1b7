/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The handoff journal: one JSON record per migration, replaced atomically
 * (write to a temp file, fsync, rename, fsync the directory) at every step,
 * so that after a crash the record says exactly which step was reached.
 * Finished migrations move to done/ and are kept for a time
 * (journal_set_keep; [agent] history_days) for `status`, and for answering
 * late messages (history.h: never by a count a peer can drive). */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

/* What status and lookups read at most of done/ at once (newest first). */
#define JOURNAL_KEEP_DONE 200
#define JOURNAL_KEEP_DEFAULT_S (30ull * 86400)

typedef struct journal journal;

int journal_open(const char *dir, journal **ret, nm_error *err);
journal *journal_free(journal *j);

/* Writes rec as the current record of migration mig (durable on return). */
int journal_put(journal *j, const char *mig, json_t *rec, nm_error *err);

/* The same in two halves, so that the blocking half (write, fsync, rename,
 * fsync the directory) can run on any thread while rec goes on changing:
 * the text of rec (NULL: out of memory), then its write. */
char *journal_record_text(const json_t *rec);
int journal_put_text(journal *j, const char *mig, const char *text, nm_error *err);

/* Every record in flight (not done), in no particular order; a JSON array. */
int journal_load_active(journal *j, json_t **ret, nm_error *err);

/* Recent finished records, newest first, at most max. */
int journal_load_done(journal *j, size_t max, json_t **ret, nm_error *err);
/* The same, finished at or after since_s (unix time). */
int journal_load_done_since(journal *j, size_t max, int64_t since_s, json_t **ret, nm_error *err);
/* The finished record of one migration: 0, -ENOENT, or another -errno. */
int journal_load_done_one(journal *j, const char *mig, json_t **ret);

/* How long finished records are kept (0: for ever); older ones are removed
 * when a migration finishes, and by journal_prune (blocking: start-up). */
void journal_set_keep(journal *j, uint64_t keep_s);
void journal_prune(journal *j);

/* Moves a finished migration's record to done/ (durable). Blocking, and
 * safe on any thread, as journal_put_text. */
int journal_finish(journal *j, const char *mig, nm_error *err);

/* Removes a finished record from done/ (none: fine). As journal_finish. */
int journal_forget(journal *j, const char *mig, nm_error *err);

/* A migration id usable as a file name: [A-Za-z0-9_-], 1..64. */
bool journal_valid_id(const char *mig);
