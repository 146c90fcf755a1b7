/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Logging. Only agent/ logs above debug level; the other modules return
 * errors (common/error.h) and may leave debug traces. Every line can carry a
 * context tag (the migration id) so that one migration's story can be
 * followed with grep. */

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

typedef enum log_level {
        LOG_LEVEL_ERROR,
        LOG_LEVEL_WARNING,
        LOG_LEVEL_INFO,
        LOG_LEVEL_DEBUG,
        _LOG_LEVEL_MAX,
        _LOG_LEVEL_INVALID = -EINVAL,
} log_level;

void log_set_level(log_level level);
log_level log_get_level(void);
int log_level_from_string(const char *s);
const char *log_level_to_string(log_level level);

/* Program name shown in each line, e.g. "nucleus-agent". */
void log_set_ident(const char *ident);

/* Timestamps are left out under systemd, whose journal stamps lines itself. */
void log_set_timestamps(bool on);

/* Under systemd: each line goes to the journal as a record with fields
 * (MESSAGE, PRIORITY, CODE_*, NUCLEUS_MIGRATION=<ctx>, and what the
 * context provider adds), so that `journalctl NUCLEUS_MIGRATION=<id>`
 * finds one move. Plain stderr otherwise, and whenever the journal cannot
 * take a record. */
void log_set_journal(bool on);

/* Adds fields about a context tag (e.g. a migration's container, peer,
 * phase): up to max strings, KEY, value, ...; returns how many. Called only
 * on the thread that set it (the loop's), for journal records. */
typedef size_t (*log_ctx_fields_fn)(const char *ctx, const char **kv, size_t max, void *ud);
void log_set_ctx_fields(log_ctx_fields_fn fn, void *ud);

/* Every message is written as one line: control characters (line feeds,
 * carriage returns, escape sequences, DEL; tab passes) become \n, \r or
 * \xNN, so that text from a peer or a container can never forge a line of
 * its own. log_escape writes in's escaped form into out (at most size
 * bytes with the NUL, cut at a whole escape) and returns its full length. */
size_t log_escape(const char *in, char *out, size_t size);

void log_internal(log_level level, const char *ctx, const char *file, int line, const char *func,
                  const char *fmt, ...) _printf_(6, 7);

/* Returns r (a negative errno) after logging it, for `return log_errno(r, ...)`. */
int log_internal_errno(log_level level, int r, const char *ctx, const char *file, int line, const char *func,
                       const char *fmt, ...) _printf_(7, 8);

#define log_full(lvl, ctx, ...) log_internal(lvl, ctx, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_error(...) log_full(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_LEVEL_WARNING, NULL, __VA_ARGS__)
#define log_info(...) log_full(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_full(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)
#define log_error_errno(r, ...) \
        log_internal_errno(LOG_LEVEL_ERROR, r, NULL, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_warning_errno(r, ...) \
        log_internal_errno(LOG_LEVEL_WARNING, r, NULL, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_debug_errno(r, ...) \
        log_internal_errno(LOG_LEVEL_DEBUG, r, NULL, __FILE__, __LINE__, __func__, __VA_ARGS__)

/* With a context tag, e.g. the migration id. */
#define log_ctx_error(ctx, ...) log_full(LOG_LEVEL_ERROR, ctx, __VA_ARGS__)
#define log_ctx_warning(ctx, ...) log_full(LOG_LEVEL_WARNING, ctx, __VA_ARGS__)
#define log_ctx_info(ctx, ...) log_full(LOG_LEVEL_INFO, ctx, __VA_ARGS__)
#define log_ctx_debug(ctx, ...) log_full(LOG_LEVEL_DEBUG, ctx, __VA_ARGS__)
