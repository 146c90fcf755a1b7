/* SPDX-License-Identifier: Apache-2.0 */
/* The checks a move makes before anything is frozen: HMAC keys, CRIU on
 * both nodes, this CPU's image for the OFFER (see precheck.h). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "fs-util.h"
#include "log.h"
#include "macro.h"
#include "precheck.h"

#define FACTS_FILE "node-facts.json"
#define FACTS_MAX (256u << 10)
#define KEY_ID_SHOWN 16 /* hex digits of a key identity in messages */

/* What CRIU said about this node, and what that depends on. */
typedef struct node_facts {
        char ident[1024];
        node_check_state check;
        char *check_error; /* why `criu check` failed */
        uint8_t *cpuinfo;  /* `criu cpuinfo dump`; NULL when it failed */
        size_t cpuinfo_len;
        char *cpuinfo_error;
} node_facts;

struct precheck {
        agent *a;
        node_facts facts;
        uv_work_t work; /* taking the facts again */
        node_facts fresh;
        bool refreshing;
};

static const char *const check_state_names[_NODE_CHECK_STATE_MAX] = {
        [NODE_CHECK_PASSED] = "passed",
        [NODE_CHECK_FAILED] = "failed",
        [NODE_CHECK_RUNNING] = "running",
};

const char *node_check_state_to_string(node_check_state s) {
        return s >= 0 && s < _NODE_CHECK_STATE_MAX ? check_state_names[s] : NULL;
}

static void facts_done(node_facts *f) {
        free(f->check_error);
        free(f->cpuinfo);
        free(f->cpuinfo_error);
        *f = (node_facts){};
}

/* The criu binary as it is now, the kernel, the boot: when any of them
 * changed, what CRIU said before may no longer be true. */
static int facts_ident(const agent *a, char *buf, size_t n) {
        _cleanup_free_ char *boot = NULL;
        struct utsname u;
        struct stat st;

        if (stat(a->criu->path, &st) < 0)
                return negative_errno();
        if (uname(&u) < 0)
                return negative_errno();
        if (read_file_at(AT_FDCWD, "/proc/sys/kernel/random/boot_id", 128, &boot, NULL) >= 0)
                boot[strcspn(boot, "\n")] = '\0';
        snprintf(buf, n, "criu %s dev %llu ino %llu size %lld mtime %lld.%09ld; kernel %s %s; boot %s",
                 a->criu->path, (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                 (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, u.release,
                 u.version, boot ? boot : "unknown");
        return 0;
}

/* ---- the cache ---- */

static char *hex_of(const uint8_t *p, size_t n) {
        static const char digits[] = "0123456789abcdef";
        char *s = malloc(2 * n + 1);
        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                s[2 * i] = digits[p[i] >> 4];
                s[2 * i + 1] = digits[p[i] & 15];
        }
        s[2 * n] = '\0';
        return s;
}

static int nibble(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static uint8_t *bytes_of(const char *hex, size_t *ret_len) {
        size_t n = strlen(hex);
        uint8_t *p;

        if (n == 0 || n % 2)
                return NULL;
        p = malloc(n / 2);
        if (!p)
                return NULL;
        for (size_t i = 0; i < n / 2; i++) {
                int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        free(p);
                        return NULL;
                }
                p[i] = (uint8_t)(hi << 4 | lo);
        }
        *ret_len = n / 2;
        return p;
}

static int facts_save(const char *work_dir, const node_facts *f) {
        _cleanup_free_ char *hex = f->cpuinfo ? hex_of(f->cpuinfo, f->cpuinfo_len) : NULL;
        _cleanup_close_ int dfd = open_dir_nofollow(work_dir);
        json_t *doc;
        char *text;
        int r;

        if (dfd < 0)
                return dfd;
        doc = json_pack("{s:s, s:s, s:s?, s:s?, s:s?}", "ident", f->ident, "criu_check",
                        node_check_state_to_string(f->check), "criu_check_error", f->check_error, "cpuinfo",
                        hex, "cpuinfo_error", f->cpuinfo_error);
        text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
        json_decref(doc);
        if (!text)
                return -ENOMEM;
        r = write_file_atomic_at(dfd, FACTS_FILE, text, strlen(text), 0600);
        free(text);
        return r;
}

/* The cached facts, if they are of this ident. */
static int facts_load(const char *work_dir, const char *ident, node_facts *f) {
        _cleanup_close_ int dfd = open_dir_nofollow(work_dir);
        _cleanup_free_ char *text = NULL;
        const char *id = NULL, *check = NULL, *check_error = NULL, *hex = NULL, *cpu_error = NULL;
        json_t *doc;
        int r = -ENOENT;

        if (dfd < 0 || read_file_at(dfd, FACTS_FILE, FACTS_MAX, &text, NULL) < 0)
                return -ENOENT;
        doc = json_loads(text, 0, NULL);
        if (doc &&
            json_unpack(doc, "{s:s, s:s, s?s, s?s, s?s}", "ident", &id, "criu_check", &check,
                        "criu_check_error", &check_error, "cpuinfo", &hex, "cpuinfo_error",
                        &cpu_error) == 0 &&
            strcmp(id, ident) == 0 && (strcmp(check, "passed") == 0 || strcmp(check, "failed") == 0)) {
                snprintf(f->ident, sizeof(f->ident), "%s", id);
                f->check = strcmp(check, "passed") == 0 ? NODE_CHECK_PASSED : NODE_CHECK_FAILED;
                f->check_error = check_error ? strdup(check_error) : NULL;
                f->cpuinfo = hex ? bytes_of(hex, &f->cpuinfo_len) : NULL;
                f->cpuinfo_error = cpu_error ? strdup(cpu_error) : NULL;
                r = 0;
        }
        json_decref(doc);
        return r;
}

/* Asks CRIU now (blocking: start-up or the thread pool) and keeps what it
 * said in the cache. */
static void facts_take(const ckpt_criu *criu, const char *work_dir, const char *ident, node_facts *f) {
        nm_error err = {};

        snprintf(f->ident, sizeof(f->ident), "%s", ident);
        f->check = ckpt_criu_check(criu, &err) < 0 ? NODE_CHECK_FAILED : NODE_CHECK_PASSED;
        if (f->check == NODE_CHECK_FAILED)
                f->check_error = strdup(err.msg);
        nm_error_clear(&err);
        if (ckpt_cpuinfo_dump(criu, work_dir, &f->cpuinfo, &f->cpuinfo_len, &err) < 0)
                f->cpuinfo_error = strdup(err.msg);
        (void)facts_save(work_dir, f);
}

static void facts_log(const node_facts *f) {
        if (f->check == NODE_CHECK_FAILED)
                log_error("criu check fails on this node: moves to and from it are refused: %s",
                          strna(f->check_error));
        if (!f->cpuinfo)
                log_warning("CRIU cannot record this CPU (%s): targets cannot check it before a move",
                            strna(f->cpuinfo_error));
}

int precheck_setup(agent *a, nm_error *err) {
        char ident[sizeof(((node_facts *)NULL)->ident)];
        precheck *p;
        int r;

        r = facts_ident(a, ident, sizeof(ident));
        if (r < 0)
                return nm_error_errno(err, r, "cannot look at %s", a->criu->path);
        p = calloc(1, sizeof(*p));
        if (!p)
                return nm_error_set(err, -ENOMEM, "out of memory");
        p->a = a;
        p->work.data = p;
        a->precheck = p;
        if (facts_load(a->cfg.work_dir, ident, &p->facts) < 0) {
                log_info("asking CRIU about this node (criu check, cpuinfo dump)");
                facts_take(a->criu, a->cfg.work_dir, ident, &p->facts);
        }
        facts_log(&p->facts);
        return 0;
}

void precheck_free(agent *a) {
        if (!a->precheck)
                return;
        facts_done(&a->precheck->facts);
        facts_done(&a->precheck->fresh);
        free(a->precheck);
        a->precheck = NULL;
}

/* ---- taking the facts again ---- */

static void refresh_work(uv_work_t *w) {
        precheck *p = w->data;
        facts_take(p->a->criu, p->a->cfg.work_dir, p->fresh.ident, &p->fresh);
}

static void refresh_after(uv_work_t *w, int status) {
        precheck *p = w->data;
        (void)status;
        facts_done(&p->facts);
        p->facts = p->fresh;
        p->fresh = (node_facts){};
        p->refreshing = false;
        log_info("criu check %s after CRIU, the kernel or the boot changed",
                 node_check_state_to_string(p->facts.check));
        facts_log(&p->facts);
}

/* The facts as they are now: what is cached, unless the criu binary
 * changed under us; then they are being taken again. */
static node_check_state facts_current(agent *a) {
        precheck *p = a->precheck;
        char ident[sizeof(p->facts.ident)];

        if (p->refreshing)
                return NODE_CHECK_RUNNING;
        if (facts_ident(a, ident, sizeof(ident)) < 0 || strcmp(ident, p->facts.ident) == 0)
                return p->facts.check;
        log_info("CRIU (%s), the kernel or the boot changed: checking again", a->criu->path);
        snprintf(p->fresh.ident, sizeof(p->fresh.ident), "%s", ident);
        if (uv_queue_work(a->loop, &p->work, refresh_work, refresh_after) < 0)
                return p->facts.check;
        p->refreshing = true;
        return NODE_CHECK_RUNNING;
}

/* ---- the checks ---- */

static int check_criu(agent *a, char *why, size_t n) {
        node_check_state s = facts_current(a);

        if (s == NODE_CHECK_PASSED)
                return 0;
        if (s == NODE_CHECK_RUNNING) {
                snprintf(why, n, "%s is checking CRIU again (its binary, the kernel or the boot changed)",
                         a->cfg.node);
                return -EBUSY;
        }
        snprintf(why, n, "criu check fails on %s: %s", a->cfg.node, strna(a->precheck->facts.check_error));
        return -EOPNOTSUPP;
}

static int check_key(agent *a, const char *peer, const char *peer_key_id, bool we_are_source, char *why,
                     size_t n) {
        if (!peer_key_id[0] || strcmp(peer_key_id, a->key_id) == 0)
                return 0;
        snprintf(why, n,
                 "the checkpoint HMAC keys differ: %s holds key %.*s..., %s holds key %.*s...; every node "
                 "must hold the cluster's key (on a node that has it: nucleus-provision hmac-key --print | "
                 "ssh root@%s nucleus-provision hmac-key --install - --force)",
                 a->cfg.node, KEY_ID_SHOWN, a->key_id, peer, KEY_ID_SHOWN, peer_key_id,
                 we_are_source ? peer : a->cfg.node);
        return -EOPNOTSUPP;
}

int precheck_source(agent *a, const char *peer, const char *peer_key_id, nm_error *err) {
        char why[1024];
        int r;

        r = check_key(a, peer, peer_key_id, true, why, sizeof(why));
        if (r >= 0)
                r = check_criu(a, why, sizeof(why));
        return r < 0 ? nm_error_set(err, r, "%s", why) : 0;
}

const uint8_t *precheck_cpuinfo(agent *a, size_t *ret_len) {
        *ret_len = a->precheck->facts.cpuinfo_len;
        return a->precheck->facts.cpuinfo;
}

int precheck_target(agent *a, const ctl_conn *cc, proto_reject_code *ret_code, char *why, size_t n) {
        int r = check_key(a, cc->peer_node, cc->key_id, false, why, n);
        if (r >= 0)
                r = check_criu(a, why, n);
        if (r >= 0)
                return 0;
        *ret_code = r == -EBUSY ? PROTO_REJECT_BUSY : PROTO_REJECT_INCOMPATIBLE;
        return -1;
}

json_t *precheck_status(agent *a) {
        const node_facts *f = &a->precheck->facts;
        return json_pack("{s:s, s:s?, s:b, s:s?, s:s}", "criu_check",
                         a->precheck->refreshing ? "running" : node_check_state_to_string(f->check),
                         "criu_check_error", f->check_error, "cpuinfo", f->cpuinfo != NULL, "cpuinfo_error",
                         f->cpuinfo_error, "key_id", a->key_id);
}
