/* SPDX-License-Identifier: Apache-2.0 */
/* Fault injection for the fault tests (see mig.h): inert unless NM_FAULT
 * is set. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "ckpt.h"
#include "log.h"
#include "mig.h"

static bool fault_has(const char *kind, const char *what) {
        const char *spec = getenv("NM_FAULT");
        char want[96];
        size_t n;
        if (!spec || !*spec)
                return false;
        n = (size_t)snprintf(want, sizeof(want), "%s=%s", kind, what);
        for (const char *p = spec; (p = strstr(p, want)); p += n)
                if ((p == spec || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
                        return true;
        return false;
}

bool fault_fail(const char *point) {
        if (!fault_has("fail", point))
                return false;
        log_warning("fault injection: failing %s (NM_FAULT)", point);
        return true;
}

const char *fault_stall_gate(const char *what) {
        const char *gate = getenv("NM_FAULT_GATE");
        if (!gate || !fault_has("stall", what))
                return NULL;
        log_warning("fault injection: %s stall while %s exists (NM_FAULT)", what, gate);
        return gate;
}

void fault_point(mig *m, const char *point) {
        const char *gate = getenv("NM_FAULT_GATE");
        if (fault_has("crash-after", point)) {
                log_ctx_warning(m->id, "fault injection: killing this agent at %s", point);
                raise(SIGKILL);
        }
        if (fault_has("hang-after", point)) {
                log_ctx_warning(m->id, "fault injection: this agent stops at %s", point);
                /* Stop everything, as a wedged agent would, until killed. */
                for (;;)
                        pause();
        }
        if (fault_has("pause-after", point) && gate) {
                /* The whole agent stands still at this exact point (as a slow
                 * or stuck node would) until the test removes the gate file:
                 * that is when it injects its fault. */
                log_ctx_warning(m->id, "fault injection: paused at %s until %s is removed", point, gate);
                while (access(gate, F_OK) == 0)
                        usleep(20000);
                log_ctx_warning(m->id, "fault injection: going on from %s", point);
        }
}

/* The hold runs on the worker that talks to CRIU, never on the loop: the
 * agent goes on meanwhile (its peers, the CRIU keeper's deadline) as it
 * does while CRIU works. A hold that comes with the gate already gone lets
 * CRIU go on at once, so a later notification of the same name (a
 * rollback's restore) passes. */
static void criu_hold(const char *event) {
        const char *gate = getenv("NM_FAULT_GATE");
        if (!gate || !fault_has("criu-hold-at", event) || access(gate, F_OK) != 0)
                return;
        log_warning("fault injection: CRIU held at %s until %s is removed", event, gate);
        while (access(gate, F_OK) == 0)
                usleep(20000);
        log_warning("fault injection: CRIU goes on from %s", event);
}

/* The deaf session (fault_peer_bytes): one per agent, enough for a test. */
static struct {
        uv_timer_t timer;
        xfer_conn *conn; /* NULL: none */
        uint64_t seq;
        bool wanted; /* NM_FAULT has fail=peer-reading: read once, as the hook runs per frame */
        bool made;
} deaf;

void fault_setup(void) {
        const char *spec = getenv("NM_FAULT");
        /* ckpt offers the hold point (CRIU's notification, where CRIU waits
         * for us); whether and where to hold is the fault tests' policy, so
         * it is decided here and ckpt never reads NM_FAULT. */
        if (spec && strstr(spec, "criu-hold-at="))
                ckpt_set_criu_hold(criu_hold);
        deaf.wanted = fault_has("fail", "peer-reading");
}

static void deaf_tick(uv_timer_t *t) {
        proto_msg ping = {.type = PROTO_MSG_PING, .ping = {.seq = ++deaf.seq}};
        proto_msg pong = {.type = PROTO_MSG_PONG, .pong = {.seq = deaf.seq}};
        (void)t;
        if (!deaf.conn)
                return;
        (void)xfer_conn_send(deaf.conn, &ping, NULL);
        (void)xfer_conn_send(deaf.conn, &pong, NULL);
}

static void deaf_start(agent *a, xfer_conn *c) {
        if (!deaf.made) {
                (void)uv_timer_init(a->loop, &deaf.timer);
                uv_unref((uv_handle_t *)&deaf.timer);
                deaf.made = true;
        }
        deaf.conn = c;
        xfer_conn_hold_reading(c, true);
        (void)uv_timer_start(&deaf.timer, deaf_tick, 2000, 2000);
}

void fault_peer_bytes(agent *a, xfer_conn *c) {
        if (!deaf.wanted || deaf.conn || !fault_fail("peer-reading"))
                return;
        deaf_start(a, c);
}

bool fault_peer_hello(agent *a, xfer_conn *c) {
        if (deaf.conn || !fault_fail("peer-hello"))
                return false;
        deaf_start(a, c);
        return true;
}

void fault_peer_closed(xfer_conn *c) {
        if (!deaf.conn || deaf.conn != c)
                return;
        deaf.conn = NULL;
        (void)uv_timer_stop(&deaf.timer);
}
