/* SPDX-License-Identifier: Apache-2.0 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* error.h's analyzer-only wrappers must not rename the definitions. */
#undef nm_error_set
#undef nm_error_errno

static int error_vset(nm_error *err, int code, int with_errno, const char *fmt, va_list ap) {
        if (!err)
                return code;
        if (err->code != 0 && err->msg[0])
                return code;
        err->code = code;
        int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        if (with_errno && n >= 0 && (size_t)n < sizeof(err->msg))
                snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", strerror(-code));
        return code;
}

int nm_error_set(nm_error *err, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        error_vset(err, code, 0, fmt, ap);
        va_end(ap);
        return code;
}

int nm_error_errno(nm_error *err, int code, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        error_vset(err, code, 1, fmt, ap);
        va_end(ap);
        return code;
}

int nm_error_prefix(nm_error *err, const char *fmt, ...) {
        char prefix[512], old[NM_ERROR_MSG_MAX];
        va_list ap;

        if (!err)
                return 0;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof(prefix), fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof(old));
        snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old[0] ? old : "unknown error");
        return err->code;
}

void nm_error_clear(nm_error *err) {
        if (!err)
                return;
        err->code = 0;
        err->msg[0] = '\0';
}
