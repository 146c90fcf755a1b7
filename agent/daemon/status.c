/* SPDX-License-Identifier: Apache-2.0 */
/* What this node runs and what it is moving: for `status`, `list`, the
 * peers' NODE_INFO (drain picks targets by it), and the cordon switch. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "mig.h"
#include "precheck.h"

#define CORDON_FILE "cordoned"

uint64_t status_staging_free(agent *a) {
        struct statvfs st;
        uint64_t free_bytes, used = 0;
        mig *m;

        if (fstatvfs(a->staging_fd, &st) < 0)
                return 0;
        free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
        if (!a->cfg.staging_max)
                return free_bytes;
        LIST_FOREACH(migs, m, a->migs)
        if (!m->finished && m->role == MIG_ROLE_DEST)
                used += m->staging_held > m->offered_bytes ? m->staging_held : m->offered_bytes;
        if (used >= a->cfg.staging_max)
                return 0;
        return free_bytes < a->cfg.staging_max - used ? free_bytes : a->cfg.staging_max - used;
}

static json_t *containers_json(agent *a, unsigned *ret_running) {
        ckpt_container **l = NULL;
        size_t n = 0;
        nm_error err = {};
        json_t *arr = json_array();
        unsigned running = 0;

        if (ckpt_container_list(a->cfg.state_dir, &l, &n, NULL, &err) < 0) {
                log_warning("cannot list containers: %s", err.msg);
                n = 0;
        }
        for (size_t i = 0; i < n; i++) {
                bool up = ckpt_container_is_running(l[i]);
                running += up;
                json_array_append_new(arr, json_pack("{s:s, s:s?, s:i, s:s, s:b}", "id", l[i]->id, "name",
                                                     l[i]->name, "pid", (int)l[i]->pid, "state",
                                                     up ? "running" : "not running", "gvisor",
                                                     l[i]->using_gvisor));
        }
        ckpt_container_list_free(l, n);
        if (ret_running)
                *ret_running = running;
        return arr;
}

void status_node_info(agent *a, proto_node_info *ret) {
        unsigned running = 0;
        json_decref(containers_json(a, &running));
        *ret = (proto_node_info){
                .node = a->cfg.node,
                .cordoned = a->cordoned,
                .staging_free = status_staging_free(a),
                .running = running,
                .migrations = a->n_src + a->n_dst,
                .criu_version = a->criu->version,
                .kernel = a->kernel,
        };
}

static bool rec_matches(json_t *rec, const char *ref) {
        const char *keys[] = {"mig", "container_id", "container_name"};
        if (!ref)
                return true;
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
                const char *v = json_string_value(json_object_get(rec, keys[i]));
                if (v && (strcmp(v, ref) == 0 || (i != 2 && strncmp(v, ref, strlen(ref)) == 0)))
                        return true;
        }
        return false;
}

/* ref: one migration or container; since_s > 0: every finished one since
 * then (the history is kept [agent] history_days), else the recent ones. */
static json_t *migrations_json(agent *a, const char *ref, int64_t since_s) {
        json_t *arr = json_array(), *done = NULL, *rec;
        nm_error err = {};
        size_t i;
        mig *m;

        LIST_FOREACH(migs, m, a->migs) {
                if (!rec_matches(m->rec, ref))
                        continue;
                if (m->finished) {
                        /* Over, its record on its way to done/: shown as it
                         * will be read from there. */
                        if (m->result) {
                                json_t *doc = json_deep_copy(m->result);
                                json_object_set_new(doc, "active", json_false());
                                json_array_append_new(arr, doc);
                        }
                        continue;
                }
                json_t *doc = mig_result_doc(m);
                json_object_set_new(doc, "active", json_true());
                json_object_set_new(doc, "bytes_total", json_integer((json_int_t)m->bytes_total));
                json_array_append_new(arr, doc);
        }
        if (journal_load_done_since(a->journal,
                                    since_s > 0 ? SIZE_MAX
                                    : ref       ? JOURNAL_KEEP_DONE
                                                : 20,
                                    since_s, &done, &err) < 0)
                return arr;
        json_array_foreach(done, i, rec) {
                const char *id = json_string_value(json_object_get(rec, "mig"));
                /* Shown from memory until archive_done. */
                if (!rec_matches(rec, ref) || (id && mig_find_archiving(a, id)))
                        continue;
                json_t *r = json_deep_copy(json_object_get(rec, "result"));
                if (!r) /* a record archived by recovery before it had a result */
                        r = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "mig",
                                      json_object_get(rec, "mig"), "role", json_object_get(rec, "role"),
                                      "container", json_object_get(rec, "container_id"), "name",
                                      json_object_get(rec, "container_name"), "peer",
                                      json_object_get(rec, "peer"), "phase", json_object_get(rec, "phase"),
                                      "error", json_object_get(rec, "error"));
                if (r) {
                        json_object_set_new(r, "active", json_false());
                        json_array_append_new(arr, r);
                }
        }
        json_decref(done);
        return arr;
}

json_t *status_doc(agent *a, const char *ref, int64_t since_s) {
        unsigned running = 0;
        json_t *ctrs = containers_json(a, &running);
        return json_pack("{s:s, s:b, s:s, s:s, s:I, s:i, s:o, s:o, s:o}", "node", a->cfg.node, "cordoned",
                         a->cordoned, "criu", a->criu->path, "criu_version", a->criu->version,
                         "staging_free", (json_int_t)status_staging_free(a), "running", running,
                         "containers", ctrs, "migrations", migrations_json(a, ref, since_s), "precheck",
                         precheck_status(a));
}

json_t *list_doc(agent *a) {
        return json_pack("{s:s, s:o, s:o}", "node", a->cfg.node, "containers", containers_json(a, NULL),
                         "migrations", migrations_json(a, NULL, 0));
}

/* The cordon survives restarts: a file in the work directory. */
int cordon_set(agent *a, bool on, nm_error *err) {
        _cleanup_close_ int dfd = open_dir_nofollow(a->cfg.work_dir);
        int r;
        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open %s", a->cfg.work_dir);
        if (on)
                r = write_file_atomic_at(dfd, CORDON_FILE, "1\n", 2, 0600);
        else
                r = unlinkat(dfd, CORDON_FILE, 0) < 0 && errno != ENOENT ? negative_errno() : 0;
        if (r < 0)
                return nm_error_errno(err, r, "cannot %s this node", on ? "cordon" : "uncordon");
        if (a->cordoned != on)
                log_info("node %s %s: incoming migrations are %s", a->cfg.node,
                         on ? "cordoned" : "uncordoned", on ? "refused" : "accepted");
        a->cordoned = on;
        return 0;
}

int cordon_load(agent *a) {
        _cleanup_close_ int dfd = open_dir_nofollow(a->cfg.work_dir);
        a->cordoned = dfd >= 0 && faccessat(dfd, CORDON_FILE, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
        return 0;
}
