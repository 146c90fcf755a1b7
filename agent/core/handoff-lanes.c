/* SPDX-License-Identifier: Apache-2.0 */
#include "handoff-lanes.h"

#include <openssl/crypto.h>
#include <string.h>

#include "macro.h"

static const char *const verdict_names[_HANDOFF_LANE_VERDICT_MAX] = {
        [HANDOFF_LANE_OK] = "ok",
        [HANDOFF_LANE_STRANGER] = "the session is another peer's than the migration's",
        [HANDOFF_LANE_CLOSED] = "the migration takes no lanes now",
        [HANDOFF_LANE_RANGE] = "no such lane was granted",
        [HANDOFF_LANE_TAKEN] = "that lane joined already",
        [HANDOFF_LANE_SECRET] = "wrong secret",
        [HANDOFF_LANE_UNJOINED] = "the lanes named did not all join, or were named already",
        [HANDOFF_LANE_OUT_OF_TURN] = "a frame on a lane whose turn it is not",
        [HANDOFF_LANE_LOST] = "a lane the stream was dealt over ended",
};

const char *handoff_lane_verdict_to_string(handoff_lane_verdict v) {
        return v >= 0 && v < _HANDOFF_LANE_VERDICT_MAX ? verdict_names[v] : NULL;
}

uint32_t handoff_lanes_auto(uint64_t bytes, unsigned cores) {
        if (bytes < HANDOFF_LANES_AUTO_MIN_BYTES || cores <= 2)
                return 1;
        return cores - 1 < HANDOFF_LANES_MAX ? cores - 1 : HANDOFF_LANES_MAX;
}

void handoff_lanes_init(handoff_lanes *l) {
        *l = (handoff_lanes){.phase = HANDOFF_LANES_NONE, .joined = 1u};
}

void handoff_lanes_grant(handoff_lanes *l, uint32_t n, const uint8_t secret[HANDOFF_LANE_SECRET_LEN]) {
        handoff_lanes_init(l);
        if (n < 2 || n > HANDOFF_LANES_MAX)
                return;
        l->phase = HANDOFF_LANES_JOINING;
        l->granted = n;
        memcpy(l->secret, secret, HANDOFF_LANE_SECRET_LEN);
}

handoff_lane_verdict handoff_lanes_join(handoff_lanes *l, const char *mig_peer, const char *session_peer,
                                        uint32_t lane, const uint8_t secret[HANDOFF_LANE_SECRET_LEN]) {
        if (!mig_peer || !session_peer || strcmp(mig_peer, session_peer) != 0)
                return HANDOFF_LANE_STRANGER;
        if (l->phase != HANDOFF_LANES_JOINING)
                return HANDOFF_LANE_CLOSED;
        if (lane == 0 || lane >= l->granted)
                return HANDOFF_LANE_RANGE;
        if (l->joined & (1u << lane))
                return HANDOFF_LANE_TAKEN;
        if (CRYPTO_memcmp(l->secret, secret, HANDOFF_LANE_SECRET_LEN) != 0) /* in constant time */
                return HANDOFF_LANE_SECRET;
        l->joined |= 1u << lane;
        return HANDOFF_LANE_OK;
}

handoff_lane_verdict handoff_lanes_deal(handoff_lanes *l, uint32_t n) {
        if (l->phase == HANDOFF_LANES_DEALT || n == 0 || n > (l->granted ? l->granted : 1u))
                return HANDOFF_LANE_UNJOINED;
        uint32_t want = (1u << n) - 1u;
        if ((l->joined & want) != want)
                return HANDOFF_LANE_UNJOINED;
        l->phase = HANDOFF_LANES_DEALT;
        l->dealt = n;
        l->next = 0;
        return HANDOFF_LANE_OK;
}

uint32_t handoff_lanes_due(const handoff_lanes *l) {
        if (l->phase != HANDOFF_LANES_DEALT || l->dealt == 0)
                return 0;
        return (uint32_t)(l->next % l->dealt);
}

handoff_lane_verdict handoff_lanes_took(handoff_lanes *l, uint32_t lane) {
        if (lane != handoff_lanes_due(l))
                return HANDOFF_LANE_OUT_OF_TURN;
        if (l->phase == HANDOFF_LANES_DEALT)
                l->next++;
        return HANDOFF_LANE_OK;
}

handoff_lane_verdict handoff_lanes_leave(handoff_lanes *l, uint32_t lane) {
        if (lane == 0 || lane >= HANDOFF_LANES_MAX)
                return HANDOFF_LANE_OK;
        if (l->phase == HANDOFF_LANES_DEALT)
                return lane < l->dealt ? HANDOFF_LANE_LOST : HANDOFF_LANE_OK;
        l->joined &= ~(1u << lane);
        return HANDOFF_LANE_OK;
}
