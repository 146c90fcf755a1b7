/* SPDX-License-Identifier: Apache-2.0 */
/* Who may say what about a migration (agent/core/handoff-trust.c): every
 * (role, message, sender) cell, and who a sender is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "handoff-trust.h"
#include "macro.h"

#define S HANDOFF_FROM_SESSION
#define L HANDOFF_FROM_LANE
#define P HANDOFF_FROM_PEER
#define X HANDOFF_FROM_STRANGER

typedef struct cell {
        mig_role role;
        handoff_msg msg;
        bool session, lane, peer, stranger; /* admitted from each sender */
} cell;

static const cell cells[] = {
        /* destination: the source's session only (and its lanes, for the
         * pages), but COMMIT after a lost link */
        {MIG_ROLE_DEST, HANDOFF_MSG_IMAGES, true, false, false, false},
        {MIG_ROLE_DEST, HANDOFF_MSG_RESTORE, true, false, false, false},
        {MIG_ROLE_DEST, HANDOFF_MSG_PAGES, true, true, false, false},
        {MIG_ROLE_DEST, HANDOFF_MSG_ABORT, true, false, false, false},
        {MIG_ROLE_DEST, HANDOFF_MSG_COMMIT, true, false, true, false},
        {MIG_ROLE_DEST, HANDOFF_MSG_QUERY, false, false, false, false},
        /* source: only its target asks; nothing else comes on a session */
        {MIG_ROLE_SOURCE, HANDOFF_MSG_QUERY, true, false, true, false},
        {MIG_ROLE_SOURCE, HANDOFF_MSG_IMAGES, false, false, false, false},
        {MIG_ROLE_SOURCE, HANDOFF_MSG_RESTORE, false, false, false, false},
        {MIG_ROLE_SOURCE, HANDOFF_MSG_PAGES, false, false, false, false},
        {MIG_ROLE_SOURCE, HANDOFF_MSG_COMMIT, false, false, false, false},
        {MIG_ROLE_SOURCE, HANDOFF_MSG_ABORT, false, false, false, false},
};

static void test_every_cell(void **state) {
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cells); i++) {
                const cell *c = &cells[i];
                print_message("%s %s\n", mig_role_to_string(c->role), handoff_msg_to_string(c->msg));
                assert_int_equal(handoff_admits(c->role, c->msg, S), c->session);
                assert_int_equal(handoff_admits(c->role, c->msg, L), c->lane);
                assert_int_equal(handoff_admits(c->role, c->msg, P), c->peer);
                assert_int_equal(handoff_admits(c->role, c->msg, X), c->stranger);
        }
}

/* A stranger is never admitted, whatever it asks of either role. */
static void test_stranger_never(void **state) {
        (void)state;
        for (int r = 0; r < _MIG_ROLE_MAX; r++)
                for (int m = 0; m < _HANDOFF_MSG_MAX; m++)
                        assert_false(handoff_admits((mig_role)r, (handoff_msg)m, X));
}

static void test_out_of_range(void **state) {
        (void)state;
        assert_false(handoff_admits(MIG_ROLE_DEST, HANDOFF_MSG_COMMIT, _HANDOFF_SENDER_INVALID));
        assert_false(handoff_admits(MIG_ROLE_DEST, _HANDOFF_MSG_INVALID, S));
        assert_false(handoff_admits(_MIG_ROLE_INVALID, HANDOFF_MSG_COMMIT, S));
        assert_null(handoff_sender_to_string(_HANDOFF_SENDER_MAX));
        assert_null(handoff_msg_to_string(_HANDOFF_MSG_MAX));
}

static void test_sender_of(void **state) {
        const handoff_session own = HANDOFF_SESSION_OWN, lane = HANDOFF_SESSION_LANE,
                              other = HANDOFF_SESSION_OTHER;
        (void)state;
        assert_int_equal(handoff_sender_of("node1", "node1", own), S);
        assert_int_equal(handoff_sender_of("node1", "node1", lane), L);
        assert_int_equal(handoff_sender_of("node1", "node1", other), P);
        assert_int_equal(handoff_sender_of("node1", "node1", _HANDOFF_SESSION_INVALID), P);
        assert_int_equal(handoff_sender_of("node1", "node3", other), X);
        /* The session is not enough: it must be the migration's peer too
         * (a record whose peer is unknown admits nobody). */
        assert_int_equal(handoff_sender_of("node1", "node3", own), X);
        assert_int_equal(handoff_sender_of("node1", "node3", lane), X);
        assert_int_equal(handoff_sender_of(NULL, "node1", own), X);
        assert_int_equal(handoff_sender_of("node1", NULL, own), X);
        assert_int_equal(handoff_sender_of("node1", "node10", other), X);
}

static void test_staging(void **state) {
        const uint64_t M = 1u << 20;
        (void)state;
        assert_true(handoff_staging_admits(0, UINT64_MAX, UINT64_MAX, UINT64_MAX)); /* no limit */
        assert_true(handoff_staging_admits(48 * M, 0, 0, 48 * M));
        assert_false(handoff_staging_admits(48 * M, 0, 0, 48 * M + 1));
        /* The offer said 1 MiB: what counts is what lands. */
        assert_true(handoff_staging_admits(48 * M, 0, 40 * M, 8 * M));
        assert_false(handoff_staging_admits(48 * M, 0, 40 * M, 9 * M));
        /* Across every migration in flight. */
        assert_false(handoff_staging_admits(48 * M, 30 * M, 10 * M, 9 * M));
        assert_true(handoff_staging_admits(48 * M, 30 * M, 10 * M, 8 * M));
        assert_false(handoff_staging_admits(48 * M, 49 * M, 0, 0));
        /* Sizes a peer picks do not wrap around. */
        assert_false(handoff_staging_admits(48 * M, 0, 1, UINT64_MAX));
        assert_false(handoff_staging_admits(48 * M, 1, UINT64_MAX, 1));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_cell),   cmocka_unit_test(test_stranger_never),
                cmocka_unit_test(test_out_of_range), cmocka_unit_test(test_sender_of),
                cmocka_unit_test(test_staging),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
