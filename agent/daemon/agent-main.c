/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus-agent: the node daemon (no verb), and the relay its peers run. */
#include "cli.h"
#include "daemon.h"
#include "dial-stdio.h"

const char *cli_program = "nucleus-agent";

static const cli_verb verbs[] = {
        {"dial-stdio", verb_dial_stdio, "relay stdin/stdout to the local agent (for peers' SSH sessions)"},
        {},
};

static const cli_program_info info = {
        .usage = "nucleus-agent [OPTIONS...]\n"
                 "       nucleus-agent dial-stdio [OPTIONS...]",
        .description = "The nucleus-migrate node agent. Without a command it runs the daemon\n"
                       "(see 'nucleus-agent --help').",
        .verbs = verbs,
        .fallback = verb_daemon,
        .fallback_has_help = true,
};

int main(int argc, char **argv) {
        return cli_main(&info, argc, argv);
}
