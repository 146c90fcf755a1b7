/* SPDX-License-Identifier: Apache-2.0 */
/* SIGHUP: the configuration read again and taken live where it can be:
 * peers, limits, timeouts, SSH settings, policies, the log level. What was
 * set up from it at start (the node's name, its socket, directories, the
 * HMAC key, CRIU, the metrics file) keeps its value, and the log says why
 * and that a restart takes the new one. Nothing in flight is disturbed:
 * every user reads these settings when it needs them, and the bandwidth
 * shares are given again. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "log.h"
#include "macro.h"
#include "mig.h"

typedef struct fixed_key {
        const char *name;
        size_t offset; /* a char * in agent_config */
        const char *why;
} fixed_key;

#define FIXED(n, field, w) \
        { n, offsetof(agent_config, field), w }
static const fixed_key fixed[] = {
        FIXED("agent.node", node, "peers and the journal know this node by it"),
        FIXED("agent.socket", socket, "the control socket is open"),
        FIXED("agent.socket_group", socket_group, "the socket's group was set when it was made"),
        FIXED("agent.state_dir", state_dir, "the containers' state files are there"),
        FIXED("agent.work_dir", work_dir, "the journal, checkpoints and staging live there"),
        FIXED("agent.hmac_key", hmac_key,
              "the key was checked and loaded at start, and peers know its identity"),
        FIXED("agent.criu", criu, "CRIU was checked at start (criu check, cpuinfo)"),
        FIXED("agent.metrics_file", metrics_file, "the metrics are written there from the start"),
};

static char **str_at(agent_config *c, size_t offset) {
        return (char **)((char *)c + offset);
}

static bool str_eq(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void note_u(const char *name, uint64_t from, uint64_t to) {
        if (from != to)
                log_info("reload: %s %llu -> %llu", name, (unsigned long long)from, (unsigned long long)to);
}

static void note_s(const char *name, const char *from, const char *to) {
        if (!str_eq(from, to))
                log_info("reload: %s \"%s\" -> \"%s\"", name, strempty(from), strempty(to));
}

static bool peers_differ(const agent_config *a, const agent_config *b) {
        if (a->n_peers != b->n_peers)
                return true;
        for (size_t i = 0; i < a->n_peers; i++)
                if (!str_eq(a->peers[i].name, b->peers[i].name) ||
                    !str_eq(a->peers[i].host, b->peers[i].host) ||
                    !str_eq(a->peers[i].user, b->peers[i].user) || a->peers[i].port != b->peers[i].port)
                        return true;
        return false;
}

unsigned agent_reload_apply(agent *a, agent_config *fresh) {
        agent_config *old = &a->cfg;
        unsigned refused = 0;

        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
                char **o = str_at(old, fixed[i].offset), **n = str_at(fresh, fixed[i].offset);
                if (!str_eq(*o, *n)) {
                        log_warning("reload: %s cannot change while the agent runs (%s): keeping \"%s\"; "
                                    "restart the agent for \"%s\"",
                                    fixed[i].name, fixed[i].why, strempty(*o), strempty(*n));
                        refused++;
                }
                /* Ours stays: what was set up from it keeps pointing at it. */
                free(*n);
                *n = *o;
                *o = NULL;
        }
        note_s("agent.log_level", old->log_level, fresh->log_level);
        note_u("agent.compress", old->compress, fresh->compress);
        note_u("agent.consume_staging", old->consume_staging, fresh->consume_staging);
        note_u("agent.lazy", old->lazy, fresh->lazy);
        note_u("agent.history_days", old->history_days, fresh->history_days);
        note_s("ssh.key", old->ssh_key, fresh->ssh_key);
        note_s("ssh.known_hosts", old->known_hosts, fresh->known_hosts);
        note_s("ssh.user", old->ssh_user, fresh->ssh_user);
        note_s("ssh.remote_command", old->remote_command, fresh->remote_command);
        note_u("ssh.connect_timeout", old->connect_timeout_s, fresh->connect_timeout_s);
        note_u("ssh.idle_timeout", old->idle_timeout_s, fresh->idle_timeout_s);
        note_u("ssh.thread", old->ssh_thread, fresh->ssh_thread);
        note_u("ssh.lanes", old->lanes, fresh->lanes);
        note_u("limits.parallel", old->parallel, fresh->parallel);
        note_u("limits.peer_parallel", old->peer_parallel, fresh->peer_parallel);
        note_u("limits.staging_max", old->staging_max, fresh->staging_max);
        note_u("limits.bandwidth", old->bandwidth, fresh->bandwidth);
        if (peers_differ(old, fresh))
                log_info("reload: peers: %zu -> %zu", old->n_peers, fresh->n_peers);

        agent_config_done(old);
        *old = *fresh;
        *fresh = (agent_config){};
        log_set_level(log_level_from_string(a->cfg.log_level));
        journal_set_keep(a->journal, (uint64_t)a->cfg.history_days * 86400);
        if (a->history)
                history_set_keep(a->history, (int64_t)a->cfg.history_days * 86400 * 1000);
        mig_share_bandwidth(a);
        return refused;
}
