/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Exit codes of nucleus-migrate. Scripts and schedulers branch on these, so
 * they never change meaning; new ones are added at the end. */
typedef enum nm_exit {
        NM_EXIT_OK = 0,          /* done: the container runs on the target */
        NM_EXIT_FAILURE = 1,     /* failed before anything changed */
        NM_EXIT_USAGE = 2,       /* bad command line */
        NM_EXIT_REFUSED = 3,     /* the target or this agent refused; the container never stopped */
        NM_EXIT_ROLLED_BACK = 4, /* stopped, then restored here: it still runs on this node */
        NM_EXIT_IN_DOUBT = 5,    /* the outcome is not known yet; `nucleus-migrate status` tells */
        NM_EXIT_NOT_FOUND = 6,   /* no such container, or the reference is ambiguous */
        NM_EXIT_INTEGRITY = 7,   /* a checkpoint failed HMAC verification */
        NM_EXIT_UNAVAILABLE = 8, /* the local agent is not reachable */
        NM_EXIT_LOST = 9,        /* no copy could be brought back: an operator must look (status) */
} nm_exit;
