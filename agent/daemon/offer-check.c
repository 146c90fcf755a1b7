/* SPDX-License-Identifier: Apache-2.0 */
/* The target's checks of an OFFER that block, on the thread pool (see
 * offer-check.h). */
#include "offer-check.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"

/* A drain sends the same CPU image with each of its moves, and CRIU here
 * judges it the same as long as the same CRIU runs on the same CPU: a pass
 * is believed again for CPU_PASS_USEC (`criu cpuinfo check` is a fork and
 * exec of CRIU, a tenth of a second, in every move's offer). Kept that
 * long only, for a VM moved to another host or CRIU replaced under a
 * running agent; a refusal is always asked again. */
#define CPU_PASS_USEC (10 * 60 * 1000000ULL)

typedef enum offer_cpu {
        OFFER_CPU_NONE,   /* the offer carries no CPU image */
        OFFER_CPU_ASK,    /* CRIU judges it on the pool */
        OFFER_CPU_PASSED, /* CRIU here accepted the same image lately */
        _OFFER_CPU_MAX,
        _OFFER_CPU_INVALID = -EINVAL,
} offer_cpu;

/* One OFFER's checks under way. */
struct offer_check {
        uv_work_t work;
        agent *a;
        ctl_conn *cc; /* NULL once the session ended */
        offer_check_done done;
        proto_offer offer;     /* its strings and bins are ours */
        ckpt_native *ports_of; /* NULL: no ports to check */
        offer_cpu cpu;
        offer_verdict verdict;
};

static cpu_pass *cpu_pass_find(agent *a, const proto_bin *img) {
        uint64_t now = now_usec();

        for (size_t i = 0; i < AGENT_CPU_PASSES; i++) {
                cpu_pass *p = &a->cpu_passes[i];
                if (p->img && p->len == img->len && now - p->at_usec < CPU_PASS_USEC &&
                    memcmp(p->img, img->ptr, img->len) == 0)
                        return p;
        }
        return NULL;
}

/* Replaces the oldest slot: a peer sending many images only ages the
 * rest out sooner. */
static void cpu_pass_add(agent *a, const proto_bin *img) {
        cpu_pass *oldest = &a->cpu_passes[0];
        uint8_t *copy;

        for (size_t i = 1; i < AGENT_CPU_PASSES; i++)
                if (!a->cpu_passes[i].img || a->cpu_passes[i].at_usec < oldest->at_usec)
                        oldest = &a->cpu_passes[i];
        copy = malloc(img->len);
        if (!copy)
                return;
        memcpy(copy, img->ptr, img->len);
        free(oldest->img);
        *oldest = (cpu_pass){.img = copy, .len = img->len, .at_usec = now_usec()};
}

void offer_check_free_passes(agent *a) {
        for (size_t i = 0; i < AGENT_CPU_PASSES; i++) {
                free(a->cpu_passes[i].img);
                a->cpu_passes[i] = (cpu_pass){};
        }
}

static void offer_done(proto_offer *o) {
        free((char *)o->mig);
        free((char *)o->container_id);
        free((char *)o->container_name);
        free((char *)o->criu_version);
        free((char *)o->kernel);
        free((uint8_t *)o->cpuinfo.ptr);
        free((uint8_t *)o->metadata.ptr);
}

static void offer_check_free(offer_check *c) {
        offer_done(&c->offer);
        ckpt_native_free(c->ports_of);
        free(c);
}

static char *dup_or_empty(const char *s) {
        return strdup(strempty(s));
}

static void *dup_bytes(const proto_bin *b) {
        void *p = malloc(b->len ? b->len : 1);
        if (p && b->len)
                memcpy(p, b->ptr, b->len);
        return p;
}

/* The offer, for the callback: the session's message is gone by then. */
static int offer_copy(const proto_offer *o, proto_offer *ret) {
        proto_offer c = {.mig = dup_or_empty(o->mig),
                         .container_id = dup_or_empty(o->container_id),
                         .container_name = dup_or_empty(o->container_name),
                         .image_bytes = o->image_bytes,
                         .criu_version = dup_or_empty(o->criu_version),
                         .kernel = dup_or_empty(o->kernel),
                         .lazy = o->lazy,
                         .ps_stream = o->ps_stream,
                         .has_ps_stream = o->has_ps_stream,
                         .lanes = o->lanes,
                         .has_lanes = o->has_lanes,
                         .cpuinfo = {o->cpuinfo.ptr ? dup_bytes(&o->cpuinfo) : NULL, o->cpuinfo.len},
                         .metadata = {dup_bytes(&o->metadata), o->metadata.len}};

        *ret = c; /* freed by the caller on failure too */
        if (!c.mig || !c.container_id || !c.container_name || !c.criu_version || !c.kernel ||
            (o->cpuinfo.ptr && !c.cpuinfo.ptr) || !c.metadata.ptr)
                return -ENOMEM;
        return 0;
}

/* A failure leaves its code in e (a function may return one without
 * saying); a success leaves nothing there. */
static void verdict_set(nm_error *e, int r, const char *what) {
        if (r >= 0)
                nm_error_clear(e);
        else if (e->code == 0)
                nm_error_errno(e, r, "%s failed", what);
}

static void check_work(uv_work_t *w) {
        offer_check *c = w->data;
        offer_verdict *v = &c->verdict;
        int r;

        if (c->cpu == OFFER_CPU_ASK) {
                r = ckpt_cpuinfo_check(c->a->criu, c->a->cfg.work_dir, c->offer.cpuinfo.ptr,
                                       c->offer.cpuinfo.len, &v->cpu);
                verdict_set(&v->cpu, r, "the CPU check");
                if (r < 0)
                        return;
        }
        if (c->ports_of) {
                r = ckpt_native_check_ports(c->ports_of, &v->ports);
                verdict_set(&v->ports, r, "the published ports' check");
        }
}

static void check_after(uv_work_t *w, int status) {
        offer_check *c = w->data;
        ctl_conn *cc = c->cc;

        if (c->cpu == OFFER_CPU_ASK && status == 0 && c->verdict.cpu.code == 0)
                cpu_pass_add(c->a, &c->offer.cpuinfo);
        if (cc) {
                cc->offer_check = NULL;
                c->done(cc, &c->offer, status == UV_ECANCELED ? -ECANCELED : 0, &c->verdict);
        }
        offer_check_free(c);
}

int offer_check_start(ctl_conn *cc, const proto_offer *o, ckpt_native *ports_of, offer_check_done done,
                      nm_error *err) {
        offer_check *c = calloc(1, sizeof(*c));

        if (!c) {
                ckpt_native_free(ports_of);
                return nm_error_set(err, -ENOMEM, "out of memory");
        }
        c->work.data = c;
        c->a = cc->a;
        c->cc = cc;
        c->done = done;
        c->ports_of = ports_of; /* transferred */
        if (offer_copy(o, &c->offer) < 0) {
                offer_check_free(c);
                return nm_error_set(err, -ENOMEM, "out of memory");
        }
        c->cpu = !o->cpuinfo.ptr                     ? OFFER_CPU_NONE
                 : cpu_pass_find(cc->a, &o->cpuinfo) ? OFFER_CPU_PASSED
                                                     : OFFER_CPU_ASK;
        if (c->cpu == OFFER_CPU_PASSED)
                log_ctx_debug(c->offer.mig, "CRIU here accepted this CPU image lately: not asked again");
        if (uv_queue_work(cc->a->loop, &c->work, check_work, check_after) < 0) {
                offer_check_free(c);
                return nm_error_set(err, -EIO, "cannot queue the offer's checks");
        }
        cc->offer_check = c;
        return 0;
}

void offer_check_conn_closed(ctl_conn *cc) {
        if (cc->offer_check)
                cc->offer_check->cc = NULL;
        cc->offer_check = NULL;
}
