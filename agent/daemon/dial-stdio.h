/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* `nucleus-agent dial-stdio [--socket PATH]`: what a peer's SSH session
 * runs (the forced command in authorized_keys). */
int verb_dial_stdio(int argc, char **argv);
