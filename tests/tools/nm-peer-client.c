/* SPDX-License-Identifier: Apache-2.0 */
/* nm-peer-client: a scriptable, possibly hostile, peer for tests. It speaks
 * the wire protocol to an agent directly: through a command (usually ssh to
 * the node as the migration user, whose forced command is `nucleus-agent
 * dial-stdio`, or dial-stdio itself) or straight to a control socket. Frames
 * are built with proto/ when they are valid, and by hand (msgpack, raw
 * bytes) when they must not be.
 *
 *   nm-peer-client [--socket PATH] [--timeout MS] [--hmac-key FILE] [--node NAME] [--target NAME]
 *                  [--script FILE] [-- COMMAND ARGS...]
 *   nm-peer-client --flood N --socket PATH [--hold MS|@FILE] [--timeout MS] [--relay NAME]
 *
 * The script (--script FILE, else stdin) has one command per line; # starts
 * a comment. Every frame received is printed on stdout as "< TYPE ...". The
 * first expectation that does not hold prints "FAIL line N: ..." on stderr
 * and exits 1; an unusable script or transport exits 2; 0 otherwise.
 *
 * Sending (MIG is a migration id; numbers are decimal or 0x hex):
 *   hello [role=peer|cli] [node=NAME] [version=N] [min=N] [features=A,B] (default: binding)
 *                                       (node: --node, else "hostile")
 *   offer MIG [container=ID] [name=TEXT] [bytes=N] [criu=VER] [kernel=REL]
 *             [lazy=0|1] [ps_stream=0|1] [lanes=N] [metadata=@FILE|TEXT]
 *   file MIG PATH SIZE [mode=N]         FILE (a valid path: see `map`)
 *   data MIG N [fill=BYTE]              DATA of N bytes
 *   file-end MIG [sha=auto|bad]         FILE_END with the SHA-256 of the file's DATA
 *   images-done MIG [hmac=auto|bad|HEX] [files=N] [bytes=N] [bind=auto|none|MIG]
 *                                       defaults: what was sent, HMAC under --hmac-key
 *   put MIG SRC PATH                    FILE, DATA..., FILE_END of the file SRC
 *   put-dir MIG DIR                     every file of a checkpoint directory, in order
 *   verified|restore|commit|query|accept MIG
 *   lanes MIG N                         LANES: the pages dealt over lanes 0..N-1
 *   ps-pages MIG NUM HEX                PS_PAGES of the bytes HEX as the stream's frame NUM
 *                                       (0 first), tagged with HMAC-SHA256 under --hmac-key
 *                                       as node --node's pages to --target
 *                                       (LANE_JOIN: `map`, with the secret ACCEPT printed)
 *   abort MIG REASON...
 *   ping SEQ | node-info-req | status [REF] | list | cordon on|off
 *   relay [NAME]                        RELAY (dial-stdio's own first frame) naming NAME
 *   cycles PREFIX N                     N OFFER+ABORT cycles, ids PREFIX-1..N (see cmd_cycles)
 *   migrate CONTAINER TARGET
 *   map KEY=TYPE:VALUE...               a frame of one msgpack map built by hand;
 *                                       TYPE: u (uint), i (int), s (string, C escapes
 *                                       such as \x00 and \x20 allowed), b (bin, hex), bool,
 *                                       nil; e.g. map t=u:23 mig=s:m1 path=s:../x size=u:1 mode=u:384
 *   raw HEX                             bytes as they are
 *   len N                               a bare 4-byte length prefix
 *   trickle MS HEX                      HEX one byte every MS ms; if the agent hangs
 *                                       up, prints how long after our last whole frame
 *   drip MIG MS                         1-byte DATA frames every MS ms until the agent
 *                                       answers or closes (a never-ending slow stream)
 *   shutdown                            end our side of the stream
 *   sleep MS
 *
 * Expecting (PINGs are answered, PONGs skipped):
 *   expect TYPE [TEXT...]               the next frame is TYPE; for ERROR, REJECT,
 *                                       RESULT and OUTCOME its reason/doc/outcome has TEXT
 *   expect-closed [TEXT...]             the agent ends the session (EOF) within the
 *                                       timeout; only ERRORs may come first, and with
 *                                       TEXT one of them must contain it; prints
 *                                       "< closed after MS ms", MS since our last write
 *   expect-silence MS                   nothing arrives for MS ms
 *   expect-pinging MS TYPE [TEXT...]    as expect, with a PING every MS ms meanwhile (a peer
 *                                       that keeps its session alive while it waits)
 *
 * --flood N opens N connections to --socket at once, sends HELLO on each and
 * counts those answered with HELLO ("served") and those closed ("refused");
 * the served ones then ask NODE_INFO_REQ and must be answered. It prints
 * "served=S refused=R answered=A" and holds the connections for --hold ms,
 * or while FILE exists (--hold @FILE, at most --timeout ms), with a PING on
 * each answered one every 200 ms so that the agent's idle timeout does not
 * end them meanwhile. With --relay NAME each connection first says what
 * dial-stdio says (RELAY naming NAME), and HELLO as NAME: what the
 * migration user's connections must do. */
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <openssl/evp.h>

#include "ckpt-format.h"
#include "fs-util.h"
#include "macro.h"
#include "proto.h"
#include "ps-mac.h"
#include "transfer.h"

#define ARGS_MAX 64
#define CHUNK (256u * 1024u)

typedef struct client {
        int in_fd, out_fd; /* from the agent, to the agent (the same for a socket) */
        pid_t child;
        proto_reader *rd;
        bool eof;
        uint64_t timeout_ms;
        /* When our last write ended, or the session began: the agent
         * cannot have heard from us later, so its idle clock started no
         * earlier, and a time counted from here is never shorter than the
         * agent's (whatever the relay's delay). */
        uint64_t wrote_ms;
        const char *node;                 /* HELLO's node unless the line names one */
        const char *target;               /* the node spoken to, for IMAGES_DONE's binding */
        char container[PROTO_ID_MAX + 1]; /* the last OFFER's */
        unsigned line;
        /* the image stream being sent */
        ckpt_hmac *hmac; /* the tree HMAC an honest sender computes (ckpt's) */
        uint8_t *key;
        size_t key_len;
        bool dir_hashed;
        EVP_MD_CTX *sha;
        uint64_t files, bytes;
} client;

_Noreturn static void fail(client *c, const char *fmt, ...) _printf_(2, 3);
_Noreturn static void fail(client *c, const char *fmt, ...) {
        va_list ap;
        fprintf(stderr, "FAIL line %u: ", c->line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (c->child > 0)
                (void)kill(c->child, SIGTERM);
        exit(1);
}

_Noreturn static void usage_fail(client *c, const char *fmt, ...) _printf_(2, 3);
_Noreturn static void usage_fail(client *c, const char *fmt, ...) {
        va_list ap;
        fprintf(stderr, "nm-peer-client: line %u: ", c->line);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (c->child > 0)
                (void)kill(c->child, SIGTERM);
        exit(2);
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms) {
        struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ---- transport ---- */

static int connect_socket(const char *path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int spawn(client *c, char **argv) {
        int to[2], from[2];

        if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
                return -errno;
        c->child = fork();
        if (c->child < 0)
                return -errno;
        if (c->child == 0) {
                if (dup2(to[0], STDIN_FILENO) < 0 || dup2(from[1], STDOUT_FILENO) < 0)
                        _exit(127);
                execvp(argv[0], argv);
                fprintf(stderr, "nm-peer-client: cannot run %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        close(to[0]);
        close(from[1]);
        c->out_fd = to[1];
        c->in_fd = from[0];
        c->wrote_ms = now_ms();
        return 0;
}

/* Writes everything, or fails the script: a peer that stopped reading for
 * the whole timeout, or one that hung up, is an answer too (see write_or). */
static int write_all(client *c, const void *buf, size_t n) {
        const uint8_t *p = buf;
        uint64_t deadline = now_ms() + c->timeout_ms;

        while (n > 0) {
                struct pollfd pfd = {.fd = c->out_fd, .events = POLLOUT};
                ssize_t k = write(c->out_fd, p, n);
                if (k > 0) {
                        p += k;
                        n -= (size_t)k;
                        continue;
                }
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (now_ms() >= deadline)
                        return -ETIMEDOUT;
                (void)poll(&pfd, 1, 100);
        }
        c->wrote_ms = now_ms();
        return 0;
}

static void send_bytes(client *c, const void *buf, size_t n) {
        int r = write_all(c, buf, n);
        /* The agent may close on us while we write: that is for the next
         * expectation to judge, not a script error. */
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                fail(c, "cannot write to the agent: %s", strerror(-r));
}

static void send_msg(client *c, const proto_msg *m) {
        _cleanup_free_ uint8_t *buf = NULL;
        nm_error err = {};
        size_t n;

        if (proto_encode(m, &buf, &n, &err) < 0)
                usage_fail(c, "cannot encode %s: %s (use `map` for invalid messages)",
                           strna(proto_msg_type_to_string(m->type)), err.msg);
        send_bytes(c, buf, n);
}

/* ---- receiving ---- */

static void print_msg(const proto_msg *m) {
        printf("< %s", strna(proto_msg_type_to_string(m->type)));
        switch ((int)m->type) {
        case PROTO_MSG_ERROR: printf(" code=%d reason=%s", (int)m->error.code, m->error.reason); break;
        case PROTO_MSG_REJECT:
                printf(" code=%s reason=%s", strna(proto_reject_code_to_string(m->reject.code)),
                       m->reject.reason);
                break;
        case PROTO_MSG_HELLO:
                printf(" node=%s version=%u", m->hello.node, (unsigned)m->hello.version);
                break;
        case PROTO_MSG_RESULT: printf(" doc=%s", m->result.doc); break;
        case PROTO_MSG_OUTCOME:
                printf(" outcome=%s", strna(proto_outcome_to_string(m->outcome.outcome)));
                break;
        case PROTO_MSG_RESTORED:
        case PROTO_MSG_RUNNING: printf(" pid=%u", (unsigned)m->restored.pid); break;
        case PROTO_MSG_ACCEPT:
                /* The lanes' grant: a test joins further sessions with it. */
                if (m->accept.has_lanes) {
                        printf(" lanes=%u secret=", (unsigned)m->accept.lanes);
                        for (size_t i = 0; i < m->accept.lane_secret.len; i++)
                                printf("%02x", m->accept.lane_secret.ptr[i]);
                }
                break;
        case PROTO_MSG_LANE_JOINED: printf(" lane=%u", (unsigned)m->lane_joined.lane); break;
        default: break;
        }
        if (proto_msg_mig(m))
                printf(" mig=%s", proto_msg_mig(m));
        printf("\n");
        fflush(stdout);
}

/* The text an expectation is matched against. */
static const char *msg_text(const proto_msg *m) {
        switch ((int)m->type) {
        case PROTO_MSG_ERROR: return m->error.reason;
        case PROTO_MSG_REJECT: return m->reject.reason;
        case PROTO_MSG_RESULT: return m->result.doc;
        case PROTO_MSG_OUTCOME: return proto_outcome_to_string(m->outcome.outcome);
        case PROTO_MSG_HELLO: return m->hello.node;
        default: return "";
        }
}

/* 1: a message in *m; 0: EOF; -ETIMEDOUT. A frame we cannot decode fails
 * the script: the agent must speak the protocol even to a hostile peer. */
static int read_msg(client *c, uint64_t timeout_ms, proto_msg *m) {
        uint64_t deadline = now_ms() + timeout_ms;
        nm_error err = {};

        for (;;) {
                const uint8_t *payload;
                size_t len;
                uint8_t *w;
                size_t room;
                int r = proto_reader_next(c->rd, &payload, &len, &err);
                if (r < 0)
                        fail(c, "the agent sent a frame we cannot read: %s", err.msg);
                if (r > 0) {
                        r = proto_decode(payload, len, m, &err);
                        if (r < 0)
                                fail(c, "the agent sent a frame we cannot decode: %s", err.msg);
                        if (m->type == PROTO_MSG_PING) {
                                proto_msg pong = {.type = PROTO_MSG_PONG, .pong = m->ping};
                                proto_msg_done(m);
                                send_msg(c, &pong);
                                continue;
                        }
                        if (m->type == PROTO_MSG_PONG) {
                                proto_msg_done(m);
                                continue;
                        }
                        print_msg(m);
                        return 1;
                }
                if (c->eof) {
                        if (proto_reader_finish(c->rd, &err) < 0)
                                fail(c, "the agent's stream ended in the middle of a frame: %s", err.msg);
                        return 0;
                }
                uint64_t now = now_ms();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd pfd = {.fd = c->in_fd, .events = POLLIN};
                r = poll(&pfd, 1, (int)(deadline - now));
                if (r < 0 && errno != EINTR)
                        fail(c, "poll: %s", strerror(errno));
                if (r <= 0)
                        continue;
                if (proto_reader_get_buffer(c->rd, &w, &room, &err) < 0)
                        fail(c, "reader: %s", err.msg);
                ssize_t k = read(c->in_fd, w, room);
                if (k < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (k <= 0) {
                        /* A reset counts as the end of the session. */
                        c->eof = true;
                        continue;
                }
                if (proto_reader_advance(c->rd, (size_t)k, &err) < 0)
                        fail(c, "the agent sent a frame we refuse: %s", err.msg);
        }
}

/* ---- script words ---- */

static uint64_t parse_u64(client *c, const char *s) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || end == s || *end || *s == '-')
                usage_fail(c, "'%s' is not a number", s);
        return v;
}

/* key=value among args[from..n); NULL if absent. */
/* What an honest peer of this build lists in HELLO unless told otherwise:
 * "binding", without which an agent refuses every OFFER. */
static const char *const default_features[] = {"binding"};
#define HELLO_FEATURES_MAX 8

/* HELLO's features: "features=a,b" lists them ("features=" none), else the
 * defaults. SPEC is cut in place; V holds pointers into it. */
static proto_strv hello_features(char *spec, const char *v[HELLO_FEATURES_MAX]) {
        char *save = NULL, *tok;
        size_t n = 0;

        if (!spec)
                return (proto_strv){.v = default_features,
                                    .n = sizeof(default_features) / sizeof(*default_features)};
        for (tok = strtok_r(spec, ",", &save); tok && n < HELLO_FEATURES_MAX;
             tok = strtok_r(NULL, ",", &save))
                v[n++] = tok;
        return (proto_strv){.v = v, .n = n};
}

static const char *opt(char **args, size_t n, size_t from, const char *key) {
        size_t k = strlen(key);
        for (size_t i = from; i < n; i++)
                if (strncmp(args[i], key, k) == 0 && args[i][k] == '=')
                        return args[i] + k + 1;
        return NULL;
}

static int hexval(int ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        ch = tolower(ch);
        return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Hex digits (spaces allowed between bytes) to bytes; returns the count. */
static size_t unhex(client *c, const char *s, uint8_t **ret) {
        uint8_t *out = malloc(strlen(s) / 2 + 1);
        size_t n = 0;

        if (!out)
                usage_fail(c, "out of memory");
        while (*s) {
                if (isspace((unsigned char)*s)) {
                        s++;
                        continue;
                }
                int hi = hexval((unsigned char)s[0]), lo = s[1] ? hexval((unsigned char)s[1]) : -1;
                if (hi < 0 || lo < 0)
                        usage_fail(c, "bad hex near '%s'", s);
                out[n++] = (uint8_t)(hi << 4 | lo);
                s += 2;
        }
        *ret = out;
        return n;
}

/* C-style escapes (\xNN, \0, \n, \t, \\) to bytes; returns the count. */
static size_t unescape(client *c, const char *s, char **ret) {
        char *out = malloc(strlen(s) + 1);
        size_t n = 0;

        if (!out)
                usage_fail(c, "out of memory");
        for (; *s; s++) {
                if (*s != '\\') {
                        out[n++] = *s;
                        continue;
                }
                s++;
                switch (*s) {
                case '0': out[n++] = '\0'; break;
                case 'n': out[n++] = '\n'; break;
                case 't': out[n++] = '\t'; break;
                case '\\': out[n++] = '\\'; break;
                case 'x':
                        if (hexval((unsigned char)s[1]) < 0 || hexval((unsigned char)s[2]) < 0)
                                usage_fail(c, "bad \\x escape");
                        out[n++] = (char)(hexval((unsigned char)s[1]) << 4 | hexval((unsigned char)s[2]));
                        s += 2;
                        break;
                default: usage_fail(c, "unknown escape \\%c", *s);
                }
        }
        out[n] = '\0';
        *ret = out;
        return n;
}

static void frame_send(client *c, const msgpack_sbuffer *sb) {
        uint8_t hdr[4] = {(uint8_t)(sb->size >> 24), (uint8_t)(sb->size >> 16), (uint8_t)(sb->size >> 8),
                          (uint8_t)sb->size};
        send_bytes(c, hdr, sizeof(hdr));
        send_bytes(c, sb->data, sb->size);
}

/* map KEY=TYPE:VALUE...: anything the decoder must refuse. */
static void cmd_map(client *c, char **args, size_t n) {
        msgpack_sbuffer sb;
        msgpack_packer pk;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, n - 1);
        for (size_t i = 1; i < n; i++) {
                char *eq = strchr(args[i], '='), *colon;
                if (!eq || !(colon = strchr(eq, ':')))
                        usage_fail(c, "map entry '%s' is not KEY=TYPE:VALUE", args[i]);
                *eq = *colon = '\0';
                const char *key = args[i], *type = eq + 1, *val = colon + 1;
                msgpack_pack_str(&pk, strlen(key));
                msgpack_pack_str_body(&pk, key, strlen(key));
                if (strcmp(type, "u") == 0)
                        msgpack_pack_uint64(&pk, parse_u64(c, val));
                else if (strcmp(type, "i") == 0)
                        msgpack_pack_int64(&pk, strtoll(val, NULL, 0));
                else if (strcmp(type, "s") == 0) {
                        _cleanup_free_ char *s = NULL;
                        size_t len = unescape(c, val, &s);
                        msgpack_pack_str(&pk, len);
                        msgpack_pack_str_body(&pk, s, len);
                } else if (strcmp(type, "b") == 0) {
                        _cleanup_free_ uint8_t *b = NULL;
                        size_t len = unhex(c, val, &b);
                        msgpack_pack_bin(&pk, len);
                        msgpack_pack_bin_body(&pk, b, len);
                } else if (strcmp(type, "bool") == 0) {
                        if (strcmp(val, "true") == 0)
                                msgpack_pack_true(&pk);
                        else
                                msgpack_pack_false(&pk);
                } else if (strcmp(type, "nil") == 0)
                        msgpack_pack_nil(&pk);
                else
                        usage_fail(c, "unknown map value type '%s'", type);
        }
        frame_send(c, &sb);
        msgpack_sbuffer_destroy(&sb);
}

/* ---- the image stream ---- */

/* A hostile script may break the format on purpose: ckpt's HMAC then
 * refuses the record, and images-done has no tree HMAC to send (see there). */
static void stream_begin_file(client *c, const char *path, uint64_t size) {
        if (!c->hmac) {
                if (!c->key)
                        return; /* no key: images-done needs hmac= */
                if (ckpt_hmac_new(c->key, c->key_len, &c->hmac) < 0)
                        usage_fail(c, "cannot set up HMAC-SHA256");
        }
        if (!c->dir_hashed) {
                (void)ckpt_hmac_dir(c->hmac, CKPT_IMAGES_DIR, NULL);
                c->dir_hashed = true;
        }
        (void)ckpt_hmac_file_begin(c->hmac, path, size, NULL);
}

static void stream_data(client *c, const void *p, size_t n) {
        (void)EVP_DigestUpdate(c->sha, p, n);
        if (c->hmac)
                (void)ckpt_hmac_update(c->hmac, p, n, NULL);
        c->bytes += n;
}

static void send_file(client *c, const char *mig, const char *path, uint64_t size, uint32_t mode) {
        proto_msg m = {.type = PROTO_MSG_FILE,
                       .file = {.mig = mig, .path = path, .size = size, .mode = mode}};
        send_msg(c, &m);
        (void)EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL);
        stream_begin_file(c, path, size);
}

static void send_data(client *c, const char *mig, const void *p, size_t n) {
        proto_msg m = {.type = PROTO_MSG_DATA, .data = {.mig = mig, .data = {p, n}}};
        send_msg(c, &m);
        stream_data(c, p, n);
}

static void send_file_end(client *c, const char *mig, bool bad) {
        proto_msg m = {.type = PROTO_MSG_FILE_END, .file_end = {.mig = mig}};
        unsigned len = 0;
        (void)EVP_DigestFinal_ex(c->sha, m.file_end.sha256, &len);
        if (bad)
                m.file_end.sha256[0] ^= 0xff;
        send_msg(c, &m);
        c->files++;
}

static void put_file(client *c, const char *mig, int dfd, const char *src, const char *path) {
        _cleanup_close_ int fd = openat(dfd, src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        _cleanup_free_ uint8_t *buf = malloc(CHUNK);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0 || !buf)
                usage_fail(c, "cannot read %s: %s", src, strerror(errno));
        send_file(c, mig, path, (uint64_t)st.st_size, proto_file_mode(st.st_mode));
        for (;;) {
                ssize_t k = read(fd, buf, CHUNK);
                if (k < 0)
                        usage_fail(c, "cannot read %s: %s", src, strerror(errno));
                if (k == 0)
                        break;
                send_data(c, mig, buf, (size_t)k);
        }
        send_file_end(c, mig, false);
}

/* Every file of the tree in ckpt's canonical order (images/ sorted bytewise,
 * then metadata.json), as the agent sends it. */
static void put_dir(client *c, const char *mig, const char *dir) {
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        ckpt_tree_entry *tree = NULL;
        size_t n = 0;
        nm_error err = {};

        if (dfd < 0)
                usage_fail(c, "cannot open %s", dir);
        if (ckpt_tree_walk(dfd, &tree, &n, &err) < 0)
                usage_fail(c, "cannot walk %s: %s", dir, err.msg);
        for (size_t i = 0; i < n; i++)
                if (tree[i].type == CKPT_ENTRY_FILE)
                        put_file(c, mig, dfd, tree[i].relpath, tree[i].relpath);
        ckpt_tree_entries_free(tree, n);
}

static void cmd_images_done(client *c, char **args, size_t n) {
        const char *hmac = opt(args, n, 2, "hmac"), *files = opt(args, n, 2, "files"),
                   *bytes = opt(args, n, 2, "bytes"), *bind = opt(args, n, 2, "bind");
        char hex[XFER_HMAC_HEX_MAX] = "", binding[XFER_HMAC_HEX_MAX] = "";
        nm_error err = {};

        if (!hmac || strcmp(hmac, "auto") == 0 || strcmp(hmac, "bad") == 0) {
                if (!c->hmac)
                        usage_fail(c, "images-done needs --hmac-key (or hmac=HEX)");
                /* A stream that broke the format (a file cut short, out of
                 * order) has no tree HMAC: zeros stand in, as the receiver
                 * refuses such a stream before it compares. */
                if (ckpt_hmac_final(c->hmac, hex, &err) < 0)
                        memset(hex, '0', CKPT_HMAC_HEX_LEN);
                if (hmac && strcmp(hmac, "bad") == 0)
                        hex[0] = hex[0] == '0' ? '1' : '0';
        } else
                snprintf(hex, sizeof(hex), "%s", hmac);
        /* The binding an honest source sends (bind=auto, with a key): this
         * id, our --node, --target and the offered container; bind=none
         * leaves it out; bind=MIG binds the images to another migration
         * id (a replay). */
        if (c->key && (!bind || strcmp(bind, "none") != 0)) {
                const char *parts[] = {bind && strcmp(bind, "auto") != 0 ? bind : args[1], c->node,
                                       c->target ? c->target : "", c->container};
                if (ckpt_binding(c->key, c->key_len, parts, ARRAY_SIZE(parts), hex, binding) < 0)
                        usage_fail(c, "cannot compute the binding");
        }
        proto_msg m = {.type = PROTO_MSG_IMAGES_DONE,
                       .images_done = {.mig = args[1],
                                       .hmac = hex,
                                       .files = files ? parse_u64(c, files) : c->files,
                                       .bytes = bytes ? parse_u64(c, bytes) : c->bytes,
                                       .binding = binding[0] ? binding : NULL}};
        send_msg(c, &m);
        c->hmac = ckpt_hmac_free(c->hmac);
        c->dir_hashed = false;
        c->files = c->bytes = 0;
}

static void cmd_offer(client *c, char **args, size_t n) {
        const char *container = opt(args, n, 2, "container"), *name = opt(args, n, 2, "name"),
                   *bytes = opt(args, n, 2, "bytes"), *criu = opt(args, n, 2, "criu"),
                   *kernel = opt(args, n, 2, "kernel"), *lazy = opt(args, n, 2, "lazy"),
                   *ps_stream = opt(args, n, 2, "ps_stream"), *md = opt(args, n, 2, "metadata"),
                   *lanes = opt(args, n, 2, "lanes");
        _cleanup_free_ char *mdtext = NULL;
        size_t mdlen = 0;
        struct utsname u;

        uname(&u);
        if (md && md[0] == '@') {
                if (read_file_at(AT_FDCWD, md + 1, PROTO_METADATA_MAX, &mdtext, &mdlen) < 0)
                        usage_fail(c, "cannot read %s", md + 1);
        } else {
                mdtext = strdup(md ? md : "{}");
                mdlen = strlen(mdtext);
        }
        proto_msg m = {.type = PROTO_MSG_OFFER,
                       .offer = {.mig = args[1],
                                 .container_id = container ? container : "0123456789abcdef0123456789abcdef",
                                 .container_name = name ? name : "hostile",
                                 .metadata = {(const uint8_t *)mdtext, mdlen},
                                 .image_bytes = bytes ? parse_u64(c, bytes) : 1 << 20,
                                 .criu_version = criu ? criu : "4.2.1",
                                 .kernel = kernel ? kernel : u.release,
                                 .lazy = lazy && strcmp(lazy, "1") == 0,
                                 .ps_stream = ps_stream && strcmp(ps_stream, "1") == 0,
                                 .has_ps_stream = ps_stream != NULL,
                                 .lanes = lanes ? (uint32_t)parse_u64(c, lanes) : 0,
                                 .has_lanes = lanes != NULL}};
        snprintf(c->container, sizeof(c->container), "%s", m.offer.container_id);
        send_msg(c, &m);
}

/* A never-ending slow stream: one byte of DATA at a time, until the agent
 * says something or hangs up; prints how long that took. */
static void cmd_drip(client *c, const char *mig, uint64_t every) {
        uint64_t start = now_ms();
        uint8_t byte = 'x';

        for (;;) {
                _cleanup_proto_msg_ proto_msg m = {};
                proto_msg d = {.type = PROTO_MSG_DATA, .data = {.mig = mig, .data = {&byte, 1}}};
                _cleanup_free_ uint8_t *buf = NULL;
                size_t len;
                if (proto_encode(&d, &buf, &len, NULL) < 0 || write_all(c, buf, len) < 0)
                        break;
                int r = read_msg(c, every, &m);
                if (r == 1) {
                        printf("drip: answered after %llu ms\n", (unsigned long long)(now_ms() - start));
                        fflush(stdout);
                        /* Leave it for the next expectation. */
                        if (m.type == PROTO_MSG_ERROR)
                                break;
                }
                if (r == 0)
                        break;
                if (now_ms() - start > 10 * c->timeout_ms)
                        fail(c, "the agent kept taking a stream of 1 byte every %llu ms for %llu ms",
                             (unsigned long long)every, (unsigned long long)(now_ms() - start));
        }
        printf("drip: ended after %llu ms\n", (unsigned long long)(now_ms() - start));
        fflush(stdout);
}

/* N OFFER+ABORT cycles (ids PREFIX-1..N) on this one session, as fast as
 * the agent ends each migration: an OFFER while the last one still ends
 * is answered "one migration per session", and sent again. */
static void cmd_cycles(client *c, const char *prefix, uint64_t n) {
        uint64_t start = now_ms(), retries = 0;
        char id[PROTO_ID_MAX + 1];

        for (uint64_t i = 1; i <= n; i++) {
                snprintf(id, sizeof(id), "%s-%llu", prefix, (unsigned long long)i);
                for (;;) {
                        _cleanup_proto_msg_ proto_msg m = {};
                        char *offer[] = {(char *)"offer", id};
                        cmd_offer(c, offer, 2);
                        if (read_msg(c, c->timeout_ms, &m) != 1)
                                fail(c, "cycle %llu: no answer to OFFER %s", (unsigned long long)i, id);
                        if (m.type == PROTO_MSG_ACCEPT)
                                break;
                        if (m.type != PROTO_MSG_ERROR || !strstr(msg_text(&m), "one migration per session"))
                                fail(c, "cycle %llu: OFFER %s answered %s (%s)", (unsigned long long)i, id,
                                     strna(proto_msg_type_to_string(m.type)), msg_text(&m));
                        retries++;
                        sleep_ms(5);
                }
                send_msg(c, &(proto_msg){.type = PROTO_MSG_ABORT, .abort = {.mig = id, .reason = "cycle"}});
        }
        printf("cycles: %llu in %llu ms (%llu offers sent again)\n", (unsigned long long)n,
               (unsigned long long)(now_ms() - start), (unsigned long long)retries);
        fflush(stdout);
}

static void cmd_trickle(client *c, uint64_t every, const char *hex) {
        _cleanup_free_ uint8_t *b = NULL;
        size_t n = unhex(c, hex, &b);
        uint64_t start = c->wrote_ms; /* the last whole frame we sent */

        for (size_t i = 0; i < n; i++) {
                if (write_all(c, b + i, 1) < 0) {
                        printf("trickle: the agent hung up after %zu bytes, %llu ms\n", i,
                               (unsigned long long)(now_ms() - start));
                        fflush(stdout);
                        return;
                }
                sleep_ms(every);
        }
}

/* The next frame is TYPE (with TEXT); with every > 0, a PING goes out
 * every `every` ms while we wait, as a live peer's would. */
static void expect_frame(client *c, char **args, size_t n, uint64_t every) {
        _cleanup_proto_msg_ proto_msg m = {};
        proto_msg_type want = proto_msg_type_from_string(args[0]);
        uint64_t deadline = now_ms() + c->timeout_ms, seq = 0;
        char text[1024] = "";
        int r;

        if (want < 0)
                usage_fail(c, "unknown message type '%s'", args[0]);
        for (size_t i = 1; i < n; i++)
                snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s%s", i > 1 ? " " : "",
                         args[i]);
        for (;;) {
                uint64_t now = now_ms(), left = deadline > now ? deadline - now : 0;
                r = read_msg(c, every && every < left ? every : left, &m);
                if (r != -ETIMEDOUT || !every || now_ms() >= deadline)
                        break;
                send_msg(c, &(proto_msg){.type = PROTO_MSG_PING, .ping = {.seq = ++seq}});
        }
        if (r == 0)
                fail(c, "expected %s, but the agent closed the session", args[0]);
        if (r < 0)
                fail(c, "expected %s, got nothing within %llu ms", args[0],
                     (unsigned long long)c->timeout_ms);
        if (m.type != want)
                fail(c, "expected %s, got %s (%s)", args[0], strna(proto_msg_type_to_string(m.type)),
                     msg_text(&m));
        if (text[0] && !strstr(msg_text(&m), text))
                fail(c, "expected %s saying \"%s\", got \"%s\"", args[0], text, msg_text(&m));
}

static void cmd_expect_closed(client *c, char **args, size_t n) {
        char text[1024] = "";
        bool seen = false;

        for (size_t i = 1; i < n; i++)
                snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s%s", i > 1 ? " " : "",
                         args[i]);
        for (;;) {
                _cleanup_proto_msg_ proto_msg m = {};
                int r = read_msg(c, c->timeout_ms, &m);
                if (r < 0)
                        fail(c, "the agent did not close the session within %llu ms",
                             (unsigned long long)c->timeout_ms);
                if (r == 0)
                        break;
                if (m.type != PROTO_MSG_ERROR)
                        fail(c, "expected the session to end, got %s",
                             strna(proto_msg_type_to_string(m.type)));
                if (text[0] && strstr(m.error.reason, text))
                        seen = true;
        }
        if (text[0] && !seen)
                fail(c, "the session ended without an ERROR saying \"%s\"", text);
        printf("< closed after %llu ms\n", (unsigned long long)(now_ms() - c->wrote_ms));
        fflush(stdout);
}

static void cmd_expect_silence(client *c, uint64_t ms) {
        _cleanup_proto_msg_ proto_msg m = {};
        int r = read_msg(c, ms, &m);
        if (r == 1)
                fail(c, "expected silence, got %s (%s)", strna(proto_msg_type_to_string(m.type)),
                     msg_text(&m));
        if (r == 0)
                fail(c, "expected silence, but the agent closed the session");
}

/* A page frame as an honest source tags it (ps_mac, HMAC-SHA256: the
 * HELLO lists no ps-poly1305), numbered num: a lane's frames are not
 * its session's first. */
static void cmd_ps_pages(client *c, const char *mig, uint64_t num, const char *hex) {
        const char *parts[] = {"pages", mig, c->node, c->target ? c->target : ""};
        ps_mac *mac = NULL;
        uint8_t *b = NULL, skip = 0;
        size_t n = unhex(c, hex, &b);
        proto_msg m = {.type = PROTO_MSG_PS_PAGES, .ps_pages = {.mig = mig, .data = {b, n}}};

        if (!c->key)
                usage_fail(c, "ps-pages needs --hmac-key");
        if (!n || ps_mac_new(c->key, c->key_len, PS_MAC_HMAC_SHA256, parts, ARRAY_SIZE(parts), &mac) < 0)
                usage_fail(c, "ps-pages: no bytes, or no MAC");
        for (uint64_t i = 0; i < num; i++)
                (void)ps_mac_sign(mac, &skip, 1, m.ps_pages.tag);
        if (ps_mac_sign(mac, b, n, m.ps_pages.tag) < 0)
                usage_fail(c, "ps-pages: cannot tag");
        send_msg(c, &m);
        ps_mac_free(mac);
        free(b);
}

static void mig_only(client *c, proto_msg_type t, const char *mig) {
        proto_msg m = {.type = t, .accept = {.mig = mig}};
        send_msg(c, &m);
}

static void run_line(client *c, char *line) {
        char *args[ARGS_MAX], *save = NULL, *tok;
        size_t n = 0;

        for (tok = strtok_r(line, " \t\r\n", &save); tok && n < ARGS_MAX;
             tok = strtok_r(NULL, " \t\r\n", &save))
                args[n++] = tok;
        if (n == 0 || args[0][0] == '#')
                return;
        const char *cmd = args[0];
#define NEED(k)                                                                  \
        do {                                                                     \
                if (n < (k) + 1)                                                 \
                        usage_fail(c, "%s needs %d argument(s)", cmd, (int)(k)); \
        } while (0)

        if (strcmp(cmd, "hello") == 0) {
                const char *role = opt(args, n, 1, "role"), *node = opt(args, n, 1, "node"),
                           *ver = opt(args, n, 1, "version"), *min = opt(args, n, 1, "min");
                const char *fv[HELLO_FEATURES_MAX];
                proto_strv features = hello_features((char *)opt(args, n, 1, "features"), fv);
                proto_msg m = {
                        .type = PROTO_MSG_HELLO,
                        .hello = {.version = ver ? (uint32_t)parse_u64(c, ver) : PROTO_VERSION,
                                  .min_version = min ? (uint32_t)parse_u64(c, min) : PROTO_MIN_VERSION,
                                  .node = node ? node : c->node,
                                  .role = role && strcmp(role, "cli") == 0 ? PROTO_ROLE_CLI
                                                                           : PROTO_ROLE_PEER,
                                  .features = features}};
                send_msg(c, &m);
        } else if (strcmp(cmd, "offer") == 0) {
                NEED(1);
                cmd_offer(c, args, n);
        } else if (strcmp(cmd, "file") == 0) {
                NEED(3);
                const char *mode = opt(args, n, 4, "mode");
                send_file(c, args[1], args[2], parse_u64(c, args[3]),
                          mode ? (uint32_t)parse_u64(c, mode) : 0600);
        } else if (strcmp(cmd, "data") == 0) {
                NEED(2);
                const char *fill = opt(args, n, 3, "fill");
                uint64_t len = parse_u64(c, args[2]);
                _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
                if (!buf)
                        usage_fail(c, "out of memory");
                memset(buf, fill ? (int)parse_u64(c, fill) : 'A', len);
                send_data(c, args[1], buf, len);
        } else if (strcmp(cmd, "file-end") == 0) {
                NEED(1);
                const char *sha = opt(args, n, 2, "sha");
                send_file_end(c, args[1], sha && strcmp(sha, "bad") == 0);
        } else if (strcmp(cmd, "images-done") == 0) {
                NEED(1);
                cmd_images_done(c, args, n);
        } else if (strcmp(cmd, "put") == 0) {
                NEED(3);
                put_file(c, args[1], AT_FDCWD, args[2], args[3]);
        } else if (strcmp(cmd, "put-dir") == 0) {
                NEED(2);
                put_dir(c, args[1], args[2]);
        } else if (strcmp(cmd, "verified") == 0 || strcmp(cmd, "restore") == 0 ||
                   strcmp(cmd, "commit") == 0 || strcmp(cmd, "query") == 0 || strcmp(cmd, "accept") == 0) {
                NEED(1);
                char up[16];
                for (size_t i = 0; i <= strlen(cmd); i++)
                        up[i] = (char)toupper((unsigned char)cmd[i]);
                mig_only(c, proto_msg_type_from_string(up), args[1]);
        } else if (strcmp(cmd, "ps-pages") == 0) {
                NEED(3);
                cmd_ps_pages(c, args[1], parse_u64(c, args[2]), args[3]);
        } else if (strcmp(cmd, "lanes") == 0) {
                NEED(2);
                proto_msg m = {.type = PROTO_MSG_LANES,
                               .lanes = {.mig = args[1], .lane = (uint32_t)parse_u64(c, args[2])}};
                send_msg(c, &m);
        } else if (strcmp(cmd, "abort") == 0) {
                NEED(2);
                proto_msg m = {.type = PROTO_MSG_ABORT, .abort = {.mig = args[1], .reason = args[2]}};
                send_msg(c, &m);
        } else if (strcmp(cmd, "ping") == 0) {
                NEED(1);
                proto_msg m = {.type = PROTO_MSG_PING, .ping = {.seq = parse_u64(c, args[1])}};
                send_msg(c, &m);
        } else if (strcmp(cmd, "node-info-req") == 0) {
                send_msg(c, &(proto_msg){.type = PROTO_MSG_NODE_INFO_REQ});
        } else if (strcmp(cmd, "cycles") == 0) {
                NEED(2);
                cmd_cycles(c, args[1], parse_u64(c, args[2]));
        } else if (strcmp(cmd, "relay") == 0) {
                send_msg(c,
                         &(proto_msg){.type = PROTO_MSG_RELAY, .relay = {.peer = n > 1 ? args[1] : NULL}});
        } else if (strcmp(cmd, "status") == 0) {
                send_msg(c,
                         &(proto_msg){.type = PROTO_MSG_STATUS, .status = {.ref = n > 1 ? args[1] : NULL}});
        } else if (strcmp(cmd, "list") == 0) {
                send_msg(c, &(proto_msg){.type = PROTO_MSG_LIST});
        } else if (strcmp(cmd, "cordon") == 0) {
                NEED(1);
                send_msg(c, &(proto_msg){.type = PROTO_MSG_CORDON,
                                         .cordon = {.on = strcmp(args[1], "on") == 0}});
        } else if (strcmp(cmd, "migrate") == 0) {
                NEED(2);
                send_msg(c, &(proto_msg){.type = PROTO_MSG_MIGRATE,
                                         .migrate = {.container = args[1], .target = args[2]}});
        } else if (strcmp(cmd, "map") == 0) {
                NEED(1);
                cmd_map(c, args, n);
        } else if (strcmp(cmd, "raw") == 0) {
                NEED(1);
                _cleanup_free_ uint8_t *b = NULL;
                char hex[4096] = "";
                for (size_t i = 1; i < n; i++)
                        snprintf(hex + strlen(hex), sizeof(hex) - strlen(hex), "%s", args[i]);
                size_t len = unhex(c, hex, &b);
                send_bytes(c, b, len);
        } else if (strcmp(cmd, "len") == 0) {
                NEED(1);
                uint64_t v = parse_u64(c, args[1]);
                uint8_t hdr[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
                send_bytes(c, hdr, sizeof(hdr));
        } else if (strcmp(cmd, "trickle") == 0) {
                NEED(2);
                char hex[4096] = "";
                for (size_t i = 2; i < n; i++)
                        snprintf(hex + strlen(hex), sizeof(hex) - strlen(hex), "%s", args[i]);
                cmd_trickle(c, parse_u64(c, args[1]), hex);
        } else if (strcmp(cmd, "drip") == 0) {
                NEED(2);
                cmd_drip(c, args[1], parse_u64(c, args[2]));
        } else if (strcmp(cmd, "shutdown") == 0) {
                if (c->in_fd == c->out_fd)
                        (void)shutdown(c->out_fd, SHUT_WR);
                else if (c->out_fd >= 0)
                        close(TAKE_FD(c->out_fd));
        } else if (strcmp(cmd, "sleep") == 0) {
                NEED(1);
                sleep_ms(parse_u64(c, args[1]));
        } else if (strcmp(cmd, "expect") == 0) {
                NEED(1);
                expect_frame(c, args + 1, n - 1, 0);
        } else if (strcmp(cmd, "expect-pinging") == 0) {
                NEED(2);
                expect_frame(c, args + 2, n - 2, parse_u64(c, args[1]));
        } else if (strcmp(cmd, "expect-closed") == 0) {
                cmd_expect_closed(c, args, n);
        } else if (strcmp(cmd, "expect-silence") == 0) {
                NEED(1);
                cmd_expect_silence(c, parse_u64(c, args[1]));
        } else
                usage_fail(c, "unknown command '%s'", cmd);
#undef NEED
}

/* ---- flood ---- */

typedef struct flood_conn {
        int fd;
        proto_reader *rd;
        int state; /* 0 waiting for HELLO, 1 served, 2 refused, 3 answered NODE_INFO */
} flood_conn;

/* Reads what is there; returns the type of the first message, 0 for EOF,
 * -EAGAIN for nothing yet. */
static int flood_read(flood_conn *f) {
        nm_error err = {};
        uint8_t *w;
        size_t room;
        const uint8_t *payload;
        size_t len;

        for (;;) {
                int r = proto_reader_next(f->rd, &payload, &len, &err);
                if (r > 0) {
                        _cleanup_proto_msg_ proto_msg m = {};
                        if (proto_decode(payload, len, &m, &err) < 0)
                                return 0;
                        return m.type;
                }
                if (r < 0 || proto_reader_get_buffer(f->rd, &w, &room, &err) < 0)
                        return 0;
                ssize_t k = read(f->fd, w, room);
                if (k < 0 && errno == EAGAIN)
                        return -EAGAIN;
                if (k <= 0)
                        return 0;
                (void)proto_reader_advance(f->rd, (size_t)k, &err);
        }
}

/* Holds the answered connections open and alive (see --flood above). */
static void flood_hold(flood_conn *f, unsigned n, uint64_t hold_ms, const char *while_file,
                       uint64_t timeout_ms) {
        proto_msg ping = {.type = PROTO_MSG_PING, .ping = {.seq = 1}};
        _cleanup_free_ uint8_t *buf = NULL;
        uint64_t start = now_ms();
        uint8_t sink[4096];
        size_t len;

        if (proto_encode(&ping, &buf, &len, NULL) < 0)
                return;
        for (;;) {
                uint64_t held = now_ms() - start;
                if (while_file ? access(while_file, F_OK) != 0 || held >= timeout_ms : held >= hold_ms)
                        return;
                for (unsigned i = 0; i < n; i++) {
                        if (f[i].state != 3)
                                continue;
                        (void)!write(f[i].fd, buf, len);
                        while (read(f[i].fd, sink, sizeof(sink)) > 0) /* the PONGs */
                                ;
                }
                sleep_ms(200);
        }
}

static int flood(const char *socket_path, unsigned n, uint64_t timeout_ms, uint64_t hold_ms,
                 const char *hold_file, const char *relay) {
        flood_conn *f = calloc(n, sizeof(*f));
        struct pollfd *pfd = calloc(n, sizeof(*pfd));
        unsigned served = 0, refused = 0, answered = 0, connect_failed = 0;
        struct rlimit rl;
        uint64_t deadline;

        if (!f || !pfd)
                return 2;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n + 64) {
                rl.rlim_cur = rl.rlim_max < n + 64 ? rl.rlim_max : n + 64;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
        /* Connect everything first, then say HELLO on each: the agent sees
         * them all at once. */
        for (unsigned i = 0; i < n; i++) {
                f[i].fd = connect_socket(socket_path);
                if (f[i].fd < 0) {
                        connect_failed++;
                        f[i].state = 2;
                        continue;
                }
                (void)proto_reader_new(0, &f[i].rd);
        }
        for (unsigned i = 0; i < n; i++) {
                proto_msg hello = {.type = PROTO_MSG_HELLO,
                                   .hello = {.version = PROTO_VERSION,
                                             .min_version = PROTO_MIN_VERSION,
                                             .node = relay ? relay : "flood",
                                             .role = PROTO_ROLE_PEER,
                                             .features = hello_features(NULL, NULL)}};
                proto_msg first = {.type = PROTO_MSG_RELAY, .relay = {.peer = relay}};
                proto_buf out = {};
                bool ok;
                if (f[i].fd < 0)
                        continue;
                (void)fcntl(f[i].fd, F_SETFL, O_NONBLOCK);
                ok = (!relay || proto_encode_append(&out, &first, NULL) >= 0) &&
                     proto_encode_append(&out, &hello, NULL) >= 0 &&
                     write(f[i].fd, out.data, out.len) == (ssize_t)out.len;
                proto_buf_done(&out);
                if (!ok) {
                        /* Closed by the agent already: refused. */
                        f[i].state = 2;
                        refused++;
                }
        }
        deadline = now_ms() + timeout_ms;
        for (;;) {
                unsigned waiting = 0;
                for (unsigned i = 0; i < n; i++) {
                        pfd[i] = (struct pollfd){.fd = (f[i].state == 0 || f[i].state == 1) ? f[i].fd : -1,
                                                 .events = POLLIN};
                        if (pfd[i].fd >= 0)
                                waiting++;
                }
                if (!waiting || now_ms() >= deadline)
                        break;
                (void)poll(pfd, n, 100);
                for (unsigned i = 0; i < n; i++) {
                        if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        int t = flood_read(&f[i]);
                        if (t == -EAGAIN)
                                continue;
                        if (f[i].state == 0 && t == PROTO_MSG_HELLO) {
                                proto_msg q = {.type = PROTO_MSG_NODE_INFO_REQ};
                                _cleanup_free_ uint8_t *buf = NULL;
                                size_t len;
                                f[i].state = 1;
                                served++;
                                if (proto_encode(&q, &buf, &len, NULL) >= 0)
                                        (void)!write(f[i].fd, buf, len);
                        } else if (f[i].state == 1 && t == PROTO_MSG_NODE_INFO) {
                                f[i].state = 3;
                                answered++;
                        } else if (f[i].state == 0) {
                                f[i].state = 2;
                                refused++;
                        } else {
                                f[i].state = 4; /* served, then lost */
                        }
                }
        }
        printf("served=%u refused=%u answered=%u connect_failed=%u pending=%u\n", served,
               refused + connect_failed, answered, connect_failed, n - served - refused - connect_failed);
        fflush(stdout);
        flood_hold(f, n, hold_ms, hold_file, timeout_ms);
        for (unsigned i = 0; i < n; i++) {
                if (f[i].fd >= 0)
                        close(f[i].fd);
                proto_reader_free(f[i].rd);
        }
        free(f);
        free(pfd);
        return 0;
}

/* ---- main ---- */

static void finish_child(client *c) {
        int status;
        if (c->child <= 0)
                return;
        for (int i = 0; i < 50; i++) {
                if (waitpid(c->child, &status, WNOHANG) == c->child)
                        return;
                sleep_ms(100);
        }
        (void)kill(c->child, SIGTERM);
        (void)waitpid(c->child, &status, 0);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                {"socket", required_argument, NULL, 's'},   {"timeout", required_argument, NULL, 't'},
                {"hmac-key", required_argument, NULL, 'k'}, {"script", required_argument, NULL, 'f'},
                {"flood", required_argument, NULL, 'n'},    {"hold", required_argument, NULL, 'H'},
                {"relay", required_argument, NULL, 'R'},    {"node", required_argument, NULL, 'N'},
                {"target", required_argument, NULL, 'T'},   {},
        };
        client c = {.in_fd = -EBADF, .out_fd = -EBADF, .timeout_ms = 10000, .node = "hostile"};
        const char *sock = NULL, *script = NULL, *keyfile = NULL, *hold_file = NULL, *relay = NULL;
        unsigned flood_n = 0;
        uint64_t hold = 0;
        char line[65536];
        FILE *in = stdin;
        int o;

        while ((o = getopt_long(argc, argv, "+", options, NULL)) >= 0) {
                switch (o) {
                case 's': sock = optarg; break;
                case 't': c.timeout_ms = parse_u64(&c, optarg); break;
                case 'k': keyfile = optarg; break;
                case 'f': script = optarg; break;
                case 'n': flood_n = (unsigned)parse_u64(&c, optarg); break;
                case 'R': relay = optarg; break;
                case 'N': c.node = optarg; break;
                case 'T': c.target = optarg; break;
                case 'H':
                        if (optarg[0] == '@')
                                hold_file = optarg + 1;
                        else
                                hold = parse_u64(&c, optarg);
                        break;
                default: return 2;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        if (flood_n) {
                if (!sock) {
                        fprintf(stderr, "nm-peer-client: --flood needs --socket\n");
                        return 2;
                }
                return flood(sock, flood_n, c.timeout_ms, hold, hold_file, relay);
        }
        if (!sock == !(optind < argc)) {
                fprintf(stderr, "usage: nm-peer-client [--socket PATH | -- COMMAND...] [--timeout MS] "
                                "[--hmac-key FILE] [--script FILE]\n");
                return 2;
        }
        if (keyfile && read_file_at(AT_FDCWD, keyfile, 4096, (char **)&c.key, &c.key_len) < 0) {
                fprintf(stderr, "nm-peer-client: cannot read %s\n", keyfile);
                return 2;
        }
        if (script && !(in = fopen(script, "re"))) {
                fprintf(stderr, "nm-peer-client: cannot open %s\n", script);
                return 2;
        }
        if (sock) {
                int fd = connect_socket(sock);
                if (fd < 0) {
                        fprintf(stderr, "nm-peer-client: cannot connect to %s: %s\n", sock, strerror(-fd));
                        return 2;
                }
                c.in_fd = c.out_fd = fd;
                c.wrote_ms = now_ms();
        } else if (spawn(&c, argv + optind) < 0) {
                fprintf(stderr, "nm-peer-client: cannot run %s\n", argv[optind]);
                return 2;
        }
        (void)fcntl(c.out_fd, F_SETFL, O_NONBLOCK);
        c.sha = EVP_MD_CTX_new();
        if (!c.sha || proto_reader_new(0, &c.rd) < 0)
                return 2;
        while (fgets(line, sizeof(line), in)) {
                c.line++;
                printf("> %s", line);
                fflush(stdout);
                run_line(&c, line);
        }
        if (in != stdin)
                fclose(in);
        if (c.out_fd >= 0 && c.out_fd != c.in_fd)
                close(c.out_fd);
        close(c.in_fd);
        finish_child(&c);
        proto_reader_free(c.rd);
        EVP_MD_CTX_free(c.sha);
        ckpt_hmac_free(c.hmac);
        free(c.key);
        return 0;
}
