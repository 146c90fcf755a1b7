/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The target's checks of an OFFER that block, run on the thread pool so
 * that the loop never waits for them: the CPU (the source's cpuinfo image
 * judged by CRIU here, `criu cpuinfo check`) when the offer carries one,
 * and, for a native container that publishes ports, whether one of them is
 * published here already (`iptables -S`, ckpt_native_check_ports). What
 * depends on the node as the loop sees it (cordon, free slots, the address
 * reservation) is checked on the loop when they are back: see mig-dst.c. */

#include "agent.h"

/* What the pool found. A code of 0: passed, or not asked. The ports are
 * not asked once the CPU failed (its refusal comes first). */
typedef struct offer_verdict {
        nm_error cpu;   /* -EOPNOTSUPP: CRIU here refuses the source's CPU; else CRIU could not say */
        nm_error ports; /* -EADDRINUSE: a published port is taken here */
} offer_verdict;

/* status: 0, or -ECANCELED when the checks never ran (v then says nothing). */
typedef void (*offer_check_done)(ctl_conn *cc, const proto_offer *o, int status, const offer_verdict *v);

/* Checks o (copied) on the pool: its CPU image if it carries one, and the
 * published ports of ports_of (the native container it describes; NULL:
 * none to check; taken over on every path). done runs on the loop once,
 * with the copy, unless this returns -errno or the session ends first. */
int offer_check_start(ctl_conn *cc, const proto_offer *o, ckpt_native *ports_of, offer_check_done done,
                      nm_error *err);

/* The session ended: a check under way is forgotten (it ends unheard). */
void offer_check_conn_closed(ctl_conn *cc);

/* Forgets the CPU images accepted lately (at exit). */
void offer_check_free_passes(agent *a);
