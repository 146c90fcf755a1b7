/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Between mig-src.c (the source's adapter) and mig-src-lanes.c (its
 * lanes, feature "lanes"). Lane 0 is always the link itself. */

#include "mig.h"

/* The sessions to deal the pages over, the link included: --lanes or
 * [ssh] lanes, for pages streamed to a target that takes lanes; 0: none. */
uint32_t mig_src_lanes_wanted(const mig *m);
/* Resolves [ssh] lanes = auto once the move's size is known (the OFFER). */
void mig_src_lanes_choose(mig *m);
/* ACCEPT granted lanes: dials them, and feeds the core ACCEPT once they
 * joined or gave up. false: no lanes, the caller takes ACCEPT now. */
bool mig_src_lanes_dial(mig *m, const proto_accept *acc);

/* Lane i's connection (0: the link's), or NULL. */
xfer_conn *mig_src_lane_conn(mig *m, uint32_t lane);
/* The connection the next page frame goes on, its turn taken. */
xfer_conn *mig_src_deal(mig *m);
/* The most bytes queued on any lane dealt over, and all they wrote. */
size_t mig_src_lanes_queued_max(mig *m);
uint64_t mig_src_lanes_written(mig *m);
/* Fault injection: lane `lane` ends as a cut session would. */
void mig_src_lane_cut(mig *m, uint32_t lane);
