/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What an operator alerts on, in the Prometheus text format, written to
 * [agent] metrics_file for node_exporter's textfile collector (an agent
 * that opens no port): moves by role and outcome, rollbacks, migrations in
 * doubt, downtime and stage durations (histograms), bytes, refusals by
 * side and reason, drains. The file is replaced atomically (written beside
 * it as <file>.tmp, which the collector ignores, then renamed) on the
 * thread pool, after every event that changes it and every 15 s (the
 * gauges). Counters start at zero with the agent, as Prometheus expects of
 * a process. Nothing is written without metrics_file. */

#include "agent.h"

int metrics_start(agent *a, nm_error *err);
/* Stops the timer; a write under way finishes. */
void metrics_stop(agent *a);

/* A migration ended with this result (mig_result_doc). */
void metrics_mig_end(agent *a, const json_t *result);
/* A move refused before anything was frozen: side "source" or "target",
 * reason a short label (the REJECT code, or the local check). */
void metrics_refusal(agent *a, const char *side, const char *reason);
/* A drain ended: "complete" (every container moved) or "partial". */
void metrics_drain(agent *a, const char *outcome);
