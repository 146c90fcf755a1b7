/* SPDX-License-Identifier: Apache-2.0 */
/* One migration's lanes on its destination (agent/core/handoff-lanes.c):
 * who joins, what LANES may name, and whose turn each frame is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "handoff-lanes.h"
#include "macro.h"

static const uint8_t secret[HANDOFF_LANE_SECRET_LEN] = {
        0x5e, 0xc7, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e};

static handoff_lanes granted(uint32_t n) {
        handoff_lanes l;
        handoff_lanes_grant(&l, n, secret);
        return l;
}

/* A refusal changes nothing: the state after it equals the state before. */
static void expect_refused(handoff_lanes *l, handoff_lane_verdict got, handoff_lane_verdict want,
                           const handoff_lanes *before) {
        assert_int_equal(got, want);
        assert_memory_equal(l, before, sizeof(*l));
}

static void test_grant(void **state) {
        (void)state;
        for (uint32_t n = 0; n <= HANDOFF_LANES_MAX + 1; n++) {
                handoff_lanes l = granted(n);
                bool lanes = n >= 2 && n <= HANDOFF_LANES_MAX;
                assert_int_equal(l.phase, lanes ? HANDOFF_LANES_JOINING : HANDOFF_LANES_NONE);
                assert_int_equal(l.granted, lanes ? n : 0);
                assert_int_equal(l.joined, 1u);
                assert_int_equal(handoff_lanes_due(&l), 0);
        }
}

static void test_join(void **state) {
        handoff_lanes l = granted(3), before;
        uint8_t bent[HANDOFF_LANE_SECRET_LEN];
        (void)state;

        /* Every rule on its own, each refusal leaving the grant as it was. */
        before = l;
        expect_refused(&l, handoff_lanes_join(&l, "node1", "node3", 1, secret), HANDOFF_LANE_STRANGER,
                       &before);
        expect_refused(&l, handoff_lanes_join(&l, "node1", "node10", 1, secret), HANDOFF_LANE_STRANGER,
                       &before);
        expect_refused(&l, handoff_lanes_join(&l, NULL, "node1", 1, secret), HANDOFF_LANE_STRANGER, &before);
        expect_refused(&l, handoff_lanes_join(&l, "node1", NULL, 1, secret), HANDOFF_LANE_STRANGER, &before);
        expect_refused(&l, handoff_lanes_join(&l, "node1", "node1", 0, secret), HANDOFF_LANE_RANGE, &before);
        expect_refused(&l, handoff_lanes_join(&l, "node1", "node1", 3, secret), HANDOFF_LANE_RANGE, &before);
        expect_refused(&l, handoff_lanes_join(&l, "node1", "node1", UINT32_MAX, secret), HANDOFF_LANE_RANGE,
                       &before);
        /* A secret wrong in its first byte, or only in its last. */
        for (size_t at = 0; at < HANDOFF_LANE_SECRET_LEN; at += HANDOFF_LANE_SECRET_LEN - 1) {
                memcpy(bent, secret, sizeof(bent));
                bent[at] ^= 0x01;
                expect_refused(&l, handoff_lanes_join(&l, "node1", "node1", 1, bent), HANDOFF_LANE_SECRET,
                               &before);
        }

        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 2, secret), HANDOFF_LANE_OK);
        assert_int_equal(l.joined, 1u | 1u << 2);
        before = l;
        expect_refused(&l, handoff_lanes_join(&l, "node1", "node1", 2, secret), HANDOFF_LANE_TAKEN, &before);
        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 1, secret), HANDOFF_LANE_OK);
        assert_int_equal(l.joined, 7u);

        /* Nobody joins a migration that granted none. */
        l = granted(1);
        before = l;
        expect_refused(&l, handoff_lanes_join(&l, "node1", "node1", 1, secret), HANDOFF_LANE_CLOSED,
                       &before);
}

/* The secret is the last rule: a stranger learns nothing of it from
 * which refusal it gets. */
static void test_join_order(void **state) {
        handoff_lanes l = granted(2);
        uint8_t zero[HANDOFF_LANE_SECRET_LEN] = {};
        (void)state;
        assert_int_equal(handoff_lanes_join(&l, "node1", "node3", 1, zero), HANDOFF_LANE_STRANGER);
        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 2, zero), HANDOFF_LANE_RANGE);
        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 1, secret), HANDOFF_LANE_OK);
        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 1, zero), HANDOFF_LANE_TAKEN);
}

static void test_deal(void **state) {
        handoff_lanes l = granted(4), before;
        (void)state;

        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 1, secret), HANDOFF_LANE_OK);
        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 3, secret), HANDOFF_LANE_OK);
        before = l;
        /* Lane 2 did not join: 0..2 and 0..3 cannot be dealt over. */
        expect_refused(&l, handoff_lanes_deal(&l, 3), HANDOFF_LANE_UNJOINED, &before);
        expect_refused(&l, handoff_lanes_deal(&l, 4), HANDOFF_LANE_UNJOINED, &before);
        expect_refused(&l, handoff_lanes_deal(&l, 5), HANDOFF_LANE_UNJOINED, &before);
        expect_refused(&l, handoff_lanes_deal(&l, 0), HANDOFF_LANE_UNJOINED, &before);
        assert_int_equal(handoff_lanes_deal(&l, 2), HANDOFF_LANE_OK);
        assert_int_equal(l.phase, HANDOFF_LANES_DEALT);
        assert_int_equal(l.dealt, 2);

        /* Once dealt: no second LANES, and nobody joins any more (lane 2
         * has not joined, and lane 3, left out, is the adapter's to end). */
        before = l;
        expect_refused(&l, handoff_lanes_deal(&l, 2), HANDOFF_LANE_UNJOINED, &before);
        expect_refused(&l, handoff_lanes_join(&l, "node1", "node1", 2, secret), HANDOFF_LANE_CLOSED,
                       &before);

        /* Without a grant LANES can only say "lane 0 alone", once. */
        l = granted(0);
        before = l;
        expect_refused(&l, handoff_lanes_deal(&l, 2), HANDOFF_LANE_UNJOINED, &before);
        assert_int_equal(handoff_lanes_deal(&l, 1), HANDOFF_LANE_OK);
        assert_int_equal(handoff_lanes_due(&l), 0);
        before = l;
        expect_refused(&l, handoff_lanes_deal(&l, 1), HANDOFF_LANE_UNJOINED, &before);
}

/* Frames in turn: n comes on lane n mod dealt, whatever the lanes'
 * arrival; anything else is refused and the turn stays. */
static void test_turns(void **state) {
        (void)state;
        for (uint32_t n = 1; n <= HANDOFF_LANES_MAX; n++) {
                handoff_lanes l = granted(n), before;
                for (uint32_t k = 1; k < n; k++)
                        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", k, secret),
                                         HANDOFF_LANE_OK);
                assert_int_equal(handoff_lanes_deal(&l, n), HANDOFF_LANE_OK);
                for (uint64_t f = 0; f < 3u * n + 1; f++) {
                        uint32_t due = handoff_lanes_due(&l);
                        assert_int_equal(due, f % n);
                        before = l;
                        for (uint32_t other = 0; other < HANDOFF_LANES_MAX + 1; other++)
                                if (other != due)
                                        expect_refused(&l, handoff_lanes_took(&l, other),
                                                       HANDOFF_LANE_OUT_OF_TURN, &before);
                        assert_int_equal(handoff_lanes_took(&l, due), HANDOFF_LANE_OK);
                }
        }
}

/* Before LANES (or without lanes) everything is lane 0's. */
static void test_turns_before_dealing(void **state) {
        handoff_lanes l = granted(2), before;
        (void)state;
        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 1, secret), HANDOFF_LANE_OK);
        before = l;
        expect_refused(&l, handoff_lanes_took(&l, 1), HANDOFF_LANE_OUT_OF_TURN, &before);
        assert_int_equal(handoff_lanes_took(&l, 0), HANDOFF_LANE_OK);
        assert_int_equal(handoff_lanes_took(&l, 0), HANDOFF_LANE_OK);
        assert_memory_equal(&l, &before, sizeof(l));
}

/* A lane that ends before LANES may no longer be named; one dealt to
 * loses the stream; one left out, or lane 0, changes nothing. */
static void test_leave(void **state) {
        handoff_lanes l = granted(3), before;
        (void)state;
        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 1, secret), HANDOFF_LANE_OK);
        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 2, secret), HANDOFF_LANE_OK);
        assert_int_equal(handoff_lanes_leave(&l, 2), HANDOFF_LANE_OK);
        assert_int_equal(l.joined, 3u);
        before = l;
        expect_refused(&l, handoff_lanes_deal(&l, 3), HANDOFF_LANE_UNJOINED, &before);
        /* It may join again while joins are taken. */
        assert_int_equal(handoff_lanes_join(&l, "node1", "node1", 2, secret), HANDOFF_LANE_OK);
        assert_int_equal(handoff_lanes_deal(&l, 2), HANDOFF_LANE_OK);
        before = l;
        assert_int_equal(handoff_lanes_leave(&l, 2), HANDOFF_LANE_OK); /* left out */
        assert_int_equal(handoff_lanes_leave(&l, 0), HANDOFF_LANE_OK);
        assert_int_equal(handoff_lanes_leave(&l, UINT32_MAX), HANDOFF_LANE_OK);
        assert_memory_equal(&l, &before, sizeof(l));
        assert_int_equal(handoff_lanes_leave(&l, 1), HANDOFF_LANE_LOST);
}

/* auto: one lane below 256 MiB or on two cores; else one per core beyond
 * the loop's and CRIU's, at most four. */
static void test_auto(void **state) {
        const uint64_t M = UINT64_C(1) << 20;
        (void)state;
        assert_int_equal(handoff_lanes_auto(1024 * M, 0), 1);
        assert_int_equal(handoff_lanes_auto(1024 * M, 1), 1);
        assert_int_equal(handoff_lanes_auto(1024 * M, 2), 1);
        assert_int_equal(handoff_lanes_auto(1024 * M, 3), 2);
        assert_int_equal(handoff_lanes_auto(1024 * M, 4), 3);
        assert_int_equal(handoff_lanes_auto(1024 * M, 5), 4);
        assert_int_equal(handoff_lanes_auto(1024 * M, 64), 4);
        assert_int_equal(handoff_lanes_auto(256 * M, 8), 4);
        assert_int_equal(handoff_lanes_auto(256 * M - 1, 8), 1);
        assert_int_equal(handoff_lanes_auto(0, 8), 1);
}

static void test_names(void **state) {
        (void)state;
        for (int v = 0; v < _HANDOFF_LANE_VERDICT_MAX; v++)
                assert_non_null(handoff_lane_verdict_to_string((handoff_lane_verdict)v));
        assert_null(handoff_lane_verdict_to_string(_HANDOFF_LANE_VERDICT_MAX));
        assert_null(handoff_lane_verdict_to_string(_HANDOFF_LANE_VERDICT_INVALID));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_grant),      cmocka_unit_test(test_join),
                cmocka_unit_test(test_join_order), cmocka_unit_test(test_deal),
                cmocka_unit_test(test_turns),      cmocka_unit_test(test_turns_before_dealing),
                cmocka_unit_test(test_leave),      cmocka_unit_test(test_auto),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
