/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"

static int set_str(char **field, const char *value) {
        char *copy = NULL;
        if (value && *value) {
                copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
        }
        free(*field);
        *field = copy;
        return 0;
}

static const char *const tcp_policies[_AGENT_TCP_POLICY_MAX] = {
        [AGENT_TCP_AUTO] = "auto",
        [AGENT_TCP_MOVE] = "move",
        [AGENT_TCP_CLOSE] = "close",
};

const char *agent_tcp_policy_to_string(agent_tcp_policy p) {
        if (p < 0 || p >= _AGENT_TCP_POLICY_MAX)
                return NULL;
        return tcp_policies[p];
}

agent_tcp_policy agent_tcp_policy_from_string(const char *s) {
        for (int i = 0; s && i < _AGENT_TCP_POLICY_MAX; i++)
                if (strcmp(s, tcp_policies[i]) == 0)
                        return (agent_tcp_policy)i;
        return _AGENT_TCP_POLICY_INVALID;
}

int agent_config_init(agent_config *c) {
        const char *state_dir = getenv("NUCLEUS_STATE_DIR");
        const char *cgroup_root = getenv("NUCLEUS_CGROUP_ROOT");
        char host[HOST_NAME_MAX + 1] = "";
        *c = (agent_config){
                .connect_timeout_s = 10,
                .idle_timeout_s = 30,
                .parallel = 2,
                .lanes = 0, /* auto */
                .compress = true,
                .stream_pages = true,
                .consume_staging = true,
                .lazy = true,
                .history_days = 30,
                .criu_timeout_s = 600,
        };
        (void)gethostname(host, sizeof(host) - 1);
        if (set_str(&c->node, host) < 0 || set_str(&c->socket, "/run/nucleus-migrate/agent.sock") < 0 ||
            set_str(&c->state_dir, state_dir && *state_dir ? state_dir : "/var/run/nucleus") < 0 ||
            set_str(&c->work_dir, "/var/lib/nucleus-migrate") < 0 ||
            set_str(&c->hmac_key, "/var/lib/nucleus/checkpoint-hmac.key") < 0 ||
            set_str(&c->log_level, "info") < 0 || set_str(&c->ssh_key, "/etc/nucleus/ssh/id_ed25519") < 0 ||
            set_str(&c->known_hosts, "/etc/nucleus/ssh/known_hosts") < 0 ||
            set_str(&c->ssh_user, "nucleus") < 0 ||
            set_str(&c->remote_command, "nucleus-agent dial-stdio") < 0 ||
            (cgroup_root && *cgroup_root && set_str(&c->cgroup_root, cgroup_root) < 0)) {
                agent_config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void agent_config_done(agent_config *c) {
        char **strs[] = {&c->node,        &c->socket,      &c->socket_group, &c->state_dir,
                         &c->work_dir,    &c->hmac_key,    &c->criu,         &c->log_level,
                         &c->ssh_key,     &c->known_hosts, &c->ssh_user,     &c->remote_command,
                         &c->cgroup_root, &c->bridge,      &c->metrics_file};
        for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
                free(*strs[i]);
                *strs[i] = NULL;
        }
        for (size_t i = 0; i < c->n_peers; i++) {
                free(c->peers[i].name);
                free(c->peers[i].host);
                free(c->peers[i].user);
        }
        free(c->peers);
        c->peers = NULL;
        c->n_peers = 0;
}

int parse_size(const char *s, uint64_t *ret) {
        char *end;
        uint64_t mult = 1;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *s == '-')
                return -EINVAL;
        switch (toupper((unsigned char)*end)) {
        case '\0': break;
        case 'K': mult = 1ULL << 10; break;
        case 'M': mult = 1ULL << 20; break;
        case 'G': mult = 1ULL << 30; break;
        case 'T': mult = 1ULL << 40; break;
        default: return -EINVAL;
        }
        if (*end && end[1] != '\0' && strcasecmp(end + 1, "iB") != 0 && strcasecmp(end + 1, "B") != 0)
                return -EINVAL;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret = v * mult;
        return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || *s == '-' || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = {"1", "yes", "true", "on"}, *const no[] = {"0", "no", "false",
                                                                                    "off"};
        for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0)
                        return *ret = true, 0;
                if (strcasecmp(s, no[i]) == 0)
                        return *ret = false, 0;
        }
        return -EINVAL;
}

static agent_peer *peer_get(agent_config *c, const char *name) {
        for (size_t i = 0; i < c->n_peers; i++)
                if (strcmp(c->peers[i].name, name) == 0)
                        return &c->peers[i];
        agent_peer *n = realloc(c->peers, (c->n_peers + 1) * sizeof(*n));
        if (!n)
                return NULL;
        c->peers = n;
        n = &c->peers[c->n_peers];
        *n = (agent_peer){.name = strdup(name), .port = 22};
        if (!n->name)
                return NULL;
        c->n_peers++;
        return n;
}

static bool valid_node_name(const char *s) {
        if (!*s || strlen(s) > 64)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
                        return false;
        return true;
}

static int set_peer(agent_config *c, const char *name, const char *key, const char *value, nm_error *err) {
        agent_peer *p;
        unsigned port;

        if (!valid_node_name(name))
                return nm_error_set(err, -EINVAL,
                                    "peer name \"%s\" is not valid (letters, digits, -_. only)", name);
        p = peer_get(c, name);
        if (!p)
                return nm_error_set(err, -ENOMEM, "out of memory");
        if (strcmp(key, "host") == 0)
                return set_str(&p->host, value);
        if (strcmp(key, "user") == 0)
                return set_str(&p->user, value);
        if (strcmp(key, "port") == 0) {
                if (parse_uint(value, 1, 65535, &port) < 0)
                        return nm_error_set(err, -EINVAL, "peer %s: port \"%s\" is not 1-65535", name,
                                            value);
                p->port = (uint16_t)port;
                return 0;
        }
        return nm_error_set(err, -EINVAL, "unknown key \"%s\" in [peer %s]", key, name);
}

typedef struct str_key {
        const char *section, *key;
        size_t offset;
} str_key;

#define STR_KEY(s, k, field) \
        { s, k, offsetof(agent_config, field) }
static const str_key str_keys[] = {
        STR_KEY("agent", "node", node),
        STR_KEY("agent", "socket", socket),
        STR_KEY("agent", "socket_group", socket_group),
        STR_KEY("agent", "state_dir", state_dir),
        STR_KEY("agent", "work_dir", work_dir),
        STR_KEY("agent", "hmac_key", hmac_key),
        STR_KEY("agent", "criu", criu),
        STR_KEY("agent", "log_level", log_level),
        STR_KEY("agent", "cgroup_root", cgroup_root),
        STR_KEY("agent", "bridge", bridge),
        STR_KEY("agent", "metrics_file", metrics_file),
        STR_KEY("ssh", "key", ssh_key),
        STR_KEY("ssh", "known_hosts", known_hosts),
        STR_KEY("ssh", "user", ssh_user),
        STR_KEY("ssh", "remote_command", remote_command),
};

static int parse_tcp_policy(const char *value, agent_tcp_policy *ret) {
        agent_tcp_policy p = agent_tcp_policy_from_string(value);
        if (p < 0)
                return -EINVAL;
        *ret = p;
        return 0;
}

static int set_number(agent_config *c, const char *section, const char *key, const char *value,
                      nm_error *err) {
        int r = -ENOENT;
        if (strcmp(section, "agent") == 0 && strcmp(key, "compress") == 0)
                r = parse_bool(value, &c->compress);
        else if (strcmp(section, "agent") == 0 && strcmp(key, "consume_staging") == 0)
                r = parse_bool(value, &c->consume_staging);
        else if (strcmp(section, "agent") == 0 && strcmp(key, "lazy") == 0)
                r = parse_bool(value, &c->lazy);
        else if (strcmp(section, "agent") == 0 && strcmp(key, "stream_pages") == 0)
                r = parse_bool(value, &c->stream_pages);
        else if (strcmp(section, "agent") == 0 && strcmp(key, "criu_timeout") == 0)
                r = parse_uint(value, 1, 86400, &c->criu_timeout_s);
        else if (strcmp(section, "agent") == 0 && strcmp(key, "tcp") == 0)
                r = parse_tcp_policy(value, &c->tcp);
        else if (strcmp(section, "agent") == 0 && strcmp(key, "history_days") == 0)
                r = parse_uint(value, 1, 3650, &c->history_days);
        else if (strcmp(section, "ssh") == 0 && strcmp(key, "connect_timeout") == 0)
                r = parse_uint(value, 1, 3600, &c->connect_timeout_s);
        else if (strcmp(section, "ssh") == 0 && strcmp(key, "idle_timeout") == 0)
                r = parse_uint(value, 1, 86400, &c->idle_timeout_s);
        else if (strcmp(section, "ssh") == 0 && strcmp(key, "accept_new") == 0)
                r = parse_bool(value, &c->accept_new);
        else if (strcmp(section, "ssh") == 0 && strcmp(key, "thread") == 0)
                r = parse_bool(value, &c->ssh_thread);
        else if (strcmp(section, "ssh") == 0 && strcmp(key, "lanes") == 0)
                r = strcmp(value, "auto") == 0 ? (c->lanes = 0, 0)
                                               : parse_uint(value, 1, 4, &c->lanes); /* PROTO_LANES_MAX */
        else if (strcmp(section, "limits") == 0 && strcmp(key, "parallel") == 0)
                r = parse_uint(value, 1, 64, &c->parallel);
        else if (strcmp(section, "limits") == 0 && strcmp(key, "peer_parallel") == 0)
                r = parse_uint(value, 0, 64, &c->peer_parallel);
        else if (strcmp(section, "limits") == 0 && strcmp(key, "staging_max") == 0)
                r = parse_size(value, &c->staging_max);
        else if (strcmp(section, "limits") == 0 && strcmp(key, "bandwidth") == 0)
                r = parse_size(value, &c->bandwidth);
        if (r == -ENOENT)
                return nm_error_set(err, -EINVAL, "unknown key \"%s\" in [%s]", key, section);
        if (r < 0)
                return nm_error_set(err, -EINVAL, "[%s] %s: \"%s\" is not a valid value", section, key,
                                    value);
        return 0;
}

int agent_config_set(agent_config *c, const char *section, const char *key, const char *value,
                     nm_error *err) {
        if (strncmp(section, "peer ", 5) == 0 || strncmp(section, "peer.", 5) == 0)
                return set_peer(c, section + 5, key, value, err);
        for (size_t i = 0; i < ARRAY_SIZE(str_keys); i++)
                if (strcmp(section, str_keys[i].section) == 0 && strcmp(key, str_keys[i].key) == 0) {
                        char **field = (char **)((char *)c + str_keys[i].offset);
                        return set_str(field, value) < 0 ? nm_error_set(err, -ENOMEM, "out of memory") : 0;
                }
        return set_number(c, section, key, value, err);
}

int agent_config_set_assignment(agent_config *c, const char *assignment, nm_error *err) {
        _cleanup_free_ char *copy = strdup(assignment);
        char *eq, *dot;

        if (!copy)
                return -ENOMEM;
        eq = strchr(copy, '=');
        dot = strchr(copy, '.');
        if (!eq || !dot || dot > eq)
                return nm_error_set(err, -EINVAL, "\"%s\" is not of the form section.key=value", assignment);
        *eq = '\0';
        if (strncmp(copy, "peer.", 5) == 0) {
                char *kdot = strrchr(copy, '.');
                if (kdot == copy + 4)
                        return nm_error_set(err, -EINVAL, "\"%s\": use peer.NAME.key=value", assignment);
                *kdot = '\0';
                return agent_config_set(c, copy, kdot + 1, eq + 1, err);
        }
        *dot = '\0';
        return agent_config_set(c, copy, dot + 1, eq + 1, err);
}

typedef struct load_ctx {
        agent_config *c;
        nm_error *err;
        int failed;
} load_ctx;

static int ini_cb(void *user, const char *section, const char *key, const char *value) {
        load_ctx *ctx = user;
        if (ctx->failed)
                return 0;
        ctx->failed = agent_config_set(ctx->c, section, key, value, ctx->err);
        return ctx->failed < 0 ? 0 : 1;
}

static bool owner_ok(uid_t uid) {
        return uid == 0 || uid == geteuid();
}

/* The file's directory: someone who may write there may replace the file. */
static int check_parent(const char *path, const char *what, nm_error *err) {
        _cleanup_free_ char *dir = strdup(path);
        char *slash;
        struct stat st;

        if (!dir)
                return nm_error_set(err, -ENOMEM, "out of memory");
        slash = strrchr(dir, '/');
        if (!slash)
                return 0;
        if (slash == dir)
                slash[1] = '\0';
        else
                *slash = '\0';
        if (stat(dir, &st) < 0)
                return nm_error_errno(err, negative_errno(), "cannot check the directory of %s %s", what,
                                      path);
        if (!owner_ok(st.st_uid))
                return nm_error_set(
                        err, -EPERM,
                        "refusing %s %s: its directory %s is owned by uid %u, not root; fix with: "
                        "chown root %s",
                        what, path, dir, (unsigned)st.st_uid, dir);
        if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX))
                return nm_error_set(err, -EPERM,
                                    "refusing %s %s: its directory %s is writable by group or others (mode "
                                    "%04o), so they could replace it; fix with: chmod go-w %s",
                                    what, path, dir, (unsigned)(st.st_mode & 07777), dir);
        return 0;
}

static int check_stat(const struct stat *stp, const char *path, const char *what, agent_file_rule rule,
                      nm_error *err) {
        const struct stat st = *stp;

        if (!S_ISREG(st.st_mode))
                return nm_error_set(err, -EINVAL, "refusing %s %s: not a regular file", what, path);
        if (!owner_ok(st.st_uid))
                return nm_error_set(
                        err, -EPERM,
                        "refusing %s %s: it is owned by uid %u, not root; fix with: chown root %s", what,
                        path, (unsigned)st.st_uid, path);
        if (rule == AGENT_FILE_SECRET && (st.st_mode & 077))
                return nm_error_set(err, -EPERM,
                                    "refusing %s %s: group or others may read it (mode %04o), and whoever "
                                    "reads it can act as this node; fix with: chmod 600 %s",
                                    what, path, (unsigned)(st.st_mode & 07777), path);
        if (st.st_mode & 022)
                return nm_error_set(err, -EPERM,
                                    "refusing %s %s: group or others may change it (mode %04o); fix with: "
                                    "chmod go-w %s",
                                    what, path, (unsigned)(st.st_mode & 07777), path);
        return check_parent(path, what, err);
}

int agent_check_file(const char *path, const char *what, agent_file_rule rule, nm_error *err) {
        struct stat st;

        if (stat(path, &st) < 0)
                return nm_error_errno(err, negative_errno(), "cannot use %s %s", what, path);
        return check_stat(&st, path, what, rule, err);
}

int agent_config_load(agent_config *c, const char *path, bool must_exist, nm_error *err) {
        load_ctx ctx = {c, err, 0};
        FILE *f = fopen(path, "re");
        int r;

        if (!f) {
                if (errno == ENOENT && !must_exist)
                        return 0;
                return nm_error_errno(err, negative_errno(), "cannot read config %s", path);
        }
        /* Whoever may change the configuration decides which socket,
         * keys and peers we use. */
        struct stat st;
        r = fstat(fileno(f), &st) < 0 ? nm_error_errno(err, negative_errno(), "cannot stat %s", path)
                                      : check_stat(&st, path, "configuration", AGENT_FILE_TRUSTED, err);
        if (r < 0) {
                fclose(f);
                return r;
        }
        /* inih returns the line of the first error (handler or syntax). */
        int line = ini_parse_file(f, ini_cb, &ctx);
        fclose(f);
        if (line == 0)
                return 0;
        if (ctx.failed < 0) {
                nm_error_prefix(err, "%s:%d", path, line);
                return ctx.failed;
        }
        if (line < 0)
                return nm_error_set(err, -ENOMEM, "%s: cannot parse (out of memory)", path);
        return nm_error_set(err, -EINVAL, "%s:%d: syntax error", path, line);
}

int agent_config_check(const agent_config *c, nm_error *err) {
        const char *paths[] = {c->socket,   c->state_dir, c->work_dir,
                               c->hmac_key, c->ssh_key,   c->known_hosts};
        const char *names[] = {"socket", "state_dir", "work_dir", "hmac_key", "ssh key", "known_hosts"};

        if (!c->node || !valid_node_name(c->node))
                return nm_error_set(err, -EINVAL, "node name \"%s\" is not valid: set [agent] node",
                                    strna(c->node));
        for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
                if (!paths[i] || paths[i][0] != '/')
                        return nm_error_set(err, -EINVAL, "%s must be an absolute path (got \"%s\")",
                                            names[i], strna(paths[i]));
        if (c->criu && c->criu[0] != '/')
                return nm_error_set(err, -EINVAL, "criu must be an absolute path (got \"%s\")", c->criu);
        if (c->cgroup_root && c->cgroup_root[0] != '/')
                return nm_error_set(err, -EINVAL, "cgroup_root must be an absolute path (got \"%s\")",
                                    c->cgroup_root);
        if (c->metrics_file && c->metrics_file[0] != '/')
                return nm_error_set(err, -EINVAL, "metrics_file must be an absolute path (got \"%s\")",
                                    c->metrics_file);
        if (log_level_from_string(c->log_level) < 0)
                return nm_error_set(err, -EINVAL, "log_level \"%s\" is not error, warning, info or debug",
                                    c->log_level);
        for (size_t i = 0; i < c->n_peers; i++)
                if (!c->peers[i].host)
                        return nm_error_set(err, -EINVAL, "[peer %s] has no host", c->peers[i].name);
        return 0;
}

const agent_peer *agent_config_peer(const agent_config *c, const char *name_or_host) {
        for (size_t i = 0; i < c->n_peers; i++)
                if (strcmp(c->peers[i].name, name_or_host) == 0)
                        return &c->peers[i];
        for (size_t i = 0; i < c->n_peers; i++)
                if (c->peers[i].host && strcmp(c->peers[i].host, name_or_host) == 0)
                        return &c->peers[i];
        return NULL;
}

char *agent_config_path(const agent_config *c, const char *sub) {
        char *p = NULL;
        return asprintf(&p, "%s/%s", c->work_dir, sub) < 0 ? NULL : p;
}
