/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for everything a peer's bytes reach: the streaming
 * frame reader, the frame decoder and the path check. A decoded message
 * must re-encode, and the re-encoding must decode to the same bytes
 * again: the encoder never refuses what the decoder accepted. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die_if(bool cond, const char *what, const nm_error *err) {
        if (!cond)
                return;
        fprintf(stderr, "fuzz-proto: %s: %s\n", what, err ? err->msg : "");
        abort();
}

/* Decodes one payload; checks the re-encoding round trip when it is valid. */
static void check_payload(const uint8_t *p, size_t n) {
        _cleanup_proto_msg_ proto_msg m = {}, m2 = {};
        _cleanup_free_ uint8_t *enc = NULL, *enc2 = NULL;
        size_t len, len2;
        nm_error err = {};
        int r;

        r = proto_decode(p, n, &m, &err);
        if (r < 0) {
                die_if(r != -EBADMSG && r != -EPROTO && r != -E2BIG, "unexpected decode error code", &err);
                die_if(err.msg[0] == '\0', "decode error without a message", NULL);
                die_if(m.type != 0, "message written on failure", NULL);
                return;
        }
        die_if(!proto_msg_type_to_string(m.type), "decoded an unknown type", NULL);
        die_if(proto_encode(&m, &enc, &len, &err) < 0, "re-encoding a decoded message failed", &err);
        die_if(len - PROTO_FRAME_HDR > n, "canonical encoding is larger than the input", NULL);
        die_if(proto_decode_frame(enc, len, &m2, &err) < 0, "decoding a re-encoded message failed", &err);
        die_if(proto_encode(&m2, &enc2, &len2, &err) < 0, "second re-encoding failed", &err);
        die_if(len != len2 || memcmp(enc, enc2, len) != 0, "encoding is not stable", NULL);
        if (m.type == PROTO_MSG_FILE)
                die_if(proto_path_check(m.file.path, strlen(m.file.path), NULL) < 0,
                       "FILE path passed decode only", NULL);
        if (m.type == PROTO_MSG_DATA) {
                uint8_t hdr[PROTO_DATA_HDR_MAX];
                int h = proto_data_header(hdr, m.data.mig, m.data.data.len, &err);
                die_if(h < 0, "DATA header refused", &err);
                die_if(memcmp(hdr, enc, (size_t)h) != 0, "DATA header differs from the encoder", NULL);
        }
}

/* Feeds the input in varying chunk sizes, alternating copy and direct
 * reads, and returns how many frames came out (-1 on a stream error). */
static int run_reader(const uint8_t *data, size_t size, size_t chunk_seed, bool check) {
        _cleanup_(proto_reader_freep) proto_reader *r = NULL;
        size_t pos = 0, step = chunk_seed, frames = 0;
        const uint8_t *p;
        size_t n;
        int q;

        if (proto_reader_new(0, &r) < 0)
                abort();
        while (pos < size) {
                size_t k = step % 4099 + 1;
                if (k > size - pos)
                        k = size - pos;
                if (step & 1) {
                        q = proto_reader_feed(r, data + pos, k, NULL);
                } else {
                        uint8_t *w;
                        size_t avail;
                        q = proto_reader_get_buffer(r, &w, &avail, NULL);
                        if (q >= 0) {
                                k = k < avail ? k : avail;
                                memcpy(w, data + pos, k);
                                q = proto_reader_advance(r, k, NULL);
                        }
                }
                if (q < 0)
                        return -1;
                pos += k;
                while ((q = proto_reader_next(r, &p, &n, NULL)) == 1) {
                        die_if(n == 0 || n > PROTO_FRAME_MAX, "reader returned a bad length", NULL);
                        if (check)
                                check_payload(p, n);
                        frames++;
                }
                if (q < 0)
                        return -1;
                step = step * 7 + 3;
        }
        (void)proto_reader_finish(r, NULL);
        return (int)frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int a, b;

        /* The same stream cut differently yields the same frames. */
        a = run_reader(data, size, 1, true);
        b = run_reader(data, size, size, false);
        die_if(a != b, "frame count depends on how the stream was cut", NULL);

        /* The input as one payload, as one whole frame, and as a path. */
        check_payload(data, size);
        proto_msg m = {};
        if (proto_decode_frame(data, size, &m, NULL) >= 0)
                proto_msg_done(&m);
        (void)proto_path_check((const char *)data, size, NULL);
        return 0;
}
