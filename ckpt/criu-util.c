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

/* ---- stats-dump / stats-restore (stats.proto) ------------------------ */

#define STATS_MAGIC 0x57093306u

/* stats_entry: 1 dump_stats_entry, 2 restore_stats_entry. */
static int parse_entry(const uint8_t *msg, size_t len, bool dump, ckpt__stats *s) {
        ckpt__pb pb = {msg, msg + len};
        ckpt__pb_field f;
        int r;

        while ((r = ckpt__pb_next(&pb, &f)) > 0) {
                if (f.wire != CKPT__PB_VARINT)
                        continue;
                if (dump) {
                        switch (f.number) {
                        case 1: s->freezing_us = f.v; break;
                        case 2: s->frozen_us = f.v; break;
                        case 3: s->memdump_us = f.v; break;
                        case 4: s->memwrite_us = f.v; break;
                        case 7: s->pages_written = f.v; break;
                        default: break;
                        }
                } else {
                        switch (f.number) {
                        case 3: s->forking_us = f.v; break;
                        case 4: s->restore_us = f.v; break;
                        case 5: s->pages_restored = f.v; break;
                        default: break;
                        }
                }
        }
        return r;
}

int ckpt__stats_parse(const uint8_t *buf, size_t len, ckpt__stats *ret) {
        ckpt__stats s = {};
        const uint8_t *msg;
        ckpt__img img;
        ckpt__pb pb;
        ckpt__pb_field f;
        size_t mlen;
        uint32_t m;
        int r;

        /* A stats image is a service image: both magics are required. */
        if (len < 8 || (memcpy(&m, buf, 4), m) != 0x55105940u)
                return -EBADMSG;
        r = ckpt__img_init(&img, buf, len, STATS_MAGIC);
        if (r >= 0)
                r = ckpt__img_next(&img, &msg, &mlen);
        if (r <= 0)
                return -EBADMSG;
        pb = (ckpt__pb){msg, msg + mlen};
        while ((r = ckpt__pb_next(&pb, &f)) > 0) {
                if (f.wire != CKPT__PB_BYTES || (f.number != 1 && f.number != 2))
                        continue;
                if (f.number == 1)
                        s.dump = true;
                else
                        s.restore = true;
                if (parse_entry(f.data, f.len, f.number == 1, &s) < 0)
                        return -EBADMSG;
        }
        if (r < 0)
                return -EBADMSG;
        *ret = s;
        return 0;
}
