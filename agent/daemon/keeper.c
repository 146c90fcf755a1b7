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
        char *subnet, *bridge;   /* its MASQUERADE rule's, or NULL */
        ckpt_native_port *ports; /* published to address */
        size_t n_ports;
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
        free(k->subnet);
        free(k->bridge);
        free(k->ports);
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

static ckpt_native_nat keeper_nat(const keeper *k) {
        return (ckpt_native_nat){.address = k->address,
                                 .subnet = k->subnet,
                                 .bridge = k->bridge,
                                 .ports = k->ports,
                                 .n_ports = k->n_ports};
}

static bool keeper_has_nat(const keeper *k) {
        return k->address && (k->subnet || k->n_ports);
}

static void forget_work(uv_work_t *w) {
        keeper *k = container_of(w, keeper, work);
        if (keeper_has_nat(k)) {
                ckpt_native_nat nat = keeper_nat(k);
                nm_error e = {};
                /* The supervisor's share of the nat table: one MASQUERADE
                 * rule and the published ports' DNAT rules. */
                if (ckpt_native_nat_remove(&nat, &e) < 0)
                        log_ctx_warning(k->id, "container %s exited; its NAT rules: %s", k->id, e.msg);
                else
                        log_ctx_info(k->id,
                                     "container %s exited: its MASQUERADE rule and %zu published port(s) "
                                     "are gone",
                                     k->id, k->n_ports);
        }
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

/* ---- the supervisor's nat rules, made at the start of the keeping ---- */

static void install_work(uv_work_t *w) {
        keeper *k = container_of(w, keeper, work);
        ckpt_native_nat nat = keeper_nat(k);
        k->r = ckpt_native_nat_install(&nat, &k->err);
}

/* After a restart: the record may have been written just before a crash
 * cut the install short (or someone removed rules since). */
static void ensure_work(uv_work_t *w) {
        keeper *k = container_of(w, keeper, work);
        ckpt_native_nat nat = keeper_nat(k);
        k->r = ckpt_native_nat_ensure(&nat, &k->err);
}

static void install_done(uv_work_t *w, int status) {
        keeper *k = container_of(w, keeper, work);
        (void)status;

        if (k->r < 0) {
                log_ctx_error(k->id, "container %s runs here without its NAT rules: %s", k->id, k->err.msg);
                /* Nothing of them is left to remove at its exit. */
                free(k->subnet);
                k->subnet = NULL;
                k->n_ports = 0;
        } else {
                log_ctx_info(k->id, "container %s: a MASQUERADE rule for %s and %zu published port(s) in place",
                             k->id, k->subnet ? k->subnet : "-", k->n_ports);
        }
        nm_error_clear(&k->err);
        k->r = 0;
        keeper_watch(k);
}

/* The rules first, then the watch: an exit is then seen after them, and
 * its cleanup cannot run before they are in. */
static void keeper_nat_then_watch(keeper *k, uv_work_cb work) {
        if (!keeper_has_nat(k)) {
                keeper_watch(k);
                return;
        }
        if (uv_queue_work(k->a->loop, &k->work, work, install_done) < 0) {
                work(&k->work);
                install_done(&k->work, 0);
        }
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
        k->subnet = e->subnet ? strdup(e->subnet) : NULL;
        k->bridge = e->bridge ? strdup(e->bridge) : NULL;
        if (e->n_ports && (k->ports = calloc(e->n_ports, sizeof(*k->ports)))) {
                memcpy(k->ports, e->ports, e->n_ports * sizeof(*k->ports));
                k->n_ports = e->n_ports;
        }
        if (!k->id || (e->address && !k->address) || (e->cgroup_path && !k->cgroup_path) ||
            (e->subnet && !k->subnet) || (e->bridge && !k->bridge) || (e->n_ports && !k->ports))
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
        o = json_pack("{s:s, s:i, s:I, s:s?, s:s?, s:s?, s:s?, s:o}", "id", e->id, "pid", (int)e->pid,
                      "start_ticks", (json_int_t)e->start_ticks, "address", e->address, "cgroup_path",
                      e->cgroup_path, "subnet", e->subnet, "bridge", e->bridge, "ports",
                      ckpt_native_ports_to_json(e->ports, e->n_ports));
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
        keeper_nat_then_watch(k, install_work);
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
                .subnet = json_string_value(json_object_get(o, "subnet")),
                .bridge = json_string_value(json_object_get(o, "bridge")),
        };
        _cleanup_free_ ckpt_native_port *ports = NULL;
        nm_error perr = {};
        if (ckpt_native_ports_from_json(json_object_get(o, "ports"), &ports, &e.n_ports, &perr) < 0)
                log_warning("kept record %s: %s (its published ports stay)", name, perr.msg);
        e.ports = ports;
        if (!e.id || strcmp(e.id, name) != 0 || e.pid <= 0) {
                log_warning("removing the unreadable kept record %s", name);
                (void)unlinkat(dfd, name, 0);
        } else if ((k = keeper_new(a, &e))) {
                keeper_nat_then_watch(k, ensure_work);
        }
        json_decref(o);
}

void keeper_load_all(agent *a) {
        _cleanup_close_ int dfd = kept_dir(a);
        struct dirent *de;
        DIR *d;

        if (dfd < 0 || !(d = fs_opendir_dup(dfd)))
                return;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' && !strstr(de->d_name, ".tmp"))
                        load_one(a, dfd, de->d_name);
        closedir(d);
}

void keeper_close_all(agent *a) {
        keeper *k, *n;
        LIST_FOREACH_SAFE(keepers, k, n, a->keepers)
        keeper_drop(k, k->pidfd >= 0);
}
