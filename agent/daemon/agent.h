/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The node daemon: one libuv loop that owns the control socket, every
 * migration in flight on this node (as source or destination) and the
 * journal. (ckpt/ runs one CRIU operation at a time.) */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "ckpt.h"
#include "config.h"
#include "error.h"
#include "history.h"
#include "journal.h"
#include "list.h"
#include "handoff.h"
#include "proto.h"
#include "transfer.h"

/* How the agent was started: what a reload reads again. */
typedef struct agent_invocation {
        const char *config;
        bool config_given;
        int argc;
        char **argv;
} agent_invocation;

typedef struct agent agent;
typedef struct ctl_conn ctl_conn;
typedef struct mig mig;
typedef struct drain drain;
typedef struct keeper keeper;
typedef struct precheck precheck;
typedef struct offer_check offer_check;
typedef struct resolver resolver;
typedef struct metrics metrics;

/* A connection on the control socket: the local CLI, or a peer agent
 * arriving through `nucleus-agent dial-stdio` over SSH. */
struct ctl_conn {
        agent *a;
        xfer_conn *conn;
        struct ucred cred;
        bool hello_done;
        proto_role role;
        uint64_t session;                  /* this connection's number, for records and the log */
        uint64_t frames;                   /* frames heard */
        bool relayed;                      /* dial-stdio said who the peer is (RELAY) */
        char key_peer[PROTO_NAME_MAX + 1]; /* the peer whose key runs the relay, or "" */
        /* The peer: the key's (key_peer) when the relay names one, else (a
         * root session) what HELLO says. */
        char peer_node[PROTO_NAME_MAX + 1];
        unsigned refusals;     /* messages refused for another's migration: logged up to a bound */
        unsigned records_made; /* RESOLVED records for ids this agent had none of (at most one) */
        unsigned features;     /* the peer's HELLO: peer_feature bits */
        char key_id[PROTO_HMAC_HEX_LEN + 1]; /* the peer's HELLO: its key's identity, "" if it sent none */
        mig *dest;                           /* the destination migration this peer session carries */
        mig *lane_of;                        /* peer: the destination migration it joined as a lane */
        uint32_t lane;                       /* with lane_of: which (1..) */
        mig *watch;                          /* CLI: the migration whose events it receives */
        bool answered;                       /* CLI: it has its RESULT */
        drain *drain;                        /* CLI: the drain it runs */
        offer_check *offer_check;            /* peer: an OFFER checked on the pool (offer-check.h) */
        resolver *resolver;                  /* CLI: the resolve it asked for (resolve.h) */
        LIST_FIELDS(ctl_conn, conns);
};

/* A CPU image (another node's `criu cpuinfo dump`) that CRIU here
 * accepted, and when (offer-check.c). */
typedef struct cpu_pass {
        uint8_t *img; /* NULL: a free slot */
        size_t len;
        uint64_t at_usec;
} cpu_pass;

#define AGENT_CPU_PASSES 8

struct agent {
        uv_loop_t *loop;
        agent_config cfg;
        journal *journal;
        history *history; /* finished migrations (journal/done/), in memory */
        ckpt_criu *criu;
        uint8_t *key;
        size_t key_len;
        char key_id[PROTO_HMAC_HEX_LEN + 1]; /* ckpt_key_identity: sent in HELLO */
        char kernel[65];
        precheck *precheck;     /* what CRIU says about this node (precheck.h) */
        metrics *metrics;       /* NULL without [agent] metrics_file (metrics.h) */
        char *checkpoints_dir;  /* <work_dir>/checkpoints: source images */
        char *staging_dir;      /* <work_dir>/staging: incoming images */
        char *criu_work_dir;    /* <work_dir>/criu: CRIU's logs, outside signed trees */
        uint64_t t_logs_pruned; /* now_usec() of the last criu_logs_prune */
        int staging_fd;
        /* CPU images CRIU here accepted lately (offer-check.h) */
        cpu_pass cpu_passes[AGENT_CPU_PASSES];
        bool cordoned;
        bool stopping;
        uid_t peer_uid; /* the migration user that dial-stdio runs as */
        uv_pipe_t listener;
        bool listener_open; /* initialized: set-up may fail before */
        uv_signal_t sig_term, sig_int, sig_hup;
        uv_timer_t watchdog; /* systemd's: pinged from the loop, so a stuck loop is noticed */
        const agent_invocation *inv;
        ctl_conn *conns;
        mig *migs;
        unsigned n_src, n_dst; /* active migrations per role */
        keeper *keepers;       /* native containers restored here, watched until they exit */
        /* A migration is over (its watchers heard): the daemon's policy
         * (prune CRIU's logs, exit when stopping). */
        void (*on_mig_end)(agent *a, const json_t *result);
};

/* daemon.c */
int agent_run(agent_config *cfg, const agent_invocation *inv);

/* reload.c: takes what can change live from fresh (which it empties), keeps
 * the rest, saying why; returns how many settings it could not take. */
unsigned agent_reload_apply(agent *a, agent_config *fresh);

/* ctl.c: the control socket */
int ctl_listen(agent *a, nm_error *err);
void ctl_close_all(agent *a);

/* ctl-conn.c: answering on a control connection */
int ctl_send(ctl_conn *cc, const proto_msg *m);
void ctl_send_result(ctl_conn *cc, const char *mig_id, json_t *doc);
void ctl_send_error(ctl_conn *cc, const char *mig_id, int code, const char *reason);

/* dispatch.c: a peer session's messages, each to the role that owns it */
void peer_dispatch(ctl_conn *cc, const proto_msg *msg);
void peer_session_closed(ctl_conn *cc, int status, const nm_error *err);

/* status.c */
json_t *status_doc(agent *a, const char *ref, int64_t since_s);
json_t *list_doc(agent *a);
void status_node_info(agent *a, proto_node_info *ret);
uint64_t status_staging_free(agent *a);
int cordon_set(agent *a, bool on, nm_error *err);
int cordon_load(agent *a);

/* recover.c: what the journal says must be finished */
int recover_all(agent *a, nm_error *err);

/* criu-logs.c: removes CRIU's logs of migrations that ended more than 14
 * days ago: at start, then when a migration ends, at most once an hour. */
#define CRIU_LOGS_PRUNE_EVERY_US (3600ull * 1000000)
void criu_logs_prune(agent *a);
/* At start, before recovery: no restore runs, so a root tmpfs still mounted
 * in a CRIU work directory is a dead restore's (criu-logs.c). */
void criu_restore_roots_release(agent *a);

/* util.c: a short random id (hex) for migrations; CLOCK_MONOTONIC in us;
 * the wall clock in ms (for records). */
void agent_new_id(char out[33]);
uint64_t now_usec(void);
int64_t unix_ms(void);
