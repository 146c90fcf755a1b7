#!/usr/bin/env bash
# The metrics file ([agent] metrics_file) is what node_exporter's textfile
# collector reads: it parses as the Prometheus text format (a parser below
# checks every line, every family's TYPE before its samples, and every
# histogram's buckets), is replaced atomically (0644, no temporary left
# behind) and counts what happened on each node: a move, a rollback and a
# refusal, on the source's and on the target's side.
set -euo pipefail
. "$(dirname "$0")/../lib/agents.sh"

prom() { echo "$FX_ROOT/$1/metrics/nucleus-migrate.prom"; }

# prom_parse FILE: checks the text format and prints each sample as
# "name{labels} value"; fails (with the line) on anything malformed.
prom_parse() {
	awk '
	function fail(why) { printf "%s:%d: %s: %s\n", FILENAME, NR, why, $0 > "/dev/stderr"; bad = 1; exit 1 }
	function family(n) { if (n in typ) return n; sub(/_(bucket|sum|count)$/, "", n); return n }
	/^$/ { next }
	/^# HELP / { if ($3 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*$/) fail("bad HELP"); next }
	/^# TYPE / {
		if (NF != 4 || $4 !~ /^(counter|gauge|histogram|summary|untyped)$/) fail("bad TYPE")
		if ($3 in typ) fail("TYPE twice"); typ[$3] = $4; cur = $3; next
	}
	/^#/ { next }
	{
		if (!match($0, /^[a-zA-Z_:][a-zA-Z0-9_:]*/)) fail("bad metric name")
		name = substr($0, 1, RLENGTH); rest = substr($0, RLENGTH + 1); labels = ""
		if (substr(rest, 1, 1) == "{") {
			if (!match(rest, /^\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*)?\}/)) fail("bad labels")
			labels = substr(rest, 2, RLENGTH - 2); rest = substr(rest, RLENGTH + 1)
		}
		if (rest !~ /^ (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[-+]Inf)( -?[0-9]+)?$/) fail("bad value")
		split(rest, v, " "); f = family(name)
		if (!(f in typ)) fail("sample before its TYPE")
		if (f != cur) fail("family not contiguous")
		if (typ[f] == "histogram" && name ~ /_bucket$/) {
			if (labels !~ /(^|,)le="[^"]*"$/) fail("bucket without le last")
			key = labels; sub(/(^|,)le="[^"]*"$/, "", key)
			if ((f SUBSEP key) in last && v[1] + 0 < last[f, key]) fail("buckets not cumulative")
			last[f, key] = v[1] + 0
			if (labels ~ /le="\+Inf"$/) inf[f, key] = v[1] + 0
		}
		if (typ[f] == "histogram" && name ~ /_count$/ && inf[f, labels] != v[1] + 0) fail("+Inf bucket is not _count")
		printf "%s{%s} %s\n", name, labels, v[1]
	}' "$1"
}

# metric NODE 'name{labels}': its value in NODE's file (0 when absent).
metric() {
	local v
	v=$(prom_parse "$(prom "$1")" | awk -v k="$2" '$1 == k { print $2 }')
	echo "${v:-0}"
}

metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }

# expect NODE 'name{labels}' VALUE: the file says so (it is rewritten after
# each event, on the agent's thread pool: wait for it).
expect() {
	t_wait_until 60 "$1: $2 = $3" metric_is "$@" || t_fail "$1: $2 is $(metric "$1" "$2"), not $3"
}

start() {
	local n=$1
	shift
	FX_AGENT_ARGS="--set agent.metrics_file=$(prom "$n")" fx_agent_start "$n" "$@"
}

fx_nodes_up
for n in n1 n2; do
	mkdir -p "$FX_ROOT/$n/metrics"
	start "$n"
done
for n in n1 n2; do
	t_wait_until 60 "$n writes its metrics" test -s "$(prom "$n")" || t_fail "$n wrote no metrics file"
	prom_parse "$(prom "$n")" >/dev/null || t_fail "$n's metrics file does not parse"
done
t_assert_eq "$(stat -c %a "$(prom n1)")" 644 "the metrics file's mode (node_exporter reads it)"
t_assert_eq "$(metric n1 'nucleus_migrate_criu_check_ok{}')" 1 "criu_check_ok"
t_assert_eq "$(metric n1 'nucleus_migrate_moves_total{role="source",outcome="done"}')" 0 "moves before any"

t_log "a move"
read -r id _ < <(fx_ctr_start n1 counted)
fx_nm n1 migrate "$id" node2 >/dev/null || t_fail "the move"
expect n1 'nucleus_migrate_moves_total{role="source",outcome="done"}' 1
expect n2 'nucleus_migrate_moves_total{role="destination",outcome="running"}' 1
expect n1 'nucleus_migrate_downtime_seconds_count{}' 1
expect n1 'nucleus_migrate_stage_seconds_count{stage="dump"}' 1
t_assert "bytes counted" [ "$(metric n1 'nucleus_migrate_bytes_total{role="source"}')" -gt 0 ]

t_log "a rollback"
fx_agent_stop n2
start n2 NM_FAULT=fail=dest-restore
read -r id _ < <(fx_ctr_start n1 rolled)
t_expect_exit 4 "a move whose restore fails" fx_nm n1 migrate "$id" node2
expect n1 'nucleus_migrate_rollbacks_total{}' 1
expect n1 'nucleus_migrate_moves_total{role="source",outcome="rolled-back"}' 1
expect n2 'nucleus_migrate_moves_total{role="destination",outcome="aborted"}' 1

t_log "a refusal"
fx_agent_stop n2
start n2
fx_nm n2 cordon >/dev/null
expect n2 'nucleus_migrate_cordoned{}' 1
t_expect_exit 3 "a move to a cordoned node" fx_nm n1 migrate "$id" node2
expect n1 'nucleus_migrate_refusals_total{side="source",reason="cordoned"}' 1
expect n2 'nucleus_migrate_refusals_total{side="target",reason="cordoned"}' 1
expect n1 'nucleus_migrate_moves_total{role="source",outcome="refused"}' 1
t_assert_eq "$(metric n1 'nucleus_migrate_moves_total{role="source",outcome="done"}')" 1 "the first move, still counted"

t_log "the history: status --since"
t_assert_eq "$(fx_nm n1 status --since 1h --json | jq '[.result.migrations[] | .outcome] | sort | join(",")')" \
	'"done,refused,rolled-back"' "n1's moves of the last hour"
t_expect_exit 2 "status --since with a bad duration" fx_nm n1 status --since soon

for n in n1 n2; do
	prom_parse "$(prom "$n")" >/dev/null || t_fail "$n's metrics file does not parse"
	t_assert_eq "$(find "$FX_ROOT/$n/metrics" -type f | wc -l)" 1 "files in $n's metrics directory"
done
t_log "ok"
