/* SPDX-License-Identifier: Apache-2.0 */
#include "drain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "metrics.h"
#include "mig.h"
#include "peer.h"

typedef struct drain_target {
        drain *d;
        char *name;
        peer_link *link;
        bool answered, usable;
        uint64_t staging_free;
        unsigned running;  /* as reported, plus what we sent since */
        uint64_t assigned; /* bytes we sent it */
        char why[256];     /* why it is not usable */
} drain_target;

typedef struct drain_item {
        drain *d;
        char *id, *name;
        uint64_t bytes_est;
        char *target;
        char mig[PROTO_ID_MAX + 1];
        json_t *result; /* NULL while pending */
        bool started;
} drain_item;

struct drain {
        agent *a;
        ctl_conn *cli;
        drain_target *targets;
        size_t n_targets, n_answered;
        drain_item *items;
        size_t n_items, next, in_flight, n_done;
        unsigned parallel;
        uint64_t t_start;
};

static void drain_free(drain *d) {
        for (size_t i = 0; i < d->n_targets; i++)
                free(d->targets[i].name);
        for (size_t i = 0; i < d->n_items; i++) {
                free(d->items[i].id);
                free(d->items[i].name);
                free(d->items[i].target);
                json_decref(d->items[i].result);
        }
        free(d->targets);
        free(d->items);
        free(d);
}

static void drain_event(drain *d, const char *mig_id, const char *phase, const char *message) {
        proto_msg ev = {.type = PROTO_MSG_EVENT,
                        .event = {.mig = mig_id, .phase = phase, .message = message}};
        if (d->cli)
                (void)ctl_send(d->cli, &ev);
}

static void drain_finish(drain *d) {
        json_t *items = json_array();
        unsigned moved = 0, failed = 0;

        for (size_t i = 0; i < d->n_items; i++) {
                json_t *r = d->items[i].result;
                const char *outcome = json_string_value(json_object_get(r, "outcome"));
                if (outcome && strcmp(outcome, "done") == 0)
                        moved++;
                else
                        failed++;
                json_array_append(items, r);
        }
        json_t *targets = json_array();
        for (size_t i = 0; i < d->n_targets; i++)
                json_array_append_new(targets, json_pack("{s:s, s:b, s:s?}", "target", d->targets[i].name,
                                                         "usable", d->targets[i].usable, "reason",
                                                         d->targets[i].why[0] ? d->targets[i].why : NULL));
        json_t *doc = json_pack("{s:s, s:s, s:i, s:i, s:I, s:o, s:o, s:b, s:I}", "drain", d->a->cfg.node,
                                "outcome", failed ? "partial" : "done", "moved", moved, "failed", failed,
                                "duration_ms", (json_int_t)((now_usec() - d->t_start) / 1000), "targets",
                                targets, "items", items, "cordoned", d->a->cordoned, "bandwidth",
                                (json_int_t)d->a->cfg.bandwidth);
        log_info("drain of %s: %u moved, %u not moved", d->a->cfg.node, moved, failed);
        metrics_drain(d->a, failed ? "partial" : "complete");
        if (d->cli) {
                ctl_send_result(d->cli, NULL, doc);
                d->cli->drain = NULL;
        }
        json_decref(doc);
        drain_free(d);
}

/* The target with the fewest containers (counting ours), then the most free
 * staging space, that has room for this one. */
static drain_target *pick_target(drain *d, uint64_t bytes) {
        drain_target *best = NULL;
        for (size_t i = 0; i < d->n_targets; i++) {
                drain_target *t = &d->targets[i];
                if (!t->usable || t->staging_free < t->assigned + bytes)
                        continue;
                if (!best || t->running < best->running ||
                    (t->running == best->running &&
                     t->staging_free - t->assigned > best->staging_free - best->assigned))
                        best = t;
        }
        return best;
}

static void item_result(drain *d, drain_item *it, const char *outcome, const char *error) {
        it->result = json_pack("{s:s, s:s?, s:s?, s:s, s:s?}", "container", it->id, "name", it->name,
                               "target", it->target, "outcome", outcome, "error", error);
        d->n_done++;
}

static const mig_watch_ops item_watch;

static void drain_pump(drain *d) {
        while (d->in_flight < d->parallel && d->next < d->n_items) {
                drain_item *it = &d->items[d->next++];
                if (it->result) /* refused up front (gVisor, ...) */
                        continue;
                drain_target *t = pick_target(d, it->bytes_est);
                nm_error err = {};
                if (!t) {
                        item_result(d, it, "refused", "no target has room for it (or none is usable)");
                        continue;
                }
                it->target = strdup(t->name);
                proto_msg req = {.type = PROTO_MSG_MIGRATE,
                                 .migrate = {.container = it->id, .target = t->name}};
                /* Its end comes from the loop, after this returns. */
                if (mig_src_start(d->a, &req.migrate, &item_watch, it, it->mig, &err) < 0) {
                        item_result(d, it, err.code == -EBUSY ? "busy" : "refused", err.msg);
                        continue;
                }
                it->started = true;
                d->in_flight++;
                t->running++;
                t->assigned += it->bytes_est;
        }
        if (d->n_done == d->n_items && d->in_flight == 0)
                drain_finish(d);
}

/* ---- what a move tells its drain ---- */

static void item_progress(void *ud, const proto_event *ev) {
        drain_item *it = ud;
        if (it->d->cli)
                (void)ctl_send(it->d->cli, &(proto_msg){.type = PROTO_MSG_EVENT, .event = *ev});
}

static void item_finished(void *ud, const char *mig_id, json_t *doc) {
        drain_item *it = ud;
        drain *d = it->d;
        (void)mig_id;

        it->result = doc ? json_deep_copy(doc) : json_pack("{s:s}", "outcome", "in-doubt");
        json_object_set_new(it->result, "container", json_string(it->id));
        d->n_done++;
        d->in_flight--;
        drain_pump(d);
}

static const mig_watch_ops item_watch = {.progress = item_progress, .finished = item_finished};

void drain_cli_gone(drain *d) {
        d->cli = NULL;
}

/* ---- asking the targets ---- */

static void target_ready(peer_link *l, void *ud) {
        proto_msg q = {.type = PROTO_MSG_NODE_INFO_REQ};
        nm_error err = {};
        (void)ud;
        if (peer_link_ask(l, &q, &err) < 0)
                peer_link_close(l, err.code, &err);
}

/* Every target answered: the moves start. May free d. */
static void targets_all_answered(drain *d) {
        for (size_t i = 0; i < d->n_targets; i++)
                log_info("drain target %s: %s%s", d->targets[i].name,
                         d->targets[i].usable ? "usable" : "not usable: ", d->targets[i].why);
        drain_pump(d);
}

/* True once every target has answered. */
static bool target_answered(drain_target *t) {
        if (!t->answered) {
                t->answered = true;
                t->d->n_answered++;
        }
        return t->d->n_answered == t->d->n_targets;
}

static void target_message(peer_link *l, const proto_msg *msg, void *ud) {
        drain_target *t = ud;
        if (msg->type != PROTO_MSG_NODE_INFO)
                return;
        peer_link_answered(l);
        t->staging_free = msg->node_info.staging_free;
        t->running = msg->node_info.running;
        t->usable = !msg->node_info.cordoned;
        if (msg->node_info.cordoned)
                snprintf(t->why, sizeof(t->why), "cordoned");
        peer_link_close(l, 0, NULL);
}

static void target_closed(peer_link *l, int status, const nm_error *err, void *ud) {
        drain_target *t = ud;
        (void)l;
        (void)status;
        t->link = NULL;
        if (!t->usable && !t->why[0])
                snprintf(t->why, sizeof(t->why), "%s", err && err->code ? err->msg : "no answer");
        if (target_answered(t))
                targets_all_answered(t->d);
}

static const peer_link_ops target_ops = {
        .ready = target_ready, .message = target_message, .closed = target_closed};

static int collect_items(drain *d, nm_error *err) {
        ckpt_container **l = NULL;
        size_t n = 0;
        int r = ckpt_container_list(d->a->cfg.state_dir, &l, &n, NULL, err);
        if (r < 0)
                return r;
        d->items = calloc(n ? n : 1, sizeof(*d->items));
        if (!d->items) {
                ckpt_container_list_free(l, n);
                return nm_error_set(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++) {
                nm_error why = {};
                if (!ckpt_container_is_running(l[i]))
                        continue; /* stopped containers stay where they are */
                drain_item *it = &d->items[d->n_items++];
                it->d = d;
                it->id = strdup(l[i]->id);
                it->name = l[i]->name ? strdup(l[i]->name) : NULL;
                it->bytes_est = 64u << 20;
                if (ckpt_container_check_movable(l[i], &why) < 0)
                        item_result(d, it, "refused", why.msg);
        }
        ckpt_container_list_free(l, n);
        return 0;
}

int drain_start(agent *a, ctl_conn *cli, const proto_drain *req, nm_error *err) {
        drain *d;
        int r;

        if (cli->drain)
                return nm_error_set(err, -EBUSY, "this session runs a drain already");
        d = calloc(1, sizeof(*d));
        if (!d)
                return nm_error_set(err, -ENOMEM, "out of memory");
        d->a = a;
        d->t_start = now_usec();
        d->parallel = req->parallel < a->cfg.parallel ? req->parallel : a->cfg.parallel;
        size_t nt = req->targets.n ? req->targets.n : a->cfg.n_peers;
        d->targets = calloc(nt ? nt : 1, sizeof(*d->targets));
        r = d->targets ? collect_items(d, err) : nm_error_set(err, -ENOMEM, "out of memory");
        if (r < 0) {
                drain_free(d);
                return r;
        }
        for (size_t i = 0; i < nt; i++) {
                const char *name = req->targets.n ? req->targets.v[i] : a->cfg.peers[i].name;
                if (strcmp(name, a->cfg.node) == 0)
                        continue;
                drain_target *t = &d->targets[d->n_targets++];
                t->d = d;
                t->name = strdup(name);
        }
        if (d->n_targets == 0) {
                drain_free(d);
                return nm_error_set(err, -EINVAL,
                                    "no drain targets: give --to or configure [peer] sections");
        }
        /* Nothing may arrive while the node empties: cordoned first, and it
         * stays so (the operator uncordons). */
        bool was_cordoned = a->cordoned;
        r = cordon_set(a, true, err);
        if (r < 0) {
                drain_free(d);
                return r;
        }
        d->cli = cli;
        cli->drain = d;
        log_info("draining %s: %zu container(s) to %zu target(s), %u at a time%s", a->cfg.node, d->n_items,
                 d->n_targets, d->parallel, was_cordoned ? "" : "; cordoned it first");
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "%s %s cordoned: it refuses incoming moves (nucleus-migrate uncordon accepts them again)",
                 a->cfg.node, was_cordoned ? "was" : "is now");
        drain_event(d, NULL, "cordoned", msg);
        drain_event(d, NULL, "drain", "asking the targets for room");
        for (size_t i = 0; i < d->n_targets; i++) {
                drain_target *t = &d->targets[i];
                nm_error e = {};
                if (peer_link_open(a, t->name, NULL, &target_ops, t, &e, &t->link) < 0) {
                        snprintf(t->why, sizeof(t->why), "%s", e.msg);
                        (void)target_answered(t);
                }
        }
        /* Every link failed at once: the drain may end (and d go) here. */
        if (d->n_answered == d->n_targets)
                targets_all_answered(d);
        return 0;
}
