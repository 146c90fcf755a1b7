/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The wire protocol spoken between agents (peer sessions) and between the
 * CLI and its agent (control sessions). Pure functions: no I/O, no event
 * loop. PROTOCOL.md in this folder is the reference for the message table,
 * the limits and how to add a message type.
 *
 * A frame is a 4-byte big-endian payload length followed by exactly one
 * msgpack map. Every map has the key "t" (message type); migration messages
 * carry "mig" (the migration id). Unknown keys are ignored, unknown message
 * types are rejected.
 *
 * Errors: functions return >= 0 on success and a negative errno on failure,
 * and fill the nm_error with a sentence naming the message and the field:
 *   -E2BIG            a frame length above the cap (or a message too big
 *                     to encode),
 *   -EPROTO           an unknown message type,
 *   -EPROTONOSUPPORT  no protocol version in common with the peer,
 *   -EBADMSG          anything else malformed: truncated frame, bad msgpack,
 *                     missing field, wrong type, value out of range, hostile
 *                     path,
 *   -ENOMEM           out of memory. */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define PROTO_VERSION 1u     /* the version this build speaks best */
#define PROTO_MIN_VERSION 1u /* the oldest version this build still speaks */

#define PROTO_FRAME_HDR 4u                   /* big-endian payload length */
#define PROTO_FRAME_MAX (4u * 1024u * 1024u) /* payload bytes, header excluded */
#define PROTO_DATA_MAX (1024u * 1024u)       /* DATA payload bytes per frame */
/* Room for the frame header, the map and the bin header that
 * proto_data_header() and proto_zdata_header() write in front of a payload. */
#define PROTO_DATA_HDR_MAX 112u

#define PROTO_ID_MAX 64u                          /* mig, container_id, phase: [A-Za-z0-9_-]{1,64} */
#define PROTO_NAME_MAX 255u                       /* node names, versions, targets, container refs */
#define PROTO_TEXT_MAX 4096u                      /* reason, message */
#define PROTO_FILE_NAME_MAX 255u                  /* a name under images/ */
#define PROTO_PATH_MAX (7u + PROTO_FILE_NAME_MAX) /* "images/" + name */
#define PROTO_METADATA_MAX PROTO_DATA_MAX
#define PROTO_CPUINFO_MAX (64u << 10) /* OFFER cpuinfo: CRIU writes a few hundred bytes */
#define PROTO_SHA256_LEN 32u
#define PROTO_HMAC_HEX_LEN 64u
#define PROTO_FEATURES_MAX 32u
#define PROTO_FEATURE_MAX 32u /* length of one feature name */
#define PROTO_TARGETS_MAX 256u
#define PROTO_OPTS_MAX 64u
#define PROTO_OPT_KEY_MAX 64u
#define PROTO_LANES_MAX 4u        /* sessions one stream may be dealt over, its own included */
#define PROTO_LANE_SECRET_LEN 32u /* ACCEPT lane_secret, LANE_JOIN secret */
/* Bounds on the msgpack structure of one frame, enforced before msgpack-c
 * sees the bytes: msgpack-c allocates for a container's announced element
 * count before it checks that the elements are there. */
#define PROTO_OBJECTS_MAX 4096u
#define PROTO_DEPTH_MAX 16u

/* Wire values: never renumber, only append. Gaps group the sessions. */
typedef enum proto_msg_type {
        /* any session */
        PROTO_MSG_HELLO = 1,
        PROTO_MSG_ERROR = 2,
        PROTO_MSG_PING = 3,
        PROTO_MSG_PONG = 4,
        PROTO_MSG_RELAY = 5,     /* dial-stdio to its agent only: who the relayed peer is */
        PROTO_MSG_RELAY_FDS = 6, /* the same, with the SSH session's pipes attached; the agent's answer */
        /* peer session: node selection */
        PROTO_MSG_NODE_INFO_REQ = 10,
        PROTO_MSG_NODE_INFO = 11,
        /* peer session: one migration */
        PROTO_MSG_OFFER = 20,
        PROTO_MSG_ACCEPT = 21,
        PROTO_MSG_REJECT = 22,
        PROTO_MSG_FILE = 23,
        PROTO_MSG_DATA = 24,
        PROTO_MSG_FILE_END = 25,
        PROTO_MSG_IMAGES_DONE = 26,
        PROTO_MSG_VERIFIED = 27,
        PROTO_MSG_RESTORE = 28,
        PROTO_MSG_RESTORED = 29,
        PROTO_MSG_COMMIT = 30,
        PROTO_MSG_RUNNING = 31,
        PROTO_MSG_ABORT = 32,
        PROTO_MSG_QUERY = 33,
        PROTO_MSG_OUTCOME = 34,
        PROTO_MSG_ZDATA = 35,       /* feature "zstd" */
        PROTO_MSG_FILE_MAC = 36,    /* feature "file-mac" */
        PROTO_MSG_PS_DATA = 37,     /* feature "lazy" */
        PROTO_MSG_RESOLVED = 38,    /* an in-doubt migration was settled by `resolve` */
        PROTO_MSG_PS_PAGES = 39,    /* feature "ps-stream" */
        PROTO_MSG_PS_END = 40,      /* feature "ps-stream" */
        PROTO_MSG_LANE_JOIN = 41,   /* feature "lanes" */
        PROTO_MSG_LANE_JOINED = 42, /* feature "lanes" */
        PROTO_MSG_LANES = 43,       /* feature "lanes" */
        /* control session (CLI -> local agent) */
        PROTO_MSG_MIGRATE = 64,
        PROTO_MSG_DRAIN = 65,
        PROTO_MSG_CORDON = 66,
        PROTO_MSG_STATUS = 67,
        PROTO_MSG_LIST = 68,
        PROTO_MSG_EVENT = 69,
        PROTO_MSG_RESULT = 70,
        PROTO_MSG_RESOLVE = 71,
        _PROTO_MSG_TYPE_MAX,
        _PROTO_MSG_TYPE_INVALID = -EINVAL,
} proto_msg_type;

typedef enum proto_role {
        PROTO_ROLE_PEER, /* "peer": another agent */
        PROTO_ROLE_CLI,  /* "cli": nucleus-migrate on this node */
        _PROTO_ROLE_MAX,
        _PROTO_ROLE_INVALID = -EINVAL,
} proto_role;

typedef enum proto_reject_code {
        PROTO_REJECT_CORDONED,     /* "cordoned" */
        PROTO_REJECT_NO_SPACE,     /* "no_space" */
        PROTO_REJECT_EXISTS,       /* "exists" */
        PROTO_REJECT_INCOMPATIBLE, /* "incompatible" */
        PROTO_REJECT_BUSY,         /* "busy" */
        PROTO_REJECT_INVALID,      /* "invalid" */
        _PROTO_REJECT_CODE_MAX,
        _PROTO_REJECT_CODE_INVALID = -EINVAL,
} proto_reject_code;

typedef enum proto_outcome {
        PROTO_OUTCOME_COMMITTED, /* "committed" */
        PROTO_OUTCOME_ABORTED,   /* "aborted" */
        PROTO_OUTCOME_UNKNOWN,   /* "unknown" */
        _PROTO_OUTCOME_MAX,
        _PROTO_OUTCOME_INVALID = -EINVAL,
} proto_outcome;

/* RESOLVE: what the operator asks for. */
typedef enum proto_decision {
        PROTO_DECISION_AUTO,   /* "auto": decide only from the facts */
        PROTO_DECISION_COMMIT, /* "commit" */
        PROTO_DECISION_ABORT,  /* "abort" */
        _PROTO_DECISION_MAX,
        _PROTO_DECISION_INVALID = -EINVAL,
} proto_decision;

typedef enum proto_opt_kind {
        PROTO_OPT_BOOL,
        PROTO_OPT_UINT,
        PROTO_OPT_STR,
        _PROTO_OPT_KIND_MAX,
        _PROTO_OPT_KIND_INVALID = -EINVAL,
} proto_opt_kind;

/* Bytes that are not a string. In a decoded message they point into the
 * frame payload that was decoded (zero-copy). */
typedef struct proto_bin {
        const uint8_t *ptr;
        size_t len;
} proto_bin;

/* An array of NUL-terminated strings. */
typedef struct proto_strv {
        const char *const *v;
        size_t n;
} proto_strv;

/* One entry of a flat option map (MIGRATE opts). */
typedef struct proto_opt {
        const char *key;
        proto_opt_kind kind;
        union {
                bool b;        /* PROTO_OPT_BOOL */
                uint64_t u;    /* PROTO_OPT_UINT */
                const char *s; /* PROTO_OPT_STR */
        };
} proto_opt;

typedef struct proto_opts {
        const proto_opt *v;
        size_t n;
} proto_opts;

/* One struct per message type. Strings are NUL-terminated; an optional
 * string that is absent is NULL; an optional number that is absent has its
 * has_* flag false. All "u64" values are at most INT64_MAX (so they fit an
 * off_t and a JSON integer). Field meanings and bounds: PROTOCOL.md. */
typedef struct proto_hello {
        uint32_t version;     /* highest version spoken, >= 1 */
        uint32_t min_version; /* lowest version spoken, 1..version */
        const char *node;
        proto_role role;
        proto_strv features; /* optional */
        const char *key_id;  /* optional: the HMAC key's identity, 64 hex digits (ckpt_key_identity) */
} proto_hello;

typedef struct proto_error {
        const char *mig; /* optional */
        int32_t code;    /* a negative errno, -4095..-1 */
        const char *reason;
} proto_error;

typedef struct proto_ping {
        uint64_t seq;
} proto_ping; /* PING and PONG */

/* The first frame dial-stdio writes to its agent, before any byte of the
 * peer's: the peer whose key ran it (the forced command's --peer), or none.
 * The peer cannot forge it: its own bytes only follow. */
typedef struct proto_relay {
        const char *peer; /* optional */
} proto_relay;
/* RELAY_FDS carries the same, with the session's stdin and stdout attached
 * (SCM_RIGHTS): an agent that takes them reads and writes the session itself
 * and answers RELAY_FDS (no peer) on the socket, which it then holds open
 * until the session ends. An agent that does not answers ERROR or closes, and
 * dial-stdio relays as with RELAY. */

typedef struct proto_node_info {
        const char *node;
        bool cordoned;
        uint64_t staging_free; /* bytes */
        uint32_t running;      /* containers */
        uint32_t migrations;   /* in flight */
        const char *criu_version;
        const char *kernel;
} proto_node_info;

typedef struct proto_offer {
        const char *mig;
        const char *container_id;   /* [A-Za-z0-9_-]{1,64}: it names a state file */
        const char *container_name; /* may be empty */
        proto_bin metadata;         /* metadata.json bytes, 1..PROTO_METADATA_MAX */
        uint64_t image_bytes;       /* estimate */
        const char *criu_version;
        const char *kernel;
        bool lazy;
        proto_bin cpuinfo;  /* optional: the source's `criu cpuinfo dump` image, 1..PROTO_CPUINFO_MAX */
        bool ps_stream;     /* the pages come as PS_PAGES while CRIU dumps (feature "ps-stream") */
        bool has_ps_stream; /* ps_stream was sent (absent: false) */
        uint32_t lanes; /* with has_lanes: sessions the source would deal the stream over, 2..PROTO_LANES_MAX
                         * (feature "lanes") */
        bool has_lanes;
} proto_offer;

/* ACCEPT. With lanes (the OFFER asked for them, feature "lanes"): how many
 * sessions the target takes for the stream, 2..the OFFER's, its own
 * included, and the secret each further session joins with. Both or
 * neither. */
typedef struct proto_accept {
        const char *mig;
        uint32_t lanes;
        bool has_lanes;
        proto_bin lane_secret; /* PROTO_LANE_SECRET_LEN bytes, or absent */
} proto_accept;

/* LANE_JOIN: the first message after HELLO of a further session of the
 * migration's source, which asks to carry the stream as lane `lane`
 * (1..ACCEPT's lanes - 1; the session the OFFER came on is lane 0). */
typedef struct proto_lane_join {
        const char *mig;
        uint32_t lane;
        uint8_t secret[PROTO_LANE_SECRET_LEN]; /* ACCEPT's lane_secret */
} proto_lane_join;

/* LANE_JOINED: the target's answer on the joined session. LANES: the
 * source, on lane 0, before the first frame it deals: the stream's frames
 * are dealt over lanes 0..lanes-1 from here, in turn (1: none dealt). */
typedef struct proto_lane {
        const char *mig;
        uint32_t lane; /* LANE_JOINED: the lane; LANES: how many */
} proto_lane;

/* ACCEPT, VERIFIED, RESTORE, COMMIT, QUERY: the migration id only. */
typedef struct proto_mig_only {
        const char *mig;
} proto_mig_only;

typedef struct proto_reject {
        const char *mig;
        proto_reject_code code;
        const char *reason;
} proto_reject;

typedef struct proto_file {
        const char *mig;
        const char *path; /* passes proto_path_check() */
        uint64_t size;
        uint32_t mode; /* permission bits within 0644, owner rw set */
} proto_file;

typedef struct proto_data {
        const char *mig;
        proto_bin data; /* 1..PROTO_DATA_MAX bytes */
} proto_data;

typedef struct proto_file_end {
        const char *mig;
        uint8_t sha256[PROTO_SHA256_LEN];
} proto_file_end;

/* DATA compressed with zstd: one zstd frame whose content is size bytes. */
typedef struct proto_zdata {
        const char *mig;
        uint32_t size;  /* decompressed bytes, 1..PROTO_DATA_MAX */
        proto_bin data; /* the frame, 1..PROTO_DATA_MAX bytes */
} proto_zdata;

/* Post-copy (feature "lazy"): bytes of CRIU's page-server protocol
 * between the source's lazy dump and the target's lazy-pages daemon,
 * relayed as they are, either way. */
typedef struct proto_ps_data {
        const char *mig;
        proto_bin data; /* 1..PROTO_DATA_MAX bytes */
} proto_ps_data;

/* Feature "ps-stream": bytes of CRIU's page-server protocol between the
 * source's dump and the target's page server while CRIU dumps, either way
 * (the pages to the target, the page server's replies back), each chunk
 * with its ps_mac tag (transfer/ps-mac.h), checked before CRIU reads it. */
typedef struct proto_ps_pages {
        const char *mig;
        proto_bin data; /* 1..PROTO_DATA_MAX bytes */
        uint8_t tag[PROTO_SHA256_LEN];
        uint32_t size; /* with has_size: data is one zstd frame of exactly size bytes (feature "zstd" too);
                        * the tag is of those bytes */
        bool has_size;
} proto_ps_pages;

/* Feature "ps-stream": the end of the pages, source to target, once the
 * dump's CRIU closed its socket; tag is ps_mac's end tag. kept: the dump
 * kept the pages in its own images after all (it could not hold the tree
 * stopped), so they come with the image stream. */
typedef struct proto_ps_end {
        const char *mig;
        uint8_t tag[PROTO_SHA256_LEN];
        bool kept;
} proto_ps_end;

/* Ends a file like FILE_END, with the tree HMAC so far instead of the
 * file's SHA-256: HMAC-SHA256 of the record stream (DESIGN.md) from its
 * start through the last byte of this file, as if the tree ended there. */
typedef struct proto_file_mac {
        const char *mig;
        uint8_t mac[PROTO_SHA256_LEN];
} proto_file_mac;

typedef struct proto_images_done {
        const char *mig;
        const char *hmac; /* 64 lowercase hex digits */
        uint64_t files;
        uint64_t bytes;
        const char *binding; /* optional: ckpt_binding() of this migration (64 hex digits) */
} proto_images_done;

typedef struct proto_pid_reply {
        const char *mig;
        uint32_t pid; /* >= 1 */
} proto_pid_reply;    /* RESTORED and RUNNING */

typedef struct proto_abort {
        const char *mig;
        const char *reason;
} proto_abort;

typedef struct proto_query {
        const char *mig;
        const char *container_id; /* optional: asks whether a copy of it runs there */
} proto_query;

typedef struct proto_outcome_msg {
        const char *mig;
        proto_outcome outcome;
        const char *phase; /* optional: the migration's phase there, as its journal names it */
        bool has_running;  /* answers a QUERY with container_id: */
        bool running;      /* a copy of that container runs there */
        bool has_held_pid;
        uint32_t held_pid; /* a copy of it is held stopped there, as this pid (>= 1) */
        bool has_held_start;
        uint64_t held_start; /* with held_pid: when that process started (ticks since boot), so that
                              * the operator acts on it and not on a later process with its pid */
} proto_outcome_msg;

typedef struct proto_resolved {
        const char *mig;
        proto_outcome outcome; /* committed or aborted */
        const char *reason;    /* who decided, from which facts */
} proto_resolved;

typedef struct proto_resolve {
        const char *mig;
        proto_decision decision;
        bool force; /* decide although the facts cannot tell */
} proto_resolve;

typedef struct proto_migrate {
        const char *container; /* a container reference, or NULL with has_pid */
        bool has_pid;
        uint32_t pid;
        const char *target;
        proto_opts opts; /* optional */
} proto_migrate;

typedef struct proto_drain {
        proto_strv targets; /* 1..PROTO_TARGETS_MAX */
        uint32_t parallel;  /* >= 1 */
} proto_drain;

typedef struct proto_cordon {
        bool on;
} proto_cordon;

typedef struct proto_status {
        const char *ref; /* optional */
        bool has_since;
        uint64_t since; /* optional: finished migrations from this unix time (s) on */
} proto_status;

typedef struct proto_event {
        const char *mig;   /* optional: absent for events about a whole drain */
        const char *phase; /* [A-Za-z0-9_-]{1,64} */
        uint64_t bytes_done;
        uint64_t bytes_total;
        uint64_t files_done;
        uint64_t files_total;
        uint64_t rate; /* bytes/s */
        uint64_t eta_ms;
        const char *message; /* optional */
} proto_event;

typedef struct proto_result {
        const char *mig; /* optional */
        const char *doc; /* a JSON document; proto only checks it is text */
} proto_result;

struct msgpack_zone;

/* The tagged union. Build one for proto_encode() with designated
 * initializers; proto_decode() fills one that must be released with
 * proto_msg_done(). Messages without fields (NODE_INFO_REQ, LIST) use no
 * member. */
typedef struct proto_msg {
        proto_msg_type type;
        union {
                proto_hello hello;
                proto_error error;
                proto_ping ping; /* PING */
                proto_ping pong; /* PONG */
                proto_relay relay;
                proto_node_info node_info;
                proto_offer offer;
                proto_accept accept;
                proto_reject reject;
                proto_file file;
                proto_data data;
                proto_file_end file_end;
                proto_images_done images_done;
                proto_mig_only verified;
                proto_mig_only restore;
                proto_pid_reply restored;
                proto_mig_only commit;
                proto_pid_reply running;
                proto_abort abort;
                proto_query query;
                proto_outcome_msg outcome;
                proto_resolved resolved;
                proto_resolve resolve;
                proto_zdata zdata;
                proto_file_mac file_mac;
                proto_ps_data ps_data;
                proto_ps_pages ps_pages;
                proto_ps_end ps_end;
                proto_lane_join lane_join;
                proto_lane lane_joined;
                proto_lane lanes;
                proto_migrate migrate;
                proto_drain drain;
                proto_cordon cordon;
                proto_status status;
                proto_event event;
                proto_result result;
        };
        /* private: owns what decoding allocated (strings, arrays). */
        struct msgpack_zone *_zone;
} proto_msg;

/* Releases what proto_decode() allocated and zeroes the message. Safe on a
 * zeroed message and on one built by hand for encoding (it frees nothing
 * the caller owns). */
void proto_msg_done(proto_msg *m);

static inline void proto_msg_donep(proto_msg *m) {
        proto_msg_done(m);
}
#define _cleanup_proto_msg_ _cleanup_(proto_msg_donep)

/* "HELLO", "FILE_END", ...; NULL for a value that is not a message type. */
const char *proto_msg_type_to_string(proto_msg_type t);
proto_msg_type proto_msg_type_from_string(const char *s);

/* The migration id of a message, or NULL if its type has none or the
 * optional one is absent. */
const char *proto_msg_mig(const proto_msg *m);

const char *proto_role_to_string(proto_role r);
const char *proto_reject_code_to_string(proto_reject_code c);
proto_reject_code proto_reject_code_from_string(const char *s);
const char *proto_outcome_to_string(proto_outcome o);
proto_outcome proto_outcome_from_string(const char *s);
const char *proto_decision_to_string(proto_decision d);

/* The option named key in opts, or NULL. */
const proto_opt *proto_opts_get(const proto_opts *opts, const char *key);

/* True if the HELLO lists the feature. */
bool proto_hello_has_feature(const proto_hello *h, const char *feature);

/* ---- Encoding ---- */

/* A growable byte buffer that frames can be appended to. Zero-initialize
 * it; release with proto_buf_done(). */
typedef struct proto_buf {
        uint8_t *data;
        size_t len;
        size_t cap;
} proto_buf;

void proto_buf_done(proto_buf *b);

/* Validates m exactly as the decoder would and appends one whole frame
 * (length prefix included) to b. On failure b is unchanged. */
int proto_encode_append(proto_buf *b, const proto_msg *m, nm_error *err);

/* Like proto_encode_append() into a fresh buffer; *ret_buf is the caller's
 * to free(). */
int proto_encode(const proto_msg *m, uint8_t **ret_buf, size_t *ret_len, nm_error *err);

/* Writes the frame header, the map and the bin header of a DATA frame
 * whose payload_len bytes the caller sends right after it (scatter write:
 * no copy of the payload). The bytes are identical to what proto_encode()
 * produces for the same DATA message. Returns the number of bytes written
 * (<= PROTO_DATA_HDR_MAX). */
int proto_data_header(uint8_t out[static PROTO_DATA_HDR_MAX], const char *mig, size_t payload_len,
                      nm_error *err);

/* The same for a ZDATA frame of a compressed payload_len bytes that
 * decompress to size bytes. */
int proto_zdata_header(uint8_t out[static PROTO_DATA_HDR_MAX], const char *mig, uint32_t size,
                       size_t payload_len, nm_error *err);

/* ---- zstd for DATA (feature "zstd") ---- */

/* Compression contexts for one stream; ZDATA payloads are independent
 * frames, so a lost context costs nothing but speed. */
typedef struct proto_zctx proto_zctx;

/* level: zstd's, negative values are its fast levels. */
int proto_zctx_new(int level, proto_zctx **ret);
proto_zctx *proto_zctx_free(proto_zctx *z);

/* The smallest saving worth a ZDATA: payloads that shrink less go as DATA. */
#define PROTO_ZDATA_MIN_SAVING(n) ((n) / 16)

/* Compresses n (1..PROTO_DATA_MAX) bytes of src into dst as one frame.
 * Returns its length when it saves at least PROTO_ZDATA_MIN_SAVING(n)
 * bytes, 0 when it does not (send DATA), < 0 on error. dst needs
 * n - PROTO_ZDATA_MIN_SAVING(n) bytes. */
int proto_zdata_compress(proto_zctx *z, const void *src, size_t n, void *dst, size_t *ret_len);

/* Whether zstd is worth a try on a stream's next chunk. Incompressible
 * data (random, encrypted, already compressed) comes in long runs, and
 * each try costs a whole zstd pass for nothing. So after a chunk of
 * probe_min bytes or more that did not shrink, the next such chunks leave
 * untried: one, then two, four... up to skip_max, until a try pays again.
 * Smaller chunks are always tried and never counted: cheap, and they say
 * little. Set probe_min and skip_max; the rest starts at zero. */
#define PROTO_ZBACKOFF_PROBE_MIN (64u * 1024) /* both streams' probe_min */
typedef struct proto_zbackoff {
        size_t probe_min;
        unsigned skip_max;
        unsigned wait;    /* chunks left untried after the last try that did not pay */
        unsigned left;    /* of wait, still to come */
        uint64_t untried; /* in all */
} proto_zbackoff;

/* Whether to try the next chunk, of n bytes (one that is not tried counts
 * as left untried). */
bool proto_zbackoff_try(proto_zbackoff *b, size_t n);
/* What the try on a chunk of n bytes gave: paid (it shrank) or not. */
void proto_zbackoff_tried(proto_zbackoff *b, size_t n, bool paid);
/* The next chunk is tried, whatever the wait: a new file may be another
 * kind of data. The wait's length stays. */
void proto_zbackoff_try_next(proto_zbackoff *b);

/* Decompresses a ZDATA payload into dst (cap bytes, at least zd->size).
 * Refuses (-EBADMSG, with the reason) anything but frames that decode to
 * exactly zd->size bytes: memory stays bounded by PROTO_DATA_MAX whatever
 * the frame claims. */
int proto_zdata_decompress(proto_zctx *z, const proto_zdata *zd, void *dst, size_t cap, nm_error *err);

/* ---- Decoding ---- */

/* Checks the 4 header bytes of a frame against max_payload (0 means
 * PROTO_FRAME_MAX) and returns the payload length (> 0), before anything
 * is allocated for it. -E2BIG above the cap, -EBADMSG for 0. */
int proto_frame_check_header(const uint8_t hdr[static PROTO_FRAME_HDR], size_t max_payload,
                             uint32_t *ret_len, nm_error *err);

/* Decodes one frame payload (the map, without the length prefix).
 *
 * Lifetime: strings and arrays of *ret live in memory owned by *ret until
 * proto_msg_done(). proto_bin fields (OFFER.metadata, DATA.data) point
 * into payload itself and are valid only while payload is. *ret is
 * written only on success. */
int proto_decode(const uint8_t *payload, size_t n, proto_msg *ret, nm_error *err);

/* Decodes a whole frame, header included: the header must announce exactly
 * n - 4 bytes (truncated frames and trailing bytes are rejected). */
int proto_decode_frame(const uint8_t *frame, size_t n, proto_msg *ret, nm_error *err);

/* ---- Streaming frame reader ---- */

/* Accumulates bytes from a stream and yields complete frame payloads.
 * Every frame length is checked as soon as its 4 header bytes arrive, so
 * an oversize frame is refused before its bytes are buffered. Memory stays
 * below the largest allowed frame plus what is fed between calls to
 * proto_reader_next(). An error is sticky: the stream cannot be resynced. */
typedef struct proto_reader proto_reader;

/* max_payload: 0 for PROTO_FRAME_MAX, else a smaller cap. */
int proto_reader_new(size_t max_payload, proto_reader **ret);
proto_reader *proto_reader_free(proto_reader *r);
/* For _cleanup_(proto_reader_freep). */
void proto_reader_freep(proto_reader **r);

/* Appends n bytes (copied). */
int proto_reader_feed(proto_reader *r, const void *data, size_t n, nm_error *err);

/* For reading straight into the reader (no copy): returns a pointer to
 * free space and its size (>= 1); after reading k bytes into it, call
 * proto_reader_advance(r, k). The space is large enough for the rest of
 * the frame being received. -ENOBUFS if complete frames must be taken
 * with proto_reader_next() first. */
int proto_reader_get_buffer(proto_reader *r, uint8_t **ret_ptr, size_t *ret_len, nm_error *err);
int proto_reader_advance(proto_reader *r, size_t n, nm_error *err);

/* Returns 1 and the next complete frame payload (header stripped), 0 if
 * more bytes are needed, or a negative errno. The payload stays valid until
 * the next call to proto_reader_feed(), proto_reader_get_buffer() or
 * proto_reader_free() (further calls to proto_reader_next() keep it). */
int proto_reader_next(proto_reader *r, const uint8_t **ret_payload, size_t *ret_len, nm_error *err);

/* Bytes buffered that do not form a complete frame yet, plus complete
 * frames not taken. */
size_t proto_reader_buffered(const proto_reader *r);

/* Call at end of stream: -EBADMSG if it ended inside a frame. */
int proto_reader_finish(proto_reader *r, nm_error *err);

/* ---- Checks shared with the transport and the agent ---- */

typedef enum proto_path_kind {
        PROTO_PATH_METADATA, /* "metadata.json" */
        PROTO_PATH_IMAGE,    /* "images/<name>" */
        _PROTO_PATH_KIND_MAX,
        _PROTO_PATH_KIND_INVALID = -EINVAL,
} proto_path_kind;

/* Accepts exactly "metadata.json" or "images/<name>" where name is 1..255
 * bytes of printable ASCII without '/', not starting with '.'. Returns the
 * proto_path_kind, or -EBADMSG with the reason. path need not be
 * NUL-terminated; a NUL within len is refused. */
int proto_path_check(const char *path, size_t len, nm_error *err);

/* The FILE mode to send for a file whose st_mode is given: its read bits
 * within 0644, owner read-write always (CRIU's images follow the umask). */
static inline uint32_t proto_file_mode(uint32_t st_mode) {
        return (st_mode & 0644u) | 0600u;
}

/* Checks a migration id (or container id): 1..64 of [A-Za-z0-9_-]. */
int proto_id_check(const char *id, size_t len, nm_error *err);

/* Picks the highest version both sides speak. -EPROTONOSUPPORT, naming both
 * version ranges, when there is none. */
int proto_version_negotiate(const proto_hello *ours, const proto_hello *peer, uint32_t *ret_version,
                            nm_error *err);
