/* SPDX-License-Identifier: Apache-2.0 */
/* `nucleus-migrate resolve`: a migration held in doubt on this node (its
 * destination, holding a stopped copy, cannot learn the outcome) is settled
 * from the facts (the source's answer, whether a copy runs there, whether
 * the copy here still exists), or by the operator where the facts cannot
 * tell (--force). The rules are the core's (dst_resolve_decide); this
 * gathers the facts, carries the decision out through the core (OUTCOME),
 * and records it in both journals. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exit-codes.h"
#include "history.h"
#include "log.h"
#include "macro.h"
#include "mig.h"
#include "resolve.h"

struct resolver {
        agent *a;
        ctl_conn *cc; /* the CLI; NULL once it is gone */
        char mig[PROTO_ID_MAX + 1];
        proto_decision ask;
        bool force;
        peer_link *link;
        bool answered; /* the source answered our QUERY */
        proto_outcome source_says;
        char source_phase[PROTO_ID_MAX + 1];
        dst_source_copy source_copy;
        pid_t source_held_pid;      /* the copy there, held stopped */
        uint64_t source_held_start; /* ... its start time, or 0 when the source did not say */
        char source_error[512];
        json_t *doc; /* the answer, facts first */
};

/* ---- the source's side: facts, and the decision recorded ---- */

/* The phase of migration id in this role (_MIG_ROLE_INVALID: either), ""
 * when we have no record of it. */
static void phase_of(agent *a, const char *id, mig_role role, char *buf, size_t n) {
        mig *m = mig_find(a, id);
        json_t *rec = NULL;

        buf[0] = '\0';
        if (!m)
                m = mig_find_archiving(a, id);
        if (m) {
                if (role < 0 || m->role == role)
                        snprintf(buf, n, "%s", mig_phase_name(m));
                return;
        }
        if (journal_load_done_one(a->journal, id, &rec) >= 0 &&
            (role < 0 || mig_role_from_string(json_string_value(json_object_get(rec, "role"))) == role))
                snprintf(buf, n, "%s", strempty(json_string_value(json_object_get(rec, "phase"))));
        json_decref(rec);
}

static void source_phase_of(agent *a, const char *id, char *buf, size_t n) {
        phase_of(a, id, MIG_ROLE_SOURCE, buf, n);
}

static void ended_phase(agent *a, const char *id, char *buf, size_t n) {
        phase_of(a, id, _MIG_ROLE_INVALID, buf, n);
}

/* The container's copy here: running, held stopped (a dump of ours left
 * it so; its pid in *ret_pid), or none. */
static dst_source_copy container_copy_here(agent *a, const char *container_id, pid_t *ret_pid,
                                           uint64_t *ret_start) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;

        *ret_pid = 0;
        *ret_start = 0;
        if (ckpt_container_find(a->cfg.state_dir, container_id, &c, NULL) < 0 ||
            strcmp(c->id, container_id) != 0 || !ckpt_container_is_running(c))
                return DST_SOURCE_COPY_NONE;
        if (!ckpt_proc_stopped(c->pid))
                return DST_SOURCE_COPY_RUNS;
        *ret_pid = c->pid;
        *ret_start = c->start_ticks;
        return DST_SOURCE_COPY_HELD;
}

void resolve_answer_query(ctl_conn *cc, const proto_query *q) {
        char phase[PROTO_ID_MAX + 1];
        /* The outcome first: for a migration still before its commit, the
         * answer "aborted" makes it roll back before anything else. */
        proto_msg r = {.type = PROTO_MSG_OUTCOME, .outcome = {.mig = q->mig}};

        if (!mig_src_answer(cc, q->mig, &r.outcome.outcome))
                return;

        source_phase_of(cc->a, q->mig, phase, sizeof(phase));
        r.outcome.phase = phase[0] ? phase : NULL;
        if (q->container_id) {
                pid_t held = 0;
                uint64_t start = 0;
                r.outcome.has_running = true;
                r.outcome.running =
                        container_copy_here(cc->a, q->container_id, &held, &start) == DST_SOURCE_COPY_RUNS;
                r.outcome.has_held_pid = held > 0;
                r.outcome.held_pid = (uint32_t)held;
                r.outcome.has_held_start = held > 0 && start > 0;
                r.outcome.held_start = start;
        }
        (void)ctl_send(cc, &r);
}

typedef struct record_work {
        uv_work_t work;
        agent *a;
        char mig[PROTO_ID_MAX + 1];
        char *text;
        nm_error err;
        int status;
} record_work;

static void record_run(uv_work_t *w) {
        record_work *rw = w->data;
        rw->status = journal_put_text(rw->a->journal, rw->mig, rw->text, &rw->err);
        if (rw->status >= 0)
                rw->status = journal_finish(rw->a->journal, rw->mig, &rw->err);
}

static void record_after(uv_work_t *w, int status) {
        record_work *rw = w->data;
        (void)status;
        if (rw->status < 0)
                log_ctx_error(rw->mig, "cannot record the decision on the migration: %s", rw->err.msg);
        free(rw->text);
        free(rw);
}

/* The destination settled a migration of ours: an active one carries the
 * decision in its record; one we have no active record of gets a finished
 * record of its own that says it, so QUERY answers the same from now on. */
void resolve_record(ctl_conn *cc, const proto_resolved *r) {
        agent *a = cc->a;
        json_t *res = json_pack("{s:s, s:s, s:s, s:I}", "outcome", proto_outcome_to_string(r->outcome), "by",
                                cc->peer_node, "reason", r->reason, "at_ms", (json_int_t)unix_ms());
        mig *m = mig_find(a, r->mig);
        record_work *rw;

        const json_t *old = a->history ? history_get(a->history, r->mig) : NULL;

        /* Only the migration's target settles it (peer trust, as QUERY). */
        if ((m && m->role == MIG_ROLE_SOURCE &&
             !mig_admits(cc, MIG_ROLE_SOURCE, r->mig, m->peer, NULL, HANDOFF_MSG_QUERY)) ||
            (old && !mig_admits(cc, MIG_ROLE_SOURCE, r->mig, json_string_value(json_object_get(old, "peer")),
                                NULL, HANDOFF_MSG_QUERY))) {
                json_decref(res);
                return;
        }
        log_ctx_info(r->mig, "%s settled this migration as %s: %s", cc->peer_node,
                     proto_outcome_to_string(r->outcome), r->reason);
        if (m && m->role == MIG_ROLE_SOURCE) {
                mig_rec_set(m, "resolution", res);
                return;
        }
        if (m || old || mig_find_archiving(a, r->mig) || !journal_valid_id(r->mig)) {
                json_decref(res);
                return;
        }
        /* A resolve sends one RESOLVED per session: more records for ids
         * this agent never had would be a peer filling its journal. */
        if (cc->records_made++ > 0) {
                log_ctx_warning(r->mig,
                                "%s sent another RESOLVED for a migration unknown here on session %llu: "
                                "not recorded (one per session)",
                                cc->peer_node, (unsigned long long)cc->session);
                json_decref(res);
                return;
        }
        json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I}", "mig", r->mig, "role", "source", "phase",
                                r->outcome == PROTO_OUTCOME_COMMITTED ? "done" : "failed", "peer",
                                cc->peer_node, "resolution", res, "ended_ms", (json_int_t)unix_ms());
        rw = calloc(1, sizeof(*rw));
        if (!rw || !rec || !(rw->text = journal_record_text(rec))) {
                log_ctx_error(r->mig, "out of memory recording the decision");
                free(rw);
                json_decref(rec);
                return;
        }
        json_decref(rec);
        rw->work.data = rw;
        rw->a = a;
        snprintf(rw->mig, sizeof(rw->mig), "%s", r->mig);
        if (uv_queue_work(a->loop, &rw->work, record_run, record_after) < 0) {
                free(rw->text);
                free(rw);
        }
}

/* ---- the destination's side: the operator's command ---- */

static void resolver_free(resolver *rv) {
        if (rv->link)
                peer_link_detach(rv->link);
        if (rv->cc)
                rv->cc->resolver = NULL;
        json_decref(rv->doc);
        free(rv);
}

void resolve_cli_gone(resolver *rv) {
        rv->cc = NULL;
}

static void answer(resolver *rv, int exit_code) {
        json_object_set_new(rv->doc, "exit_code", json_integer(exit_code));
        if (rv->cc)
                ctl_send_result(rv->cc, rv->mig, rv->doc);
}

/* Our copy: still there (held stopped), or gone. */
static dst_copy copy_here(const mig *m, json_t *here) {
        pid_t pid = m->restored_pid ? m->restored_pid : (pid_t)mig_rec_int(m, "restored_pid");
        uint64_t ticks = m->restored_ticks ? m->restored_ticks : (uint64_t)mig_rec_int(m, "restored_ticks");
        uint64_t now = 0;
        bool there = pid > 0 && ckpt_proc_start_ticks(pid, &now) >= 0 && now == ticks;

        json_object_set_new(here, "copy", json_string(there ? "held stopped" : "gone"));
        json_object_set_new(here, "pid", json_integer(there ? pid : 0));
        return there ? DST_COPY_STOPPED : DST_COPY_NONE;
}

/* What the source's answer says of its copy. A copy said to run and to be
 * held at once is taken as running: never a second copy beside it. */
static dst_source_copy source_copy_of(const proto_outcome_msg *o) {
        if (!o->has_running)
                return DST_SOURCE_COPY_UNKNOWN;
        if (o->running)
                return DST_SOURCE_COPY_RUNS;
        return o->has_held_pid ? DST_SOURCE_COPY_HELD : DST_SOURCE_COPY_NONE;
}

static json_t *source_copy_json(dst_source_copy c) {
        switch (c) {
        case DST_SOURCE_COPY_NONE: return json_string("none");
        case DST_SOURCE_COPY_RUNS: return json_string("running");
        case DST_SOURCE_COPY_HELD: return json_string("held stopped");
        case DST_SOURCE_COPY_UNKNOWN:
        case _DST_SOURCE_COPY_MAX:
        case _DST_SOURCE_COPY_INVALID: break;
        }
        return json_null();
}

static handoff_outcome handoff_of(proto_outcome o) {
        return o == PROTO_OUTCOME_COMMITTED ? HANDOFF_OUTCOME_COMMITTED
               : o == PROTO_OUTCOME_ABORTED ? HANDOFF_OUTCOME_ABORTED
                                            : HANDOFF_OUTCOME_UNKNOWN;
}

static void resolve_finished(void *ud, const char *mig_id, json_t *doc) {
        resolver *rv = ud;
        (void)mig_id;
        json_object_set_new(
                rv->doc, "outcome",
                json_string(doc ? strempty(json_string_value(json_object_get(doc, "outcome"))) : "parked"));
        answer(rv, doc ? NM_EXIT_OK : NM_EXIT_IN_DOUBT);
        resolver_free(rv);
}

static const mig_watch_ops resolve_watch = {.finished = resolve_finished};

/* A copy the source holds stopped with no record of the move: nothing
 * there ends or resumes it, and a source without a record cannot tell
 * that we are the move's target (peer trust), so it is not asked to; the
 * operator is told what is left to do there. */
static void note_held_copy(resolver *rv, const mig *m, handoff_outcome o) {
        const char *verb = o == HANDOFF_OUTCOME_COMMITTED ? "kill-tree" : "resume";
        char todo[512], cmd[128];

        /* With its start time the command refuses a later process that took
         * the pid over, should the held copy end before the operator acts. */
        if (rv->source_held_start)
                snprintf(cmd, sizeof(cmd), "%s --start-ticks %" PRIu64 " %d", verb, rv->source_held_start,
                         (int)rv->source_held_pid);
        else
                snprintf(cmd, sizeof(cmd), "%s %d", verb, (int)rv->source_held_pid);
        if (o == HANDOFF_OUTCOME_COMMITTED)
                snprintf(todo, sizeof(todo),
                         "%s holds a stopped copy of the container as pid %d, which nothing there ends: "
                         "end it there with `nucleus-migrate %s`",
                         m->peer, (int)rv->source_held_pid, cmd);
        else
                snprintf(todo, sizeof(todo),
                         "%s holds the container stopped as pid %d, which nothing there resumes: "
                         "continue it there with `nucleus-migrate %s`",
                         m->peer, (int)rv->source_held_pid, cmd);
        json_object_set_new(rv->doc, "to_do", json_string(todo));
        log_ctx_warning(m->id, "left to the operator: %s", todo);
}

/* Every fact is in (or the source could not be reached): decide. */
static void decide(resolver *rv) {
        mig *m = mig_find(rv->a, rv->mig);
        json_t *here = json_object(), *there = json_object();
        handoff_outcome o;
        const char *why;
        bool forced;
        char reason[1024];

        if (!m || m->role != MIG_ROLE_DEST || m->finished) {
                json_object_set_new(rv->doc, "decision", json_string("none"));
                json_object_set_new(rv->doc, "reason",
                                    json_string("the migration ended while facts were gathered"));
                answer(rv, NM_EXIT_FAILURE);
                json_decref(here);
                json_decref(there);
                resolver_free(rv);
                return;
        }
        json_object_set_new(here, "node", json_string(rv->a->cfg.node));
        json_object_set_new(here, "phase", json_string(mig_phase_name(m)));
        dst_resolve_facts f = {
                .phase = m->dst.phase,
                .copy = copy_here(m, here),
                .source_reached = rv->answered,
                .source_says = rv->answered ? handoff_of(rv->source_says) : HANDOFF_OUTCOME_UNKNOWN,
                .source_record = !rv->answered         ? HANDOFF_FACT_UNKNOWN
                                 : rv->source_phase[0] ? HANDOFF_FACT_YES
                                                       : HANDOFF_FACT_NO,
                .source_copy = rv->source_copy,
                .ask = rv->ask == PROTO_DECISION_COMMIT  ? DST_RESOLVE_COMMIT
                       : rv->ask == PROTO_DECISION_ABORT ? DST_RESOLVE_ABORT
                                                         : DST_RESOLVE_AUTO,
                .force = rv->force,
        };
        json_object_set_new(there, "node", json_string(strempty(m->peer)));
        json_object_set_new(there, "reachable", json_boolean(rv->answered));
        if (rv->answered) {
                json_object_set_new(there, "says", json_string(proto_outcome_to_string(rv->source_says)));
                json_object_set_new(there, "phase",
                                    rv->source_phase[0] ? json_string(rv->source_phase) : json_null());
                json_object_set_new(there, "container_running",
                                    rv->source_copy == DST_SOURCE_COPY_UNKNOWN
                                            ? json_null()
                                            : json_boolean(rv->source_copy == DST_SOURCE_COPY_RUNS));
                json_object_set_new(there, "copy", source_copy_json(rv->source_copy));
                if (rv->source_copy == DST_SOURCE_COPY_HELD) {
                        json_object_set_new(there, "pid", json_integer(rv->source_held_pid));
                        json_object_set_new(there, "start_ticks",
                                            rv->source_held_start
                                                    ? json_integer((json_int_t)rv->source_held_start)
                                                    : json_null());
                }
        } else {
                json_object_set_new(there, "error", json_string(rv->source_error));
        }
        json_object_set_new(rv->doc, "here", here);
        json_object_set_new(rv->doc, "source", there);

        dst_resolve_verdict v = dst_resolve_decide(&f, &o, &why, &forced);
        json_object_set_new(rv->doc, "reason", json_string(why));
        if (v != DST_RESOLVE_DECIDED) {
                json_object_set_new(rv->doc, "decision", json_string("none"));
                json_object_set_new(rv->doc, "verdict",
                                    json_string(v == DST_RESOLVE_UNDECIDED ? "undecided" : "refused"));
                answer(rv, v == DST_RESOLVE_UNDECIDED ? NM_EXIT_IN_DOUBT : NM_EXIT_FAILURE);
                resolver_free(rv);
                return;
        }
        snprintf(reason, sizeof(reason), "%s on %s by `nucleus-migrate resolve`%s: %s",
                 o == HANDOFF_OUTCOME_COMMITTED ? "committed" : "aborted", rv->a->cfg.node,
                 forced ? " (forced by the operator)" : "", why);
        json_object_set_new(rv->doc, "decision",
                            json_string(o == HANDOFF_OUTCOME_COMMITTED ? "commit" : "abort"));
        json_object_set_new(rv->doc, "forced", json_boolean(forced));
        log_ctx_warning(m->id, "resolved: %s", reason);
        if (rv->answered && !rv->source_phase[0] && rv->source_copy == DST_SOURCE_COPY_HELD)
                note_held_copy(rv, m, o);
        mig_rec_set(m, "resolution",
                    json_pack("{s:s, s:b, s:s, s:I}", "outcome", handoff_outcome_to_string(o), "forced",
                              forced, "reason", reason, "at_ms", (json_int_t)unix_ms()));
        /* The source's journal hears it too, when it can be reached. */
        if (rv->link && rv->answered) {
                proto_msg r = {.type = PROTO_MSG_RESOLVED,
                               .resolved = {.mig = m->id,
                                            .outcome = o == HANDOFF_OUTCOME_COMMITTED
                                                               ? PROTO_OUTCOME_COMMITTED
                                                               : PROTO_OUTCOME_ABORTED,
                                            .reason = reason}};
                (void)peer_link_send(rv->link, &r, NULL);
                json_object_set_new(rv->doc, "recorded_on_source", json_true());
        } else {
                json_object_set_new(rv->doc, "recorded_on_source", json_false());
        }
        if (mig_watch_add(m, &resolve_watch, rv) < 0) {
                answer(rv, NM_EXIT_FAILURE);
                resolver_free(rv);
                return;
        }
        mig_feed(m, &(mig_event){.dst = {.kind = DST_EV_RESOLVED, .outcome = o}});
}

static void link_ready(peer_link *l, void *ud) {
        resolver *rv = ud;
        mig *m = mig_find(rv->a, rv->mig);
        proto_msg q = {.type = PROTO_MSG_QUERY,
                       .query = {.mig = rv->mig, .container_id = m ? m->container_id : NULL}};
        nm_error err = {};
        if (peer_link_ask(l, &q, &err) < 0)
                peer_link_close(l, err.code, &err);
}

static void link_message(peer_link *l, const proto_msg *msg, void *ud) {
        resolver *rv = ud;
        if (msg->type != PROTO_MSG_OUTCOME || strcmp(msg->outcome.mig, rv->mig) != 0 || rv->answered)
                return;
        peer_link_answered(l);
        rv->answered = true;
        rv->source_says = msg->outcome.outcome;
        snprintf(rv->source_phase, sizeof(rv->source_phase), "%s", strempty(msg->outcome.phase));
        rv->source_copy = source_copy_of(&msg->outcome);
        rv->source_held_pid = rv->source_copy == DST_SOURCE_COPY_HELD ? (pid_t)msg->outcome.held_pid : 0;
        rv->source_held_start =
                rv->source_held_pid > 0 && msg->outcome.has_held_start ? msg->outcome.held_start : 0;
        decide(rv);
}

static void link_closed(peer_link *l, int status, const nm_error *err, void *ud) {
        resolver *rv = ud;
        (void)l;
        rv->link = NULL;
        if (rv->answered)
                return;
        snprintf(rv->source_error, sizeof(rv->source_error), "%s",
                 err && err->code ? err->msg : strerror(-(status ? status : -ECONNRESET)));
        decide(rv);
}

static const peer_link_ops resolve_link_ops = {
        .ready = link_ready, .message = link_message, .closed = link_closed};

int resolve_start(ctl_conn *cc, const proto_resolve *req, nm_error *err) {
        agent *a = cc->a;
        mig *m = mig_find(a, req->mig);
        resolver *rv;

        if (cc->watch || cc->resolver)
                return nm_error_set(err, -EBUSY, "this session is busy with a migration already");
        if (!m || m->finished) {
                char phase[PROTO_ID_MAX + 1];
                ended_phase(a, req->mig, phase, sizeof(phase));
                if (phase[0])
                        return nm_error_set(err, -EALREADY,
                                            "migration %s is over here (%s): nothing to resolve", req->mig,
                                            phase);
                return nm_error_set(err, -ESRCH,
                                    "no migration %s on %s (`nucleus-migrate status` lists them)", req->mig,
                                    a->cfg.node);
        }
        if (m->role != MIG_ROLE_DEST || m->dst.phase != DST_IN_DOUBT)
                return nm_error_set(
                        err, -EINVAL, "migration %s is not in doubt here: it is the %s's, in phase %s%s",
                        m->id, m->role == MIG_ROLE_DEST ? "destination" : "source", mig_phase_name(m),
                        m->role == MIG_ROLE_SOURCE && m->src.phase == SRC_COMMITTED
                                ? " (a committed source only goes forward; settle it on the target)"
                                : "");
        rv = calloc(1, sizeof(*rv));
        if (!rv)
                return nm_error_set(err, -ENOMEM, "out of memory");
        rv->a = a;
        rv->cc = cc;
        rv->ask = req->decision;
        rv->force = req->force;
        snprintf(rv->mig, sizeof(rv->mig), "%s", m->id);
        rv->doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "mig", m->id, "role", "destination",
                            "container", strempty(m->container_id), "name", strempty(m->container_name),
                            "asked", proto_decision_to_string(req->decision), "force", req->force);
        cc->resolver = rv;
        log_ctx_info(m->id, "resolve asked (%s%s): asking %s what it knows",
                     proto_decision_to_string(req->decision), req->force ? ", forced" : "", m->peer);
        if (peer_link_open(a, m->peer, m->id, &resolve_link_ops, rv, err, &rv->link) < 0) {
                snprintf(rv->source_error, sizeof(rv->source_error), "%s", err->msg);
                nm_error_clear(err);
                rv->link = NULL;
                decide(rv);
        }
        return 0;
}
