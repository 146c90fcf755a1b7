/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus-agent: the node daemon and the helpers its peers run. Each verb
 * parses its own options; the daemon itself is one more entry in verbs[]. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dial-stdio.h"
#include "exit-codes.h"
#include "log.h"
#include "nm-config.h"

const char *cli_program = "nucleus-agent";

static const cli_verb verbs[] = {
        {"dial-stdio", verb_dial_stdio, "relay stdin/stdout to the local agent (for peers' SSH sessions)"},
        {},
};

static void usage(FILE *f) {
        fprintf(f,
                "Usage: %s COMMAND [OPTIONS...]\n"
                "\n"
                "The nucleus-migrate node agent.\n"
                "\n"
                "Commands:\n",
                cli_program);
        for (const cli_verb *v = verbs; v->name; v++)
                fprintf(f, "  %-12s %s\n", v->name, v->summary);
        fprintf(f, "\nRun '%s COMMAND --help' for a command's options.\n", cli_program);
}

int main(int argc, char **argv) {
        log_set_ident(cli_program);
        if (argc < 2) {
                usage(stderr);
                return NM_EXIT_USAGE;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
                usage(stdout);
                return NM_EXIT_OK;
        }
        if (strcmp(argv[1], "--version") == 0) {
                printf("%s %s\n", cli_program, NM_VERSION);
                return NM_EXIT_OK;
        }
        for (const cli_verb *v = verbs; v->name; v++)
                if (strcmp(argv[1], v->name) == 0)
                        return v->run(argc - 1, argv + 1);
        fprintf(stderr, "%s: unknown command '%s'; see '%s --help'\n", cli_program, argv[1], cli_program);
        return NM_EXIT_USAGE;
}
