/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "proto.h"
#include "test-proto-samples.h"

#define N_SAMPLES 64

/* ---- Helpers ---- */

static void assert_str_eq_or_null(const char *a, const char *b) {
        if (!a || !b)
                assert_ptr_equal(a, b);
        else
                assert_string_equal(a, b);
}

static void assert_bin_eq(proto_bin a, proto_bin b) {
        assert_int_equal(a.len, b.len);
        if (a.len)
                assert_memory_equal(a.ptr, b.ptr, a.len);
}

static void assert_strv_eq(proto_strv a, proto_strv b) {
        assert_int_equal(a.n, b.n);
        for (size_t i = 0; i < a.n; i++)
                assert_string_equal(a.v[i], b.v[i]);
}

static void assert_opts_eq(proto_opts a, proto_opts b) {
        assert_int_equal(a.n, b.n);
        for (size_t i = 0; i < a.n; i++) {
                assert_string_equal(a.v[i].key, b.v[i].key);
                assert_int_equal(a.v[i].kind, b.v[i].kind);
                switch (a.v[i].kind) {
                case PROTO_OPT_BOOL: assert_int_equal(a.v[i].b, b.v[i].b); break;
                case PROTO_OPT_UINT: assert_int_equal(a.v[i].u, b.v[i].u); break;
                case PROTO_OPT_STR: assert_string_equal(a.v[i].s, b.v[i].s); break;
                case _PROTO_OPT_KIND_MAX:
                case _PROTO_OPT_KIND_INVALID: fail();
                }
        }
}

/* Field by field, so that a new message type fails to compile here
 * (-Wswitch-enum) until it gets a round-trip check. */
static void assert_msg_eq(const proto_msg *a, const proto_msg *b) {
        assert_int_equal(a->type, b->type);
        switch (a->type) {
        case PROTO_MSG_HELLO:
                assert_int_equal(a->hello.version, b->hello.version);
                assert_int_equal(a->hello.min_version, b->hello.min_version);
                assert_string_equal(a->hello.node, b->hello.node);
                assert_int_equal(a->hello.role, b->hello.role);
                assert_strv_eq(a->hello.features, b->hello.features);
                assert_str_eq_or_null(a->hello.key_id, b->hello.key_id);
                break;
        case PROTO_MSG_ERROR:
                assert_str_eq_or_null(a->error.mig, b->error.mig);
                assert_int_equal(a->error.code, b->error.code);
                assert_string_equal(a->error.reason, b->error.reason);
                break;
        case PROTO_MSG_PING:
        case PROTO_MSG_PONG: assert_int_equal(a->ping.seq, b->ping.seq); break;
        case PROTO_MSG_RELAY:
        case PROTO_MSG_RELAY_FDS: assert_str_eq_or_null(a->relay.peer, b->relay.peer); break;
        case PROTO_MSG_NODE_INFO_REQ:
        case PROTO_MSG_LIST: break;
        case PROTO_MSG_NODE_INFO:
                assert_string_equal(a->node_info.node, b->node_info.node);
                assert_int_equal(a->node_info.cordoned, b->node_info.cordoned);
                assert_int_equal(a->node_info.staging_free, b->node_info.staging_free);
                assert_int_equal(a->node_info.running, b->node_info.running);
                assert_int_equal(a->node_info.migrations, b->node_info.migrations);
                assert_string_equal(a->node_info.criu_version, b->node_info.criu_version);
                assert_string_equal(a->node_info.kernel, b->node_info.kernel);
                break;
        case PROTO_MSG_OFFER:
                assert_string_equal(a->offer.mig, b->offer.mig);
                assert_string_equal(a->offer.container_id, b->offer.container_id);
                assert_string_equal(a->offer.container_name, b->offer.container_name);
                assert_bin_eq(a->offer.metadata, b->offer.metadata);
                assert_int_equal(a->offer.image_bytes, b->offer.image_bytes);
                assert_string_equal(a->offer.criu_version, b->offer.criu_version);
                assert_string_equal(a->offer.kernel, b->offer.kernel);
                assert_int_equal(a->offer.lazy, b->offer.lazy);
                assert_bin_eq(a->offer.cpuinfo, b->offer.cpuinfo);
                assert_int_equal(a->offer.ps_stream, b->offer.ps_stream);
                assert_int_equal(a->offer.has_ps_stream, b->offer.has_ps_stream);
                assert_int_equal(a->offer.has_lanes, b->offer.has_lanes);
                assert_int_equal(a->offer.lanes, b->offer.lanes);
                break;
        case PROTO_MSG_ACCEPT:
                assert_string_equal(a->accept.mig, b->accept.mig);
                assert_int_equal(a->accept.has_lanes, b->accept.has_lanes);
                assert_int_equal(a->accept.lanes, b->accept.lanes);
                assert_bin_eq(a->accept.lane_secret, b->accept.lane_secret);
                break;
        case PROTO_MSG_LANE_JOIN:
                assert_string_equal(a->lane_join.mig, b->lane_join.mig);
                assert_int_equal(a->lane_join.lane, b->lane_join.lane);
                assert_memory_equal(a->lane_join.secret, b->lane_join.secret, PROTO_LANE_SECRET_LEN);
                break;
        case PROTO_MSG_LANE_JOINED:
        case PROTO_MSG_LANES:
                assert_string_equal(a->lanes.mig, b->lanes.mig);
                assert_int_equal(a->lanes.lane, b->lanes.lane);
                break;
        case PROTO_MSG_VERIFIED:
        case PROTO_MSG_RESTORE:
        case PROTO_MSG_COMMIT: assert_string_equal(a->verified.mig, b->verified.mig); break;
        case PROTO_MSG_QUERY:
                assert_string_equal(a->query.mig, b->query.mig);
                assert_str_eq_or_null(a->query.container_id, b->query.container_id);
                break;
        case PROTO_MSG_REJECT:
                assert_string_equal(a->reject.mig, b->reject.mig);
                assert_int_equal(a->reject.code, b->reject.code);
                assert_string_equal(a->reject.reason, b->reject.reason);
                break;
        case PROTO_MSG_FILE:
                assert_string_equal(a->file.mig, b->file.mig);
                assert_string_equal(a->file.path, b->file.path);
                assert_int_equal(a->file.size, b->file.size);
                assert_int_equal(a->file.mode, b->file.mode);
                break;
        case PROTO_MSG_DATA:
                assert_string_equal(a->data.mig, b->data.mig);
                assert_bin_eq(a->data.data, b->data.data);
                break;
        case PROTO_MSG_FILE_END:
                assert_string_equal(a->file_end.mig, b->file_end.mig);
                assert_memory_equal(a->file_end.sha256, b->file_end.sha256, PROTO_SHA256_LEN);
                break;
        case PROTO_MSG_IMAGES_DONE:
                assert_string_equal(a->images_done.mig, b->images_done.mig);
                assert_string_equal(a->images_done.hmac, b->images_done.hmac);
                assert_int_equal(a->images_done.files, b->images_done.files);
                assert_int_equal(a->images_done.bytes, b->images_done.bytes);
                assert_str_eq_or_null(a->images_done.binding, b->images_done.binding);
                break;
        case PROTO_MSG_RESTORED:
        case PROTO_MSG_RUNNING:
                assert_string_equal(a->restored.mig, b->restored.mig);
                assert_int_equal(a->restored.pid, b->restored.pid);
                break;
        case PROTO_MSG_ABORT:
                assert_string_equal(a->abort.mig, b->abort.mig);
                assert_string_equal(a->abort.reason, b->abort.reason);
                break;
        case PROTO_MSG_OUTCOME:
                assert_string_equal(a->outcome.mig, b->outcome.mig);
                assert_int_equal(a->outcome.outcome, b->outcome.outcome);
                assert_str_eq_or_null(a->outcome.phase, b->outcome.phase);
                assert_int_equal(a->outcome.has_running, b->outcome.has_running);
                assert_int_equal(a->outcome.running, b->outcome.running);
                assert_int_equal(a->outcome.has_held_pid, b->outcome.has_held_pid);
                assert_int_equal(a->outcome.held_pid, b->outcome.held_pid);
                assert_int_equal(a->outcome.has_held_start, b->outcome.has_held_start);
                assert_int_equal(a->outcome.held_start, b->outcome.held_start);
                break;
        case PROTO_MSG_RESOLVED:
                assert_string_equal(a->resolved.mig, b->resolved.mig);
                assert_int_equal(a->resolved.outcome, b->resolved.outcome);
                assert_string_equal(a->resolved.reason, b->resolved.reason);
                break;
        case PROTO_MSG_RESOLVE:
                assert_string_equal(a->resolve.mig, b->resolve.mig);
                assert_int_equal(a->resolve.decision, b->resolve.decision);
                assert_int_equal(a->resolve.force, b->resolve.force);
                break;
        case PROTO_MSG_MIGRATE:
                assert_str_eq_or_null(a->migrate.container, b->migrate.container);
                assert_int_equal(a->migrate.has_pid, b->migrate.has_pid);
                if (a->migrate.has_pid)
                        assert_int_equal(a->migrate.pid, b->migrate.pid);
                assert_string_equal(a->migrate.target, b->migrate.target);
                assert_opts_eq(a->migrate.opts, b->migrate.opts);
                break;
        case PROTO_MSG_DRAIN:
                assert_strv_eq(a->drain.targets, b->drain.targets);
                assert_int_equal(a->drain.parallel, b->drain.parallel);
                break;
        case PROTO_MSG_CORDON: assert_int_equal(a->cordon.on, b->cordon.on); break;
        case PROTO_MSG_STATUS:
                assert_str_eq_or_null(a->status.ref, b->status.ref);
                assert_int_equal(a->status.has_since, b->status.has_since);
                assert_int_equal(a->status.since, b->status.since);
                break;
        case PROTO_MSG_EVENT:
                assert_str_eq_or_null(a->event.mig, b->event.mig);
                assert_string_equal(a->event.phase, b->event.phase);
                assert_int_equal(a->event.bytes_done, b->event.bytes_done);
                assert_int_equal(a->event.bytes_total, b->event.bytes_total);
                assert_int_equal(a->event.files_done, b->event.files_done);
                assert_int_equal(a->event.files_total, b->event.files_total);
                assert_int_equal(a->event.rate, b->event.rate);
                assert_int_equal(a->event.eta_ms, b->event.eta_ms);
                assert_str_eq_or_null(a->event.message, b->event.message);
                break;
        case PROTO_MSG_RESULT:
                assert_str_eq_or_null(a->result.mig, b->result.mig);
                assert_string_equal(a->result.doc, b->result.doc);
                break;
        case PROTO_MSG_ZDATA:
                assert_string_equal(a->zdata.mig, b->zdata.mig);
                assert_int_equal(a->zdata.size, b->zdata.size);
                assert_bin_eq(a->zdata.data, b->zdata.data);
                break;
        case PROTO_MSG_PS_DATA:
                assert_string_equal(a->ps_data.mig, b->ps_data.mig);
                assert_bin_eq(a->ps_data.data, b->ps_data.data);
                break;
        case PROTO_MSG_PS_PAGES:
                assert_string_equal(a->ps_pages.mig, b->ps_pages.mig);
                assert_bin_eq(a->ps_pages.data, b->ps_pages.data);
                assert_memory_equal(a->ps_pages.tag, b->ps_pages.tag, PROTO_SHA256_LEN);
                assert_int_equal(a->ps_pages.size, b->ps_pages.size);
                assert_int_equal(a->ps_pages.has_size, b->ps_pages.has_size);
                break;
        case PROTO_MSG_PS_END:
                assert_string_equal(a->ps_end.mig, b->ps_end.mig);
                assert_memory_equal(a->ps_end.tag, b->ps_end.tag, PROTO_SHA256_LEN);
                assert_int_equal(a->ps_end.kept, b->ps_end.kept);
                break;
        case PROTO_MSG_FILE_MAC:
                assert_string_equal(a->file_mac.mig, b->file_mac.mig);
                assert_memory_equal(a->file_mac.mac, b->file_mac.mac, PROTO_SHA256_LEN);
                break;
        case _PROTO_MSG_TYPE_MAX:
        case _PROTO_MSG_TYPE_INVALID: fail();
        }
}

/* Encodes m, decodes it back, compares, and checks that re-encoding the
 * decoded message gives the same bytes. */
static void roundtrip(const proto_msg *m) {
        _cleanup_free_ uint8_t *buf = NULL, *buf2 = NULL;
        _cleanup_proto_msg_ proto_msg d = {};
        size_t len, len2;
        nm_error err = {};

        if (proto_encode(m, &buf, &len, &err) < 0)
                fail_msg("encoding %s: %s", proto_msg_type_to_string(m->type), err.msg);
        if (proto_decode_frame(buf, len, &d, &err) < 0)
                fail_msg("decoding %s: %s", proto_msg_type_to_string(m->type), err.msg);
        assert_msg_eq(m, &d);
        assert_int_equal(proto_encode(&d, &buf2, &len2, &err), 0);
        assert_int_equal(len, len2);
        assert_memory_equal(buf, buf2, len);
}

/* Builds a payload (a msgpack map without the length prefix) by hand, to
 * send what our encoder never would. */
typedef struct raw {
        msgpack_sbuffer sb;
        msgpack_packer pk;
} raw;

static void raw_init(raw *r) {
        msgpack_sbuffer_init(&r->sb);
        msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
}

static void raw_done(raw *r) {
        msgpack_sbuffer_destroy(&r->sb);
}

static void raw_key(raw *r, const char *k) {
        msgpack_pack_str_with_body(&r->pk, k, strlen(k));
}

static void raw_str(raw *r, const char *k, const char *v) {
        raw_key(r, k);
        msgpack_pack_str_with_body(&r->pk, v, strlen(v));
}

static void raw_uint(raw *r, const char *k, uint64_t v) {
        raw_key(r, k);
        msgpack_pack_uint64(&r->pk, v);
}

static void raw_bin(raw *r, const char *k, const void *v, size_t len) {
        raw_key(r, k);
        msgpack_pack_bin_with_body(&r->pk, v, len);
}

/* Decodes the raw payload; expects failure with code and a message
 * containing want. */
static void expect_decode_error(raw *r, int code, const char *want) {
        _cleanup_proto_msg_ proto_msg m = {};
        nm_error err = {};
        int q = proto_decode((const uint8_t *)r->sb.data, r->sb.size, &m, &err);

        if (q != code || !strstr(err.msg, want))
                fail_msg("expected %d '%s', got %d '%s'", code, want, q, err.msg);
        assert_int_equal(m.type, 0); /* untouched on failure */
        raw_done(r);
}

static void expect_decode_ok(raw *r, proto_msg *ret) {
        nm_error err = {};
        if (proto_decode((const uint8_t *)r->sb.data, r->sb.size, ret, &err) < 0)
                fail_msg("decode failed: %s", err.msg);
}

/* A FILE map with every field; skip names one to leave out, and extra
 * entries are appended by the caller (n_extra counts them). */
static void raw_file(raw *r, const char *skip, size_t n_extra) {
        size_t n = 5 - (skip ? 1 : 0) + n_extra;
        raw_init(r);
        msgpack_pack_map(&r->pk, n);
        raw_uint(r, "t", PROTO_MSG_FILE);
        if (!skip || strcmp(skip, "mig") != 0)
                raw_str(r, "mig", "m1");
        if (!skip || strcmp(skip, "path") != 0)
                raw_str(r, "path", "images/core-1.img");
        if (!skip || strcmp(skip, "size") != 0)
                raw_uint(r, "size", 10);
        if (!skip || strcmp(skip, "mode") != 0)
                raw_uint(r, "mode", 0600);
}

static void expect_encode_error(const proto_msg *m, int code, const char *want) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0;
        nm_error err = {};
        int q = proto_encode(m, &buf, &len, &err);

        if (q != code || !strstr(err.msg, want))
                fail_msg("expected %d '%s', got %d '%s'", code, want, q, err.msg);
        assert_null(buf);
}

/* ---- Round trips ---- */

static void test_roundtrip_every_type(void **state) {
        proto_msg s[N_SAMPLES];
        size_t n = proto_samples(s, N_SAMPLES);
        (void)state;

        for (size_t i = 0; i < n; i++)
                roundtrip(&s[i]);
        /* Every type has a sample. */
        for (int t = 0; t < _PROTO_MSG_TYPE_MAX; t++) {
                bool found = false;
                if (!proto_msg_type_to_string(t))
                        continue;
                for (size_t i = 0; i < n; i++)
                        found = found || (int)s[i].type == t;
                if (!found)
                        fail_msg("no sample for %s", proto_msg_type_to_string(t));
        }
}

static void test_roundtrip_optional_absent(void **state) {
        const proto_msg msgs[] = {
                {.type = PROTO_MSG_HELLO,
                 .hello = {.version = 7, .min_version = 3, .node = "n", .role = PROTO_ROLE_CLI}},
                {.type = PROTO_MSG_ERROR, .error = {.code = -4095, .reason = "x"}},
                {.type = PROTO_MSG_MIGRATE, .migrate = {.has_pid = true, .pid = 1, .target = "t"}},
                {.type = PROTO_MSG_STATUS},
                {.type = PROTO_MSG_EVENT, .event = {.mig = "m", .phase = "dump"}},
                {.type = PROTO_MSG_EVENT, .event = {.phase = "drain", .files_total = 5}},
                {.type = PROTO_MSG_RESULT, .result = {.doc = "[]"}},
                {.type = PROTO_MSG_OFFER,
                 .offer = {.mig = "m",
                           .container_id = "c",
                           .container_name = "",
                           .metadata = {(const uint8_t *)"{}", 2},
                           .criu_version = "4.2",
                           .kernel = "6"}},
        };
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(msgs); i++)
                roundtrip(&msgs[i]);
}

static void test_type_names(void **state) {
        (void)state;
        assert_string_equal(proto_msg_type_to_string(PROTO_MSG_FILE_END), "FILE_END");
        assert_int_equal(proto_msg_type_from_string("IMAGES_DONE"), PROTO_MSG_IMAGES_DONE);
        assert_int_equal(proto_msg_type_from_string("NOPE"), -EINVAL);
        assert_null(proto_msg_type_to_string(0));
        assert_null(proto_msg_type_to_string(7));
        assert_null(proto_msg_type_to_string(_PROTO_MSG_TYPE_MAX));
        assert_string_equal(proto_role_to_string(PROTO_ROLE_CLI), "cli");
        assert_int_equal(proto_reject_code_from_string("no_space"), PROTO_REJECT_NO_SPACE);
        assert_string_equal(proto_outcome_to_string(PROTO_OUTCOME_UNKNOWN), "unknown");
        assert_int_equal(proto_outcome_from_string("maybe"), -EINVAL);
}

static void test_msg_mig_and_helpers(void **state) {
        proto_msg s[N_SAMPLES];
        size_t n = proto_samples(s, N_SAMPLES);
        (void)state;

        for (size_t i = 0; i < n; i++) {
                const proto_msg_type no_mig[] = {
                        PROTO_MSG_HELLO,  PROTO_MSG_PING,      PROTO_MSG_PONG,    PROTO_MSG_NODE_INFO_REQ,
                        PROTO_MSG_RELAY,  PROTO_MSG_NODE_INFO, PROTO_MSG_MIGRATE, PROTO_MSG_DRAIN,
                        PROTO_MSG_CORDON, PROTO_MSG_STATUS,    PROTO_MSG_LIST,    PROTO_MSG_RELAY_FDS};
                const char *mig = proto_msg_mig(&s[i]);
                bool none = false;

                for (size_t k = 0; k < ARRAY_SIZE(no_mig); k++)
                        none = none || s[i].type == no_mig[k];
                if (none)
                        assert_null(mig);
                else if (s[i].type == PROTO_MSG_ACCEPT)
                        assert_string_equal(mig, "m");
                else
                        assert_string_equal(mig, s[1].error.mig);
        }
        assert_true(proto_hello_has_feature(&s[0].hello, "stripe"));
        assert_false(proto_hello_has_feature(&s[0].hello, "strip"));
        assert_int_equal(proto_opts_get(&s[23].migrate.opts, "parallel")->u, 4);
        assert_null(proto_opts_get(&s[23].migrate.opts, "nope"));
}

static void test_data_header_matches_encoder(void **state) {
        static uint8_t payload[PROTO_DATA_MAX];
        const char *migs[] = {"m", "mig-0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"};
        const size_t lens[] = {1, 15, 16, 255, 256, 65535, 65536, PROTO_DATA_MAX};
        (void)state;

        for (size_t i = 0; i < sizeof(payload); i++)
                payload[i] = (uint8_t)(i * 7);
        for (size_t mi = 0; mi < ARRAY_SIZE(migs); mi++)
                for (size_t li = 0; li < ARRAY_SIZE(lens); li++) {
                        proto_msg m = {.type = PROTO_MSG_DATA,
                                       .data = {.mig = migs[mi], .data = {payload, lens[li]}}};
                        _cleanup_free_ uint8_t *buf = NULL;
                        _cleanup_proto_msg_ proto_msg d = {};
                        uint8_t hdr[PROTO_DATA_HDR_MAX];
                        size_t len;
                        nm_error err = {};
                        int h;

                        assert_int_equal(proto_encode(&m, &buf, &len, &err), 0);
                        h = proto_data_header(hdr, migs[mi], lens[li], &err);
                        assert_true(h > 0 && h <= (int)PROTO_DATA_HDR_MAX);
                        assert_int_equal((size_t)h + lens[li], len);
                        assert_memory_equal(hdr, buf, h);
                        /* Decoding is zero-copy: data points into the frame. */
                        assert_int_equal(proto_decode_frame(buf, len, &d, &err), 0);
                        assert_ptr_equal(d.data.data.ptr, buf + h);
                        assert_int_equal(d.data.data.len, lens[li]);
                }
}

static void test_data_header_rejects(void **state) {
        uint8_t hdr[PROTO_DATA_HDR_MAX];
        nm_error err = {};
        (void)state;

        assert_int_equal(proto_data_header(hdr, "m", PROTO_DATA_MAX + 1, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "DATA: field 'data'"));
        nm_error_clear(&err);
        assert_int_equal(proto_data_header(hdr, "m", 0, &err), -EBADMSG);
        nm_error_clear(&err);
        assert_int_equal(proto_data_header(hdr, "../x", 1, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "DATA: field 'mig'"));
}

/* ---- Framing ---- */

static void test_truncated_frame(void **state) {
        proto_msg s[N_SAMPLES];
        size_t n = proto_samples(s, N_SAMPLES);
        (void)state;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ uint8_t *buf = NULL;
                size_t len;
                nm_error err = {};

                assert_int_equal(proto_encode(&s[i], &buf, &len, &err), 0);
                /* Every strict prefix is refused, by the frame check or by the
                 * msgpack walk of the payload. */
                for (size_t cut = 0; cut < len; cut++) {
                        proto_msg d = {};
                        nm_error e = {};
                        assert_int_equal(proto_decode_frame(buf, cut, &d, &e), -EBADMSG);
                        assert_non_null(strstr(e.msg, "truncated"));
                        if (cut > PROTO_FRAME_HDR) {
                                nm_error_clear(&e);
                                assert_int_equal(
                                        proto_decode(buf + PROTO_FRAME_HDR, cut - PROTO_FRAME_HDR, &d, &e),
                                        -EBADMSG);
                        }
                }
        }
}

static void test_oversize_length_rejected_from_header(void **state) {
        const uint8_t hdr[4] = {0x00, 0x89, 0x54, 0x40}; /* 9000000 */
        const uint8_t max_hdr[4] = {0x00, 0x40, 0x00, 0x00};
        const uint8_t over_hdr[4] = {0x00, 0x40, 0x00, 0x01};
        const uint8_t zero_hdr[4] = {0, 0, 0, 0};
        _cleanup_(proto_reader_freep) proto_reader *r = NULL;
        const uint8_t *p;
        uint32_t len;
        size_t plen;
        nm_error err = {};
        (void)state;

        assert_int_equal(proto_frame_check_header(hdr, 0, &len, &err), -E2BIG);
        assert_string_equal(err.msg, "frame length 9000000 exceeds limit 4194304");
        nm_error_clear(&err);
        assert_int_equal(proto_frame_check_header(max_hdr, 0, &len, &err), 0);
        assert_int_equal(len, PROTO_FRAME_MAX);
        assert_int_equal(proto_frame_check_header(over_hdr, 0, &len, &err), -E2BIG);
        nm_error_clear(&err);
        assert_int_equal(proto_frame_check_header(max_hdr, 1000, &len, &err), -E2BIG);
        assert_string_equal(err.msg, "frame length 4194304 exceeds limit 1000");
        nm_error_clear(&err);
        assert_int_equal(proto_frame_check_header(zero_hdr, 0, &len, &err), -EBADMSG);
        nm_error_clear(&err);

        /* The reader refuses as soon as the 4 header bytes are in, with no
         * payload byte sent, and stays failed. */
        assert_int_equal(proto_reader_new(0, &r), 0);
        assert_int_equal(proto_reader_feed(r, hdr, 3, &err), 0);
        assert_int_equal(proto_reader_feed(r, hdr + 3, 1, &err), -E2BIG);
        assert_string_equal(err.msg, "frame length 9000000 exceeds limit 4194304");
        nm_error_clear(&err);
        assert_int_equal(proto_reader_next(r, &p, &plen, &err), -E2BIG);
        assert_int_equal(proto_reader_feed(r, hdr, 1, NULL), -E2BIG);

        /* A whole-frame decode looks at the header before the payload. */
        nm_error_clear(&err);
        proto_msg m = {};
        assert_int_equal(proto_decode_frame(hdr, sizeof(hdr), &m, &err), -E2BIG);
        nm_error_clear(&err);
        assert_int_equal(proto_decode(hdr, (size_t)PROTO_FRAME_MAX + 1, &m, &err), -E2BIG);
}

static void test_trailing_garbage(void **state) {
        proto_msg m = {.type = PROTO_MSG_PING, .ping = {.seq = 1}};
        _cleanup_free_ uint8_t *buf = NULL;
        uint8_t *longer;
        size_t len;
        nm_error err = {};
        proto_msg d = {};
        (void)state;

        assert_int_equal(proto_encode(&m, &buf, &len, &err), 0);
        longer = malloc(len + 1);
        assert_non_null(longer);
        memcpy(longer, buf, len);
        longer[len] = 0xc0;
        /* Garbage inside the payload, after the map... */
        longer[3]++;
        assert_int_equal(proto_decode_frame(longer, len + 1, &d, &err), -EBADMSG);
        assert_string_equal(err.msg, "frame: 1 bytes of trailing garbage after the map");
        /* ... and after the frame the header announced. */
        longer[3]--;
        nm_error_clear(&err);
        assert_int_equal(proto_decode_frame(longer, len + 1, &d, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "trailing garbage after the frame"));
        free(longer);
}

static void test_non_map_top_level(void **state) {
        raw r;
        (void)state;

        raw_init(&r);
        msgpack_pack_array(&r.pk, 2);
        msgpack_pack_uint8(&r.pk, PROTO_MSG_PING);
        msgpack_pack_uint8(&r.pk, 1);
        expect_decode_error(&r, -EBADMSG, "frame: top-level msgpack object is an array, not a map");

        raw_init(&r);
        msgpack_pack_str_with_body(&r.pk, "hello", 5);
        expect_decode_error(&r, -EBADMSG, "is a string, not a map");

        raw_init(&r);
        msgpack_pack_nil(&r.pk);
        expect_decode_error(&r, -EBADMSG, "is nil, not a map");
}

static void test_empty_payload(void **state) {
        proto_msg d = {};
        nm_error err = {};
        (void)state;
        assert_int_equal(proto_decode((const uint8_t *)"", 0, &d, &err), -EBADMSG);
}

/* ---- Message type and fields ---- */

static void test_unknown_message_type(void **state) {
        const uint64_t bad[] = {0, 7, 12, 44, 63, 72, 200, UINT32_MAX, UINT64_MAX};
        raw r;
        (void)state;

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                char want[64];
                raw_init(&r);
                msgpack_pack_map(&r.pk, 1);
                raw_uint(&r, "t", bad[i]);
                snprintf(want, sizeof(want), "frame: unknown message type %" PRIu64, bad[i]);
                expect_decode_error(&r, -EPROTO, want);
        }
        proto_msg m = {.type = 200};
        expect_encode_error(&m, -EPROTO, "unknown message type 200");
}

static void test_type_key_problems(void **state) {
        raw r;
        (void)state;

        raw_init(&r);
        msgpack_pack_map(&r.pk, 1);
        raw_uint(&r, "seq", 1);
        expect_decode_error(&r, -EBADMSG, "frame: key 't' (message type) missing");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 1);
        raw_str(&r, "t", "PING");
        expect_decode_error(&r, -EBADMSG,
                            "frame: key 't' (message type) is a string, not an unsigned integer");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 1);
        raw_key(&r, "t");
        msgpack_pack_int8(&r.pk, -3);
        expect_decode_error(&r, -EBADMSG, "is a negative integer");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_PING);
        raw_uint(&r, "seq", 1);
        raw_uint(&r, "t", PROTO_MSG_PONG);
        expect_decode_error(&r, -EBADMSG, "frame: key 't' appears twice");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 2);
        raw_uint(&r, "t", PROTO_MSG_PING);
        msgpack_pack_uint8(&r.pk, 7);
        msgpack_pack_uint8(&r.pk, 1);
        expect_decode_error(&r, -EBADMSG, "frame: map key #1 is an unsigned integer, not a string");
}

static void test_missing_field(void **state) {
        const char *fields[] = {"mig", "path", "size", "mode"};
        raw r;
        (void)state;

        for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
                char want[64];
                raw_file(&r, fields[i], 0);
                snprintf(want, sizeof(want), "FILE: field '%s' missing", fields[i]);
                expect_decode_error(&r, -EBADMSG, want);
        }
        proto_msg m = {.type = PROTO_MSG_OFFER, .offer = {.mig = "m"}};
        expect_encode_error(&m, -EBADMSG, "OFFER: field 'container_id' missing");
}

static void test_wrong_field_type(void **state) {
        raw r;
        (void)state;

        raw_init(&r);
        msgpack_pack_map(&r.pk, 5);
        raw_uint(&r, "t", PROTO_MSG_FILE);
        raw_str(&r, "mig", "m1");
        raw_str(&r, "path", "metadata.json");
        raw_str(&r, "size", "10");
        raw_uint(&r, "mode", 0600);
        expect_decode_error(&r, -EBADMSG, "FILE: field 'size' is a string, not an integer");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 9);
        raw_uint(&r, "t", PROTO_MSG_OFFER);
        raw_str(&r, "mig", "m1");
        raw_uint(&r, "container_id", 17);
        raw_str(&r, "container_name", "");
        raw_bin(&r, "metadata", "{}", 2);
        raw_uint(&r, "image_bytes", 1);
        raw_str(&r, "criu_version", "4.2");
        raw_str(&r, "kernel", "6.1");
        raw_key(&r, "lazy");
        msgpack_pack_false(&r.pk);
        expect_decode_error(&r, -EBADMSG,
                            "OFFER: field 'container_id' is an unsigned integer, not a string");

        /* metadata as a str instead of a bin */
        raw_init(&r);
        msgpack_pack_map(&r.pk, 9);
        raw_uint(&r, "t", PROTO_MSG_OFFER);
        raw_str(&r, "mig", "m1");
        raw_str(&r, "container_id", "c");
        raw_str(&r, "container_name", "");
        raw_str(&r, "metadata", "{}");
        raw_uint(&r, "image_bytes", 1);
        raw_str(&r, "criu_version", "4.2");
        raw_str(&r, "kernel", "6.1");
        raw_key(&r, "lazy");
        msgpack_pack_false(&r.pk);
        expect_decode_error(&r, -EBADMSG, "OFFER: field 'metadata' is a string, not a bin");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 2);
        raw_uint(&r, "t", PROTO_MSG_CORDON);
        raw_uint(&r, "on", 1);
        expect_decode_error(&r, -EBADMSG, "CORDON: field 'on' is an unsigned integer, not a boolean");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 2);
        raw_uint(&r, "t", PROTO_MSG_PING);
        raw_key(&r, "seq");
        msgpack_pack_double(&r.pk, 1.0);
        expect_decode_error(&r, -EBADMSG, "PING: field 'seq' is a float, not an integer");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_DRAIN);
        raw_str(&r, "targets", "host2");
        raw_uint(&r, "parallel", 1);
        expect_decode_error(&r, -EBADMSG, "DRAIN: field 'targets' is a string, not an array");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_DRAIN);
        raw_key(&r, "targets");
        msgpack_pack_array(&r.pk, 2);
        msgpack_pack_str_with_body(&r.pk, "a", 1);
        msgpack_pack_uint8(&r.pk, 1);
        raw_uint(&r, "parallel", 1);
        expect_decode_error(&r, -EBADMSG, "DRAIN: field 'targets[1]' is an unsigned integer, not a string");
}

static void test_duplicate_field(void **state) {
        raw r;
        (void)state;
        raw_file(&r, NULL, 1);
        raw_uint(&r, "size", 11);
        expect_decode_error(&r, -EBADMSG, "FILE: field 'size' appears twice");
}

static void test_unknown_keys_ignored(void **state) {
        _cleanup_proto_msg_ proto_msg m = {};
        raw r;
        (void)state;

        /* A newer peer may add keys, with any well-formed value. */
        raw_file(&r, NULL, 3);
        raw_key(&r, "zz_future");
        msgpack_pack_map(&r.pk, 1);
        raw_key(&r, "nested");
        msgpack_pack_array(&r.pk, 2);
        msgpack_pack_nil(&r.pk);
        msgpack_pack_double(&r.pk, 2.5);
        raw_key(&r, "ext");
        msgpack_pack_ext_with_body(&r.pk, "abcd", 4, 5);
        raw_key(&r, "");
        msgpack_pack_int64(&r.pk, INT64_MIN);
        expect_decode_ok(&r, &m);
        raw_done(&r);
        assert_int_equal(m.type, PROTO_MSG_FILE);
        assert_string_equal(m.file.path, "images/core-1.img");
        assert_int_equal(m.file.size, 10);
}

static void test_integer_ranges(void **state) {
        raw r;
        (void)state;

        raw_file(&r, "size", 1);
        raw_uint(&r, "size", (uint64_t)INT64_MAX + 1);
        expect_decode_error(&r, -EBADMSG, "FILE: field 'size' 9223372036854775808 is above INT64_MAX");

        raw_file(&r, "size", 1);
        raw_key(&r, "size");
        msgpack_pack_int8(&r.pk, -1);
        expect_decode_error(&r, -EBADMSG, "FILE: field 'size' -1 is outside 0..9223372036854775807");

        raw_file(&r, "mode", 1);
        raw_uint(&r, "mode", 04755);
        expect_decode_error(&r, -EBADMSG, "FILE: field 'mode' 04755 has bits outside 0644");

        raw_file(&r, "mode", 1);
        raw_uint(&r, "mode", 0666);
        expect_decode_error(&r, -EBADMSG, "has bits outside 0644");

        raw_file(&r, "mode", 1);
        raw_uint(&r, "mode", 0400);
        expect_decode_error(&r, -EBADMSG, "FILE: field 'mode' 0400 lacks owner rw");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_ERROR);
        raw_uint(&r, "code", 5);
        raw_str(&r, "reason", "x");
        expect_decode_error(&r, -EBADMSG, "ERROR: field 'code' 5 is outside -4095..-1");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_RESTORED);
        raw_str(&r, "mig", "m");
        raw_uint(&r, "pid", 0);
        expect_decode_error(&r, -EBADMSG, "RESTORED: field 'pid' 0 is outside 1..2147483647");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_RUNNING);
        raw_str(&r, "mig", "m");
        raw_uint(&r, "pid", UINT32_MAX + UINT64_C(1));
        expect_decode_error(&r, -EBADMSG, "RUNNING: field 'pid' 4294967296 is outside");

        assert_int_equal(proto_file_mode(0100666), 0644);
        assert_int_equal(proto_file_mode(0400), 0600);
        assert_int_equal(proto_file_mode(04755), 0644);

        proto_msg m = {.type = PROTO_MSG_PING, .ping = {.seq = UINT64_MAX}};
        expect_encode_error(&m, -EBADMSG, "PING: field 'seq' 18446744073709551615 is above INT64_MAX");
        m = (proto_msg){.type = PROTO_MSG_FILE, .file = {.mig = "m", .path = "metadata.json", .mode = 0755}};
        expect_encode_error(&m, -EBADMSG, "FILE: field 'mode' 0755 has bits outside 0644");
}

static void test_string_checks(void **state) {
        static const char nul_str[] = {'a', '\0', 'b'};
        char long_mig[PROTO_ID_MAX + 2];
        raw r;
        (void)state;

        memset(long_mig, 'a', sizeof(long_mig) - 1);
        long_mig[sizeof(long_mig) - 1] = '\0';

        raw_init(&r);
        msgpack_pack_map(&r.pk, 2);
        raw_uint(&r, "t", PROTO_MSG_ACCEPT);
        raw_str(&r, "mig", long_mig);
        expect_decode_error(&r, -EBADMSG, "ACCEPT: field 'mig' is 65 bytes long, outside 1..64");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 2);
        raw_uint(&r, "t", PROTO_MSG_ACCEPT);
        raw_str(&r, "mig", "");
        expect_decode_error(&r, -EBADMSG, "ACCEPT: field 'mig' is 0 bytes long");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 2);
        raw_uint(&r, "t", PROTO_MSG_ACCEPT);
        raw_str(&r, "mig", "a/b");
        expect_decode_error(&r, -EBADMSG, "ACCEPT: field 'mig': id has byte 0x2f at offset 1");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_ABORT);
        raw_str(&r, "mig", "m");
        raw_key(&r, "reason");
        msgpack_pack_str_with_body(&r.pk, nul_str, sizeof(nul_str));
        expect_decode_error(&r, -EBADMSG, "ABORT: field 'reason' contains a NUL byte");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_ABORT);
        raw_str(&r, "mig", "m");
        raw_str(&r, "reason", "red \033[31m alert");
        expect_decode_error(&r, -EBADMSG, "ABORT: field 'reason' has a forbidden byte 0x1b at offset 4");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 5);
        raw_uint(&r, "t", PROTO_MSG_HELLO);
        raw_uint(&r, "version", 1);
        raw_uint(&r, "min_version", 1);
        raw_str(&r, "node", "host 1");
        raw_str(&r, "role", "peer");
        expect_decode_error(&r, -EBADMSG, "HELLO: field 'node' has a forbidden byte 0x20 at offset 4");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 5);
        raw_uint(&r, "t", PROTO_MSG_HELLO);
        raw_uint(&r, "version", 1);
        raw_uint(&r, "min_version", 1);
        raw_str(&r, "node", "host1");
        raw_str(&r, "role", "admin");
        expect_decode_error(&r, -EBADMSG, "HELLO: field 'role' is not one of: peer, cli");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 4);
        raw_uint(&r, "t", PROTO_MSG_REJECT);
        raw_str(&r, "mig", "m");
        raw_str(&r, "code", "full");
        raw_str(&r, "reason", "x");
        expect_decode_error(&r, -EBADMSG,
                            "REJECT: field 'code' is not one of: cordoned, no_space, exists, incompatible, "
                            "busy, invalid");

        proto_msg m = {.type = PROTO_MSG_ACCEPT, .accept = {.mig = "bad mig"}};
        expect_encode_error(&m, -EBADMSG, "ACCEPT: field 'mig': id has byte 0x20");
        m = (proto_msg){.type = PROTO_MSG_REJECT, .reject = {.mig = "m", .code = 99, .reason = "x"}};
        expect_encode_error(&m, -EBADMSG, "REJECT: field 'code' is not one of");
}

static void images_done_with(raw *r, const char *hmac) {
        raw_init(r);
        msgpack_pack_map(&r->pk, 5);
        raw_uint(r, "t", PROTO_MSG_IMAGES_DONE);
        raw_str(r, "mig", "m");
        raw_str(r, "hmac", hmac);
        raw_uint(r, "files", 1);
        raw_uint(r, "bytes", 1);
}

static void test_hmac_not_hex(void **state) {
        const char *good = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        _cleanup_proto_msg_ proto_msg m = {};
        raw r;
        (void)state;

        images_done_with(&r, good);
        expect_decode_ok(&r, &m);
        raw_done(&r);

        images_done_with(&r, "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef");
        expect_decode_error(&r, -EBADMSG,
                            "IMAGES_DONE: field 'hmac' has a non-lowercase-hex byte 0x41 at offset 10");
        images_done_with(&r, "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        expect_decode_error(&r, -EBADMSG, "non-lowercase-hex byte 0x67 at offset 0");
        images_done_with(&r, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde");
        expect_decode_error(&r, -EBADMSG, "IMAGES_DONE: field 'hmac' is 63 bytes long, not 64");
        images_done_with(&r, "");
        expect_decode_error(&r, -EBADMSG, "is 0 bytes long, not 64");
}

static void test_sha256_wrong_length(void **state) {
        uint8_t digest[33] = {};
        const size_t lens[] = {0, 31, 33};
        raw r;
        (void)state;

        for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
                char want[80];
                raw_init(&r);
                msgpack_pack_map(&r.pk, 3);
                raw_uint(&r, "t", PROTO_MSG_FILE_END);
                raw_str(&r, "mig", "m");
                raw_bin(&r, "sha256", digest, lens[i]);
                snprintf(want, sizeof(want), "FILE_END: field 'sha256' is %zu bytes long, not 32", lens[i]);
                expect_decode_error(&r, -EBADMSG, want);
        }
        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_FILE_END);
        raw_str(&r, "mig", "m");
        raw_str(&r, "sha256", "e3b0c44298fc1c149afbf4c8996fb924");
        expect_decode_error(&r, -EBADMSG, "FILE_END: field 'sha256' is a string, not a bin");
}

/* The lanes' fields: a count outside 2..PROTO_LANES_MAX (1 for LANES),
 * a lane outside 1..PROTO_LANES_MAX - 1, a secret of any other length,
 * and an ACCEPT with one of lanes and lane_secret only. */
static void test_lanes_fields(void **state) {
        const uint64_t bad_counts[] = {0, 1, PROTO_LANES_MAX + 1};
        uint8_t secret[PROTO_LANE_SECRET_LEN + 1] = {};
        raw r;
        (void)state;

        for (size_t i = 0; i < ARRAY_SIZE(bad_counts); i++) {
                char want[80];
                raw_init(&r);
                msgpack_pack_map(&r.pk, 4);
                raw_uint(&r, "t", PROTO_MSG_ACCEPT);
                raw_str(&r, "mig", "m");
                raw_uint(&r, "lanes", bad_counts[i]);
                raw_bin(&r, "lane_secret", secret, PROTO_LANE_SECRET_LEN);
                snprintf(want, sizeof(want), "ACCEPT: field 'lanes' %" PRIu64 " is outside 2..4",
                         bad_counts[i]);
                expect_decode_error(&r, -EBADMSG, want);
        }

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_ACCEPT);
        raw_str(&r, "mig", "m");
        raw_uint(&r, "lanes", 2);
        expect_decode_error(&r, -EBADMSG, "ACCEPT: 'lanes' and 'lane_secret' come together or not at all");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_ACCEPT);
        raw_str(&r, "mig", "m");
        raw_bin(&r, "lane_secret", secret, PROTO_LANE_SECRET_LEN);
        expect_decode_error(&r, -EBADMSG, "ACCEPT: 'lanes' and 'lane_secret' come together or not at all");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 4);
        raw_uint(&r, "t", PROTO_MSG_ACCEPT);
        raw_str(&r, "mig", "m");
        raw_uint(&r, "lanes", 2);
        raw_bin(&r, "lane_secret", secret, PROTO_LANE_SECRET_LEN - 1);
        expect_decode_error(&r, -EBADMSG, "ACCEPT: field 'lane_secret' is 31 bytes long, not 32");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 4);
        raw_uint(&r, "t", PROTO_MSG_LANE_JOIN);
        raw_str(&r, "mig", "m");
        raw_uint(&r, "lane", 0);
        raw_bin(&r, "secret", secret, PROTO_LANE_SECRET_LEN);
        expect_decode_error(&r, -EBADMSG, "LANE_JOIN: field 'lane' 0 is outside 1..3");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 4);
        raw_uint(&r, "t", PROTO_MSG_LANE_JOIN);
        raw_str(&r, "mig", "m");
        raw_uint(&r, "lane", PROTO_LANES_MAX);
        raw_bin(&r, "secret", secret, PROTO_LANE_SECRET_LEN);
        expect_decode_error(&r, -EBADMSG, "LANE_JOIN: field 'lane' 4 is outside 1..3");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 4);
        raw_uint(&r, "t", PROTO_MSG_LANE_JOIN);
        raw_str(&r, "mig", "m");
        raw_uint(&r, "lane", 1);
        raw_bin(&r, "secret", secret, PROTO_LANE_SECRET_LEN + 1);
        expect_decode_error(&r, -EBADMSG, "LANE_JOIN: field 'secret' is 33 bytes long, not 32");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_LANES);
        raw_str(&r, "mig", "m");
        raw_uint(&r, "lanes", 0);
        expect_decode_error(&r, -EBADMSG, "LANES: field 'lanes' 0 is outside 1..4");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_LANE_JOINED);
        raw_str(&r, "mig", "m");
        raw_uint(&r, "lane", 0);
        expect_decode_error(&r, -EBADMSG, "LANE_JOINED: field 'lane' 0 is outside 1..3");
}

static void test_data_size_limits(void **state) {
        static uint8_t big[PROTO_DATA_MAX + 1];
        raw r;
        (void)state;

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_DATA);
        raw_str(&r, "mig", "m");
        raw_bin(&r, "data", big, sizeof(big));
        expect_decode_error(&r, -EBADMSG, "DATA: field 'data' is 1048577 bytes long, outside 1..1048576");

        proto_msg m = {.type = PROTO_MSG_DATA, .data = {.mig = "m", .data = {big, 0}}};
        expect_encode_error(&m, -EBADMSG, "DATA: field 'data' is 0 bytes long, outside 1..1048576");
        m.data.data.ptr = NULL;
        expect_encode_error(&m, -EBADMSG, "DATA: field 'data' missing");
        m.data.data.ptr = big;
        m.data.data.len = sizeof(big);
        expect_encode_error(&m, -EBADMSG, "outside 1..1048576");
}

static void test_encode_too_big(void **state) {
        _cleanup_free_ char *doc = malloc(PROTO_FRAME_MAX);
        proto_msg m = {.type = PROTO_MSG_RESULT};
        (void)state;

        assert_non_null(doc);
        memset(doc, 'x', PROTO_FRAME_MAX - 1);
        doc[PROTO_FRAME_MAX - 1] = '\0';
        m.result.doc = doc;
        expect_encode_error(&m, -E2BIG,
                            "RESULT: encoded message of 4194316 bytes exceeds the frame limit 4194304");

        /* proto_encode_append() leaves the buffer as it was on failure. */
        proto_buf b = {};
        proto_msg ping = {.type = PROTO_MSG_PING, .ping = {.seq = 3}};
        assert_int_equal(proto_encode_append(&b, &ping, NULL), 0);
        size_t len = b.len;
        assert_int_equal(proto_encode_append(&b, &m, NULL), -E2BIG);
        assert_int_equal(b.len, len);
        assert_int_equal(proto_encode_append(&b, &ping, NULL), 0);
        assert_int_equal(b.len, 2 * len);
        proto_buf_done(&b);
        assert_null(b.data);
}

static void test_migrate_and_opts(void **state) {
        raw r;
        (void)state;

        proto_msg m = {.type = PROTO_MSG_MIGRATE, .migrate = {.target = "host2"}};
        expect_encode_error(&m, -EBADMSG, "MIGRATE: exactly one of 'container' and 'pid' is required");
        m.migrate.container = "web";
        m.migrate.has_pid = true;
        m.migrate.pid = 7;
        expect_encode_error(&m, -EBADMSG, "MIGRATE: exactly one of 'container' and 'pid' is required");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_MIGRATE);
        raw_str(&r, "target", "host2");
        raw_key(&r, "opts");
        msgpack_pack_map(&r.pk, 0);
        expect_decode_error(&r, -EBADMSG, "MIGRATE: exactly one of 'container' and 'pid' is required");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 4);
        raw_uint(&r, "t", PROTO_MSG_MIGRATE);
        raw_str(&r, "container", "web");
        raw_str(&r, "target", "host2");
        raw_key(&r, "opts");
        msgpack_pack_map(&r.pk, 1);
        raw_key(&r, "rate");
        msgpack_pack_double(&r.pk, 1.5);
        expect_decode_error(&r, -EBADMSG,
                            "MIGRATE: option 'rate' is a float, not a boolean, unsigned integer or string");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 4);
        raw_uint(&r, "t", PROTO_MSG_MIGRATE);
        raw_str(&r, "container", "web");
        raw_str(&r, "target", "host2");
        raw_key(&r, "opts");
        msgpack_pack_map(&r.pk, 2);
        raw_uint(&r, "lazy", 1);
        raw_uint(&r, "lazy", 2);
        expect_decode_error(&r, -EBADMSG, "MIGRATE: option 'lazy' appears twice");

        /* A bad option string fails with or without an nm_error. */
        raw_init(&r);
        msgpack_pack_map(&r.pk, 4);
        raw_uint(&r, "t", PROTO_MSG_MIGRATE);
        raw_str(&r, "container", "web");
        raw_str(&r, "target", "host2");
        raw_key(&r, "opts");
        msgpack_pack_map(&r.pk, 1);
        raw_str(&r, "compress", "z\033std");
        proto_msg d = {};
        assert_int_equal(proto_decode((const uint8_t *)r.sb.data, r.sb.size, &d, NULL), -EBADMSG);
        expect_decode_error(&r, -EBADMSG,
                            "MIGRATE: field 'opts.compress' has a forbidden byte 0x1b at offset 1");
        proto_opt bad = {.key = "compress", .kind = PROTO_OPT_STR, .s = "z\033std"};
        m = (proto_msg){.type = PROTO_MSG_MIGRATE,
                        .migrate = {.container = "web", .target = "host2", .opts = {.v = &bad, .n = 1}}};
        expect_encode_error(&m, -EBADMSG, "MIGRATE: field 'opts.compress' has a forbidden byte 0x1b");
        assert_int_equal(proto_encode(&m, &(uint8_t *){NULL}, &(size_t){0}, NULL), -EBADMSG);

        raw_init(&r);
        msgpack_pack_map(&r.pk, 4);
        raw_uint(&r, "t", PROTO_MSG_MIGRATE);
        raw_str(&r, "container", "web");
        raw_str(&r, "target", "host2");
        raw_key(&r, "opts");
        msgpack_pack_map(&r.pk, 1);
        msgpack_pack_uint8(&r.pk, 1);
        msgpack_pack_uint8(&r.pk, 1);
        expect_decode_error(&r, -EBADMSG, "MIGRATE: field 'opts key' is an unsigned integer, not a string");
}

/* ---- Versions ---- */

static void test_version(void **state) {
        const proto_hello ours = {
                .version = PROTO_VERSION, .min_version = PROTO_MIN_VERSION, .node = "host1"};
        proto_hello peer = {.version = 3, .min_version = 2, .node = "host2"};
        uint32_t v = 0;
        nm_error err = {};
        raw r;
        (void)state;

        assert_int_equal(proto_version_negotiate(&ours, &peer, &v, &err), -EPROTONOSUPPORT);
        assert_string_equal(err.msg,
                            "peer 'host2' speaks protocol versions 2..3, this node speaks 1..1: no version "
                            "in common");
        assert_int_equal(v, 0);

        peer = (proto_hello){.version = 5, .min_version = 1, .node = "host2"};
        assert_int_equal(proto_version_negotiate(&ours, &peer, &v, NULL), 0);
        assert_int_equal(v, 1);
        proto_hello newer = {.version = 4, .min_version = 2};
        peer = (proto_hello){.version = 9, .min_version = 3, .node = "x"};
        assert_int_equal(proto_version_negotiate(&newer, &peer, &v, NULL), 0);
        assert_int_equal(v, 4);

        /* Version 0 does not exist; min_version cannot exceed version. */
        raw_init(&r);
        msgpack_pack_map(&r.pk, 5);
        raw_uint(&r, "t", PROTO_MSG_HELLO);
        raw_uint(&r, "version", 0);
        raw_uint(&r, "min_version", 1);
        raw_str(&r, "node", "host1");
        raw_str(&r, "role", "peer");
        expect_decode_error(&r, -EBADMSG, "HELLO: field 'version' 0 is outside 1..4294967295");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 5);
        raw_uint(&r, "t", PROTO_MSG_HELLO);
        raw_uint(&r, "version", 2);
        raw_uint(&r, "min_version", 3);
        raw_str(&r, "node", "host1");
        raw_str(&r, "role", "peer");
        expect_decode_error(&r, -EBADMSG, "HELLO: min_version 3 is above version 2");

        /* A far-future HELLO still decodes, with keys we do not know;
         * negotiation is what refuses it. */
        _cleanup_proto_msg_ proto_msg m = {};
        raw_init(&r);
        msgpack_pack_map(&r.pk, 6);
        raw_uint(&r, "t", PROTO_MSG_HELLO);
        raw_uint(&r, "version", 99);
        raw_uint(&r, "min_version", 99);
        raw_str(&r, "node", "host9");
        raw_str(&r, "role", "peer");
        raw_str(&r, "quantum", "yes");
        expect_decode_ok(&r, &m);
        raw_done(&r);
        nm_error_clear(&err);
        assert_int_equal(proto_version_negotiate(&ours, &m.hello, &v, &err), -EPROTONOSUPPORT);
        assert_non_null(strstr(err.msg, "versions 99..99, this node speaks 1..1"));
}

/* ---- Paths ---- */

static void file_with_path(raw *r, const char *path, size_t len) {
        raw_init(r);
        msgpack_pack_map(&r->pk, 5);
        raw_uint(r, "t", PROTO_MSG_FILE);
        raw_str(r, "mig", "m");
        raw_key(r, "path");
        msgpack_pack_str_with_body(&r->pk, path, len);
        raw_uint(r, "size", 0);
        raw_uint(r, "mode", 0644);
}

/* The path is refused by proto_path_check(), by the decoder and by the
 * encoder, each with want in the message. */
static void expect_bad_path(const char *path, size_t len, const char *want) {
        nm_error err = {};
        raw r;
        int q = proto_path_check(path, len, &err);

        if (q != -EBADMSG || !strstr(err.msg, want))
                fail_msg("path check of '%.*s': expected '%s', got %d '%s'", (int)len, path, want, q,
                         err.msg);
        file_with_path(&r, path, len);
        expect_decode_error(&r, -EBADMSG, want);
        if (strlen(path) == len) {
                proto_msg m = {.type = PROTO_MSG_FILE, .file = {.mig = "m", .path = path, .mode = 0600}};
                expect_encode_error(&m, -EBADMSG, want);
        }
}

#define BAD_PATH(p, want) expect_bad_path(p, sizeof(p) - 1, want)

static void test_path_dotdot(void **state) {
        (void)state;
        BAD_PATH("..", "neither metadata.json nor images/<name>");
        BAD_PATH("../metadata.json", "neither metadata.json nor images/<name>");
        BAD_PATH("images/..", "starts with '.'");
        BAD_PATH("images/../x", "starts with '.'");
        BAD_PATH("images/../../etc/passwd", "starts with '.'");
}

static void test_path_absolute(void **state) {
        (void)state;
        BAD_PATH("/etc/passwd", "neither metadata.json nor images/<name>");
        BAD_PATH("/images/core-1.img", "neither metadata.json nor images/<name>");
        BAD_PATH("/metadata.json", "neither");
}

static void test_path_subdirectory(void **state) {
        (void)state;
        BAD_PATH("images/a/b", "has a subdirectory; images/ is flat");
        BAD_PATH("images/a/", "has a subdirectory");
        BAD_PATH("images//a", "has a subdirectory");
        BAD_PATH("metadata.json/x", "neither");
        BAD_PATH("other/x", "neither");
}

static void test_path_nul(void **state) {
        (void)state;
        BAD_PATH("images/a\0b", "path contains a NUL byte");
        BAD_PATH("metadata.json\0", "path contains a NUL byte");
        BAD_PATH("\0", "path contains a NUL byte");
}

static void test_path_empty_name(void **state) {
        (void)state;
        BAD_PATH("", "path is empty");
        assert_int_equal(proto_path_check("", 0, NULL), -EBADMSG);
        BAD_PATH("images/", "path 'images/' has an empty file name");
        BAD_PATH("images", "neither");
}

static void test_path_dot_names(void **state) {
        (void)state;
        BAD_PATH(".", "neither");
        BAD_PATH("images/.", "starts with '.'");
        BAD_PATH("images/.hidden", "starts with '.'");
        BAD_PATH("./metadata.json", "neither");
        BAD_PATH("images/./x", "starts with '.'");
}

static void test_path_checkpoint_hmac(void **state) {
        (void)state;
        BAD_PATH("checkpoint.hmac",
                 "path 'checkpoint.hmac' is not sent as a file; the HMAC travels in IMAGES_DONE");
        BAD_PATH("images/checkpoint.hmac/..", "subdirectory");
}

static void test_path_overlong(void **state) {
        char path[7 + PROTO_FILE_NAME_MAX + 2];
        nm_error err = {};
        (void)state;

        memcpy(path, "images/", 7);
        memset(path + 7, 'a', PROTO_FILE_NAME_MAX);
        path[7 + PROTO_FILE_NAME_MAX] = '\0';
        assert_int_equal(proto_path_check(path, strlen(path), &err), PROTO_PATH_IMAGE);
        /* Round trip of the longest name. */
        proto_msg m = {.type = PROTO_MSG_FILE, .file = {.mig = "m", .path = path, .mode = 0644}};
        roundtrip(&m);

        path[7 + PROTO_FILE_NAME_MAX] = 'a';
        path[7 + PROTO_FILE_NAME_MAX + 1] = '\0';
        expect_bad_path(path, strlen(path), "file name under images/ is 256 bytes long, more than 255");
        assert_int_equal(proto_path_check(path, strlen(path), &err), -EBADMSG);
        assert_string_equal(err.msg, "file name under images/ is 256 bytes long, more than 255");

        _cleanup_free_ char *huge = malloc(100000);
        assert_non_null(huge);
        memset(huge, 'x', 100000);
        nm_error_clear(&err);
        assert_int_equal(proto_path_check(huge, 100000, &err), -EBADMSG);
        assert_string_equal(err.msg, "path of 100000 bytes is neither metadata.json nor images/<name>");
}

static void test_path_odd_bytes(void **state) {
        (void)state;
        BAD_PATH("images/a b", "byte 0x20 at offset 1");
        BAD_PATH("images/a\nb", "byte 0x0a");
        BAD_PATH("images/\xc3\xa9", "byte 0xc3");
        BAD_PATH("images/a\x7f", "byte 0x7f");
        BAD_PATH("METADATA.JSON", "neither");
        BAD_PATH("metadata.json ", "neither");
}

static void test_path_good(void **state) {
        nm_error err = {};
        (void)state;

        assert_int_equal(proto_path_check("metadata.json", 13, &err), PROTO_PATH_METADATA);
        assert_int_equal(proto_path_check("images/core-1.img", 17, &err), PROTO_PATH_IMAGE);
        assert_int_equal(proto_path_check("images/tmpfs-dev-63.tar.gz.img", 30, &err), PROTO_PATH_IMAGE);
        assert_int_equal(proto_path_check("images/a..b", 11, &err), PROTO_PATH_IMAGE);
        /* len bounds the check: a longer buffer is fine. */
        assert_int_equal(proto_path_check("metadata.jsonXYZ", 13, &err), PROTO_PATH_METADATA);
        assert_int_equal(err.code, 0);
}

/* ---- msgpack structure ---- */

static void test_hostile_msgpack(void **state) {
        /* A map whose announced sizes are far beyond the bytes present:
         * msgpack-c would allocate for them before noticing. */
        const uint8_t huge_array[] = {0x82, 0xa1, 't', 0x03, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xf0, 0x01};
        const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 't'};
        const uint8_t huge_str[] = {0x82, 0xa1, 't', 0x03, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
        const uint8_t huge_ext[] = {0x81, 0xa1, 't', 0xc9, 0xff, 0xff, 0xff, 0xff, 1};
        const uint8_t reserved[] = {0x81, 0xa1, 't', 0xc1};
        const struct {
                const uint8_t *p;
                size_t n;
                const char *want;
        } cases[] = {
                {huge_array, sizeof(huge_array),
                 "msgpack array of 4294967280 elements at offset 11 cannot fit"},
                {huge_map, sizeof(huge_map), "msgpack map of 4294967295 entries at offset 5 cannot fit"},
                {huge_str, sizeof(huge_str),
                 "msgpack str of 4294967295 bytes at offset 11 runs past the end"},
                {huge_ext, sizeof(huge_ext), "msgpack ext of 4294967296 bytes"},
                {reserved, sizeof(reserved), "invalid msgpack byte 0xc1 at offset 3"},
        };
        (void)state;

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                proto_msg m = {};
                nm_error err = {};
                int q = proto_decode(cases[i].p, cases[i].n, &m, &err);
                if (q != -EBADMSG || !strstr(err.msg, cases[i].want))
                        fail_msg("case %zu: expected '%s', got %d '%s'", i, cases[i].want, q, err.msg);
        }
}

static void test_nesting_and_object_limits(void **state) {
        uint8_t deep[64];
        size_t n = 0;
        raw r;
        (void)state;

        /* {"t": 3, "seq": 1, "x": [[[[...]]]]} nested deeper than allowed */
        deep[n++] = 0x83;
        deep[n++] = 0xa1, deep[n++] = 't', deep[n++] = 0x03;
        deep[n++] = 0xa3, deep[n++] = 's', deep[n++] = 'e', deep[n++] = 'q', deep[n++] = 0x01;
        deep[n++] = 0xa1, deep[n++] = 'x';
        for (unsigned i = 0; i < PROTO_DEPTH_MAX + 1; i++)
                deep[n++] = 0x91;
        deep[n++] = 0xc0;
        proto_msg m = {};
        nm_error err = {};
        assert_int_equal(proto_decode(deep, n, &m, &err), -EBADMSG);
        assert_string_equal(err.msg, "frame: msgpack nesting deeper than 16");

        raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        raw_uint(&r, "t", PROTO_MSG_PING);
        raw_uint(&r, "seq", 1);
        raw_key(&r, "x");
        msgpack_pack_array(&r.pk, PROTO_OBJECTS_MAX);
        for (unsigned i = 0; i < PROTO_OBJECTS_MAX; i++)
                msgpack_pack_nil(&r.pk);
        expect_decode_error(&r, -EBADMSG, "frame: more than 4096 msgpack objects");
}

/* ---- Reader ---- */

typedef struct stream {
        proto_buf all;
        size_t offsets[N_SAMPLES + 1]; /* frame starts */
        size_t n;
} stream;

static void stream_build(stream *s) {
        proto_msg m[N_SAMPLES];
        *s = (stream){};
        s->n = proto_samples(m, N_SAMPLES);
        for (size_t i = 0; i < s->n; i++) {
                s->offsets[i] = s->all.len;
                assert_int_equal(proto_encode_append(&s->all, &m[i], NULL), 0);
        }
        s->offsets[s->n] = s->all.len;
}

/* Takes every frame available and checks it is the next expected one. */
static void drain_frames(proto_reader *r, const stream *s, size_t *next) {
        const uint8_t *p;
        size_t len;
        nm_error err = {};
        int q;

        while ((q = proto_reader_next(r, &p, &len, &err)) == 1) {
                _cleanup_proto_msg_ proto_msg d = {};
                assert_true(*next < s->n);
                assert_int_equal(len + PROTO_FRAME_HDR, s->offsets[*next + 1] - s->offsets[*next]);
                assert_memory_equal(p, s->all.data + s->offsets[*next] + PROTO_FRAME_HDR, len);
                if (proto_decode(p, len, &d, &err) < 0)
                        fail_msg("frame %zu: %s", *next, err.msg);
                (*next)++;
        }
        assert_int_equal(q, 0);
}

static void test_reader_one_byte_at_a_time(void **state) {
        _cleanup_(proto_reader_freep) proto_reader *r = NULL;
        size_t next = 0;
        stream s;
        (void)state;

        stream_build(&s);
        assert_int_equal(proto_reader_new(0, &r), 0);
        for (size_t i = 0; i < s.all.len; i++) {
                assert_int_equal(proto_reader_feed(r, s.all.data + i, 1, NULL), 0);
                drain_frames(r, &s, &next);
        }
        assert_int_equal(next, s.n);
        assert_int_equal(proto_reader_buffered(r), 0);
        assert_int_equal(proto_reader_finish(r, NULL), 0);
        proto_buf_done(&s.all);
}

static void test_reader_all_at_once_and_direct(void **state) {
        _cleanup_(proto_reader_freep) proto_reader *r = NULL, *r2 = NULL;
        size_t next = 0, pos = 0, step = 1;
        stream s;
        (void)state;

        stream_build(&s);
        assert_int_equal(proto_reader_new(0, &r), 0);
        assert_int_equal(proto_reader_feed(r, s.all.data, s.all.len, NULL), 0);
        drain_frames(r, &s, &next);
        assert_int_equal(next, s.n);

        /* Reading straight into the reader, with chunk sizes that vary. */
        next = 0;
        assert_int_equal(proto_reader_new(0, &r2), 0);
        while (pos < s.all.len) {
                uint8_t *p;
                size_t avail, k;
                assert_int_equal(proto_reader_get_buffer(r2, &p, &avail, NULL), 0);
                assert_true(avail >= 1);
                k = step < avail ? step : avail;
                if (k > s.all.len - pos)
                        k = s.all.len - pos;
                memcpy(p, s.all.data + pos, k);
                pos += k;
                assert_int_equal(proto_reader_advance(r2, k, NULL), 0);
                drain_frames(r2, &s, &next);
                step = step * 3 % 97 + 1;
        }
        assert_int_equal(next, s.n);
        proto_buf_done(&s.all);
}

static void test_reader_big_frame_and_limits(void **state) {
        static uint8_t payload[PROTO_DATA_MAX];
        _cleanup_(proto_reader_freep) proto_reader *r = NULL;
        proto_msg m = {.type = PROTO_MSG_DATA, .data = {.mig = "m", .data = {payload, sizeof(payload)}}};
        proto_buf b = {};
        const uint8_t *p;
        size_t len, pos = 0;
        nm_error err = {};
        (void)state;

        assert_int_equal(proto_encode_append(&b, &m, NULL), 0);
        assert_int_equal(proto_encode_append(&b, &m, NULL), 0);
        assert_int_equal(proto_reader_new(0, &r), 0);
        /* The reader offers room for a whole DATA frame once its header is in. */
        assert_int_equal(proto_reader_feed(r, b.data, PROTO_FRAME_HDR, NULL), 0);
        pos = PROTO_FRAME_HDR;
        uint8_t *w;
        size_t avail;
        assert_int_equal(proto_reader_get_buffer(r, &w, &avail, NULL), 0);
        assert_true(avail >= b.len / 2 - PROTO_FRAME_HDR);
        memcpy(w, b.data + pos, avail < b.len - pos ? avail : b.len - pos);
        assert_int_equal(proto_reader_advance(r, avail < b.len - pos ? avail : b.len - pos, NULL), 0);
        assert_int_equal(proto_reader_next(r, &p, &len, NULL), 1);
        assert_int_equal(len, b.len / 2 - PROTO_FRAME_HDR);
        proto_buf_done(&b);

        /* A reader with a smaller cap refuses frames above it. */
        _cleanup_(proto_reader_freep) proto_reader *small = NULL;
        proto_msg ping = {.type = PROTO_MSG_PING, .ping = {.seq = 1}};
        assert_int_equal(proto_reader_new(8, &small), 0);
        assert_int_equal(proto_encode_append(&b, &ping, NULL), 0);
        assert_int_equal(proto_encode_append(&b, &m, NULL), 0);
        assert_int_equal(proto_reader_feed(small, b.data, b.len, &err), -E2BIG);
        assert_non_null(strstr(err.msg, "exceeds limit 8"));
        proto_buf_done(&b);
        assert_int_equal(proto_reader_new(PROTO_FRAME_MAX + 1, &small), -EINVAL);
}

/* Large frames read straight into the reader, with every byte available at
 * once (a fast peer): a read never runs past a large frame's end, so once
 * the frame is taken nothing is left to move to the front. */
static void test_reader_large_frames_end_reads(void **state) {
        static uint8_t payload[256 * 1024];
        _cleanup_(proto_reader_freep) proto_reader *r = NULL;
        proto_msg m = {.type = PROTO_MSG_DATA, .data = {.mig = "m", .data = {payload, sizeof(payload)}}};
        proto_buf b = {};
        const uint8_t *p;
        size_t len, pos = 0, frames = 0;
        (void)state;

        for (int i = 0; i < 5; i++)
                assert_int_equal(proto_encode_append(&b, &m, NULL), 0);
        assert_int_equal(proto_reader_new(0, &r), 0);
        while (pos < b.len) {
                uint8_t *w;
                size_t avail, k;
                assert_int_equal(proto_reader_get_buffer(r, &w, &avail, NULL), 0);
                k = avail < b.len - pos ? avail : b.len - pos;
                memcpy(w, b.data + pos, k);
                pos += k;
                assert_int_equal(proto_reader_advance(r, k, NULL), 0);
                while (proto_reader_next(r, &p, &len, NULL) == 1) {
                        frames++;
                        assert_int_equal(len, b.len / 5 - PROTO_FRAME_HDR);
                        assert_int_equal(proto_reader_buffered(r), 0);
                }
        }
        assert_int_equal(frames, 5);
        proto_buf_done(&b);
}

static void test_reader_full_until_frames_taken(void **state) {
        _cleanup_(proto_reader_freep) proto_reader *r = NULL;
        proto_msg ping = {.type = PROTO_MSG_PING, .ping = {.seq = 1}};
        proto_buf b = {};
        const uint8_t *p;
        uint8_t *w;
        size_t len, avail, frames = 0;
        nm_error err = {};
        (void)state;

        /* More complete frames than one frame of the cap plus slack. */
        while (b.len < 100000)
                assert_int_equal(proto_encode_append(&b, &ping, NULL), 0);
        assert_int_equal(proto_reader_new(16, &r), 0);
        assert_int_equal(proto_reader_feed(r, b.data, b.len, NULL), 0);
        assert_int_equal(proto_reader_get_buffer(r, &w, &avail, &err), -ENOBUFS);
        assert_non_null(strstr(err.msg, "proto_reader_next"));
        while (proto_reader_next(r, &p, &len, NULL) == 1)
                frames++;
        assert_int_equal(frames * len + frames * PROTO_FRAME_HDR, b.len);
        assert_int_equal(proto_reader_get_buffer(r, &w, &avail, NULL), 0);
        /* Capped at one frame of 16 bytes plus the slack. */
        assert_true(avail >= 1 && avail <= PROTO_FRAME_HDR + 16 + 64 * 1024);
        proto_buf_done(&b);
}

/* Regression (fuzz-recv under UBSan): an empty feed, with no buffer yet
 * and data NULL as the API allows, did pointer arithmetic on NULL. */
static void test_reader_empty_feed(void **state) {
        _cleanup_(proto_reader_freep) proto_reader *r = NULL;
        const uint8_t *p;
        size_t len;
        (void)state;

        assert_int_equal(proto_reader_new(0, &r), 0);
        assert_int_equal(proto_reader_feed(r, NULL, 0, NULL), 0);
        assert_int_equal(proto_reader_next(r, &p, &len, NULL), 0);
        assert_int_equal(proto_reader_finish(r, NULL), 0);
        assert_int_equal(proto_reader_feed(r, "\0\0", 2, NULL), 0);
        assert_int_equal(proto_reader_feed(r, NULL, 0, NULL), 0);
        assert_int_equal(proto_reader_finish(r, NULL), -EBADMSG);
}

static void test_reader_truncated_stream(void **state) {
        _cleanup_(proto_reader_freep) proto_reader *r = NULL;
        proto_msg ping = {.type = PROTO_MSG_PING, .ping = {.seq = 1}};
        proto_buf b = {};
        const uint8_t *p;
        size_t len;
        nm_error err = {};
        (void)state;

        assert_int_equal(proto_encode_append(&b, &ping, NULL), 0);
        assert_int_equal(proto_reader_new(0, &r), 0);
        assert_int_equal(proto_reader_feed(r, b.data, 2, NULL), 0);
        assert_int_equal(proto_reader_finish(r, &err), -EBADMSG);
        assert_string_equal(err.msg, "stream ended inside a frame header (2 of 4 bytes)");
        assert_int_equal(proto_reader_feed(r, b.data + 2, b.len - 3, NULL), 0);
        assert_int_equal(proto_reader_next(r, &p, &len, NULL), 0);
        nm_error_clear(&err);
        assert_int_equal(proto_reader_finish(r, &err), -EBADMSG);
        assert_non_null(strstr(err.msg, "stream ended inside a frame ("));
        assert_int_equal(proto_reader_feed(r, b.data + b.len - 1, 1, NULL), 0);
        assert_int_equal(proto_reader_next(r, &p, &len, NULL), 1);
        assert_int_equal(proto_reader_finish(r, NULL), 0);
        proto_buf_done(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip_every_type),
                cmocka_unit_test(test_roundtrip_optional_absent),
                cmocka_unit_test(test_type_names),
                cmocka_unit_test(test_msg_mig_and_helpers),
                cmocka_unit_test(test_data_header_matches_encoder),
                cmocka_unit_test(test_data_header_rejects),
                cmocka_unit_test(test_truncated_frame),
                cmocka_unit_test(test_oversize_length_rejected_from_header),
                cmocka_unit_test(test_trailing_garbage),
                cmocka_unit_test(test_non_map_top_level),
                cmocka_unit_test(test_empty_payload),
                cmocka_unit_test(test_unknown_message_type),
                cmocka_unit_test(test_type_key_problems),
                cmocka_unit_test(test_missing_field),
                cmocka_unit_test(test_wrong_field_type),
                cmocka_unit_test(test_duplicate_field),
                cmocka_unit_test(test_unknown_keys_ignored),
                cmocka_unit_test(test_integer_ranges),
                cmocka_unit_test(test_string_checks),
                cmocka_unit_test(test_hmac_not_hex),
                cmocka_unit_test(test_sha256_wrong_length),
                cmocka_unit_test(test_lanes_fields),
                cmocka_unit_test(test_data_size_limits),
                cmocka_unit_test(test_encode_too_big),
                cmocka_unit_test(test_migrate_and_opts),
                cmocka_unit_test(test_version),
                cmocka_unit_test(test_path_dotdot),
                cmocka_unit_test(test_path_absolute),
                cmocka_unit_test(test_path_subdirectory),
                cmocka_unit_test(test_path_nul),
                cmocka_unit_test(test_path_empty_name),
                cmocka_unit_test(test_path_dot_names),
                cmocka_unit_test(test_path_checkpoint_hmac),
                cmocka_unit_test(test_path_overlong),
                cmocka_unit_test(test_path_odd_bytes),
                cmocka_unit_test(test_path_good),
                cmocka_unit_test(test_hostile_msgpack),
                cmocka_unit_test(test_nesting_and_object_limits),
                cmocka_unit_test(test_reader_one_byte_at_a_time),
                cmocka_unit_test(test_reader_all_at_once_and_direct),
                cmocka_unit_test(test_reader_big_frame_and_limits),
                cmocka_unit_test(test_reader_large_frames_end_reads),
                cmocka_unit_test(test_reader_full_until_frames_taken),
                cmocka_unit_test(test_reader_truncated_stream),
                cmocka_unit_test(test_reader_empty_feed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
