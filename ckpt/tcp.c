/* SPDX-License-Identifier: Apache-2.0 */
/* Established TCP connections of a tree to dump: the modes, and which one
 * suits a tree when nobody chose. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"

static const char *const tcp_names[_CKPT_TCP_MODE_MAX] = {
        [CKPT_TCP_REFUSE] = "refuse",
        [CKPT_TCP_MOVE] = "move",
        [CKPT_TCP_CLOSE] = "close",
};

const char *ckpt_tcp_mode_to_string(ckpt_tcp_mode m) {
        if (m < 0 || m >= _CKPT_TCP_MODE_MAX)
                return NULL;
        return tcp_names[m];
}

ckpt_tcp_mode ckpt_tcp_mode_from_string(const char *s) {
        for (int i = 0; s && i < _CKPT_TCP_MODE_MAX; i++)
                if (strcmp(s, tcp_names[i]) == 0)
                        return (ckpt_tcp_mode)i;
        return _CKPT_TCP_MODE_INVALID;
}

/* A connection can only survive a move if both its ends come along or stay
 * reachable: those inside a network namespace that moves with the tree do;
 * those of a tree in this node's namespace end at addresses that stay here. */
ckpt_tcp_mode ckpt_tcp_mode_auto(const ckpt_container *c) {
        struct stat tree, node;
        char path[64];

        if (!c || c->pid <= 0)
                return CKPT_TCP_CLOSE;
        snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)c->pid);
        if (stat(path, &tree) < 0 || stat("/proc/self/ns/net", &node) < 0)
                return CKPT_TCP_CLOSE;
        return tree.st_dev == node.st_dev && tree.st_ino == node.st_ino ? CKPT_TCP_CLOSE : CKPT_TCP_MOVE;
}
