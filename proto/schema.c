/* SPDX-License-Identifier: Apache-2.0 */
/* The message table. PROTOCOL.md documents the same table for humans; keep
 * both in step. Keys are sent in the order listed here. */
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "proto-internal.h"

const char *const proto__role_names[_PROTO_ROLE_MAX] = {
        [PROTO_ROLE_PEER] = "peer",
        [PROTO_ROLE_CLI] = "cli",
};

const char *const proto__reject_code_names[_PROTO_REJECT_CODE_MAX] = {
        [PROTO_REJECT_CORDONED] = "cordoned", [PROTO_REJECT_NO_SPACE] = "no_space",
        [PROTO_REJECT_EXISTS] = "exists",     [PROTO_REJECT_INCOMPATIBLE] = "incompatible",
        [PROTO_REJECT_BUSY] = "busy",         [PROTO_REJECT_INVALID] = "invalid",
};

const char *const proto__decision_names[_PROTO_DECISION_MAX] = {
        [PROTO_DECISION_AUTO] = "auto",
        [PROTO_DECISION_COMMIT] = "commit",
        [PROTO_DECISION_ABORT] = "abort",
};

const char *const proto__outcome_names[_PROTO_OUTCOME_MAX] = {
        [PROTO_OUTCOME_COMMITTED] = "committed",
        [PROTO_OUTCOME_ABORTED] = "aborted",
        [PROTO_OUTCOME_UNKNOWN] = "unknown",
};

#define FIELD(k, kind_, req, mem, has, lo, hi, item, chk, nm, n_nm)                                 \
        {                                                                                           \
                .key = (k), .kind = (kind_), .required = (req), .offset = offsetof(proto_msg, mem), \
                .has_offset = (has), .min = (lo), .max = (hi), .item_max = (item), .check = (chk),  \
                .names = (nm), .n_names = (n_nm),                                                   \
        }

#define U32(k, mem, lo, hi) FIELD(k, PROTO__U32, true, mem, -1, lo, hi, 0, PROTO__CHECK_TEXT, NULL, 0)
#define OPT_U32(k, mem, has, lo, hi)                                                                      \
        FIELD(k, PROTO__U32, false, mem, (ssize_t)offsetof(proto_msg, has), lo, hi, 0, PROTO__CHECK_TEXT, \
              NULL, 0)
#define OPT_U64(k, mem, has)                                                                 \
        FIELD(k, PROTO__U64, false, mem, (ssize_t)offsetof(proto_msg, has), 0, INT64_MAX, 0, \
              PROTO__CHECK_TEXT, NULL, 0)
#define MODE(k, mem) FIELD(k, PROTO__U32, true, mem, -1, 0, 0644, 0, PROTO__CHECK_MODE, NULL, 0)
#define U64(k, mem) FIELD(k, PROTO__U64, true, mem, -1, 0, INT64_MAX, 0, PROTO__CHECK_TEXT, NULL, 0)
#define I32(k, mem, lo, hi) FIELD(k, PROTO__I32, true, mem, -1, lo, hi, 0, PROTO__CHECK_TEXT, NULL, 0)
#define OPT_BOOL(k, mem, has)                                                                            \
        FIELD(k, PROTO__BOOL, false, mem, (ssize_t)offsetof(proto_msg, has), 0, 1, 0, PROTO__CHECK_TEXT, \
              NULL, 0)
#define BOOL(k, mem) FIELD(k, PROTO__BOOL, true, mem, -1, 0, 1, 0, PROTO__CHECK_TEXT, NULL, 0)
#define STR(k, mem, chk, lo, hi) FIELD(k, PROTO__STR, true, mem, -1, lo, hi, 0, chk, NULL, 0)
#define OPT_STR(k, mem, chk, lo, hi) FIELD(k, PROTO__STR, false, mem, -1, lo, hi, 0, chk, NULL, 0)
#define BIN(k, mem, lo, hi) FIELD(k, PROTO__BIN, true, mem, -1, lo, hi, 0, PROTO__CHECK_TEXT, NULL, 0)
#define OPT_BIN(k, mem, lo, hi) FIELD(k, PROTO__BIN, false, mem, -1, lo, hi, 0, PROTO__CHECK_TEXT, NULL, 0)
#define SHA256(k, mem)                                                                                   \
        FIELD(k, PROTO__SHA256, true, mem, -1, PROTO_SHA256_LEN, PROTO_SHA256_LEN, 0, PROTO__CHECK_TEXT, \
              NULL, 0)
#define ENUM(k, mem, tbl) \
        FIELD(k, PROTO__ENUM, true, mem, -1, 0, 0, 0, PROTO__CHECK_TEXT, tbl, ARRAY_SIZE(tbl))
#define STRV(k, req, mem, lo, hi, chk, item) FIELD(k, PROTO__STRV, req, mem, -1, lo, hi, item, chk, NULL, 0)
#define OPTS(k, mem) FIELD(k, PROTO__OPTS, false, mem, -1, 0, PROTO_OPTS_MAX, 0, PROTO__CHECK_TEXT, NULL, 0)

#define MIG(mem) STR("mig", mem, PROTO__CHECK_ID, 1, PROTO_ID_MAX)
#define OPT_MIG(mem) OPT_STR("mig", mem, PROTO__CHECK_ID, 1, PROTO_ID_MAX)
#define NAME(k, mem) STR(k, mem, PROTO__CHECK_NAME, 1, PROTO_NAME_MAX)
#define REASON(mem) STR("reason", mem, PROTO__CHECK_TEXT, 1, PROTO_TEXT_MAX)
#define PID(mem) U32("pid", mem, 1, INT32_MAX)

#define SCHEMA(nm, tbl, chk) \
        { .name = (nm), .fields = (tbl), .n_fields = ARRAY_SIZE(tbl), .check = (chk) }
#define SCHEMA_EMPTY(nm) \
        { .name = (nm), .fields = NULL, .n_fields = 0, .check = NULL }

static int hello_check(const proto_msg *m, nm_error *err) {
        if (m->hello.min_version > m->hello.version)
                return nm_error_set(err, -EBADMSG, "HELLO: min_version %u is above version %u",
                                    m->hello.min_version, m->hello.version);
        return 0;
}

static int migrate_check(const proto_msg *m, nm_error *err) {
        if (!m->migrate.container == !m->migrate.has_pid)
                return nm_error_set(err, -EBADMSG,
                                    "MIGRATE: exactly one of 'container' and 'pid' is required");
        return 0;
}

static int accept_check(const proto_msg *m, nm_error *err) {
        if (m->accept.has_lanes != (m->accept.lane_secret.ptr != NULL))
                return nm_error_set(err, -EBADMSG,
                                    "ACCEPT: 'lanes' and 'lane_secret' come together or not at all");
        return 0;
}

static int resolved_check(const proto_msg *m, nm_error *err) {
        if (m->resolved.outcome == PROTO_OUTCOME_UNKNOWN)
                return nm_error_set(err, -EBADMSG, "RESOLVED: outcome 'unknown' is no decision");
        return 0;
}

static const proto__field hello_fields[] = {
        U32("version", hello.version, 1, UINT32_MAX),
        U32("min_version", hello.min_version, 1, UINT32_MAX),
        NAME("node", hello.node),
        ENUM("role", hello.role, proto__role_names),
        STRV("features", false, hello.features, 0, PROTO_FEATURES_MAX, PROTO__CHECK_NAME, PROTO_FEATURE_MAX),
        OPT_STR("key_id", hello.key_id, PROTO__CHECK_HEX, PROTO_HMAC_HEX_LEN, PROTO_HMAC_HEX_LEN),
};

static const proto__field error_fields[] = {
        OPT_MIG(error.mig),
        I32("code", error.code, -4095, -1),
        REASON(error.reason),
};

static const proto__field ping_fields[] = {
        U64("seq", ping.seq),
};

static const proto__field relay_fields[] = {
        OPT_STR("peer", relay.peer, PROTO__CHECK_NAME, 1, PROTO_NAME_MAX),
};

static const proto__field node_info_fields[] = {
        NAME("node", node_info.node),
        BOOL("cordoned", node_info.cordoned),
        U64("staging_free", node_info.staging_free),
        U32("running", node_info.running, 0, UINT32_MAX),
        U32("migrations", node_info.migrations, 0, UINT32_MAX),
        NAME("criu_version", node_info.criu_version),
        NAME("kernel", node_info.kernel),
};

static const proto__field offer_fields[] = {
        MIG(offer.mig),
        STR("container_id", offer.container_id, PROTO__CHECK_ID, 1, PROTO_ID_MAX),
        STR("container_name", offer.container_name, PROTO__CHECK_TEXT, 0, PROTO_NAME_MAX),
        BIN("metadata", offer.metadata, 1, PROTO_METADATA_MAX),
        U64("image_bytes", offer.image_bytes),
        NAME("criu_version", offer.criu_version),
        NAME("kernel", offer.kernel),
        BOOL("lazy", offer.lazy),
        OPT_BIN("cpuinfo", offer.cpuinfo, 1, PROTO_CPUINFO_MAX),
        OPT_BOOL("ps_stream", offer.ps_stream, offer.has_ps_stream),
        OPT_U32("lanes", offer.lanes, offer.has_lanes, 2, PROTO_LANES_MAX),
};

static const proto__field mig_only_fields[] = {
        MIG(verified.mig),
};

static const proto__field accept_fields[] = {
        MIG(accept.mig),
        OPT_U32("lanes", accept.lanes, accept.has_lanes, 2, PROTO_LANES_MAX),
        OPT_BIN("lane_secret", accept.lane_secret, PROTO_LANE_SECRET_LEN, PROTO_LANE_SECRET_LEN),
};

static const proto__field lane_join_fields[] = {
        MIG(lane_join.mig), U32("lane", lane_join.lane, 1, PROTO_LANES_MAX - 1),
        SHA256("secret", lane_join.secret), /* 32 bytes that are no digest: the kind is their size */
};
_Static_assert(PROTO_LANE_SECRET_LEN == PROTO_SHA256_LEN, "LANE_JOIN secret travels as a 32-byte field");

static const proto__field lane_joined_fields[] = {
        MIG(lane_joined.mig),
        U32("lane", lane_joined.lane, 1, PROTO_LANES_MAX - 1),
};

static const proto__field lanes_fields[] = {
        MIG(lanes.mig),
        U32("lanes", lanes.lane, 1, PROTO_LANES_MAX),
};

static const proto__field reject_fields[] = {
        MIG(reject.mig),
        ENUM("code", reject.code, proto__reject_code_names),
        REASON(reject.reason),
};

static const proto__field file_fields[] = {
        MIG(file.mig),
        STR("path", file.path, PROTO__CHECK_PATH, 1, PROTO_PATH_MAX),
        U64("size", file.size),
        MODE("mode", file.mode),
};

/* proto_data_header() writes this layout by hand: "data" must stay last. */
static const proto__field data_fields[] = {
        MIG(data.mig),
        BIN("data", data.data, 1, PROTO_DATA_MAX),
};

static const proto__field file_end_fields[] = {
        MIG(file_end.mig),
        SHA256("sha256", file_end.sha256),
};

/* proto_zdata_header() writes this layout by hand: "data" must stay last. */
static const proto__field zdata_fields[] = {
        MIG(zdata.mig),
        U32("size", zdata.size, 1, PROTO_DATA_MAX),
        BIN("data", zdata.data, 1, PROTO_DATA_MAX),
};

static const proto__field file_mac_fields[] = {
        MIG(file_mac.mig),
        SHA256("mac", file_mac.mac),
};

static const proto__field ps_data_fields[] = {
        MIG(ps_data.mig),
        BIN("data", ps_data.data, 1, PROTO_DATA_MAX),
};

static const proto__field ps_pages_fields[] = {
        MIG(ps_pages.mig),
        BIN("data", ps_pages.data, 1, PROTO_DATA_MAX),
        SHA256("tag", ps_pages.tag),
        OPT_U32("size", ps_pages.size, ps_pages.has_size, 1, PROTO_DATA_MAX),
};

static const proto__field ps_end_fields[] = {
        MIG(ps_end.mig),
        SHA256("tag", ps_end.tag),
        BOOL("kept", ps_end.kept),
};

static const proto__field images_done_fields[] = {
        MIG(images_done.mig),
        STR("hmac", images_done.hmac, PROTO__CHECK_HEX, PROTO_HMAC_HEX_LEN, PROTO_HMAC_HEX_LEN),
        U64("files", images_done.files),
        U64("bytes", images_done.bytes),
        OPT_STR("binding", images_done.binding, PROTO__CHECK_HEX, PROTO_HMAC_HEX_LEN, PROTO_HMAC_HEX_LEN),
};

static const proto__field pid_reply_fields[] = {
        MIG(restored.mig),
        PID(restored.pid),
};

static const proto__field abort_fields[] = {
        MIG(abort.mig),
        REASON(abort.reason),
};

static const proto__field query_fields[] = {
        MIG(query.mig),
        OPT_STR("container_id", query.container_id, PROTO__CHECK_ID, 1, PROTO_ID_MAX),
};

static const proto__field outcome_fields[] = {
        MIG(outcome.mig),
        ENUM("outcome", outcome.outcome, proto__outcome_names),
        OPT_STR("phase", outcome.phase, PROTO__CHECK_ID, 1, PROTO_ID_MAX),
        OPT_BOOL("running", outcome.running, outcome.has_running),
        OPT_U32("held_pid", outcome.held_pid, outcome.has_held_pid, 1, INT32_MAX),
        OPT_U64("held_start", outcome.held_start, outcome.has_held_start),
};

static const proto__field resolved_fields[] = {
        MIG(resolved.mig),
        ENUM("outcome", resolved.outcome, proto__outcome_names),
        REASON(resolved.reason),
};

static const proto__field resolve_fields[] = {
        MIG(resolve.mig),
        ENUM("decision", resolve.decision, proto__decision_names),
        BOOL("force", resolve.force),
};

static const proto__field migrate_fields[] = {
        OPT_STR("container", migrate.container, PROTO__CHECK_TEXT, 1, PROTO_NAME_MAX),
        OPT_U32("pid", migrate.pid, migrate.has_pid, 1, INT32_MAX),
        NAME("target", migrate.target),
        OPTS("opts", migrate.opts),
};

static const proto__field drain_fields[] = {
        /* Absent: every configured peer. */
        STRV("targets", false, drain.targets, 1, PROTO_TARGETS_MAX, PROTO__CHECK_NAME, PROTO_NAME_MAX),
        U32("parallel", drain.parallel, 1, 1024),
};

static const proto__field cordon_fields[] = {
        BOOL("on", cordon.on),
};

static const proto__field status_fields[] = {
        OPT_STR("ref", status.ref, PROTO__CHECK_TEXT, 1, PROTO_NAME_MAX),
        OPT_U64("since", status.since, status.has_since),
};

static const proto__field event_fields[] = {
        OPT_MIG(event.mig),
        STR("phase", event.phase, PROTO__CHECK_ID, 1, PROTO_ID_MAX),
        U64("bytes_done", event.bytes_done),
        U64("bytes_total", event.bytes_total),
        U64("files_done", event.files_done),
        U64("files_total", event.files_total),
        U64("rate", event.rate),
        U64("eta_ms", event.eta_ms),
        OPT_STR("message", event.message, PROTO__CHECK_TEXT, 0, PROTO_TEXT_MAX),
};

static const proto__field result_fields[] = {
        OPT_MIG(result.mig),
        STR("doc", result.doc, PROTO__CHECK_TEXT, 1, PROTO_FRAME_MAX),
};

/* The messages whose structs share a layout (proto_mig_only,
 * proto_pid_reply, proto_ping) share a field table: their union members
 * start at the same offset. */
_Static_assert(offsetof(proto_msg, restore.mig) == offsetof(proto_msg, verified.mig), "layout");
_Static_assert(offsetof(proto_msg, restored.pid) == offsetof(proto_msg, running.pid), "layout");
_Static_assert(offsetof(proto_msg, ping.seq) == offsetof(proto_msg, pong.seq), "layout");

const proto__schema proto__schemas[_PROTO_MSG_TYPE_MAX] = {
        [PROTO_MSG_HELLO] = SCHEMA("HELLO", hello_fields, hello_check),
        [PROTO_MSG_ERROR] = SCHEMA("ERROR", error_fields, NULL),
        [PROTO_MSG_PING] = SCHEMA("PING", ping_fields, NULL),
        [PROTO_MSG_PONG] = SCHEMA("PONG", ping_fields, NULL),
        [PROTO_MSG_RELAY] = SCHEMA("RELAY", relay_fields, NULL),
        [PROTO_MSG_RELAY_FDS] = SCHEMA("RELAY_FDS", relay_fields, NULL),
        [PROTO_MSG_NODE_INFO_REQ] = SCHEMA_EMPTY("NODE_INFO_REQ"),
        [PROTO_MSG_NODE_INFO] = SCHEMA("NODE_INFO", node_info_fields, NULL),
        [PROTO_MSG_OFFER] = SCHEMA("OFFER", offer_fields, NULL),
        [PROTO_MSG_ACCEPT] = SCHEMA("ACCEPT", accept_fields, accept_check),
        [PROTO_MSG_REJECT] = SCHEMA("REJECT", reject_fields, NULL),
        [PROTO_MSG_FILE] = SCHEMA("FILE", file_fields, NULL),
        [PROTO_MSG_DATA] = SCHEMA("DATA", data_fields, NULL),
        [PROTO_MSG_FILE_END] = SCHEMA("FILE_END", file_end_fields, NULL),
        [PROTO_MSG_IMAGES_DONE] = SCHEMA("IMAGES_DONE", images_done_fields, NULL),
        [PROTO_MSG_VERIFIED] = SCHEMA("VERIFIED", mig_only_fields, NULL),
        [PROTO_MSG_RESTORE] = SCHEMA("RESTORE", mig_only_fields, NULL),
        [PROTO_MSG_RESTORED] = SCHEMA("RESTORED", pid_reply_fields, NULL),
        [PROTO_MSG_COMMIT] = SCHEMA("COMMIT", mig_only_fields, NULL),
        [PROTO_MSG_RUNNING] = SCHEMA("RUNNING", pid_reply_fields, NULL),
        [PROTO_MSG_ABORT] = SCHEMA("ABORT", abort_fields, NULL),
        [PROTO_MSG_QUERY] = SCHEMA("QUERY", query_fields, NULL),
        [PROTO_MSG_OUTCOME] = SCHEMA("OUTCOME", outcome_fields, NULL),
        [PROTO_MSG_ZDATA] = SCHEMA("ZDATA", zdata_fields, NULL),
        [PROTO_MSG_FILE_MAC] = SCHEMA("FILE_MAC", file_mac_fields, NULL),
        [PROTO_MSG_PS_DATA] = SCHEMA("PS_DATA", ps_data_fields, NULL),
        [PROTO_MSG_PS_PAGES] = SCHEMA("PS_PAGES", ps_pages_fields, NULL),
        [PROTO_MSG_PS_END] = SCHEMA("PS_END", ps_end_fields, NULL),
        [PROTO_MSG_LANE_JOIN] = SCHEMA("LANE_JOIN", lane_join_fields, NULL),
        [PROTO_MSG_LANE_JOINED] = SCHEMA("LANE_JOINED", lane_joined_fields, NULL),
        [PROTO_MSG_LANES] = SCHEMA("LANES", lanes_fields, NULL),
        [PROTO_MSG_MIGRATE] = SCHEMA("MIGRATE", migrate_fields, migrate_check),
        [PROTO_MSG_DRAIN] = SCHEMA("DRAIN", drain_fields, NULL),
        [PROTO_MSG_CORDON] = SCHEMA("CORDON", cordon_fields, NULL),
        [PROTO_MSG_STATUS] = SCHEMA("STATUS", status_fields, NULL),
        [PROTO_MSG_LIST] = SCHEMA_EMPTY("LIST"),
        [PROTO_MSG_EVENT] = SCHEMA("EVENT", event_fields, NULL),
        [PROTO_MSG_RESULT] = SCHEMA("RESULT", result_fields, NULL),
        [PROTO_MSG_RESOLVED] = SCHEMA("RESOLVED", resolved_fields, resolved_check),
        [PROTO_MSG_RESOLVE] = SCHEMA("RESOLVE", resolve_fields, NULL),
};

const proto__schema *proto__schema_get(int64_t type) {
        if (type <= 0 || type >= _PROTO_MSG_TYPE_MAX || !proto__schemas[type].name)
                return NULL;
        return &proto__schemas[type];
}
