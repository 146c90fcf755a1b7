/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One nucleus-migrate subcommand: parses its own options (argv[0] is the
 * subcommand name), prints its own --help, and returns an nm_exit code. */
typedef int (*cli_verb_fn)(int argc, char **argv);

typedef struct cli_verb {
        const char *name;
        cli_verb_fn run;
        const char *summary; /* one line for the overview */
} cli_verb;

/* "nucleus-migrate" or the subcommand path used in messages. */
extern const char *cli_program;
