/* SPDX-License-Identifier: Apache-2.0 */
#include "cli-verbs.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli-client.h"
#include "cli.h"
#include "config.h"
#include "exit-codes.h"
#include "macro.h"

typedef struct common_opts {
        const char *socket, *config;
        bool json;
} common_opts;

enum {
        OPT_SOCKET = 256,
        OPT_CONFIG,
        OPT_JSON,
        OPT_PID,
        OPT_TO,
        OPT_PARALLEL,
        OPT_LAZY,
        OPT_TCP,
        OPT_ACCEPT_LANDLOCK
};

#define COMMON_OPTIONS                                                                                    \
        {"socket", required_argument, NULL, OPT_SOCKET}, {"config", required_argument, NULL, OPT_CONFIG}, \
                {"json", no_argument, NULL, OPT_JSON}, {                                                  \
                "help", no_argument, NULL, 'h'                                                            \
        }

#define COMMON_HELP                                                                              \
        "      --json            machine-readable output: one JSON object per line\n"            \
        "      --socket PATH     the agent's control socket (default: from the configuration,\n" \
        "                        else /run/nucleus-migrate/agent.sock)\n"                        \
        "      --config FILE     the agent's configuration (default /etc/nucleus/agent.conf)\n"  \
        "  -h, --help            show this help\n"

static bool common_opt(common_opts *o, int c) {
        switch (c) {
        case OPT_SOCKET: o->socket = optarg; return true;
        case OPT_CONFIG: o->config = optarg; return true;
        case OPT_JSON: o->json = true; return true;
        default: return false;
        }
}

static int exit_for_errno(int code) {
        switch (-code) {
        case ENOENT:
        case ENOTUNIQ: return NM_EXIT_NOT_FOUND;
        case ECONNREFUSED:
        case EACCES: return NM_EXIT_UNAVAILABLE;
        case ECONNRESET:
        case EPIPE:
                /* The request reached the agent, the answer did not. */
                return NM_EXIT_IN_DOUBT;
        default: return NM_EXIT_FAILURE;
        }
}

/* Runs the request; prints the error itself and returns an exit code, or
 * returns -1 with req->result set. */
static int call_agent(const common_opts *o, const proto_msg *msg, cli_out *out, json_t **ret) {
        cli_request req = {.socket = o->socket, .config = o->config, .msg = msg, .out = out};
        int r = cli_call(&req);
        if (r < 0) {
                if (o->json) {
                        json_t *doc = json_pack("{s:s, s:s, s:i}", "outcome", "error", "error", req.err.msg,
                                                "errno", -r);
                        cli_out_result(out, doc, NULL);
                        json_decref(doc);
                } else {
                        fprintf(stderr, "%s: %s\n", cli_program, nm_error_msg(&req.err));
                        if (r == -ECONNREFUSED || r == -ENOENT)
                                fprintf(stderr,
                                        "%s: is nucleus-agent running? (systemctl status nucleus-agent)\n",
                                        cli_program);
                        if (r == -ECONNRESET || r == -EPIPE)
                                fprintf(stderr,
                                        "%s: the agent went away before answering; its journal finishes "
                                        "the work when it restarts: see '%s status'\n",
                                        cli_program, cli_program);
                }
                return r == -ECONNREFUSED || (r == -ENOENT && !req.result) ? NM_EXIT_UNAVAILABLE
                                                                           : exit_for_errno(r);
        }
        *ret = req.result;
        return -1;
}

static const char *jstr(json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "-";
}

/* ---- migrate ---- */

static void migrate_text(FILE *f, json_t *doc) {
        const char *outcome = jstr(doc, "outcome");
        char bytes[32], dur[32], down[32];
        format_bytes(bytes, sizeof(bytes), (uint64_t)json_integer_value(json_object_get(doc, "bytes")));
        format_duration_ms(dur, sizeof(dur),
                           (uint64_t)json_integer_value(json_object_get(doc, "duration_ms")));
        format_duration_ms(down, sizeof(down),
                           (uint64_t)json_integer_value(json_object_get(doc, "downtime_ms")));
        if (strcmp(outcome, "done") == 0) {
                fprintf(f, "moved %s (%s) from %s to %s: pid %lld there\n", jstr(doc, "name"),
                        jstr(doc, "container"), jstr(doc, "source"), jstr(doc, "target"),
                        json_integer_value(json_object_get(doc, "new_pid")));
                fprintf(f, "downtime %s, %s of images, %s in all\n", down, bytes, dur);
                return;
        }
        if (strcmp(outcome, "rolled-back") == 0)
                fprintf(f, "NOT moved: %s\nthe container was restored and still runs here (pid %lld)\n",
                        jstr(doc, "error"), json_integer_value(json_object_get(doc, "new_pid")));
        else if (strcmp(outcome, "in-doubt") == 0)
                fprintf(f,
                        "IN DOUBT: %s\nthe handoff is committed; the agent keeps going until %s confirms.\n"
                        "see: %s status %s\n",
                        jstr(doc, "error"), jstr(doc, "target"), cli_program, jstr(doc, "mig"));
        else if (strcmp(outcome, "lost") == 0)
                fprintf(f, "LOST: %s\nno copy could be brought back; images are kept. see: %s status %s\n",
                        jstr(doc, "error"), cli_program, jstr(doc, "mig"));
        else
                fprintf(f, "NOT moved (%s): %s\nthe container was not touched\n", outcome,
                        jstr(doc, "error"));
}

static int migrate_exit(json_t *doc) {
        json_t *code = json_object_get(doc, "exit_code");
        if (json_is_integer(code))
                return (int)json_integer_value(code);
        int e = (int)json_integer_value(json_object_get(doc, "errno"));
        if (e == ENOENT || e == ENOTUNIQ)
                return NM_EXIT_NOT_FOUND;
        return strcmp(jstr(doc, "outcome"), "refused") == 0 ? NM_EXIT_REFUSED : NM_EXIT_FAILURE;
}

static void migrate_help(FILE *f) {
        fprintf(f,
                "Usage: %s migrate CONTAINER TARGET [OPTIONS...]\n"
                "       %s CONTAINER TARGET [OPTIONS...]\n"
                "       %s migrate --pid PID TARGET [OPTIONS...]\n"
                "\n"
                "Moves a running container to the node TARGET (a [peer] name in the agent's\n"
                "configuration, or its address). The local agent freezes and dumps it with CRIU,\n"
                "streams the signed images over SSH to the agent on TARGET, which verifies every\n"
                "byte and restores it stopped; only then does this node commit and the copy there\n"
                "resume. If anything fails before the commit, the container is restored here.\n"
                "\n"
                "CONTAINER is a nucleus container id, a unique name, or a unique id prefix.\n"
                "\n"
                "Options:\n"
                "      --pid PID         move the process tree rooted at PID instead of a "
                "container\n"
                "      --lazy            post-copy: resume on TARGET before the memory has moved;\n"
                "                        its pages follow while it runs (downtime barely grows\n"
                "                        with memory size). RISK: from the dump until the last\n"
                "                        page has arrived, the memory exists only in the frozen\n"
                "                        tasks here. A failure before the commit resumes them here\n"
                "                        (unless the agent here dies); but if the link, either\n"
                "                        agent or either node dies after the commit and before\n"
                "                        the last page, the container cannot continue anywhere:\n"
                "                        the copy on TARGET is ended (its memory is incomplete),\n"
                "                        CRIU ends the one here, and the result is \"lost\"\n"
                "                        (exit 9). Use it for containers that can be restarted.\n"
                "                        Pages travel inside the SSH session (its integrity\n"
                "                        check) and are not covered by the image HMAC.\n"
                "      --tcp MODE        established TCP connections: auto, move or close\n"
                "                        (default: [agent] tcp, auto unless configured). 'move'\n"
                "                        takes each connection with its state: right only where\n"
                "                        both ends stay reachable after the move (inside the\n"
                "                        container's own network namespace, or a peer on the\n"
                "                        same bridge). 'close' closes them on TARGET; the\n"
                "                        application sees them fail and reconnects (a rollback\n"
                "                        closes them too). 'auto' moves them when the container\n"
                "                        has a network namespace of its own and closes them\n"
                "                        when it shares this node's, whose addresses stay "
                "here.\n"
                "      --accept-landlock-loss\n"
                "                        move a nucleus container although it runs under\n"
                "                        Landlock, which CRIU cannot carry: the copy on TARGET\n"
                "                        runs without it. Recorded in the journal and the result\n"
                "                        (\"landlock\": \"accepted-loss\"); refused (exit 3) without "
                "it.\n" COMMON_HELP "\n"
                "Everything else CRIU can checkpoint moves as it is: file locks (flock, POSIX,\n"
                "open-file-description locks, leases) stay held, and tasks that were stopped\n"
                "(SIGSTOP, SIGTSTP) before the move stay stopped on TARGET.\n"
                "\n"
                "A container of nucleus's native runtime is held stopped here from the dump\n"
                "until the commit, which ends it: a failure before it resumes it in place. It\n"
                "moves whole (root tmpfs, mounts, cgroup, its veth and address on the\n"
                "bridge, seccomp, capabilities); what cannot move is refused before anything\n"
                "is frozen (exit 3, with the reason): checks here (tap networking, the\n"
                "production-mode init, a user namespace, journald stdio, Landlock without\n"
                "--accept-landlock-loss, ...) and on TARGET before it accepts (bridge and\n"
                "subnet, the address and veth name free, bind sources, memory for the root).\n"
                "\n"
                "On a terminal a live progress line shows the phase, bytes, rate and ETA.\n"
                "\n"
                "Exit status:\n"
                "  0  moved: the container runs on TARGET\n"
                "  1  failed before anything changed\n"
                "  2  bad command line\n"
                "  3  refused (cordoned target, no space, already there, ...): not touched\n"
                "  4  rolled back: it runs here again (resumed in place, or restored here)\n"
                "  5  in doubt: committed, TARGET has not confirmed yet; the agent keeps trying\n"
                "  6  no such container, or the name is ambiguous\n"
                "  8  the local agent is not running\n"
                "  9  lost: no copy could be brought back (images kept; see status)\n",
                cli_program, cli_program, cli_program);
}

int verb_migrate(int argc, char **argv) {
        static const struct option options[] = {
                {"pid", required_argument, NULL, OPT_PID},
                {"lazy", no_argument, NULL, OPT_LAZY},
                {"tcp", required_argument, NULL, OPT_TCP},
                {"accept-landlock-loss", no_argument, NULL, OPT_ACCEPT_LANDLOCK},
                COMMON_OPTIONS,
                {}};
        common_opts o = {};
        const char *ref = NULL, *target = NULL;
        unsigned long pid = 0;
        bool lazy = false, accept_landlock = false;
        const char *tcp = NULL;
        json_t *doc = NULL;
        cli_out out;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (common_opt(&o, c))
                        continue;
                switch (c) {
                case OPT_PID: pid = strtoul(optarg, NULL, 10); break;
                case OPT_LAZY: lazy = true; break;
                case OPT_ACCEPT_LANDLOCK: accept_landlock = true; break;
                case OPT_TCP:
                        if (agent_tcp_policy_from_string(optarg) < 0) {
                                fprintf(stderr, "%s: --tcp wants auto, move or close, not '%s'\n",
                                        cli_program, optarg);
                                return NM_EXIT_USAGE;
                        }
                        tcp = optarg;
                        break;
                case 'h': migrate_help(stdout); return NM_EXIT_OK;
                default: migrate_help(stderr); return NM_EXIT_USAGE;
                }
        }
        if (!pid && optind < argc)
                ref = argv[optind++];
        if (optind < argc)
                target = argv[optind++];
        if ((!ref && !pid) || !target || optind < argc) {
                fprintf(stderr, "%s: usage: %s migrate CONTAINER TARGET (see --help)\n", cli_program,
                        cli_program);
                return NM_EXIT_USAGE;
        }
        proto_opt opts[3];
        size_t n_opts = 0;
        if (lazy)
                opts[n_opts++] = (proto_opt){.key = "lazy", .kind = PROTO_OPT_BOOL, .b = true};
        if (tcp)
                opts[n_opts++] = (proto_opt){.key = "tcp", .kind = PROTO_OPT_STR, .s = tcp};
        if (accept_landlock)
                opts[n_opts++] =
                        (proto_opt){.key = "accept_landlock_loss", .kind = PROTO_OPT_BOOL, .b = true};
        proto_msg req = {.type = PROTO_MSG_MIGRATE,
                         .migrate = {.container = ref,
                                     .has_pid = pid > 0,
                                     .pid = (uint32_t)pid,
                                     .target = target,
                                     .opts = {opts, n_opts}}};
        cli_out_init(&out, stdout, o.json);
        r = call_agent(&o, &req, &out, &doc);
        if (r >= 0)
                return r;
        cli_out_result(&out, doc, migrate_text);
        r = migrate_exit(doc);
        json_decref(doc);
        return r;
}

/* ---- drain ---- */

static void drain_text(FILE *f, json_t *doc) {
        json_t *items = json_object_get(doc, "items"), *it;
        size_t i;
        fprintf(f, "%-34s %-16s %-10s %-12s %s\n", "CONTAINER", "NAME", "TARGET", "OUTCOME", "DETAIL");
        json_array_foreach(items, i, it) {
                char down[32] = "";
                if (json_is_integer(json_object_get(it, "downtime_ms")))
                        format_duration_ms(down, sizeof(down),
                                           (uint64_t)json_integer_value(json_object_get(it, "downtime_ms")));
                fprintf(f, "%-34s %-16s %-10s %-12s %s%s\n", jstr(it, "container"), jstr(it, "name"),
                        jstr(it, "target"), jstr(it, "outcome"), down[0] ? "downtime " : "",
                        down[0]                                        ? down
                        : json_is_string(json_object_get(it, "error")) ? jstr(it, "error")
                                                                       : "");
        }
        fprintf(f, "%lld moved, %lld not moved\n", json_integer_value(json_object_get(doc, "moved")),
                json_integer_value(json_object_get(doc, "failed")));
}

static void drain_help(FILE *f) {
        fprintf(f,
                "Usage: %s drain [--to NODE[,NODE...]] [--parallel N] [OPTIONS...]\n"
                "\n"
                "Moves every running container off this node. Each goes to the target that\n"
                "reports the fewest containers and room in its staging area; N moves run at a\n"
                "time. A container that cannot move (gVisor, refused, failed) stays here and\n"
                "is reported; the others go on. Cordon this node first if nothing should arrive.\n"
                "\n"
                "Options:\n"
                "      --to NODES        comma-separated targets (default: every configured peer)\n"
                "      --parallel N      moves at a time (default 2; capped by "
                "limits.parallel)\n" COMMON_HELP "\n"
                "Exit status: 0 when every container moved, 4 when some did not (see the table),\n"
                "8 when the local agent is not running.\n",
                cli_program);
}

int verb_drain(int argc, char **argv) {
        static const struct option options[] = {{"to", required_argument, NULL, OPT_TO},
                                                {"parallel", required_argument, NULL, OPT_PARALLEL},
                                                COMMON_OPTIONS,
                                                {}};
        common_opts o = {};
        _cleanup_free_ char *to = NULL;
        const char *targets[64];
        size_t n = 0;
        unsigned long parallel = 2;
        json_t *doc = NULL;
        cli_out out;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (common_opt(&o, c))
                        continue;
                switch (c) {
                case OPT_TO:
                        free(to);
                        to = strdup(optarg);
                        break;
                case OPT_PARALLEL:
                        parallel = strtoul(optarg, NULL, 10);
                        if (parallel < 1 || parallel > 64) {
                                fprintf(stderr, "%s: --parallel must be 1..64\n", cli_program);
                                return NM_EXIT_USAGE;
                        }
                        break;
                case 'h': drain_help(stdout); return NM_EXIT_OK;
                default: drain_help(stderr); return NM_EXIT_USAGE;
                }
        }
        if (optind < argc) {
                drain_help(stderr);
                return NM_EXIT_USAGE;
        }
        for (char *save = NULL, *t = to ? strtok_r(to, ",", &save) : NULL; t && n < ARRAY_SIZE(targets);
             t = strtok_r(NULL, ",", &save))
                targets[n++] = t;
        proto_msg req = {.type = PROTO_MSG_DRAIN,
                         .drain = {.targets = {targets, n}, .parallel = (uint32_t)parallel}};
        cli_out_init(&out, stdout, o.json);
        r = call_agent(&o, &req, &out, &doc);
        if (r >= 0)
                return r;
        cli_out_result(&out, doc, drain_text);
        r = json_integer_value(json_object_get(doc, "failed")) ? NM_EXIT_ROLLED_BACK : NM_EXIT_OK;
        json_decref(doc);
        return r;
}

/* ---- cordon, uncordon ---- */

static void cordon_text(FILE *f, json_t *doc) {
        fprintf(f, "%s is %s\n", jstr(doc, "node"),
                json_is_true(json_object_get(doc, "cordoned"))
                        ? "cordoned: incoming migrations are refused"
                        : "uncordoned: incoming migrations are accepted");
}

static int cordon_common(int argc, char **argv, bool on) {
        static const struct option options[] = {COMMON_OPTIONS, {}};
        common_opts o = {};
        json_t *doc = NULL;
        cli_out out;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (common_opt(&o, c))
                        continue;
                if (c == 'h') {
                        printf("Usage: %s %s [OPTIONS...]\n\n"
                               "%s this node: %s. The setting survives agent restarts.\n"
                               "Migrations already under way are not affected.\n\nOptions:\n" COMMON_HELP,
                               cli_program, on ? "cordon" : "uncordon", on ? "Cordons" : "Uncordons",
                               on ? "its agent refuses incoming migrations before anything is dumped"
                                  : "its agent accepts incoming migrations again");
                        return NM_EXIT_OK;
                }
                return NM_EXIT_USAGE;
        }
        proto_msg req = {.type = PROTO_MSG_CORDON, .cordon = {.on = on}};
        cli_out_init(&out, stdout, o.json);
        r = call_agent(&o, &req, &out, &doc);
        if (r >= 0)
                return r;
        cli_out_result(&out, doc, cordon_text);
        json_decref(doc);
        return NM_EXIT_OK;
}

int verb_cordon(int argc, char **argv) {
        return cordon_common(argc, argv, true);
}

int verb_uncordon(int argc, char **argv) {
        return cordon_common(argc, argv, false);
}

/* ---- status, list ---- */

static void containers_text(FILE *f, json_t *doc) {
        json_t *it;
        size_t i;
        fprintf(f, "%-34s %-16s %-8s %s\n", "CONTAINER", "NAME", "PID", "STATE");
        json_array_foreach(json_object_get(doc, "containers"), i, it)
                fprintf(f, "%-34s %-16s %-8lld %s%s\n", jstr(it, "id"), jstr(it, "name"),
                        json_integer_value(json_object_get(it, "pid")), jstr(it, "state"),
                        json_is_true(json_object_get(it, "gvisor")) ? " (gVisor: cannot move)" : "");
}

static void migrations_text(FILE *f, json_t *doc) {
        json_t *it;
        size_t i;
        if (!json_array_size(json_object_get(doc, "migrations"))) {
                fprintf(f, "no migrations in flight or recent\n");
                return;
        }
        fprintf(f, "%-18s %-12s %-34s %-10s %-14s %s\n", "MIGRATION", "ROLE", "CONTAINER", "PEER", "PHASE",
                "DETAIL");
        json_array_foreach(json_object_get(doc, "migrations"), i, it) {
                const char *peer = json_is_string(json_object_get(it, "peer")) ? jstr(it, "peer")
                                   : strcmp(jstr(it, "role"), "source") == 0   ? jstr(it, "target")
                                                                               : jstr(it, "source");
                fprintf(f, "%-18s %-12s %-34s %-10s %-14s %s\n", jstr(it, "mig"), jstr(it, "role"),
                        jstr(it, "container"), peer, jstr(it, "phase"),
                        json_is_string(json_object_get(it, "error"))  ? jstr(it, "error")
                        : json_is_true(json_object_get(it, "active")) ? "in flight"
                                                                      : "");
        }
}

static void status_text(FILE *f, json_t *doc) {
        char free_b[32];
        format_bytes(free_b, sizeof(free_b),
                     (uint64_t)json_integer_value(json_object_get(doc, "staging_free")));
        fprintf(f, "node %s%s, CRIU %s (%s), staging %s free\n\n", jstr(doc, "node"),
                json_is_true(json_object_get(doc, "cordoned")) ? " (cordoned)" : "",
                jstr(doc, "criu_version"), jstr(doc, "criu"), free_b);
        containers_text(f, doc);
        fputc('\n', f);
        migrations_text(f, doc);
}

static void list_text(FILE *f, json_t *doc) {
        containers_text(f, doc);
        fputc('\n', f);
        migrations_text(f, doc);
}

static int show(int argc, char **argv, bool is_status) {
        static const struct option options[] = {COMMON_OPTIONS, {}};
        common_opts o = {};
        json_t *doc = NULL;
        cli_out out;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (common_opt(&o, c))
                        continue;
                if (c == 'h') {
                        if (is_status)
                                printf("Usage: %s status [MIGRATION|CONTAINER] [OPTIONS...]\n\n"
                                       "Shows this node (cordon, CRIU, free staging), the containers it "
                                       "runs, and\n"
                                       "every migration in flight or recent with its phase and error. With "
                                       "an\n"
                                       "argument, only the migrations of that migration id or container.\n\n"
                                       "Options:\n" COMMON_HELP,
                                       cli_program);
                        else
                                printf("Usage: %s list [OPTIONS...]\n\nLists the containers on this node "
                                       "and the "
                                       "migrations in flight or recent.\n\nOptions:\n" COMMON_HELP,
                                       cli_program);
                        return NM_EXIT_OK;
                }
                return NM_EXIT_USAGE;
        }
        if (optind + (is_status ? 1 : 0) < argc) {
                fprintf(stderr, "%s: too many arguments\n", cli_program);
                return NM_EXIT_USAGE;
        }
        proto_msg req = is_status ? (proto_msg){.type = PROTO_MSG_STATUS,
                                                .status = {.ref = optind < argc ? argv[optind] : NULL}}
                                  : (proto_msg){.type = PROTO_MSG_LIST};
        cli_out_init(&out, stdout, o.json);
        r = call_agent(&o, &req, &out, &doc);
        if (r >= 0)
                return r;
        cli_out_result(&out, doc, is_status ? status_text : list_text);
        json_decref(doc);
        return NM_EXIT_OK;
}

int verb_status(int argc, char **argv) {
        return show(argc, argv, true);
}

int verb_list(int argc, char **argv) {
        return show(argc, argv, false);
}
