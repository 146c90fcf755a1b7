/* SPDX-License-Identifier: Apache-2.0 */
/* The public xfer_session: checks the caller's arguments and hands each
 * call to the session's way of running, chosen once at xfer_session_new()
 * (xfer_ssh_options.thread): on the caller's loop (ssh.c) or on a thread
 * of its own (ssh-thread.c, which runs ssh.c's session there). Neither of
 * those calls back into this file, so a reader can take either alone. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "ssh-ctr.h"
#include "transfer-internal.h"

typedef enum xfer_session_phase {
        XFER_SESSION_OPEN,
        XFER_SESSION_CLOSING,
        _XFER_SESSION_PHASE_MAX,
        _XFER_SESSION_PHASE_INVALID = -EINVAL,
} xfer_session_phase;

struct xfer_session {
        xfer_ssh_thread where;
        xfer_session_phase phase;
        xfer__ssh_loop *on_loop;     /* XFER_SSH_ON_LOOP */
        xfer__ssh_thread *on_thread; /* XFER_SSH_ON_THREAD */
        xfer_session_close_cb close_cb;
        void *close_ud;
};

static pthread_once_t libssh2_once = PTHREAD_ONCE_INIT;
static int libssh2_init_result;
static void libssh2_init_once(void) {
        libssh2_init_result = libssh2_init(0);
        /* Only speed depends on it: without it, OpenSSL's own AES-CTR. */
        (void)xfer_ssh_ctr_install(NULL);
}

int xfer_session_new(uv_loop_t *loop, const xfer_ssh_options *o, nm_error *err, xfer_session **ret) {
        xfer_session *s;
        int r;

        if (!loop || !o || !ret)
                return -EINVAL;
        if (!o->host || !o->host[0])
                return nm_error_set(err, -EINVAL, "no host to connect to");
        if (!o->key_file || !o->known_hosts)
                return nm_error_set(err, -EINVAL, "SSH to %s needs a key file and a known hosts file",
                                    o->host);
        pthread_once(&libssh2_once, libssh2_init_once);
        if (libssh2_init_result != 0)
                return nm_error_set(err, -EIO, "libssh2 failed to initialise");

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->where = o->thread == XFER_SSH_ON_THREAD ? XFER_SSH_ON_THREAD : XFER_SSH_ON_LOOP;
        if (s->where == XFER_SSH_ON_THREAD)
                r = xfer__ssh_thread_new(loop, o, s, err, &s->on_thread);
        else
                r = xfer__ssh_loop_new(loop, o, s, &s->on_loop);
        if (r < 0) {
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int xfer_session_connect(xfer_session *s, xfer_session_connect_cb cb, void *userdata) {
        if (!s || !cb)
                return -EINVAL;
        if (s->phase == XFER_SESSION_CLOSING)
                return -ECANCELED;
        if (s->where == XFER_SSH_ON_THREAD)
                return xfer__ssh_thread_connect(s->on_thread, cb, userdata);
        return xfer__ssh_loop_connect(s->on_loop, cb, userdata);
}

int xfer_session_exec(xfer_session *s, const char *command, const xfer_conn_callbacks *cbs,
                      void *conn_userdata, xfer_session_exec_cb cb, void *userdata) {
        if (!s || !cbs || !cbs->closed || !cb)
                return -EINVAL;
        if (s->phase == XFER_SESSION_CLOSING)
                return -ECANCELED;
        if (s->where == XFER_SSH_ON_THREAD)
                return xfer__ssh_thread_exec(s->on_thread, command, cbs, conn_userdata, cb, userdata);
        return xfer__ssh_loop_exec(s->on_loop, command, cbs, conn_userdata, cb, userdata);
}

/* The way of running has freed its memory; ours goes after the callback,
 * as transfer.h promises. */
static void session_closed(xfer_session *s, void *userdata) {
        (void)userdata;
        if (s->close_cb)
                s->close_cb(s, s->close_ud);
        free(s);
}

void xfer_session_close(xfer_session *s, xfer_session_close_cb cb, void *userdata) {
        if (!s || s->phase == XFER_SESSION_CLOSING)
                return;
        s->phase = XFER_SESSION_CLOSING;
        s->close_cb = cb;
        s->close_ud = userdata;
        if (s->where == XFER_SSH_ON_THREAD)
                xfer__ssh_thread_close(s->on_thread, session_closed, s);
        else
                xfer__ssh_loop_close(s->on_loop, session_closed, s);
}

const char *xfer_session_fingerprint(const xfer_session *s) {
        if (s->where == XFER_SSH_ON_THREAD)
                return xfer__ssh_thread_fingerprint(s->on_thread);
        return xfer__ssh_loop_fingerprint(s->on_loop);
}
