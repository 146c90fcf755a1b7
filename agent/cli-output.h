/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* How nucleus-migrate shows long work: on a TTY one live progress line
 * (phase, bytes, rate, ETA) redrawn in place; otherwise plain lines, one per
 * phase change and at most one progress line every few seconds; with --json
 * one JSON object per line (events, then the result), for machines. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cli_mode {
        CLI_MODE_TTY,
        CLI_MODE_PLAIN,
        CLI_MODE_JSON,
        _CLI_MODE_MAX,
        _CLI_MODE_INVALID = -1,
} cli_mode;

typedef struct cli_progress {
        const char *mig;
        const char *phase;
        uint64_t bytes_done, bytes_total;
        uint64_t files_done, files_total;
        uint64_t rate;   /* bytes/s */
        uint64_t eta_ms; /* 0: unknown */
        const char *message;
} cli_progress;

typedef struct cli_out {
        FILE *f;
        cli_mode mode;
        char last_phase[32];
        uint64_t last_plain_ms;
        bool line_open; /* a TTY progress line is on screen */
} cli_out;

void cli_out_init(cli_out *o, FILE *f, bool json);
void cli_out_progress(cli_out *o, const cli_progress *p);
/* Ends any live line; prints doc as JSON, or calls text(doc) for humans. */
void cli_out_result(cli_out *o, json_t *doc, void (*text)(FILE *f, json_t *doc));

/* "1.5 GiB", "12.0 MiB", "512 B" */
void format_bytes(char *buf, size_t n, uint64_t bytes);
/* "250 MB/s" (decimal, as network rates are), "—" for 0 */
void format_rate(char *buf, size_t n, uint64_t bytes_per_s);
/* "1.25 s", "340 ms", "2m05s" */
void format_duration_ms(char *buf, size_t n, uint64_t ms);
