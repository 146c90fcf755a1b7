/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* ckpt/: checkpoint and restore of nucleus containers with CRIU.
 *
 * libckpt (meson `ckpt_dep`) drives libcriu on the libuv thread pool, finds
 * containers in the nucleus state directory and manages restored process
 * trees. It links libckpt_format (ckpt-format.h: HMAC, tree walk, key,
 * metadata and state JSON), whose declarations this header includes.
 *
 * One dump or restore has the turn at a time per process. ckpt_dump and
 * ckpt_restore check and prepare an operation at once; while another has the
 * turn, it waits for it (first come, first served), and
 * ckpt_dump_cancel/ckpt_restore_cancel end it before it starts. A lazy dump
 * that only serves its pages gives the turn up (CKPT_OP_ASIDE): it may serve
 * for as long as its copy takes to fetch them. A dump that something else
 * than this machine paces (the node's bandwidth share) is stepped aside by
 * its caller, for restores only. One dump aside at a time: one that would
 * go aside while another is goes aside when that one ends.
 * Callers never have to queue CRIU work themselves. */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "ckpt-format.h"
#include "error.h"

/* ------------------------------------------------------------------------
 * Containers in the state directory ($NUCLEUS_STATE_DIR, else
 * /var/run/nucleus for root) */

int ckpt_state_dir(char **ret);

/* Every parsable <id>.json (symlinks and unparsable files are skipped, as
 * nucleus skips them; ret_skipped, if not NULL, counts them). A missing
 * directory is an empty list. */
int ckpt_container_list(const char *state_dir, ckpt_container ***ret, size_t *ret_n, size_t *ret_skipped,
                        nm_error *err);
void ckpt_container_list_free(ckpt_container **l, size_t n);

/* Exact id, then exact name (must be unique), then unique id prefix.
 * Missing: -ENOENT; ambiguous: -ENOTUNIQ; both with the candidates named. */
int ckpt_container_find(const char *state_dir, const char *ref, ckpt_container **ret, nm_error *err);

/* A bare process tree: id and name "pid-<pid>", bare = true, no state file,
 * so that the same dump path serves `--pid`. */
int ckpt_container_from_pid(pid_t pid, ckpt_container **ret, nm_error *err);

/* Status is not "stopped", start_ticks is known, and /proc/<pid>/stat field
 * 22 equals it (a reused pid is not the container). A zombie is not running. */
bool ckpt_container_is_running(const ckpt_container *c);

/* Whether pid's task is stopped by a signal (T) or traced (t): a tree that
 * CRIU's leave-stopped dump holds is, and is "running" above all the same. */
bool ckpt_proc_stopped(pid_t pid);

/* Refuses gVisor containers and containers not running, saying why. */
int ckpt_container_check_movable(const ckpt_container *c, nm_error *err);

/* Writes <state_dir>/<id>.json for a restored container: its state (unknown
 * fields kept) with the new pid and start_ticks (0: read from /proc) and
 * status "running". The directory is created 0700 (a symlink is refused);
 * the file is 0600, written to <id>.json.tmp, fsynced and renamed. */
int ckpt_state_write_restored(const char *state_dir, const ckpt_container *c, pid_t new_pid,
                              uint64_t new_start_ticks, nm_error *err);

/* Sets the container's cgroup_path (its state file's field, and c's): a
 * restored native container lives in the target's own cgroup. NULL: null. */
int ckpt_state_set_cgroup(ckpt_container *c, const char *cgroup_path, nm_error *err);

/* Removes <state_dir>/<id>.json; a missing file is success. */
int ckpt_state_remove(const char *state_dir, const char *id, nm_error *err);

/* -EEXIST when a container with this id runs on this node already: a second
 * copy must never be restored beside it. */
int ckpt_state_check_not_running(const char *state_dir, const char *id, nm_error *err);

/* What registering a restored c will need, checked before the restore: its
 * id runs nowhere here (-EEXIST), no other container of its name runs here
 * (-EEXIST), and a state file can be created in state_dir (its errno: a
 * read-only or full file system, a symlink). A bare tree needs none. */
int ckpt_state_check_restorable(const char *state_dir, const ckpt_container *c, nm_error *err);

/* ------------------------------------------------------------------------
 * Restored process trees */

/* The pids of root and all its descendants (walking
 * /proc/<pid>/task/<tid>/children), root first. */
int ckpt_tree_pids(pid_t root, pid_t **ret, size_t *ret_n);

/* Whether a tree that is not native may be held stopped after its dump
 * (CKPT_HOLD_IF_SAFE) while its copy is restored, on a target
 * that may share this kernel and this file system (nodes in namespaces of
 * one machine): 1, or 0 with the reason in why, or a negative errno. Not
 * when its copy would need what the stopped original still holds: the same
 * pids (it shares our pid namespace), a terminal's index (any task with a
 * controlling terminal or a fd on a pty, ptmx or console), a file lock
 * (its copy takes it again). Read from /proc while the tree runs: a task
 * that takes one of these later is caught by the restore, which fails and
 * rolls back. */
int ckpt_tree_holdable(pid_t root, char *why, size_t n);

/* The tasks that were stopped (SIGSTOP, SIGTSTP, ...) when CRIU froze a
 * tree, as CRIU recorded them in its images (pstree.img and the task state in
 * each core-<pid>.img): their pids inside the tree's own pid namespace, which
 * CRIU restores unchanged. Facts from the freeze itself, not from an earlier
 * look at /proc, which would race with the tree. */
typedef struct ckpt_stopped_tasks {
        pid_t *ns_pids;
        size_t n;
} ckpt_stopped_tasks;

/* Reads them from the checkpoint in dir (dir/images). Malformed images are
 * -EBADMSG. */
int ckpt_stopped_tasks_load(const char *dir, ckpt_stopped_tasks *ret, nm_error *err);
void ckpt_stopped_tasks_done(ckpt_stopped_tasks *s);
bool ckpt_stopped_tasks_has(const ckpt_stopped_tasks *s, pid_t ns_pid);

/* SIGCONT to every process of the tree but those in keep_stopped (NULL:
 * none): CRIU's --leave-stopped stops every task, and continuing only the
 * root would leave it blocked on its stopped children, while a task that was
 * stopped before the dump must stay stopped. Processes are matched by their
 * pid in the root's pid namespace (/proc/<pid>/status NSpid). root_start_ticks
 * (0: unchecked) guards against a reused pid. The same call resumes a tree
 * restored elsewhere or one left stopped in place by its dump. */
int ckpt_resume(pid_t root, uint64_t root_start_ticks, const ckpt_stopped_tasks *keep_stopped,
                nm_error *err);

/* SIGKILL to every process of a (stopped) restored tree, then waits up to
 * two seconds until each is gone (exited, or a zombie left for its parent to
 * reap); -ETIMEDOUT if one is still there. For aborting a restore. */
int ckpt_kill_tree(pid_t root, uint64_t root_start_ticks, nm_error *err);

/* ------------------------------------------------------------------------
 * Native nucleus containers
 *
 * A container of nucleus's native runtime has a mount namespace whose root
 * is a tmpfs, read-only binds of host directories, a cgroup (often seen
 * through a cgroup namespace rooted elsewhere), a veth on the node's
 * bridge, seccomp, no capabilities and stdio from outside (see DESIGN.md
 * "Native containers"). ckpt_native_describe() reads all of that from
 * /proc while the container runs; the description travels in
 * metadata.json as "nm_native" and drives both the dump and the restore.
 * A tree that shares this process's mount namespace (a bare --pid tree, a
 * plain namespaced process) is described as such and moved as before. */

typedef struct ckpt_ext_mount {
        const char *key; /* dump: mount point; restore: the key */
        const char *val; /* dump: the key; restore: the host path */
} ckpt_ext_mount;

typedef enum ckpt_mount_kind {
        CKPT_MOUNT_ROOT,      /* the root tmpfs: CRIU never dumps it; its contents travel in images/ */
        CKPT_MOUNT_HOST_BIND, /* a bind of a host path: external on both sides, the source must exist */
        CKPT_MOUNT_CRIU,      /* dumped and restored by CRIU itself (tmpfs, proc, their binds, ...) */
        _CKPT_MOUNT_KIND_MAX,
        _CKPT_MOUNT_KIND_INVALID = -EINVAL,
} ckpt_mount_kind;

/* Per-mount flags, as /proc/<pid>/mountinfo shows them. */
#define CKPT_MNT_RDONLY (1u << 0)
#define CKPT_MNT_NOSUID (1u << 1)
#define CKPT_MNT_NODEV (1u << 2)
#define CKPT_MNT_NOEXEC (1u << 3)

typedef struct ckpt_native_mount {
        ckpt_mount_kind kind;
        char *target; /* the mount point inside the container */
        char *fstype;
        char *source;   /* HOST_BIND: the host path bound there */
        char *options;  /* ROOT: the tmpfs options to make it again ("size=65536k,mode=755") */
        unsigned flags; /* CKPT_MNT_* */
        bool is_file;   /* a bind of a file, not of a directory */
} ckpt_native_mount;

typedef enum ckpt_stdio_kind {
        CKPT_STDIO_INSIDE,  /* something CRIU dumps by itself */
        CKPT_STDIO_NULL,    /* the host's /dev/null (not visible inside): external, /dev/null again */
        CKPT_STDIO_FILE,    /* another file outside the container: CRIU would want it unchanged */
        CKPT_STDIO_PIPE,    /* a pipe whose other end is outside the tree: replaced on restore */
        CKPT_STDIO_FOREIGN, /* a socket of another network namespace (journald's stream): CRIU
                             * cannot dump it ("unix: Unix socket N not found") */
        CKPT_STDIO_TTY,     /* a terminal (nucleus in the foreground) */
        _CKPT_STDIO_KIND_MAX,
        _CKPT_STDIO_KIND_INVALID = -EINVAL,
} ckpt_stdio_kind;

typedef struct ckpt_native_stdio {
        ckpt_stdio_kind kind;
        char *key;  /* CRIU's name for it: "file[<mnt>:<ino>]" (external on dump, --inherit-fd key on
                     * restore), "pipe:[<ino>]" (--inherit-fd key); NULL otherwise */
        bool write; /* opened for writing (its replacement is too) */
} ckpt_native_stdio;

typedef enum ckpt_net_mode {
        CKPT_NET_HOST,   /* the node's network namespace */
        CKPT_NET_NONE,   /* a namespace with lo only */
        CKPT_NET_BRIDGE, /* one veth vethc-<hex> whose peer veth-<hex> is on a bridge of the node */
        CKPT_NET_TAP,    /* a tun/tap device: slirp4netns networking, which CRIU cannot dump */
        CKPT_NET_OTHER,  /* any other interface */
        _CKPT_NET_MODE_MAX,
        _CKPT_NET_MODE_INVALID = -EINVAL,
} ckpt_net_mode;

typedef enum ckpt_landlock {
        CKPT_LANDLOCK_NONE,          /* not a nucleus container: nothing applies it */
        CKPT_LANDLOCK_ASSUMED,       /* nucleus applies it by default, and the kernel shows no trace of a
                                      * Landlock domain from outside (no /proc field, ptrace scoping does
                                      * not tell): assumed in force. CRIU 4.2 drops it. */
        CKPT_LANDLOCK_ACCEPTED_LOSS, /* assumed, and the operator accepted that the restored copy
                                      * runs without it */
        _CKPT_LANDLOCK_MAX,
        _CKPT_LANDLOCK_INVALID = -EINVAL,
} ckpt_landlock;

typedef enum ckpt_proto {
        CKPT_PROTO_TCP,
        CKPT_PROTO_UDP,
        _CKPT_PROTO_MAX,
        _CKPT_PROTO_INVALID = -EINVAL,
} ckpt_proto;
const char *ckpt_proto_to_string(ckpt_proto p);
ckpt_proto ckpt_proto_from_string(const char *s);

/* A published port: nucleus's `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`,
 * as its DNAT rule in the node's nat PREROUTING chain shows it. */
typedef struct ckpt_native_port {
        ckpt_proto proto;
        char host_ip[16]; /* "" : every address of the node */
        uint16_t host_port;
        uint16_t ctr_port;
} ckpt_native_port;

typedef struct ckpt_native {
        bool own_mount_ns; /* false: everything below but stdio/security is unset */
        /* Mounts, in mountinfo order (parents first). */
        ckpt_native_mount *mounts;
        size_t n_mounts;
        uint64_t root_bytes; /* in use on the root tmpfs */
        /* Network. */
        ckpt_net_mode net;
        char *iface;             /* TAP/OTHER: the offending interface */
        char *vethc;             /* BRIDGE: the container side ("vethc-2b1") */
        char *veth;              /* BRIDGE: the node side ("veth-2b1") */
        char *bridge;            /* BRIDGE: its master on the node ("nucleus0") */
        char *address;           /* BRIDGE: the container's IPv4 address ("10.0.42.17") */
        unsigned prefix;         /* its prefix length (24) */
        char *bridge_net;        /* the bridge's own address/prefix on the source ("10.0.42.1/24") */
        ckpt_native_port *ports; /* BRIDGE: the ports published to address (DNAT rules on the node) */
        size_t n_ports;
        /* cgroup (v2). */
        char *cgroup;        /* the container's cgroup, host view ("/nucleus-<id>"), or NULL */
        char *cgroup_inside; /* the same seen from inside ("/../../nucleus-<id>") */
        char *cgroupns_root; /* when the inside view climbs above the namespace's root (which CRIU
                              * refuses: "invalid cgroup configuration ... is not a suffix of ..."):
                              * the host path of the namespace's root cgroup, below which the tasks
                              * are put for the dump; NULL otherwise */
        char *cgroup_dump;   /* set by the dump: where the tasks were put (host path) */
        char *cgroup_fs;     /* where the unified hierarchy is mounted here ("/sys/fs/cgroup") */
        /* Security, as /proc shows it. */
        int seccomp; /* 0, 1, 2 (filter) */
        bool no_new_privs;
        uint64_t cap_eff;
        ckpt_landlock landlock;
        bool user_ns; /* a user namespace of its own */
        /* The init's stdio. */
        ckpt_native_stdio stdio[3];
        /* Things to refuse. */
        char *init_outside; /* the init's executable is on no mount of the container (nucleus's
                             * production-mode init): its host path */
        char *memfd_mount;  /* a memfd bound over this path (resolv.conf with --rootfs) */
        /* CRIU options the dump used; the restore uses the same. */
        bool tcp_established;
        bool file_locks;
} ckpt_native;

/* Describes c (which must run) from /proc and its state file. Fails only
 * when /proc cannot be read; what cannot be moved is described, and
 * ckpt_native_check_source says why. */
int ckpt_native_describe(const ckpt_container *c, ckpt_native **ret, nm_error *err);
ckpt_native *ckpt_native_free(ckpt_native *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(ckpt_native *, ckpt_native_free);

/* The "nm_native" object of metadata.json, and back (every field checked:
 * -EBADMSG names the bad one). */
int ckpt_native_to_json(const ckpt_native *n, json_t **ret);
int ckpt_native_from_json(const json_t *o, ckpt_native **ret, nm_error *err);
/* The tree a checkpoint was dumped from: original_pid, and its start time
 * from nm_container_state (0 when unknown, e.g. a --pid tree). */
void ckpt_metadata_source(const ckpt_metadata *md, pid_t *ret_pid, uint64_t *ret_start_ticks);

/* The description in a checkpoint's metadata; *ret NULL when it has none. */
int ckpt_native_from_metadata(const ckpt_metadata *md, ckpt_native **ret, nm_error *err);

typedef struct ckpt_native_policy {
        bool accept_landlock_loss; /* move a container that (presumably) runs under Landlock */
        bool try_anyway;           /* skip the refusals and let CRIU fail with its own reason (diagnosis) */
} ckpt_native_policy;

/* What the source alone can judge, before anything is frozen: -EOPNOTSUPP
 * with the reason for gVisor-like trees CRIU cannot handle here: tap
 * (slirp4netns) or unknown interfaces, the production-mode init, memfd
 * mounts, a root that is not a tmpfs, a cgroup namespace whose root could
 * not be found, a user namespace, stdio from another network namespace or
 * a terminal, and Landlock unless the policy accepts losing it. */
int ckpt_native_check_source(const ckpt_native *n, const ckpt_native_policy *p, nm_error *err);

/* What a node that is to restore a container must offer. */
typedef struct ckpt_native_target {
        const char *id;                   /* the container's id (its own reservation is not a clash) */
        const char *state_dir;            /* for <state dir>/ip-alloc/ */
        const char *bridge;               /* NULL: the recorded one */
        const char *cgroup_dir;           /* NULL: no cgroup to be made; else the one to make */
        const ckpt_ext_mount *ext_mounts; /* restore-side key -> path overrides */
        size_t n_ext_mounts;
        /* What ckpt_native_check_ports said, asked beforehand where iptables
         * must not block (an event loop): code 0, no port taken. NULL: it is
         * asked here. */
        const nm_error *ports;
} ckpt_native_target;

/* Checks this node for a restore of n: the bridge exists with the
 * source's subnet, the veth name and the address are free (not on a link
 * here, not reserved in ip-alloc by another id), no published port of n
 * is published here already (ckpt_native_check_ports, or t->ports), every
 * bind source exists with the same type, the memory the root tmpfs holds
 * is available, the cgroup does not exist yet. -EADDRINUSE / -EEXIST /
 * -ENOENT / -ENOMEM / -EOPNOTSUPP with the reason. Runs iptables unless
 * t->ports is given. */
int ckpt_native_check_target(const ckpt_native *n, const ckpt_native_target *t, nm_error *err);

/* Whether a published port of n is published on this node already (a DNAT
 * rule in the nat table's PREROUTING for the same protocol and port, on
 * any or the same host address): -EADDRINUSE with the rule's destination.
 * Runs iptables (blocking: a thread pool) for a bridged n with ports; 0 at
 * once for any other. What it sees is the table of this moment: nothing
 * holds a port free for n afterwards. */
int ckpt_native_check_ports(const ckpt_native *n, nm_error *err);

/* The nat-table rules nucleus's supervisor keeps on the node for one
 * bridged container: one `POSTROUTING -s SUBNET [! -o BRIDGE] -j
 * MASQUERADE` (one per container, appended at start, one deleted at exit;
 * see DESIGN.md for the `! -o`) and, per published
 * port, `PREROUTING -p PROTO [-d HOST_IP] --dport HOST_PORT -j DNAT
 * --to-destination ADDRESS:PORT` and the same in OUTPUT with `-m addrtype
 * --dst-type LOCAL`. Installing adds them all (or, failing, none); removing
 * deletes one of each, the first error reported. iptables, blocking. */
typedef struct ckpt_native_nat {
        const char *address; /* the container's */
        const char *subnet;  /* "10.0.42.0/24"; NULL: no MASQUERADE */
        const char *bridge;  /* traffic that stays on it is not masqueraded; NULL: all is */
        const ckpt_native_port *ports;
        size_t n_ports;
} ckpt_native_nat;
int ckpt_native_nat_install(const ckpt_native_nat *nat, nm_error *err);
int ckpt_native_nat_remove(const ckpt_native_nat *nat, nm_error *err);
/* Adds whichever of the rules install would add is missing; adds none twice. */
int ckpt_native_nat_ensure(const ckpt_native_nat *nat, nm_error *err);
/* The "ports" array of nm_native's net object, and back (a NULL or
 * absent array: none). The kept records of the agent use the same. */
json_t *ckpt_native_ports_to_json(const ckpt_native_port *ports, size_t n_ports);
int ckpt_native_ports_from_json(const json_t *a, ckpt_native_port **ret, size_t *ret_n, nm_error *err);
/* The network of a bridge address ("10.0.42.1/24" -> "10.0.42.0/24"). */
int ckpt_native_subnet(const char *bridge_net, char *buf, size_t size);
/* One line of `iptables -t nat -S`: 1 and the port, its DNAT target's
 * address in to_addr, when it is a PREROUTING DNAT rule that publishes a
 * port (as nucleus writes one); 0 for any other line. */
int ckpt_native_parse_dnat(const char *line, ckpt_native_port *ret, char *to_addr, size_t to_size);

/* <state dir>/ip-alloc/<id>.ip holding address (created 0600 with
 * O_EXCL; an existing one of the same id with the same address is fine),
 * and its removal (only while it still holds that address). */
int ckpt_native_address_reserve(const char *state_dir, const char *id, const char *address, nm_error *err);
int ckpt_native_address_release(const char *state_dir, const char *id, const char *address, nm_error *err);

/* The cgroup a restore under cgroup_root makes for container id:
 * <cgroup_root>/nucleus-<id> (malloc'd; NULL when out of memory). Known
 * before the restore, so that a target can record it before CRIU makes it
 * and release it after a crash mid-restore. */
char *ckpt_native_cgroup_path(const char *cgroup_root, const char *id);

/* What nucleus's supervisor does when its container has exited, for a
 * copy that has none (one restored on this node): the address reservation,
 * the cgroup <cgroup_fs><cgroup> (once empty) and the state file (while it
 * still names pid) are removed. The veth went with the network namespace. */
int ckpt_native_forget(const char *state_dir, const char *id, const ckpt_native *n, pid_t pid,
                       nm_error *err);

/* Rollback on the source after a dump that left the tasks stopped: the
 * tasks go back into their cgroup, TCP sockets leave repair mode, CRIU's
 * network lock is removed, and the tree is continued (ckpt_resume; what
 * keep_stopped names stays stopped). n may be NULL for a tree that is not
 * native. */
int ckpt_source_resume(const ckpt_native *n, pid_t root, uint64_t root_start_ticks,
                       const ckpt_stopped_tasks *keep_stopped, nm_error *err);
/* Commit on the source: the stopped tree is killed (ckpt_kill_tree) and the
 * cgroup the dump made is removed once empty. */
int ckpt_source_end(const ckpt_native *n, pid_t root, uint64_t root_start_ticks, nm_error *err);

/* ------------------------------------------------------------------------
 * The criu binary */

#define CKPT_CRIU_MIN_VERSION 40200 /* 4.2: see DESIGN.md "CRIU" */

typedef struct ckpt_criu {
        char *path;           /* absolute */
        char *version;        /* "4.2.1" */
        unsigned version_num; /* 40201: major*10000 + minor*100 + sublevel */
} ckpt_criu;

/* configured != NULL: that binary. Otherwise, for root, the first of
 * /usr/local/sbin/criu, /usr/sbin/criu, /usr/local/bin/criu, /usr/bin/criu
 * that passes the checks and is >= 4.2 (a broken Debian 3.17 in /usr/sbin
 * is passed over for a good one in /usr/local/sbin), never $PATH; other
 * users also search $PATH afterwards. Checks: a regular executable file,
 * owned by root or the caller, not group/other-writable, in directories
 * that are not group/other-writable (sticky ones aside); its version comes
 * from `criu --version`. The error lists every candidate and why it was
 * passed over. Runs `criu --version` synchronously (milliseconds): resolve
 * once at start-up. */
int ckpt_criu_resolve(const char *configured, ckpt_criu **ret, nm_error *err);
ckpt_criu *ckpt_criu_free(ckpt_criu *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(ckpt_criu *, ckpt_criu_free);

/* What this node's CRIU says about the node, for the checks a move makes
 * before anything is frozen. Each runs the criu binary and blocks (up to
 * 60 s): call them at start-up or on the thread pool.
 * ckpt_criu_check: `criu check`; -EOPNOTSUPP with CRIU's error lines when it
 * fails. ckpt_cpuinfo_dump: `criu cpuinfo dump` of this CPU, the image's
 * bytes in ret (free()). ckpt_cpuinfo_check: `criu cpuinfo check
 * --cpu-cap=fpu,ins` of another node's image on this CPU, in a fresh
 * directory under tmp_parent; -EOPNOTSUPP with CRIU's reason when this CPU
 * lacks an instruction feature, or the FPU state layout, the image has. */
int ckpt_criu_check(const ckpt_criu *c, nm_error *err);
int ckpt_cpuinfo_dump(const ckpt_criu *c, const char *tmp_parent, uint8_t **ret, size_t *ret_len,
                      nm_error *err);
int ckpt_cpuinfo_check(const ckpt_criu *c, const char *tmp_parent, const uint8_t *img, size_t len,
                       nm_error *err);

/* ------------------------------------------------------------------------
 * Dump and restore */

typedef enum ckpt_cgroup_mode {
        CKPT_CGROUP_DEFAULT, /* CRIU's own default ("soft") */
        CKPT_CGROUP_IGNORE,
        CKPT_CGROUP_NONE,
        CKPT_CGROUP_PROPS,
        CKPT_CGROUP_SOFT,
        CKPT_CGROUP_FULL,
        CKPT_CGROUP_STRICT,
        _CKPT_CGROUP_MODE_MAX,
        _CKPT_CGROUP_MODE_INVALID = -EINVAL,
} ckpt_cgroup_mode;

const char *ckpt_cgroup_mode_to_string(ckpt_cgroup_mode m);
ckpt_cgroup_mode ckpt_cgroup_mode_from_string(const char *s);

/* Established TCP connections of a dumped tree. */
typedef enum ckpt_tcp_mode {
        /* CRIU's own default: a tree with an established connection is not
         * dumped. On restore: whatever the dump kept comes back. */
        CKPT_TCP_REFUSE,
        /* tcp-established: each connection is dumped with its state and
         * restored as it was; only right where both ends stay reachable
         * (inside the tree's own network namespace, the same bridge). On
         * restore: the same as REFUSE. */
        CKPT_TCP_MOVE,
        /* tcp-close: the tree is dumped whatever it has connected, and every
         * established connection is closed on restore (the application sees
         * it fail and reconnects). A dump made so is always restored so, as
         * CRIU requires; on restore it also closes connections that a dump
         * with MOVE kept. */
        CKPT_TCP_CLOSE,
        _CKPT_TCP_MODE_MAX,
        _CKPT_TCP_MODE_INVALID = -EINVAL,
} ckpt_tcp_mode;

const char *ckpt_tcp_mode_to_string(ckpt_tcp_mode m); /* "refuse", "move", "close" */
ckpt_tcp_mode ckpt_tcp_mode_from_string(const char *s);

/* What suits a tree when nobody said: MOVE when it has a network namespace of
 * its own (its connections then have both ends inside it, and the namespace
 * moves with it), CLOSE when it shares this node's, whose addresses stay
 * here. A tree whose namespace cannot be read gets CLOSE. */
ckpt_tcp_mode ckpt_tcp_mode_auto(const ckpt_container *c);

/* File locks (flock, POSIX, open-file-description locks, leases). */
typedef enum ckpt_file_locks {
        CKPT_FILE_LOCKS_MOVE,   /* CRIU's file-locks: the locks move with the tree (the default) */
        CKPT_FILE_LOCKS_REFUSE, /* CRIU's own default: a tree holding a lock is not dumped */
        _CKPT_FILE_LOCKS_MAX,
        _CKPT_FILE_LOCKS_INVALID = -EINVAL,
} ckpt_file_locks;

/* CRIU options for both directions. Zeroed is the safe default: file locks
 * move, established TCP connections refused, everything else off, CRIU's
 * default cgroup mode, log level 4, network locked with nftables. */
typedef struct ckpt_criu_opts {
        const ckpt_criu *criu; /* NULL: ckpt_criu_resolve(NULL) */
        const char *work_dir;  /* CRIU's work dir and logs; NULL: "<dir>.work". Never inside <dir>. */
        ckpt_tcp_mode tcp;
        bool ext_unix_sk;
        ckpt_file_locks locks;
        bool shell_job;
        ckpt_cgroup_mode manage_cgroups;
        const ckpt_ext_mount *ext_mounts;
        size_t n_ext_mounts;
        int log_level; /* 0: 4 (debug) */
        /* How long CRIU may take for the whole dump or restore; past it,
         * CRIU and everything it started are killed and the operation
         * fails with -ETIMEDOUT. 0: CKPT_CRIU_TIMEOUT_MS. */
        uint64_t timeout_ms;
} ckpt_criu_opts;

#define CKPT_CRIU_TIMEOUT_MS (600 * 1000ULL)

/* What a good dump does with the tasks. Held tasks are the caller's: it
 * ends them at the commit (ckpt_source_end) or resumes them in place
 * (ckpt_source_resume), a rollback that cannot fail on the way back. Ended
 * tasks are killed once the images are complete (and signed): until then a
 * failure resumes them in place, as with a native container, which CRIU
 * always leaves stopped. */
typedef enum ckpt_dump_hold {
        CKPT_HOLD_END,
        CKPT_HOLD_ALWAYS,
        /* Held unless their copy needs what they hold (ckpt_tree_holdable):
         * decided on the pool right before CRIU freezes them; req->hold_why
         * says why they were ended. */
        CKPT_HOLD_IF_SAFE,
        _CKPT_HOLD_MAX,
        _CKPT_HOLD_INVALID = -EINVAL,
} ckpt_dump_hold;

/* Where a dump's memory pages go. */
typedef enum ckpt_dump_pages {
        CKPT_PAGES_HERE, /* pages-*.img and pagemap-*.img in the checkpoint */
        /* To a page server (ckpt_page_server_start) while CRIU dumps. With
         * CKPT_HOLD_IF_SAFE and a tree that cannot be held the pages stay
         * here after all (req->pages), and CRIU never writes to the socket. */
        CKPT_PAGES_TO_SERVER,
        _CKPT_PAGES_MAX,
        _CKPT_PAGES_INVALID = -EINVAL,
} ckpt_dump_pages;

typedef struct ckpt_dump_opts {
        ckpt_criu_opts criu;
        bool sign;          /* write checkpoint.hmac after the dump */
        const uint8_t *key; /* NULL: ckpt_key_load(NULL), before the dump */
        size_t key_len;
        const char *node_name; /* nm_source_node; NULL: the host name */
        /* Post-copy: a lazy dump (--lazy-pages) whose page server talks on
         * lazy_ps_fd (this call's CRIU alone inherits it, close-on-exec or
         * not; the caller closes it after the callback). The images are
         * complete at the "post-dump" event; the call (and the callback)
         * ends only when the last page has been served, or the transfer
         * failed, in which case CRIU lets the tasks run again (see
         * ckpt_lazy_unlock_network). metadata.json is not rewritten after
         * the dump. */
        bool lazy;
        int lazy_ps_fd;
        /* Each file of the checkpoint is sealed immutable (FS_IMMUTABLE_FL)
         * once CRIU and the metadata are done, before it is signed, and
         * checkpoint.hmac after: what was signed is what stays (rm_rf_at
         * unseals). Where the file system has no such flag, req->warning
         * says so. */
        bool seal;
        ckpt_dump_hold hold;       /* what a good dump leaves of the tasks */
        ckpt_native_policy policy; /* native containers: what may be lost */
        /* CKPT_PAGES_TO_SERVER: CRIU sends the memory pages and their
         * pagemaps over pages_ps_fd (its page-server protocol; this call's
         * CRIU alone inherits it, close-on-exec or not; the caller closes
         * it after the callback) instead of writing them into dir. Only for
         * tasks that stay held: their memory is then the only local copy,
         * and a rollback resumes them. req->pages says where they went. */
        ckpt_dump_pages pages;
        int pages_ps_fd;
} ckpt_dump_opts;

typedef struct ckpt_restore_opts {
        ckpt_criu_opts criu;
        bool verify;        /* check checkpoint.hmac first; refuse on mismatch */
        const uint8_t *key; /* NULL: ckpt_key_load(NULL) */
        size_t key_len;
        bool leave_stopped; /* every task left stopped: see ckpt_resume */
        /* Post-copy: memory is filled by the `criu lazy-pages` daemon that
         * listens in the same work directory (ckpt_lazy_pages_start). */
        bool lazy_pages;
        /* CRIU punches each page out of pages-*.img once it is restored
         * (auto-dedup): the images are used up, and the memory they free is
         * reused at once for the next pages. For a copy that exists only to
         * be restored once (a migration's staging); any immutable flag on the
         * page files is cleared first, right before CRIU runs, and from then
         * on only CRIU and this process may open them (a fanotify guard,
         * root only): a change by another process fails the restore and
         * kills what was restored. Where the file system cannot punch holes,
         * or the guard cannot be set up, the pages stay sealed and are read
         * as usual (see consumed_pages). */
        bool consume_pages;
        /* checkpoint.hmac is written with key on a thread of its own while
         * CRIU restores, instead of before: for images checked some other
         * way already (a migration's staging, whose streamed pages a MAC
         * checked as they came), whose signature would otherwise add one
         * read of every page to the downtime. Only with leave_stopped (a
         * copy must not run before its images are signed), not with verify.
         * With consume_pages, CRIU's opens of the page files wait for the
         * signing (the guard's gate), so every page is read by it before
         * CRIU can punch one out: the signing overlaps CRIU's work up to its
         * first page file, not the pages' own restore. A failed signing
         * fails the restore (CRIU is refused the page files, or what it
         * restored is killed). The signature overwrites the checkpoint.hmac
         * there in place (ckpt_sign_in_place_at): a file system that filled
         * up since the images arrived cannot fail it. */
        bool sign_beside;
        /* Native containers (a checkpoint with nm_native). The root tmpfs is
         * made again with the source's options, filled from
         * images/nm-rootfs.tar and mounted at root_dir for CRIU (NULL:
         * <work dir>/root; unmounted again once CRIU is done). Host binds
         * keep their source path unless criu.ext_mounts gives one for their
         * key (the mount point). The cgroup <cgroup_root>/nucleus-<id> is
         * made with the source's limits (where this node's hierarchy offers
         * the files) and receives the tasks (NULL: no cgroup; the tasks stay
         * in this process's). The veth is made again on bridge (NULL: the
         * source's). stdio that went to /dev/null goes to /dev/null here;
         * what went to a pipe or file outside goes to stdio_file (NULL:
         * /dev/null). */
        const char *root_dir;
        const char *cgroup_root;
        const char *bridge;
        const char *stdio_file;
} ckpt_restore_opts;

typedef enum ckpt_op_state {
        CKPT_OP_IDLE,
        CKPT_OP_QUEUED, /* prepared, waiting for the operation before it */
        CKPT_OP_RUNNING,
        /* A dump that runs on out of the way of the operations queued after
         * it: a lazy one past post-dump, serving its pages, or, of
         * restores only, one stepped aside (ckpt_dump_step_aside). */
        CKPT_OP_ASIDE,
        CKPT_OP_DONE,
        _CKPT_OP_STATE_MAX,
        _CKPT_OP_STATE_INVALID = -EINVAL,
} ckpt_op_state;

/* CRIU's notifications ("pre-dump", "network-lock", "post-dump",
 * "pre-restore", "post-restore", "pre-resume", "post-resume", ...), called
 * on the loop in the order CRIU sent them, at_usec on CLOCK_MONOTONIC;
 * and one of ckpt's own, CKPT_EVENT_ASIDE_LATE. */
typedef void (*ckpt_event_cb)(void *data, const char *event, uint64_t at_usec);

/* A dump that was refused its way aside while another dump ran aside (a
 * lazy one at post-dump, or ckpt_dump_step_aside's -EBUSY) has gone aside
 * now that the other one ended: what was queued behind it may run. */
#define CKPT_EVENT_ASIDE_LATE "ckpt-aside-late"

/* A hold for fault injection: called on the thread pool's worker that talks
 * to CRIU, at each of CRIU's notifications (the names of ckpt_event_cb),
 * after the event is queued for the loop and before CRIU is answered. CRIU
 * blocks on that answer, so it stands at exactly that point until the hook
 * returns. ckpt knows nothing of fault injection: the caller installs the
 * policy (the agent: NM_FAULT=criu-hold-at, agent/daemon/fault.c). NULL (the
 * default): CRIU is answered at once. Set once, before the first dump or
 * restore. */
typedef void (*ckpt_criu_hold_fn)(const char *event);
void ckpt_set_criu_hold(ckpt_criu_hold_fn fn);

#define CKPT__EVENTS_MAX 16

/* Private: the state one libcriu call shares between loop and worker. */
typedef struct ckpt__guard ckpt__guard;
typedef struct ckpt__signer ckpt__signer;

#define CKPT__KEEP_FDS_MAX 8

typedef enum ckpt__call_kind {
        CKPT__CALL_DUMP,
        CKPT__CALL_RESTORE,
        _CKPT__CALL_KIND_MAX,
        _CKPT__CALL_KIND_INVALID = -EINVAL,
} ckpt__call_kind;

/* Why a dump runs aside, out of the others' way (criu.c: the turn). */
typedef enum ckpt__aside {
        CKPT__ASIDE_NONE,
        CKPT__ASIDE_SERVING, /* a lazy dump serving its pages: any call runs beside it */
        CKPT__ASIDE_PACED,   /* a dump the bandwidth share holds back: restores run beside it */
        _CKPT__ASIDE_MAX,
        _CKPT__ASIDE_INVALID = -EINVAL,
} ckpt__aside;

typedef struct ckpt__call {
        ckpt__call_kind kind;
        ckpt__aside wants_aside; /* refused while another ran aside: taken when it ends */
        void (*event)(struct ckpt__call *call, const char *name, uint64_t at_usec);
        void (*finish)(struct ckpt__call *call);
        uv_loop_t *loop;
        uv_work_cb work_cb;
        ckpt_op_state *state;          /* the request's */
        struct ckpt__call *queue_next; /* waiting for its turn */
        uv_work_t work;
        uv_async_t async;
        pthread_mutex_t lock;
        struct {
                char name[32];
                uint64_t at_usec;
        } events[CKPT__EVENTS_MAX];
        unsigned n_events, n_delivered;
        uint64_t pre_usec, post_usec; /* pre-dump/post-dump or pre-/post-restore */
        struct criu_opts *copts;
        int dfd, imgfd, workfd;
        char *dir;
        char *work_dir;
        uint8_t *key;
        size_t key_len;
        const char *criu_bin; /* the request's criu_path */
        uint64_t timeout_ms;
        int keeper;         /* how the CRIU keeper ended (CKPT__KEEPER_*), -1 before */
        /* What this call's CRIU inherits (a page-server socket, --inherit-fd
         * replacements): the only descriptors its keeper keeps open. */
        int keep_fds[CKPT__KEEP_FDS_MAX];
        unsigned n_keep_fds;
        ckpt__guard *guard; /* told the keeper's pid, if any */
        int rc;
} ckpt__call;

typedef struct ckpt_dump_stats {
        uint64_t total_usec;    /* ckpt_dump() to the callback */
        uint64_t criu_usec;     /* the libcriu call */
        uint64_t frozen_usec;   /* tasks frozen: CRIU's stats-dump, else pre-dump..post-dump */
        uint64_t freezing_usec; /* from stats-dump (0 when unknown) */
        uint64_t memdump_usec;  /* from stats-dump */
        uint64_t memwrite_usec; /* from stats-dump */
        uint64_t pages_written; /* from stats-dump */
        uint64_t sign_usec;     /* hashing and writing checkpoint.hmac */
        uint64_t image_bytes;   /* bytes under images/ */
        bool from_criu_stats;   /* frozen_usec came from stats-dump */
} ckpt_dump_stats;

/* What a dump ended with, from facts checked after CRIU returned (or
 * died): whether the tasks still exist, and whether CRIU had said its
 * images were complete ("post-dump") before it failed. */
typedef enum ckpt_dump_outcome {
        CKPT_DUMP_OK,             /* images complete (and signed when asked) */
        CKPT_DUMP_FAILED_RUNNING, /* the container runs as before; nothing of the dump is left */
        CKPT_DUMP_FAILED_IMAGES,  /* CRIU failed after its images were complete and the tasks are
                                   * gone: the images were signed and can bring it back */
        CKPT_DUMP_FAILED_GONE,    /* the tasks are gone and no complete image set exists */
} ckpt_dump_outcome;

typedef struct ckpt_dump_req ckpt_dump_req;
typedef void (*ckpt_dump_cb)(ckpt_dump_req *req, int status); /* 0 or -errno */

struct ckpt_dump_req {
        void *data;             /* public: caller context */
        ckpt_event_cb event_cb; /* public, optional; set before ckpt_dump() */
        ckpt_op_state state;    /* read-only */
        /* Results, valid in the callback until ckpt_dump_req_done(): */
        bool dumped;                      /* CRIU wrote the images: the source copy is gone (or, when
                                           * held, stopped until ended or resumed) */
        bool stopped;                     /* held: the tree is stopped now */
        char hold_why[256];               /* CKPT_HOLD_IF_SAFE ended it: why, or "" */
        bool source_running;              /* on failure: the container still runs */
        ckpt_dump_outcome outcome;        /* what the dump's end left, as facts */
        char hmac[CKPT_HMAC_HEX_LEN + 1]; /* when signed */
        ckpt_dump_stats stats;
        ckpt_metadata *metadata; /* as written to metadata.json */
        /* Tasks CRIU found stopped (from the images, once dumped): what
         * ckpt_resume must leave stopped when the tree is resumed in place. */
        ckpt_stopped_tasks stopped_tasks;
        char *criu_path, *criu_version;
        bool lazy;           /* a lazy dump (opts->lazy_ps_fd) */
        ckpt_dump_pages pages; /* where the pages went (valid once CRIU ran) */
        char *work_dir;      /* CRIU's log: <work_dir>/dump.log */
        char warning[512];   /* a non-fatal problem, or "" */
        nm_error error;      /* when status < 0 (also for synchronous errors) */
        ckpt_native *native; /* what the container was (also in metadata.json as nm_native); the
                              * rollback and the commit need it (ckpt_source_resume/_end) */
        /* private */
        ckpt__call call;
        ckpt_dump_cb cb;
        pid_t pid;
        uint64_t start_ticks;
        uint64_t t0;
        bool created_dir;
        bool keep_stopped;   /* CRIU leaves the tasks stopped */
        bool end_after;      /* ... and they are killed once the images are complete */
        int ps_fd;           /* lazy or CKPT_PAGES_TO_SERVER: CRIU's page-server socket */
        bool seal;           /* opts->seal */
        int root_fd;         /* native: the root tmpfs, detached */
        ckpt_dump_hold hold; /* opts->hold */
};

/* Dumps c into dir (created 0700 and required empty: <dir>/metadata.json,
 * <dir>/images/ 0700, <dir>/checkpoint.hmac when opts->sign), leave-running
 * off, network locked with nftables. Everything that can be checked or
 * captured is done before CRIU starts (container running, criu binary, key,
 * directories, metadata): a failure there is returned synchronously, in
 * req->error too, and the container has not been touched. Once it returns 0,
 * cb runs exactly once on the loop. A failure while the container still
 * runs removes what was written into dir (and dir, if it was created), so
 * the same dir can be used again; CRIU's log stays in the work dir. A failure
 * after CRIU's dump succeeded (signing) leaves req->dumped true: the images
 * are complete and restorable. While another dump or restore runs, the
 * prepared dump waits for its turn (req->state CKPT_OP_QUEUED); a lazy dump
 * serving its pages, or one stepped aside, is CKPT_OP_ASIDE, out of the
 * others' way. */
int ckpt_dump(uv_loop_t *loop, ckpt_dump_req *req, const ckpt_container *c, const char *dir,
              const ckpt_dump_opts *opts, ckpt_dump_cb cb);
/* Ends a dump that waits for its turn: nothing was touched (what it
 * prepared in dir is removed), and cb runs from the loop with -ECANCELED,
 * req->source_running true. -EBUSY once it has started (or ended). */
int ckpt_dump_cancel(ckpt_dump_req *req);
/* Takes a running dump out of the way of restores: for a dump whose pace
 * is set from outside this machine (the node's bandwidth share), so that a
 * restore, whose container is frozen on its source, need not wait for it.
 * Dumps still wait for it (they would take a part of the same bandwidth
 * and keep their own containers frozen longer). It runs on as
 * CKPT_OP_ASIDE. 0 once it is aside (or already was); -EBUSY while another
 * dump is aside (one at a time: see the turn in criu.c), and it goes aside
 * by itself once that one ends (CKPT_EVENT_ASIDE_LATE); -EALREADY when
 * asked again before then; -ESRCH when it is not running. */
int ckpt_dump_step_aside(ckpt_dump_req *req);
/* Frees what the results hold; the req itself stays the caller's. */
void ckpt_dump_req_done(ckpt_dump_req *req);

typedef struct ckpt_restore_stats {
        uint64_t total_usec;   /* ckpt_restore() to the callback */
        uint64_t verify_usec;  /* HMAC check */
        uint64_t criu_usec;    /* the libcriu call */
        uint64_t restore_usec; /* CRIU's stats-restore restore_time (0 when unknown) */
        uint64_t forking_usec; /* CRIU's stats-restore forking_time */
        uint64_t sign_usec;    /* sign_beside: the signing, beside CRIU */
} ckpt_restore_stats;

typedef struct ckpt_restore_req ckpt_restore_req;
typedef void (*ckpt_restore_cb)(ckpt_restore_req *req, int status);

struct ckpt_restore_req {
        void *data;
        ckpt_event_cb event_cb;
        ckpt_op_state state;
        /* Results: */
        pid_t pid;            /* the restored root (host pid) */
        uint64_t start_ticks; /* its start time, for the state file */
        bool stopped;         /* tasks left stopped: ckpt_resume() or ckpt_kill_tree() */
        bool verified;        /* the HMAC matched */
        bool native;          /* a native container: the root, mounts, veth and cgroup were made */
        char *cgroup_path;    /* native: the cgroup that holds the tasks (for the state file), or NULL */
        bool consumed_pages;  /* consume_pages was asked and the file system can punch holes */
        char hmac[CKPT_HMAC_HEX_LEN + 1];
        ckpt_restore_stats stats;
        ckpt_metadata *metadata; /* the checkpoint's metadata.json */
        /* Tasks stopped at the freeze (read before CRIU ran): pass to
         * ckpt_resume, so that they stay stopped. */
        ckpt_stopped_tasks stopped_tasks;
        bool tcp_closed; /* established TCP connections were restored closed */
        char *criu_path, *criu_version;
        char *work_dir;    /* <work_dir>/restore.log */
        char warning[256]; /* a non-fatal problem (e.g. refused opens of the page files), or "" */
        nm_error error;
        /* private */
        ckpt__call call;
        ckpt_restore_cb cb;
        uint64_t t0;
        bool leave_stopped;
        bool consume; /* opts->consume_pages: tried on the worker, under the guard */
        ckpt__guard *guard;
        bool sign_beside;     /* opts->sign_beside */
        ckpt__signer *signer; /* the signing beside CRIU, while it runs */
        ckpt_native *desc; /* native: from nm_native */
        int root_tar_fd;   /* native: images/nm-rootfs.tar */
        char *root_dir;    /* native: where the root is mounted for CRIU */
        bool root_made;
        bool cgroup_made;
        int inherit_fds[3]; /* native: stdio replacements handed to CRIU */
};

/* Restores the checkpoint in dir, detached. With opts->verify the HMAC is
 * checked first, on the thread pool, and a mismatch (-EBADMSG) ends it before
 * CRIU runs. Nothing is written inside dir (CRIU's work dir is elsewhere) but
 * checkpoint.hmac with opts->sign_beside, so a failed restore can be retried
 * from the same images. Synchronous errors and waiting for its turn as for
 * ckpt_dump. */
int ckpt_restore(uv_loop_t *loop, ckpt_restore_req *req, const char *dir, const ckpt_restore_opts *opts,
                 ckpt_restore_cb cb);
/* Ends a restore that waits for its turn (cb runs with -ECANCELED, nothing
 * was restored); -EBUSY once it has started (or ended). */
int ckpt_restore_cancel(ckpt_restore_req *req);
void ckpt_restore_req_done(ckpt_restore_req *req);

/* ------------------------------------------------------------------------
 * Post-copy (lazy migration) */

typedef struct ckpt_lazy_pages ckpt_lazy_pages;
typedef void (*ckpt_lazy_pages_cb)(ckpt_lazy_pages *lp, int status, void *userdata);

/* CRIU's page server (the serving side of a lazy dump) grows a pipe to
 * about 3.2 MiB, which fs.pipe-max-size must allow: its default (1 MiB)
 * makes CRIU fail mid-dump with "splice: Bad file descriptor". */
#define CKPT_LAZY_PIPE_MAX (4u << 20)

/* 0 when this node can serve a lazy dump; else an error that says what to
 * raise. */
int ckpt_lazy_dump_check(nm_error *err);

/* Starts `criu lazy-pages --page-server --ps-socket` for the images in dir,
 * its socket and log in work_dir (give ckpt_restore the same work_dir with
 * lazy_pages), talking CRIU's page-server protocol on ps_fd (taken over).
 * ready runs once its socket is there (status 0) or it could not start
 * (< 0); done runs once it has exited: 0 when every page was delivered. */
int ckpt_lazy_pages_start(uv_loop_t *loop, const ckpt_criu *criu, const char *dir, const char *work_dir,
                          int ps_fd, ckpt_lazy_pages_cb ready, ckpt_lazy_pages_cb done, void *userdata,
                          nm_error *err, ckpt_lazy_pages **ret);
/* Kills the daemon if it still runs (done still runs); frees it once it
 * has exited. Returns NULL. */
ckpt_lazy_pages *ckpt_lazy_pages_free(ckpt_lazy_pages *lp);

/* ------------------------------------------------------------------------
 * Pages streamed while CRIU dumps */

typedef struct ckpt_page_server ckpt_page_server;
/* why: what went wrong, or refused opens of its files; "" if nothing. */
typedef void (*ckpt_page_server_cb)(ckpt_page_server *ps, int status, const char *why, void *userdata);

/* Starts `criu page-server --ps-socket`, which writes the pagemaps and pages
 * a dump with CKPT_PAGES_TO_SERVER sends on ps_fd (taken over) into dir's
 * images; its log (page-server.log) in work_dir. done runs once it has
 * exited: 0 only when the dump's session ended complete (CRIU flushed it)
 * and its files are sealed; an empty or cut session fails. From the start
 * until the seal, a guard (fanotify, CAP_SYS_ADMIN) lets only CRIU and this
 * process open the files of dir's images; a change by anyone else fails it
 * (-EBADMSG). */
int ckpt_page_server_start(uv_loop_t *loop, const ckpt_criu *criu, const char *dir, const char *work_dir,
                           int ps_fd, ckpt_page_server_cb done, void *userdata, nm_error *err,
                           ckpt_page_server **ret);
/* Kills it if it still runs (done still runs); frees it once it has
 * exited. Returns NULL. */
ckpt_page_server *ckpt_page_server_free(ckpt_page_server *ps);

/* After a failed lazy dump CRIU lets the tasks run again but leaves their
 * network locked (its nftables table "inet CRIU-<run id>" in the network
 * namespace of pid): this removes it. Returns the number of tables removed. */
int ckpt_lazy_unlock_network(pid_t pid, nm_error *err);
/* The same for any CRIU operation that ended badly (a failed or killed
 * dump, an agent that died during one): removes CRIU's lock table from
 * pid's network namespace if it is one of its own; the node's namespace
 * (shared with other operations) is never touched. Blocks (runs nft). */
int ckpt_unlock_network_left(pid_t pid, nm_error *err);
