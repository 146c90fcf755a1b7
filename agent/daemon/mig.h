/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One migration on this node, as source or destination. Its rules live in
 * the role's core (core/handoff-src.h, core/handoff-dst.h); this is what
 * carries them out. The role's adapter (mig-src.c, mig-dst.c) turns I/O
 * into events and performs actions; the runner (mig-run.c) feeds its core
 * one event at a time and carries out the actions in order. Its journal
 * record (rec) is the durable truth: a JOURNAL action holds the rest of its
 * list until the record is on disk. */

#include "agent.h"
#include "handoff-dst.h"
#include "handoff-lanes.h"
#include "handoff-src.h"
#include "handoff-trust.h"
#include "pace.h"
#include "peer.h"
#include "ps-link.h"
#include "ps-relay.h"

/* An event for a migration's core, with what happened in words: the
 * failure the core notes when it says NOTE_FAILURE(EVENT). */
typedef struct mig_event {
        union {
                src_event src;
                dst_event dst;
        };
        nm_error err;
} mig_event;

typedef enum mig_act_result {
        MIG_ACT_DONE,   /* carried out: on to the next action */
        MIG_ACT_WAIT,   /* under way: mig_act_done() continues the list */
        MIG_ACT_FAILED, /* it could not be: the list ends, and the failure is the next event */
} mig_act_result;

/* What a role's adapter gives the runner. */
typedef struct mig_role_ops {
        /* Steps the core with ev and loads the actions; the verdict. */
        handoff_verdict (*step)(mig *m, const mig_event *ev);
        /* Carries out action i of the loaded list; on MIG_ACT_FAILED *ret is
         * the event that says why. */
        mig_act_result (*perform)(mig *m, size_t i, mig_event *ret);
        /* An event that waited for a list, and the list ended the
         * migration: what it still asks for (an answer) is given here.
         * NULL: such events mean nothing any more. */
        void (*after_end)(mig *m, const mig_event *ev);
} mig_role_ops;

/* Where the runner is. */
typedef enum mig_run_state {
        MIG_RUN_IDLE,    /* waiting for an event */
        MIG_RUN_ACTING,  /* carrying out a list */
        MIG_RUN_WAITING, /* an action of the list is under way */
        _MIG_RUN_STATE_MAX,
        _MIG_RUN_STATE_INVALID = -EINVAL,
} mig_run_state;

typedef struct mig_deferred mig_deferred;

/* Who hears of a migration (the CLI that asked, the drain it belongs to):
 * the migration publishes, and calls none of them by name. */
typedef struct mig_watch_ops {
        /* A phase reached, bytes moved. */
        void (*progress)(void *ud, const proto_event *ev);
        /* The operator's answer before the end: committed, but the target
         * has not confirmed yet (the source goes on in the background). */
        void (*answer)(void *ud, const char *mig_id, json_t *doc);
        /* The end, with the final result; always from the loop, never from
         * inside the call that started the migration. The watch ends. doc
         * is NULL when the agent exits and leaves the migration to the
         * journal. */
        void (*finished)(void *ud, const char *mig_id, json_t *doc);
} mig_watch_ops;

typedef struct mig_watch {
        const mig_watch_ops *ops;
        void *ud;
} mig_watch;

#define MIG_WATCHES_MAX 2

/* Pages streamed while CRIU dumps: where a migration's pages are. */
typedef enum mig_pages {
        MIG_PAGES_WITH_IMAGES, /* in the image stream (the default path) */
        MIG_PAGES_STREAMING,   /* through the page link while CRIU dumps */
        MIG_PAGES_SERVED,      /* destination: its page server exited 0, the end frame not checked yet */
        MIG_PAGES_ENDED,       /* destination: the end frame checked, its page server still running */
        MIG_PAGES_IN,          /* destination: every page is in the staging (or they come with the images) */
        _MIG_PAGES_MAX,
        _MIG_PAGES_INVALID = -EINVAL,
} mig_pages;

/* Destination, with streamed pages: whether the image stream's part is
 * done (verified, and its checks passed) while the pages may still come. */
typedef enum mig_images {
        MIG_IMAGES_COMING,
        MIG_IMAGES_VERIFIED,
        _MIG_IMAGES_MAX,
        _MIG_IMAGES_INVALID = -EINVAL,
} mig_images;

/* Destination: whether the migration stopped reading its session, while
 * one of its consumers (the staging writes, the page link, the post-copy
 * relay) is behind. */
typedef enum mig_session_read {
        MIG_SESSION_READING,
        MIG_SESSION_HELD,
        _MIG_SESSION_READ_MAX,
        _MIG_SESSION_READ_INVALID = -EINVAL,
} mig_session_read;

/* Source: one further session to the target that would carry its turn of
 * the pages (feature "lanes"). */
typedef enum src_lane_state {
        SRC_LANE_UNUSED,
        SRC_LANE_DIALING, /* SSH and HELLO under way */
        SRC_LANE_JOINING, /* LANE_JOIN sent as lane `index` */
        SRC_LANE_JOINED,  /* LANE_JOINED heard */
        SRC_LANE_GONE,    /* refused, failed or ended */
        _SRC_LANE_STATE_MAX,
        _SRC_LANE_STATE_INVALID = -EINVAL,
} src_lane_state;

typedef struct src_lane {
        mig *m;
        struct peer_link *link;
        src_lane_state state;
        uint32_t index; /* JOINING, JOINED: the lane it joins as */
} src_lane;

struct mig {
        agent *a;
        char id[PROTO_ID_MAX + 1];
        mig_role role;
        src_state src; /* the core's state, by role */
        dst_state dst;
        json_t *rec;  /* the journal record */
        nm_error err; /* the first failure: what the operator is told */
        char *container_id, *container_name;
        char *peer; /* the other node's name */
        LIST_FIELDS(mig, migs);
        uv_timer_t timer; /* retries, keep-alives, deadlines */
        bool finished;    /* over (or parked): its record being archived, then it goes */
        unsigned refs;    /* the timer, and each piece of blocking work under way */
        /* Progress and timing, microseconds on CLOCK_MONOTONIC. */
        uint64_t t_start, t_frozen, t_resumed, t_dumped, t_streamed, t_restored;
        uint64_t bytes_total, bytes_done, files_total, files_done, rate;
        mig_watch watches[MIG_WATCHES_MAX];
        json_t *result; /* finished: the final result, until it is delivered */

        /* the runner */
        const mig_role_ops *ops;
        mig_run_state run;
        src_actions src_acts; /* the list being carried out, by role */
        dst_actions dst_acts;
        size_t n_acts, next_act;
        mig_event cur;          /* the event the list answers */
        mig_deferred *deferred; /* events that came while a list was carried out */
        char journaled[32];     /* the phase last written, for the log */

        /* source */
        ckpt_container *ctr;
        ckpt_tcp_mode tcp;         /* established TCP connections: moved or closed */
        ckpt_native_policy policy; /* what the move may lose (--accept-landlock-loss) */
        char *images_dir;
        ckpt_dump_req dump;
        ckpt_restore_req rollback;
        struct peer_link *link;
        xfer_send *send;
        bool streaming;      /* send under way: it has a share of [limits] bandwidth */
        uint64_t rate_limit; /* that share, bytes/s (0: none) */
        pid_t new_pid;       /* on the destination */
        /* lanes (feature "lanes"): sessions beside the link that carry
         * their turn of the pages, each encrypting on a thread of its own */
        uint32_t lanes_wanted; /* --lanes, else [ssh] lanes */
        src_lane lanes_out[HANDOFF_LANES_MAX - 1];
        uint8_t lane_secret[HANDOFF_LANE_SECRET_LEN]; /* ACCEPT's */
        uint32_t lanes_named;                         /* indexes handed out so far */
        uint32_t lanes_dealt;   /* LANES sent: over lanes 0..lanes_dealt-1 (0: none yet) */
        uint64_t pages_dealt;   /* frames of the pages dealt so far */
        uv_timer_t lane_timer;  /* the lanes' deadline before the dump */
        nm_error doubt;         /* committed: why the target has not confirmed yet */
        handoff_outcome answer; /* QUERY: what the core said */

        /* pages streamed while CRIU dumps (feature "ps-stream"): the page
         * server's session as PS_PAGES through a link of tagged frames */
        mig_pages pages;
        ps_link *page_link;
        ckpt_page_server *page_server; /* destination: writes the pages into the staging */
        uint64_t page_wire;            /* source: page bytes as sent (compressed or not) */
        /* source: paces the page stream (page_wire) to [limits] bandwidth,
         * as xfer_send paces the image stream; destination: bounds the wait
         * for the stream's end once the images are verified */
        uv_timer_t page_timer;
        xfer_pace page_avg;
        uint64_t page_taken; /* source: the session's bytes written, at the last look (src_pages_overdue) */
        mig_images images;   /* destination: the image stream's part */

        /* post-copy (--lazy): CRIU's page-server bytes relayed as PS_DATA */
        ps_relay *relay;
        int ps_fd; /* source: the lazy dump's end, closed when CRIU returns */
        uint64_t t_commit;
        ckpt_lazy_pages *lazy_pages; /* destination: the daemon */

        /* destination */
        ctl_conn *peer_cc; /* the session the migration came on */
        mig_session_read session_read;
        uint32_t lanes_asked;                 /* the OFFER's lanes (0: none) */
        handoff_lanes lanes;                  /* the stream's lanes: who joins, whose turn */
        ctl_conn *lane_cc[HANDOFF_LANES_MAX]; /* lane i's session (i >= 1; lane 0 is peer_cc) */
        ctl_conn *reply_cc;                   /* the session whose COMMIT we answer, if another */
        xfer_recv *recv;
        char *staging;
        ckpt_metadata *md;
        ckpt_restore_req restore;
        pid_t restored_pid;
        uint64_t restored_ticks;
        uint64_t offered_bytes;
        ckpt_native *native;   /* a native container (nm_native of the offer), else NULL */
        char *cgroup_root;     /* native: where its cgroup nucleus-<id> is made, or NULL */
        uint64_t staging_held; /* bytes of files announced into the staging (the quota) */
};

mig *mig_new(agent *a, mig_role role, const char *id, const mig_role_ops *ops);
mig *mig_find(agent *a, const char *id);
/* A migration that is over and whose record is on its way to done/: what
 * journal_load_done cannot show yet. */
mig *mig_find_archiving(agent *a, const char *id);

/* The phase in memory, by role, as the journal names it. */
const char *mig_phase_name(const mig *m);
/* Whether the agent may exit leaving m to the journal (see the cores). */
bool mig_parkable(const mig *m);

/* Feeds one event to m's core now, or, while a list is being carried out,
 * once it is: one step at a time. */
void mig_feed(mig *m, const mig_event *ev);
/* The same, with what happened in words (err may be NULL) or worded here
 * (code < 0, else -EIO). */
void mig_feed_err(mig *m, mig_event *ev, const nm_error *err);
void mig_feed_errorf(mig *m, mig_event *ev, int code, const char *fmt, ...) _printf_(4, 5);
/* An action that failed: *ret is ev with err; the list ends there. */
mig_act_result mig_act_failed(mig_event *ret, const mig_event *ev, const nm_error *err);
/* An action that said MIG_ACT_WAIT is over: failure is NULL, or the event
 * that says why it failed (the rest of its list is dropped). */
void mig_act_done(mig *m, const mig_event *failure);

/* Blocking work of an action, on the thread pool (MIG_ACT_WAIT: the list
 * goes on when it has ended). mig_journal writes the record with this
 * phase (write, fsync, rename, fsync the directory); once it is on disk the
 * watchers hear of the phase and the list goes on; if it failed, on_failure
 * (its err filled in) is the next event. */
mig_act_result mig_journal(mig *m, const char *phase, const mig_event *on_failure, mig_event *ret);
/* Ends a process tree (SIGKILL, then up to 2 s until it is gone); what
 * names it in the log. */
mig_act_result mig_kill_tree(mig *m, pid_t pid, uint64_t ticks, const char *what);
/* Removes a directory tree (images, a staging). */
mig_act_result mig_remove_dir(mig *m, const char *path);
/* Any other blocking work: fn runs on the thread pool with ud (what it
 * reads of m must not change until done), done on the loop (skipped if m
 * ended meanwhile; ud is the caller's to free in free_ud, which always
 * runs). -ENOMEM: none of them runs. */
typedef int (*mig_work_fn)(mig *m, void *ud, nm_error *err);
typedef void (*mig_work_done_fn)(mig *m, void *ud, int r, const nm_error *err);
int mig_work(mig *m, mig_work_fn fn, mig_work_done_fn done, void *ud, void (*free_ud)(void *ud));

/* Sets a fact in the journal record (written with the next phase). */
void mig_rec_set(mig *m, const char *key, json_t *value);
void mig_rec_set_str(mig *m, const char *key, const char *value);
void mig_rec_set_int(mig *m, const char *key, int64_t value);
const char *mig_rec_str(const mig *m, const char *key);
int64_t mig_rec_int(const mig *m, const char *key);

/* Records the first failure (formatted) for the result and the log. */
void mig_fail_reason(mig *m, int code, const char *fmt, ...) _printf_(3, 4);

/* Who hears of m (see mig_watch_ops); -ENOSPC with too many. */
int mig_watch_add(mig *m, const mig_watch_ops *ops, void *ud);
void mig_watch_remove(mig *m, void *ud);

/* Publishes a progress event. */
void mig_progress(mig *m, const char *message);
/* Logs, and tells the watchers, that a dump or restore just asked for
 * (`what`) waits behind another one of this node's CRIU; nothing otherwise. */
void mig_note_criu_turn(mig *m, ckpt_op_state state, const char *what);
/* Publishes the operator's answer before the end (see mig_watch_ops). */
void mig_answer(mig *m, json_t *doc);

/* The result document (status and the CLI's final answer). */
json_t *mig_result_doc(const mig *m);

/* Archives the record with the result; the watchers hear of it from the
 * loop, then m goes. */
void mig_finish(mig *m);

/* Closes m's handles at agent exit, leaving its journal record active: the
 * next start continues from it. */
void mig_park(mig *m);

/* Fault injection for the fault-matrix tests: NM_FAULT holds a comma list
 * of "crash-after=<point>" (SIGKILL self), "hang-after=<point>" (stop for
 * good), "pause-after=<point>" (see fault_point), "criu-hold-at=<CRIU
 * notification>" (see fault_setup) and "fail=<step>" (make a step fail:
 * dest-restore, dump; ps-frame bends a page frame on the source, ps-replies
 * drops the page server's replies on the target). Inert unless NM_FAULT is
 * set. */
bool fault_fail(const char *point);

/* With NM_FAULT "stall=<what>" and NM_FAULT_GATE=<file>: the gate, else
 * NULL. staging-writes: the target's writes into staging wait while the
 * file exists, as on a stalled file system. */
const char *fault_stall_gate(const char *what);

/* At the agent's start. With NM_FAULT "criu-hold-at=<name>" (a CRIU
 * notification: pre-dump, query-ext-files, post-dump, pre-restore,
 * setup-namespaces, post-resume, ...) and NM_FAULT_GATE=<file>, CRIU stands
 * still at that notification, waiting for its answer, while the file exists;
 * the agent logs "fault injection: CRIU held at <name> " when it begins. */
void fault_setup(void);

/* A named point of the handoff (after journaling a phase: the phase's
 * name; "first-file-sent": the source's stream reported its first whole
 * file sent; "got-restored": the source heard RESTORED, before COMMITTED). With
 * NM_FAULT "pause-after=<point>" and NM_FAULT_GATE=<file>, the agent stands
 * still there while the file exists. */
void fault_point(mig *m, const char *point);

/* A peer session of the target that carries a migration's bytes. With
 * NM_FAULT "fail=peer-reading" it stops reading for good, yet sends a PING
 * and a PONG of its own every 2 s: a hostile target that would look alive
 * while its source waits to send it the rest. */
void fault_peer_bytes(agent *a, xfer_conn *c);
/* A peer's HELLO. With NM_FAULT "fail=peer-hello" it goes unanswered, and
 * the session turns deaf as above: true, and the HELLO is not answered. */
bool fault_peer_hello(agent *a, xfer_conn *c);
/* That session closed: its sending stops. */
void fault_peer_closed(xfer_conn *c);

/* [limits] bandwidth is the node's, shared by every stream under way: each
 * gets an equal part, given again whenever one starts or ends. */
void mig_share_bandwidth(agent *a);

/* Past this many refusals a session's further ones are not logged: a peer
 * must not be able to fill the log. */
#define MIG_REFUSALS_LOGGED 16

/* Peer trust (core/handoff-trust.h): whether a message of this kind on
 * session cc may reach migration m (role, peer: the migration's; peer_cc:
 * its session, or NULL). If not, cc hears ERROR -EPERM and the log says
 * who tried what (a bounded number of times per session). */
bool mig_admits(ctl_conn *cc, mig_role role, const char *id, const char *peer, const ctl_conn *peer_cc,
                handoff_msg what);

/* How the page stream's frames are compressed and tagged with a peer
 * whose HELLO listed features (peer_feature bits): both sides compute it
 * from the two HELLOs, ours listing every feature. */
ps_link_zstd mig_pages_zstd(unsigned peer_features);
/* The page stream's MAC with a peer that listed peer_features. */
ps_mac_alg mig_pages_mac(unsigned peer_features);

/* The binding of m's image set (ckpt_binding): its id, the source node,
 * the target node, its container id and the tree HMAC (hex). */
int mig_binding(const mig *m, const char *source, const char *target, const char *tree_hex,
                char ret_hex[XFER_HMAC_HEX_MAX]);

/* source (mig-src.c) */

/* Starts moving a container; watch (may be NULL) hears of it. Checks that
 * can fail before anything is touched fail here; after 0, the end comes
 * through the watch, from the loop. */
int mig_src_start(agent *a, const proto_migrate *req, const mig_watch_ops *watch, void *ud,
                  char ret_id[PROTO_ID_MAX + 1], nm_error *err);
int mig_src_recover(agent *a, json_t *rec, src_tree tree, nm_error *err);
/* Answers a destination's QUERY about one of our migrations (OUTCOME), or
 * refuses a QUERY from a peer that is not the migration's target. */
void mig_src_query(ctl_conn *cc, const char *id);
/* The outcome of our source migration id for a QUERY on cc: false (and cc
 * hears ERROR) when cc may not ask, the target's key alone may. */
bool mig_src_answer(ctl_conn *cc, const char *id, proto_outcome *ret);

/* destination (mig-dst.c): what a source's peer session says */
void mig_dst_offer(ctl_conn *cc, const proto_offer *o);
void mig_dst_stream(ctl_conn *cc, const proto_msg *msg);
void mig_dst_restore(ctl_conn *cc, const char *id);
void mig_dst_commit(ctl_conn *cc, const char *id);
void mig_dst_abort(ctl_conn *cc, const char *id, const char *reason);
void mig_dst_ps_data(ctl_conn *cc, const proto_ps_data *d);
void mig_dst_ps_pages(ctl_conn *cc, const proto_ps_pages *p);
void mig_dst_ps_end(ctl_conn *cc, const proto_ps_end *p);
/* Feature "lanes": a further session of a source asks to carry its
 * stream (LANE_JOIN), and the source names the lanes it deals over
 * (LANES, on the migration's own session). */
void mig_dst_lane_join(ctl_conn *cc, const proto_lane_join *j);
void mig_dst_lanes(ctl_conn *cc, const proto_lane *l);
void mig_dst_conn_closed(ctl_conn *cc, int status, const nm_error *err);
int mig_dst_recover(agent *a, json_t *rec, nm_error *err);
