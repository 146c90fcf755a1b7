/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Between mig-dst.c (the target's adapter) and mig-dst-lanes.c (its
 * lanes, feature "lanes"). Lane 0 is the migration's own session
 * (peer_cc); LANE_JOIN itself is mig.h's mig_dst_lane_join. */

#include "mig.h"

/* Grants the lanes the OFFER asked for in ACCEPT, under a fresh secret;
 * without the kernel's randomness, none. */
void mig_dst_lanes_grant(mig *m, proto_accept *acc);
/* Whether the pages come in turns now: over more than one lane, until
 * their end frame. */
bool mig_dst_in_turns(const mig *m);
/* Sets every lane's hold from the rule: none read while the consumers are
 * behind; in turns, the due lane; before LANES, lane 0 alone. */
void mig_dst_lanes_read(mig *m);
/* Ends lanes `from` and above (never lane 0): they carry nothing else. */
void mig_dst_lanes_end(mig *m, uint32_t from);
