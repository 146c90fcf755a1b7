/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The checkpoint formats shared with the nucleus runtime, byte for byte:
 * the canonical tree walk and its HMAC (checkpoint.hmac), the HMAC key file,
 * metadata.json and the runtime's container state files.
 *
 * This half of ckpt/ (libckpt_format, meson `ckpt_format_dep`) needs neither
 * libcriu nor libuv, so that transfer/ can hash a checkpoint tree as its bytes
 * stream past, and so that it is unit-testable without root. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define CKPT_HMAC_FILE "checkpoint.hmac"
#define CKPT_METADATA_FILE "metadata.json"
#define CKPT_IMAGES_DIR "images"

#define CKPT_HMAC_HEX_LEN 64
#define CKPT_KEY_MIN_LEN 32
#define CKPT_KEY_MAX_LEN (64 * 1024)
#define CKPT_KEY_ENV "NUCLEUS_CHECKPOINT_HMAC_KEY_FILE"
#define CKPT_KEY_PATH_ROOT "/var/lib/nucleus/checkpoint-hmac.key"

#define CKPT_STATE_DIR_ENV "NUCLEUS_STATE_DIR"
#define CKPT_STATE_DIR_ROOT "/var/run/nucleus"

/* Limits of the canonical walk: checkpoint trees are shallow (images/ is
 * flat); anything deeper or longer is refused rather than recursed into. */
#define CKPT_TREE_MAX_DEPTH 32
#define CKPT_TREE_MAX_PATH 4096

/* ------------------------------------------------------------------------
 * Canonical tree order
 *
 * Entries of each directory sorted bytewise by name, depth first; a
 * directory's record comes before its contents. Relative paths are '/'
 * separated, valid UTF-8 (as nucleus requires), without empty, "." or ".."
 * components. The top-level checkpoint.hmac is never part of the walk. */

typedef enum ckpt_entry_type {
        CKPT_ENTRY_DIR,
        CKPT_ENTRY_FILE,
        _CKPT_ENTRY_TYPE_MAX,
        _CKPT_ENTRY_TYPE_INVALID = -EINVAL,
} ckpt_entry_type;

/* Checks a sequence of records against the canonical order, one record at a
 * time, so a receiver can refuse a file the moment it arrives out of order. */
typedef struct ckpt_tree_order ckpt_tree_order;

int ckpt_tree_order_new(ckpt_tree_order **ret);
ckpt_tree_order *ckpt_tree_order_free(ckpt_tree_order *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(ckpt_tree_order *, ckpt_tree_order_free);

/* Accepts the next record, or returns -EBADMSG when relpath is malformed,
 * names the top-level checkpoint.hmac, is not below a directory announced
 * earlier, or does not sort after its predecessor in the same directory. */
int ckpt_tree_order_next(ckpt_tree_order *o, ckpt_entry_type type, const char *relpath, nm_error *err);

/* 0 when relpath is a well-formed relative path (see above), else -EINVAL. */
int ckpt_relpath_check(const char *relpath, nm_error *err);

/* ------------------------------------------------------------------------
 * Tree HMAC, incremental
 *
 * HMAC-SHA256 over the records of the canonical walk:
 *   directory: "D" NUL relpath NUL
 *   file:      "F" NUL relpath NUL size(u64 little-endian) bytes...
 * Records must come in canonical order (checked: see ckpt_tree_order), and a
 * file's bytes must add up to its announced size before the next record. Any
 * error poisons the object: every later call fails. */

typedef struct ckpt_hmac ckpt_hmac;

/* Keys longer than the SHA-256 block (64 bytes) are hashed first, as HMAC
 * prescribes; the key bytes are copied. */
int ckpt_hmac_new(const void *key, size_t key_len, ckpt_hmac **ret);
ckpt_hmac *ckpt_hmac_free(ckpt_hmac *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(ckpt_hmac *, ckpt_hmac_free);

int ckpt_hmac_dir(ckpt_hmac *h, const char *relpath, nm_error *err);
int ckpt_hmac_file_begin(ckpt_hmac *h, const char *relpath, uint64_t size, nm_error *err);
/* Bytes of the current file; more than announced is -EFBIG. */
int ckpt_hmac_update(ckpt_hmac *h, const void *buf, size_t n, nm_error *err);
/* The HMAC of the records so far, as if the tree ended here, without ending
 * the walk (32 bytes). Only between records: the current file must be
 * complete. */
int ckpt_hmac_mark(ckpt_hmac *h, uint8_t ret_mac[static CKPT_HMAC_HEX_LEN / 2], nm_error *err);
/* Ends the walk: 64 lowercase hex digits and a NUL. */
int ckpt_hmac_final(ckpt_hmac *h, char ret_hex[static CKPT_HMAC_HEX_LEN + 1], nm_error *err);

/* The binding of an image set to one migration: HMAC-SHA256 under the
 * cluster key of "nucleus-migrate binding 1", NUL, then each of parts
 * (e.g. migration id, source node, target node, container id) and the
 * tree HMAC (hex), each followed by a NUL; 64 lowercase hex digits. It
 * lives beside checkpoint.hmac (which stays nucleus's format): a set
 * signed for one migration does not verify as another's. A part may not
 * be NULL; n_parts at most 8. */
#define CKPT_BINDING_PARTS_MAX 8
int ckpt_binding(const void *key, size_t key_len, const char *const *parts, size_t n_parts,
                 const char *tree_hex, char ret_hex[static CKPT_HMAC_HEX_LEN + 1]);

/* Compares the contents of a checkpoint.hmac file (surrounding whitespace
 * trimmed, as nucleus does) with a computed digest, in constant time.
 * Mismatch or a malformed file is -EBADMSG with "HMAC mismatch (expected X,
 * got Y)". */
int ckpt_hmac_compare(const char *file_text, size_t len, const char actual_hex[static CKPT_HMAC_HEX_LEN + 1],
                      nm_error *err);

/* ------------------------------------------------------------------------
 * Canonical walk of a directory */

typedef struct ckpt_tree_entry {
        ckpt_entry_type type;
        char *relpath;
        uint64_t size; /* files only */
} ckpt_tree_entry;

/* Lists the tree below dirfd in canonical order, without the top-level
 * checkpoint.hmac. A symlink, a special file (fifo, socket, device) or a name
 * that is not valid UTF-8 anywhere in the tree is an error (-ELOOP, -EBADFD,
 * -EILSEQ), never skipped. */
int ckpt_tree_walk(int dirfd, ckpt_tree_entry **ret, size_t *ret_n, nm_error *err);
void ckpt_tree_entries_free(ckpt_tree_entry *e, size_t n);

/* Sum of the file sizes. */
uint64_t ckpt_tree_bytes(const ckpt_tree_entry *e, size_t n);

/* Opens relpath below dirfd for reading, refusing a symlink at every
 * component; it must be a regular file (of expected_size unless that is
 * UINT64_MAX). */
int ckpt_tree_open_file(int dirfd, const char *relpath, uint64_t expected_size, nm_error *err);

/* Walks and hashes the tree below dirfd. */
int ckpt_hmac_tree(int dirfd, const void *key, size_t key_len, char ret_hex[static CKPT_HMAC_HEX_LEN + 1],
                   nm_error *err);

/* ------------------------------------------------------------------------
 * Signing and verifying a checkpoint directory */

/* Writes <dir>/checkpoint.hmac: exactly 64 lowercase hex digits, no newline,
 * via checkpoint.hmac.tmp (O_CREAT|O_EXCL|O_NOFOLLOW, 0600), fsync, rename.
 * A stale checkpoint.hmac.tmp is removed before hashing. ret_hex may be NULL. */
int ckpt_sign_at(int dirfd, const void *key, size_t key_len, char *ret_hex, nm_error *err);
/* The same, over a checkpoint.hmac already there (a staging's, as
 * received): its bytes are overwritten in place, so a file system that
 * filled up since cannot refuse the signature a block. Not atomic on a
 * crash: for a directory a crash discards anyway. Without one, as
 * ckpt_sign_at. */
int ckpt_sign_in_place_at(int dirfd, const void *key, size_t key_len, char *ret_hex, nm_error *err);

/* Recomputes and compares. -EBADMSG means the checkpoint failed
 * verification: a mismatch, a missing or malformed checkpoint.hmac, or a tree
 * that cannot be a signed checkpoint (symlink, special file, bad name).
 * Other codes are errors of this node (memory, I/O). ret_hex (may be NULL)
 * gets the computed digest. */
int ckpt_verify_at(int dirfd, const void *key, size_t key_len, char *ret_hex, nm_error *err);

/* ckpt_sign_at with the key from ckpt_key_load(NULL). */
int ckpt_sign(const char *dir, char *ret_hex, nm_error *err);

/* ------------------------------------------------------------------------
 * The HMAC key
 *
 * Path: NUCLEUS_CHECKPOINT_HMAC_KEY_FILE when set and non-empty, else
 * /var/lib/nucleus/checkpoint-hmac.key for root (nucleus's per-user default
 * otherwise). The parent directory must not be a symlink and, if it exists,
 * must be owned by the effective uid with no group/other bits; else it is
 * created 0700. The key file must not be a symlink, must be a regular file
 * owned by the effective uid, mode & 077 == 0, 32 bytes or more. A missing key
 * is created: 32 bytes from /dev/urandom (which must be a character device),
 * O_CREAT|O_EXCL|O_NOFOLLOW 0600, fsync. */

int ckpt_key_path(char **ret);

/* path NULL: ckpt_key_path(). The key is freed with ckpt_key_free. */
int ckpt_key_load(const char *path, uint8_t **ret_key, size_t *ret_len, nm_error *err);

/* What a missing key (or key directory) means: the local tools make one, as
 * nucleus does; the agent, on a node meant to share the cluster's key, never
 * does (-ENOENT, and the message says how to install it). */
typedef enum ckpt_key_missing {
        CKPT_KEY_CREATE,
        CKPT_KEY_REFUSE,
} ckpt_key_missing;
int ckpt_key_load_mode(const char *path, ckpt_key_missing missing, uint8_t **ret_key, size_t *ret_len,
                       nm_error *err);

/* The key's identity, which agents exchange in HELLO so that nodes holding
 * different keys refuse a move before anything is frozen: HMAC-SHA256 under
 * the key of a fixed, domain-separating message, as 64 hex digits. It says
 * nothing about the key. */
int ckpt_key_identity(const uint8_t *key, size_t len, char ret_hex[static CKPT_HMAC_HEX_LEN + 1]);
void ckpt_key_free(uint8_t *key, size_t len);

/* ------------------------------------------------------------------------
 * Containers: the nucleus runtime's state files (<state dir>/<id>.json) */

typedef enum ckpt_status {
        CKPT_STATUS_CREATING,
        CKPT_STATUS_CREATED,
        CKPT_STATUS_RUNNING,
        CKPT_STATUS_STOPPED,
        _CKPT_STATUS_MAX,
        _CKPT_STATUS_INVALID = -EINVAL,
} ckpt_status;

const char *ckpt_status_to_string(ckpt_status s);
ckpt_status ckpt_status_from_string(const char *s);

typedef struct ckpt_container {
        char *id;
        char *name;
        pid_t pid;
        uint64_t start_ticks; /* field 22 of /proc/<pid>/stat; 0 = unknown */
        bool using_gvisor;
        bool rootless;
        char *cgroup_path; /* NULL when null */
        ckpt_status status;
        char **command; /* NULL-terminated */
        bool bare;      /* a process tree given by pid: no state file */
        json_t *json;   /* the state file as read, unknown fields included;
                         * NULL for bare trees. Owned. */
} ckpt_container;

/* [A-Za-z0-9_-]+, as nucleus validates ids before using them in a path. */
bool ckpt_container_id_valid(const char *id);

/* Parses a state file. Field types are checked as nucleus's serde would;
 * unknown fields are kept in c->json. Bad JSON or a bad field: -EBADMSG. */
int ckpt_container_from_json(const char *text, size_t len, ckpt_container **ret, nm_error *err);

/* The state file text for c->json after setting pid, start_ticks and status
 * in place (field order and unknown fields kept): serde's pretty format. */
int ckpt_container_format(const ckpt_container *c, char **ret_text, nm_error *err);

ckpt_container *ckpt_container_free(ckpt_container *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(ckpt_container *, ckpt_container_free);

/* Field 22 (starttime) of /proc/<pid>/stat. */
int ckpt_proc_start_ticks(pid_t pid, uint64_t *ret);

/* ------------------------------------------------------------------------
 * metadata.json
 *
 * Nucleus's fields in nucleus's order (container_id, container_name,
 * original_pid, command, checkpoint_at, version, using_gvisor, rootless,
 * cgroup_path, resource_limits), then ours, all prefixed "nm_" (nucleus's
 * serde ignores unknown fields): see DESIGN.md "ckpt". */

typedef struct ckpt_metadata {
        json_t *json; /* the whole object in file order; owned */
        /* Views into json, valid while it lives: */
        const char *container_id;
        const char *container_name;
        uint32_t original_pid;
        uint64_t checkpoint_at;
        bool using_gvisor;
        bool rootless;
        const char *cgroup_path;       /* NULL when null */
        bool bare;                     /* nm_bare_pid */
        const json_t *container_state; /* nm_container_state, NULL when absent or null */
        bool has_image_bytes;
        uint64_t image_bytes; /* nm_image_bytes */
} ckpt_metadata;

typedef struct ckpt_capture_info {
        const char *criu_version; /* "4.2.1" */
        const char *node_name;    /* NULL: the host name */
} ckpt_capture_info;

/* Everything metadata.json says, captured while the container still runs:
 * nm_image_bytes stays null until ckpt_metadata_set_image_bytes. Reads the
 * cgroup's limits as nucleus does (a missing limit file is an error, as there;
 * "max" is null; io.max may be missing). */
int ckpt_metadata_capture(const ckpt_container *c, const ckpt_capture_info *info, ckpt_metadata **ret,
                          nm_error *err);

/* Fills in the one number known only after the dump. Never fails the
 * checkpoint: should even this small allocation fail, the file keeps null
 * there, which every reader accepts. */
void ckpt_metadata_set_image_bytes(ckpt_metadata *md, uint64_t bytes);

int ckpt_metadata_format(const ckpt_metadata *md, char **ret_text, nm_error *err);
/* <dirfd>/metadata.json, 0600, via metadata.json.tmp, fsync, rename. */
int ckpt_metadata_write(int dirfd, const ckpt_metadata *md, nm_error *err);
int ckpt_metadata_parse(const char *text, size_t len, ckpt_metadata **ret, nm_error *err);
int ckpt_metadata_load(int dirfd, ckpt_metadata **ret, nm_error *err);
ckpt_metadata *ckpt_metadata_free(ckpt_metadata *md);
DEFINE_TRIVIAL_CLEANUP_FUNC(ckpt_metadata *, ckpt_metadata_free);

/* The container a checkpoint holds, for writing its state file on the node
 * that restores it: the source's state file carried in nm_container_state
 * when present (unknown fields kept), else built from nucleus's fields. */
int ckpt_container_from_metadata(const ckpt_metadata *md, ckpt_container **ret, nm_error *err);

/* Resource limits of a cgroup directory as nucleus records them
 * (resource_limits object). */
int ckpt_resource_limits_read(int cgroup_dirfd, json_t **ret, nm_error *err);
