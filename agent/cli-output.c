/* SPDX-License-Identifier: Apache-2.0 */
#include "cli-output.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define PLAIN_PROGRESS_EVERY_MS 5000

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void format_bytes(char *buf, size_t n, uint64_t bytes) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = (double)bytes;
        size_t u = 0;
        while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, n, "%llu B", (unsigned long long)bytes);
        else
                snprintf(buf, n, "%.1f %s", v, units[u]);
}

void format_rate(char *buf, size_t n, uint64_t bps) {
        if (bps == 0)
                snprintf(buf, n, "-");
        else if (bps >= 1000000000ULL)
                snprintf(buf, n, "%.2f GB/s", (double)bps / 1e9);
        else if (bps >= 1000000ULL)
                snprintf(buf, n, "%.0f MB/s", (double)bps / 1e6);
        else
                snprintf(buf, n, "%.0f kB/s", (double)bps / 1e3);
}

void format_duration_ms(char *buf, size_t n, uint64_t ms) {
        if (ms < 1000)
                snprintf(buf, n, "%llu ms", (unsigned long long)ms);
        else if (ms < 60000)
                snprintf(buf, n, "%.2f s", (double)ms / 1000);
        else
                snprintf(buf, n, "%llum%02llus", (unsigned long long)(ms / 60000),
                         (unsigned long long)(ms / 1000 % 60));
}

void cli_out_init(cli_out *o, FILE *f, bool json) {
        *o = (cli_out){.f = f};
        if (json)
                o->mode = CLI_MODE_JSON;
        else {
                const char *term = getenv("TERM");
                o->mode = isatty(fileno(f)) && term && strcmp(term, "dumb") != 0 ? CLI_MODE_TTY
                                                                                 : CLI_MODE_PLAIN;
        }
}

static void end_line(cli_out *o) {
        if (o->line_open) {
                fputc('\n', o->f);
                o->line_open = false;
        }
}

static void progress_text(const cli_progress *p, char *buf, size_t n) {
        char done[32], total[32], rate[32], eta[32] = "";
        format_bytes(done, sizeof(done), p->bytes_done);
        format_bytes(total, sizeof(total), p->bytes_total);
        format_rate(rate, sizeof(rate), p->rate);
        if (p->eta_ms) {
                strcpy(eta, "  ETA ");
                format_duration_ms(eta + 6, sizeof(eta) - 6, p->eta_ms);
        }
        if (p->bytes_total)
                snprintf(buf, n, "%-12s %s / %s (%u%%)  %s%s", p->phase, done, total,
                         (unsigned)(p->bytes_done * 100 / p->bytes_total), rate, eta);
        else if (p->bytes_done)
                snprintf(buf, n, "%-12s %s  %s", p->phase, done, rate);
        else
                snprintf(buf, n, "%-12s%s%s", p->phase, p->message ? " " : "", p->message ? p->message : "");
}

static void progress_json(cli_out *o, const cli_progress *p) {
        json_t *e = json_pack("{s:s, s:s?, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "event", "progress",
                              "mig", p->mig, "phase", p->phase, "bytes_done", (json_int_t)p->bytes_done,
                              "bytes_total", (json_int_t)p->bytes_total, "files_done",
                              (json_int_t)p->files_done, "files_total", (json_int_t)p->files_total, "rate",
                              (json_int_t)p->rate, "eta_ms", (json_int_t)p->eta_ms, "message", p->message);
        if (e) {
                json_dumpf(e, o->f, JSON_COMPACT | JSON_PRESERVE_ORDER);
                fputc('\n', o->f);
                json_decref(e);
        }
}

void cli_out_progress(cli_out *o, const cli_progress *p) {
        char line[256];
        bool new_phase = strcmp(o->last_phase, p->phase) != 0;
        uint64_t t = now_ms();

        switch (o->mode) {
        case CLI_MODE_JSON: progress_json(o, p); break;
        case CLI_MODE_TTY:
                progress_text(p, line, sizeof(line));
                if (new_phase && o->line_open)
                        fputc('\n', o->f);
                fprintf(o->f, "\r\033[K%s", line);
                o->line_open = true;
                break;
        case CLI_MODE_PLAIN:
                if (!new_phase && t - o->last_plain_ms < PLAIN_PROGRESS_EVERY_MS)
                        break;
                progress_text(p, line, sizeof(line));
                fprintf(o->f, "%s\n", line);
                o->last_plain_ms = t;
                break;
        case _CLI_MODE_MAX:
        case _CLI_MODE_INVALID: break;
        }
        snprintf(o->last_phase, sizeof(o->last_phase), "%s", p->phase);
        fflush(o->f);
}

void cli_out_result(cli_out *o, json_t *doc, void (*text)(FILE *f, json_t *doc)) {
        end_line(o);
        if (o->mode == CLI_MODE_JSON || !text) {
                json_t *e = json_pack("{s:s, s:O}", "event", "result", "result", doc);
                if (e) {
                        json_dumpf(e, o->f, JSON_COMPACT | JSON_PRESERVE_ORDER);
                        fputc('\n', o->f);
                        json_decref(e);
                }
        } else {
                text(o->f, doc);
        }
        fflush(o->f);
}
