/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus metrics in a file for node_exporter's textfile collector (see
 * metrics.h). */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "metrics.h"
#include "mig.h"
#include "precheck.h"

#define METRICS_EVERY_MS 15000
#define LABELLED_MAX 64

/* Seconds: downtime lives in the first buckets, a slow stream in the last. */
static const double buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define N_BUCKETS ARRAY_SIZE(buckets)

typedef struct histogram {
        uint64_t le[N_BUCKETS]; /* observations <= buckets[i] (not cumulative here) */
        uint64_t count;
        double sum;
} histogram;

/* A counter or histogram per label set, e.g. {role="source",outcome="done"}. */
typedef struct labelled {
        char labels[160];
        uint64_t value;
        histogram h;
} labelled;

typedef struct family {
        labelled v[LABELLED_MAX];
        size_t n;
} family;

typedef enum stage {
        STAGE_DUMP,
        STAGE_STREAM,
        STAGE_RESTORE,
        STAGE_COMMIT,
        _STAGE_MAX,
} stage;

static const char *const stage_keys[_STAGE_MAX] = {"dump_ms", "stream_ms", "restore_ms", "commit_ms"};
static const char *const stage_names[_STAGE_MAX] = {"dump", "stream", "restore", "commit"};

struct metrics {
        agent *a;
        uv_timer_t timer;
        uv_work_t work;
        bool writing, dirty, closing;
        char *path; /* [agent] metrics_file, ours: the worker reads it */
        char *text; /* being written */
        int status;
        nm_error err;
        bool warned;
        int64_t started_ms;
        family moves, refusals, drains, bytes, stages;
        uint64_t rollbacks;
        histogram downtime, duration;
};

static labelled *find(family *f, const char *labels) {
        for (size_t i = 0; i < f->n; i++)
                if (strcmp(f->v[i].labels, labels) == 0)
                        return &f->v[i];
        if (f->n == LABELLED_MAX)
                return NULL; /* label values are our own words: never this many */
        snprintf(f->v[f->n].labels, sizeof(f->v[f->n].labels), "%s", labels);
        return &f->v[f->n++];
}

/* A label value as the text format wants it: \, " and newline escaped. */
static void label_value(char *out, size_t n, const char *v) {
        size_t k = 0;
        for (; v && *v && k + 3 < n; v++) {
                if (*v == '\\' || *v == '"' || *v == '\n')
                        out[k++] = '\\';
                if (*v == '\n')
                        out[k++] = 'n';
                else
                        out[k++] = *v;
        }
        out[k] = '\0';
}

static void count(family *f, uint64_t by, const char *fmt, ...) _printf_(3, 4);
static void count(family *f, uint64_t by, const char *fmt, ...) {
        char labels[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(labels, sizeof(labels), fmt, ap);
        va_end(ap);
        labelled *l = find(f, labels);
        if (l)
                l->value += by;
}

static void observe(histogram *h, double v) {
        for (size_t i = 0; i < N_BUCKETS; i++)
                if (v <= buckets[i]) {
                        h->le[i]++;
                        break;
                }
        h->count++;
        h->sum += v;
}

/* ---- the text ---- */

typedef struct out {
        char *buf;
        size_t len, size;
        bool failed;
} out;

static void put(out *o, const char *fmt, ...) _printf_(2, 3);
static void put(out *o, const char *fmt, ...) {
        va_list ap;
        for (;;) {
                size_t room = o->size - o->len;
                va_start(ap, fmt);
                int n = o->buf ? vsnprintf(o->buf + o->len, room, fmt, ap) : -1;
                va_end(ap);
                if (n >= 0 && (size_t)n < room) {
                        o->len += (size_t)n;
                        return;
                }
                size_t want = o->size ? o->size * 2 : 8192;
                char *b = realloc(o->buf, want);
                if (!b) {
                        o->failed = true;
                        return;
                }
                o->buf = b;
                o->size = want;
        }
}

static void head(out *o, const char *name, const char *type, const char *help) {
        put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_family(out *o, const char *name, const char *help, const family *f) {
        head(o, name, "counter", help);
        for (size_t i = 0; i < f->n; i++)
                put(o, "%s{%s} %llu\n", name, f->v[i].labels, (unsigned long long)f->v[i].value);
}

static void put_histogram(out *o, const char *name, const char *labels, const histogram *h) {
        uint64_t cum = 0;
        const char *sep = labels[0] ? "," : "";
        for (size_t i = 0; i < N_BUCKETS; i++) {
                cum += h->le[i];
                put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, buckets[i],
                    (unsigned long long)cum);
        }
        put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)h->count);
        put(o, "%s_sum%s%s%s %.6f\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "", h->sum);
        put(o, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
            (unsigned long long)h->count);
}

static unsigned in_doubt(agent *a) {
        unsigned n = 0;
        mig *m;
        LIST_FOREACH(migs, m, a->migs)
        if (!m->finished && ((m->role == MIG_ROLE_DEST && m->dst.phase == DST_IN_DOUBT) ||
                             (m->role == MIG_ROLE_SOURCE && m->src.phase == SRC_COMMITTED && m->doubt.code)))
                n++;
        return n;
}

static char *render(metrics *mt) {
        agent *a = mt->a;
        json_t *pc = precheck_status(a);
        out o = {};

        head(&o, "nucleus_migrate_agent_start_time_seconds", "gauge",
             "When this agent started (unix time).");
        put(&o, "nucleus_migrate_agent_start_time_seconds %.3f\n", (double)mt->started_ms / 1000);
        put_family(&o, "nucleus_migrate_moves_total",
                   "Migrations that ended on this node, by role and outcome.", &mt->moves);
        head(&o, "nucleus_migrate_rollbacks_total", "counter",
             "Moves this node rolled back: stopped, then restored here from its own images.");
        put(&o, "nucleus_migrate_rollbacks_total %llu\n", (unsigned long long)mt->rollbacks);
        put_family(&o, "nucleus_migrate_refusals_total",
                   "Moves refused before anything was frozen, by side and reason.", &mt->refusals);
        put_family(&o, "nucleus_migrate_drains_total", "Drains of this node, by outcome.", &mt->drains);
        put_family(&o, "nucleus_migrate_bytes_total", "Image bytes of ended migrations, by role.",
                   &mt->bytes);
        head(&o, "nucleus_migrate_in_doubt", "gauge",
             "Migrations whose outcome this node cannot learn yet (see nucleus-migrate resolve).");
        put(&o, "nucleus_migrate_in_doubt %u\n", in_doubt(a));
        head(&o, "nucleus_migrate_in_flight", "gauge", "Migrations under way, by role.");
        put(&o, "nucleus_migrate_in_flight{role=\"source\"} %u\n", a->n_src);
        put(&o, "nucleus_migrate_in_flight{role=\"destination\"} %u\n", a->n_dst);
        head(&o, "nucleus_migrate_cordoned", "gauge", "1 while this node refuses incoming moves.");
        put(&o, "nucleus_migrate_cordoned %d\n", a->cordoned ? 1 : 0);
        head(&o, "nucleus_migrate_criu_check_ok", "gauge", "1 while criu check passes on this node.");
        put(&o, "nucleus_migrate_criu_check_ok %d\n",
            strcmp(json_string_value(json_object_get(pc, "criu_check")), "passed") == 0 ? 1 : 0);
        json_decref(pc);
        head(&o, "nucleus_migrate_downtime_seconds", "histogram",
             "Time a moved container did not run: from the freeze until it resumed.");
        put_histogram(&o, "nucleus_migrate_downtime_seconds", "", &mt->downtime);
        head(&o, "nucleus_migrate_duration_seconds", "histogram",
             "Time from the request to the end of a move.");
        put_histogram(&o, "nucleus_migrate_duration_seconds", "", &mt->duration);
        head(&o, "nucleus_migrate_stage_seconds", "histogram", "Time each stage of a move took, by stage.");
        for (size_t i = 0; i < mt->stages.n; i++)
                put_histogram(&o, "nucleus_migrate_stage_seconds", mt->stages.v[i].labels,
                              &mt->stages.v[i].h);
        if (o.failed) {
                free(o.buf);
                return NULL;
        }
        return o.buf;
}

/* ---- the file ---- */

static void write_work(uv_work_t *w) {
        metrics *mt = w->data;
        _cleanup_free_ char *d = strdup(mt->path), *b = strdup(mt->path);
        _cleanup_close_ int dfd = -EBADF;

        if (!d || !b) {
                mt->status = -ENOMEM;
                return;
        }
        dfd = open_dir_nofollow(dirname(d));
        mt->status =
                dfd < 0 ? dfd : write_file_atomic_at(dfd, basename(b), mt->text, strlen(mt->text), 0644);
}

static void flush(metrics *mt);

static void write_done(uv_work_t *w, int status) {
        metrics *mt = w->data;
        (void)status;
        free(mt->text);
        mt->text = NULL;
        mt->writing = false;
        if (mt->closing) {
                free(mt->path);
                free(mt);
                return;
        }
        if (mt->status < 0 && !mt->warned) {
                log_warning("cannot write the metrics file %s: %s (said once)", mt->path,
                            strerror(-mt->status));
                mt->warned = true;
        } else if (mt->status >= 0)
                mt->warned = false;
        if (mt->dirty && !mt->closing)
                flush(mt);
}

/* One write at a time; what changes meanwhile is written next. */
static void flush(metrics *mt) {
        if (mt->writing) {
                mt->dirty = true;
                return;
        }
        mt->dirty = false;
        mt->text = render(mt);
        if (!mt->text)
                return;
        mt->writing = true;
        mt->work.data = mt;
        if (uv_queue_work(mt->a->loop, &mt->work, write_work, write_done) < 0) {
                free(mt->text);
                mt->text = NULL;
                mt->writing = false;
        }
}

static void on_timer(uv_timer_t *t) {
        flush(t->data);
}

int metrics_start(agent *a, nm_error *err) {
        metrics *mt;

        if (!a->cfg.metrics_file)
                return 0;
        mt = calloc(1, sizeof(*mt));
        if (!mt)
                return nm_error_set(err, -ENOMEM, "out of memory");
        mt->a = a;
        mt->path = strdup(a->cfg.metrics_file);
        if (!mt->path) {
                free(mt);
                return nm_error_set(err, -ENOMEM, "out of memory");
        }
        mt->started_ms = unix_ms();
        uv_timer_init(a->loop, &mt->timer);
        mt->timer.data = mt;
        uv_timer_start(&mt->timer, on_timer, 0, METRICS_EVERY_MS);
        a->metrics = mt;
        return 0;
}

static void timer_closed(uv_handle_t *h) {
        metrics *mt = h->data;
        if (mt->writing) { /* the write's end frees it */
                mt->closing = true;
                return;
        }
        free(mt->path);
        free(mt);
}

void metrics_stop(agent *a) {
        metrics *mt = a->metrics;
        if (!mt)
                return;
        a->metrics = NULL;
        uv_close((uv_handle_t *)&mt->timer, timer_closed);
}

/* ---- what is counted ---- */

void metrics_mig_end(agent *a, const json_t *result) {
        metrics *mt = a->metrics;
        const char *role, *outcome;
        json_t *down, *stages, *v;
        const char *key;
        char lrole[32], lout[64];

        if (!mt || !result)
                return;
        role = json_string_value(json_object_get(result, "role"));
        outcome = json_string_value(json_object_get(result, "outcome"));
        label_value(lrole, sizeof(lrole), role);
        label_value(lout, sizeof(lout), outcome);
        count(&mt->moves, 1, "role=\"%s\",outcome=\"%s\"", lrole, lout);
        if (outcome && strcmp(outcome, "rolled-back") == 0)
                mt->rollbacks++;
        count(&mt->bytes, (uint64_t)json_integer_value(json_object_get(result, "bytes")), "role=\"%s\"",
              lrole);
        down = json_object_get(result, "downtime_ms");
        if (json_is_integer(down) && outcome &&
            (strcmp(outcome, "done") == 0 || strcmp(outcome, "running") == 0))
                observe(&mt->downtime, (double)json_integer_value(down) / 1000);
        if (role && strcmp(role, "source") == 0 && outcome && strcmp(outcome, "done") == 0)
                observe(&mt->duration,
                        (double)json_integer_value(json_object_get(result, "duration_ms")) / 1000);
        stages = json_object_get(result, "stages");
        json_object_foreach(stages, key, v) {
                for (size_t i = 0; i < _STAGE_MAX; i++) {
                        if (strcmp(key, stage_keys[i]) != 0 || !json_is_integer(v))
                                continue;
                        char labels[64];
                        snprintf(labels, sizeof(labels), "stage=\"%s\"", stage_names[i]);
                        labelled *l = find(&mt->stages, labels);
                        if (l)
                                observe(&l->h, (double)json_integer_value(v) / 1000);
                }
        }
        flush(mt);
}

void metrics_refusal(agent *a, const char *side, const char *reason) {
        metrics *mt = a->metrics;
        char lreason[64];
        if (!mt)
                return;
        label_value(lreason, sizeof(lreason), reason);
        count(&mt->refusals, 1, "side=\"%s\",reason=\"%s\"", side, lreason);
        flush(mt);
}

void metrics_drain(agent *a, const char *outcome) {
        metrics *mt = a->metrics;
        if (!mt)
                return;
        count(&mt->drains, 1, "outcome=\"%s\"", outcome);
        flush(mt);
}
