/* SPDX-License-Identifier: Apache-2.0 */
/* Keeping the native containers this agent restored (see keeper.h). */
#include "keeper.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fs-util.h"
#include "log.h"
#include "macro.h"

struct keeper {
        agent *a;
        char *id, *address, *cgroup_path;
        pid_t pid;
        uint64_t start_ticks;
        int pidfd;
        uv_poll_t poll;
        uv_work_t work;
        nm_error err;
        int r;
        LIST_FIELDS(keeper, keepers);
};

static int kept_dir(agent *a) {
        _cleanup_free_ char *path = agent_config_path(&a->cfg, "kept");
        return path ? mkdir_p_secure(path, 0700) : -ENOMEM;
}

static keeper *keeper_free(keeper *k) {
        if (!k)
                return NULL;
        if (k->pidfd >= 0)
                close(k->pidfd);
        free(k->id);
        free(k->address);
        free(k->cgroup_path);
        free(k);
        return NULL;
}

static void on_closed(uv_handle_t *h) {
        keeper_free(h->data);
}

/* Leaves the list; the handle (if it was started) frees it once closed. */
static void keeper_drop(keeper *k, bool polling) {
        LIST_REMOVE(keepers, k->a->keepers, k);
        if (polling)
                uv_close((uv_handle_t *)&k->poll, on_closed);
        else
                keeper_free(k);
}

/* ---- what the supervisor would do, on the thread pool ---- */

static void forget_work(uv_work_t *w) {
        keeper *k = container_of(w, keeper, work);
        /* The description as this node knows the copy: its cgroup is the one
         * made here (an absolute path), its address the reserved one. */
        ckpt_native here = {.net = k->address ? CKPT_NET_BRIDGE : CKPT_NET_NONE,
                            .address = k->address,
                            .cgroup = k->cgroup_path,
                            .cgroup_fs = (char *)""};
        k->r = ckpt_native_forget(k->a->cfg.state_dir, k->id, &here, k->pid, &k->err);
}

static void forget_done(uv_work_t *w, int status) {
        keeper *k = container_of(w, keeper, work);
        _cleanup_close_ int dfd = kept_dir(k->a);
        (void)status;

        if (k->r < 0)
                log_ctx_warning(k->id, "container %s (pid %d) exited; cleaning up after it failed: %s",
                                k->id, (int)k->pid, k->err.msg);
        else
                log_ctx_info(k->id,
                             "container %s (pid %d) exited: its address, cgroup and state file are gone",
                             k->id, (int)k->pid);
        if (dfd >= 0)
                (void)unlinkat(dfd, k->id, 0);
        /* Off the list already: the poll handle, if any, was closed. */
        if (k->pidfd < 0)
                keeper_free(k);
        else
                uv_close((uv_handle_t *)&k->poll, on_closed);
}

/* The container is gone: clean up after it (the record goes last). */
static void keeper_forget(keeper *k, bool polling) {
        LIST_REMOVE(keepers, k->a->keepers, k);
        if (polling)
                uv_poll_stop(&k->poll);
        else if (k->pidfd >= 0)
                close(TAKE_FD(k->pidfd));
        if (uv_queue_work(k->a->loop, &k->work, forget_work, forget_done) < 0) {
                forget_work(&k->work);
                forget_done(&k->work, 0);
        }
}

static void on_exit_readable(uv_poll_t *p, int status, int events) {
        keeper *k = p->data;
        (void)status;
        (void)events;
        keeper_forget(k, true);
}

/* Watches k (already on the list): a pidfd becomes readable once the
 * process has exited. A process that is gone, or whose pid now names
 * another, is cleaned up after at once. */
static void keeper_watch(keeper *k) {
        uint64_t ticks = 0;
        int fd = (int)syscall(SYS_pidfd_open, k->pid, 0);

        if (fd < 0 || ckpt_proc_start_ticks(k->pid, &ticks) < 0 || ticks != k->start_ticks) {
                if (fd >= 0)
                        close(fd);
                keeper_forget(k, false);
                return;
        }
        k->pidfd = fd;
        if (uv_poll_init(k->a->loop, &k->poll, fd) < 0) {
                log_ctx_error(k->id, "cannot watch container %s (pid %d)", k->id, (int)k->pid);
                keeper_drop(k, false);
                return;
        }
        k->poll.data = k;
        (void)uv_poll_start(&k->poll, UV_READABLE, on_exit_readable);
        log_ctx_info(k->id, "keeping container %s (pid %d): cleaned up after here when it exits", k->id,
                     (int)k->pid);
}

static keeper *keeper_new(agent *a, const keeper_entry *e) {
        keeper *k = calloc(1, sizeof(*k));

        if (!k)
                return NULL;
        k->a = a;
        k->pidfd = -EBADF;
        k->pid = e->pid;
        k->start_ticks = e->start_ticks;
        k->id = strdup(e->id);
        k->address = e->address ? strdup(e->address) : NULL;
        k->cgroup_path = e->cgroup_path ? strdup(e->cgroup_path) : NULL;
        if (!k->id || (e->address && !k->address) || (e->cgroup_path && !k->cgroup_path))
                return keeper_free(k);
        LIST_PREPEND(keepers, a->keepers, k);
        return k;
}

int keeper_adopt(agent *a, const keeper_entry *e, nm_error *err) {
        _cleanup_close_ int dfd = kept_dir(a);
        _cleanup_free_ char *text = NULL;
        json_t *o;
        keeper *k;
        int r;

        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot create the agent's kept/ directory");
        if (!ckpt_container_id_valid(e->id))
                return nm_error_set(err, -EINVAL, "invalid container id");
        o = json_pack("{s:s, s:i, s:I, s:s?, s:s?}", "id", e->id, "pid", (int)e->pid, "start_ticks",
                      (json_int_t)e->start_ticks, "address", e->address, "cgroup_path", e->cgroup_path);
        text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!text)
                return nm_error_set(err, -ENOMEM, "out of memory");
        r = write_file_atomic_at(dfd, e->id, text, strlen(text), 0600);
        if (r < 0)
                return nm_error_errno(err, r, "cannot record container %s as kept", e->id);
        k = keeper_new(a, e);
        if (!k)
                return nm_error_set(err, -ENOMEM, "out of memory");
        keeper_watch(k);
        return 0;
}

static void load_one(agent *a, int dfd, const char *name) {
        _cleanup_free_ char *text = NULL;
        json_t *o = NULL;
        keeper *k;

        if (read_file_at(dfd, name, 1 << 16, &text, NULL) >= 0)
                o = json_loads(text, 0, NULL);
        keeper_entry e = {
                .id = json_string_value(json_object_get(o, "id")),
                .pid = (pid_t)json_integer_value(json_object_get(o, "pid")),
                .start_ticks = (uint64_t)json_integer_value(json_object_get(o, "start_ticks")),
                .address = json_string_value(json_object_get(o, "address")),
                .cgroup_path = json_string_value(json_object_get(o, "cgroup_path")),
        };
        if (!e.id || strcmp(e.id, name) != 0 || e.pid <= 0) {
                log_warning("removing the unreadable kept record %s", name);
                (void)unlinkat(dfd, name, 0);
        } else if ((k = keeper_new(a, &e))) {
                keeper_watch(k);
        }
        json_decref(o);
}

void keeper_load_all(agent *a) {
        _cleanup_close_ int dfd = kept_dir(a);
        struct dirent *de;
        DIR *d;

        if (dfd < 0 || !(d = fdopendir(dup(dfd))))
                return;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' && !strstr(de->d_name, ".tmp"))
                        load_one(a, dfd, de->d_name);
        closedir(d);
}

/* ---- MASQUERADE for the bridge's subnet ---- */

typedef struct masq {
        uv_process_t proc;
        char *ctx, *subnet, *bridge;
        bool adding; /* the check said it is missing: this is the -A */
} masq;

static void masq_free(uv_handle_t *h) {
        masq *q = h->data;
        free(q->ctx);
        free(q->subnet);
        free(q->bridge);
        free(q);
}

static void masq_exited(uv_process_t *p, int64_t status, int signal);

/* q->proc.data is set first: a failed uv_spawn still needs uv_close. */
static int masq_spawn(uv_loop_t *loop, masq *q) {
        char *args[] = {(char *)"iptables",
                        (char *)"-w",
                        (char *)"-t",
                        (char *)"nat",
                        (char *)(q->adding ? "-A" : "-C"),
                        (char *)"POSTROUTING",
                        (char *)"-s",
                        q->subnet,
                        (char *)"!",
                        (char *)"-o",
                        q->bridge,
                        (char *)"-j",
                        (char *)"MASQUERADE",
                        NULL};
        uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_IGNORE}};
        uv_process_options_t o = {
                .exit_cb = masq_exited, .file = "iptables", .args = args, .stdio_count = 3, .stdio = stdio};
        q->proc.data = q;
        return uv_spawn(loop, &q->proc, &o);
}

static void masq_exited(uv_process_t *p, int64_t status, int signal) {
        masq *q = p->data;
        bool missing = !q->adding && status == 1 && !signal; /* -C: 1 means "no such rule" */

        if (q->adding && (status || signal))
                log_ctx_warning(q->ctx, "cannot add MASQUERADE for %s on this node (iptables exit %lld)",
                                q->subnet, (long long)status);
        else if (q->adding)
                log_ctx_info(q->ctx, "added MASQUERADE for %s (not via %s) on this node", q->subnet,
                             q->bridge);
        else if (status && !missing)
                log_ctx_warning(q->ctx, "cannot check MASQUERADE for %s (iptables exit %lld)", q->subnet,
                                (long long)status);
        if (missing) {
                masq *n = calloc(1, sizeof(*n));
                int r = -ENOMEM;
                if (n && (n->ctx = strdup(q->ctx)) && (n->subnet = strdup(q->subnet)) &&
                    (n->bridge = strdup(q->bridge))) {
                        n->adding = true;
                        r = masq_spawn(p->loop, n);
                        if (r < 0) /* uv_spawn initialized the handle anyway */
                                uv_close((uv_handle_t *)&n->proc, masq_free);
                } else if (n) {
                        masq_free(&(uv_handle_t){.data = n});
                }
                if (r < 0)
                        log_ctx_warning(q->ctx, "cannot add MASQUERADE for %s on this node", q->subnet);
        }
        uv_close((uv_handle_t *)p, masq_free);
}

void keeper_ensure_masquerade(agent *a, const char *ctx, const char *subnet, const char *bridge) {
        masq *q = calloc(1, sizeof(*q));
        int r = -ENOMEM;

        if (q && (q->ctx = strdup(ctx)) && (q->subnet = strdup(subnet)) && (q->bridge = strdup(bridge))) {
                r = masq_spawn(a->loop, q);
                if (r < 0) /* uv_spawn initialized the handle anyway */
                        uv_close((uv_handle_t *)&q->proc, masq_free);
        } else if (q) {
                masq_free(&(uv_handle_t){.data = q});
        }
        if (r < 0)
                log_ctx_warning(ctx, "cannot check MASQUERADE for %s: %s", subnet,
                                r == -ENOMEM ? "out of memory" : uv_strerror(r));
}

void keeper_close_all(agent *a) {
        keeper *k, *n;
        LIST_FOREACH_SAFE(keepers, k, n, a->keepers)
        keeper_drop(k, k->pidfd >= 0);
}
