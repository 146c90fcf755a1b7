/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sd.h"

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

static bool journal;
static log_ctx_fields_fn ctx_fields;
static void *ctx_fields_ud;
static pthread_t ctx_fields_thread;

void log_set_journal(bool on) {
        journal = on;
}

void log_set_ctx_fields(log_ctx_fields_fn fn, void *ud) {
        ctx_fields = fn;
        ctx_fields_ud = ud;
        ctx_fields_thread = pthread_self();
}

/* syslog's priorities, which the journal uses. */
static const char *const priorities[_LOG_LEVEL_MAX] = {
        [LOG_LEVEL_ERROR] = "3",
        [LOG_LEVEL_WARNING] = "4",
        [LOG_LEVEL_INFO] = "6",
        [LOG_LEVEL_DEBUG] = "7",
};

static int journal_write(log_level level, const char *ctx, const char *file, int line, const char *func,
                         const char *fmt, va_list ap) {
        char msg[8192], sline[16];
        const char *kv[32];
        size_t n = 0;

        char esc[8192];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        (void)log_escape(msg, esc, sizeof(esc)); /* one line, as on stderr */
        snprintf(sline, sizeof(sline), "%d", line);
        kv[n++] = "MESSAGE", kv[n++] = esc;
        kv[n++] = "PRIORITY", kv[n++] = priorities[level];
        kv[n++] = "SYSLOG_IDENTIFIER", kv[n++] = ident;
        kv[n++] = "CODE_FILE", kv[n++] = file;
        kv[n++] = "CODE_LINE", kv[n++] = sline;
        kv[n++] = "CODE_FUNC", kv[n++] = func;
        if (ctx) {
                kv[n++] = "NUCLEUS_MIGRATION", kv[n++] = ctx;
                if (ctx_fields && pthread_equal(pthread_self(), ctx_fields_thread))
                        n += ctx_fields(ctx, kv + n, ARRAY_SIZE(kv) - n, ctx_fields_ud);
        }
        return sd_journal_send_fields(kv, n);
}

/* The escaped form of byte c ("" when it passes as it is). */
static const char *escape_of(unsigned char c, char buf[5]) {
        if (c == '\n')
                return "\\n";
        if (c == '\r')
                return "\\r";
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
                snprintf(buf, 5, "\\x%02x", c);
                return buf;
        }
        return "";
}

size_t log_escape(const char *in, char *out, size_t size) {
        size_t len = 0;
        char buf[5];

        for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
                const char *e = escape_of(*p, buf);
                size_t n = *e ? strlen(e) : 1;
                if (out && len + n < size)
                        memcpy(out + len, *e ? e : (const char *)p, n);
                else if (out && size > 0 && len < size)
                        size = len + 1; /* no room for this one: stop writing here */
                len += n;
        }
        if (out && size > 0)
                out[len < size ? len : size - 1] = '\0';
        return len;
}

/* The message, formatted, then escaped on its way out. */
static void fputs_escaped(const char *fmt, va_list ap) {
        char small[1024], *msg = small, esc[5];
        va_list copy;
        int n;

        va_copy(copy, ap);
        n = vsnprintf(small, sizeof(small), fmt, copy);
        va_end(copy);
        if (n >= (int)sizeof(small) && !(msg = malloc((size_t)n + 1)))
                msg = small; /* out of memory: the message cut short */
        else if (msg != small)
                (void)vsnprintf(msg, (size_t)n + 1, fmt, ap);
        for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
                const char *e = escape_of(*p, esc);
                if (*e)
                        fputs(e, stderr);
                else
                        fputc(*p, stderr);
        }
        if (msg != small)
                free(msg);
}

static void log_vwrite(log_level level, const char *ctx, const char *file, int line, const char *func,
                       const char *fmt, va_list ap) {
        char stamp[32] = "";
        int saved = errno;

        if (journal) {
                va_list aq;
                va_copy(aq, ap);
                int r = journal_write(level, ctx, file, line, func, fmt, aq);
                va_end(aq);
                errno = saved;
                if (r >= 0)
                        return;
        }

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
        fputs_escaped(fmt, ap);
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
