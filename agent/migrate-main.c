/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus-migrate: the operator's and scheduler's command line. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd-ckpt.h"
#include "exit-codes.h"
#include "log.h"
#include "nm-config.h"

const char *cli_program = "nucleus-migrate";

static const cli_verb verbs[] = {
        {"checkpoint", cmd_checkpoint, "checkpoint a container on this node into a directory"},
        {"restore", cmd_restore, "restore a checkpoint directory on this node"},
        {"resume", cmd_resume, "continue a process tree restored with --leave-stopped"},
        {"kill-tree", cmd_kill_tree, "kill a restored process tree"},
        {"sign", cmd_sign, "write checkpoint.hmac for a checkpoint directory"},
        {"verify", cmd_verify, "verify a checkpoint directory against its checkpoint.hmac"},
        {},
};

static void usage(FILE *f) {
        fprintf(f,
                "Usage: %s COMMAND [OPTIONS...]\n"
                "\n"
                "Live migration of nucleus containers between nodes.\n"
                "\n"
                "Commands:\n",
                cli_program);
        for (const cli_verb *v = verbs; v->name; v++)
                fprintf(f, "  %-12s %s\n", v->name, v->summary);
        fprintf(f, "\nRun '%s COMMAND --help' for a command's options.\n", cli_program);
}

int main(int argc, char **argv) {
        log_set_ident("nucleus-migrate");
        if (argc < 2) {
                usage(stderr);
                return NM_EXIT_USAGE;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            strcmp(argv[1], "help") == 0) {
                usage(stdout);
                return NM_EXIT_OK;
        }
        if (strcmp(argv[1], "--version") == 0) {
                printf("nucleus-migrate %s\n", NM_VERSION);
                return NM_EXIT_OK;
        }
        for (const cli_verb *v = verbs; v->name; v++)
                if (strcmp(argv[1], v->name) == 0)
                        return v->run(argc - 1, argv + 1);
        fprintf(stderr, "%s: unknown command '%s'; see '%s --help'\n", cli_program, argv[1],
                cli_program);
        return NM_EXIT_USAGE;
}
