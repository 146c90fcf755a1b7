/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* nm-native-start: containers in the shape the nucleus runtime gives them
 * (its native runtime, as root, detached). Shared between its parts:
 * native-start.c (the supervisor P0, C1, C2 and the state file),
 * native-net.c (cgroup, bridge, veth, address, NAT: P0's side),
 * native-root.c (the root file system, in C2) and native-sec.c (rlimits,
 * no_new_privs, Landlock, capabilities, seccomp: the last steps of C2). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define NATIVE_MAX_BINDS 16
#define NATIVE_MAX_PORTS 8

typedef enum native_net {
        NATIVE_NET_NONE, /* a network namespace with lo only (nucleus's default) */
        NATIVE_NET_BRIDGE,
        NATIVE_NET_TAP, /* a tap device held outside the tree, as slirp4netns holds it */
} native_net;

typedef enum native_stdio {
        NATIVE_STDIO_JOURNAL, /* stdin host /dev/null, stdout/stderr a stream socket */
        NATIVE_STDIO_PIPE,    /* stdout/stderr pipes the supervisor drains into a file */
        NATIVE_STDIO_NULL,
} native_stdio;

typedef struct native_bind {
        const char *host;
        const char *ctr;
        bool ro;
} native_bind;

/* A published port (nucleus's -p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]). */
typedef struct native_port {
        const char *host_ip; /* NULL: every address of the node */
        const char *host_port, *ctr_port;
        const char *proto; /* "tcp" or "udp" */
} native_port;

typedef struct native_cfg {
        char id[33];
        const char *name;
        const char *state_dir;
        const char *runtime_dir;       /* where the root tmpfs is mounted first */
        const char *context;           /* copied into /context on the root tmpfs */
        const char *cgroup_root;       /* NULL: no cgroup */
        const char *supervisor_cgroup; /* P0 moves itself here first (a unit's cgroup) */
        bool cgroupns;
        uint64_t memory_max; /* 0: none */
        uint64_t cpu_quota_us;
        uint64_t pids_max;
        native_net net;
        const char *bridge;
        const char *address; /* NULL: a free random one */
        const char *rootfs_size;
        native_port ports[NATIVE_MAX_PORTS];
        unsigned n_ports;
        native_bind volumes[NATIVE_MAX_BINDS];
        unsigned n_volumes;
        native_bind secrets[NATIVE_MAX_BINDS]; /* host file, name under /run/secrets */
        unsigned n_secrets;
        native_stdio stdio;
        const char *stdio_target; /* journal: socket path; pipe: log file */
        bool landlock;
        const char *init; /* production mode: PID 1 is this host binary */
        bool memfd_resolv;
        bool gvisor;
        char **command;
} native_cfg;

/* What P0 set up on the node, for the state file and the cleanup. */
typedef struct native_node_state {
        char cgroup_path[4096]; /* "" when none */
        char veth[32], vethc[32];
        int veth_ifindex;
        char address[32];
        bool masquerade;
        unsigned n_published; /* ports whose DNAT rules are installed */
        char ip_alloc[4096];  /* the reservation file, "" when none */
        int tap_fd;           /* NATIVE_NET_TAP: held by P0 */
} native_node_state;

/* ---- native-net.c (P0, in the node's network namespace) ---- */
int native_cgroup_create(const native_cfg *cfg, native_node_state *st);
int native_cgroup_enter(const char *cgroup_dir, pid_t pid);
int native_net_setup(const native_cfg *cfg, pid_t c2, native_node_state *st);
void native_node_cleanup(const native_cfg *cfg, native_node_state *st);

/* ---- native-root.c (C2, in its new mount namespace) ---- */
/* Builds the root and pivots into it; stdin is kept (host /dev/null). */
int native_root_setup(const native_cfg *cfg, char *err, size_t errsz);
/* The production-mode init, opened on the host before the pivot. */
extern int native_init_fd;

/* ---- native-sec.c (C2, last steps before exec) ---- */
int native_security_apply(const native_cfg *cfg, char *err, size_t errsz);

/* ---- helpers (native-start.c) ---- */
int native_run(char *const argv[]);
int native_write_str(const char *path, const char *s);
void native_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
