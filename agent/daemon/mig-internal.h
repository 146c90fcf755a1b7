/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Between mig.c (the migration object) and mig-run.c (carrying it out). */

#include "mig.h"

/* Frees what m holds (not m). */
void mig__release(mig *m);
/* m goes once its timer is closed and no blocking work of its runs. */
void mig__free_later(mig *m);
/* Drops a reference (the timer's, or a piece of blocking work's). */
void mig__unref(mig *m);
