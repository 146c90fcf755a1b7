/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared by the handoff core tests: action lists as one readable line
 * ("journal(committed) send-COMMIT"), so that a table row says what must
 * happen and a failure prints what did. */

#include <stdio.h>
#include <string.h>

#include "handoff-dst.h"
#include "handoff-src.h"

#define ACTS_TEXT_MAX 1024

static inline void acts_append(char *buf, const char *name, const char *arg) {
        size_t n = strlen(buf);
        snprintf(buf + n, ACTS_TEXT_MAX - n, "%s%s%s%s%s", n ? " " : "", name, arg ? "(" : "",
                 arg ? arg : "", arg ? ")" : "");
}

static inline const char *src_acts_text(const src_actions *a, char buf[ACTS_TEXT_MAX]) {
        buf[0] = '\0';
        for (size_t i = 0; i < a->n; i++) {
                const src_action *x = &a->v[i];
                char num[32];
                const char *arg = NULL;
                if (x->kind == SRC_DO_JOURNAL)
                        arg = src_phase_to_string(x->phase);
                else if (x->kind == SRC_DO_NOTE_FAILURE)
                        arg = src_why_to_string(x->why);
                else if (x->kind == SRC_DO_START_ROLLBACK)
                        snprintf(num, sizeof(num), "%u", x->attempt), arg = num;
                else if (x->kind == SRC_DO_ROLLBACK_LATER || x->kind == SRC_DO_RECONNECT_LATER)
                        snprintf(num, sizeof(num), "%u", x->delay_ms), arg = num;
                else if (x->kind == SRC_DO_ANSWER)
                        arg = handoff_outcome_to_string(x->outcome);
                acts_append(buf, src_action_to_string(x->kind), arg);
        }
        return buf;
}

static inline const char *dst_acts_text(const dst_actions *a, char buf[ACTS_TEXT_MAX]) {
        buf[0] = '\0';
        for (size_t i = 0; i < a->n; i++) {
                const dst_action *x = &a->v[i];
                char num[32];
                const char *arg = NULL;
                if (x->kind == DST_DO_JOURNAL)
                        arg = dst_phase_to_string(x->phase);
                else if (x->kind == DST_DO_NOTE_FAILURE || x->kind == DST_DO_NOTE_DISCARD)
                        arg = dst_why_to_string(x->why);
                else if (x->kind == DST_DO_SEND_ERROR)
                        snprintf(num, sizeof(num), "%d", x->code), arg = num;
                else if (x->kind == DST_DO_ASK_LATER)
                        snprintf(num, sizeof(num), "%u", x->delay_ms), arg = num;
                acts_append(buf, dst_action_to_string(x->kind), arg);
        }
        return buf;
}

/* Index of the first action of this kind (and phase, for JOURNAL; -1: any),
 * or -1. */
static inline int src_find(const src_actions *a, src_action_kind kind, int phase) {
        for (size_t i = 0; i < a->n; i++)
                if (a->v[i].kind == kind &&
                    (kind != SRC_DO_JOURNAL || phase < 0 || (int)a->v[i].phase == phase))
                        return (int)i;
        return -1;
}

static inline int dst_find(const dst_actions *a, dst_action_kind kind, int phase) {
        for (size_t i = 0; i < a->n; i++)
                if (a->v[i].kind == kind &&
                    (kind != DST_DO_JOURNAL || phase < 0 || (int)a->v[i].phase == phase))
                        return (int)i;
        return -1;
}

/* The next digit of a mixed-radix counter: walking every state and event,
 * one value each. */
static inline unsigned digit(size_t *k, size_t base) {
        unsigned d = (unsigned)(*k % base);
        *k /= base;
        return d;
}
