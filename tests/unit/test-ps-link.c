/* SPDX-License-Identifier: Apache-2.0 */
/* A page stream's two ends (ps_link) on one loop, with the test in the
 * place of both CRIUs (the far ends of the socketpairs) and of the peer
 * session (the frames the source's end hands over, kept, and fed to the
 * target's as the test likes). Bytes and replies get through intact and the
 * end frame closes the stream; a flipped, dropped, reordered, replayed or
 * foreign frame, or one after the end, is refused, and the end whose CRIU
 * would have read it gets nothing but the poison that makes CRIU fail. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "mig.h"
#include "peer.h"
#include "ps-link.h"
#include "ps-owed.h"
#include "ps-relay.h"

#define FRAMES_MAX 512u
/* A hang guard, not a timing check: loop turns of at most 5 ms each. */
#define SPIN_MAX 20000

static const uint8_t key[32] = "0123456789abcdef0123456789abcdef";
static const ps_link_binding bind_a = {.mig = "mig-1", .source = "node1", .target = "node2"};
static const ps_link_binding bind_b = {.mig = "mig-2", .source = "node1", .target = "node2"};
static const ps_link_binding bind_poly = {
        .mig = "mig-1", .source = "node1", .target = "node2", .mac = PS_MAC_POLY1305};

typedef struct frame {
        uint8_t *buf;
        size_t n;
        uint32_t size; /* compressed: the bytes it stands for */
        uint8_t tag[PS_MAC_LEN];
} frame;

typedef struct pair {
        uv_loop_t loop;
        ps_link *s, *t;
        int s_fd, t_fd; /* the test's ends, in the place of the dump and the page server */
        frame pages[FRAMES_MAX];
        size_t n_pages;
        size_t page_bytes;
        uint8_t end_tag[PS_MAC_LEN];
        bool ended;
        int reply_rc;
        size_t replies;
        int broken;
        int broken_status;
        char broken_why[160];
        int drained;
        int overdue;      /* times the source's overdue callback ran */
        int overdue_keep; /* ... of which it says the peer still takes bytes */
} pair;

static void s_frame(ps_link *l, const void *buf, size_t n, uint32_t size,
                    const uint8_t tag[static PS_MAC_LEN], void *ud) {
        pair *p = ud;
        frame *f = &p->pages[p->n_pages++];
        (void)l;

        assert_true(p->n_pages <= FRAMES_MAX);
        f->buf = malloc(n);
        assert_non_null(f->buf);
        memcpy(f->buf, buf, n);
        f->n = n;
        f->size = size;
        memcpy(f->tag, tag, PS_MAC_LEN);
        p->page_bytes += size ? size : n;
}

static void s_end(ps_link *l, const uint8_t tag[static PS_MAC_LEN], void *ud) {
        pair *p = ud;
        (void)l;
        memcpy(p->end_tag, tag, PS_MAC_LEN);
        p->ended = true;
}

/* The page server's replies go straight back, as the session carries them. */
static void t_frame(ps_link *l, const void *buf, size_t n, uint32_t size,
                    const uint8_t tag[static PS_MAC_LEN], void *ud) {
        pair *p = ud;
        (void)l;
        p->reply_rc = ps_link_feed(p->s, buf, n, size, tag);
        p->replies++;
}

static void on_broken(ps_link *l, int status, const char *why, void *ud) {
        pair *p = ud;
        (void)l;
        p->broken++;
        p->broken_status = status;
        snprintf(p->broken_why, sizeof(p->broken_why), "%s", why);
}

static bool on_overdue(ps_link *l, void *ud) {
        pair *p = ud;
        (void)l;
        return ++p->overdue <= p->overdue_keep;
}

static void on_drained(ps_link *l, void *ud) {
        pair *p = ud;
        (void)l;
        p->drained++;
}

static const ps_link_ops s_ops = {
        .frame = s_frame, .end = s_end, .broken = on_broken, .overdue = on_overdue};
static const ps_link_ops t_ops = {.frame = t_frame, .broken = on_broken, .drained = on_drained};

static pair *pair_new2(const ps_link_binding *source_binding, const ps_link_binding *target_binding) {
        pair *p = calloc(1, sizeof(*p));

        assert_non_null(p);
        assert_int_equal(uv_loop_init(&p->loop), 0);
        assert_int_equal(ps_link_new(&p->loop, PS_LINK_SOURCE, key, sizeof(key), source_binding, &s_ops, p,
                                     &p->s_fd, &p->s),
                         0);
        assert_int_equal(ps_link_new(&p->loop, PS_LINK_TARGET, key, sizeof(key), target_binding, &t_ops, p,
                                     &p->t_fd, &p->t),
                         0);
        return p;
}

static pair *pair_new(const ps_link_binding *target_binding) {
        return pair_new2(&bind_a, target_binding);
}

static void pair_free(pair *p) {
        p->s = ps_link_free(p->s);
        p->t = ps_link_free(p->t);
        if (p->s_fd >= 0)
                close(p->s_fd);
        if (p->t_fd >= 0)
                close(p->t_fd);
        (void)uv_run(&p->loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&p->loop), 0);
        for (size_t i = 0; i < p->n_pages; i++)
                free(p->pages[i].buf);
        free(p);
}

static void turn(pair *p) {
        (void)uv_run(&p->loop, UV_RUN_NOWAIT);
        (void)poll(NULL, 0, 5);
}

/* The dump writes n bytes; returns once the source's end framed them all. */
static void dump_writes_n(pair *p, const void *buf, size_t n) {
        size_t want = p->page_bytes + n;
        assert_int_equal(write(p->s_fd, buf, n), (ssize_t)n);
        for (int i = 0; i < SPIN_MAX && p->page_bytes < want; i++)
                turn(p);
        assert_int_equal(p->page_bytes, want);
}

static void dump_writes(pair *p, const char *s) {
        dump_writes_n(p, s, strlen(s));
}

/* The dump closes its socket, the stream's end: returns once the source's
 * end has signed it (p->end_tag). */
static void dump_closes(pair *p) {
        close(p->s_fd);
        p->s_fd = -1;
        for (int i = 0; i < SPIN_MAX && !p->ended; i++)
                turn(p);
        assert_true(p->ended);
}

/* Reads exactly n bytes at fd (our CRIU's end), or what came before EOF. */
static size_t criu_reads(pair *p, int fd, char *buf, size_t n) {
        size_t got = 0;
        for (int i = 0; i < SPIN_MAX && got < n; i++) {
                ssize_t k = recv(fd, buf + got, n - got, MSG_DONTWAIT);
                if (k == 0)
                        break;
                if (k > 0)
                        got += (size_t)k;
                else
                        turn(p);
        }
        return got;
}

/* What a CRIU whose link broke reads: one byte of a command, then EOF. */
static void assert_poisoned(pair *p, int fd) {
        char buf[64];
        assert_int_equal(criu_reads(p, fd, buf, sizeof(buf)), 1);
        assert_int_equal(buf[0], 0);
}

static int feed(pair *p, size_t i) {
        return ps_link_feed(p->t, p->pages[i].buf, p->pages[i].n, p->pages[i].size, p->pages[i].tag);
}

static void test_pages_replies_end(void **state) {
        pair *p = pair_new(&bind_a);
        char buf[64];
        (void)state;

        dump_writes(p, "PAGES-ONE ");
        dump_writes(p, "PAGES-TWO ");
        dump_writes(p, "FLUSH");
        for (size_t i = 0; i < p->n_pages; i++)
                assert_int_equal(feed(p, i), 0);
        assert_int_equal(criu_reads(p, p->t_fd, buf, 25), 25);
        assert_memory_equal(buf, "PAGES-ONE PAGES-TWO FLUSH", 25);

        /* The page server answers the flush; the dump reads it. */
        assert_int_equal(write(p->t_fd, "OK", 2), 2);
        assert_int_equal(criu_reads(p, p->s_fd, buf, 2), 2);
        assert_memory_equal(buf, "OK", 2);
        assert_int_equal(p->reply_rc, 0);

        /* The dump closes its socket: that is the stream's end. */
        dump_closes(p);
        assert_int_equal(ps_link_get_state(p->s), PS_LINK_ENDED);
        assert_int_equal(ps_link_get_state(p->t), PS_LINK_OPEN);
        assert_int_equal(ps_link_feed_end(p->t, p->end_tag), 0);
        assert_int_equal(ps_link_get_state(p->t), PS_LINK_ENDED);

        assert_int_equal(ps_link_frames_out(p->s), p->n_pages);
        assert_int_equal(ps_link_frames_in(p->t), p->n_pages);
        assert_int_equal(ps_link_bytes_out(p->s), 25);
        assert_int_equal(ps_link_bytes_in(p->t), 25);
        assert_int_equal(ps_link_bytes_out(p->t), 2);
        assert_int_equal(ps_link_bytes_in(p->s), 2);
        assert_int_equal(ps_link_frames_in(p->s), p->replies);
        assert_int_equal(p->broken, 0);
        pair_free(p);
}

static void test_flipped_frame(void **state) {
        pair *p = pair_new(&bind_a);
        (void)state;

        dump_writes(p, "PAGES-ONE");
        dump_writes(p, "PAGES-TWO");
        p->pages[0].buf[3] ^= 1;
        assert_int_equal(feed(p, 0), -EBADMSG);
        assert_int_equal(ps_link_get_state(p->t), PS_LINK_BROKEN);
        /* Nothing after a failure is believed, not even a good frame. */
        assert_int_equal(feed(p, 1), -EPIPE);
        assert_poisoned(p, p->t_fd);
        pair_free(p);
}

static void test_dropped_or_reordered_frame(void **state) {
        pair *p = pair_new(&bind_a);
        (void)state;

        dump_writes(p, "PAGES-ONE");
        dump_writes(p, "PAGES-TWO");
        assert_int_equal(feed(p, 1), -EBADMSG);
        assert_poisoned(p, p->t_fd);
        pair_free(p);

        /* The first frame alone, then the end: the end counts the frames. */
        p = pair_new(&bind_a);
        dump_writes(p, "PAGES-ONE");
        dump_writes(p, "PAGES-TWO");
        assert_int_equal(feed(p, 0), 0);
        dump_closes(p);
        assert_int_equal(ps_link_feed_end(p->t, p->end_tag), -EBADMSG);
        assert_int_equal(ps_link_get_state(p->t), PS_LINK_BROKEN);
        pair_free(p);
}

static void test_foreign_frames(void **state) {
        pair *p = pair_new(&bind_b);
        uint8_t tag[PS_MAC_LEN];
        (void)state;

        /* Another migration's pages. */
        dump_writes(p, "PAGES-ONE");
        assert_int_equal(feed(p, 0), -EBADMSG);
        assert_poisoned(p, p->t_fd);
        pair_free(p);

        /* A page frame sent back to the source as a reply: the directions
         * are bound apart. */
        p = pair_new(&bind_a);
        dump_writes(p, "PAGES-ONE");
        assert_int_equal(ps_link_feed(p->s, p->pages[0].buf, p->pages[0].n, 0, p->pages[0].tag), -EBADMSG);
        assert_int_equal(ps_link_get_state(p->s), PS_LINK_BROKEN);
        assert_poisoned(p, p->s_fd);
        /* A source has no end to check. */
        memset(tag, 0, sizeof(tag));
        assert_int_equal(ps_link_feed_end(p->s, tag), -EPIPE);
        pair_free(p);
}

/* Compressible pages: log-like text, as a mixed heap holds. */
static void fill_text(char *buf, size_t n) {
        size_t at = 0;
        for (unsigned i = 0; at < n; i++) {
                int k = snprintf(buf + at, n - at, "{\"seq\": %u, \"user\": \"u%u\", \"status\": \"ok\"}\n",
                                 i, i % 7);
                at += k > 0 ? (size_t)k : n;
        }
}

static pair *pair_zstd(ps_link_zstd source, ps_link_zstd target) {
        pair *p = pair_new(&bind_a);
        assert_int_equal(ps_link_set_zstd(p->s, source, -2), 0);
        assert_int_equal(ps_link_set_zstd(p->t, target, -2), 0);
        return p;
}

/* Under either tagging, compressed frames arrive as the bytes the dump
 * wrote, and count as those. */
static void test_compressed_round_trip(void **state) {
        static const ps_link_zstd modes[] = {PS_ZSTD_WIRE, PS_ZSTD_RAW};
        static char text[64 * 1024], got[sizeof(text)];
        (void)state;

        fill_text(text, sizeof(text));
        for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
                pair *p = pair_zstd(modes[m], modes[m]);
                size_t wire = 0;
                dump_writes_n(p, text, sizeof(text));
                for (size_t i = 0; i < p->n_pages; i++) {
                        assert_true(p->pages[i].size > p->pages[i].n); /* it paid */
                        wire += p->pages[i].n;
                        assert_int_equal(feed(p, i), 0);
                }
                assert_true(wire < sizeof(text) / 4);
                assert_int_equal(criu_reads(p, p->t_fd, got, sizeof(got)), sizeof(got));
                assert_memory_equal(got, text, sizeof(text));
                assert_int_equal(ps_link_bytes_out(p->s), sizeof(text));
                assert_int_equal(ps_link_bytes_in(p->t), sizeof(text));
                /* Bytes that do not shrink leave plain. */
                dump_writes(p, "PAGES");
                assert_int_equal(p->pages[p->n_pages - 1].size, 0);
                assert_int_equal(feed(p, p->n_pages - 1), 0);
                pair_free(p);
        }
}

/* Bytes zstd cannot shrink: xorshift, different for each seed. */
static void fill_random(uint8_t *buf, size_t n, uint64_t seed) {
        uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf[i] = (uint8_t)(x >> 24);
        }
}

/* Incompressible frames: after each large one that did not shrink, the
 * next 1, 2, 4... large ones leave untried; a small frame is tried and
 * counts for nothing; once a try pays again, every frame is tried. Every
 * byte arrives as written, untried or not. */
static void test_zstd_backoff(void **state) {
        static uint8_t rnd[12][PS_ZSTD_PROBE_MIN], got[sizeof(rnd) + 5];
        static char text[10][PS_ZSTD_PROBE_MIN], got_text[sizeof(text)];
        pair *p = pair_zstd(PS_ZSTD_WIRE, PS_ZSTD_WIRE);
        (void)state;

        for (size_t i = 0; i < 12; i++) {
                fill_random(rnd[i], sizeof(rnd[i]), i + 1);
                dump_writes_n(p, rnd[i], sizeof(rnd[i]));
                assert_int_equal(p->n_pages, i + 1 + (i > 5)); /* one frame per write */
                if (i == 5)
                        dump_writes(p, "PAGES");
        }
        /* Tried: 0, 2, 5, the small one, 10 (each failure doubling the wait). */
        assert_int_equal(ps_link_frames_untried(p->s), 8);
        for (size_t i = 0; i < p->n_pages; i++) {
                assert_int_equal(p->pages[i].size, 0);
                assert_int_equal(feed(p, i), 0);
        }
        assert_int_equal(criu_reads(p, p->t_fd, (char *)got, sizeof(got)), sizeof(got));
        assert_memory_equal(got, rnd, 6 * sizeof(rnd[0]));
        assert_memory_equal(got + 6 * sizeof(rnd[0]), "PAGES", 5);
        assert_memory_equal(got + 6 * sizeof(rnd[0]) + 5, rnd[6], 6 * sizeof(rnd[0]));

        /* Text now: the 7 frames the last wait still holds go untried, the
         * next try pays, and so does every one after. */
        for (size_t i = 0; i < 10; i++) {
                fill_text(text[i], sizeof(text[i]));
                dump_writes_n(p, text[i], sizeof(text[i]));
        }
        assert_int_equal(p->n_pages, 13 + 10);
        assert_int_equal(ps_link_frames_untried(p->s), 8 + 7);
        for (size_t i = 13; i < p->n_pages; i++) {
                assert_int_equal(p->pages[i].size != 0, i >= 13 + 7);
                assert_int_equal(feed(p, i), 0);
        }
        assert_int_equal(criu_reads(p, p->t_fd, got_text, sizeof(got_text)), sizeof(got_text));
        assert_memory_equal(got_text, text, sizeof(text));
        pair_free(p);
}

/* Tagged as it travels: a bent compressed byte fails the check (before a
 * decompressor sees it); a frame tagged one way fails a target that checks
 * the other; a compressed frame where none was agreed, or one whose size
 * is not its content's, is refused with the reason. */
static void test_compressed_refused(void **state) {
        static char text[16 * 1024];
        pair *p;
        (void)state;

        fill_text(text, sizeof(text));
        p = pair_zstd(PS_ZSTD_WIRE, PS_ZSTD_WIRE);
        dump_writes_n(p, text, sizeof(text));
        p->pages[0].buf[p->pages[0].n / 2] ^= 0x20;
        assert_int_equal(feed(p, 0), -EBADMSG);
        assert_poisoned(p, p->t_fd);
        pair_free(p);

        /* Its zstd magic bent too: still the tag that refuses it, not the
         * decompressor, which never saw it. */
        p = pair_zstd(PS_ZSTD_WIRE, PS_ZSTD_WIRE);
        dump_writes_n(p, text, sizeof(text));
        p->pages[0].buf[0] ^= 0xff;
        assert_int_equal(feed(p, 0), -EBADMSG);
        pair_free(p);

        p = pair_zstd(PS_ZSTD_WIRE, PS_ZSTD_RAW);
        dump_writes_n(p, text, sizeof(text));
        assert_int_equal(feed(p, 0), -EBADMSG);
        pair_free(p);
        p = pair_zstd(PS_ZSTD_RAW, PS_ZSTD_WIRE);
        dump_writes_n(p, text, sizeof(text));
        assert_int_equal(feed(p, 0), -EBADMSG);
        pair_free(p);

        p = pair_zstd(PS_ZSTD_WIRE, PS_ZSTD_OFF);
        dump_writes_n(p, text, sizeof(text));
        assert_int_equal(feed(p, 0), -EPROTO);
        assert_non_null(strstr(ps_link_why(p->t), "agreed on none"));
        assert_poisoned(p, p->t_fd);
        pair_free(p);

        p = pair_zstd(PS_ZSTD_WIRE, PS_ZSTD_RAW);
        dump_writes_n(p, text, sizeof(text));
        p->pages[0].size--; /* RAW decompresses first: the size is checked */
        assert_int_equal(feed(p, 0), -EPROTO);
        assert_non_null(strstr(ps_link_why(p->t), "ZDATA"));
        pair_free(p);
}

/* Both agents pick the tagging from the two HELLOs; ours lists every
 * feature, so a peer's list decides. */
static void test_zstd_from_hellos(void **state) {
        proto_strv ours = peer_features_offered();
        proto_hello h = {.features = ours};
        (void)state;

        assert_true(peer_features_of(&h) & PEER_FEATURE_PS_ZTAG);
        assert_int_equal(mig_pages_zstd(peer_features_of(&h)), PS_ZSTD_WIRE);
        assert_int_equal(mig_pages_zstd(PEER_FEATURE_ZSTD), PS_ZSTD_RAW); /* an older peer */
        assert_int_equal(mig_pages_zstd(PEER_FEATURE_PS_ZTAG), PS_ZSTD_OFF);
        assert_int_equal(mig_pages_zstd(0), PS_ZSTD_OFF);
        assert_int_equal(mig_pages_mac(peer_features_of(&h)), PS_MAC_POLY1305);
        assert_int_equal(mig_pages_mac(PEER_FEATURE_ZSTD | PEER_FEATURE_PS_ZTAG), PS_MAC_HMAC_SHA256);
}

/* Under Poly1305 on both ends, compressed and plain frames cross and the
 * end checks; a target that checks HMAC-SHA256 refuses the first frame,
 * and one under Poly1305 refuses a frame whose tag's zero half is not. */
static void test_poly1305(void **state) {
        static char text[64 * 1024], got[sizeof(text)];
        pair *p;
        (void)state;

        fill_text(text, sizeof(text));
        p = pair_new2(&bind_poly, &bind_poly);
        assert_int_equal(ps_link_set_zstd(p->s, PS_ZSTD_WIRE, -2), 0);
        assert_int_equal(ps_link_set_zstd(p->t, PS_ZSTD_WIRE, -2), 0);
        dump_writes_n(p, text, sizeof(text));
        dump_writes(p, "PAGES");
        for (size_t i = 0; i < p->n_pages; i++)
                assert_int_equal(feed(p, i), 0);
        assert_true(p->pages[0].size > 0 && p->pages[p->n_pages - 1].size == 0); /* both kinds */
        assert_int_equal(criu_reads(p, p->t_fd, got, sizeof(got)), sizeof(got));
        assert_memory_equal(got, text, sizeof(text));
        dump_closes(p);
        assert_int_equal(ps_link_feed_end(p->t, p->end_tag), 0);
        assert_int_equal(ps_link_get_state(p->t), PS_LINK_ENDED);
        pair_free(p);

        p = pair_new2(&bind_poly, &bind_a);
        dump_writes(p, "PAGES-ONE");
        assert_int_equal(feed(p, 0), -EBADMSG);
        assert_poisoned(p, p->t_fd);
        pair_free(p);

        p = pair_new2(&bind_poly, &bind_poly);
        dump_writes(p, "PAGES-ONE");
        p->pages[0].tag[PS_MAC_LEN - 1] = 1;
        assert_int_equal(feed(p, 0), -EBADMSG);
        assert_poisoned(p, p->t_fd);
        pair_free(p);
}

static void test_frame_after_end(void **state) {
        pair *p = pair_new(&bind_a);
        char buf[16];
        (void)state;

        dump_writes(p, "PAGES-ONE");
        assert_int_equal(feed(p, 0), 0);
        assert_int_equal(criu_reads(p, p->t_fd, buf, 9), 9);
        dump_closes(p);
        assert_int_equal(ps_link_feed_end(p->t, p->end_tag), 0);
        /* Replayed after the end: refused, and the end not taken twice. */
        assert_int_equal(feed(p, 0), -EPIPE);
        assert_int_equal(ps_link_get_state(p->t), PS_LINK_BROKEN);
        assert_int_equal(ps_link_feed_end(p->t, p->end_tag), -EPIPE);
        pair_free(p);
}

/* A peer faster than the page server: the target's end says stop once more
 * than PS_RELAY_HIGH waits for its CRIU, and drained once CRIU took it. */
static void test_full_and_drained(void **state) {
        pair *p = pair_new(&bind_a);
        static char chunk[64 * 1024];
        size_t total = PS_RELAY_HIGH + 1024u * 1024u, fed = 0, got = 0;
        char *buf = malloc(total);
        (void)state;

        assert_non_null(buf);
        memset(chunk, 'p', sizeof(chunk));
        for (size_t sent = 0; sent < total;) {
                ssize_t k = send(p->s_fd, chunk, sizeof(chunk), MSG_DONTWAIT);
                if (k > 0)
                        sent += (size_t)k;
                turn(p);
        }
        for (int i = 0; i < SPIN_MAX && p->page_bytes < total; i++)
                turn(p);
        assert_int_equal(p->page_bytes, total);
        for (size_t i = 0; i < p->n_pages; i++) {
                assert_int_equal(feed(p, i), 0);
                fed += p->pages[i].n;
                if (ps_link_full(p->t))
                        break;
        }
        assert_true(ps_link_full(p->t));
        assert_true(fed > PS_RELAY_HIGH);
        assert_int_equal(p->drained, 0);
        got = criu_reads(p, p->t_fd, buf, fed);
        assert_int_equal(got, fed);
        for (int i = 0; i < SPIN_MAX && p->drained == 0; i++)
                turn(p);
        assert_int_equal(p->drained, 1);
        assert_false(ps_link_full(p->t));
        free(buf);
        pair_free(p);
}

/* A request header as CRIU 4.x's dump writes it (ps-owed.h). */
static void psi(uint8_t b[static PS_OWED_HDR_LEN], uint32_t cmd, uint64_t nr_pages, uint64_t vaddr,
                uint64_t dst_id) {
        memset(b, 0, PS_OWED_HDR_LEN);
        memcpy(b, &cmd, sizeof(cmd));
        memcpy(b + 8, &nr_pages, 8);
        memcpy(b + 16, &vaddr, 8);
        memcpy(b + 24, &dst_id, 8);
}

#define OPEN2 4u
#define ADD_F 6u
#define CLOSE 0x1023u
#define FORCE_CLOSE 0x1024u
#define PRESENT (4u << 16)
#define PARENT_ONLY (1u << 16)
#define PID_PAGEMAP(id) (((uint64_t)(id) << 8) | 1u)

/* Feeds n bytes in pieces of at most step (headers and pages split
 * anywhere, as a socket may). */
static void request_in_steps(ps_owed *o, const uint8_t *b, size_t n, size_t step) {
        for (size_t off = 0; off < n; off += step)
                ps_owed_request(o, b + off, n - off < step ? n - off : step);
}

/* A dump's whole session: an open per pagemap (a byte each), pages, a hole,
 * the close (a 32-bit status); pages that look like a close are pages. */
static void test_owed_follows_a_dump(void **state) {
        const long page = sysconf(_SC_PAGESIZE);
        const size_t steps[] = {1, 7, 32, 4096, 1 << 20};
        (void)state;

        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
                uint8_t hdr[PS_OWED_HDR_LEN];
                uint8_t *pages = calloc(3, (size_t)page);
                ps_owed o;

                assert_non_null(pages);
                psi(pages + page, CLOSE, 0, 0, 0); /* a page's bytes, not a request */
                ps_owed_init(&o);
                psi(hdr, OPEN2, 0, 0, PID_PAGEMAP(7));
                request_in_steps(&o, hdr, sizeof(hdr), steps[s]);
                assert_int_equal(ps_owed_bytes(&o), 1);
                ps_owed_reply(&o, 1);
                assert_int_equal(ps_owed_bytes(&o), 0);
                psi(hdr, ADD_F | PRESENT, 3, 0x400000, PID_PAGEMAP(7));
                request_in_steps(&o, hdr, sizeof(hdr), steps[s]);
                request_in_steps(&o, pages, 3 * (size_t)page, steps[s]);
                assert_int_equal(ps_owed_bytes(&o), 0);
                psi(hdr, ADD_F | PARENT_ONLY, 2, 0x500000, PID_PAGEMAP(7));
                request_in_steps(&o, hdr, sizeof(hdr), steps[s]);
                psi(hdr, FORCE_CLOSE, 0, 0, 0);
                request_in_steps(&o, hdr, sizeof(hdr), steps[s]);
                assert_int_equal(ps_owed_bytes(&o), 4);
                ps_owed_reply(&o, 3);
                assert_int_equal(ps_owed_bytes(&o), 1);
                ps_owed_reply(&o, 1);
                assert_int_equal(ps_owed_bytes(&o), 0);
                assert_int_equal(o.state, PS_OWED_FOLLOWING);
                assert_int_equal(o.asked, 2);
                free(pages);
        }
}

/* What cannot be read loses the reading for good, and nothing is owed. */
static void test_owed_lost(void **state) {
        uint8_t hdr[PS_OWED_HDR_LEN], b[24] = {0};
        uint32_t cmd = OPEN2;
        uint64_t dst = PID_PAGEMAP(1);
        ps_owed o;
        (void)state;

        ps_owed_init(&o);
        psi(hdr, 99, 0, 0, 0);
        ps_owed_request(&o, hdr, sizeof(hdr));
        assert_int_equal(o.state, PS_OWED_LOST);
        psi(hdr, CLOSE, 0, 0, 0);
        ps_owed_request(&o, hdr, sizeof(hdr));
        assert_int_equal(ps_owed_bytes(&o), 0);

        /* A reply nobody asked for. */
        ps_owed_init(&o);
        psi(hdr, OPEN2, 0, 0, PID_PAGEMAP(1));
        ps_owed_request(&o, hdr, sizeof(hdr));
        ps_owed_reply(&o, 2);
        assert_int_equal(o.state, PS_OWED_LOST);
        assert_int_equal(ps_owed_bytes(&o), 0);

        /* An older CRIU's 24-byte header: its open, read as a 32-byte one,
         * takes the next request's first bytes for a pagemap it cannot be. */
        ps_owed_init(&o);
        memcpy(b, &cmd, sizeof(cmd));
        memcpy(b + 16, &dst, 8);
        ps_owed_request(&o, b, sizeof(b));
        psi(hdr, ADD_F | PRESENT, 1, 0x400000, dst);
        ps_owed_request(&o, hdr, 24);
        assert_int_equal(o.state, PS_OWED_LOST);
        assert_int_equal(ps_owed_bytes(&o), 0);

        /* Unknown flags, an absurd length, a close with arguments. */
        ps_owed_init(&o);
        psi(hdr, ADD_F | (0x80u << 16), 1, 0, dst);
        ps_owed_request(&o, hdr, sizeof(hdr));
        assert_int_equal(o.state, PS_OWED_LOST);
        ps_owed_init(&o);
        psi(hdr, ADD_F | PRESENT, UINT64_MAX / 2, 0, dst);
        ps_owed_request(&o, hdr, sizeof(hdr));
        assert_int_equal(o.state, PS_OWED_LOST);
        ps_owed_init(&o);
        psi(hdr, CLOSE, 1, 0, 0);
        ps_owed_request(&o, hdr, sizeof(hdr));
        assert_int_equal(o.state, PS_OWED_LOST);
}

/* The dump writes one request header; returns once its end framed it. */
static void dump_requests(pair *p, uint32_t cmd, uint64_t dst_id) {
        uint8_t hdr[PS_OWED_HDR_LEN];
        size_t want = p->page_bytes + sizeof(hdr);

        psi(hdr, cmd, 0, 0, dst_id);
        assert_int_equal(write(p->s_fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
        for (int i = 0; i < SPIN_MAX && p->page_bytes < want; i++)
                turn(p);
        assert_int_equal(p->page_bytes, want);
}

/* The source's end counts what its dump waits for, and the target's
 * replies pay it off. */
static void test_replies_owed(void **state) {
        pair *p = pair_new(&bind_a);
        char buf[PS_OWED_HDR_LEN];
        (void)state;

        ps_link_set_reply_timeout(p->s, 3600u * 1000u); /* never, in this test */
        dump_requests(p, OPEN2, PID_PAGEMAP(1));
        assert_int_equal(ps_link_replies_owed(p->s), 1);
        assert_int_equal(feed(p, 0), 0);
        assert_int_equal(criu_reads(p, p->t_fd, buf, PS_OWED_HDR_LEN), PS_OWED_HDR_LEN);
        assert_int_equal(write(p->t_fd, "\0", 1), 1);
        assert_int_equal(criu_reads(p, p->s_fd, buf, 1), 1);
        assert_int_equal(ps_link_replies_owed(p->s), 0);
        dump_requests(p, FORCE_CLOSE, 0);
        assert_int_equal(ps_link_replies_owed(p->s), 4);
        assert_int_equal(p->broken, 0);
        assert_int_equal(ps_link_get_state(p->s), PS_LINK_OPEN);
        pair_free(p);
}

/* A reply left owed past the timeout breaks the source's end (its dump
 * sees the poison), once the owner says the peer no longer takes bytes. */
static void test_reply_timeout(void **state) {
        pair *p = pair_new(&bind_a);
        (void)state;

        p->overdue_keep = 2; /* twice still "taking bytes": the wait starts again */
        ps_link_set_reply_timeout(p->s, 20);
        dump_requests(p, OPEN2, PID_PAGEMAP(1));
        for (int i = 0; i < SPIN_MAX && !p->broken; i++)
                turn(p);
        assert_int_equal(p->broken, 1);
        assert_int_equal(p->overdue, 3);
        assert_int_equal(p->broken_status, -ETIMEDOUT);
        assert_non_null(strstr(p->broken_why, "unanswered for 20 ms"));
        assert_string_equal(ps_link_why(p->s), p->broken_why);
        assert_int_equal(ps_link_get_state(p->s), PS_LINK_BROKEN);
        assert_poisoned(p, p->s_fd);
        pair_free(p);
}

/* A dump that outran its link blocks writing into a socket its end no
 * longer reads; a break must fail that write, not leave it waiting. */
static void test_break_while_paused(void **state) {
        pair *p = pair_new(&bind_a);
        static char chunk[64 * 1024];
        ssize_t k;
        (void)state;

        memset(chunk, 'p', sizeof(chunk));
        ps_link_pause(p->s, true);
        do {
                k = send(p->s_fd, chunk, sizeof(chunk), MSG_DONTWAIT);
                turn(p);
        } while (k > 0);
        assert_int_equal(errno, EAGAIN);
        ps_link_break(p->s);
        k = send(p->s_fd, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);
        assert_int_equal(k, -1);
        assert_int_equal(errno, EPIPE);
        pair_free(p);
}

static void test_bad_arguments(void **state) {
        uv_loop_t loop;
        ps_link *l = NULL;
        int fd = -1;
        ps_link_binding half = {.mig = "mig-1", .source = "node1"};
        (void)state;

        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(ps_link_new(&loop, PS_LINK_SOURCE, key, sizeof(key), &half, &s_ops, NULL, &fd, &l),
                         -EINVAL);
        assert_int_equal(ps_link_new(&loop, PS_LINK_SOURCE, key, 0, &bind_a, &s_ops, NULL, &fd, &l),
                         -EINVAL);
        assert_int_equal(
                ps_link_new(&loop, (ps_link_role)7, key, sizeof(key), &bind_a, &s_ops, NULL, &fd, &l),
                -EINVAL);
        assert_null(l);
        assert_int_equal(ps_link_feed(NULL, "x", 1, 0, key), -EINVAL);
        assert_int_equal(ps_link_set_zstd(NULL, PS_ZSTD_WIRE, -2), -EINVAL);
        assert_int_equal(ps_link_get_state(NULL), PS_LINK_BROKEN);
        assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pages_replies_end),
                cmocka_unit_test(test_flipped_frame),
                cmocka_unit_test(test_dropped_or_reordered_frame),
                cmocka_unit_test(test_foreign_frames),
                cmocka_unit_test(test_frame_after_end),
                cmocka_unit_test(test_compressed_round_trip),
                cmocka_unit_test(test_compressed_refused),
                cmocka_unit_test(test_zstd_backoff),
                cmocka_unit_test(test_zstd_from_hellos),
                cmocka_unit_test(test_poly1305),
                cmocka_unit_test(test_full_and_drained),
                cmocka_unit_test(test_owed_follows_a_dump),
                cmocka_unit_test(test_owed_lost),
                cmocka_unit_test(test_replies_owed),
                cmocka_unit_test(test_reply_timeout),
                cmocka_unit_test(test_break_while_paused),
                cmocka_unit_test(test_bad_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
