/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

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

/* fmt with its arguments, in small when it fits, else in memory of its own
 * (*ret_free, to be freed). */
static const char *format_msg(char *small, size_t size, char **ret_free, const char *fmt, va_list ap) {
        va_list copy;
        int n;

        *ret_free = NULL;
        va_copy(copy, ap);
        n = vsnprintf(small, size, fmt, copy);
        va_end(copy);
        if (n < (int)size || !(*ret_free = malloc((size_t)n + 1)))
                return small; /* fits, or out of memory: the message cut short */
        (void)vsnprintf(*ret_free, (size_t)n + 1, fmt, ap);
        return *ret_free;
}

/* The head, the escaped message and the newline leave in one write():
 * lines of processes appending to one log file never interleave, and a line
 * costs one system call, not one per byte (stderr has no buffer). */
static void write_line(const char *head, const char *msg) {
        char small[2048], *line = small;
        size_t cap = sizeof(small), want = strlen(head) + log_escape(msg, NULL, 0) + 2, n;

        if (want > cap) {
                char *big = malloc(want);
                if (big) { /* else the line is cut short */
                        line = big;
                        cap = want;
                }
        }
        n = strlen(head);
        if (n > cap - 2)
                n = cap - 2;
        memcpy(line, head, n);
        (void)log_escape(msg, line + n, cap - n - 1);
        n += strlen(line + n);
        line[n++] = '\n';
        (void)fwrite(line, 1, n, stderr);
        if (line != small)
                free(line);
}

static void log_vwrite(log_level level, const char *ctx, const char *file, int line, const char *func,
                       const char *fmt, va_list ap) {
        char stamp[32] = "", head[512], small[1024], *msg_free;
        const char *msg;
        int saved = errno;
        size_t n;

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
                n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
                snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
        }
        n = (size_t)snprintf(head, sizeof(head), "%s%s[%d] %s", stamp, ident, (int)getpid(),
                             level_names[level]);
        if (ctx && n < sizeof(head))
                n += (size_t)snprintf(head + n, sizeof(head) - n, " [%s]", ctx);
        if (max_level >= LOG_LEVEL_DEBUG && n < sizeof(head))
                n += (size_t)snprintf(head + n, sizeof(head) - n, " (%s:%d %s)",
                                      strrchr(file, '/') ? strrchr(file, '/') + 1 : file, line, func);
        if (n < sizeof(head))
                snprintf(head + n, sizeof(head) - n, ": ");
        errno = saved; /* %m */
        msg = format_msg(small, sizeof(small), &msg_free, fmt, ap);
        write_line(head, msg);
        free(msg_free);
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
