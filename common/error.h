/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* An error that carries its cause across module boundaries. Lower modules
 * never log above debug level; they fill an nm_error, and the agent decides
 * what to tell the operator. A function that takes an nm_error returns
 * -errno on failure and, when the pointer is not NULL, leaves a sentence
 * there that says what failed and why. */

#include <stddef.h>

#include "macro.h"

#define NM_ERROR_MSG_MAX 2048

typedef struct nm_error {
        int code; /* -errno, 0 while unset */
        char msg[NM_ERROR_MSG_MAX];
} nm_error;

/* Records code and a formatted message; returns code (negative) so that
 * callers can write `return nm_error_set(err, -EINVAL, "...")`. An
 * existing message is kept: the first cause is the one worth reporting. */
int nm_error_set(nm_error *err, int code, const char *fmt, ...) _printf_(3, 4);

/* Like nm_error_set, but appends ": <strerror(-code)>". */
int nm_error_errno(nm_error *err, int code, const char *fmt, ...) _printf_(3, 4);

/* Prefixes context to an existing message ("while streaming: <msg>"). */
int nm_error_prefix(nm_error *err, const char *fmt, ...) _printf_(2, 3);

void nm_error_clear(nm_error *err);

#ifdef __clang_analyzer__
/* The static analyzer sees no further than a call into another file: tell
 * it that these return the code they were given, so that
 * `return nm_error_set(err, -EINVAL, ...)` is a failure on every path. */
#define nm_error_set(err, code, ...) (nm_error_set((err), (code), __VA_ARGS__), (code))
#define nm_error_errno(err, code, ...) (nm_error_errno((err), (code), __VA_ARGS__), (code))
#endif

static inline const char *nm_error_msg(const nm_error *err) {
        return err && err->msg[0] ? err->msg : "unknown error";
}
