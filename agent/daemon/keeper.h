/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The supervisor's duties for native containers this agent restored. On
 * the source node nucleus's supervisor waits for its container and cleans
 * up after it; a copy restored here has none. The keeper watches each such
 * container (a pidfd on the loop) and, when it exits, removes what the
 * supervisor would: its MASQUERADE rule and its published ports' DNAT
 * rules (which the keeper added when it started keeping it), its address
 * reservation, its cgroup and its state file (ckpt_native_forget; the veth
 * went with the network namespace). What it
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
        /* The nat rules nucleus's supervisor keeps for a bridged container
         * (ckpt_native_nat): installed when the keeping starts, removed
         * when the container exits. */
        const char *subnet; /* its MASQUERADE rule's, or NULL */
        const char *bridge; /* ... and the bridge it excludes */
        const ckpt_native_port *ports;
        size_t n_ports;
} keeper_entry;

/* Starts keeping a container that runs here (recorded first). */
int keeper_adopt(agent *a, const keeper_entry *e, nm_error *err);

/* At start-up: every recorded container is kept again, or, if it exited
 * while the agent was away, cleaned up after. */
void keeper_load_all(agent *a);

/* At exit: stops watching (the records stay for the next start). */
void keeper_close_all(agent *a);
