/* SPDX-License-Identifier: Apache-2.0 */
/* A container workload for the migration benchmark: it holds a heap of a
 * chosen size and kind, and measures its own downtime.
 *
 *   nm-memhog [--mib N] [--kind random|mixed] [--period-ms MS] [--walk-pages P] DIR
 *
 * After filling (touching) its whole heap it ticks every PERIOD ms. At each
 * tick it reads one byte of each of the next P pages of its heap (a slow
 * read-only scan: a post-copy restore has to serve those pages) and rewrites
 * DIR/state, a fixed-size record rewritten in place through a file it keeps
 * open. The record holds the largest gap it has seen between two ticks and
 * the wall-clock time at which that gap ended: a migration freezes the
 * process, so the largest gap after a move is the downtime as the workload
 * felt it (it includes one tick period at most).
 *
 * Control files, polled at every tick, removed once served:
 *   DIR/reset   forget the largest gap (so a run measures only itself)
 *   DIR/check   recompute the heap's checksum and compare it with the one
 *               taken after filling (the heap came through intact) */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define STATE_RECORD 320
#define PAGE 4096u
#define PAGES_PER_GROUP 16u /* the mixed recipe repeats every 16 pages (64 KiB) */

/* Not CLOCK_MONOTONIC: CRIU restores a tree that has its own pid namespace
 * into a new time namespace whose offsets make CLOCK_MONOTONIC resume close
 * to where the dump left it, which hides most of the downtime. The wall clock
 * is not namespaced; nothing steps it during a run on the bench machine. */
#define TICK_CLOCK CLOCK_REALTIME

typedef enum heap_kind {
        HEAP_RANDOM,
        HEAP_MIXED,
} heap_kind;

typedef struct hog {
        const char *dir;
        heap_kind kind;
        size_t mib;
        long period_ms;
        size_t walk_pages;
        uint8_t *heap;
        size_t len;
        uint64_t sum;
        int statefd;
} hog;

typedef struct hog_stats {
        unsigned long long count, resets, checks;
        long long max_gap_us, max_gap_end_us;
        int check_ok;
        size_t walk_pos;
} hog_stats;

static const char usage[] =
        "usage: nm-memhog [--mib N] [--kind random|mixed] [--period-ms MS] [--walk-pages P] DIR\n"
        "\n"
        "Holds N MiB (default 64) of anonymous memory, touched page by page, then ticks\n"
        "every MS ms (default 10), reading one byte of each of the next P pages (default\n"
        "64) per tick, and keeps DIR/state: count, pid, mib, kind, ready, resets,\n"
        "max_gap_us, max_gap_end_us (wall clock, us since the epoch), checks, check_ok.\n"
        "DIR/reset forgets the largest gap; DIR/check re-verifies the heap checksum.\n"
        "\n"
        "Heap kinds (byte recipe):\n"
        "  random  every byte from xoshiro256** (incompressible)\n"
        "  mixed   per 64 KiB group of 16 pages: pages 0-3 zero-filled (written, so\n"
        "          resident), pages 4-11 text-like records (JSON-ish log lines:\n"
        "          sequence number, user name, city, status and numbers picked by the\n"
        "          PRNG from small word lists), pages 12-15 random bytes as above\n"
        "          (a quarter zero, half text, a quarter random)\n";

static long long clock_us(clockid_t id) {
        struct timespec ts;
        clock_gettime(id, &ts);
        return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(long ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* xoshiro256** (Blackman and Vigna, public domain algorithm): fast enough to
 * fill a GiB in a fraction of a second, which /dev/urandom is not. */
static uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t prng_next(uint64_t s[4]) {
        uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

static void prng_seed(uint64_t s[4], uint64_t seed) {
        /* splitmix64 spreads one seed over the four state words. */
        for (int i = 0; i < 4; i++) {
                uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
                s[i] = z ^ (z >> 31);
        }
}

static void fill_random(uint8_t *p, size_t len, uint64_t s[4]) {
        for (size_t i = 0; i + 8 <= len; i += 8) {
                uint64_t v = prng_next(s);
                memcpy(p + i, &v, 8);
        }
}

static const char *const users[] = {"alice",  "bob",   "carol",  "dave", "erin",    "frank",
                                    "grace",  "heidi", "ivan",   "judy", "mallory", "niaj",
                                    "olivia", "peggy", "rupert", "sybil"};
static const char *const cities[] = {"Lisbon", "Oslo",    "Nairobi", "Osaka", "Lima",   "Quebec",
                                     "Perth",  "Tallinn", "Dakar",   "Hanoi", "Bogota", "Porto",
                                     "Cairo",  "Denver",  "Minsk",   "Seoul"};
static const char *const statuses[] = {"active", "idle", "suspended", "pending"};

/* Text-like records, as a service's heap of log lines or JSON documents holds
 * them: repetitive structure, varying values. */
static void fill_text(uint8_t *p, size_t len, uint64_t s[4], unsigned long long *seq) {
        size_t off = 0;
        while (off < len) {
                char rec[256];
                uint64_t r = prng_next(s);
                int n = snprintf(rec, sizeof(rec),
                                 "{\"seq\":%llu,\"user\":\"%s%u\",\"city\":\"%s\",\"status\":\"%s\","
                                 "\"score\":%u,\"balance\":%u.%02u}\n",
                                 (*seq)++, users[r & 15], (unsigned)(r >> 8) % 1000, cities[(r >> 4) & 15],
                                 statuses[(r >> 20) & 3], (unsigned)(r >> 24) % 100000,
                                 (unsigned)(r >> 40) % 10000, (unsigned)(r >> 56) % 100);
                size_t take = (size_t)n < len - off ? (size_t)n : len - off;
                memcpy(p + off, rec, take);
                off += take;
        }
}

static void fill_mixed(uint8_t *heap, size_t len, uint64_t s[4]) {
        unsigned long long seq = 0;
        for (size_t g = 0; g < len; g += PAGES_PER_GROUP * PAGE) {
                size_t glen = len - g < PAGES_PER_GROUP * PAGE ? len - g : PAGES_PER_GROUP * PAGE;
                uint8_t *p = heap + g;
                size_t zero = glen < 4 * PAGE ? glen : 4 * PAGE;
                size_t text = glen - zero < 8 * PAGE ? glen - zero : 8 * PAGE;
                /* Zeros are written, not left untouched: the page is then
                 * resident and CRIU dumps it like any other. */
                memset(p, 0, zero);
                fill_text(p + zero, text, s, &seq);
                fill_random(p + zero + text, glen - zero - text, s);
        }
}

static uint64_t heap_checksum(const uint8_t *heap, size_t len) {
        uint64_t h = 0x84222325cbf29ce4ULL;
        for (size_t i = 0; i + 8 <= len; i += 8) {
                uint64_t v;
                memcpy(&v, heap + i, 8);
                h = (h ^ v) * 0x100000001b3ULL;
                h ^= h >> 29;
        }
        return h;
}

static int hog_fill(hog *h) {
        uint64_t s[4];
        h->len = h->mib << 20;
        h->heap = mmap(NULL, h->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (h->heap == MAP_FAILED)
                return -errno;
        prng_seed(s, 0x6e75636c657573ULL ^ (uint64_t)h->mib);
        switch (h->kind) {
        case HEAP_RANDOM: fill_random(h->heap, h->len, s); break;
        case HEAP_MIXED: fill_mixed(h->heap, h->len, s); break;
        }
        h->sum = heap_checksum(h->heap, h->len);
        return 0;
}

static const char *kind_to_string(heap_kind k) {
        switch (k) {
        case HEAP_RANDOM: return "random";
        case HEAP_MIXED: return "mixed";
        }
        return "?";
}

static int write_state(const hog *h, const hog_stats *st) {
        char line[STATE_RECORD + 1];
        int n = snprintf(line, sizeof(line),
                         "count=%llu pid=%d mib=%zu kind=%s ready=1 resets=%llu max_gap_us=%lld "
                         "max_gap_end_us=%lld checks=%llu check_ok=%d",
                         st->count, (int)getpid(), h->mib, kind_to_string(h->kind), st->resets,
                         st->max_gap_us, st->max_gap_end_us, st->checks, st->check_ok);
        if (n < 0 || n >= STATE_RECORD)
                return -EOVERFLOW;
        /* One fixed-size record, rewritten in place: a reader never sees a
         * truncated file. */
        memset(line + n, ' ', STATE_RECORD - (size_t)n);
        line[STATE_RECORD - 1] = '\n';
        return pwrite(h->statefd, line, STATE_RECORD, 0) == STATE_RECORD ? 0 : -EIO;
}

/* take_request DIR NAME: true once if DIR/NAME exists (and removes it). */
static bool take_request(const char *dir, const char *name) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        return unlink(path) == 0;
}

static uint8_t walk(const hog *h, hog_stats *st) {
        size_t pages = h->len / PAGE;
        uint8_t acc = 0;
        for (size_t i = 0; i < h->walk_pages && pages > 0; i++) {
                acc ^= ((volatile const uint8_t *)h->heap)[st->walk_pos * PAGE];
                st->walk_pos = (st->walk_pos + 1) % pages;
        }
        return acc;
}

static int hog_run(hog *h) {
        hog_stats st = {.check_ok = 1};
        long long last = clock_us(TICK_CLOCK);
        for (;;) {
                long long t = clock_us(TICK_CLOCK);
                if (t - last > st.max_gap_us) {
                        st.max_gap_us = t - last;
                        st.max_gap_end_us = t;
                }
                last = t;
                st.count++;
                (void)walk(h, &st);
                if (take_request(h->dir, "reset")) {
                        st.max_gap_us = st.max_gap_end_us = 0;
                        st.resets++;
                }
                if (take_request(h->dir, "check")) {
                        st.check_ok = heap_checksum(h->heap, h->len) == h->sum;
                        st.checks++;
                        /* Checking takes a while; that is not downtime. */
                        last = clock_us(TICK_CLOCK);
                }
                int r = write_state(h, &st);
                if (r < 0)
                        return r;
                sleep_ms(h->period_ms);
        }
}

/* A positive decimal number, or 0 for anything else. */
static unsigned long parse_num(const char *s) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        return errno || end == s || *end || *s == '-' ? 0 : v;
}

static int parse_args(int argc, char **argv, hog *h) {
        static const struct option opts[] = {
                {"mib", required_argument, NULL, 'm'},
                {"kind", required_argument, NULL, 'k'},
                {"period-ms", required_argument, NULL, 'p'},
                {"walk-pages", required_argument, NULL, 'w'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (c) {
                case 'm': h->mib = parse_num(optarg); break;
                case 'p': h->period_ms = (long)parse_num(optarg); break;
                case 'w': h->walk_pages = parse_num(optarg); break;
                case 'k':
                        if (strcmp(optarg, "random") == 0)
                                h->kind = HEAP_RANDOM;
                        else if (strcmp(optarg, "mixed") == 0)
                                h->kind = HEAP_MIXED;
                        else
                                return -EINVAL;
                        break;
                case 'h': return 1; /* help asked */
                default: return -EINVAL;
                }
        }
        if (optind != argc - 1 || h->mib == 0 || h->period_ms <= 0)
                return -EINVAL;
        h->dir = argv[optind];
        return 0;
}

int main(int argc, char **argv) {
        hog h = {.kind = HEAP_MIXED, .mib = 64, .period_ms = 10, .walk_pages = 64, .statefd = -1};
        char path[4096];
        int r;

        r = parse_args(argc, argv, &h);
        if (r != 0) {
                fputs(usage, r > 0 ? stdout : stderr);
                return r > 0 ? 0 : 2;
        }
        r = hog_fill(&h);
        if (r < 0) {
                fprintf(stderr, "nm-memhog: cannot map %zu MiB: %s\n", h.mib, strerror(-r));
                return 1;
        }
        /* The state file appears only once the heap is filled: its presence
         * means ready. */
        snprintf(path, sizeof(path), "%s/state", h.dir);
        h.statefd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (h.statefd < 0) {
                fprintf(stderr, "nm-memhog: open %s: %s\n", path, strerror(errno));
                return 1;
        }
        r = hog_run(&h);
        fprintf(stderr, "nm-memhog: %s\n", strerror(-r));
        return 1;
}
