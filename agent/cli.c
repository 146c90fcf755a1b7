/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "exit-codes.h"
#include "log.h"
#include "nm-config.h"

static void usage(const cli_program_info *info, FILE *f) {
        fprintf(f, "Usage: %s\n\n%s\n\nCommands:\n", info->usage, info->description);
        for (const cli_verb *v = info->verbs; v->name; v++)
                fprintf(f, "  %-12s %s\n", v->name, v->summary);
        fprintf(f, "\nRun '%s COMMAND --help' for a command's options.\n", cli_program);
        if (info->epilogue)
                fprintf(f, "\n%s", info->epilogue);
}

int cli_main(const cli_program_info *info, int argc, char **argv) {
        log_set_ident(cli_program);
        bool help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
        if (argc >= 2 && (strcmp(argv[1], "help") == 0 || (help && !info->fallback_has_help))) {
                usage(info, stdout);
                return NM_EXIT_OK;
        }
        if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
                printf("%s %s\n", cli_program, NM_VERSION);
                return NM_EXIT_OK;
        }
        if (argc >= 2)
                for (const cli_verb *v = info->verbs; v->name; v++)
                        if (strcmp(argv[1], v->name) == 0)
                                return v->run(argc - 1, argv + 1);
        if (info->fallback)
                return info->fallback(argc, argv);
        if (argc < 2) {
                usage(info, stderr);
                return NM_EXIT_USAGE;
        }
        fprintf(stderr, "%s: unknown command '%s'; see '%s --help'\n", cli_program, argv[1], cli_program);
        return NM_EXIT_USAGE;
}
