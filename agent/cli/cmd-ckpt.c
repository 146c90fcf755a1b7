/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus-migrate sign | verify | checkpoint | restore | resume | kill-tree:
 * the checkpoint core on its own, on this node, without an agent or a peer.
 * Useful by themselves and for debugging a migration step by step. */
#include <inttypes.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ckpt.h"
#include "cli.h"
#include "cmd-ckpt.h"
#include "exit-codes.h"
#include "fs-util.h"
#include "macro.h"

#define EXT_MOUNTS_MAX 64

static void fail(const char *verb, const char *msg) {
        fprintf(stderr, "%s %s: %s\n", cli_program, verb, msg);
}

static void failf(const char *verb, const nm_error *err) {
        fail(verb, nm_error_msg(err));
}

static int usage_error(const char *verb, const char *msg) {
        fprintf(stderr, "%s %s: %s\nTry '%s %s --help'.\n", cli_program, verb, msg, cli_program, verb);
        return NM_EXIT_USAGE;
}

static int parse_pid(const char *s, pid_t *ret) {
        char *end;
        long v;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || end == s || v <= 1 || v > INT_MAX)
                return -EINVAL;
        *ret = (pid_t)v;
        return 0;
}

static double ms(uint64_t usec) {
        return (double)usec / 1000.0;
}

static const char *const env_help =
        "ENVIRONMENT\n"
        "  NUCLEUS_CHECKPOINT_HMAC_KEY_FILE\n"
        "      The HMAC key, as for the nucleus runtime. Unset: /var/lib/nucleus/checkpoint-hmac.key\n"
        "      for root. The key must be a regular file of at least 32 bytes owned by you with\n"
        "      no group/other permissions (chmod 600), in a directory owned by you with none\n"
        "      either (chmod 700); a missing key is created with 32 random bytes. Every node\n"
        "      that verifies a checkpoint needs the same key.\n"
        "  NUCLEUS_STATE_DIR\n"
        "      The nucleus runtime's state directory (default /var/run/nucleus for root).\n";

static const char *const exit_help =
        "EXIT STATUS\n"
        "  0  success\n"
        "  1  failure (the message says what happened and what state things are in)\n"
        "  2  bad command line\n"
        "  6  no such container, or the reference is ambiguous\n"
        "  3  refused: the container cannot be moved (the reason is given); nothing was frozen\n"
        "  7  the checkpoint failed HMAC verification\n";

/* ---- sign / verify ------------------------------------------------------ */

static void sign_help(void) {
        printf("Usage: %s sign DIR\n"
               "\n"
               "Signs a checkpoint directory: writes DIR/checkpoint.hmac, the HMAC-SHA256 of the\n"
               "directory tree in the nucleus runtime's format (64 lowercase hex digits, no newline),\n"
               "atomically. A directory signed here verifies with nucleus and the other way round.\n"
               "Anything changed in DIR afterwards breaks verification.\n"
               "\n"
               "The tree is walked in canonical order (names sorted bytewise, depth first); a symlink,\n"
               "a special file or a name that is not UTF-8 anywhere in it is refused.\n"
               "\n"
               "OPTIONS\n"
               "  -h, --help   this text\n"
               "\n%s\n%s",
               cli_program, env_help, exit_help);
}

static void verify_help(void) {
        printf("Usage: %s verify DIR\n"
               "\n"
               "Verifies a checkpoint directory against its checkpoint.hmac, comparing in constant\n"
               "time. Exits 0 and prints the digest when it matches; exits 7 with the reason when it\n"
               "does not (mismatch, checkpoint.hmac missing or malformed, a symlink or special file\n"
               "in the tree).\n"
               "\n"
               "OPTIONS\n"
               "  -h, --help   this text\n"
               "\n%s\n%s",
               cli_program, env_help, exit_help);
}

static int parse_dir_only(int argc, char **argv, void (*help)(void), const char **ret_dir) {
        static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {}};
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'h': help(); return NM_EXIT_OK;
                default: return usage_error(argv[0], "bad option");
                }
        }
        if (optind + 1 != argc)
                return usage_error(argv[0], "expects exactly one directory");
        *ret_dir = argv[optind];
        return -1;
}

int cmd_sign(int argc, char **argv) {
        char hex[CKPT_HMAC_HEX_LEN + 1];
        const char *dir = NULL;
        nm_error err = {};
        int r;

        r = parse_dir_only(argc, argv, sign_help, &dir);
        if (r >= 0)
                return r;
        r = ckpt_sign(dir, hex, &err);
        if (r < 0) {
                failf("sign", &err);
                return NM_EXIT_FAILURE;
        }
        printf("signed %s: %s\n", dir, hex);
        return NM_EXIT_OK;
}

int cmd_verify(int argc, char **argv) {
        _cleanup_close_ int dfd = -EBADF;
        char hex[CKPT_HMAC_HEX_LEN + 1];
        const char *dir = NULL;
        uint8_t *key = NULL;
        size_t key_len = 0;
        nm_error err = {};
        int r;

        r = parse_dir_only(argc, argv, verify_help, &dir);
        if (r >= 0)
                return r;
        r = ckpt_key_load(NULL, &key, &key_len, &err);
        if (r < 0) {
                failf("verify", &err);
                return NM_EXIT_FAILURE;
        }
        dfd = open_dir_nofollow(dir);
        if (dfd < 0) {
                nm_error_errno(&err, dfd, "cannot open checkpoint directory %s", dir);
                r = dfd;
        } else {
                r = ckpt_verify_at(dfd, key, key_len, hex, &err);
        }
        ckpt_key_free(key, key_len);
        if (r < 0) {
                failf("verify", &err);
                return r == -EBADMSG ? NM_EXIT_INTEGRITY : NM_EXIT_FAILURE;
        }
        printf("verified %s: %s\n", dir, hex);
        return NM_EXIT_OK;
}

/* ---- options shared by checkpoint and restore --------------------------- */

enum {
        OPT_CRIU = 0x100,
        OPT_WORK_DIR,
        OPT_TCP,
        OPT_TCP_ESTABLISHED,
        OPT_EXT_UNIX_SK,
        OPT_FILE_LOCKS,
        OPT_NO_FILE_LOCKS,
        OPT_SHELL_JOB,
        OPT_MANAGE_CGROUPS,
        OPT_EXTERNAL_MOUNT,
        OPT_LOG_LEVEL,
        OPT_PID,
        OPT_NO_SIGN,
        OPT_LEAVE_STOPPED,
        OPT_ACCEPT_LANDLOCK,
        OPT_TRY_ANYWAY,
        OPT_ROOT_DIR,
        OPT_CGROUP_ROOT,
        OPT_BRIDGE,
        OPT_STDOUT,
};

#define CRIU_LONG_OPTIONS                                                                                   \
        {"criu", required_argument, NULL, OPT_CRIU}, {"work-dir", required_argument, NULL, OPT_WORK_DIR},   \
                {"tcp", required_argument, NULL, OPT_TCP},                                                  \
                {"tcp-established", no_argument, NULL, OPT_TCP_ESTABLISHED},                                \
                {"ext-unix-sk", no_argument, NULL, OPT_EXT_UNIX_SK},                                        \
                {"file-locks", no_argument, NULL, OPT_FILE_LOCKS},                                          \
                {"no-file-locks", no_argument, NULL, OPT_NO_FILE_LOCKS},                                    \
                {"shell-job", no_argument, NULL, OPT_SHELL_JOB},                                            \
                {"manage-cgroups", required_argument, NULL, OPT_MANAGE_CGROUPS},                            \
                {"external-mount", required_argument, NULL, OPT_EXTERNAL_MOUNT},                            \
                {"log-level", required_argument, NULL, OPT_LOG_LEVEL}, {"verbose", no_argument, NULL, 'v'}, \
        {                                                                                                   \
                "help", no_argument, NULL, 'h'                                                              \
        }

static const char *const criu_options_help =
        "  --criu PATH            the criu binary (default: the first criu >= 4.2 in\n"
        "                         /usr/local/sbin, /usr/sbin, /usr/local/bin, /usr/bin; never $PATH\n"
        "                         for root). It must be owned by root or you and not be\n"
        "                         group/other-writable.\n"
        "  --work-dir DIR         CRIU's work directory and log (default: DIR.work beside the\n"
        "                         checkpoint directory; never inside it, which is signed)\n"
        "  --tcp MODE             established TCP connections (see TCP below)\n"
        "  --tcp-established      the same as --tcp move\n"
        "  --ext-unix-sk          allow unix sockets connected outside the tree\n"
        "  --no-file-locks        refuse a tree that holds file locks (by default flock, POSIX\n"
        "                         and open-file-description locks and leases move with it;\n"
        "                         --file-locks is accepted and changes nothing)\n"
        "  --shell-job            allow a session or tty outside the tree\n"
        "  --manage-cgroups MODE  CRIU cgroup mode: default, ignore, none, props, soft, full, strict\n"
        "  --external-mount K:V   an external bind mount (repeatable); checkpoint: MOUNTPOINT:NAME,\n"
        "                         restore: NAME:HOST-PATH\n"
        "  --log-level N          CRIU log level 1..4 (default 4)\n"
        "  -v, --verbose          print CRIU's notifications as they arrive\n"
        "  -h, --help             this text\n";

typedef struct criu_args {
        ckpt_criu_opts opts;
        bool tcp_auto; /* checkpoint: --tcp auto (the default) */
        const char *criu_path;
        ckpt_ext_mount mounts[EXT_MOUNTS_MAX];
        bool verbose;
} criu_args;

/* 1: handled, 0: not a CRIU option, <0: usage error already printed. */
static int parse_criu_option(criu_args *a, int c, const char *verb) {
        char *colon;
        switch (c) {
        case OPT_CRIU: a->criu_path = optarg; return 1;
        case OPT_WORK_DIR: a->opts.work_dir = optarg; return 1;
        case OPT_TCP:
                a->tcp_auto = strcmp(optarg, "auto") == 0;
                if (a->tcp_auto)
                        return 1;
                a->opts.tcp = ckpt_tcp_mode_from_string(optarg);
                if (a->opts.tcp < 0)
                        return usage_error(verb, "--tcp wants auto, move, close or refuse"), -1;
                return 1;
        case OPT_TCP_ESTABLISHED:
                a->tcp_auto = false;
                a->opts.tcp = CKPT_TCP_MOVE;
                return 1;
        case OPT_EXT_UNIX_SK: a->opts.ext_unix_sk = true; return 1;
        case OPT_FILE_LOCKS: a->opts.locks = CKPT_FILE_LOCKS_MOVE; return 1;
        case OPT_NO_FILE_LOCKS: a->opts.locks = CKPT_FILE_LOCKS_REFUSE; return 1;
        case OPT_SHELL_JOB: a->opts.shell_job = true; return 1;
        case 'v': a->verbose = true; return 1;
        case OPT_MANAGE_CGROUPS:
                a->opts.manage_cgroups = ckpt_cgroup_mode_from_string(optarg);
                if (a->opts.manage_cgroups < 0)
                        return usage_error(verb, "unknown --manage-cgroups mode"), -1;
                return 1;
        case OPT_EXTERNAL_MOUNT:
                colon = strchr(optarg, ':');
                if (!colon || colon == optarg || !colon[1])
                        return usage_error(verb, "--external-mount wants KEY:VALUE"), -1;
                if (a->opts.n_ext_mounts >= EXT_MOUNTS_MAX)
                        return usage_error(verb, "too many --external-mount options"), -1;
                *colon = '\0';
                a->mounts[a->opts.n_ext_mounts++] = (ckpt_ext_mount){.key = optarg, .val = colon + 1};
                a->opts.ext_mounts = a->mounts;
                return 1;
        case OPT_LOG_LEVEL:
                if (optarg[0] < '1' || optarg[0] > '4' || optarg[1])
                        return usage_error(verb, "--log-level must be 1..4"), -1;
                a->opts.log_level = optarg[0] - '0';
                return 1;
        default: return 0;
        }
}

/* What a callback needs: req->data points here. */
typedef struct run_ctx {
        bool verbose;
        int status;
        bool done;
} run_ctx;

static void print_event(void *data, const char *event, uint64_t at_usec) {
        const run_ctx *ctx = data;
        if (ctx->verbose)
                fprintf(stderr, "criu: %s (t=%.3f s)\n", event, (double)at_usec / 1e6);
}

static int resolve_criu(const criu_args *a, const char *verb, ckpt_criu **ret) {
        nm_error err = {};
        int r = ckpt_criu_resolve(a->criu_path, ret, &err);
        if (r < 0)
                failf(verb, &err);
        return r;
}

static int run_loop(uv_loop_t *loop) {
        (void)uv_run(loop, UV_RUN_DEFAULT);
        return uv_loop_close(loop);
}

/* ---- checkpoint --------------------------------------------------------- */

static void checkpoint_help(void) {
        printf("Usage: %s checkpoint [OPTIONS] CONTAINER -o DIR\n"
               "       %s checkpoint [OPTIONS] --pid PID -o DIR\n"
               "\n"
               "Checkpoints a running nucleus container into DIR with CRIU, on this node. CONTAINER\n"
               "is an id, a unique name or a unique id prefix from the state directory. The\n"
               "container is frozen, dumped and then GONE: CRIU runs with leave-running off, so that\n"
               "exactly one copy ever exists; bring it back with '%s restore -i DIR'. Its\n"
               "state file is left as it was (nucleus then shows it stopped).\n"
               "\n"
               "DIR must be new or empty. It receives metadata.json (nucleus's format plus nm_*\n"
               "fields), images/ (CRIU's images) and checkpoint.hmac. Networking is locked with\n"
               "nftables during the dump. Everything that can fail is checked before CRIU starts;\n"
               "if the dump itself fails, CRIU leaves the container running, the message quotes\n"
               "CRIU's log, and what the attempt wrote into DIR is removed again.\n"
               "\n"
               "OPTIONS\n"
               "  -o, --output DIR       the checkpoint directory (created 0700)\n"
               "  --pid PID              checkpoint a bare process tree instead of a container\n"
               "                         (it must lead its own session, and should have its own\n"
               "                         pid namespace)\n"
               "  --no-sign              do not write checkpoint.hmac\n"
               "  --leave-stopped        keep every task stopped after the dump instead of killing it;\n"
               "                         then either roll back ('%s resume -i DIR': the\n"
               "                         container runs on where it was) or commit ('%s\n"
               "                         kill-tree -i DIR')\n"
               "  --accept-landlock-loss move a nucleus container although the copy restored from DIR\n"
               "                         runs without the Landlock rules nucleus gives it (CRIU does not\n"
               "                         carry them; recorded in metadata.json)\n"
               "  --try-anyway           skip the refusals below and let CRIU fail with its own\n"
               "                         reason (to diagnose; the container runs on if it fails)\n"
               "%s"
               "\nTCP\n"
               "  --tcp auto (the default) moves established connections when the tree has a network\n"
               "  namespace of its own (both ends of each connection are inside it) and closes them\n"
               "  otherwise (its addresses belong to this node). 'move' dumps each connection with\n"
               "  its state (CRIU's tcp-established); use it only where both ends stay reachable.\n"
               "  'close' dumps the tree whatever it has connected and every connection is closed on\n"
               "  restore, here too (CRIU's tcp-close). 'refuse' fails on any connection.\n"
               "\nNATIVE CONTAINERS\n"
               "  A container with a mount namespace of its own (nucleus's native runtime) is\n"
               "  described first: its root tmpfs (saved into images/%s), host binds (declared\n"
               "  external), veth, cgroup, stdio and security settings go into metadata.json\n"
               "  (nm_native). Its tasks are kept stopped while the root is saved. What CRIU cannot\n"
               "  move is refused before anything is frozen (exit 3): tap (slirp4netns) networking,\n"
               "  the production-mode init, memfd mounts, a user namespace, stdio from another\n"
               "  network namespace (journald) or a terminal, and Landlock unless accepted.\n"
               "\n%s\n%s"
               "\nEXAMPLE\n"
               "  %s checkpoint web1 -o /var/lib/nucleus-migrate/web1.ckpt\n",
               cli_program, cli_program, cli_program, cli_program, cli_program, criu_options_help,
               "nm-rootfs.tar", env_help, exit_help, cli_program);
}

static void on_dumped(ckpt_dump_req *req, int status) {
        run_ctx *ctx = req->data;
        ctx->status = status;
        ctx->done = true;
}

static int find_target(const char *ref, pid_t pid, ckpt_container **ret) {
        _cleanup_free_ char *state_dir = NULL;
        nm_error err = {};
        int r;

        if (pid > 0)
                r = ckpt_container_from_pid(pid, ret, &err);
        else {
                r = ckpt_state_dir(&state_dir);
                if (r >= 0)
                        r = ckpt_container_find(state_dir, ref, ret, &err);
        }
        if (r < 0) {
                failf("checkpoint", &err);
                return r == -ENOENT || r == -ENOTUNIQ || r == -ESRCH ? NM_EXIT_NOT_FOUND : NM_EXIT_FAILURE;
        }
        return NM_EXIT_OK;
}

static void print_native(const ckpt_native *n) {
        size_t binds = 0;
        for (size_t i = 0; i < n->n_mounts; i++)
                binds += n->mounts[i].kind == CKPT_MOUNT_HOST_BIND;
        printf("  root:       tmpfs, %llu bytes in use, saved as images/nm-rootfs.tar\n",
               (unsigned long long)n->root_bytes);
        printf("  mounts:     %zu, %zu of them host binds (external)\n", n->n_mounts, binds);
        if (n->net == CKPT_NET_BRIDGE)
                printf("  network:    %s (%s/%u) on %s via %s\n", n->vethc, n->address, n->prefix, n->bridge,
                       n->veth);
        if (n->cgroup)
                printf("  cgroup:     %s (seen inside as %s)%s%s\n", n->cgroup, strna(n->cgroup_inside),
                       n->cgroup_dump ? ", dumped from " : "", n->cgroup_dump ? n->cgroup_dump : "");
        if (n->landlock == CKPT_LANDLOCK_ACCEPTED_LOSS)
                printf("  landlock:   accepted: the restored copy runs without it\n");
}

static void print_dump(const ckpt_dump_req *req, const ckpt_container *c, const char *dir, bool signed_,
                       ckpt_tcp_mode tcp) {
        printf("checkpointed %s %s (%s), pid %d, into %s\n", c->bare ? "process tree" : "container", c->id,
               c->name, (int)c->pid, dir);
        printf("  criu:       %s (%s)\n", req->criu_path, req->criu_version);
        printf("  images:     %llu bytes\n", (unsigned long long)req->stats.image_bytes);
        printf("  frozen:     %.1f ms%s\n", ms(req->stats.frozen_usec),
               req->stats.from_criu_stats ? "" : " (between CRIU's pre-dump and post-dump notifications)");
        printf("  criu dump:  %.1f ms\n", ms(req->stats.criu_usec));
        printf("  tcp:        %s\n", ckpt_tcp_mode_to_string(tcp));
        if (req->stopped_tasks.n > 0)
                printf("  stopped:    %zu task(s) were stopped and stay so when restored\n",
                       req->stopped_tasks.n);
        if (signed_)
                printf("  signed:     %s (%.1f ms)\n", req->hmac, ms(req->stats.sign_usec));
        printf("  total:      %.1f ms\n", ms(req->stats.total_usec));
        printf("  criu log:   %s/dump.log\n", req->work_dir);
        if (req->native && req->native->own_mount_ns)
                print_native(req->native);
        if (req->warning[0])
                printf("  warning:    %s\n", req->warning);
        if (req->stopped)
                printf("Every task is stopped here. Roll back with '%s resume -i %s', or end it with '%s "
                       "kill-tree -i %s' once a copy runs elsewhere.\n",
                       cli_program, dir, cli_program, dir);
        else
                printf("The %s no longer runs here; restore it with: %s restore -i %s\n",
                       c->bare ? "process tree" : "container", cli_program, dir);
}

int cmd_checkpoint(int argc, char **argv) {
        static const struct option long_opts[] = {
                {"output", required_argument, NULL, 'o'},
                {"pid", required_argument, NULL, OPT_PID},
                {"no-sign", no_argument, NULL, OPT_NO_SIGN},
                {"leave-stopped", no_argument, NULL, OPT_LEAVE_STOPPED},
                {"accept-landlock-loss", no_argument, NULL, OPT_ACCEPT_LANDLOCK},
                {"try-anyway", no_argument, NULL, OPT_TRY_ANYWAY},
                CRIU_LONG_OPTIONS,
                {},
        };
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        criu_args a = {.tcp_auto = true};
        const char *dir = NULL;
        bool sign = true, leave_stopped = false, accept_landlock = false, try_anyway = false;
        pid_t pid = 0;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "o:vh", long_opts, NULL)) >= 0) {
                r = parse_criu_option(&a, opt, "checkpoint");
                if (r < 0)
                        return NM_EXIT_USAGE;
                if (r > 0)
                        continue;
                switch (opt) {
                case 'h': checkpoint_help(); return NM_EXIT_OK;
                case 'o': dir = optarg; break;
                case OPT_NO_SIGN: sign = false; break;
                case OPT_LEAVE_STOPPED: leave_stopped = true; break;
                case OPT_ACCEPT_LANDLOCK: accept_landlock = true; break;
                case OPT_TRY_ANYWAY: try_anyway = true; break;
                case OPT_PID:
                        if (parse_pid(optarg, &pid) < 0)
                                return usage_error("checkpoint", "--pid wants a process id > 1");
                        break;
                default: return usage_error("checkpoint", "bad option");
                }
        }
        if (!dir)
                return usage_error("checkpoint", "-o DIR is required");
        if ((pid > 0) == (optind < argc) || argc - optind > 1)
                return usage_error("checkpoint", "give either one CONTAINER or --pid PID");
        r = find_target(pid > 0 ? NULL : argv[optind], pid, &c);
        if (r != NM_EXIT_OK)
                return r;
        if (a.tcp_auto)
                a.opts.tcp = ckpt_tcp_mode_auto(c);
        if (resolve_criu(&a, "checkpoint", &criu) < 0)
                return NM_EXIT_FAILURE;
        a.opts.criu = criu;

        uv_loop_t loop;
        run_ctx ctx = {.verbose = a.verbose};
        ckpt_dump_req req = {.data = &ctx, .event_cb = print_event};
        ckpt_dump_opts opts = {
                .criu = a.opts,
                .sign = sign,
                .hold = leave_stopped ? CKPT_HOLD_ALWAYS : CKPT_HOLD_END,
                .policy = {.accept_landlock_loss = accept_landlock, .try_anyway = try_anyway}};
        r = uv_loop_init(&loop);
        if (r < 0) {
                fail("checkpoint", uv_strerror(r));
                return NM_EXIT_FAILURE;
        }
        r = ckpt_dump(&loop, &req, c, dir, &opts, on_dumped);
        if (r < 0) {
                (void)uv_loop_close(&loop);
                failf("checkpoint", &req.error);
                return r == -EOPNOTSUPP ? NM_EXIT_REFUSED : NM_EXIT_FAILURE;
        }
        (void)run_loop(&loop);
        if (!ctx.done || ctx.status < 0) {
                failf("checkpoint", &req.error);
                if (req.dumped)
                        fprintf(stderr,
                                "%s checkpoint: note: %s %s was dumped and no longer runs; its images are "
                                "in %s\n",
                                cli_program, c->bare ? "process tree" : "container", c->id, dir);
                else if (req.outcome == CKPT_DUMP_FAILED_IMAGES)
                        fprintf(stderr,
                                "%s checkpoint: note: CRIU failed after its images were complete and %s no "
                                "longer runs; the images in %s are signed: restore it from them (restore "
                                "-i)\n",
                                cli_program, c->id, dir);
                else if (req.source_running)
                        fprintf(stderr, "%s checkpoint: note: %s still runs\n", cli_program, c->id);
                if (req.warning[0])
                        fprintf(stderr, "%s checkpoint: warning: %s\n", cli_program, req.warning);
                ckpt_dump_req_done(&req);
                return NM_EXIT_FAILURE;
        }
        print_dump(&req, c, dir, sign, a.opts.tcp);
        ckpt_dump_req_done(&req);
        return NM_EXIT_OK;
}

/* ---- restore ------------------------------------------------------------ */

static void restore_help(void) {
        printf("Usage: %s restore [OPTIONS] -i DIR\n"
               "\n"
               "Restores a checkpoint directory on this node. The HMAC is verified first; a\n"
               "checkpoint that does not verify is refused (exit 7) and nothing is restored. A\n"
               "container whose id already runs on this node is refused too: there is never a\n"
               "second copy.\n"
               "\n"
               "CRIU restores the tree detached with every task stopped; then the container's state\n"
               "file is written in the state directory (same id and name, new pid and start time,\n"
               "status running) and, unless --leave-stopped, every task is continued. If the state\n"
               "file cannot be written, the restored copy is killed again. A failed restore leaves\n"
               "DIR untouched (CRIU's work directory is elsewhere), so it can be retried.\n"
               "\n"
               "OPTIONS\n"
               "  -i, --input DIR        the checkpoint directory\n"
               "  --leave-stopped        leave every task stopped; continue them later with\n"
               "                         '%s resume -i DIR PID', or drop them with\n"
               "                         '%s kill-tree PID'\n"
               "  --root-dir DIR         native: where the root tmpfs is mounted for CRIU (default:\n"
               "                         WORK-DIR/root; unmounted again afterwards)\n"
               "  --cgroup-root DIR      native: make the cgroup DIR/nucleus-<id> with the source's\n"
               "                         limits and put the tasks there (default: $NUCLEUS_CGROUP_ROOT,\n"
               "                         else the parent of the source's cgroup)\n"
               "  --bridge NAME          native: the bridge for the veth (default: the source's)\n"
               "  --stdout FILE          native: where output the container sent to a pipe or file\n"
               "                         outside it goes now (default: /dev/null)\n"
               "%s"
               "\nTasks that were stopped when the checkpoint was taken (SIGSTOP, SIGTSTP) stay\n"
               "stopped. Established TCP connections come back as the checkpoint kept them; with\n"
               "--tcp close they are restored closed, as they are anyway when the checkpoint was\n"
               "taken with --tcp close.\n"
               "\nNATIVE CONTAINERS\n"
               "  For a checkpoint with nm_native this node is checked first (exit 3 when it cannot\n"
               "  take it): the bridge and its subnet, a free veth name and address, every bind\n"
               "  source, memory for the root tmpfs, no cgroup of that name. The address is\n"
               "  reserved in the state directory's ip-alloc/. Bind sources are the source's paths;\n"
               "  --external-mount MOUNTPOINT:PATH gives another.\n"
               "\n%s\n%s"
               "\nEXAMPLE\n"
               "  %s restore -i /var/lib/nucleus-migrate/web1.ckpt\n",
               cli_program, cli_program, cli_program, criu_options_help, env_help, exit_help, cli_program);
}

static void on_restored(ckpt_restore_req *req, int status) {
        run_ctx *ctx = req->data;
        ctx->status = status;
        ctx->done = true;
}

/* What a native restore needs besides the images, decided before CRIU runs. */
typedef struct native_plan {
        ckpt_native *n; /* NULL: not a native container */
        char *id;
        char *cgroup_root; /* where nucleus-<id> is made, or NULL */
        bool reserved;     /* the address was reserved here */
} native_plan;

static void native_plan_done(native_plan *p) {
        p->n = ckpt_native_free(p->n);
        free(p->id);
        free(p->cgroup_root);
        *p = (native_plan){};
}

/* --cgroup-root, else $NUCLEUS_CGROUP_ROOT, else the parent of the source's
 * cgroup (nodes set up alike have the same). */
static int pick_cgroup_root(const ckpt_metadata *md, const char *given, char **ret) {
        const char *env = getenv("NUCLEUS_CGROUP_ROOT");
        const char *slash;
        *ret = NULL;
        if (!md->cgroup_path)
                return 0;
        if (given)
                *ret = strdup(given);
        else if (env && env[0])
                *ret = strdup(env);
        else if ((slash = strrchr(md->cgroup_path, '/')) && slash != md->cgroup_path)
                *ret = strndup(md->cgroup_path, (size_t)(slash - md->cgroup_path));
        else
                return 0;
        return *ret ? 0 : -ENOMEM;
}

/* Reads the checkpoint before restoring: refuses a second copy, and checks
 * that this node offers what a native container needs (exit 3 when not);
 * reserves its address. */
static int precheck_restore(const char *dir, const char *state_dir, const criu_args *a,
                            const char *cgroup_root, const char *bridge, native_plan *plan) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        _cleanup_free_ char *cgroup_dir = NULL;
        nm_error err = {};
        int r;

        if (dfd < 0) {
                nm_error_errno(&err, dfd, "cannot open checkpoint directory %s", dir);
                failf("restore", &err);
                return NM_EXIT_FAILURE;
        }
        r = ckpt_metadata_load(dfd, &md, &err);
        if (r >= 0 && !md->bare)
                r = ckpt_state_check_not_running(state_dir, md->container_id, &err);
        if (r >= 0)
                r = ckpt_native_from_metadata(md, &plan->n, &err);
        if (r < 0) {
                failf("restore", &err);
                return NM_EXIT_FAILURE;
        }
        plan->id = strdup(md->container_id);
        if (!plan->id || pick_cgroup_root(md, cgroup_root, &plan->cgroup_root) < 0)
                return NM_EXIT_FAILURE;
        if (!plan->n || !plan->n->own_mount_ns)
                return NM_EXIT_OK;
        if (plan->cgroup_root && asprintf(&cgroup_dir, "%s/nucleus-%s", plan->cgroup_root, plan->id) < 0)
                return NM_EXIT_FAILURE;
        ckpt_native_target t = {.id = plan->id,
                                .state_dir = state_dir,
                                .bridge = bridge,
                                .cgroup_dir = cgroup_dir,
                                .ext_mounts = a->opts.ext_mounts,
                                .n_ext_mounts = a->opts.n_ext_mounts};
        r = ckpt_native_check_target(plan->n, &t, &err);
        if (r >= 0 && plan->n->net == CKPT_NET_BRIDGE)
                r = ckpt_native_address_reserve(state_dir, plan->id, plan->n->address, &err);
        if (r < 0) {
                nm_error_prefix(&err, "this node cannot take container %s", plan->id);
                failf("restore", &err);
                return NM_EXIT_REFUSED;
        }
        plan->reserved = plan->n->net == CKPT_NET_BRIDGE;
        return NM_EXIT_OK;
}

static void release_plan(native_plan *plan, const char *state_dir) {
        nm_error err = {};
        if (plan->reserved && ckpt_native_address_release(state_dir, plan->id, plan->n->address, &err) < 0)
                fprintf(stderr, "%s restore: %s\n", cli_program, nm_error_msg(&err));
        plan->reserved = false;
}

/* After CRIU: the state file, then (maybe) resume. Kills the copy again if
 * the state file cannot be written: an unregistered container must not run. */
static int finish_restore(ckpt_restore_req *req, const char *dir, const char *state_dir,
                          bool leave_stopped) {
        _cleanup_(ckpt_container_freep) ckpt_container *c = NULL;
        nm_error err = {}, kerr = {};
        int r;

        r = ckpt_container_from_metadata(req->metadata, &c, &err);
        if (r >= 0 && !c->bare && req->native)
                r = ckpt_state_set_cgroup(c, req->cgroup_path, &err);
        if (r >= 0 && !c->bare)
                r = ckpt_state_write_restored(state_dir, c, req->pid, req->start_ticks, &err);
        if (r < 0) {
                failf("restore", &err);
                if (ckpt_kill_tree(req->pid, req->start_ticks, &kerr) < 0)
                        fprintf(stderr, "%s restore: could not kill the restored tree %d either: %s\n",
                                cli_program, (int)req->pid, nm_error_msg(&kerr));
                else
                        fprintf(stderr,
                                "%s restore: the restored copy (pid %d) was killed; the images are intact\n",
                                cli_program, (int)req->pid);
                return NM_EXIT_FAILURE;
        }
        if (!leave_stopped && ckpt_resume(req->pid, req->start_ticks, &req->stopped_tasks, &err) < 0) {
                failf("restore", &err);
                fprintf(stderr,
                        "%s restore: pid %d is restored but stopped; retry with: %s resume -i %s %d\n",
                        cli_program, (int)req->pid, cli_program, dir, (int)req->pid);
                return NM_EXIT_FAILURE;
        }
        printf("restored %s %s (%s) from %s as pid %d%s\n", c->bare ? "process tree" : "container", c->id,
               c->name, dir, (int)req->pid, leave_stopped ? ", stopped" : ", running");
        printf("  criu:        %s (%s)\n", req->criu_path, req->criu_version);
        printf("  verified:    %s (%.1f ms)\n", req->hmac, ms(req->stats.verify_usec));
        printf("  criu restore: %.1f ms\n", ms(req->stats.criu_usec));
        if (req->tcp_closed)
                printf("  tcp:         established connections restored closed\n");
        if (req->stopped_tasks.n > 0)
                printf("  stopped:     %zu task(s) were stopped at the checkpoint and stay stopped\n",
                       req->stopped_tasks.n);
        printf("  total:       %.1f ms\n", ms(req->stats.total_usec));
        printf("  criu log:    %s/restore.log\n", req->work_dir);
        if (req->native)
                printf("  native:      root tmpfs, mounts and veth made again; cgroup %s\n",
                       req->cgroup_path ? req->cgroup_path : "none");
        if (!c->bare)
                printf("  state file:  %s/%s.json\n", state_dir, c->id);
        if (leave_stopped)
                printf("Every task is stopped: continue with '%s resume -i %s %d' or drop with '%s "
                       "kill-tree %d'\n",
                       cli_program, dir, (int)req->pid, cli_program, (int)req->pid);
        return NM_EXIT_OK;
}

int cmd_restore(int argc, char **argv) {
        static const struct option long_opts[] = {
                {"input", required_argument, NULL, 'i'},
                {"leave-stopped", no_argument, NULL, OPT_LEAVE_STOPPED},
                {"root-dir", required_argument, NULL, OPT_ROOT_DIR},
                {"cgroup-root", required_argument, NULL, OPT_CGROUP_ROOT},
                {"bridge", required_argument, NULL, OPT_BRIDGE},
                {"stdout", required_argument, NULL, OPT_STDOUT},
                CRIU_LONG_OPTIONS,
                {},
        };
        _cleanup_(ckpt_criu_freep) ckpt_criu *criu = NULL;
        _cleanup_free_ char *state_dir = NULL;
        criu_args a = {};
        const char *dir = NULL, *root_dir = NULL, *cgroup_root = NULL, *bridge = NULL, *stdout_file = NULL;
        bool leave_stopped = false;
        native_plan plan = {};
        int opt, r;

        while ((opt = getopt_long(argc, argv, "i:vh", long_opts, NULL)) >= 0) {
                r = parse_criu_option(&a, opt, "restore");
                if (r < 0)
                        return NM_EXIT_USAGE;
                if (r > 0)
                        continue;
                switch (opt) {
                case 'h': restore_help(); return NM_EXIT_OK;
                case 'i': dir = optarg; break;
                case OPT_LEAVE_STOPPED: leave_stopped = true; break;
                case OPT_ROOT_DIR: root_dir = optarg; break;
                case OPT_CGROUP_ROOT: cgroup_root = optarg; break;
                case OPT_BRIDGE: bridge = optarg; break;
                case OPT_STDOUT: stdout_file = optarg; break;
                default: return usage_error("restore", "bad option");
                }
        }
        if (!dir || optind != argc)
                return usage_error("restore", "-i DIR is required, and nothing else");
        if (ckpt_state_dir(&state_dir) < 0)
                return NM_EXIT_FAILURE;
        r = precheck_restore(dir, state_dir, &a, cgroup_root, bridge, &plan);
        if (r != NM_EXIT_OK) {
                native_plan_done(&plan);
                return r;
        }
        if (resolve_criu(&a, "restore", &criu) < 0) {
                release_plan(&plan, state_dir);
                native_plan_done(&plan);
                return NM_EXIT_FAILURE;
        }
        a.opts.criu = criu;

        uv_loop_t loop;
        run_ctx ctx = {.verbose = a.verbose};
        ckpt_restore_req req = {.data = &ctx, .event_cb = print_event};
        /* Always stopped first: the state file is written before anything of
         * the container runs again. */
        ckpt_restore_opts opts = {.criu = a.opts,
                                  .verify = true,
                                  .leave_stopped = true,
                                  .root_dir = root_dir,
                                  .cgroup_root = plan.cgroup_root,
                                  .bridge = bridge,
                                  .stdio_file = stdout_file};
        r = uv_loop_init(&loop);
        if (r < 0) {
                fail("restore", uv_strerror(r));
                release_plan(&plan, state_dir);
                native_plan_done(&plan);
                return NM_EXIT_FAILURE;
        }
        r = ckpt_restore(&loop, &req, dir, &opts, on_restored);
        if (r < 0) {
                (void)uv_loop_close(&loop);
                failf("restore", &req.error);
                release_plan(&plan, state_dir);
                native_plan_done(&plan);
                return r == -EBADMSG ? NM_EXIT_INTEGRITY : NM_EXIT_FAILURE;
        }
        (void)run_loop(&loop);
        if (!ctx.done || ctx.status < 0) {
                failf("restore", &req.error);
                ckpt_restore_req_done(&req);
                release_plan(&plan, state_dir);
                native_plan_done(&plan);
                return ctx.status == -EBADMSG && !req.verified ? NM_EXIT_INTEGRITY : NM_EXIT_FAILURE;
        }
        r = finish_restore(&req, dir, state_dir, leave_stopped);
        if (r != NM_EXIT_OK)
                release_plan(&plan, state_dir);
        ckpt_restore_req_done(&req);
        native_plan_done(&plan);
        return r;
}

/* ---- resume / kill-tree ------------------------------------------------- */

/* The verbs' fn: pid, its start time (0: not given), the checkpoint DIR of
 * -i (NULL when not given). */
typedef int (*pid_fn)(pid_t pid, uint64_t start_ticks, const char *dir, nm_error *err);

/* --start-ticks names one process: a later one with the same pid is not
 * it, and nothing is done to it. */
static int check_start_ticks(pid_t pid, uint64_t want, nm_error *err) {
        uint64_t now = 0;

        if (ckpt_proc_start_ticks(pid, &now) < 0)
                return nm_error_set(err, -ESRCH, "no process %d: nothing was done", (int)pid);
        if (now != want)
                return nm_error_set(err, -ESRCH,
                                    "process %d is not the one meant: it started at %" PRIu64
                                    ", not %" PRIu64
                                    " (that one ended, and its pid is another process's now): nothing was "
                                    "done",
                                    (int)pid, now, want);
        return 0;
}

/* The source's tree of a checkpoint made with --leave-stopped. */
typedef struct source_tree {
        ckpt_native *n; /* NULL for a tree that is not native */
        char *id;
        pid_t pid;
        uint64_t start_ticks;
        bool bare;
} source_tree;

static int source_of(const char *dir, source_tree *s, nm_error *err) {
        _cleanup_(ckpt_metadata_freep) ckpt_metadata *md = NULL;
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        int r;

        if (dfd < 0)
                return nm_error_errno(err, dfd, "cannot open checkpoint directory %s", dir);
        r = ckpt_metadata_load(dfd, &md, err);
        if (r >= 0)
                r = ckpt_native_from_metadata(md, &s->n, err);
        if (r < 0)
                return r;
        ckpt_metadata_source(md, &s->pid, &s->start_ticks);
        s->bare = md->bare;
        s->id = strdup(md->container_id);
        return s->id ? 0 : -ENOMEM;
}

typedef enum source_op {
        SOURCE_RESUME,
        SOURCE_END,
        SOURCE_END_FORGET,
} source_op;

/* Tasks that were stopped before the checkpoint stay stopped. */
static int source_resume(const char *dir, const source_tree *s, nm_error *err) {
        ckpt_stopped_tasks keep = {};
        int r = ckpt_stopped_tasks_load(dir, &keep, err);

        if (r >= 0)
                r = ckpt_source_resume(s->n, s->pid, s->start_ticks, &keep, err);
        ckpt_stopped_tasks_done(&keep);
        return r;
}

static int source_act(const char *dir, source_op op, pid_t *ret_pid, nm_error *err) {
        _cleanup_free_ char *state_dir = NULL;
        source_tree s = {};
        int r = source_of(dir, &s, err);

        if (r >= 0 && op == SOURCE_RESUME)
                r = source_resume(dir, &s, err);
        else if (r >= 0)
                r = ckpt_source_end(s.n, s.pid, s.start_ticks, err);
        if (r >= 0 && op == SOURCE_END_FORGET && !s.bare) {
                r = ckpt_state_dir(&state_dir);
                if (r >= 0)
                        r = ckpt_native_forget(state_dir, s.id, s.n, s.pid, err);
        }
        *ret_pid = s.pid;
        ckpt_native_free(s.n);
        free(s.id);
        return r;
}

static int pid_verb(int argc, char **argv, void (*help)(void), pid_fn fn, source_op op, const char *done) {
        static const struct option opts[] = {{"input", required_argument, NULL, 'i'},
                                             {"forget", no_argument, NULL, 'f'},
                                             {"start-ticks", required_argument, NULL, 's'},
                                             {"help", no_argument, NULL, 'h'},
                                             {}};
        const char *dir = NULL;
        bool forget = false;
        uint64_t start_ticks = 0;
        nm_error err = {};
        pid_t pid = 0;
        char *end;
        int c, r;

        while ((c = getopt_long(argc, argv, "i:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'h': help(); return NM_EXIT_OK;
                case 'i': dir = optarg; break;
                case 'f': forget = true; break;
                case 's':
                        errno = 0;
                        start_ticks = strtoull(optarg, &end, 10);
                        if (errno || end == optarg || *end || start_ticks == 0 || optarg[0] == '-')
                                return usage_error(argv[0], "--start-ticks wants a start time > 0");
                        break;
                default: return usage_error(argv[0], "bad option");
                }
        }
        if (forget && (op != SOURCE_END || !dir))
                return usage_error(argv[0], "--forget goes with kill-tree -i DIR");
        if (dir && optind == argc) {
                if (start_ticks)
                        return usage_error(argv[0], "--start-ticks goes with a PID");
                r = source_act(dir, forget ? SOURCE_END_FORGET : op, &pid, &err);
        } else {
                if (forget || optind + 1 != argc || parse_pid(argv[optind], &pid) < 0)
                        return usage_error(argv[0], "expects one PID (> 1), or -i DIR");
                r = start_ticks ? check_start_ticks(pid, start_ticks, &err) : 0;
                if (r == 0)
                        r = fn(pid, start_ticks, dir, &err);
        }
        if (r < 0) {
                failf(argv[0], &err);
                return err.code == -ESRCH ? NM_EXIT_NOT_FOUND : NM_EXIT_FAILURE;
        }
        printf("%s the process tree of %d\n", done, (int)pid);
        return NM_EXIT_OK;
}

static void resume_help(void) {
        printf("Usage: %s resume [-i DIR] [--start-ticks T] PID\n"
               "       %s resume -i DIR\n"
               "\n"
               "Continues a process tree restored with --leave-stopped: sends SIGCONT to PID and\n"
               "every descendant (CRIU leaves every task stopped, not only the root). With -i DIR,\n"
               "the tasks that the checkpoint DIR found stopped stay stopped, as they were before\n"
               "it was taken; without it every task continues.\n"
               "\n"
               "With -i DIR and no PID, rolls back a 'checkpoint --leave-stopped' into DIR on this\n"
               "node: the dumped tree (its pid and start time from DIR) goes back into its cgroup,\n"
               "its TCP sockets leave repair mode, CRIU's network lock is removed, and it runs on\n"
               "where it was (tasks stopped before the checkpoint stay stopped). Nothing is\n"
               "restored.\n"
               "\n"
               "OPTIONS\n"
               "  -i, --input DIR   with PID: the checkpoint the tree was restored from; alone:\n"
               "                    the checkpoint made with --leave-stopped\n"
               "  --start-ticks T   only if PID started at T (field 22 of /proc/PID/stat, as\n"
               "                    'resolve' names a held copy): a later process that took the\n"
               "                    pid over is left alone (exit 6)\n"
               "  -h, --help        this text\n"
               "\n%s",
               cli_program, cli_program, exit_help);
}

static void kill_tree_help(void) {
        printf("Usage: %s kill-tree [--start-ticks T] PID\n"
               "       %s kill-tree -i DIR\n"
               "\n"
               "Kills a restored process tree (PID and every descendant) with SIGKILL and waits\n"
               "until each process is gone. Meant for a tree restored with --leave-stopped that is\n"
               "not wanted after all. It does not touch state files.\n"
               "\n"
               "With -i DIR, ends the source of a 'checkpoint --leave-stopped' into DIR (the commit,\n"
               "once a copy runs elsewhere): its stopped tree is killed and the cgroup the dump made\n"
               "is removed; nucleus's supervisor then cleans up the rest.\n"
               "\n"
               "OPTIONS\n"
               "  -i, --input DIR   the checkpoint made with --leave-stopped\n"
               "  --forget          with -i: also do the supervisor's cleanup (address reservation,\n"
               "                    cgroup, state file), for a copy that has no supervisor (one\n"
               "                    restored on this node)\n"
               "  --start-ticks T   only if PID started at T (field 22 of /proc/PID/stat, as\n"
               "                    'resolve' names a held copy): a later process that took the\n"
               "                    pid over is left alone (exit 6)\n"
               "  -h, --help        this text\n"
               "\n%s",
               cli_program, cli_program, exit_help);
}

static int resume_tree(pid_t pid, uint64_t start_ticks, const char *dir, nm_error *err) {
        ckpt_stopped_tasks keep = {};
        int r;

        if (dir) {
                r = ckpt_stopped_tasks_load(dir, &keep, err);
                if (r < 0)
                        return r;
        }
        r = ckpt_resume(pid, start_ticks, &keep, err);
        ckpt_stopped_tasks_done(&keep);
        return r;
}

static int kill_tree(pid_t pid, uint64_t start_ticks, const char *dir, nm_error *err) {
        (void)dir;
        return ckpt_kill_tree(pid, start_ticks, err);
}

int cmd_resume(int argc, char **argv) {
        return pid_verb(argc, argv, resume_help, resume_tree, SOURCE_RESUME, "resumed");
}

int cmd_kill_tree(int argc, char **argv) {
        return pid_verb(argc, argv, kill_tree_help, kill_tree, SOURCE_END, "killed");
}
