/* SPDX-License-Identifier: Apache-2.0 */
#include "cli-verbs.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
        OPT_LANES,
        OPT_ACCEPT_LANDLOCK,
        OPT_COMMIT,
        OPT_ABORT,
        OPT_FORCE,
        OPT_SINCE
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
        case ENOTUNIQ:
        case ESRCH: return NM_EXIT_NOT_FOUND;
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
                "      --lanes N         deal the pages over up to N SSH sessions to TARGET (1-4;\n"
                "                        default: [ssh] lanes, auto unless configured: by size\n"
                "                        and cores, one on two cores), each further\n"
                "                        one encrypting on a thread of its own; it pays where\n"
                "                        both nodes have cores to spare. Dialed before anything\n"
                "                        is frozen; a session lost while the pages flow rolls\n"
                "                        the move back.\n"
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
                "  3  refused, not touched (cannot move, cordoned target, no space, ...)\n"
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
                {"lanes", required_argument, NULL, OPT_LANES},
                {"accept-landlock-loss", no_argument, NULL, OPT_ACCEPT_LANDLOCK},
                COMMON_OPTIONS,
                {}};
        common_opts o = {};
        const char *ref = NULL, *target = NULL;
        unsigned long pid = 0;
        bool lazy = false, accept_landlock = false;
        const char *tcp = NULL;
        unsigned long lanes = 0;
        char *end;
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
                case OPT_LANES:
                        lanes = strtoul(optarg, &end, 10);
                        if (*end || lanes < 1 || lanes > PROTO_LANES_MAX) {
                                fprintf(stderr, "%s: --lanes wants 1 to %u, not '%s'\n", cli_program,
                                        PROTO_LANES_MAX, optarg);
                                return NM_EXIT_USAGE;
                        }
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
        proto_opt opts[4];
        size_t n_opts = 0;
        if (lazy)
                opts[n_opts++] = (proto_opt){.key = "lazy", .kind = PROTO_OPT_BOOL, .b = true};
        if (tcp)
                opts[n_opts++] = (proto_opt){.key = "tcp", .kind = PROTO_OPT_STR, .s = tcp};
        if (lanes)
                opts[n_opts++] = (proto_opt){.key = "lanes", .kind = PROTO_OPT_UINT, .u = lanes};
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
        if (json_is_true(json_object_get(doc, "cordoned")))
                fprintf(f, "%s is cordoned: it refuses incoming moves (%s uncordon accepts them again)\n",
                        jstr(doc, "drain"), cli_program);
        if (json_integer_value(json_object_get(doc, "bandwidth")) > 0) {
                char bw[32];
                format_bytes(bw, sizeof(bw),
                             (uint64_t)json_integer_value(json_object_get(doc, "bandwidth")));
                fprintf(f, "the moves shared limits.bandwidth: %s/s in all\n", bw);
        }
}

static void drain_help(FILE *f) {
        fprintf(f,
                "Usage: %s drain [--to NODE[,NODE...]] [--parallel N] [OPTIONS...]\n"
                "\n"
                "Moves every running container off this node. Each goes to the target that\n"
                "reports the fewest containers and room in its staging area; N moves run at a\n"
                "time. A container that cannot move (gVisor, refused, failed) stays here and\n"
                "is reported; the others go on. The node is cordoned first (nothing arrives\n"
                "while it empties) and stays cordoned: `%s uncordon` accepts moves again.\n"
                "The moves share the node's limits.bandwidth: each stream under way gets an\n"
                "equal part, given again whenever one starts or ends.\n"
                "\n"
                "Options:\n"
                "      --to NODES        comma-separated targets (default: every configured peer)\n"
                "      --parallel N      moves at a time (default 2; capped by "
                "limits.parallel)\n" COMMON_HELP "\n"
                "Exit status: 0 when every container moved, 4 when some did not (see the table),\n"
                "8 when the local agent is not running.\n",
                cli_program, cli_program);
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

/* ---- resolve ---- */

/* The source's facts, as its QUERY answer gave them. */
static void resolve_source_text(FILE *f, json_t *src) {
        json_t *copy = json_object_get(src, "copy");

        if (!json_is_true(json_object_get(src, "reachable"))) {
                fprintf(f, "  source (%s): cannot be reached: %s\n", jstr(src, "node"), jstr(src, "error"));
                return;
        }
        fprintf(f, "  source (%s): says %s; its journal: %s; the copy there: %s", jstr(src, "node"),
                jstr(src, "says"),
                json_is_string(json_object_get(src, "phase")) ? jstr(src, "phase") : "no record",
                json_is_string(copy) ? json_string_value(copy) : "cannot tell");
        if (json_integer_value(json_object_get(src, "pid")) > 0)
                fprintf(f, " (pid %lld)", json_integer_value(json_object_get(src, "pid")));
        fprintf(f, "\n");
}

static void resolve_text(FILE *f, json_t *doc) {
        json_t *here = json_object_get(doc, "here");
        const char *decision = jstr(doc, "decision");

        fprintf(f, "migration %s: container %s (%s), destination here\n", jstr(doc, "mig"),
                jstr(doc, "name"), jstr(doc, "container"));
        fprintf(f, "  here (%s): phase %s; the copy: %s", jstr(here, "node"), jstr(here, "phase"),
                jstr(here, "copy"));
        if (json_integer_value(json_object_get(here, "pid")) > 0)
                fprintf(f, " (pid %lld)", json_integer_value(json_object_get(here, "pid")));
        fprintf(f, "\n");
        resolve_source_text(f, json_object_get(doc, "source"));
        if (strcmp(decision, "none") == 0) {
                fprintf(f, "no decision (%s): %s\n", jstr(doc, "verdict"), jstr(doc, "reason"));
                if (strcmp(jstr(doc, "verdict"), "undecided") == 0)
                        fprintf(f,
                                "still in doubt; to decide without the facts: %s resolve %s "
                                "--commit|--abort "
                                "--force\n",
                                cli_program, jstr(doc, "mig"));
                return;
        }
        fprintf(f, "decision: %s%s: %s\n", decision,
                json_is_true(json_object_get(doc, "forced")) ? " (forced)" : "", jstr(doc, "reason"));
        fprintf(f, "recorded here%s; the migration is now %s\n",
                json_is_true(json_object_get(doc, "recorded_on_source")) ? " and on the source"
                                                                         : " (the source could not be told)",
                jstr(doc, "outcome"));
        if (json_is_string(json_object_get(doc, "to_do")))
                fprintf(f, "left to do: %s\n", jstr(doc, "to_do"));
}

static void resolve_help(FILE *f) {
        fprintf(f,
                "Usage: %s resolve MIGRATION [--commit | --abort] [--force] [OPTIONS...]\n"
                "\n"
                "Settles a migration held in doubt on this node: its destination holds the\n"
                "container's copy stopped and cannot learn from the source whether the move was\n"
                "committed. Shows what this node's journal says and whether the copy is still\n"
                "there, asks the source (its journal's phase and answer, and whether a copy of\n"
                "the container runs there or is held stopped), and decides only when those\n"
                "facts allow it:\n"
                "  - the source's journal says committed or aborted: that;\n"
                "  - a copy runs on the source: abort (never a second copy beside it);\n"
                "  - the source has no record and no copy: commit (ours is the only one);\n"
                "  - the source has no record and holds a copy stopped (its dump left it so,\n"
                "    and nothing there resumes it): commit; the answer then says which pid to\n"
                "    end on the source (`kill-tree --start-ticks T PID` there: the start time\n"
                "    spares a later process with that pid), which the source, not knowing\n"
                "    that this node was the move's target, does not do on our word.\n"
                "When the source cannot be reached nothing is decided unless --force is given\n"
                "with --commit or --abort. A decision against the facts is refused (giving up\n"
                "the only copy takes --force). The decision is carried out (the copy resumed, or\n"
                "killed and its staging removed) and recorded in this node's journal and, when\n"
                "it can be reached, the source's.\n"
                "The risk of --commit --force with the source unreachable: a source that comes\n"
                "back with its journal from before its commit brings its own copy back (resumes\n"
                "the one its dump held stopped, or restores it from its images). Force a commit\n"
                "only when the source will not come back with its journal.\n"
                "\n"
                "Options:\n"
                "      --commit          the operator's decision: resume the copy here\n"
                "      --abort           the operator's decision: kill the copy here\n"
                "      --force           decide as asked where the facts cannot tell\n" COMMON_HELP "\n"
                "Exit status: 0 decided and carried out, 5 still in doubt (the facts cannot\n"
                "tell), 1 refused (not in doubt, or against the facts), 6 no such migration.\n",
                cli_program);
}

int verb_resolve(int argc, char **argv) {
        static const struct option options[] = {{"commit", no_argument, NULL, OPT_COMMIT},
                                                {"abort", no_argument, NULL, OPT_ABORT},
                                                {"force", no_argument, NULL, OPT_FORCE},
                                                COMMON_OPTIONS,
                                                {}};
        proto_decision decision = PROTO_DECISION_AUTO;
        bool force = false;
        common_opts o = {};
        json_t *doc = NULL;
        cli_out out;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (common_opt(&o, c))
                        continue;
                switch (c) {
                case OPT_COMMIT:
                case OPT_ABORT:
                        if (decision != PROTO_DECISION_AUTO) {
                                fprintf(stderr, "%s: give --commit or --abort, not both\n", cli_program);
                                return NM_EXIT_USAGE;
                        }
                        decision = c == OPT_COMMIT ? PROTO_DECISION_COMMIT : PROTO_DECISION_ABORT;
                        break;
                case OPT_FORCE: force = true; break;
                case 'h': resolve_help(stdout); return NM_EXIT_OK;
                default: resolve_help(stderr); return NM_EXIT_USAGE;
                }
        }
        if (optind + 1 != argc) {
                resolve_help(stderr);
                return NM_EXIT_USAGE;
        }
        proto_msg req = {.type = PROTO_MSG_RESOLVE,
                         .resolve = {.mig = argv[optind], .decision = decision, .force = force}};
        cli_out_init(&out, stdout, o.json);
        r = call_agent(&o, &req, &out, &doc);
        if (r >= 0)
                return r;
        cli_out_result(&out, doc, resolve_text);
        r = json_is_integer(json_object_get(doc, "exit_code"))
                    ? (int)json_integer_value(json_object_get(doc, "exit_code"))
                    : NM_EXIT_FAILURE;
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

/* "90s", "30m", "12h", "7d", "2w" (or plain seconds) -> seconds; -1 if bad. */
static int64_t parse_duration(const char *s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        int64_t mult = 1;
        if (errno || end == s || v < 0)
                return -1;
        switch (*end) {
        case '\0':
        case 's': break;
        case 'm': mult = 60; break;
        case 'h': mult = 3600; break;
        case 'd': mult = 86400; break;
        case 'w': mult = 7 * 86400; break;
        default: return -1;
        }
        if (*end && end[1])
                return -1;
        if (v > INT64_MAX / mult)
                return -1;
        return v * mult;
}

static int show(int argc, char **argv, bool is_status) {
        static const struct option options[] = {
                {"since", required_argument, NULL, OPT_SINCE}, COMMON_OPTIONS, {}};
        int64_t since = 0;
        common_opts o = {};
        json_t *doc = NULL;
        cli_out out;
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (common_opt(&o, c))
                        continue;
                if (c == OPT_SINCE && is_status) {
                        int64_t d = parse_duration(optarg);
                        if (d < 0) {
                                fprintf(stderr,
                                        "%s: --since takes a duration such as 90s, 30m, 12h, 7d, 2w\n",
                                        cli_program);
                                return NM_EXIT_USAGE;
                        }
                        since = (int64_t)time(NULL) - d;
                        if (since < 1)
                                since = 1;
                        continue;
                }
                if (c == 'h') {
                        if (is_status)
                                printf("Usage: %s status [MIGRATION|CONTAINER] [--since DURATION] "
                                       "[OPTIONS...]\n\n"
                                       "Shows this node (cordon, CRIU, free staging), the containers it "
                                       "runs, and\n"
                                       "every migration in flight or recent with its phase and error. With "
                                       "an\n"
                                       "argument, only the migrations of that migration id or container.\n\n"
                                       "Options:\n"
                                       "      --since DURATION  every migration that ended in the last "
                                       "DURATION\n"
                                       "                        (90s, 30m, 12h, 7d, 2w), not only the "
                                       "recent ones;\n"
                                       "                        the history is kept [agent] history_days "
                                       "(30)\n" COMMON_HELP,
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
                                                .status = {.ref = optind < argc ? argv[optind] : NULL,
                                                           .has_since = since > 0,
                                                           .since = (uint64_t)since}}
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
