/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

/* One subcommand: parses its own options (argv[0] is the subcommand name),
 * prints its own --help, and returns an nm_exit code. */
typedef int (*cli_verb_fn)(int argc, char **argv);

typedef struct cli_verb {
        const char *name;
        cli_verb_fn run;
        const char *summary; /* one line for the overview */
} cli_verb;

/* The program name used in messages ("nucleus-migrate", "nucleus-agent"). */
extern const char *cli_program;

typedef struct cli_program_info {
        const char *usage;       /* the usage line(s) after "Usage: " */
        const char *description; /* a paragraph */
        const cli_verb *verbs;   /* NULL-name terminated */
        /* Runs when argv[1] is no verb (or an option); NULL: unknown command. */
        cli_verb_fn fallback;
        bool fallback_has_help; /* --help goes to the fallback, not the overview */
        const char *epilogue;   /* printed after the verb list, or NULL */
} cli_program_info;

/* --help, --version, the verb table, the fallback: the shared main(). */
int cli_main(const cli_program_info *info, int argc, char **argv);
