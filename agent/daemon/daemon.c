/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus-agent: set-up, the loop, and a shutdown that never abandons a
 * container in the middle of a handoff. */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cli.h"
#include "daemon.h"
#include "exit-codes.h"
#include "fs-util.h"
#include "keeper.h"
#include "log.h"
#include "macro.h"
#include "mem.h"
#include "mig.h"
#include "nm-config.h"
#include "offer-check.h"
#include "metrics.h"
#include "precheck.h"
#include "sd.h"
#include "ssh-ctr.h"

static void close_walk(uv_handle_t *h, void *arg) {
        (void)arg;
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

static void agent_maybe_exit(agent *a) {
        mig *m;
        if (!a->stopping)
                return;
        /* A migration waiting on the other node for as long as it takes (the
         * source committed and retrying, or a destination asking) is safe to
         * leave: the journal carries it across a restart and no container
         * runs half-moved. Anything else must finish before we exit. */
        LIST_FOREACH(migs, m, a->migs)
        if (m->finished || !mig_parkable(m)) /* finished: its record is being archived */
                return;
        log_info("no handoff in progress: exiting");
        uv_stop(a->loop);
}

/* A migration is over. */
static void on_mig_end(agent *a, const json_t *result) {
        metrics_mig_end(a, result);
        /* Not at every end: the scan would compete with a move's downtime. */
        if (now_usec() - a->t_logs_pruned >= CRIU_LOGS_PRUNE_EVERY_US)
                criu_logs_prune(a);
        agent_maybe_exit(a);
}

static void on_signal(uv_signal_t *s, int signum) {
        agent *a = s->data;
        if (a->stopping) {
                /* No tidy teardown: CRIU may be working for us on a thread.
                 * Every step is journaled; the next start picks it up. */
                log_warning("second %s: exiting now; the journal finishes the rest at the next start",
                            strsignal(signum));
                _exit(NM_EXIT_FAILURE);
        }
        a->stopping = true;
        (void)sd_notify_send("STOPPING=1");
        log_info("%s: refusing new work, waiting for %u handoff(s) to reach a safe point", strsignal(signum),
                 a->n_src + a->n_dst);
        agent_maybe_exit(a);
}

static int make_dirs(agent *a, nm_error *err) {
        struct {
                char **path;
                const char *sub;
        } dirs[] = {
                {&a->checkpoints_dir, "checkpoints"},
                {&a->staging_dir, "staging"},
                {&a->criu_work_dir, "criu"},
        };
        _cleanup_close_ int wfd = mkdir_p_secure(a->cfg.work_dir, 0700);
        if (wfd < 0)
                return nm_error_errno(err, wfd, "cannot create %s", a->cfg.work_dir);
        for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
                int fd;
                *dirs[i].path = agent_config_path(&a->cfg, dirs[i].sub);
                if (!*dirs[i].path)
                        return nm_error_set(err, -ENOMEM, "out of memory");
                fd = mkdirat_secure(wfd, dirs[i].sub, 0700);
                if (fd < 0)
                        return nm_error_errno(err, fd, "cannot create %s", *dirs[i].path);
                if (dirs[i].path == &a->staging_dir)
                        a->staging_fd = fd;
                else
                        close(fd);
        }
        return 0;
}

/* libssh2 reads whatever key it is given: the checks are ours. A node
 * without a key can still receive containers, not send them. */
static int check_ssh_files(agent *a, nm_error *err) {
        nm_error e = {};
        int r;

        r = agent_check_file(a->cfg.ssh_key, "SSH key", AGENT_FILE_SECRET, &e);
        if (r == -ENOENT)
                log_warning("%s: this node cannot move containers away until it has one", e.msg);
        else if (r < 0)
                return nm_error_set(err, r, "%s", e.msg);
        nm_error_clear(&e);
        r = agent_check_file(a->cfg.known_hosts, "known_hosts", AGENT_FILE_TRUSTED, &e);
        if (r == -ENOENT)
                log_warning("%s: no peer can be trusted until it has one", e.msg);
        else if (r < 0)
                return nm_error_set(err, r, "%s", e.msg);
        return 0;
}

/* What journal/done/ holds, in memory; records no longer kept go. Before
 * the loop serves anyone. */
static int history_load(agent *a, nm_error *err) {
        json_t *done = NULL, *forget = json_array(), *id;
        size_t i;
        int r;

        a->history = history_new((int64_t)a->cfg.history_days * 86400 * 1000);
        if (!a->history || !forget) {
                json_decref(forget);
                return nm_error_set(err, -ENOMEM, "out of memory");
        }
        r = journal_load_done(a->journal, SIZE_MAX, &done, err);
        if (r < 0) {
                json_decref(forget);
                return r;
        }
        /* Oldest first: the order of arrival is the order of age. */
        for (i = json_array_size(done); i-- > 0;)
                (void)history_add(a->history, json_array_get(done, i), unix_ms(), forget);
        json_decref(done);
        json_array_foreach(forget, i, id) {
                nm_error e = {};
                if (journal_forget(a->journal, json_string_value(id), &e) < 0)
                        log_warning("%s", e.msg);
        }
        json_decref(forget);
        return 0;
}

/* Our peer sessions encrypt with libssh2's AES-CTR; whether it runs through
 * the batched keystream (transfer/ssh-ctr.h) is worth a line: without it
 * every stream is slower, and nothing else would say why. */
static void log_ssh_cipher(void) {
        nm_error e = {};

        if (xfer_ssh_ctr_install(&e) < 0)
                log_warning(
                        "SSH streams encrypt through OpenSSL's own AES-CTR, 16 bytes per call (slower): %s",
                        e.msg);
        else
                log_info("SSH streams encrypt through the %s provider (AES-CTR, 4 KiB of keystream per "
                         "OpenSSL call)",
                         XFER_SSH_CTR_PROVIDER);
}

static int agent_setup(agent *a, nm_error *err) {
        _cleanup_free_ char *jdir = agent_config_path(&a->cfg, "journal");
        struct utsname u;
        int r;

        fault_setup();
        r = ckpt_criu_resolve(a->cfg.criu, &a->criu, err);
        if (r < 0)
                return r;
        log_info("using %s (CRIU %s)", a->criu->path, a->criu->version);
        /* A key made here would differ from every other node's: each move
         * would freeze the container, then fail verification. */
        r = ckpt_key_load_mode(a->cfg.hmac_key, CKPT_KEY_REFUSE, &a->key, &a->key_len, err);
        if (r < 0)
                return r;
        r = ckpt_key_identity(a->key, a->key_len, a->key_id);
        if (r < 0)
                return nm_error_errno(err, r, "cannot derive the HMAC key's identity");
        r = check_ssh_files(a, err);
        if (r < 0)
                return r;
        log_ssh_cipher();
        uname(&u);
        snprintf(a->kernel, sizeof(a->kernel), "%s", u.release);
        r = make_dirs(a, err);
        if (r < 0)
                return r;
        r = precheck_setup(a, err);
        if (r < 0)
                return r;
        r = journal_open(jdir, &a->journal, err);
        if (r < 0)
                return r;
        journal_set_keep(a->journal, (uint64_t)a->cfg.history_days * 86400);
        journal_prune(a->journal);
        r = history_load(a, err);
        if (r < 0)
                return r;
        cordon_load(a);
        r = ctl_listen(a, err);
        if (r < 0)
                return r;
        r = metrics_start(a, err);
        if (r < 0)
                return r;
        r = recover_all(a, err);
        if (r >= 0)
                keeper_load_all(a);
        return r;
}

static void agent_teardown(agent *a) {
        mig *m, *n;
        LIST_FOREACH_SAFE(migs, m, n, a->migs)
        mig_park(m);
        ctl_close_all(a);
        keeper_close_all(a);
        metrics_stop(a);
        uv_close((uv_handle_t *)&a->sig_term, NULL);
        uv_close((uv_handle_t *)&a->sig_int, NULL);
        uv_close((uv_handle_t *)&a->sig_hup, NULL);
        uv_close((uv_handle_t *)&a->watchdog, NULL);
        log_set_ctx_fields(NULL, NULL);
        uv_run(a->loop, UV_RUN_DEFAULT);
        /* Anything still open is a leak: close it, but say so. */
        if (uv_loop_close(a->loop) == UV_EBUSY) {
                log_warning("handles left open at exit; closing them");
                uv_walk(a->loop, close_walk, NULL);
                uv_run(a->loop, UV_RUN_DEFAULT);
                (void)uv_loop_close(a->loop);
        }
        journal_free(a->journal);
        precheck_free(a);
        offer_check_free_passes(a);
        history_free(a->history);
        ckpt_criu_free(a->criu);
        ckpt_key_free(a->key, a->key_len);
        if (a->staging_fd >= 0)
                close(a->staging_fd);
        free(a->checkpoints_dir);
        free(a->staging_dir);
        free(a->criu_work_dir);
}

static int config_read(agent_config *cfg, const agent_invocation *inv, nm_error *err);

/* ---- systemd ---- */

static void on_watchdog(uv_timer_t *t) {
        (void)t;
        (void)sd_notify_send("WATCHDOG=1");
}

/* The journal's fields for a migration's log lines. */
static size_t mig_log_fields(const char *ctx, const char **kv, size_t max, void *ud) {
        mig *m = mig_find(ud, ctx);
        size_t n = 0;

        if (!m)
                m = mig_find_archiving(ud, ctx);
        if (!m || max < 8)
                return 0;
        if (m->container_id)
                kv[n++] = "NUCLEUS_CONTAINER", kv[n++] = m->container_id;
        if (m->peer)
                kv[n++] = "NUCLEUS_PEER", kv[n++] = m->peer;
        kv[n++] = "NUCLEUS_PHASE", kv[n++] = mig_phase_name(m);
        kv[n++] = "NUCLEUS_ROLE", kv[n++] = mig_role_to_string(m->role);
        if (m->finished && max >= n + 2)
                kv[n++] = "NUCLEUS_OUTCOME", kv[n++] = mig_phase_name(m);
        return n;
}

/* Recovery is done and the socket answers: systemd may start what waits
 * for us; from now on the loop pings its watchdog. */
static void agent_ready(agent *a) {
        uint64_t wd = sd_watchdog_usec();
        char status[256];

        snprintf(status, sizeof(status),
                 "READY=1\nSTATUS=node %s ready: %u migration(s) in flight after recovery", a->cfg.node,
                 a->n_src + a->n_dst);
        (void)sd_notify_send(status);
        if (wd) {
                /* Twice per period, as systemd recommends. */
                uint64_t every = wd / 2000 ? wd / 2000 : 1;
                uv_timer_start(&a->watchdog, on_watchdog, every, every);
                log_info("systemd watchdog: pinging every %llu ms", (unsigned long long)every);
        }
}

static void on_hup(uv_signal_t *s, int signum) {
        agent *a = s->data;
        agent_config fresh = {};
        nm_error err = {};
        char state[128];
        (void)signum;

        snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_usec());
        (void)sd_notify_send(state);
        log_info("SIGHUP: reading %s again", a->inv->config);
        if (config_read(&fresh, a->inv, &err) < 0) {
                log_error("reload refused, nothing changed: %s", err.msg);
                agent_config_done(&fresh);
        } else {
                unsigned kept = agent_reload_apply(a, &fresh);
                agent_config_done(&fresh);
                log_info("reloaded%s", kept ? "; some settings need a restart (see above)" : "");
        }
        (void)sd_notify_send("READY=1");
}

int agent_run(agent_config *cfg, const agent_invocation *inv) {
        static uv_loop_t loop;
        agent a = {.loop = &loop, .cfg = *cfg, .staging_fd = -EBADF, .on_mig_end = on_mig_end, .inv = inv};
        nm_error err = {};
        int r;

        mem_keep_stream_buffers();
        uv_loop_init(&loop);
        signal(SIGPIPE, SIG_IGN);
        uv_signal_init(&loop, &a.sig_term);
        uv_signal_init(&loop, &a.sig_int);
        uv_signal_init(&loop, &a.sig_hup);
        uv_timer_init(&loop, &a.watchdog);
        a.sig_term.data = a.sig_int.data = a.sig_hup.data = &a;
        uv_signal_start(&a.sig_term, on_signal, SIGTERM);
        uv_signal_start(&a.sig_int, on_signal, SIGINT);
        log_set_ctx_fields(mig_log_fields, &a);
        r = agent_setup(&a, &err);
        if (r < 0) {
                log_error("cannot start: %s", err.msg);
                agent_teardown(&a);
                return r;
        }
        uv_signal_start(&a.sig_hup, on_hup, SIGHUP);
        log_info("node %s ready on %s (%u peer(s), work dir %s%s)", a.cfg.node, a.cfg.socket,
                 (unsigned)a.cfg.n_peers, a.cfg.work_dir, a.cordoned ? ", cordoned" : "");
        agent_ready(&a);
        uv_run(&loop, UV_RUN_DEFAULT);
        agent_teardown(&a);
        *cfg = a.cfg;
        return 0;
}

/* ---- command line ---- */

static void help(FILE *f) {
        fprintf(f,
                "Usage: %s [OPTIONS...]\n"
                "       %s dial-stdio [--peer NAME] [--config FILE | --socket PATH]\n"
                "\n"
                "The nucleus-migrate node agent. It moves containers to other nodes when\n"
                "nucleus-migrate asks, takes containers from peer agents that arrive over SSH,\n"
                "and finishes or rolls back every handoff its journal holds after a restart.\n"
                "\n"
                "Options (each overrides the configuration file):\n"
                "  -c, --config FILE      configuration (default %s)\n"
                "      --node NAME        this node's name              [agent] node\n"
                "      --socket PATH      control socket                [agent] socket\n"
                "      --state-dir DIR    nucleus state directory       [agent] state_dir\n"
                "      --work-dir DIR     checkpoints, staging, journal [agent] work_dir\n"
                "      --hmac-key FILE    cluster checkpoint HMAC key   [agent] hmac_key\n"
                "      --criu PATH        criu binary                   [agent] criu\n"
                "      --log-level LEVEL  error, warning, info, debug   [agent] log_level\n"
                "      --set SECTION.KEY=VALUE\n"
                "                         any other setting, e.g. --set limits.parallel=4,\n"
                "                         --set peer.node2.host=10.0.0.2\n"
                "  -h, --help             show this help\n"
                "      --version          show the version\n"
                "\n"
                "Signals: SIGTERM or SIGINT stops taking new work and exits once no container\n"
                "is in the middle of a handoff; a second one exits at once (the journal\n"
                "finishes the rest at the next start). SIGHUP reads the configuration again:\n"
                "peers, limits, SSH settings and the log level change live; what was set up\n"
                "at start (node, socket, directories, HMAC key, criu, metrics_file) is kept,\n"
                "and the log says why.\n"
                "\n"
                "Under systemd (Type=notify) it says READY=1 once its journal is recovered,\n"
                "pings the watchdog from its loop, and logs to the journal with fields\n"
                "(journalctl NUCLEUS_MIGRATION=<id>). [agent] metrics_file keeps Prometheus\n"
                "metrics for node_exporter's textfile collector.\n"
                "\n"
                "See nucleus-agent(8) for the configuration file and the handoff.\n",
                cli_program, cli_program, AGENT_CONFIG_DEFAULT);
}

/* The options: parsed once for --config and --help, then again over the
 * file's settings, at start and at every reload. */
enum { OPT_NODE = 256, OPT_SOCKET, OPT_STATE, OPT_WORK, OPT_KEY, OPT_CRIU, OPT_LEVEL, OPT_SET, OPT_VERSION };
static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},        {"node", required_argument, NULL, OPT_NODE},
        {"socket", required_argument, NULL, OPT_SOCKET}, {"state-dir", required_argument, NULL, OPT_STATE},
        {"work-dir", required_argument, NULL, OPT_WORK}, {"hmac-key", required_argument, NULL, OPT_KEY},
        {"criu", required_argument, NULL, OPT_CRIU},     {"log-level", required_argument, NULL, OPT_LEVEL},
        {"set", required_argument, NULL, OPT_SET},       {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},     {},
};

/* The file, then the flags over it. */
static int config_read(agent_config *cfg, const agent_invocation *inv, nm_error *err) {
        static const struct {
                int opt;
                const char *key;
        } keys[] = {{OPT_NODE, "node"},      {OPT_SOCKET, "socket"}, {OPT_STATE, "state_dir"},
                    {OPT_WORK, "work_dir"},  {OPT_KEY, "hmac_key"},  {OPT_CRIU, "criu"},
                    {OPT_LEVEL, "log_level"}};
        int c;

        if (agent_config_init(cfg) < 0)
                return nm_error_set(err, -ENOMEM, "out of memory");
        if (agent_config_load(cfg, inv->config, inv->config_given, err) < 0)
                return err->code;
        optind = 1;
        while ((c = getopt_long(inv->argc, inv->argv, "c:h", options, NULL)) >= 0) {
                for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
                        if (keys[i].opt == c && agent_config_set(cfg, "agent", keys[i].key, optarg, err) < 0)
                                return err->code;
                if (c == OPT_SET && agent_config_set_assignment(cfg, optarg, err) < 0)
                        return err->code;
        }
        return agent_config_check(cfg, err);
}

int verb_daemon(int argc, char **argv) {
        agent_invocation inv = {.config = AGENT_CONFIG_DEFAULT, .argc = argc, .argv = argv};
        agent_config cfg = {};
        nm_error err = {};
        int c, r;

        optind = 1;
        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
                if (c == 'c') {
                        inv.config = optarg;
                        inv.config_given = true;
                } else if (c == 'h') {
                        help(stdout);
                        return NM_EXIT_OK;
                } else if (c == OPT_VERSION) {
                        printf("nucleus-agent %s\n", NM_VERSION);
                        return NM_EXIT_OK;
                } else if (c == '?') {
                        help(stderr);
                        return NM_EXIT_USAGE;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "%s: unexpected argument '%s'\n", cli_program, argv[optind]);
                return NM_EXIT_USAGE;
        }
        if (config_read(&cfg, &inv, &err) < 0) {
                fprintf(stderr, "%s: %s\n", cli_program, nm_error_msg(&err));
                agent_config_done(&cfg);
                return NM_EXIT_USAGE;
        }
        log_set_level(log_level_from_string(cfg.log_level));
        if (getenv("JOURNAL_STREAM"))
                log_set_timestamps(false);
        if (sd_journal_wanted())
                log_set_journal(true);
        r = agent_run(&cfg, &inv);
        agent_config_done(&cfg);
        return r < 0 ? NM_EXIT_FAILURE : NM_EXIT_OK;
}
