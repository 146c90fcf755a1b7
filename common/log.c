/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static log_level max_level = LOG_LEVEL_INFO;
static const char *ident = "nucleus";
static bool timestamps = true;

static const char *const level_names[_LOG_LEVEL_MAX] = {
        [LOG_LEVEL_ERROR] = "error",
        [LOG_LEVEL_WARNING] = "warning",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_DEBUG] = "debug",
};

void log_set_level(log_level level) {
        max_level = level;
}

log_level log_get_level(void) {
        return max_level;
}

void log_set_ident(const char *s) {
        ident = s;
}

void log_set_timestamps(bool on) {
        timestamps = on;
}

const char *log_level_to_string(log_level level) {
        if (level < 0 || level >= _LOG_LEVEL_MAX)
                return NULL;
        return level_names[level];
}

int log_level_from_string(const char *s) {
        for (int i = 0; i < _LOG_LEVEL_MAX; i++)
                if (strcasecmp(s, level_names[i]) == 0)
                        return i;
        return -EINVAL;
}

static void log_vwrite(log_level level, const char *ctx, const char *file, int line, const char *func,
                       const char *fmt, va_list ap) {
        char stamp[32] = "";
        int saved = errno;

        if (timestamps) {
                struct timespec ts;
                struct tm tm;
                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
                snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
        }
        flockfile(stderr);
        fprintf(stderr, "%s%s[%d] %s", stamp, ident, (int)getpid(), level_names[level]);
        if (ctx)
                fprintf(stderr, " [%s]", ctx);
        if (max_level >= LOG_LEVEL_DEBUG)
                fprintf(stderr, " (%s:%d %s)", strrchr(file, '/') ? strrchr(file, '/') + 1 : file, line,
                        func);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        funlockfile(stderr);
        errno = saved;
}

void log_internal(log_level level, const char *ctx, const char *file, int line, const char *func,
                  const char *fmt, ...) {
        va_list ap;
        if (level > max_level)
                return;
        va_start(ap, fmt);
        log_vwrite(level, ctx, file, line, func, fmt, ap);
        va_end(ap);
}

int log_internal_errno(log_level level, int r, const char *ctx, const char *file, int line, const char *func,
                       const char *fmt, ...) {
        va_list ap;
        if (level > max_level)
                return r < 0 ? r : -r;
        /* %m in the format refers to r, as in systemd. */
        errno = r < 0 ? -r : r;
        va_start(ap, fmt);
        log_vwrite(level, ctx, file, line, func, fmt, ap);
        va_end(ap);
        return r < 0 ? r : -r;
}
