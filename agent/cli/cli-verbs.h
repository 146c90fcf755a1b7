/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* nucleus-migrate verbs that talk to the local agent. */
int verb_migrate(int argc, char **argv);
int verb_drain(int argc, char **argv);
int verb_cordon(int argc, char **argv);
int verb_uncordon(int argc, char **argv);
int verb_status(int argc, char **argv);
int verb_list(int argc, char **argv);
int verb_resolve(int argc, char **argv);
