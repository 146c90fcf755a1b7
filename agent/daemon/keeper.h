/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The supervisor's duties for native containers this agent restored. On
 * the source node nucleus's supervisor waits for its container and cleans
 * up after it; a copy restored here has none. The keeper watches each such
 * container (a pidfd on the loop) and, when it exits, removes what the
 * supervisor would: its address reservation, its cgroup and its state file
 * (ckpt_native_forget; the veth went with the network namespace). What it
 * keeps is written under <work dir>/kept, so that a restarted agent keeps
 * watching, and cleans up after a container that exited meanwhile. The
 * exited container's parent (init on these nodes) reaps it. */

#include <stdint.h>
#include <sys/types.h>

#include "agent.h"

typedef struct keeper_entry {
        const char *id;
        pid_t pid;
        uint64_t start_ticks;
        const char *address;     /* reserved in <state dir>/ip-alloc, or NULL */
        const char *cgroup_path; /* the cgroup made for it here, or NULL */
} keeper_entry;

/* Starts keeping a container that runs here (recorded first). */
int keeper_adopt(agent *a, const keeper_entry *e, nm_error *err);

/* nucleus masquerades its bridge's subnet on the node that runs the
 * container; a node that never ran one has no such rule. Adds
 * `POSTROUTING -s SUBNET ! -o BRIDGE -j MASQUERADE` to the nat table of
 * this node's network namespace unless it is there (iptables, on the loop
 * through uv_spawn; failures are logged). The rule stays, as the bridge
 * does. */
void keeper_ensure_masquerade(agent *a, const char *ctx, const char *subnet, const char *bridge);

/* At start-up: every recorded container is kept again, or, if it exited
 * while the agent was away, cleaned up after. */
void keeper_load_all(agent *a);

/* At exit: stops watching (the records stay for the next start). */
void keeper_close_all(agent *a);
