/* SPDX-License-Identifier: Apache-2.0 */
#include <stdint.h>
#include <string.h>

#include "test-proto-samples.h"

#define MIG "mig-0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV" /* 64 chars */

static const char *const features[] = {"zstd", "stripe", "lazy"};
static const char *const targets[] = {"host2", "198.18.0.2", "node-3.example"};
static const uint8_t metadata[] = "{\"container_id\":\"0123456789abcdef0123456789abcdef\",\"version\":1}";
static const uint8_t chunk[] = {0x00, 0x01, 0xc1, 0xff, 0x80, 0x90, 0xa0, 'x'};
static const proto_opt opts[] = {
        {.key = "lazy", .kind = PROTO_OPT_BOOL, .b = true},
        {.key = "parallel", .kind = PROTO_OPT_UINT, .u = 4},
        {.key = "compress", .kind = PROTO_OPT_STR, .s = "zstd"},
};

static const uint8_t cpuinfo[] = {0x54, 0x50, 0x46, 0x55, 0x08, 0x01, 0x10, 0x06};

size_t proto_samples(proto_msg *out, size_t max) {
        const proto_msg all[] = {
                {.type = PROTO_MSG_HELLO,
                 .hello = {.version = 1,
                           .min_version = 1,
                           .node = "host1",
                           .role = PROTO_ROLE_PEER,
                           .features = {.v = features, .n = 3},
                           .key_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"}},
                {.type = PROTO_MSG_ERROR,
                 .error = {.mig = MIG, .code = -ENOSPC, .reason = "disk full\non /var"}},
                {.type = PROTO_MSG_PING, .ping = {.seq = 0}},
                {.type = PROTO_MSG_PONG, .pong = {.seq = INT64_MAX}},
                {.type = PROTO_MSG_RELAY, .relay = {.peer = "host3"}},
                {.type = PROTO_MSG_NODE_INFO_REQ},
                {.type = PROTO_MSG_NODE_INFO,
                 .node_info = {.node = "host2",
                               .cordoned = true,
                               .staging_free = UINT64_C(1) << 40,
                               .running = UINT32_MAX,
                               .migrations = 2,
                               .criu_version = "4.2.1",
                               .kernel = "6.1.0-13-amd64"}},
                {.type = PROTO_MSG_OFFER,
                 .offer = {.mig = MIG,
                           .container_id = "0123456789abcdef0123456789abcdef",
                           .container_name = "web 1",
                           .metadata = {metadata, sizeof(metadata) - 1},
                           .image_bytes = 123456789,
                           .criu_version = "4.2.1",
                           .kernel = "6.1.0",
                           .lazy = true,
                           .cpuinfo = {cpuinfo, sizeof(cpuinfo)},
                           .ps_stream = true,
                           .has_ps_stream = true}},
                {.type = PROTO_MSG_ACCEPT, .accept = {.mig = "m"}},
                {.type = PROTO_MSG_REJECT,
                 .reject = {.mig = MIG, .code = PROTO_REJECT_NO_SPACE, .reason = "need 2 GiB, have 1 GiB"}},
                {.type = PROTO_MSG_FILE,
                 .file = {.mig = MIG, .path = "images/pages-1.img", .size = INT64_MAX, .mode = 0600}},
                {.type = PROTO_MSG_DATA, .data = {.mig = MIG, .data = {chunk, sizeof(chunk)}}},
                {.type = PROTO_MSG_FILE_END,
                 .file_end = {.mig = MIG,
                              .sha256 = {0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
                                         0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
                                         0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}}},
                {.type = PROTO_MSG_IMAGES_DONE,
                 .images_done =
                         {.mig = MIG,
                          .hmac = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                          .files = 42,
                          .bytes = 1u << 30,
                          .binding = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"}},
                {.type = PROTO_MSG_VERIFIED, .verified = {.mig = MIG}},
                {.type = PROTO_MSG_RESTORE, .restore = {.mig = MIG}},
                {.type = PROTO_MSG_RESTORED, .restored = {.mig = MIG, .pid = 4242}},
                {.type = PROTO_MSG_COMMIT, .commit = {.mig = MIG}},
                {.type = PROTO_MSG_RUNNING, .running = {.mig = MIG, .pid = INT32_MAX}},
                {.type = PROTO_MSG_ABORT, .abort = {.mig = MIG, .reason = "source rolled back"}},
                {.type = PROTO_MSG_QUERY,
                 .query = {.mig = MIG, .container_id = "0123456789abcdef0123456789abcdef"}},
                {.type = PROTO_MSG_OUTCOME,
                 .outcome = {.mig = MIG,
                             .outcome = PROTO_OUTCOME_UNKNOWN,
                             .phase = "rolled-back",
                             .has_running = true,
                             .running = false,
                             .has_held_pid = true,
                             .held_pid = 4243,
                             .has_held_start = true,
                             .held_start = 987654321}},
                {.type = PROTO_MSG_MIGRATE,
                 .migrate = {.container = "web", .target = "host2", .opts = {.v = opts, .n = 3}}},
                {.type = PROTO_MSG_DRAIN, .drain = {.targets = {.v = targets, .n = 3}, .parallel = 2}},
                {.type = PROTO_MSG_CORDON, .cordon = {.on = true}},
                {.type = PROTO_MSG_STATUS, .status = {.ref = "web", .has_since = true, .since = 1700000000}},
                {.type = PROTO_MSG_LIST},
                {.type = PROTO_MSG_EVENT,
                 .event = {.mig = MIG,
                           .phase = "transfer",
                           .bytes_done = 1000,
                           .bytes_total = 5000,
                           .files_done = 3,
                           .files_total = 9,
                           .rate = 100000000,
                           .eta_ms = 40,
                           .message = "streaming images/pages-1.img"}},
                {.type = PROTO_MSG_RESULT, .result = {.mig = MIG, .doc = "{\"ok\":true,\"pid\":4242}"}},
                {.type = PROTO_MSG_ZDATA,
                 .zdata = {.mig = MIG, .size = PROTO_DATA_MAX, .data = {chunk, sizeof(chunk)}}},
                {.type = PROTO_MSG_FILE_MAC,
                 .file_mac = {.mig = MIG,
                              .mac = {0x5b, 0x00, 0xff, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
                                      0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
                                      0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x01}}},
                {.type = PROTO_MSG_PS_DATA, .ps_data = {.mig = MIG, .data = {chunk, sizeof(chunk)}}},
                {.type = PROTO_MSG_PS_PAGES,
                 .ps_pages = {.mig = MIG,
                              .data = {chunk, sizeof(chunk)},
                              .tag = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
                                      0xcc, 0xdd, 0xee, 0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                      0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10},
                              .size = PROTO_DATA_MAX,
                              .has_size = true}},
                {.type = PROTO_MSG_PS_END,
                 .ps_end = {.mig = MIG,
                            .tag = {0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87, 0x78, 0x69, 0x5a,
                                    0x4b, 0x3c, 0x2d, 0x1e, 0x0f, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa,
                                    0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00},
                            .kept = true}},
                {.type = PROTO_MSG_RESOLVED,
                 .resolved = {.mig = MIG,
                              .outcome = PROTO_OUTCOME_ABORTED,
                              .reason = "decided on host2 by the operator (forced)"}},
                {.type = PROTO_MSG_RESOLVE,
                 .resolve = {.mig = MIG, .decision = PROTO_DECISION_COMMIT, .force = true}},
        };
        size_t n = sizeof(all) / sizeof(all[0]);

        if (n > max)
                n = max;
        memcpy(out, all, n * sizeof(all[0]));
        return n;
}
