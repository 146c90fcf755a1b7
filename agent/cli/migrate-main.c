/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus-migrate: the operator's and scheduler's command line. */
#include <stdio.h>
#include <string.h>

#include "cli-verbs.h"
#include "cli.h"
#include "cmd-ckpt.h"
#include "exit-codes.h"

const char *cli_program = "nucleus-migrate";

static const cli_verb verbs[] = {
        {"migrate", verb_migrate, "move a container to another node (also: CONTAINER TARGET)"},
        {"drain", verb_drain, "move every running container off this node"},
        {"cordon", verb_cordon, "refuse incoming migrations on this node"},
        {"uncordon", verb_uncordon, "accept incoming migrations again"},
        {"status", verb_status, "this node, its containers, migrations in flight or recent"},
        {"list", verb_list, "containers and migrations, briefly"},
        {"resolve", verb_resolve, "settle a migration in doubt here, from the facts or by force"},
        {"checkpoint", cmd_checkpoint, "checkpoint a container on this node into a directory"},
        {"restore", cmd_restore, "restore a checkpoint directory on this node"},
        {"resume", cmd_resume, "continue a process tree restored with --leave-stopped"},
        {"kill-tree", cmd_kill_tree, "kill a restored process tree"},
        {"sign", cmd_sign, "write checkpoint.hmac for a checkpoint directory"},
        {"verify", cmd_verify, "verify a checkpoint directory against its checkpoint.hmac"},
        {},
};

/* `nucleus-migrate CONTAINER TARGET` is `migrate CONTAINER TARGET`. */
static int shorthand(int argc, char **argv) {
        if (argc >= 3 && argv[1][0] != '-')
                return verb_migrate(argc, argv);
        fprintf(stderr, "%s: unknown command or missing TARGET: '%s'; see '%s --help'\n", cli_program,
                argc >= 2 ? argv[1] : "", cli_program);
        return NM_EXIT_USAGE;
}

static const cli_program_info info = {
        .usage = "nucleus-migrate CONTAINER TARGET [OPTIONS...]\n"
                 "       nucleus-migrate COMMAND [OPTIONS...]",
        .description = "Live migration of nucleus containers between nodes. The local nucleus-agent\n"
                       "does the work; this command asks it and shows the progress.",
        .verbs = verbs,
        .fallback = shorthand,
        .epilogue = "Exit status: 0 moved; 1 failed, nothing changed; 2 usage; 3 refused; 4 rolled\n"
                    "back (runs here); 5 in doubt; 6 no such container; 7 integrity (HMAC);\n"
                    "8 agent not running; 9 lost. See nucleus-migrate(8).\n",
};

int main(int argc, char **argv) {
        if (argc < 2) {
                char *help[] = {argv[0], (char *)"help", NULL};
                cli_main(&info, 2, help);
                return NM_EXIT_USAGE;
        }
        return cli_main(&info, argc, argv);
}
