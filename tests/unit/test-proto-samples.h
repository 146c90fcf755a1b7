/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One valid message of every type, with values at the edges of their
 * ranges. Shared by the unit tests and the fuzz seed corpus generator. */

#include <stddef.h>

#include "proto.h"

/* Fills out[] with one message per type (in type order); returns how many.
 * The messages point to static storage. */
size_t proto_samples(proto_msg *out, size_t max);
