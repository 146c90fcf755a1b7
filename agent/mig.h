/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One migration on this node, as source or destination. Its journal record
 * (rec) is the durable truth: every phase change is written and fsynced
 * before anything that depends on it happens. */

#include "agent.h"
#include "peer.h"
#include "ps-relay.h"

struct mig {
        agent *a;
        char id[PROTO_ID_MAX + 1];
        mig_role role;
        mig_phase phase;
        json_t *rec;  /* the journal record */
        nm_error err; /* the first failure: what the operator is told */
        char *container_id, *container_name;
        char *peer; /* the other node's name */
        LIST_FIELDS(mig, migs);
        criu_job job;
        uv_timer_t timer; /* retries, keep-alives, deadlines */
        bool timer_open;
        bool finished; /* record archived; freed once handles are closed */
        unsigned retries;
        /* Progress and timing, microseconds on CLOCK_MONOTONIC. */
        uint64_t t_start, t_frozen, t_resumed, t_dumped, t_streamed, t_restored;
        uint64_t bytes_total, bytes_done, files_total, files_done, rate;
        ctl_conn *cli; /* the CLI that asked (source), NULL once it left */
        drain *drain;  /* the drain this move belongs to, if any */
        bool result_sent;

        /* source */
        ckpt_container *ctr;
        bool lazy;
        ckpt_tcp_mode tcp; /* established TCP connections: moved or closed */
        char *images_dir;
        ckpt_dump_req dump;
        ckpt_restore_req rollback;
        struct peer_link *link;
        xfer_send *send;
        ckpt_hmac *hmac;
        xfer_tree_hooks hooks;
        pid_t new_pid;  /* on the destination */
        nm_error doubt; /* committed: why the target has not confirmed yet */

        /* post-copy (--lazy): CRIU's page-server bytes relayed as PS_DATA */
        ps_relay *relay;
        int ps_fd;            /* source: the lazy dump's end, closed when CRIU returns */
        bool images_ready;    /* source: post-dump: the images are complete */
        bool lazy_served;     /* source: CRIU's lazy dump returned */
        bool running_heard;   /* source: RUNNING arrived (every page is there) */
        bool relay_dropped;   /* source: we ended the relay (link lost) */
        bool postcopy_failed; /* source: the target lost its copy: lost once CRIU returns */
        uint64_t t_commit;
        ckpt_lazy_pages *lazy_pages; /* destination: the daemon */
        bool postcopy;               /* destination: resumed, pages still arriving */
        int lazy_status;             /* destination: 0 while the daemon runs, 1 done, < 0 failed */

        /* destination */
        ctl_conn *peer_cc;
        xfer_recv *recv;
        char *staging;
        ckpt_metadata *md;
        ckpt_restore_req restore;
        pid_t restored_pid;
        uint64_t restored_ticks;
        uint64_t offered_bytes;
};

mig *mig_new(agent *a, mig_role role, const char *id);
mig *mig_find(agent *a, const char *id);

/* Journals a new phase (durable on return) and tells the watching CLI. A
 * journal failure is fatal for the handoff's promises: the agent logs it
 * and the caller must treat it as an error. */
int mig_set_phase(mig *m, mig_phase phase);

/* Sets a fact in the journal record (written with the next phase). */
void mig_rec_set(mig *m, const char *key, json_t *value);
void mig_rec_set_str(mig *m, const char *key, const char *value);
void mig_rec_set_int(mig *m, const char *key, int64_t value);
const char *mig_rec_str(const mig *m, const char *key);
int64_t mig_rec_int(const mig *m, const char *key);

/* Records the first failure (formatted) for the result and the log. */
void mig_fail_reason(mig *m, int code, const char *fmt, ...) _printf_(3, 4);

/* A progress event for the watching CLI. */
void mig_progress(mig *m, const char *message);

/* The result document (status and the CLI's final answer). */
json_t *mig_result_doc(const mig *m);

/* Sends the result to the CLI (once), archives the record and frees m once
 * its handles are closed. */
void mig_finish(mig *m);

/* Closes m's handles at agent exit, leaving its journal record active: the
 * next start continues from it. */
void mig_park(mig *m);

/* The tree HMAC hooks over ckpt's incremental HMAC (m->hmac). */
int mig_hooks_init(mig *m, nm_error *err);

/* Fault injection for the fault-matrix tests: NM_FAULT holds a comma list
 * of "crash-after=<point>" (SIGKILL self), "hang-after=<point>" (stop for
 * good), "pause-after=<point>" (see fault_point) and "fail=<step>" (make a
 * step fail: dest-restore, dump). Inert unless NM_FAULT is set. */
bool fault_fail(const char *point);

/* A named point of the handoff (after journaling a phase: the phase's
 * name; "got-restored": the source heard RESTORED, before COMMITTED). With
 * NM_FAULT "pause-after=<point>" and NM_FAULT_GATE=<file>, the agent stands
 * still there while the file exists. */
void fault_point(mig *m, const char *point);

/* source (mig-src.c) */
int mig_src_start(agent *a, ctl_conn *cli, drain *d, const proto_migrate *req, char ret_id[PROTO_ID_MAX + 1],
                  nm_error *err);
void mig_src_cli_gone(mig *m);
int mig_src_recover(agent *a, json_t *rec, mig_recovery action, nm_error *err);
/* The answer to a destination's QUERY about one of our migrations. */
proto_outcome mig_src_outcome(agent *a, const char *id);

/* destination (mig-dst.c) */
void mig_dst_on_message(ctl_conn *cc, const proto_msg *msg);
void mig_dst_conn_closed(ctl_conn *cc, int status, const nm_error *err);
int mig_dst_recover(agent *a, json_t *rec, mig_recovery action, nm_error *err);
