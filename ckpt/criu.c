/* SPDX-License-Identifier: Apache-2.0 */
/* Dump and restore with libcriu on the libuv thread pool. The only file of
 * the project that includes criu.h.
 *
 * libcriu's calls block: they fork `criu swrk`, talk RPC over a socketpair
 * and waitpid() that one child (never -1). They run under uv_queue_work.
 * CRIU's notifications arrive on the worker thread inside the call; they are
 * queued and forwarded to the loop with uv_async_send. */
#include <criu.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

#define DEFAULT_LOG_LEVEL 4
#define DUMP_LOG "dump.log"
#define RESTORE_LOG "restore.log"
#define RESTORE_CONF "restore.conf"
#define STATS_MAX (64 * 1024)

/* One dump or restore at a time per process: the others wait in order
 * (first come, first served). The turn holder, the queue and the dump
 * aside are the loop thread's alone. A dump may run on aside, out of the
 * way, one at a time:
 * - a lazy dump once it only serves pages (post-dump): that can last as
 *   long as the copy takes to fetch them, and a restore queued behind it
 *   would hold another container frozen that long; anything may run
 *   beside it;
 * - a dump its caller steps aside (ckpt_dump_step_aside) because the
 *   node's bandwidth share sets its pace: restores run beside it, but dumps
 *   still wait for it, since they would split that bandwidth with it and
 *   keep two containers frozen at once, each longer.
 * So two CRIU operations may run at once, and libcriu's notify callback,
 * which has no user-data pointer (criu.h: criu_local_set_notify_cb), finds
 * its call in a thread-local: libcriu calls it on the thread that runs the
 * call. (libcriu keeps a failed call's CRIU errno in one static as well:
 * two calls failing in the same instant could swap that number in their
 * messages, never their outcomes.) */
static ckpt__call *active;
static ckpt__call *waiting;
static _Thread_local ckpt__call *current;
/* Every running call holds a thread of the loop's pool (4 by default), which
 * the agent's short jobs share: one call aside at a time, so CRIU never
 * holds more than two of them. A dump that would go aside while another
 * is keeps the turn until that one ends, then goes aside (wants_aside). */
static ckpt__aside aside;
/* ckpt_set_criu_hold: written once before any call, read on the workers. */
static ckpt_criu_hold_fn criu_hold;

static const enum criu_cg_mode cg_modes[_CKPT_CGROUP_MODE_MAX] = {
        [CKPT_CGROUP_DEFAULT] = CRIU_CG_MODE_DEFAULT, [CKPT_CGROUP_IGNORE] = CRIU_CG_MODE_IGNORE,
        [CKPT_CGROUP_NONE] = CRIU_CG_MODE_NONE,       [CKPT_CGROUP_PROPS] = CRIU_CG_MODE_PROPS,
        [CKPT_CGROUP_SOFT] = CRIU_CG_MODE_SOFT,       [CKPT_CGROUP_FULL] = CRIU_CG_MODE_FULL,
        [CKPT_CGROUP_STRICT] = CRIU_CG_MODE_STRICT,
};

static const char *const cg_names[_CKPT_CGROUP_MODE_MAX] = {
        [CKPT_CGROUP_DEFAULT] = "default", [CKPT_CGROUP_IGNORE] = "ignore", [CKPT_CGROUP_NONE] = "none",
        [CKPT_CGROUP_PROPS] = "props",     [CKPT_CGROUP_SOFT] = "soft",     [CKPT_CGROUP_FULL] = "full",
        [CKPT_CGROUP_STRICT] = "strict",
};

const char *ckpt_cgroup_mode_to_string(ckpt_cgroup_mode m) {
        if (m < 0 || m >= _CKPT_CGROUP_MODE_MAX)
                return NULL;
        return cg_names[m];
}

ckpt_cgroup_mode ckpt_cgroup_mode_from_string(const char *s) {
        for (int i = 0; s && i < _CKPT_CGROUP_MODE_MAX; i++)
                if (strcmp(s, cg_names[i]) == 0)
                        return (ckpt_cgroup_mode)i;
        return _CKPT_CGROUP_MODE_INVALID;
}

/* ---- notifications ------------------------------------------------------ */

static int notify_cb(char *action, criu_notify_arg_t na) {
        ckpt__call *call = current;
        uint64_t now = ckpt__now_usec();
        (void)na;

        if (!call || !action)
                return 0;
        pthread_mutex_lock(&call->lock);
        if (call->n_events < CKPT__EVENTS_MAX) {
                snprintf(call->events[call->n_events].name, sizeof(call->events[0].name), "%s", action);
                call->events[call->n_events].at_usec = now;
                call->n_events++;
        }
        if (strcmp(action, "pre-dump") == 0 || strcmp(action, "pre-restore") == 0)
                call->pre_usec = now;
        else if (strcmp(action, "post-dump") == 0 || strcmp(action, "post-restore") == 0)
                call->post_usec = now;
        pthread_mutex_unlock(&call->lock);
        (void)uv_async_send(&call->async);
        /* CRIU waits for this callback's answer: a hold here stops it at
         * exactly this point, where a signal sent from outside on seeing
         * its log would land some way past it. */
        if (criu_hold)
                criu_hold(action);
        /* 0 lets CRIU go on; the events are only observed. */
        return 0;
}

void ckpt_set_criu_hold(ckpt_criu_hold_fn fn) {
        criu_hold = fn;
}

static void deliver_events(ckpt__call *call) {
        for (;;) {
                char name[sizeof(call->events[0].name)];
                uint64_t at;

                pthread_mutex_lock(&call->lock);
                if (call->n_delivered >= call->n_events) {
                        pthread_mutex_unlock(&call->lock);
                        return;
                }
                memcpy(name, call->events[call->n_delivered].name, sizeof(name));
                at = call->events[call->n_delivered].at_usec;
                call->n_delivered++;
                pthread_mutex_unlock(&call->lock);
                if (call->event)
                        call->event(call, name, at);
        }
}

static void on_async(uv_async_t *a) {
        deliver_events(container_of(a, ckpt__call, async));
}

/* ---- the call's life: begin on the loop, work, finish on the loop ------- */

static void call_init(ckpt__call *call) {
        *call = (ckpt__call){.dfd = -EBADF, .imgfd = -EBADF, .workfd = -EBADF, .keeper = -1};
}

/* Frees what the call holds; the results stay in the request. */
static void call_release(ckpt__call *call) {
        if (call->copts)
                criu_local_free_opts(call->copts);
        call->copts = NULL;
        int *fds[] = {&call->dfd, &call->imgfd, &call->workfd};
        for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
                if (*fds[i] >= 0) {
                        close(*fds[i]);
                        *fds[i] = -EBADF;
                }
        free(call->dir);
        call->dir = NULL;
        free(call->work_dir);
        call->work_dir = NULL;
        ckpt_key_free(call->key, call->key_len);
        call->key = NULL;
}

static void call_run(ckpt__call *call);

/* Whether call may have the turn now. */
static bool turn_free_for(const ckpt__call *call) {
        return !active && !(aside == CKPT__ASIDE_PACED && call->kind == CKPT__CALL_DUMP);
}

/* The next one's turn: the first in the queue that may have it, if any. */
static void turn_pass(void) {
        ckpt__call **p = &waiting;

        active = NULL;
        while (*p && !turn_free_for(*p))
                p = &(*p)->queue_next;
        if (*p) {
                ckpt__call *next = *p;
                *p = next->queue_next;
                call_run(next);
        }
}

/* On the loop: the call runs on, out of the others' way (why says whose),
 * now or once the one aside ends. */
static int call_give_up_turn(ckpt__call *call, ckpt__aside why) {
        if (*call->state == CKPT_OP_ASIDE)
                return 0;
        if (*call->state != CKPT_OP_RUNNING)
                return -ESRCH;
        if (call->wants_aside != CKPT__ASIDE_NONE)
                return -EALREADY; /* refused before, and promised the aside */
        if (aside != CKPT__ASIDE_NONE) {
                call->wants_aside = why;
                return -EBUSY;
        }
        *call->state = CKPT_OP_ASIDE;
        aside = why;
        turn_pass();
        return 0;
}

/* The aside, free again, goes to the running call that was refused it;
 * its caller hears of it as an event, since it asked long before. */
static void hand_aside_to(ckpt__call *call) {
        ckpt__aside why = call->wants_aside;

        call->wants_aside = CKPT__ASIDE_NONE;
        if (call_give_up_turn(call, why) == 0)
                call->event(call, CKPT_EVENT_ASIDE_LATE, ckpt__now_usec());
}

static void on_closed(uv_handle_t *h) {
        ckpt__call *call = container_of((uv_async_t *)h, ckpt__call, async);
        /* Before this one's callback can queue yet another behind it. */
        if (*call->state == CKPT_OP_RUNNING)
                turn_pass();
        else if (*call->state == CKPT_OP_ASIDE) {
                aside = CKPT__ASIDE_NONE;
                if (active && active->wants_aside != CKPT__ASIDE_NONE)
                        hand_aside_to(active);
                else if (!active) /* the dumps a paced one held back */
                        turn_pass();
        }
        pthread_mutex_destroy(&call->lock);
        call->finish(call);
}

/* On the worker: the call is this thread's until its work returns. */
static void call_work(uv_work_t *w) {
        ckpt__call *call = container_of(w, ckpt__call, work);

        current = call;
        call->work_cb(w);
        current = NULL;
}

static void after_work(uv_work_t *w, int status) {
        ckpt__call *call = container_of(w, ckpt__call, work);
        if (status == UV_ECANCELED && call->rc >= 0)
                call->rc = -ECANCELED;
        deliver_events(call);
        /* The handle belongs to the request, which the callback may free:
         * call back only once the handle is closed. */
        uv_close((uv_handle_t *)&call->async, on_closed);
}

/* The call's turn: CRIU runs for it on the thread pool. */
static void call_run(ckpt__call *call) {
        int r;

        active = call;
        *call->state = CKPT_OP_RUNNING;
        r = uv_queue_work(call->loop, &call->work, call_work, after_work);
        if (r < 0) {
                /* Cannot happen with a work callback given; if it does, the
                 * error still travels the one way out: the callback. */
                call->rc = r;
                uv_close((uv_handle_t *)&call->async, on_closed);
        }
}

/* Runs the prepared call, now or when the one before it has ended. From
 * here on the callback runs exactly once. */
static int call_start(ckpt__call *call, uv_loop_t *loop, uv_work_cb work, nm_error *err) {
        ckpt__call **tail = &waiting;
        int r;

        call->loop = loop;
        call->work_cb = work;
        r = pthread_mutex_init(&call->lock, NULL);
        if (r != 0)
                return nm_error_errno(err, -r, "pthread_mutex_init");
        r = uv_async_init(loop, &call->async, on_async);
        if (r < 0) {
                pthread_mutex_destroy(&call->lock);
                return nm_error_set(err, r, "uv_async_init: %s", uv_strerror(r));
        }
        if (turn_free_for(call)) {
                call_run(call);
                return 0;
        }
        while (*tail)
                tail = &(*tail)->queue_next;
        call->queue_next = NULL;
        *tail = call;
        *call->state = CKPT_OP_QUEUED;
        return 0;
}

/* Takes a call that waits for its turn off the queue; its callback runs
 * from the loop with -ECANCELED. */
static int call_cancel(ckpt__call *call) {
        ckpt__call **p = &waiting;

        while (*p && *p != call)
                p = &(*p)->queue_next;
        if (!*p)
                return -EBUSY;
        *p = call->queue_next;
        call->rc = -ECANCELED;
        uv_close((uv_handle_t *)&call->async, on_closed);
        return 0;
}

/* ---- preparation shared by dump and restore ---------------------------- */

static int resolve_criu(const ckpt_criu_opts *o, char **ret_path, char **ret_version, nm_error *err) {
        _cleanup_(ckpt_criu_freep) ckpt_criu *own = NULL;
        const ckpt_criu *criu = o->criu;
        int r;

        if (!criu) {
                r = ckpt_criu_resolve(NULL, &own, err);
                if (r < 0)
                        return r;
                criu = own;
        }
        *ret_path = strdup(criu->path);
        *ret_version = strdup(criu->version);
        if (!*ret_path || !*ret_version)
                return -ENOMEM;
        return 0;
}

static int copy_key(ckpt__call *call, const uint8_t *key, size_t key_len, nm_error *err) {
        if (!key)
                return ckpt_key_load(NULL, &call->key, &call->key_len, err);
        call->key = malloc(key_len);
        if (!call->key)
                return -ENOMEM;
        memcpy(call->key, key, key_len);
        call->key_len = key_len;
        return 0;
}

/* "<dir>.work" beside the checkpoint directory. */
static int default_work_dir(const char *dir, char **ret) {
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
                n--;
        if (n == 0 || (n == 1 && dir[0] == '/'))
                return -EINVAL;
        return asprintf(ret, "%.*s.work", (int)n, dir) < 0 ? -ENOMEM : 0;
}

/* Creates the work directory 0700 and checks that it is not the checkpoint
 * directory or inside it: CRIU writes its log and stats-* files there, and a
 * signed tree must not change. */
static int open_work_dir(ckpt__call *call, const char *configured, const char *dir, nm_error *err) {
        _cleanup_free_ char *path = NULL, *real_dir = NULL;
        size_t n;
        int r;

        if (configured) {
                path = strdup(configured);
                if (!path)
                        return -ENOMEM;
        } else {
                r = default_work_dir(dir, &path);
                if (r < 0)
                        return nm_error_set(err, r, "cannot derive a work directory from '%s'", dir);
        }
        call->workfd = mkdir_p_secure(path, 0700);
        if (call->workfd < 0)
                return nm_error_errno(err, call->workfd, "cannot create CRIU work directory %s", path);
        call->work_dir = realpath(path, NULL);
        real_dir = realpath(dir, NULL);
        if (!call->work_dir || !real_dir)
                return nm_error_errno(err, negative_errno(), "cannot resolve %s",
                                      call->work_dir ? dir : path);
        n = strlen(real_dir);
        if (strncmp(call->work_dir, real_dir, n) == 0 &&
            (call->work_dir[n] == '\0' || call->work_dir[n] == '/' || strcmp(real_dir, "/") == 0))
                return nm_error_set(err, -EINVAL,
                                    "CRIU work directory %s must be outside the checkpoint directory %s",
                                    path, dir);
        return 0;
}

/* Writes an RPC configuration file in the work directory and points
 * libcriu at it: CRIU applies it over the request's options. (libcriu 4.2.1
 * leaks its copy of the path, a few bytes per call.) */
static int rpc_config(ckpt__call *call, const char *name, const char *fmt, ...) {
        _cleanup_free_ char *text = NULL, *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&text, fmt, ap);
        va_end(ap);
        if (r < 0) {
                text = NULL;
                return -ENOMEM;
        }
        /* Read by CRIU a moment later and rewritten every time: no fsync,
         * which would cost a restore's downtime on a disk. */
        fd = openat(call->workfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return negative_errno();
        r = loop_write(fd, text, strlen(text));
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/%s", call->work_dir, name) < 0) {
                path = NULL;
                return -ENOMEM;
        }
        return criu_local_set_config_file(call->copts, path) < 0 ? -ENOMEM : 0;
}

static void unlink_stale(int dfd, const char *const *names) {
        for (; *names; names++)
                (void)unlinkat(dfd, *names, 0);
}

static int build_copts(ckpt__call *call, const ckpt_criu_opts *o, const char *criu_path, const char *log,
                       nm_error *err) {
        struct criu_opts *c = NULL;
        int r = 0;

        if (criu_local_init_opts(&c) < 0)
                return nm_error_set(err, -ENOMEM, "cannot set up libcriu options");
        call->copts = c;
        if (criu_local_set_log_file(c, log) < 0)
                return -ENOMEM;
        /* swrk runs under a keeper of ours (criu_run): libcriu only talks. */
        call->criu_bin = criu_path;
        call->timeout_ms = o->timeout_ms ? o->timeout_ms : CKPT_CRIU_TIMEOUT_MS;
        criu_local_set_images_dir_fd(c, call->imgfd);
        criu_local_set_work_dir_fd(c, call->workfd);
        criu_local_set_log_level(c, o->log_level > 0 ? o->log_level : DEFAULT_LOG_LEVEL);
        if (o->tcp < 0 || o->tcp >= _CKPT_TCP_MODE_MAX || o->locks < 0 || o->locks >= _CKPT_FILE_LOCKS_MAX)
                return nm_error_set(err, -EINVAL, "bad TCP or file lock mode");
        criu_local_set_tcp_established(c, o->tcp == CKPT_TCP_MOVE);
        criu_local_set_tcp_close(c, o->tcp == CKPT_TCP_CLOSE);
        criu_local_set_ext_unix_sk(c, o->ext_unix_sk);
        criu_local_set_file_locks(c, o->locks == CKPT_FILE_LOCKS_MOVE);
        criu_local_set_shell_job(c, o->shell_job);
        if (o->manage_cgroups < 0 || o->manage_cgroups >= _CKPT_CGROUP_MODE_MAX)
                return nm_error_set(err, -EINVAL, "bad cgroup mode");
        if (o->manage_cgroups != CKPT_CGROUP_DEFAULT) {
                criu_local_set_manage_cgroups(c, true);
                criu_local_set_manage_cgroups_mode(c, cg_modes[o->manage_cgroups]);
        }
        for (size_t i = 0; i < o->n_ext_mounts && r >= 0; i++) {
                if (!o->ext_mounts[i].key || !o->ext_mounts[i].val)
                        return nm_error_set(err, -EINVAL, "external mount without key or value");
                r = criu_local_add_ext_mount(c, o->ext_mounts[i].key, o->ext_mounts[i].val);
        }
        if (r < 0)
                return nm_error_set(err, -ENOMEM, "cannot add external mounts");
        /* Containers have their own network namespace; nftables needs no
         * iptables binaries. On restore CRIU uses the dump's method. */
        if (criu_local_set_network_lock(c, CRIU_NETWORK_LOCK_NFTABLES) < 0)
                return nm_error_set(err, -EINVAL, "cannot select nftables network locking");
        criu_local_set_notify_cb(c, notify_cb);
        return 0;
}

/* Worker threads of the pool may run with signals blocked, and criu swrk
 * inherits the mask through fork and exec: CRIU would then never see its
 * own SIGALRM timeout or SIGCHLD. Unblock everything around the call but
 * SIGPIPE: should criu swrk die, libcriu's write() to it must fail with
 * EPIPE rather than kill this process, and a thread-directed SIGPIPE stays
 * pending on this thread, to be drained afterwards. A process-directed
 * signal may land on this thread meanwhile; libuv's handlers are fine with
 * that. */
static void unblock_signals(sigset_t *old) {
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGPIPE);
        pthread_sigmask(SIG_SETMASK, &mask, old);
}

static void restore_signals(const sigset_t *old) {
        static const struct timespec zero = {0, 0};
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        while (sigtimedwait(&pipe_only, NULL, &zero) == SIGPIPE)
                ;
        pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* One libcriu call (fn: criu_local_dump or criu_local_restore) with CRIU
 * under a keeper (criu-keeper.c): bounded by the call's timeout, and what
 * CRIU started is killed unless the call succeeded (a restore: > 0). Runs
 * on the worker with the signal mask swrk must have. Returns what fn
 * returned, with CRIU's errno in *ret_errno; a restore the keeper had to end
 * after all (its deadline passed before the verdict) is -ETIMEDOUT. */
static int criu_run(ckpt__call *call, int (*fn)(struct criu_opts *), int min_ok, int *ret_errno) {
        ckpt__keeper k;
        nm_error kerr = {};
        int ret, r;

        *ret_errno = 0;
        r = ckpt__keeper_start(&k, call->criu_bin, call->timeout_ms, call->keep_fds, call->n_keep_fds,
                               &kerr);
        if (r < 0) {
                call->keeper = CKPT__KEEPER_NO_CRIU;
                *ret_errno = -r;
                return r;
        }
        criu_local_set_service_fd(call->copts, k.sk);
        ckpt__guard_set_keeper(call->guard, k.pid);
        ret = fn(call->copts);
        *ret_errno = errno;
        k.sk = -EBADF; /* libcriu closed it */
        call->keeper = ckpt__keeper_end(&k, ret >= min_ok);
        if (ret >= min_ok && call->keeper != CKPT__KEEPER_KEPT && min_ok > 0)
                return -ETIMEDOUT;
        if (ret < min_ok && call->keeper == CKPT__KEEPER_TIMED_OUT)
                return -ETIMEDOUT;
        return ret;
}

/* What to say when CRIU did not finish in time, or ended without an
 * answer. */
static const char *criu_timeout_note(const ckpt__call *call, int ret, char *buf, size_t size) {
        if (call->keeper == CKPT__KEEPER_TIMED_OUT)
                snprintf(buf, size,
                         "CRIU did not finish within %llu s; it and everything it had started were killed: ",
                         (unsigned long long)(call->timeout_ms / 1000));
        else if (call->keeper == CKPT__KEEPER_SWEPT && ret == -ECOMM)
                snprintf(buf, size, "CRIU ended without answering; everything it had started was killed: ");
        else
                buf[0] = '\0';
        return buf;
}

/* libcriu returns -EBADE when CRIU answered "failed", with CRIU's errno in
 * errno; other codes mean it could not talk to CRIU at all. */
static int criu_failure_code(int ret, int saved_errno) {
        if (ret == -EBADE)
                return saved_errno > 0 ? -saved_errno : -EIO;
        return ret < 0 ? ret : -EIO;
}

static void read_stats(int workfd, const char *name, ckpt__stats *ret) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        *ret = (ckpt__stats){};
        if (read_file_at(workfd, name, STATS_MAX, &buf, &len) >= 0)
                (void)ckpt__stats_parse((const uint8_t *)buf, len, ret);
}

static bool pid_still(pid_t pid, uint64_t ticks) {
        ckpt_container c = {.pid = pid, .start_ticks = ticks, .status = CKPT_STATUS_RUNNING};
        return ckpt_container_is_running(&c);
}

/* ---- dump ----------------------------------------------------------------- */

static void dump_event(ckpt__call *call, const char *name, uint64_t at) {
        ckpt_dump_req *req = container_of(call, ckpt_dump_req, call);
        if (req->lazy && strcmp(name, "post-dump") == 0)
                (void)call_give_up_turn(call, CKPT__ASIDE_SERVING);
        if (req->event_cb)
                req->event_cb(req->data, name, at);
}

static void dump_finish(ckpt__call *call) {
        ckpt_dump_req *req = container_of(call, ckpt_dump_req, call);
        int rc = call->rc;

        call_release(call);
        if (req->root_fd >= 0)
                close(req->root_fd);
        req->root_fd = -EBADF;
        req->stats.total_usec = ckpt__now_usec() - req->t0;
        req->state = CKPT_OP_DONE;
        if (rc < 0 && req->error.code == 0)
                nm_error_errno(&req->error, rc, "checkpoint failed");
        req->cb(req, rc); /* last: it may free req */
}

static void dump_fill_stats(ckpt_dump_req *req) {
        ckpt__call *call = &req->call;
        ckpt__stats st;

        read_stats(call->workfd, "stats-dump", &st);
        if (st.dump) {
                req->stats.from_criu_stats = true;
                req->stats.frozen_usec = st.frozen_us;
                req->stats.freezing_usec = st.freezing_us;
                req->stats.memdump_usec = st.memdump_us;
                req->stats.memwrite_usec = st.memwrite_us;
                req->stats.pages_written = st.pages_written;
        } else if (call->post_usec > call->pre_usec && call->pre_usec) {
                req->stats.frozen_usec = call->post_usec - call->pre_usec;
        }
}

/* Removes what a dump that did not happen left in the checkpoint directory,
 * so that it can be used again. Only while the container still runs: should
 * it be gone, whatever CRIU wrote is kept for a post-mortem. */
static void dump_discard(ckpt_dump_req *req) {
        ckpt__call *call = &req->call;

        if (call->dfd < 0)
                return;
        (void)rm_rf_at(call->dfd, CKPT_IMAGES_DIR);
        (void)unlinkat(call->dfd, CKPT_METADATA_FILE, 0);
        (void)unlinkat(call->dfd, CKPT_METADATA_FILE ".tmp", 0);
        if (req->created_dir)
                (void)rmdir(call->dir);
}

/* Seals name (relative to dfd) immutable. 1 sealed, 0 where the file
 * system has no such flag, < 0 on error. */
static int seal_at(int dfd, const char *name) {
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        int r;
        if (fd < 0)
                return negative_errno();
        r = fs_set_immutable(fd, true);
        if (r == -ENOTTY || r == -EOPNOTSUPP)
                return 0;
        return r < 0 ? r : 1;
}

/* Seals every file CRIU and the metadata wrote, before they are hashed:
 * from here on nothing changes them without clearing the flag first
 * (which a plain writer, even root's ordinary file access, cannot). */
static int seal_images(ckpt_dump_req *req) {
        ckpt__call *call = &req->call;
        _cleanup_close_ int fd = openat(call->imgfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *de;
        DIR *d;
        int r = 0, unsealable = 0;

        if (fd < 0)
                return nm_error_errno(&req->error, negative_errno(), "cannot list %s/%s", call->dir,
                                      CKPT_IMAGES_DIR);
        d = fdopendir(TAKE_FD(fd));
        if (!d)
                return nm_error_errno(&req->error, negative_errno(), "cannot list %s/%s", call->dir,
                                      CKPT_IMAGES_DIR);
        while (r >= 0 && (de = readdir(d))) {
                if (de->d_type != DT_REG)
                        continue;
                r = seal_at(call->imgfd, de->d_name);
                unsealable += r == 0;
                if (r < 0)
                        nm_error_errno(&req->error, r, "cannot seal %s/%s/%s", call->dir, CKPT_IMAGES_DIR,
                                       de->d_name);
        }
        closedir(d);
        if (r >= 0) {
                r = seal_at(call->dfd, CKPT_METADATA_FILE);
                unsealable += r == 0;
                if (r < 0)
                        nm_error_errno(&req->error, r, "cannot seal %s/%s", call->dir, CKPT_METADATA_FILE);
        }
        if (r >= 0 && unsealable)
                snprintf(req->warning, sizeof(req->warning),
                         "the file system of %s cannot seal files: the images stay writable until sent",
                         call->dir);
        return r < 0 ? r : 0;
}

/* Everything after CRIU's successful dump: the images are complete, the
 * source is gone. Nothing here may make them unusable. */
static int dump_after(ckpt_dump_req *req) {
        ckpt__call *call = &req->call;
        ckpt_tree_entry *e = NULL;
        size_t n = 0;
        nm_error werr = {};
        uint64_t t;
        int r;

        dump_fill_stats(req);
        if (ckpt__stopped_tasks_at(call->imgfd, &req->stopped_tasks, &werr) < 0) {
                snprintf(req->warning, sizeof(req->warning), "%s", nm_error_msg(&werr));
                werr = (nm_error){};
        }
        r = ckpt_tree_walk(call->imgfd, &e, &n, &werr);
        if (r >= 0 && req->lazy) {
                /* A lazy dump's images were on their way at post-dump: they
                 * must not change now. */
                req->stats.image_bytes = ckpt_tree_bytes(e, n);
                ckpt_tree_entries_free(e, n);
                return 0;
        }
        if (r >= 0) {
                req->stats.image_bytes = ckpt_tree_bytes(e, n);
                ckpt_tree_entries_free(e, n);
                ckpt_metadata_set_image_bytes(req->metadata, req->stats.image_bytes);
                /* metadata.json from before the dump is complete but for this
                 * number; failing to rewrite it leaves that file in place. */
                r = ckpt_metadata_write(call->dfd, req->metadata, &werr);
        }
        if (r < 0)
                snprintf(req->warning, sizeof(req->warning), "image byte count not recorded in %s: %s",
                         CKPT_METADATA_FILE, nm_error_msg(&werr));
        if (req->seal) {
                r = seal_images(req);
                if (r < 0) {
                        nm_error_prefix(&req->error, "the dump succeeded (its images in %s are complete)",
                                        call->dir);
                        return r;
                }
        }
        if (!call->key)
                return 0;
        t = ckpt__now_usec();
        r = ckpt_sign_at(call->dfd, call->key, call->key_len, req->hmac, &req->error);
        req->stats.sign_usec = ckpt__now_usec() - t;
        if (r >= 0 && req->seal)
                (void)seal_at(call->dfd, CKPT_HMAC_FILE);
        if (r < 0) {
                nm_error_prefix(&req->error,
                                "the dump succeeded (the container is no longer running; its images in %s "
                                "are complete) but signing failed",
                                call->dir);
                return r;
        }
        return 0;
}

/* The root tmpfs into images/, while the tasks are stopped: CRIU never
 * dumps the root mount. */
static int capture_root(ckpt_dump_req *req) {
        ckpt__call *call = &req->call;
        _cleanup_close_ int fd = -EBADF;
        int r;

        fd = openat(call->imgfd, CKPT_ROOTFS_IMAGE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
        if (fd < 0)
                return nm_error_errno(&req->error, negative_errno(), "cannot create %s/%s/%s", call->dir,
                                      CKPT_IMAGES_DIR, CKPT_ROOTFS_IMAGE);
        r = ckpt__tar_write(req->root_fd, fd, &req->error);
        if (r >= 0 && fsync(fd) < 0)
                r = nm_error_errno(&req->error, negative_errno(), "cannot sync %s", CKPT_ROOTFS_IMAGE);
        return r;
}

/* A dump that kept the tasks stopped but cannot be completed: they run on
 * where they are, and nothing of the attempt stays. */
static void dump_roll_back(ckpt_dump_req *req) {
        nm_error rerr = {};
        /* Tasks stopped before the dump stay stopped: read from the images
         * if dump_after did not get that far. */
        if (req->stopped_tasks.n == 0)
                (void)ckpt__stopped_tasks_at(req->call.imgfd, &req->stopped_tasks, &rerr);
        rerr = (nm_error){};
        if (ckpt_source_resume(req->native, req->pid, req->start_ticks, &req->stopped_tasks, &rerr) < 0) {
                snprintf(req->warning, sizeof(req->warning),
                         "resuming it in place failed too, its tasks are stopped: %s", nm_error_msg(&rerr));
                req->stopped = true;
                return;
        }
        req->dumped = false;
        req->source_running = true;
        dump_discard(req);
}

/* The native part before CRIU: the tasks into a cgroup CRIU accepts, and
 * the description as it then is into the metadata. */
static int dump_native_before(ckpt_dump_req *req) {
        json_t *j = NULL;
        int r = ckpt__cgroup_prepare_dump(req->native, req->metadata->container_id, req->pid, &req->error);
        if (r < 0)
                return r;
        r = ckpt_native_to_json(req->native, &j);
        if (r < 0 || json_object_set_new(req->metadata->json, "nm_native", j) < 0)
                return nm_error_set(&req->error, -ENOMEM, "cannot describe the container in the metadata");
        return 0;
}

/* True once CRIU said its images were complete (post-dump: every image
 * flushed, before the tasks are ended). */
static bool dump_saw_post_dump(ckpt__call *call) {
        bool seen = false;
        pthread_mutex_lock(&call->lock);
        for (unsigned i = 0; i < call->n_events && !seen; i++)
                seen = strcmp(call->events[i].name, "post-dump") == 0;
        pthread_mutex_unlock(&call->lock);
        return seen;
}

/* CRIU's lock on the container's network, if CRIU left it: only in a
 * network namespace of the container's own (the node's holds other
 * operations' locks). */
static void dump_unlock_network(ckpt_dump_req *req) {
        nm_error uerr = {};
        if (ckpt_unlock_network_left(req->pid, &uerr) < 0)
                snprintf(req->warning, sizeof(req->warning), "%s", nm_error_msg(&uerr));
}

/* Whether the dumped tasks are still there to run on. Tasks CRIU had
 * already ended (SIGKILL after post-dump) may still be tearing down their
 * memory when libcriu returns: they are neither gone nor zombies yet, and
 * taking them for running would throw away the only complete copy. They
 * cannot come back, so they count as gone; their end is waited for
 * (bounded: this runs on a worker) so that a restore does not race them. */
#define DUMP_DYING_POLL_MS 10
#define DUMP_DYING_WAIT_MS 10000

static bool source_still_runs(ckpt_dump_req *req) {
        for (unsigned waited = 0; pid_still(req->pid, req->start_ticks); waited += DUMP_DYING_POLL_MS) {
                if (!ckpt__proc_dying(req->pid))
                        return true;
                if (waited >= DUMP_DYING_WAIT_MS)
                        return false;
                (void)usleep(DUMP_DYING_POLL_MS * 1000);
        }
        return false;
}

/* CRIU failed, died or was killed: what is left decides, never what CRIU
 * said. The tasks still there: they run on as they were (resumed, if CRIU
 * stopped them), the network lock CRIU may have left is removed, and
 * nothing of the dump stays. The tasks gone: the images are the container
 * if CRIU had said they were complete; they are signed now, so that a
 * restore can verify them. */
static void dump_failed(ckpt_dump_req *req, bool native) {
        ckpt__call *call = &req->call;

        req->source_running = source_still_runs(req);
        if (req->source_running) {
                req->outcome = CKPT_DUMP_FAILED_RUNNING;
                if (native || req->keep_stopped) {
                        /* CRIU may have stopped them; those stopped before
                         * stay so. */
                        nm_error rerr = {};
                        if (req->stopped_tasks.n == 0 && call->imgfd >= 0)
                                (void)ckpt__stopped_tasks_at(call->imgfd, &req->stopped_tasks, &rerr);
                        rerr = (nm_error){};
                        (void)ckpt_source_resume(req->native, req->pid, req->start_ticks,
                                                 &req->stopped_tasks, &rerr);
                }
                dump_unlock_network(req);
                if (native)
                        (void)ckpt__cgroup_undo_dump(req->native, req->pid, NULL);
                dump_discard(req);
                return;
        }
        req->outcome = CKPT_DUMP_FAILED_GONE;
        /* Sent pages are no local copy to restore from. */
        if (req->lazy || native || req->pages == CKPT_PAGES_TO_SERVER || !dump_saw_post_dump(call))
                return;
        /* dump_after fills req->error only on failure: keep CRIU's. */
        nm_error crit = req->error;
        req->error = (nm_error){};
        if (dump_after(req) < 0) {
                snprintf(req->warning, sizeof(req->warning), "the images CRIU completed cannot be used: %s",
                         nm_error_msg(&req->error));
                req->error = crit;
                return;
        }
        req->error = crit;
        req->outcome = CKPT_DUMP_FAILED_IMAGES;
}

/* libcriu has no setter for a lazy dump, a page server's socket or
 * leave-stopped: the RPC configuration file has them. */
/* A descriptor this call's CRIU inherits (ckpt__keeper_start). */
static void call_keep_fd(ckpt__call *call, int fd) {
        if (fd >= 0 && call->n_keep_fds < CKPT__KEEP_FDS_MAX)
                call->keep_fds[call->n_keep_fds++] = fd;
}

static int dump_write_conf(ckpt_dump_req *req) {
        char ps[64] = "";

        if (req->lazy)
                snprintf(ps, sizeof(ps), "lazy-pages\nps-socket %d\n", req->ps_fd);
        else if (req->pages == CKPT_PAGES_TO_SERVER)
                snprintf(ps, sizeof(ps), "page-server\nps-socket %d\n", req->ps_fd);
        if (ps[0])
                call_keep_fd(&req->call, req->ps_fd);
        if (!ps[0] && !req->keep_stopped)
                return 0;
        return rpc_config(&req->call, "dump.conf", "%s%s", ps, req->keep_stopped ? "leave-stopped\n" : "");
}

/* Pages sent away leave no local copy of the memory but the tasks' own:
 * only a dump that holds them may do it. */
static int dump_pages_check(ckpt_dump_req *req, const ckpt_dump_opts *opts, nm_error *err) {
        if (opts->pages < 0 || opts->pages >= _CKPT_PAGES_MAX)
                return nm_error_set(err, -EINVAL, "unknown page destination %d", (int)opts->pages);
        req->pages = opts->pages;
        if (req->lazy)
                req->ps_fd = opts->lazy_ps_fd;
        if (opts->pages == CKPT_PAGES_HERE)
                return 0;
        if (opts->pages_ps_fd < 0)
                return nm_error_set(err, -EBADF, "pages sent to a page server need its socket");
        if (req->lazy || !req->keep_stopped || req->end_after)
                return nm_error_set(err, -EINVAL,
                                    "pages are sent to a page server only by a dump that holds the tasks "
                                    "(not lazy, not ended)");
        req->ps_fd = opts->pages_ps_fd;
        return 0;
}

/* CKPT_HOLD_IF_SAFE, right before the freeze: what the tree holds now
 * decides. One that cannot be held is still dumped with its tasks left
 * stopped, and ended once the images are complete (end_after). */
static void dump_decide_hold(ckpt_dump_req *req) {
        int r = ckpt_tree_holdable(req->pid, req->hold_why, sizeof(req->hold_why));

        if (r > 0)
                return;
        if (r < 0)
                snprintf(req->hold_why, sizeof(req->hold_why), "what it holds cannot be read: %s",
                         strerror(-r));
        req->end_after = true;
}

static void dump_work(uv_work_t *w) {
        ckpt_dump_req *req = container_of(w, ckpt_dump_req, call.work);
        ckpt__call *call = &req->call;
        bool native = req->root_fd >= 0;
        char excerpt[1024];
        sigset_t old;
        uint64_t t;
        int ret, e;

        if (native) {
                call->rc = dump_native_before(req);
                if (call->rc < 0) {
                        (void)ckpt__cgroup_undo_dump(req->native, req->pid, NULL);
                        req->source_running = true;
                        dump_discard(req);
                        return;
                }
        }
        /* Written before CRIU runs: a failure here leaves the container as
         * it was. */
        call->rc = ckpt_metadata_write(call->dfd, req->metadata, &req->error);
        if (call->rc < 0) {
                if (native)
                        (void)ckpt__cgroup_undo_dump(req->native, req->pid, NULL);
                req->source_running = true;
                dump_discard(req);
                return;
        }
        /* The pid was checked on the loop; check again right before the dump
         * so that a container that exited meanwhile is never confused with a
         * process that took over its pid. */
        if (!pid_still(req->pid, req->start_ticks)) {
                call->rc = nm_error_set(&req->error, -ESRCH, "pid %d exited before the dump started",
                                        (int)req->pid);
                dump_discard(req);
                return;
        }
        if (req->keep_stopped && req->hold == CKPT_HOLD_IF_SAFE)
                dump_decide_hold(req);
        if (req->end_after && req->pages == CKPT_PAGES_TO_SERVER) {
                /* Ended after the dump: its images must hold the memory. */
                req->pages = CKPT_PAGES_HERE;
                call->rc = dump_write_conf(req);
                if (call->rc < 0) {
                        (void)nm_error_errno(&req->error, call->rc, "cannot write %s/dump.conf",
                                             call->work_dir);
                        req->source_running = true;
                        dump_discard(req);
                        return;
                }
        }
        unblock_signals(&old);
        t = ckpt__now_usec();
        ret = criu_run(call, criu_local_dump, 0, &e);
        req->stats.criu_usec = ckpt__now_usec() - t;
        restore_signals(&old);
        if (ret < 0) {
                char tnote[160];
                (void)ckpt__log_excerpt(call->workfd, DUMP_LOG, excerpt, sizeof(excerpt));
                call->rc = nm_error_set(&req->error, ret == -ETIMEDOUT ? ret : criu_failure_code(ret, e),
                                        "criu dump of pid %d failed: %s%s (log: %s/%s)", (int)req->pid,
                                        criu_timeout_note(call, ret, tnote, sizeof(tnote)),
                                        excerpt[0] ? excerpt : strerror(-criu_failure_code(ret, e)),
                                        call->work_dir, DUMP_LOG);
                dump_failed(req, native);
                return;
        }
        req->dumped = true;
        req->outcome = CKPT_DUMP_OK;
        req->stopped = req->keep_stopped;
        if (native) {
                call->rc = capture_root(req);
                if (call->rc < 0) {
                        nm_error_prefix(&req->error, "the root file system could not be saved");
                        dump_roll_back(req);
                        return;
                }
        }
        call->rc = dump_after(req);
        if (call->rc < 0 && req->keep_stopped) {
                /* Still stopped: the images are of no use unsigned, the copy
                 * that is there is. */
                dump_roll_back(req);
                return;
        }
        if (call->rc >= 0 && req->end_after) {
                nm_error kerr = {};
                if (ckpt_source_end(req->native, req->pid, req->start_ticks, &kerr) < 0)
                        snprintf(req->warning, sizeof(req->warning),
                                 "the dumped tasks could not be ended and are stopped: %s",
                                 nm_error_msg(&kerr));
                else
                        req->stopped = false;
        }
}

static int dir_is_empty(int dfd) {
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *de;
        DIR *d;
        int r = 1;

        if (fd < 0)
                return negative_errno();
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return negative_errno();
        }
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                        r = 0;
                        break;
                }
        closedir(d);
        return r;
}

/* What the container is, whether it can move, and for a native one a hold
 * on its root: all before anything is frozen. */
static int dump_describe(ckpt_dump_req *req, const ckpt_container *c, const ckpt_dump_opts *opts) {
        nm_error *err = &req->error;
        int r;

        r = ckpt_native_describe(c, &req->native, err);
        if (r < 0) {
                nm_error_prefix(err, "describing %s (nothing was frozen)", c->id);
                return r;
        }
        r = opts->policy.try_anyway ? 0 : ckpt_native_check_source(req->native, &opts->policy, err);
        if (r < 0) {
                nm_error_prefix(err, "cannot move %s %s", c->bare ? "process tree" : "container", c->id);
                return r;
        }
        if (req->native->landlock == CKPT_LANDLOCK_ASSUMED)
                req->native->landlock = CKPT_LANDLOCK_ACCEPTED_LOSS;
        req->native->tcp_established = opts->criu.tcp == CKPT_TCP_MOVE;
        req->native->file_locks = opts->criu.locks == CKPT_FILE_LOCKS_MOVE;
        if (!req->native->own_mount_ns)
                return 0;
        if (opts->lazy)
                return nm_error_set(
                        err, -EOPNOTSUPP,
                        "container %s has a root file system of its own, which a lazy dump cannot carry",
                        c->id);
        return ckpt__root_clone(c->pid, &req->root_fd, err);
}

/* Host binds and stdio outside the container, declared external. */
static int dump_native_copts(ckpt_dump_req *req) {
        const ckpt_native *n = req->native;
        struct criu_opts *c = req->call.copts;

        for (size_t i = 0; i < n->n_mounts; i++)
                if (n->mounts[i].kind == CKPT_MOUNT_HOST_BIND &&
                    criu_local_add_ext_mount(c, n->mounts[i].target, n->mounts[i].target) < 0)
                        return -ENOMEM;
        for (size_t i = 0; i < ARRAY_SIZE(n->stdio); i++) {
                bool seen = false;
                if (n->stdio[i].kind != CKPT_STDIO_NULL && n->stdio[i].kind != CKPT_STDIO_FILE)
                        continue;
                for (size_t k = 0; k < i; k++)
                        seen = seen || (n->stdio[k].key && strcmp(n->stdio[k].key, n->stdio[i].key) == 0);
                if (!seen && criu_local_add_external(c, n->stdio[i].key) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int dump_prepare(ckpt_dump_req *req, const ckpt_container *c, const char *dir,
                        const ckpt_dump_opts *opts) {
        static const char *const stale[] = {DUMP_LOG, "stats-dump", NULL};
        ckpt__call *call = &req->call;
        nm_error *err = &req->error;
        int r;

        r = ckpt_container_check_movable(c, err);
        if (r < 0)
                return r;
        req->pid = c->pid;
        req->start_ticks = c->start_ticks;
        r = dump_describe(req, c, opts);
        if (r < 0)
                return r;
        r = resolve_criu(&opts->criu, &req->criu_path, &req->criu_version, err);
        if (r < 0)
                return r;
        if (opts->sign) {
                r = copy_key(call, opts->key, opts->key_len, err);
                if (r < 0)
                        return r;
        }
        call->dir = strdup(dir);
        if (!call->dir)
                return -ENOMEM;
        struct stat st;
        req->created_dir = lstat(dir, &st) < 0 && errno == ENOENT;
        call->dfd = mkdir_p_secure(dir, 0700);
        if (call->dfd == -ELOOP)
                return nm_error_set(err, -ELOOP, "refusing symlink checkpoint directory %s", dir);
        if (call->dfd < 0)
                return nm_error_errno(err, call->dfd, "cannot create checkpoint directory %s", dir);
        r = dir_is_empty(call->dfd);
        if (r < 0)
                return nm_error_errno(err, r, "cannot read %s", dir);
        if (r == 0) {
                /* Not ours: nothing in it may be removed on the way out. */
                close(call->dfd);
                call->dfd = -EBADF;
                return nm_error_set(err, -EEXIST,
                                    "checkpoint directory %s is not empty; give a new one (old images must "
                                    "never mix with new ones)",
                                    dir);
        }
        call->imgfd = mkdirat_secure(call->dfd, CKPT_IMAGES_DIR, 0700);
        if (call->imgfd < 0)
                return nm_error_errno(err, call->imgfd, "cannot create %s/%s", dir, CKPT_IMAGES_DIR);
        r = open_work_dir(call, opts->criu.work_dir, dir, err);
        if (r < 0)
                return r;
        unlink_stale(call->workfd, stale);
        req->work_dir = strdup(call->work_dir);
        if (!req->work_dir)
                return -ENOMEM;
        r = ckpt_metadata_capture(
                c, &(ckpt_capture_info){.criu_version = req->criu_version, .node_name = opts->node_name},
                &req->metadata, err);
        if (r < 0) {
                nm_error_prefix(err, "capturing metadata of %s (nothing was dumped)", c->id);
                return r;
        }
        if (req->root_fd >= 0) {
                json_t *j = NULL;
                if (ckpt_native_to_json(req->native, &j) < 0 ||
                    json_object_set_new(req->metadata->json, "nm_native", j) < 0)
                        return -ENOMEM;
        }
        r = build_copts(call, &opts->criu, req->criu_path, DUMP_LOG, err);
        if (r < 0)
                return r;
        criu_local_set_pid(call->copts, (int)c->pid);
        criu_local_set_leave_running(call->copts, false);
        if (req->root_fd >= 0) {
                r = dump_native_copts(req);
                if (r < 0)
                        return r;
        }
        if (opts->lazy && opts->lazy_ps_fd < 0)
                return nm_error_set(err, -EBADF, "a lazy dump needs a page-server socket");
        req->lazy = opts->lazy;
        /* A native container is always dumped with its tasks kept stopped:
         * its root is saved afterwards, and a failure until the images are
         * complete then resumes it in place. So is a tree that may be
         * held: dump_work decides (dump_decide_hold). */
        req->hold = opts->hold;
        req->keep_stopped = (opts->hold != CKPT_HOLD_END || req->root_fd >= 0) && !opts->lazy;
        req->end_after = req->keep_stopped && opts->hold == CKPT_HOLD_END;
        req->seal = opts->seal && !opts->lazy;
        r = dump_pages_check(req, opts, err);
        if (r < 0)
                return r;
        r = dump_write_conf(req);
        if (r < 0)
                return nm_error_errno(err, r, "cannot write %s/dump.conf", call->work_dir);
        return 0;
}

static void req_reset(void *req, size_t size, void **data, ckpt_event_cb *event_cb) {
        void *d = *data;
        ckpt_event_cb cb = *event_cb;
        memset(req, 0, size);
        *data = d;
        *event_cb = cb;
}

int ckpt_dump(uv_loop_t *loop, ckpt_dump_req *req, const ckpt_container *c, const char *dir,
              const ckpt_dump_opts *opts, ckpt_dump_cb cb) {
        static const ckpt_dump_opts defaults = {.sign = true};
        int r;

        if (!loop || !req || !c || !dir || !cb)
                return -EINVAL;
        req_reset(req, sizeof(*req), &req->data, &req->event_cb);
        call_init(&req->call);
        req->root_fd = -EBADF;
        req->t0 = ckpt__now_usec();
        req->cb = cb;
        req->call.event = dump_event;
        req->call.kind = CKPT__CALL_DUMP;
        req->call.finish = dump_finish;
        req->call.state = &req->state;
        r = dump_prepare(req, c, dir, opts ? opts : &defaults);
        if (r >= 0)
                r = call_start(&req->call, loop, dump_work, &req->error);
        if (r < 0) {
                dump_discard(req);
                call_release(&req->call);
                if (req->root_fd >= 0)
                        close(req->root_fd);
                req->root_fd = -EBADF;
                ckpt_dump_req_done(req);
                if (req->error.code == 0)
                        nm_error_errno(&req->error, r, "cannot checkpoint %s", c->id);
                return r;
        }
        return 0;
}

int ckpt_dump_cancel(ckpt_dump_req *req) {
        if (!req || req->state != CKPT_OP_QUEUED)
                return -EBUSY;
        /* Nothing ran: the container was not touched. */
        req->source_running = true;
        dump_discard(req);
        nm_error_set(&req->error, -ECANCELED, "the dump was called off before it started");
        return call_cancel(&req->call);
}

int ckpt_dump_step_aside(ckpt_dump_req *req) {
        if (!req || (req->state != CKPT_OP_RUNNING && req->state != CKPT_OP_ASIDE))
                return -ESRCH;
        return call_give_up_turn(&req->call, CKPT__ASIDE_PACED);
}

void ckpt_dump_req_done(ckpt_dump_req *req) {
        if (!req)
                return;
        req->native = ckpt_native_free(req->native);
        req->metadata = ckpt_metadata_free(req->metadata);
        ckpt_stopped_tasks_done(&req->stopped_tasks);
        free(req->criu_path);
        free(req->criu_version);
        free(req->work_dir);
        req->criu_path = req->criu_version = req->work_dir = NULL;
}

/* ---- restore --------------------------------------------------------------- */

static void restore_event(ckpt__call *call, const char *name, uint64_t at) {
        ckpt_restore_req *req = container_of(call, ckpt_restore_req, call);
        if (req->event_cb)
                req->event_cb(req->data, name, at);
}

static void restore_release(ckpt_restore_req *req) {
        if (req->root_tar_fd >= 0)
                close(req->root_tar_fd);
        req->root_tar_fd = -EBADF;
        for (size_t i = 0; i < ARRAY_SIZE(req->inherit_fds); i++)
                if (req->inherit_fds[i] >= 0) {
                        close(req->inherit_fds[i]);
                        req->inherit_fds[i] = -EBADF;
                }
        free(req->root_dir);
        req->root_dir = NULL;
        req->desc = ckpt_native_free(req->desc);
}

static void restore_finish(ckpt__call *call) {
        ckpt_restore_req *req = container_of(call, ckpt_restore_req, call);
        int rc = call->rc;

        call_release(call);
        restore_release(req);
        req->stats.total_usec = ckpt__now_usec() - req->t0;
        req->state = CKPT_OP_DONE;
        if (rc < 0 && req->error.code == 0)
                nm_error_errno(&req->error, rc, "restore failed");
        req->cb(req, rc);
}

/* What CRIU recorded at the freeze, read once the images are verified and
 * before CRIU runs: which tasks were stopped (so that nothing is restored
 * that could later be woken wrongly), and whether the dump closed TCP
 * connections, which CRIU then requires on restore too. */
static int restore_facts(ckpt_restore_req *req) {
        ckpt__call *call = &req->call;
        bool dumped_closed = false;
        int r;

        r = ckpt__images_tcp_close(call->imgfd, &dumped_closed);
        if (r < 0)
                return nm_error_errno(&req->error, r, "cannot read %s/inventory.img", CKPT_IMAGES_DIR);
        if (dumped_closed) {
                criu_local_set_tcp_established(call->copts, false);
                criu_local_set_tcp_close(call->copts, true);
                req->tcp_closed = true;
        }
        return ckpt__stopped_tasks_at(call->imgfd, &req->stopped_tasks, &req->error);
}

/* ---- restore of a native container ----------------------------------------- */

static const char *override_for(const ckpt_criu_opts *o, const char *key) {
        for (size_t i = 0; i < o->n_ext_mounts; i++)
                if (o->ext_mounts[i].key && strcmp(o->ext_mounts[i].key, key) == 0)
                        return o->ext_mounts[i].val;
        return NULL;
}

static bool is_host_bind_key(const ckpt_native *n, const char *key) {
        for (size_t i = 0; i < n->n_mounts; i++)
                if (n->mounts[i].kind == CKPT_MOUNT_HOST_BIND && strcmp(n->mounts[i].target, key) == 0)
                        return true;
        return false;
}

/* Host binds (key: the mount point) at their source path or the caller's
 * override, and any other external mount the caller named. */
static int restore_ext_mounts(ckpt_restore_req *req, const ckpt_criu_opts *o) {
        const ckpt_native *n = req->desc;
        struct criu_opts *c = req->call.copts;
        for (size_t i = 0; i < n->n_mounts; i++) {
                const char *path;
                if (n->mounts[i].kind != CKPT_MOUNT_HOST_BIND)
                        continue;
                path = override_for(o, n->mounts[i].target);
                if (criu_local_add_ext_mount(c, n->mounts[i].target, path ? path : n->mounts[i].source) < 0)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < o->n_ext_mounts; i++)
                if (!is_host_bind_key(n, o->ext_mounts[i].key) &&
                    criu_local_add_ext_mount(c, o->ext_mounts[i].key, o->ext_mounts[i].val) < 0)
                        return -ENOMEM;
        return 0;
}

/* A process of its own (double-forked, so that nobody has to reap it) that
 * copies a pipe into a file until every writer is gone: the restored
 * container's output goes on through a pipe, as it did from the source's
 * supervisor, and is kept. Only async-signal-safe calls after the fork. */
static int stdio_drain_start(int rfd, const char *file) {
        pid_t pid = fork();
        if (pid < 0)
                return negative_errno();
        if (pid == 0) {
                if (fork() != 0)
                        _exit(0);
                (void)setsid();
                /* Nothing but the pipe: a write end kept here (its own, or
                 * another drain's) would never let it see the end, and the
                 * caller's stdio (a pipe of its own caller) must not stay
                 * open either. */
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                for (int k = 0; k < 3 && null >= 0; k++)
                        (void)dup2(null, k);
                if (rfd > 3)
                        (void)syscall(SYS_close_range, 3U, (unsigned)rfd - 1, 0U);
                (void)syscall(SYS_close_range, (unsigned)rfd + 1, ~0U, 0U);
                int out = open(file ? file : "/dev/null", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
                char buf[4096];
                for (;;) {
                        ssize_t n = read(rfd, buf, sizeof(buf));
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                _exit(0);
                        if (out >= 0 && write(out, buf, (size_t)n) < 0)
                                out = -1; /* keep reading: the writer must not block */
                }
        }
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        return 0;
}

/* One replacement for a stdio object the source had from outside.
 * Close-on-exec like every descriptor of ours: the keeper clears it for
 * this call's CRIU alone (call_keep_fd), so no other child (a page server,
 * another move's CRIU) holds the pipe's write end open. */
static int stdio_replacement(const ckpt_native_stdio *s, const char *stdio_file, int *ret_fd) {
        int p[2];
        if (s->kind == CKPT_STDIO_NULL) {
                *ret_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                return *ret_fd < 0 ? negative_errno() : 0;
        }
        if (!s->write) {
                *ret_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                return *ret_fd < 0 ? negative_errno() : 0;
        }
        /* Output to a pipe stays a pipe (a file would be reopened by CRIU,
         * which then insists on its size), drained into stdio_file. */
        if (pipe2(p, O_CLOEXEC) < 0)
                return negative_errno();
        int r = stdio_drain_start(p[0], stdio_file);
        close(p[0]);
        if (r < 0) {
                close(p[1]);
                return r;
        }
        *ret_fd = p[1];
        return 0;
}

/* stdio the source had from outside, handed to CRIU as this node's
 * equivalents: /dev/null again, and output that went to a pipe into
 * stdio_file through a pipe of its own. */
static int restore_stdio(ckpt_restore_req *req, const char *stdio_file) {
        const ckpt_native *n = req->desc;
        for (size_t i = 0; i < ARRAY_SIZE(n->stdio); i++) {
                const ckpt_native_stdio *s = &n->stdio[i];
                bool seen = false;
                int r;
                if (s->kind != CKPT_STDIO_NULL && s->kind != CKPT_STDIO_PIPE)
                        continue;
                for (size_t k = 0; k < i; k++)
                        seen = seen || (n->stdio[k].key && strcmp(n->stdio[k].key, s->key) == 0);
                if (seen)
                        continue;
                r = stdio_replacement(s, stdio_file, &req->inherit_fds[i]);
                if (r < 0)
                        return nm_error_errno(&req->error, r,
                                              "cannot make a replacement for the container's fd %zu", i);
                if (criu_local_add_inherit_fd(req->call.copts, req->inherit_fds[i], s->key) < 0)
                        return -ENOMEM;
                call_keep_fd(&req->call, req->inherit_fds[i]);
        }
        return 0;
}

static int restore_native_prepare(ckpt_restore_req *req, const ckpt_restore_opts *opts) {
        ckpt__call *call = &req->call;
        const ckpt_native *n = req->desc;
        nm_error *err = &req->error;
        int r;

        req->native = true;
        req->root_tar_fd = openat(call->imgfd, CKPT_ROOTFS_IMAGE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (req->root_tar_fd < 0)
                return nm_error_errno(err, negative_errno(),
                                      "checkpoint %s lacks %s/%s (the root file system)", call->dir,
                                      CKPT_IMAGES_DIR, CKPT_ROOTFS_IMAGE);
        if (opts->root_dir)
                req->root_dir = strdup(opts->root_dir);
        else if (asprintf(&req->root_dir, "%s/root", call->work_dir) < 0)
                req->root_dir = NULL;
        if (!req->root_dir)
                return -ENOMEM;
        if (opts->cgroup_root && n->cgroup &&
            !(req->cgroup_path = ckpt_native_cgroup_path(opts->cgroup_root, req->metadata->container_id)))
                return -ENOMEM;
        if (criu_local_set_root(call->copts, req->root_dir) < 0)
                return -ENOMEM;
        r = restore_ext_mounts(req, &opts->criu);
        if (r < 0)
                return nm_error_set(err, r, "cannot add the external mounts");
        if (n->net == CKPT_NET_BRIDGE) {
                _cleanup_free_ char *veth = NULL;
                if (asprintf(&veth, "veth[%s]:%s@%s", n->vethc, n->veth,
                             opts->bridge ? opts->bridge : n->bridge) < 0) {
                        veth = NULL;
                        return -ENOMEM;
                }
                if (criu_local_add_external(call->copts, veth) < 0)
                        return -ENOMEM;
        }
        /* CRIU puts the tasks into no cgroup of its own (it could not bring
         * back the namespace's view anyway): they are moved into the one
         * made here once CRIU is done. */
        if (opts->criu.manage_cgroups == CKPT_CGROUP_DEFAULT) {
                criu_local_set_manage_cgroups(call->copts, true);
                criu_local_set_manage_cgroups_mode(call->copts, CRIU_CG_MODE_IGNORE);
        }
        return restore_stdio(req, opts->stdio_file);
}

/* On the worker, once the images verified: the root and the cgroup. */
static int restore_native_before(ckpt_restore_req *req) {
        const ckpt_native *n = req->desc;
        const ckpt_native_mount *root = NULL;
        unsigned skipped = 0;
        int r;

        for (size_t i = 0; i < n->n_mounts && !root; i++)
                if (n->mounts[i].kind == CKPT_MOUNT_ROOT)
                        root = &n->mounts[i];
        if (!root)
                return nm_error_set(&req->error, -EBADMSG, "nm_native describes no root mount");
        r = ckpt__root_make(root, req->root_tar_fd, req->root_dir, &req->error);
        if (r < 0)
                return r;
        req->root_made = true;
        if (!req->cgroup_path)
                return 0;
        r = ckpt__cgroup_create(req->cgroup_path, json_object_get(req->metadata->json, "resource_limits"),
                                &skipped, &req->error);
        if (r < 0)
                return r;
        req->cgroup_made = true;
        return 0;
}

static void restore_native_undo(ckpt_restore_req *req) {
        if (req->root_made)
                ckpt__root_unmake(req->root_dir);
        req->root_made = false;
        if (req->cgroup_made)
                (void)ckpt__cgroup_remove(req->cgroup_path, NULL);
        req->cgroup_made = false;
}

/* The copy CRIU restored (req->pid, held stopped) may not run: it is
 * killed, and what was made for it undone. */
static void restore_kill_copy(ckpt_restore_req *req, const char *what) {
        nm_error kerr = {};

        nm_error_prefix(&req->error, "the restored copy (pid %d) was %s", (int)req->pid, what);
        (void)ckpt_kill_tree(req->pid, req->start_ticks, &kerr);
        if (req->desc)
                restore_native_undo(req);
        req->stopped = false;
}

/* The tasks are restored and stopped: the mount flags CRIU lost, the
 * cgroup, then (unless asked not to) they run. A failure kills them again. */
static int restore_native_after(ckpt_restore_req *req) {
        int r;

        r = ckpt__mounts_fixup(req->pid, req->desc, &req->error);
        if (r >= 0 && req->cgroup_path)
                r = ckpt__cgroup_move_tree(req->pid, req->cgroup_path, &req->error);
        if (req->root_made)
                ckpt__root_unmake(req->root_dir);
        req->root_made = false;
        if (r < 0) {
                restore_kill_copy(req, "killed again");
                return r;
        }
        if (!req->leave_stopped) {
                r = ckpt_resume(req->pid, req->start_ticks, &req->stopped_tasks, &req->error);
                if (r < 0)
                        return r;
                req->stopped = false;
        }
        return 0;
}

static int pages_consumable(int imgfd);
static ckpt__gate *signer_gate(ckpt_restore_req *req);

/* Right before CRIU: the page files are unsealed for CRIU's punching, under
 * the guard (only CRIU and we may open them from here on; CRIU only once
 * the signing beside it, if any, has read them). Without a guard they stay
 * sealed and are read as usual. */
static void restore_consume_start(ckpt_restore_req *req) {
        ckpt__call *call = &req->call;
        nm_error gerr = {};
        int r;

        if (!req->consume)
                return;
        if (ckpt__guard_start(call->imgfd, signer_gate(req), &req->guard, &gerr) < 0)
                return; /* sealed, read as usual: consumed_pages says so */
        call->guard = req->guard;
        r = pages_consumable(call->imgfd);
        req->consumed_pages = r > 0;
        if (req->consumed_pages)
                criu_local_set_auto_dedup(call->copts, true);
}

/* After CRIU: the guard's verdict. A page file changed by anyone but CRIU
 * means the restored memory may not be what was verified: the copy (pid,
 * when restored) is killed before anything can resume it. */
static int restore_consume_end(ckpt_restore_req *req, pid_t pid) {
        char msg[256];
        int r;

        if (!req->guard)
                return 0;
        r = ckpt__guard_stop(req->guard, msg, sizeof(msg));
        req->guard = req->call.guard = NULL;
        if (msg[0])
                snprintf(req->warning, sizeof(req->warning), "%s", msg);
        if (r >= 0)
                return 0;
        if (pid > 0) {
                nm_error kerr = {};
                uint64_t ticks = 0;
                (void)ckpt_proc_start_ticks(pid, &ticks);
                (void)ckpt_kill_tree(pid, ticks, &kerr);
        }
        return nm_error_set(&req->error, r, "%s: the restored copy was killed, nothing of it ran", msg);
}

/* ---- the signing beside CRIU (opts->sign_beside) ---------------------------- */

typedef enum signer_where {
        SIGNER_ON_THREAD, /* detached: the gate says when it is over */
        SIGNER_INLINE,    /* no thread (or gate) could start: signed before CRIU, as without sign_beside */
} signer_where;

struct ckpt__signer {
        signer_where where;
        ckpt__gate gate; /* a consuming restore's CRIU opens no page file before it opens */
        int dfd;
        const uint8_t *key;
        size_t key_len;
        int rc;
        uint64_t usec;
        char hex[CKPT_HMAC_HEX_LEN + 1];
        nm_error error;
};

static void *signer_main(void *arg) {
        ckpt__signer *s = arg;
        uint64_t t = ckpt__now_usec();

        s->rc = ckpt_sign_in_place_at(s->dfd, s->key, s->key_len, s->hex, &s->error);
        s->usec = ckpt__now_usec() - t;
        (void)eventfd_write(s->gate.fd, 1);
        /* The last the thread does with s: whoever sees the state may free
         * it (the waiters poll the fd, and look again until it is set). */
        s->gate.state = s->rc < 0 ? CKPT__GATE_BARRED : CKPT__GATE_OPEN;
        return NULL;
}

/* Detached: a thread ended but not joined when the CRIU keeper forks is
 * one the keeper's copy of the process can never join. */
static int signer_spawn(ckpt__signer *s) {
        pthread_attr_t a;
        pthread_t t;
        int r;

        if (s->gate.fd < 0 || pthread_attr_init(&a) != 0)
                return -1;
        r = pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (r == 0)
                r = pthread_create(&t, &a, signer_main, s);
        pthread_attr_destroy(&a);
        return r == 0 ? 0 : -1;
}

static void signer_wait(ckpt__signer *s) {
        struct pollfd p = {.fd = s->gate.fd, .events = POLLIN};

        while (s->gate.state == CKPT__GATE_SHUT)
                (void)poll(&p, 1, -1);
}

static ckpt__gate *signer_gate(ckpt_restore_req *req) {
        return req->signer ? &req->signer->gate : NULL;
}

/* Started before anything of the restore, so that it overlaps all of it;
 * from the worker, whose blocked signals the thread inherits. */
static int signer_start(ckpt_restore_req *req) {
        ckpt__call *call = &req->call;
        ckpt__signer *s;

        if (!req->sign_beside)
                return 0;
        s = calloc(1, sizeof(*s));
        if (!s)
                return nm_error_set(&req->error, -ENOMEM, "cannot sign %s: out of memory", call->dir);
        *s = (ckpt__signer){.dfd = call->dfd, .key = call->key, .key_len = call->key_len};
        s->gate.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        req->signer = s;
        if (signer_spawn(s) == 0)
                return 0;
        s->where = SIGNER_INLINE;
        signer_main(s);
        return 0;
}

/* The signing's outcome, once it is over: 0, or why it failed (in
 * req->error when the restore has not failed already). */
static int signer_end(ckpt_restore_req *req) {
        ckpt__signer *s = req->signer;
        int r;

        if (!s)
                return 0;
        if (s->where == SIGNER_ON_THREAD)
                signer_wait(s);
        req->stats.sign_usec = s->usec;
        r = s->rc;
        if (r >= 0)
                memcpy(req->hmac, s->hex, sizeof(req->hmac));
        else if (req->call.rc == 0)
                nm_error_set(&req->error, r, "cannot sign %s beside the restore: %s", req->call.dir,
                             s->error.msg);
        else if (req->consumed_pages) {
                /* CRIU's failure (refused its page files) follows from this one */
                req->error = (nm_error){};
                nm_error_set(&req->error, r,
                             "cannot sign %s beside the restore: %s; CRIU was refused the page files, "
                             "nothing was restored",
                             req->call.dir, s->error.msg);
                req->call.rc = r;
        }
        if (s->gate.fd >= 0)
                close(s->gate.fd);
        free(s);
        req->signer = NULL;
        return r < 0 ? r : 0;
}

static void restore_steps(ckpt_restore_req *req);

/* The restore's steps, with the signing beside them when asked: the copy
 * is reported restored only once its images are signed too. */
static void restore_work(uv_work_t *w) {
        ckpt_restore_req *req = container_of(w, ckpt_restore_req, call.work);
        ckpt__call *call = &req->call;
        int r;

        call->rc = signer_start(req);
        if (call->rc < 0)
                return;
        restore_steps(req);
        r = signer_end(req);
        if (r < 0 && call->rc == 0) {
                /* held stopped (sign_beside asks for it): the staging would
                 * not verify, so nothing of the copy may run */
                call->rc = r;
                if (req->pid > 0)
                        restore_kill_copy(req, "killed, nothing of it ran");
                req->pid = 0;
        }
}

static void restore_steps(ckpt_restore_req *req) {
        ckpt__call *call = &req->call;
        char excerpt[1024];
        ckpt__stats st;
        sigset_t old;
        uint64_t t;
        int ret, e;

        if (call->key && !req->sign_beside) {
                t = ckpt__now_usec();
                call->rc = ckpt_verify_at(call->dfd, call->key, call->key_len, req->hmac, &req->error);
                req->stats.verify_usec = ckpt__now_usec() - t;
                if (call->rc < 0) {
                        nm_error_prefix(&req->error,
                                        "checkpoint %s failed verification; nothing was restored",
                                        call->dir);
                        return;
                }
                req->verified = true;
        }
        call->rc = restore_facts(req);
        if (call->rc < 0) {
                nm_error_prefix(&req->error, "checkpoint %s: nothing was restored", call->dir);
                return;
        }
        if (req->desc) {
                call->rc = restore_native_before(req);
                if (call->rc < 0) {
                        restore_native_undo(req);
                        return;
                }
        }
        restore_consume_start(req);
        unblock_signals(&old);
        t = ckpt__now_usec();
        ret = criu_run(call, criu_local_restore, 1, &e);
        req->stats.criu_usec = ckpt__now_usec() - t;
        restore_signals(&old);
        if (ret > 0 && restore_consume_end(req, ret) < 0) {
                call->rc = req->error.code;
                if (req->desc)
                        restore_native_undo(req);
                return;
        }
        if (ret <= 0)
                (void)restore_consume_end(req, 0);
        if (ret <= 0) {
                int code = ret == 0 ? -EIO : ret == -ETIMEDOUT ? ret : criu_failure_code(ret, e);
                char tnote[160];
                (void)ckpt__log_excerpt(call->workfd, RESTORE_LOG, excerpt, sizeof(excerpt));
                call->rc = nm_error_set(
                        &req->error, code,
                        "criu restore of %s failed: %s%s (log: %s/%s; the images are untouched)", call->dir,
                        criu_timeout_note(call, ret, tnote, sizeof(tnote)),
                        excerpt[0] ? excerpt : strerror(-code), call->work_dir, RESTORE_LOG);
                if (req->desc)
                        restore_native_undo(req);
                return;
        }
        req->pid = ret;
        req->stopped = req->leave_stopped;
        (void)ckpt_proc_start_ticks(req->pid, &req->start_ticks);
        if (req->desc) {
                call->rc = restore_native_after(req);
                if (call->rc < 0)
                        return;
        }
        read_stats(call->workfd, "stats-restore", &st);
        if (st.restore) {
                req->stats.restore_usec = st.restore_us;
                req->stats.forking_usec = st.forking_us;
        }
        call->rc = 0;
}

/* Clears the immutable flag of every pages-*.img in the images directory,
 * so that CRIU may punch holes in them. */
static bool is_pages_image(const char *name) {
        size_t n = strlen(name);
        return strncmp(name, "pages-", 6) == 0 && n > 10 && strcmp(name + n - 4, ".img") == 0;
}

/* Makes a page image ready for CRIU's punching: its immutable flag cleared
 * (where the file system has one). True when CRIU can punch holes into it
 * (probed past its end, which changes nothing). Any refusal (no support in
 * the file system, an append-only flag, ...) only means the pages are read
 * as usual. */
static bool pages_punchable(int imgfd, const char *name) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        fd = openat(imgfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return false;
        r = fs_set_immutable(fd, false);
        if (r < 0 && r != -ENOTTY && r != -EOPNOTSUPP)
                return false;
        close(fd);
        fd = openat(imgfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return false;
        return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size + 4096, 4096) == 0;
}

/* Prepares every pages-*.img for consumption; 1 when all can be punched. */
static int pages_consumable(int imgfd) {
        DIR *d;
        struct dirent *de;
        int fd, r = 1;

        fd = openat(imgfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        d = fdopendir(fd);
        if (!d) {
                r = negative_errno();
                close(fd);
                return r;
        }
        while (r == 1 && (de = readdir(d)))
                if (is_pages_image(de->d_name) && !pages_punchable(imgfd, de->d_name))
                        r = 0;
        closedir(d);
        return r;
}

static int restore_prepare(ckpt_restore_req *req, const char *dir, const ckpt_restore_opts *opts) {
        static const char *const stale[] = {RESTORE_LOG, "stats-restore", RESTORE_CONF, NULL};
        ckpt__call *call = &req->call;
        ckpt_criu_opts copts = {};
        nm_error *err = &req->error;
        int r;

        r = resolve_criu(&opts->criu, &req->criu_path, &req->criu_version, err);
        if (r < 0)
                return r;
        call->dir = strdup(dir);
        if (!call->dir)
                return -ENOMEM;
        call->dfd = open_dir_nofollow(dir);
        if (call->dfd == -ELOOP)
                return nm_error_set(err, -ELOOP, "refusing symlink checkpoint directory %s", dir);
        if (call->dfd < 0)
                return nm_error_errno(err, call->dfd, "cannot open checkpoint directory %s", dir);
        call->imgfd = openat_dir_beneath(call->dfd, CKPT_IMAGES_DIR);
        if (call->imgfd < 0)
                return nm_error_errno(err, call->imgfd, "cannot open %s/%s", dir, CKPT_IMAGES_DIR);
        r = ckpt_metadata_load(call->dfd, &req->metadata, err);
        if (r < 0) {
                nm_error_prefix(err, "checkpoint %s", dir);
                return r;
        }
        if (req->metadata->using_gvisor)
                return nm_error_set(err, -EOPNOTSUPP,
                                    "checkpoint %s is of a gVisor container; CRIU cannot restore it", dir);
        if (opts->sign_beside && (opts->verify || !opts->leave_stopped))
                return nm_error_set(err, -EINVAL,
                                    "checkpoint %s: signing beside the restore needs the tasks left "
                                    "stopped, and excludes verifying the images",
                                    dir);
        if (opts->verify || opts->sign_beside) {
                r = copy_key(call, opts->key, opts->key_len, err);
                if (r < 0)
                        return r;
        }
        req->sign_beside = opts->sign_beside;
        r = open_work_dir(call, opts->criu.work_dir, dir, err);
        if (r < 0)
                return r;
        unlink_stale(call->workfd, stale);
        req->work_dir = strdup(call->work_dir);
        if (!req->work_dir)
                return -ENOMEM;
        /* What the dump kept comes back, unless CLOSE is asked; a dump made
         * with tcp-close adds it on the worker (restore_facts). */
        copts = opts->criu;
        copts.tcp = opts->criu.tcp == CKPT_TCP_CLOSE ? CKPT_TCP_CLOSE : CKPT_TCP_MOVE;
        req->tcp_closed = copts.tcp == CKPT_TCP_CLOSE;
        r = ckpt_native_from_metadata(req->metadata, &req->desc, err);
        if (r < 0)
                return r;
        if (req->desc && !req->desc->own_mount_ns)
                req->desc = ckpt_native_free(req->desc);
        if (req->desc) {
                /* Host binds are added with their sources (or overrides). */
                copts.n_ext_mounts = 0;
                r = build_copts(call, &copts, req->criu_path, RESTORE_LOG, err);
                if (r >= 0)
                        r = restore_native_prepare(req, opts);
        } else
                r = build_copts(call, &copts, req->criu_path, RESTORE_LOG, err);
        if (r < 0)
                return r;
        req->consume = opts->consume_pages;
        req->leave_stopped = opts->leave_stopped;
        if (opts->leave_stopped || opts->lazy_pages || req->desc) {
                /* libcriu has no setter for RPC's leave_stopped nor for lazy
                 * pages: the RPC configuration file has them. A native
                 * container is always restored stopped: its mounts and cgroup
                 * are set right before it runs. */
                r = rpc_config(call, RESTORE_CONF, "%s%s",
                               opts->leave_stopped || req->desc ? "leave-stopped\n" : "",
                               opts->lazy_pages ? "lazy-pages\n" : "");
                if (r < 0)
                        return nm_error_errno(err, r, "cannot write %s/%s", call->work_dir, RESTORE_CONF);
        }
        return 0;
}

int ckpt_restore(uv_loop_t *loop, ckpt_restore_req *req, const char *dir, const ckpt_restore_opts *opts,
                 ckpt_restore_cb cb) {
        static const ckpt_restore_opts defaults = {.verify = true, .leave_stopped = true};
        int r;

        if (!loop || !req || !dir || !cb)
                return -EINVAL;
        req_reset(req, sizeof(*req), &req->data, &req->event_cb);
        call_init(&req->call);
        req->root_tar_fd = -EBADF;
        for (size_t i = 0; i < ARRAY_SIZE(req->inherit_fds); i++)
                req->inherit_fds[i] = -EBADF;
        req->t0 = ckpt__now_usec();
        req->cb = cb;
        req->call.event = restore_event;
        req->call.kind = CKPT__CALL_RESTORE;
        req->call.finish = restore_finish;
        req->call.state = &req->state;
        r = restore_prepare(req, dir, opts ? opts : &defaults);
        if (r >= 0)
                r = call_start(&req->call, loop, restore_work, &req->error);
        if (r < 0) {
                call_release(&req->call);
                restore_release(req);
                ckpt_restore_req_done(req);
                if (req->error.code == 0)
                        nm_error_errno(&req->error, r, "cannot restore %s", dir);
                return r;
        }
        return 0;
}

int ckpt_restore_cancel(ckpt_restore_req *req) {
        if (!req || req->state != CKPT_OP_QUEUED)
                return -EBUSY;
        nm_error_set(&req->error, -ECANCELED, "the restore was called off before it started");
        return call_cancel(&req->call);
}

void ckpt_restore_req_done(ckpt_restore_req *req) {
        if (!req)
                return;
        req->metadata = ckpt_metadata_free(req->metadata);
        ckpt_stopped_tasks_done(&req->stopped_tasks);
        free(req->cgroup_path);
        req->cgroup_path = NULL;
        free(req->criu_path);
        free(req->criu_version);
        free(req->work_dir);
        req->criu_path = req->criu_version = req->work_dir = NULL;
}
