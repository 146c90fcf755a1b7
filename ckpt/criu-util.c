/* SPDX-License-Identifier: Apache-2.0 */
/* Reading what CRIU leaves in its work directory: the log and the stats
 * images. No libcriu here. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "fs-util.h"

#define LOG_TAIL (64 * 1024)
#define EXCERPT_LINES 4

/* Every CRIU log on a host without CAP_SYS_RESOURCE has this Error line;
 * it says nothing about why a dump or restore failed. */
static bool harmless(const char *line) {
        return strstr(line, "RLIMIT_NOFILE") != NULL;
}

static const char *skip_stamp(const char *line) {
        /* "(00.123456) " */
        if (line[0] == '(') {
                const char *e = strchr(line, ')');
                if (e && e[1] == ' ')
                        line = e + 2;
        }
        while (*line == ' ')
                line++;
        return line;
}

static void join(char *buf, size_t size, char **lines, size_t n) {
        size_t used = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < n && used < size; i++) {
                int k = snprintf(buf + used, size - used, "%s%s", i ? " | " : "", skip_stamp(lines[i]));
                if (k < 0)
                        break;
                used += (size_t)k;
        }
}

int ckpt__log_excerpt(int dirfd, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *text = NULL;
        char *errors[EXCERPT_LINES], *last[EXCERPT_LINES], *save = NULL;
        size_t ne = 0, nl = 0, total_e = 0, total_l = 0;
        struct stat st;
        off_t off;
        ssize_t n;

        if (size == 0)
                return -EINVAL;
        buf[0] = '\0';
        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        off = st.st_size > LOG_TAIL ? st.st_size - LOG_TAIL : 0;
        text = malloc(LOG_TAIL + 1);
        if (!text)
                return -ENOMEM;
        n = pread(fd, text, LOG_TAIL, off);
        if (n < 0)
                return negative_errno();
        text[n] = '\0';
        /* A tail may start mid-line; drop that partial line. */
        char *start = text;
        if (off > 0 && (start = strchr(text, '\n')))
                start++;
        for (char *l = strtok_r(start ? start : text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                if (strstr(l, "Error (") && !harmless(l)) {
                        errors[total_e++ % EXCERPT_LINES] = l;
                        ne = ne < EXCERPT_LINES ? ne + 1 : ne;
                }
                if (!harmless(l)) {
                        last[total_l++ % EXCERPT_LINES] = l;
                        nl = nl < EXCERPT_LINES ? nl + 1 : nl;
                }
        }
        char *pick[EXCERPT_LINES];
        char **src = ne ? errors : last;
        size_t cnt = ne ? ne : nl, total = ne ? total_e : total_l;
        for (size_t i = 0; i < cnt; i++)
                pick[i] = src[(total - cnt + i) % EXCERPT_LINES];
        join(buf, size, pick, cnt);
        return 0;
}

/* ---- a minimal protobuf reader for stats.proto ------------------------ */

#define STATS_SERVICE_MAGIC 0x55105940u
#define STATS_MAGIC 0x57093306u

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
        uint64_t v = 0;
        for (unsigned shift = 0; shift < 64; shift += 7) {
                if (*p >= end)
                        return -EBADMSG;
                uint8_t b = *(*p)++;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

/* Level 0 is stats_entry (1: dump, 2: restore); level 1 the entry itself. */
static int parse_message(const uint8_t *p, const uint8_t *end, ckpt__stats *s, int level, bool dump) {
        while (p < end) {
                uint64_t key, v;
                if (varint(&p, end, &key) < 0)
                        return -EBADMSG;
                unsigned field = (unsigned)(key >> 3), wire = (unsigned)(key & 7);
                switch (wire) {
                case 0:
                        if (varint(&p, end, &v) < 0)
                                return -EBADMSG;
                        if (level == 1 && dump) {
                                switch (field) {
                                case 1: s->freezing_us = v; break;
                                case 2: s->frozen_us = v; break;
                                case 3: s->memdump_us = v; break;
                                case 4: s->memwrite_us = v; break;
                                case 7: s->pages_written = v; break;
                                default: break;
                                }
                        } else if (level == 1) {
                                switch (field) {
                                case 3: s->forking_us = v; break;
                                case 4: s->restore_us = v; break;
                                case 5: s->pages_restored = v; break;
                                default: break;
                                }
                        }
                        break;
                case 1:
                        if (end - p < 8)
                                return -EBADMSG;
                        p += 8;
                        break;
                case 2:
                        if (varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
                                return -EBADMSG;
                        if (level == 0 && (field == 1 || field == 2)) {
                                if (field == 1)
                                        s->dump = true;
                                else
                                        s->restore = true;
                                if (parse_message(p, p + v, s, 1, field == 1) < 0)
                                        return -EBADMSG;
                        }
                        p += v;
                        break;
                case 5:
                        if (end - p < 4)
                                return -EBADMSG;
                        p += 4;
                        break;
                default: return -EBADMSG;
                }
        }
        return 0;
}

int ckpt__stats_parse(const uint8_t *buf, size_t len, ckpt__stats *ret) {
        ckpt__stats s = {};
        uint32_t m1, m2, size;

        if (len < 12)
                return -EBADMSG;
        memcpy(&m1, buf, 4);
        memcpy(&m2, buf + 4, 4);
        memcpy(&size, buf + 8, 4);
        if (m1 != STATS_SERVICE_MAGIC || m2 != STATS_MAGIC || size > len - 12)
                return -EBADMSG;
        if (parse_message(buf + 12, buf + 12 + size, &s, 0, false) < 0)
                return -EBADMSG;
        *ret = s;
        return 0;
}
