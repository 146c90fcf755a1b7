/* SPDX-License-Identifier: Apache-2.0 */
/* CRIU operations run one at a time: libcriu's notification callback has no
 * user data, so ckpt/ allows a single dump or restore per process. Dumps are
 * short (about a second per GiB), so a queue costs little. */
#include "agent.h"

static criu_job *queue_tail(agent *a) {
        criu_job *j = a->criu_queue;
        while (j && j->queue_next)
                j = j->queue_next;
        return j;
}

static void queue_kick(agent *a) {
        if (a->criu_busy || !a->criu_queue)
                return;
        a->criu_busy = true;
        a->criu_queue->start(a->criu_queue);
}

void criu_queue_push(agent *a, criu_job *job) {
        criu_job *tail = queue_tail(a);
        job->queue_next = NULL;
        job->queue_prev = tail;
        if (tail)
                tail->queue_next = job;
        else
                a->criu_queue = job;
        queue_kick(a);
}

void criu_queue_done(agent *a, criu_job *job) {
        if (a->criu_queue == job)
                a->criu_busy = false;
        LIST_REMOVE(queue, a->criu_queue, job);
        queue_kick(a);
}

bool criu_queue_cancel(agent *a, criu_job *job) {
        criu_job *j;

        for (j = a->criu_queue; j && j != job; j = j->queue_next)
                ;
        if (!j || (j == a->criu_queue && a->criu_busy))
                return false;
        LIST_REMOVE(queue, a->criu_queue, job);
        return true;
}
