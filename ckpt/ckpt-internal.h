/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Declarations shared inside ckpt/ only. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ckpt-format.h"
#include "error.h"

/* jansson keeps integers in a signed 64-bit type, but nucleus writes u64
 * fields (config_hash is a hash: half of all values exceed INT64_MAX). Such
 * numbers are carried through jansson as strings holding a marker, and turned
 * back into bare numbers when the text is written, so that a state file
 * round-trips byte for byte. */
#define CKPT_U64_MARK "\001nm-u64:"

/* json_loadb with big unsigned integers kept (see above). */
json_t *ckpt__json_loadb(const char *text, size_t len, json_error_t *error);
/* json_dumps(JSON_INDENT(2)|JSON_PRESERVE_ORDER), the shape of serde_json's
 * to_string_pretty, with big integers written back as numbers. */
char *ckpt__json_dumps(const json_t *json);
/* A u64 as a json value (integer, or the big-number marker). */
json_t *ckpt__json_u64(uint64_t v);
/* Reads an unsigned integer written by either path above. */
int ckpt__json_get_u64(const json_t *v, uint64_t *ret);

/* Type checks in the way serde would reject a field. Each returns -EBADMSG
 * with "field 'name' ..." in err. `required` false: a missing or null field
 * yields the default (NULL/false/0) and *ret_present false. */
int ckpt__json_string(const json_t *o, const char *key, bool required, const char **ret, nm_error *err);
int ckpt__json_u64_field(const json_t *o, const char *key, bool required, uint64_t max, uint64_t *ret,
                         bool *ret_present, nm_error *err);
int ckpt__json_bool(const json_t *o, const char *key, bool required, bool *ret, nm_error *err);
int ckpt__json_string_array(const json_t *o, const char *key, char ***ret, nm_error *err);

char **ckpt__strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, ckpt__strv_free);
char **ckpt__strv_copy(char *const *l);

/* Reads "/proc/<pid>/<what>" (e.g. "stat"). */
int ckpt__proc_read(pid_t pid, const char *what, char **ret, size_t *ret_len);
/* The text of /proc/<pid>/stat, read once, parsed here only: field n as
 * proc(5) numbers them (n >= 3, after the command), as a number; the state
 * letter (field 3; '\0' when unreadable); the start time (field 22). */
int ckpt__stat_field(const char *stat, int n, long long *ret);
char ckpt__stat_state(const char *stat);
int ckpt__parse_start_ticks(const char *stat, uint64_t *ret);
/* Whether the texts of /proc/<pid>/stat and /proc/<pid>/status say the
 * task is on its way out (exiting, or SIGKILL pending); ckpt__proc_dying
 * reads them. A task that is gone is not "dying". */
bool ckpt__parse_dying(const char *stat, const char *status);
bool ckpt__proc_dying(pid_t pid);

/* Microseconds of CLOCK_MONOTONIC. */
uint64_t ckpt__now_usec(void);

/* Runs path with argv, a clean environment and stdin from /dev/null, and
 * collects its stdout and stderr (together) into out (NUL-terminated, cut at
 * size - 1) for at most timeout_ms; then it is killed. Blocking: for
 * start-up and the thread pool. 0 and the wait status, or -errno. */
int ckpt__run_capture(const char *path, char *const argv[], unsigned timeout_ms, char *out, size_t size,
                      int *ret_status);

/* Criu binary resolution with an explicit candidate list (tests). */
typedef struct ckpt_criu ckpt_criu;
int ckpt__criu_resolve_from(const char *const *candidates, const char *configured, ckpt_criu **ret,
                            nm_error *err);
/* Parses the output of `criu --version` into "4.2.1" and 40201. */
int ckpt__criu_parse_version(const char *out, char **ret_version, unsigned *ret_num);

/* Log excerpt: the last Error lines of a CRIU log (the harmless RLIMIT_NOFILE
 * line is skipped), or its last lines when there is none. */
int ckpt__log_excerpt(int dirfd, const char *name, char *buf, size_t size);

/* Parses CRIU's stats-dump / stats-restore image (protobuf) by hand. */
typedef struct ckpt__stats {
        bool dump, restore;
        uint64_t freezing_us, frozen_us, memdump_us, memwrite_us, pages_written;
        uint64_t forking_us, restore_us, pages_restored;
} ckpt__stats;
int ckpt__stats_parse(const uint8_t *buf, size_t len, ckpt__stats *ret);

/* A minimal protobuf reader, enough for the few fields we read out of
 * CRIU's images (criu-images.c). */
enum {
        CKPT__PB_VARINT = 0,
        CKPT__PB_FIXED64 = 1,
        CKPT__PB_BYTES = 2,
        CKPT__PB_FIXED32 = 5,
};
typedef struct ckpt__pb {
        const uint8_t *p, *end;
} ckpt__pb;
typedef struct ckpt__pb_field {
        uint32_t number;
        unsigned wire;
        uint64_t v;          /* varint and fixed wire types */
        const uint8_t *data; /* bytes: a string or a nested message */
        size_t len;
} ckpt__pb_field;
/* The next field: 1, 0 at the end, -EBADMSG when malformed. */
int ckpt__pb_next(ckpt__pb *pb, ckpt__pb_field *f);

/* The entries of a CRIU image held in memory: its magic is checked (after
 * the common or service magic, where there is one). */
typedef struct ckpt__img {
        const uint8_t *p, *end;
} ckpt__img;
int ckpt__img_init(ckpt__img *img, const uint8_t *buf, size_t len, uint32_t magic);
/* The next entry's message: 1, 0 at the end, -EBADMSG. */
int ckpt__img_next(ckpt__img *img, const uint8_t **ret_msg, size_t *ret_len);

/* Whether the dump in imgfd was made with tcp-close (inventory.img):
 * CRIU then requires it on restore too. */
int ckpt__images_tcp_close(int imgfd, bool *ret);
/* ckpt_stopped_tasks_load for an open images directory. */
typedef struct ckpt_stopped_tasks ckpt_stopped_tasks;
int ckpt__stopped_tasks_at(int imgfd, ckpt_stopped_tasks *ret, nm_error *err);

/* ---- the CRIU keeper (criu-keeper.c) --------------------------------------- */

/* A process that runs `criu swrk` for one operation, bounds it in time and
 * kills whatever CRIU left unless told the operation succeeded. */
typedef struct ckpt__keeper {
        pid_t pid;
        int sk;  /* libcriu's end of swrk's socket (CRIU_COMM_FD; libcriu closes it) */
        int ctl; /* the verdict's pipe */
} ckpt__keeper;

/* The keeper's exit status. */
enum {
        CKPT__KEEPER_KEPT = 0,      /* told CRIU succeeded: what it made stays */
        CKPT__KEEPER_SWEPT = 1,     /* told it failed (or the caller went): CRIU and its tree killed */
        CKPT__KEEPER_TIMED_OUT = 2, /* no verdict by the deadline: CRIU and its tree killed */
        CKPT__KEEPER_NO_CRIU = 3,   /* swrk could not be started */
};

/* Forks the keeper, which runs criu_path as `criu swrk` and waits at most
 * timeout_ms for the verdict. Call with the signal mask swrk is to have.
 * The keeper (and so CRIU) holds no descriptor of this process but stdio
 * and keep[n_keep]: another operation's CRIU socket, inherited, would keep
 * that socket open for as long as this CRIU runs. */
int ckpt__keeper_start(ckpt__keeper *k, const char *criu_path, uint64_t timeout_ms, const int *keep,
                       unsigned n_keep, nm_error *err);
/* Gives the verdict (keep: CRIU succeeded) and waits for the keeper; returns
 * its exit status (CKPT__KEEPER_*). */
int ckpt__keeper_end(ckpt__keeper *k, bool keep);

/* The page files' guard (criu-guard.c): while their seal is off for a
 * consuming restore, only this process and CRIU (the keeper's descendants)
 * may open them; a change by anyone else fails the restore. */
typedef struct ckpt__guard ckpt__guard;
/* What CRIU's opens of the page files wait for: a signing of the staging
 * that must read every page before a consuming restore punches it out. fd
 * (an eventfd) turns readable as the signing ends, an instant before state
 * leaves SHUT (after that the signer no longer touches the gate): a waiter
 * polls it, then looks at state again until it has. */
typedef enum ckpt__gate_state {
        CKPT__GATE_SHUT,   /* the signing runs: CRIU's opens wait */
        CKPT__GATE_OPEN,   /* signed: CRIU's opens go through */
        CKPT__GATE_BARRED, /* the signing failed: CRIU's opens are refused */
} ckpt__gate_state;
typedef struct ckpt__gate {
        int fd;
        _Atomic ckpt__gate_state state;
} ckpt__gate;
/* Marks every pages-*.img in imgfd; needs CAP_SYS_ADMIN (fanotify). With a
 * gate (else NULL, which must outlive the guard), CRIU's opens of them wait
 * until it opens. */
int ckpt__guard_start(int imgfd, ckpt__gate *gate, ckpt__guard **ret, nm_error *err);
/* The same over every file of a directory, those made later too: a page
 * server's output until it is sealed. */
int ckpt__guard_start_dir(int dirfd, ckpt__guard **ret, nm_error *err);
void ckpt__guard_set_keeper(ckpt__guard *g, pid_t keeper);
/* Stops and frees the guard (NULL: nothing). -EBADMSG when a stranger
 * changed a page file; msg says who, and any refused opens. */
int ckpt__guard_stop(ckpt__guard *g, char *msg, size_t size);

/* ---- native containers (native*.c, rootfs*.c) ---------------------------- */

typedef struct ckpt_native ckpt_native;

/* native-nat.c: n's published ports, read from this node's nat table. */
int ckpt__native_describe_ports(ckpt_native *n, nm_error *err);

typedef struct ckpt_native_mount ckpt_native_mount;

/* Runs fn(arg) on a short-lived thread of its own that has entered the
 * namespaces of pid named in nstypes (CLONE_NEWNS, CLONE_NEWNET,
 * CLONE_NEWCGROUP): the rest of this process stays where it is. For a mount
 * namespace the thread first stops sharing its file system context, so its
 * root and cwd become the namespace's root. Returns fn's result, or a
 * negative errno when the namespaces could not be entered. */
int ckpt__in_ns(pid_t pid, int nstypes, int (*fn)(void *arg), void *arg);

/* True when pid's namespace of that kind ("mnt", "net", "cgroup", "user")
 * is this process's. */
bool ckpt__same_ns(pid_t pid, const char *kind);

/* One line of /proc/<pid>/mountinfo. */
typedef struct ckpt__mnt {
        int id, parent;
        unsigned major, minor;
        char *root;   /* the path within its file system */
        char *target; /* the mount point, relative to the reader's root */
        char *opts;   /* per-mount options */
        char *fstype;
        char *source;
        char *super_opts; /* per-superblock options */
} ckpt__mnt;

/* Parses a mountinfo text (octal escapes undone). */
int ckpt__mountinfo_parse(const char *text, ckpt__mnt **ret, size_t *ret_n);
/* /proc/<pid>/mountinfo, pid 0: this process. */
int ckpt__mountinfo_read(pid_t pid, ckpt__mnt **ret, size_t *ret_n);
void ckpt__mountinfo_free(ckpt__mnt *m, size_t n);
/* CKPT_MNT_* from per-mount options. */
unsigned ckpt__mnt_flags(const char *opts);

/* One network interface of the calling thread's network namespace. */
typedef struct ckpt__link {
        int index;
        int master; /* the bridge it is enslaved to, 0 if none */
        char name[16];
        char kind[32]; /* "veth", "tun", "bridge", "" (lo, physical) */
        char addr[16]; /* its first IPv4 address, "" if none */
        unsigned prefix;
} ckpt__link;

/* Every interface with its first IPv4 address, by rtnetlink. */
int ckpt__links(ckpt__link **ret, size_t *ret_n);
const ckpt__link *ckpt__link_by_name(const ckpt__link *l, size_t n, const char *name);
const ckpt__link *ckpt__link_by_index(const ckpt__link *l, size_t n, int index);

/* cgroup v2 (native-cg.c). */
int ckpt__cgroup_describe(pid_t pid, const ckpt__mnt *host, size_t n_host, ckpt_native *n, nm_error *err);
/* Puts every process of the tree rooted at pid into the cgroup directory
 * dir (host path), again until no new process shows up. */
int ckpt__cgroup_move_tree(pid_t pid, const char *dir, nm_error *err);
/* For the dump: <cgroupns_root>/nm-dump-<id> made, the tree moved into it,
 * n->cgroup_dump set. */
int ckpt__cgroup_prepare_dump(ckpt_native *n, const char *id, pid_t pid, nm_error *err);
/* The tree back into <cgroup_fs><cgroup>, the dump cgroup removed. */
int ckpt__cgroup_undo_dump(const ckpt_native *n, pid_t pid, nm_error *err);
/* rmdir that waits (up to ~2 s) for the last task to leave. */
int ckpt__cgroup_remove(const char *dir, nm_error *err);
/* Makes dir (it must not exist) and writes the limits of a resource_limits
 * object where this hierarchy offers the files; the others are skipped and
 * counted in *ret_skipped. */
int ckpt__cgroup_create(const char *dir, const json_t *limits, unsigned *ret_skipped, nm_error *err);

/* The root tmpfs (rootfs.c). */
#define CKPT_ROOTFS_IMAGE "nm-rootfs.tar"
/* A detached clone of the root mount of pid's mount namespace, without
 * anything mounted on top: its contents, alive as long as the fd is. */
int ckpt__root_clone(pid_t pid, int *ret_fd, nm_error *err);
/* Bytes in use on the file system of fd. */
int ckpt__fs_used(int fd, uint64_t *ret);
/* Writes the tree below rootfd as a POSIX (pax) tar into outfd. */
int ckpt__tar_write(int rootfd, int outfd, nm_error *err);
/* Extracts a tar from infd below rootfd, refusing anything that is not
 * plainly inside: absolute or ".." paths, an entry whose parent is a
 * symlink (no symlink is ever followed), hard links out of the tree or to
 * directories, device nodes other than the skeleton's (/dev/null, zero,
 * full, random, urandom with their numbers), duplicates, unknown entry
 * types, bad checksums or numbers. -EBADMSG with the reason. */
int ckpt__tar_extract(int infd, int rootfd, nm_error *err);
/* A fresh tmpfs with the options of root (size, mode, ...) and its flags,
 * filled from tarfd and mounted at dir (created 0700 if missing). */
int ckpt__root_make(const ckpt_native_mount *root, int tarfd, const char *dir, nm_error *err);
/* Lazily unmounts dir and removes it. */
void ckpt__root_unmake(const char *dir);
/* After a restore: sets the flags each mount had on the source (CRIU 4.2.1
 * restores some read-only external binds read-write), then checks every
 * mount's flags against the source's. */
int ckpt__mounts_fixup(pid_t pid, const ckpt_native *n, nm_error *err);

/* TCP sockets of the tree out of repair mode (after a dump that left it
 * stopped). Returns how many. */
int ckpt__tcp_repair_off(pid_t root, nm_error *err);
