/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The agent's configuration: an INI file (default /etc/nucleus/agent.conf),
 * then command-line overrides, each a (section, key, value) triple so that
 * the file and the flags share one parser and one set of checks. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define AGENT_CONFIG_DEFAULT "/etc/nucleus/agent.conf"

typedef struct agent_peer {
        char *name;
        char *host;
        uint16_t port;
        char *user; /* NULL: [ssh] user */
} agent_peer;

/* What a move does with the established TCP connections of a container
 * ([agent] tcp, `nucleus-migrate --tcp`). */
typedef enum agent_tcp_policy {
        AGENT_TCP_AUTO,  /* per container: what suits it (ckpt_tcp_mode_auto) */
        AGENT_TCP_MOVE,  /* moved with their state, for both ends that stay reachable */
        AGENT_TCP_CLOSE, /* closed on the target (and on a rollback) */
        _AGENT_TCP_POLICY_MAX,
        _AGENT_TCP_POLICY_INVALID = -EINVAL,
} agent_tcp_policy;

const char *agent_tcp_policy_to_string(agent_tcp_policy p);
agent_tcp_policy agent_tcp_policy_from_string(const char *s);

typedef struct agent_config {
        /* [agent] */
        char *node;
        char *socket;
        char *socket_group; /* NULL: 0600, root only */
        char *state_dir;    /* the nucleus runtime's state directory */
        char *work_dir;     /* checkpoints/, staging/, journal/ live below it */
        char *hmac_key;
        char *criu; /* NULL: resolved from trusted system paths */
        char *log_level;
        bool compress;        /* zstd on the image stream when the peer takes it */
        bool consume_staging; /* the restore punches out the staged pages it read */
        bool lazy;            /* accept post-copy (--lazy) migrations */
        bool stream_pages;    /* as a source, send the pages while CRIU dumps (feature "ps-stream") */
        agent_tcp_policy tcp; /* established TCP connections of a moved container */
        /* Native containers restored here: their cgroup nucleus-<id> is made
         * below cgroup_root (NULL: $NUCLEUS_CGROUP_ROOT at start, else the
         * parent of the source's cgroup), their veth goes on bridge (NULL:
         * the source's). */
        char *cgroup_root;
        char *bridge;
        char *metrics_file;      /* NULL: no metrics; else the Prometheus textfile (metrics.h) */
        unsigned history_days;   /* finished migrations' records are kept this long */
        unsigned criu_timeout_s; /* a CRIU dump or restore that takes longer is killed with all it started */
        /* [ssh] */
        char *ssh_key;
        char *known_hosts;
        char *ssh_user;
        char *remote_command;
        unsigned connect_timeout_s;
        unsigned idle_timeout_s;
        bool accept_new;
        /* Each session to a peer runs its SSH work on a thread of its own
         * (XFER_SSH_ON_THREAD): its encryption beside the loop's work. */
        bool ssh_thread;
        /* Sessions a move's pages may be dealt over, its own included
         * (feature "lanes"; 1: one session; 0: auto, handoff_lanes_auto). */
        unsigned lanes;
        /* [limits] */
        unsigned parallel;
        /* Destination migrations one peer may hold at once; 0: as many as
         * `parallel` (set it lower so no single peer can take every slot). */
        unsigned peer_parallel;
        uint64_t staging_max; /* bytes; 0: free space is the only bound */
        uint64_t bandwidth;   /* bytes/s; 0: unlimited */
        /* [peer NAME] */
        agent_peer *peers;
        size_t n_peers;
} agent_config;

int agent_config_init(agent_config *c);
void agent_config_done(agent_config *c);

/* Reads path into c. A missing file is an error only when must_exist. */
int agent_config_load(agent_config *c, const char *path, bool must_exist, nm_error *err);

/* Sets one value as the file would: section is "agent", "ssh", "limits" or
 * "peer NAME". */
int agent_config_set(agent_config *c, const char *section, const char *key, const char *value,
                     nm_error *err);

/* Parses "section.key=value" (peers: "peer.NAME.key=value"). */
int agent_config_set_assignment(agent_config *c, const char *assignment, nm_error *err);

/* Checks that the result is usable (node named, paths absolute, ...). */
int agent_config_check(const agent_config *c, nm_error *err);

/* A peer by name, or by host address. */
const agent_peer *agent_config_peer(const agent_config *c, const char *name_or_host);

/* How much the agent must trust a file it reads. */
typedef enum agent_file_rule {
        AGENT_FILE_TRUSTED, /* configuration, known_hosts: nobody else may change it */
        AGENT_FILE_SECRET,  /* a private key: nobody else may read it either */
        _AGENT_FILE_RULE_MAX,
        _AGENT_FILE_RULE_INVALID = -EINVAL,
} agent_file_rule;

/* Refuses a file owned by someone other than root or us, or with looser
 * modes than rule allows, or in a directory others may write; err says how
 * to fix it. A missing file is -ENOENT (with a sentence). */
int agent_check_file(const char *path, const char *what, agent_file_rule rule, nm_error *err);

/* Derived paths below work_dir; caller frees. */
char *agent_config_path(const agent_config *c, const char *sub);

/* "10G", "512M", "4096" -> bytes. */
int parse_size(const char *s, uint64_t *ret);
