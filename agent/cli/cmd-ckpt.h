/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Local checkpoint subcommands of nucleus-migrate: no agent, no peer. */

int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_kill_tree(int argc, char **argv);
