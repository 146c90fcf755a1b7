/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* An outgoing session to a peer agent: SSH to the peer, an exec channel
 * running `nucleus-agent dial-stdio` there, HELLO both ways, then messages.
 * Keep-alive PINGs flow while it is open, and a link that hears nothing for
 * the idle timeout is closed, so that a cut cable is noticed. */

#include "agent.h"

typedef struct peer_link peer_link;

/* What this build offers in HELLO beyond the protocol version's baseline
 * (proto/PROTOCOL.md "Features"), as a bit set. */
typedef enum peer_feature {
        PEER_FEATURE_ZSTD = 1u << 0,      /* "zstd": ZDATA */
        PEER_FEATURE_FILE_MAC = 1u << 1,  /* "file-mac": FILE_MAC ends files */
        PEER_FEATURE_LAZY = 1u << 2,      /* "lazy": post-copy, PS_DATA */
        PEER_FEATURE_BINDING = 1u << 3,   /* "binding": IMAGES_DONE binds the images to the migration */
        PEER_FEATURE_PS_STREAM = 1u << 4, /* "ps-stream": pages as PS_PAGES while CRIU dumps */
        PEER_FEATURE_PS_ZTAG = 1u << 5,   /* "ps-ztag": a compressed PS_PAGES is tagged as it travels */
        PEER_FEATURE_PS_POLY = 1u << 6,   /* "ps-poly1305": PS_PAGES tags are Poly1305's */
        PEER_FEATURE_LANES = 1u << 7,     /* "lanes": the pages dealt over several sessions */
} peer_feature;

/* The features a HELLO lists that this build knows. */
unsigned peer_features_of(const proto_hello *h);
/* Our HELLO's feature list. */
proto_strv peer_features_offered(void);

typedef struct peer_link_ops {
        /* HELLO exchanged; messages can be sent. */
        void (*ready)(peer_link *l, void *ud);
        /* A message other than HELLO, PING and PONG. */
        void (*message)(peer_link *l, const proto_msg *msg, void *ud);
        /* Runs exactly once when the link is gone (also for a failed connect);
         * the link is freed after it returns. */
        void (*closed)(peer_link *l, int status, const nm_error *err, void *ud);
} peer_link_ops;

int peer_link_open(agent *a, const char *peer_name, const char *log_ctx, const peer_link_ops *ops, void *ud,
                   nm_error *err, peer_link **ret);
/* The same, its SSH work where thread says rather than where [ssh] thread
 * does (a lane's is on a thread of its own: that is what it is for). */
int peer_link_open_on(agent *a, const char *peer_name, const char *log_ctx, xfer_ssh_thread thread,
                      const peer_link_ops *ops, void *ud, nm_error *err, peer_link **ret);
int peer_link_send(peer_link *l, const proto_msg *m, nm_error *err);
/* Sends a question whose answer the owner waits for: until it calls
 * peer_link_answered(), an ERROR from the peer, or no answer within the
 * idle timeout (PONGs do not count), closes the link with that reason. */
int peer_link_ask(peer_link *l, const proto_msg *q, nm_error *err);
void peer_link_answered(peer_link *l);
xfer_conn *peer_link_conn(peer_link *l);
/* The peer's features (peer_feature bits) once the link is ready. */
unsigned peer_link_features(const peer_link *l);
/* The identity of the peer's HMAC key (HELLO key_id) once the link is
 * ready; "" when the peer sent none. */
const char *peer_link_key_id(const peer_link *l);

/* Ends the link; closed still runs (with status). */
void peer_link_close(peer_link *l, int status, const nm_error *err);

/* Ends the link without any further callback. */
void peer_link_detach(peer_link *l);
