/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `nucleus-agent [OPTIONS]`: runs the daemon. */
int verb_daemon(int argc, char **argv);
