/* SPDX-License-Identifier: Apache-2.0 */
#include "history.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

struct history {
        json_t *by_id; /* id -> summary, with "ended" (ms) and "seq" (order of arrival) */
        json_int_t seq;
        int64_t keep_ms; /* 0: for ever */
};

history *history_new(int64_t keep_ms) {
        history *h = calloc(1, sizeof(*h));
        if (!h)
                return NULL;
        h->keep_ms = keep_ms;
        h->by_id = json_object();
        if (!h->by_id) {
                free(h);
                return NULL;
        }
        return h;
}

void history_set_keep(history *h, int64_t keep_ms) {
        h->keep_ms = keep_ms;
}

history *history_free(history *h) {
        if (!h)
                return NULL;
        json_decref(h->by_id);
        free(h);
        return NULL;
}

static const char *str_of(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

static bool same_str(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void drop(history *h, const char *id, json_t *forget) {
        json_array_append_new(forget, json_string(id));
        json_object_del(h->by_id, id);
}

/* Records past their age, then the oldest of this (role, peer) beyond its
 * share. One pass each: a few thousand entries at most. */
static void prune(history *h, const char *role, const char *peer, int64_t now_ms, json_t *forget) {
        const char *id, *oldest = NULL;
        json_int_t oldest_seq = 0;
        size_t same = 0;
        json_t *e;
        void *tmp;

        json_object_foreach_safe(h->by_id, tmp, id, e) {
                if (h->keep_ms && now_ms - json_integer_value(json_object_get(e, "ended")) > h->keep_ms) {
                        drop(h, id, forget);
                        continue;
                }
                if (!same_str(str_of(e, "role"), role) || !same_str(str_of(e, "peer"), peer))
                        continue;
                same++;
                if (!oldest || json_integer_value(json_object_get(e, "seq")) < oldest_seq) {
                        oldest = id;
                        oldest_seq = json_integer_value(json_object_get(e, "seq"));
                }
        }
        if (same > HISTORY_KEEP_PER_PEER && oldest) {
                char gone[80];
                snprintf(gone, sizeof(gone), "%s", oldest);
                drop(h, gone, forget);
        }
}

int history_add(history *h, const json_t *rec, int64_t now_ms, json_t *forget) {
        const char *id = str_of(rec, "mig");
        /* Its age counts from its start: a restart must not make old
         * records young again. */
        json_int_t at = json_integer_value(json_object_get(rec, "created_at"));
        json_t *e;

        if (!id || !*id)
                return -EINVAL;
        e = json_pack("{s:O?, s:O?, s:O?, s:O?, s:I, s:I}", "role", json_object_get(rec, "role"), "phase",
                      json_object_get(rec, "phase"), "peer", json_object_get(rec, "peer"), "restored_pid",
                      json_object_get(rec, "restored_pid"), "ended", at > 0 ? at : (json_int_t)now_ms, "seq",
                      ++h->seq);
        if (!e || json_object_set_new(h->by_id, id, e) < 0)
                return -ENOMEM;
        prune(h, str_of(e, "role"), str_of(e, "peer"), now_ms, forget);
        return 0;
}

const json_t *history_get(const history *h, const char *id) {
        return id ? json_object_get(h->by_id, id) : NULL;
}

size_t history_size(const history *h) {
        return json_object_size(h->by_id);
}
