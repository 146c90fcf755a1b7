/* SPDX-License-Identifier: Apache-2.0 */
/* What a restarted agent does with each journaled phase, on both sides,
 * and the names the journal keeps (old records must still recover). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "exit-codes.h"
#include "handoff-dst.h"
#include "handoff-src.h"

/* The journal's words: what old records say must still parse. */
static void test_phase_names_round_trip(void **state) {
        static const char *const src_names[] = {"precheck",    "dumping",   "dumped",  "streaming",
                                                "restoring",   "committed", "done",    "rolling-back",
                                                "rolled-back", "failed",    "refused", "lost"};
        static const char *const dst_names[] = {"receiving", "verified", "dest-restoring", "restored",
                                                "in-doubt",  "running",  "aborted"};
        (void)state;

        assert_int_equal(_SRC_PHASE_MAX, sizeof(src_names) / sizeof(src_names[0]));
        for (int p = 0; p < _SRC_PHASE_MAX; p++) {
                assert_string_equal(src_phase_to_string((src_phase)p), src_names[p]);
                assert_int_equal(src_phase_from_string(src_names[p]), p);
        }
        assert_int_equal(_DST_PHASE_MAX, sizeof(dst_names) / sizeof(dst_names[0]));
        for (int p = 0; p < _DST_PHASE_MAX; p++) {
                assert_string_equal(dst_phase_to_string((dst_phase)p), dst_names[p]);
                assert_int_equal(dst_phase_from_string(dst_names[p]), p);
        }
        assert_int_equal(src_phase_from_string("nonsense"), _SRC_PHASE_INVALID);
        assert_int_equal(src_phase_from_string(NULL), _SRC_PHASE_INVALID);
        assert_null(src_phase_to_string(_SRC_PHASE_MAX));
        assert_null(dst_phase_to_string(_DST_PHASE_INVALID));
        assert_int_equal(mig_role_from_string("destination"), MIG_ROLE_DEST);
        assert_int_equal(mig_role_from_string("source"), MIG_ROLE_SOURCE);
        assert_int_equal(mig_role_from_string("dest"), _MIG_ROLE_INVALID);
        /* A phase of the other side is a corrupt record, never guessed at. */
        assert_int_equal(src_phase_from_string("restored"), _SRC_PHASE_INVALID);
        assert_int_equal(dst_phase_from_string("committed"), _DST_PHASE_INVALID);
}

/* The handoff's safety rules, phase by phase: before COMMITTED the source
 * rolls back; from COMMITTED on it only goes forward; a destination holding a
 * stopped copy asks, and never resumes or kills it on its own. */
static void test_recovery_table(void **state) {
        static const struct {
                src_phase phase;
                mig_recovery running, stopped, gone;
        } src[] = {
                {SRC_PRECHECK, MIG_RECOVER_MARK_FAILED, MIG_RECOVER_MARK_FAILED, MIG_RECOVER_MARK_FAILED},
                {SRC_DUMPING, MIG_RECOVER_MARK_FAILED, MIG_RECOVER_RESUME, MIG_RECOVER_ROLLBACK},
                {SRC_DUMPED, MIG_RECOVER_RESUME, MIG_RECOVER_RESUME, MIG_RECOVER_ROLLBACK},
                {SRC_STREAMING, MIG_RECOVER_RESUME, MIG_RECOVER_RESUME, MIG_RECOVER_ROLLBACK},
                {SRC_RESTORING, MIG_RECOVER_RESUME, MIG_RECOVER_RESUME, MIG_RECOVER_ROLLBACK},
                {SRC_COMMITTED, MIG_RECOVER_FORWARD, MIG_RECOVER_FORWARD, MIG_RECOVER_FORWARD},
                {SRC_DONE, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH},
                {SRC_ROLLING_BACK, MIG_RECOVER_RESUME, MIG_RECOVER_RESUME, MIG_RECOVER_ROLLBACK},
                {SRC_ROLLED_BACK, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH},
                {SRC_FAILED, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH},
                {SRC_REFUSED, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH},
                {SRC_LOST, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH, MIG_RECOVER_FINISH},
        };
        static const struct {
                dst_phase phase;
                mig_recovery want;
        } dst[] = {
                {DST_RECEIVING, MIG_RECOVER_DISCARD},   {DST_VERIFIED, MIG_RECOVER_DISCARD},
                {DST_RESTORING, MIG_RECOVER_DISCARD},   {DST_RESTORED, MIG_RECOVER_ASK_SOURCE},
                {DST_IN_DOUBT, MIG_RECOVER_ASK_SOURCE}, {DST_RUNNING, MIG_RECOVER_COMPLETE},
                {DST_ABORTED, MIG_RECOVER_FINISH},
        };
        (void)state;

        assert_int_equal(sizeof(src) / sizeof(src[0]), _SRC_PHASE_MAX);
        for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++) {
                assert_int_equal(src[i].phase, (src_phase)i);
                assert_int_equal(src_recovery_for(src[i].phase, SRC_TREE_RUNNING), src[i].running);
                assert_int_equal(src_recovery_for(src[i].phase, SRC_TREE_STOPPED), src[i].stopped);
                assert_int_equal(src_recovery_for(src[i].phase, SRC_TREE_GONE), src[i].gone);
        }
        assert_int_equal(sizeof(dst) / sizeof(dst[0]), _DST_PHASE_MAX);
        for (size_t i = 0; i < sizeof(dst) / sizeof(dst[0]); i++) {
                assert_int_equal(dst[i].phase, (dst_phase)i);
                assert_int_equal(dst_recovery_for(dst[i].phase), dst[i].want);
        }
        assert_int_equal(src_recovery_for(_SRC_PHASE_INVALID, SRC_TREE_GONE), _MIG_RECOVER_INVALID);
        assert_int_equal(src_recovery_for(SRC_DUMPED, _SRC_TREE_MAX), _MIG_RECOVER_INVALID);
        assert_int_equal(dst_recovery_for(_DST_PHASE_MAX), _MIG_RECOVER_INVALID);
        /* No source phase before COMMITTED goes forward. */
        for (int p = SRC_PRECHECK; p < SRC_COMMITTED; p++)
                for (int t = 0; t < _SRC_TREE_MAX; t++)
                        assert_int_not_equal(src_recovery_for((src_phase)p, (src_tree)t),
                                             MIG_RECOVER_FORWARD);
        assert_string_equal(mig_recovery_to_string(MIG_RECOVER_ASK_SOURCE), "ask-source");
}

static void test_exit_codes(void **state) {
        (void)state;
        assert_int_equal(src_phase_exit_code(SRC_DONE), NM_EXIT_OK);
        assert_int_equal(src_phase_exit_code(SRC_REFUSED), NM_EXIT_REFUSED);
        assert_int_equal(src_phase_exit_code(SRC_ROLLED_BACK), NM_EXIT_ROLLED_BACK);
        assert_int_equal(src_phase_exit_code(SRC_COMMITTED), NM_EXIT_IN_DOUBT);
        assert_int_equal(src_phase_exit_code(SRC_LOST), NM_EXIT_LOST);
        assert_int_equal(src_phase_exit_code(SRC_FAILED), NM_EXIT_FAILURE);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_phase_names_round_trip),
                cmocka_unit_test(test_recovery_table),
                cmocka_unit_test(test_exit_codes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
