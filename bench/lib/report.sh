# shellcheck shell=bash
# bench/RESULTS.md, generated from the raw results in $B_RESULTS (one row
# per run: migrate.tsv, stream.tsv; what ran where: migrate.meta,
# stream.meta). Numbers are never typed by hand: rerun bench/run.

B_METRICS_MIGRATE=downtime_s,total_s,wire_bytes,img_bytes,dump_s,xfer_s,restore_s,src_extra_bytes,dst_extra_bytes,src_shmem_bytes,dst_shmem_bytes
B_METRICS_STREAM=mb_per_s,seconds,wire_bytes,payload_bytes
B_METRICS_DRAIN=wall_s,worst_downtime_s,median_downtime_s
B_METRICS_ROLLBACK=rollback_s,seen_s,back_s,downtime_s,total_s

# b_meta FILE KEY: a value from a .meta file (key=value lines).
b_meta() { [ -f "$1" ] && sed -n "s/^$2=//p" "$1" | head -n1; }

b_stats() {
	awk -F'\t' -v keys="$2" -v metrics="$3" -f "$BENCH_DIR/lib/stats.awk" "$1"
}

# b_stat STATS KEYS... METRIC_INDEX PART: one number from b_stats output
# (PART: 0 median, 1 min, 2 max; metrics counted from 0). Keys must all match.
b_stat_migrate() {
	local stats=$1 mib=$2 kind=$3 method=$4 m=$5 part=${6:-0}
	awk -F'\t' -v a="$mib" -v b="$kind" -v c="$method" -v f=$((6 + m * 3 + part)) \
		'$1 == a && $2 == b && $3 == c { print $f; exit }' <<<"$stats"
}

b_stat_stream() {
	local stats=$1 kind=$2 method=$3 m=$4 part=${5:-0}
	awk -F'\t' -v a="$kind" -v b="$method" -v f=$((5 + m * 3 + part)) \
		'$1 == a && $2 == b { print $f; exit }' <<<"$stats"
}

# b_ratio A B [PREC]: A/B, or n/a when either is missing.
b_ratio() {
	awk -v a="$1" -v b="$2" -v p="${3:-2}" 'BEGIN {
		if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) { print "n/a"; exit }
		printf "%.*f\n", p, a / b }'
}

# b_cell MED MIN MAX SCALE PREC: "med (min-max)" with values divided by SCALE.
b_cell() {
	awk -v m="$1" -v lo="$2" -v hi="$3" -v s="$4" -v p="$5" 'BEGIN {
		if (m == "" || m == "-") { print "-"; exit }
		if (lo == hi) { printf "%.*f\n", p, m / s; exit }
		printf "%.*f (%.*f–%.*f)\n", p, m / s, p, lo / s, p, hi / s }'
}

b_method_label() {
	case $1 in
	baseline) echo "baseline (criu + tar \\| ssh)" ;;
	stream-baseline) echo "OpenSSH (tar \\| ssh 'cat >/dev/null')" ;;
	ours) echo "nucleus-migrate" ;;
	stream-ours) echo "nucleus-migrate image stream" ;;
	stream-ours-2) echo "nucleus-migrate, two sessions at once (half the set each)" ;;
	stream-ours-sender) echo "nucleus-migrate's sender alone (into 'cat >/dev/null')" ;;
	stream-ours-local) echo "nucleus-migrate image stream without SSH (a unix socket)" ;;
	stream-ours-thread) echo "nucleus-migrate, its SSH session on a thread of its own" ;;
	ours-lazy) echo "nucleus-migrate --lazy" ;;
	*) echo "$1" ;;
	esac
}

# b_mem_mib STATS MIB METHOD METRIC: a median memory figure in MiB, or n/a.
b_mem_mib() { b_ratio "$(b_stat_migrate "$1" "$2" mixed "$3" "$4")" 1048576 0; }

# b_mem_size STATS: the largest size whose moves were sampled for memory
# (1024 when none was).
b_mem_size() {
	local m
	m=$(awk -F'\t' '$2 == "mixed" && $3 == "ours" && $27 != "-" { print $1 }' <<<"$1" | sort -n | tail -n1)
	echo "${m:-1024}"
}

# b_migrate_summary: the final line of `bench/run migrate` (mixed heap).
b_migrate_summary() {
	local f=$B_RESULTS/migrate.tsv stats mm
	[ -f "$f" ] || {
		echo "downtime_ratio_1024=n/a lazy_downtime_1024_s=n/a lazy_growth=n/a downtime_ratio_16=n/a" \
			"source_extra_mib_1024=n/a target_extra_mib_1024=n/a"
		return
	}
	stats=$(b_stats "$f" mib,kind,method "$B_METRICS_MIGRATE")
	mm=$(b_mem_size "$stats")
	echo "downtime_ratio_1024=$(b_ratio "$(b_stat_migrate "$stats" 1024 mixed ours 0)" \
		"$(b_stat_migrate "$stats" 1024 mixed baseline 0)")" \
		"lazy_downtime_1024_s=$(b_ratio "$(b_stat_migrate "$stats" 1024 mixed ours-lazy 0)" 1 3)" \
		"lazy_growth=$(b_ratio "$(b_stat_migrate "$stats" 1024 mixed ours-lazy 0)" \
			"$(b_stat_migrate "$stats" 64 mixed ours-lazy 0)")" \
		"downtime_ratio_16=$(b_ratio "$(b_stat_migrate "$stats" 16 mixed ours 0)" \
			"$(b_stat_migrate "$stats" 16 mixed baseline 0)")" \
		"source_extra_mib_$mm=$(b_mem_mib "$stats" "$mm" ours 7)" \
		"target_extra_mib_$mm=$(b_mem_mib "$stats" "$mm" ours 8)" \
		"baseline_source_extra_mib_$mm=$(b_mem_mib "$stats" "$mm" baseline 7)" \
		"baseline_target_extra_mib_$mm=$(b_mem_mib "$stats" "$mm" baseline 8)"
}

# b_stat_by STATS NKEYS KEYS... METRIC PART: one number from b_stats output
# grouped by NKEYS keys (PART: 0 median, 1 min, 2 max).
b_stat_by() {
	local stats=$1 nk=$2
	shift 2
	awk -F'\t' -v nk="$nk" -v want="$(printf '%s\t' "${@:1:$nk}")" -v m="${*:$((nk + 1)):1}" -v part="${*:$((nk + 2)):1}" '{
		k = ""; for (i = 1; i <= nk; i++) k = k $i "\t"
		if (k == want) { print $(nk + 3 + m * 3 + part); exit } }' <<<"$stats"
}

# b_drain_count STATS: the container count of the drains measured.
b_drain_count() { awk -F'\t' '{ print $1 }' <<<"$1" | sort -n | tail -n1; }

# b_drain_summary: the final line of `bench/run drain`.
b_drain_summary() {
	local f=$B_RESULTS/drain.tsv stats n mib
	[ -f "$f" ] || { echo "drain_ratio_16=n/a drain_worst_downtime_s=n/a"; return; }
	stats=$(b_stats "$f" count,mib,method "$B_METRICS_DRAIN")
	n=$(b_drain_count "$stats")
	mib=$(awk -F'\t' -v n="$n" '$1 == n { print $2; exit }' <<<"$stats")
	echo "drain_ratio_${n:-16}=$(b_ratio "$(b_stat_by "$stats" 3 "$n" "$mib" ours 0 0)" "$(b_stat_by "$stats" 3 "$n" "$mib" baseline 0 0)")" \
		"drain_worst_downtime_s=$(b_ratio "$(b_stat_by "$stats" 3 "$n" "$mib" ours 1 2)" 1 3)" \
		"baseline_drain_worst_downtime_s=$(b_ratio "$(b_stat_by "$stats" 3 "$n" "$mib" baseline 1 2)" 1 3)"
}

# b_rollback_summary: the final line of `bench/run rollback` (mixed heap,
# largest size).
b_rollback_summary() {
	local f=$B_RESULTS/rollback.tsv stats mib
	[ -f "$f" ] || { echo "rollback_s_1024=n/a"; return; }
	stats=$(b_stats "$f" mib,kind,method "$B_METRICS_ROLLBACK")
	mib=$(awk -F'\t' '$2 == "mixed" { print $1 }' <<<"$stats" | sort -n | tail -n1)
	echo "rollback_s_${mib:-1024}=$(b_ratio "$(b_stat_by "$stats" 3 "$mib" mixed ours 0 0)" 1 3)" \
		"baseline_rollback_s_${mib:-1024}=$(b_ratio "$(b_stat_by "$stats" 3 "$mib" mixed baseline 0 0)" 1 3)" \
		"rollback_ratio_${mib:-1024}=$(b_ratio "$(b_stat_by "$stats" 3 "$mib" mixed ours 0 0)" "$(b_stat_by "$stats" 3 "$mib" mixed baseline 0 0)")"
}

# b_stream_summary: the final line of `bench/run stream`.
b_stream_summary() {
	local f=$B_RESULTS/stream.tsv stats
	[ -f "$f" ] || { echo "stream_ratio=n/a stream_ratio_mixed=n/a"; return; }
	stats=$(b_stats "$f" kind,method "$B_METRICS_STREAM")
	echo "stream_ratio=$(b_ratio "$(b_stat_stream "$stats" random ours 0)" "$(b_stat_stream "$stats" random baseline 0)")" \
		"stream_ratio_mixed=$(b_ratio "$(b_stat_stream "$stats" mixed ours 0)" "$(b_stat_stream "$stats" mixed baseline 0)")" \
		"stream_two_sessions_x=$(b_ratio "$(b_stat_stream "$stats" random ours-2 0)" "$(b_stat_stream "$stats" random ours 0)")" \
		"stream_two_sessions_x_mixed=$(b_ratio "$(b_stat_stream "$stats" mixed ours-2 0)" "$(b_stat_stream "$stats" mixed ours 0)")" \
		"stream_sender_x=$(b_ratio "$(b_stat_stream "$stats" random ours-sender 0)" "$(b_stat_stream "$stats" random baseline 0)")" \
		"stream_sender_x_mixed=$(b_ratio "$(b_stat_stream "$stats" mixed ours-sender 0)" "$(b_stat_stream "$stats" mixed baseline 0)")" \
		"stream_local_x=$(b_ratio "$(b_stat_stream "$stats" random ours-local 0)" "$(b_stat_stream "$stats" random baseline 0)")" \
		"stream_local_x_mixed=$(b_ratio "$(b_stat_stream "$stats" mixed ours-local 0)" "$(b_stat_stream "$stats" mixed baseline 0)")" \
		"stream_thread_x=$(b_ratio "$(b_stat_stream "$stats" random ours-thread 0)" "$(b_stat_stream "$stats" random ours 0)")" \
		"stream_thread_x_mixed=$(b_ratio "$(b_stat_stream "$stats" mixed ours-thread 0)" "$(b_stat_stream "$stats" mixed ours 0)")"
}

b_report_machine() {
	local m=$1
	cat <<EOF
## Machine

| | |
| --- | --- |
| CPU | $(b_meta "$m" cpu), $(b_meta "$m" cores) cores |
| RAM | $(b_meta "$m" ram) |
| kernel | $(b_meta "$m" kernel) |
| CRIU | $(b_meta "$m" criu) |
| OpenSSH | $(b_meta "$m" openssh); negotiated between the nodes with its defaults: kex $(b_meta "$m" kex), cipher $(b_meta "$m" cipher) |
| libssh2 | $(b_meta "$m" libssh2) |
| OpenSSL | $(b_meta "$m" openssl) |
| fs.pipe-max-size | $(b_meta "$m" pipe_max) |
| transparent hugepages | $(b_meta "$m" thp) |
| free page reporting | $(b_meta "$m" page_reporting) |
| link | veth pair between two network namespaces (tests/lib/fixture.sh), MTU $(b_meta "$m" mtu) |
| images | tmpfs on both nodes |

EOF
}

b_report_recipe() {
	cat <<'EOF'
## Workload

`nm-memhog` (bench/workloads/memhog.c), started by `nm-ctr-start` as a
nucleus container (own pid, uts, ipc and net namespaces, session leader,
stdio not inherited). Its recipe, from `nm-memhog --help`:

```
EOF
	"$NM_BUILD_DIR/bench/workloads/nm-memhog" --help
	cat <<'EOF'
```

Downtime is what the workload itself saw: the largest gap between two of
its 10 ms ticks, counted from a reset made just before the move, and only
accepted when that gap ended inside the move's window (else the run is
"suspect" and left out of the medians). It includes up to one tick period.
Total time is the wall clock from the start of the dump to the end of the
restore command (container running on node 2); for post-copy, until the
last page has arrived, and stalls until then count as downtime. Bytes on the wire are node
1's link counters (sent + received) over the move. After every move the
workload re-checks its heap checksum; a mismatch marks the run suspect.

EOF
}

# b_split_lines STATS METHOD: one line per size and kind with the medians
# of METHOD's stages and their shares.
b_split_lines() {
	local stats=$1 method=$2 mib kind d x r dt img
	awk -F'\t' -v m="$method" '$3 == m { print $1 "\t" $2 }' <<<"$stats" | sort -n -k1,1 -s |
		while IFS=$'\t' read -r mib kind; do
			dt=$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 0)
			img=$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 3)
			d=$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 4)
			x=$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 5)
			r=$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 6)
			if [ -z "$d" ] || [ "$d" = "-" ] || [ "$x" = "-" ] || [ "$r" = "-" ]; then
				echo "- $mib MiB $kind: downtime ${dt:--} s (no stage times reported)"
				continue
			fi
			awk -v mib="$mib" -v kind="$kind" -v dt="$dt" -v img="$img" -v d="$d" -v x="$x" -v r="$r" 'BEGIN {
				s = d + x + r
				big = (x >= d && x >= r) ? "transfer" : (r >= d ? "restore" : "dump")
				rate = (img != "-" && img != "") ? sprintf(", %.0f MB/s of images", img / x / 1e6) : ""
				printf "- %s MiB %s: downtime %.2f s; dump %.2f s (%d%%), transfer %.2f s (%d%%%s), restore %.2f s (%d%%); largest: %s.\n",
					mib, kind, dt, d, 100 * d / s + 0.5, x, 100 * x / s + 0.5, rate, r, 100 * r / s + 0.5, big
			}'
		done
}

# b_setup_share STATS SETUP_S: how much of the baseline's transfer at the
# smallest size is only ssh's connection set-up (a persistent session saves it).
b_setup_share() {
	local mib x
	[ -n "$2" ] || return 0
	mib=$(awk -F'\t' '$3 == "baseline" { print $1 }' <<<"$1" | sort -n | head -n1)
	x=$(awk -F'\t' -v a="$mib" '$1 == a && $3 == "baseline" && $21 != "-" { print $21; exit }' <<<"$1")
	[ -n "$x" ] || return 0
	awk -v mib="$mib" -v s="$2" -v x="$x" 'BEGIN {
		printf "- At %s MiB the ssh connection set-up alone (%.2f s) is %d%% of the transfer.\n", mib, s, 100 * s / x + 0.5 }'
}

# b_budget_line STATS: what issue 8's target (our median downtime <= 0.5 x
# the baseline's, mixed heap, largest size) leaves for each stage.
b_budget_line() {
	local mib dt d r
	mib=$(awk -F'\t' '$2 == "mixed" && $3 == "baseline" { print $1 }' <<<"$1" | sort -n | tail -n1)
	[ -n "$mib" ] || return 0
	dt=$(b_stat_migrate "$1" "$mib" mixed baseline 0)
	d=$(b_stat_migrate "$1" "$mib" mixed baseline 4)
	r=$(b_stat_migrate "$1" "$mib" mixed baseline 6)
	awk -v mib="$mib" -v dt="$dt" -v d="$d" -v r="$r" 'BEGIN {
		t = dt / 2
		printf "- Budget: the target for our default path at %s MiB mixed (<= 0.5 x the baseline'"'"'s median downtime) is %.2f s. ", mib, t
		printf "CRIU'"'"'s own dump (%.2f s) and restore (%.2f s) as the baseline runs them already take %.2f s of it, ", d, r, d + r
		printf "leaving %.2f s for everything else if they stay serial: the transfer must overlap them (page server during the dump, restore starting on early images) or leave the downtime (--lazy).\n", t - d - r
	}'
}

# b_spread_lines FILE: min-max of the baseline's stages at the largest size.
b_spread_lines() {
	awk -F'\t' 'NR > 1 && $4 == "baseline" && $5 == "ok" { if ($2 + 0 > max) max = $2 + 0; rows[NR] = $0 }
		END {
			for (i in rows) {
				split(rows[i], f, "\t")
				if (f[2] + 0 != max) continue
				k = f[3]
				if (!(k in n)) { n[k] = 0; dlo[k] = xlo[k] = rlo[k] = 1e9 }
				n[k]++
				if (f[10] < dlo[k]) dlo[k] = f[10]; if (f[10] > dhi[k]) dhi[k] = f[10]
				if (f[11] < xlo[k]) xlo[k] = f[11]; if (f[11] > xhi[k]) xhi[k] = f[11]
				if (f[12] < rlo[k]) rlo[k] = f[12]; if (f[12] > rhi[k]) rhi[k] = f[12]
			}
			for (k in n)
				printf "- %d MiB %s, %d runs: dump %.2f-%.2f s, transfer %.2f-%.2f s, restore %.2f-%.2f s.\n",
					max, k, n[k], dlo[k], dhi[k], xlo[k], xhi[k], rlo[k], rhi[k]
		}' "$1" | sort
}

# b_report_analysis: what the numbers teach; first the baseline's split,
# which guides the optimisation, then where ours stands.
b_report_analysis() {
	local f=$B_RESULTS/migrate.tsv m=$B_RESULTS/migrate.meta sf=$B_RESULTS/stream.tsv stats sstats method
	echo "## Analysis"
	echo
	if [ -f "$f" ]; then
		stats=$(b_stats "$f" mib,kind,method "$B_METRICS_MIGRATE")
		echo "### What the baseline teaches"
		echo
		echo "Medians of the baseline's stages (share of dump + transfer + restore); an ssh"
		echo "connection set-up alone (\`ssh n2 true\`) took $(b_meta "$m" ssh_setup_s) s and is part of every transfer:"
		echo
		b_split_lines "$stats" baseline
		b_setup_share "$stats" "$(b_meta "$m" ssh_setup_s)"
		echo
		echo "Run-to-run spread of the stages at the largest size:"
		echo
		b_spread_lines "$f"
		b_budget_line "$stats"
		echo
	fi
	if [ -f "$sf" ]; then
		sstats=$(b_stats "$sf" kind,method "$B_METRICS_STREAM")
		echo "OpenSSH alone, default cipher ($(b_meta "$B_RESULTS/stream.meta" cipher)), streams a"
		echo "$(b_meta "$B_RESULTS/stream.meta" stream_mib) MiB checkpoint at $(b_cell "$(b_stat_stream "$sstats" random baseline 0)" "$(b_stat_stream "$sstats" random baseline 0 1)" "$(b_stat_stream "$sstats" random baseline 0 2)" 1 0) MB/s" \
			"(incompressible) and $(b_cell "$(b_stat_stream "$sstats" mixed baseline 0)" "$(b_stat_stream "$sstats" mixed baseline 0 1)" "$(b_stat_stream "$sstats" mixed baseline 0 2)" 1 0) MB/s"
		echo "(mixed heap): median (min–max), \`bench/run stream\`. OpenSSH does not compress by default, so both"
		echo "kinds cost it the same; a difference between them is run-to-run noise."
		echo
	fi
	cat <<'EOF'
How to read it: with leave-running off the container is frozen from the
moment CRIU freezes it until the restored tree resumes, so the baseline's
downtime is about the sum of its three stages. Each stage is a lever: the
transfer can overlap the dump (CRIU's page server through our channel),
shrink (zstd on pages that compress: the mixed heap) and use several cores
(parallel sessions); the restore can start on the first images instead of
after the last; dump and restore are CRIU's own work on fresh memory, which
only post-copy (`--lazy`) takes out of the downtime altogether.
EOF
	if [ -f "$m" ] && grep -q '^page_reporting=on' "$m"; then
		cat <<'EOF'

This VM hands free memory back to its host (free page reporting, see
Machine): memory that was freed and is touched again faults in slowly, so
the dump (writing fresh tmpfs pages) and the restore (filling a fresh
process) swing from run to run at large sizes, whichever tool runs. Runs
alternate between the tools for that reason; compare the spreads as well as
the medians.
EOF
	fi
	echo
	[ -f "$f" ] || return 0
	for method in ours ours-lazy; do
		grep -q "	$method	ok	" "$f" || continue
		echo "### Where $(b_method_label "$method") stands"
		echo
		b_split_lines "$stats" "$method"
		echo
	done
	b_report_targets "$stats"
	b_report_levers
}

# b_stream_stage_line STATS METHOD FORMAT: one line on a stage of the stream
# measured by METHOD, or nothing when these results have no such row.
# FORMAT takes, in order: METHOD's MB/s and its ratio to OpenSSH's,
# incompressible, then mixed; ours end to end over METHOD, incompressible
# and mixed.
b_stream_stage_line() {
	awk -v f="$3" -v xr="$(b_stat_stream "$1" random "$2" 0)" -v xm="$(b_stat_stream "$1" mixed "$2" 0)" \
		-v orr="$(b_stat_stream "$1" random ours 0)" -v om="$(b_stat_stream "$1" mixed ours 0)" \
		-v br="$(b_stat_stream "$1" random baseline 0)" -v bm="$(b_stat_stream "$1" mixed baseline 0)" 'BEGIN {
		if (xr == "" || xm == "" || xr == "-" || xm == "-") exit
		printf f "\n", xr, xr / br, xm, xm / bm, orr / xr, om / xm
	}'
}

# b_report_targets STATS: issue 8's targets, met or not, and what holds a
# missed one back, from the medians of this run.
b_report_targets() {
	local stats=$1 sf=$B_RESULTS/stream.tsv sstats mib
	grep -q "	ours	ok	" "$B_RESULTS/migrate.tsv" || return 0
	mib=$(awk -F'\t' '$2 == "mixed" && $3 == "ours" { print $1 }' <<<"$stats" | sort -n | tail -n1)
	echo "### Issue 8's targets"
	echo
	awk -v mib="$mib" -v dt="$(b_stat_migrate "$stats" "$mib" mixed ours 0)" \
		-v bdt="$(b_stat_migrate "$stats" "$mib" mixed baseline 0)" -v d="$(b_stat_migrate "$stats" "$mib" mixed ours 4)" \
		-v x="$(b_stat_migrate "$stats" "$mib" mixed ours 5)" -v r="$(b_stat_migrate "$stats" "$mib" mixed ours 6)" \
		-v img="$(b_stat_migrate "$stats" "$mib" mixed ours 3)" -v wire="$(b_stat_migrate "$stats" "$mib" mixed ours 2)" \
		-v bd="$(b_stat_migrate "$stats" "$mib" mixed baseline 4)" 'BEGIN {
		if (dt == "" || bdt == "" || dt == "-" || bdt == "-") exit
		t = bdt / 2; ratio = dt / bdt
		printf "- Default path, %s MiB mixed heap: median downtime %.2f s = %.2f x the baseline'"'"'s %.2f s (target <= 0.50 x, %.2f s): **%s**.", mib, dt, ratio, bdt, t, ratio <= 0.5 ? "met" : "missed"
		if (ratio > 0.5 && d != "-" && x != "-" && r != "-") {
			rest = dt - d - x - r
			big = (x >= d && x >= r) ? "the transfer" : (r >= d ? "the restore" : "the dump")
			# Pages streamed while CRIU dumped: the images sent after the
			# dump are a small part of what crossed.
			streamed = img * 4 < wire
			if (streamed)
				printf " What holds it back is %s: dump %.2f s (the pages crossed while CRIU dumped: %.0f MB on the wire), the other images (%.0f kB) %.2f s, restore and resume %.2f s (the stages, as the agent times them, overlap the freeze by a little either way).", big, d, wire / 1e6, img / 1e3, x, r
			else
				printf " What holds it back is %s: dump %.2f s, transfer %.2f s (%.0f MB/s of images, %.0f MB on the wire for %.0f MB of images), restore and resume %.2f s (the stages, as the agent times them, overlap the freeze by a little either way).", big, d, x, img / x / 1e6, wire / 1e6, img / 1e6, r
			need = t - d - r - (rest > 0 ? rest : 0)
			if (streamed)
				printf " The restore alone is %.0f%% of the %.2f s allowed; the dump, carrying the pages, would have to take %.2f s, where the baseline'"'"'s bare dump takes %.2f s.", 100 * r / t, t, t - r - x - (rest > 0 ? rest : 0), bd
			else if (need > 0)
				printf " With dump and restore as they are, the transfer would have to take %.2f s, i.e. %.0f MB/s of images (%.1fx what it did).", need, img / need / 1e6, x / need
			else
				printf " Dump and restore alone (%.2f s) already exceed the target.", d + r
		}
		printf "\n"
	}'
	awk -v l64="$(b_stat_migrate "$stats" 64 mixed ours-lazy 0)" -v l="$(b_stat_migrate "$stats" "$mib" mixed ours-lazy 0)" -v mib="$mib" 'BEGIN {
		if (l == "" || l == "-") { print "- Post-copy (`--lazy`): no successful run at " mib " MiB."; exit }
		if (l64 == "" || l64 == "-") {
			printf "- Post-copy (`--lazy`), mixed heap: median downtime %.2f s at %s MiB (target <= 1.0 s: **%s**); its growth from 64 MiB is not measured in this run (`--sizes` without 64).\n", l, mib, l <= 1.0 ? "met" : "missed"
			exit
		}
		printf "- Post-copy (`--lazy`), mixed heap: median downtime %.2f s at %s MiB (target <= 1.0 s: **%s**) and %.2f s at 64 MiB: growth %.2fx (target <= 2x: **%s**).\n", l, mib, l <= 1.0 ? "met" : "missed", l64, l / l64, l / l64 <= 2 ? "met" : "missed"
	}'
	if [ -f "$sf" ] && grep -q "	ours	ok	" "$sf"; then
		sstats=$(b_stats "$sf" kind,method "$B_METRICS_STREAM")
		awk -v om="$(b_stat_stream "$sstats" mixed ours 0)" -v bm="$(b_stat_stream "$sstats" mixed baseline 0)" \
			-v orr="$(b_stat_stream "$sstats" random ours 0)" -v br="$(b_stat_stream "$sstats" random baseline 0)" \
			-v ow="$(b_stat_stream "$sstats" mixed ours 2)" -v op="$(b_stat_stream "$sstats" mixed ours 3)" 'BEGIN {
			printf "- Stream, mixed heap: %.0f MB/s = %.2f x OpenSSH'"'"'s %.0f MB/s (target >= 1.0 x: **%s**); %.0f MB on the wire for %.0f MB (zstd).\n", om, om / bm, bm, (om / bm >= 1 ? "met" : "missed"), ow / 1e6, op / 1e6
			printf "- Stream, incompressible: %.0f MB/s = %.2f x OpenSSH'"'"'s %.0f MB/s (target >= 0.8 x: **%s**).\n", orr, orr / br, br, (orr / br >= 0.8 ? "met" : "missed")
		}'
		awk -v tm="$(b_stat_stream "$sstats" mixed ours-2 0)" -v om="$(b_stat_stream "$sstats" mixed ours 0)" \
			-v tr="$(b_stat_stream "$sstats" random ours-2 0)" -v orr="$(b_stat_stream "$sstats" random ours 0)" 'BEGIN {
			if (tm == "" || tr == "" || tm == "-" || tr == "-") exit
			printf "- The bound of striping here: the set sent as two halves at once, each in its own SSH session (its own sender process, sshd and writer thread; one receiving process; no reordering), ran at %.0f MB/s incompressible = %.2f x one session, and %.0f MB/s mixed = %.2f x.\n", tr, tr / orr, tm, tm / om
		}'
		b_stream_stage_line "$sstats" ours-sender "- The sending stage alone: our sender, the same bytes through the same SSH session into \`cat >/dev/null\` (the far side OpenSSH's stream has), ran at %.0f MB/s = %.2f x OpenSSH's incompressible and %.0f MB/s = %.2f x mixed. Checking and staging every byte on the target, on the same 2 cores, takes ours from there to %.2f x and %.2f x of it."
		awk -v hm="$(b_stat_stream "$sstats" mixed ours-thread 0)" -v om="$(b_stat_stream "$sstats" mixed ours 0)" \
			-v hr="$(b_stat_stream "$sstats" random ours-thread 0)" -v orr="$(b_stat_stream "$sstats" random ours 0)" 'BEGIN {
			if (hm == "" || hr == "" || hm == "-" || hr == "-") exit
			printf "- The SSH session on a thread of its own (`[ssh] thread`: libssh2 encrypts on that thread, the sender'"'"'s loop reads, hashes and compresses, a socketpair between them) ran at %.0f MB/s incompressible = %.2f x on the loop, and %.0f MB/s mixed = %.2f x.\n", hr, hr / orr, hm, hm / om
		}'
		b_stream_stage_line "$sstats" ours-local "- Everything but the transport: the same sender and receiver joined by a unix socket on the target instead of SSH (every byte read, hashed, compressed, checked and staged, none encrypted) ran at %.0f MB/s = %.2f x OpenSSH's incompressible and %.0f MB/s = %.2f x mixed; SSH through libssh2 takes ours from there to %.2f x and %.2f x of it."
		echo
		echo "A missed stream target is held back by CPU, at the stage the last lines"
		echo "measure. Both nodes of this fixture share the same 2 cores. Our sender reads,"
		echo "hashes, compresses and encrypts through libssh2, which negotiates aes128-ctr"
		echo "with hmac-sha2-256 (it has no chacha20 or GCM) and makes one libcrypto call"
		echo "per 16 bytes (our provider, transfer/ssh-ctr.c, serves each from 4 KiB of"
		echo "keystream; the calls remain); OpenSSH's client encrypts with"
		echo "chacha20-poly1305, much faster on a CPU with AVX-512, and its stream does no"
		echo "hashing or compression and writes nothing on the far side. Our receiver"
		echo "checks, decompresses, hashes and writes every byte into tmpfs; when the VM's"
		echo "free memory is cold those writes pay for pages the host must fault in (ours"
		echo "swung between about 110 and 270 MB/s in one bench on an earlier machine, for"
		echo "the same bytes). The line on the bound of striping says how much a second"
		echo "session, encrypting on another core, takes back here."
	fi
	echo
}

# b_load_warning META: a loud paragraph (after a blank line) when other work
# ran when a run started (the CPU over 25% busy in the second before it, or
# a 1-minute load average above the 2 cores): such numbers check the
# plumbing and are not the figures.
b_load_warning() {
	local l b
	l=$(b_meta "$1" load_before | cut -d' ' -f1)
	b=$(b_meta "$1" busy_before)
	awk -v l="${l:-0}" -v b="${b%\%}" 'BEGIN { exit !(l > 2.0 || b + 0 > 25) }' || return 0
	printf '\n\n**Loaded machine (load average %s, CPU %s busy at the start): a plumbing check, not the figures; rerun on an idle machine.**' \
		"$(b_meta "$1" load_before)" "$b"
}

# b_report_memory STATS: the memory table, for the sizes sampled.
b_report_memory() {
	local stats=$1 rows mib method
	rows=$(awk -F'\t' '$27 != "-" && $27 != "" { print $1 "\t" $2 "\t" $3 }' <<<"$stats")
	[ -n "$rows" ] || return 0
	echo "### Memory a move adds above the container"
	echo
	echo "The most memory each node's movers held above the container during the move, less what they held just"
	echo "before it: $(b_meta "$B_RESULTS/migrate.meta" memory_cgroup). Counted: what the kernel charges"
	echo "to that cgroup (the agent or the baseline's criu, CRIU, the keeper, sshd's sessions, \`dial-stdio\`,"
	echo "the remote \`tar x\`, their page tables and socket and pipe buffers, and every tmpfs page they wrote:"
	echo "images, staging), less the resident anonymous memory of the container's own tasks restored inside it."
	echo "\"of it tmpfs\" is the cgroup's shmem at that peak. MiB = 2^20 bytes."
	echo
	echo "| size | heap | method | source extra MiB | of it tmpfs | target extra MiB | of it tmpfs |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	while IFS=$'\t' read -r mib kind method; do
		printf '| %s MiB | %s | %s | %s | %s | %s | %s |\n' "$mib" "$kind" "$(b_method_label "$method")" \
			"$(b_cell "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 7)" "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 7 1)" "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 7 2)" 1048576 0)" \
			"$(b_cell "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 9)" "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 9 1)" "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 9 2)" 1048576 0)" \
			"$(b_cell "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 8)" "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 8 1)" "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 8 2)" 1048576 0)" \
			"$(b_cell "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 10)" "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 10 1)" "$(b_stat_migrate "$stats" "$mib" "$kind" "$method" 10 2)" 1048576 0)"
	done <<<"$rows"
	echo
}

# b_report_drain: the drain section.
b_report_drain() {
	local f=$B_RESULTS/drain.tsv m=$B_RESULTS/drain.meta stats n mib method row
	[ -f "$f" ] || return 0
	stats=$(b_stats "$f" count,mib,method "$B_METRICS_DRAIN")
	n=$(b_drain_count "$stats")
	mib=$(awk -F'\t' -v n="$n" '$1 == n { print $2; exit }' <<<"$stats")
	cat <<EOF
## Drain: \`bench/run drain\`

Command: \`$(b_meta "$m" command)\` (in effect: \`$(b_meta "$m" effective)\`)
Ran $(b_meta "$m" started) to $(b_meta "$m" finished); load average before $(b_meta "$m" load_before), after $(b_meta "$m" load_after); CPU busy just before the start: $(b_meta "$m" busy_before) of all cores.
Our tool: $(b_meta "$m" ours); a drain without \`--parallel\` runs $(b_meta "$m" drain_parallel) moves at once.
$n mixed-heap containers of $mib MiB on node 1, all moved to node 2: ours by one \`nucleus-migrate drain
--to node2\` at its default parallelism, the baseline by its hand-made move of each in turn. Wall: from the start to the last
container running on node 2. Downtime: each container's own largest tick gap; worst and median over the
$n containers of a run. Cells: median (min–max) over successful runs.$(b_load_warning "$m")

| method | runs ok | wall s | worst downtime s | median downtime s |
| --- | --- | --- | --- | --- |
EOF
	for method in baseline ours; do
		row=$(awk -F'\t' -v n="$n" -v c="$method" '$1 == n && $3 == c' <<<"$stats")
		[ -n "$row" ] || { echo "| $(b_method_label "$method") | not run (missing) | | | |"; continue; }
		printf '| %s | %s/%s | %s | %s | %s |\n' "$(b_method_label "$method")" "$(cut -f4 <<<"$row")" "$(cut -f5 <<<"$row")" \
			"$(b_cell "$(cut -f6 <<<"$row")" "$(cut -f7 <<<"$row")" "$(cut -f8 <<<"$row")" 1 3)" \
			"$(b_cell "$(cut -f9 <<<"$row")" "$(cut -f10 <<<"$row")" "$(cut -f11 <<<"$row")" 1 3)" \
			"$(b_cell "$(cut -f12 <<<"$row")" "$(cut -f13 <<<"$row")" "$(cut -f14 <<<"$row")" 1 3)"
	done
	echo
	b_report_failures_generic "$f"
	echo "Summary: \`$(b_drain_summary)\`"
	echo
}

# b_report_rollback: the rollback section.
b_report_rollback() {
	local f=$B_RESULTS/rollback.tsv m=$B_RESULTS/rollback.meta stats mib kind method row
	[ -f "$f" ] || return 0
	stats=$(b_stats "$f" mib,kind,method "$B_METRICS_ROLLBACK")
	cat <<EOF
## Rollback: \`bench/run rollback\`

Command: \`$(b_meta "$m" command)\` (in effect: \`$(b_meta "$m" effective)\`)
Ran $(b_meta "$m" started) to $(b_meta "$m" finished); load average before $(b_meta "$m" load_before), after $(b_meta "$m" load_after); CPU busy just before the start: $(b_meta "$m" busy_before) of all cores.
Our tool: $(b_meta "$m" ours).
A move whose restore fails on node 2. Ours: node 2's agent runs with \`NM_FAULT=fail=dest-restore\`
(agent/daemon/fault.c: the images are streamed and verified, then the restore fails before CRIU runs);
the failure is that agent's log line, "seen" is node 1's agent journaling \`rolling-back\` (both stamped
in ms). Baseline: after its dump and transfer, \`criu restore\` of its own images on node 1 (its dump ended
the tree), from the moment the images arrived. Rollback: from the failure to the container's first tick
on node 1 again (its own clock). Downtime: the whole freeze. Cells: median (min–max) over successful runs.$(b_load_warning "$m")

| size | heap | method | runs ok | rollback s | failure seen after s | mover says running after s | downtime s | total s |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
EOF
	while IFS=$'\t' read -r mib kind; do
		for method in baseline ours; do
			row=$(awk -F'\t' -v a="$mib" -v b="$kind" -v c="$method" '$1 == a && $2 == b && $3 == c' <<<"$stats")
			[ -n "$row" ] || { echo "| $mib MiB | $kind | $(b_method_label "$method") | not run (missing) | | | | | |"; continue; }
			printf '| %s MiB | %s | %s | %s/%s | %s | %s | %s | %s | %s |\n' "$mib" "$kind" "$(b_method_label "$method")" \
				"$(cut -f4 <<<"$row")" "$(cut -f5 <<<"$row")" "$(b_cell_m "$row" 0 1 3)" "$(b_cell_m "$row" 1 1 3)" \
				"$(b_cell_m "$row" 2 1 3)" "$(b_cell_m "$row" 3 1 3)" "$(b_cell_m "$row" 4 1 3)"
		done
	done < <(awk -F'\t' '{ print $1 "\t" $2 }' <<<"$stats" | awk '!seen[$0]++' | sort -n -k1,1 -s)
	echo
	b_report_failures_generic "$f"
	echo "Summary: \`$(b_rollback_summary)\`"
	echo
}

# b_report_failures_generic FILE: runs left out (status not ok), with the
# note (last column) and the keys before the status.
b_report_failures_generic() {
	local bad
	bad=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "status") s = i; next }
		$s != "ok" { k = ""; for (i = 1; i < s; i++) k = k (i > 1 ? " " : "") $i; printf "- %s: %s (%s)\n", k, $s, $NF }' "$1")
	[ -n "$bad" ] || return 0
	echo "Runs left out of the medians:"
	echo
	echo "$bad"
	echo
}

# b_report_issue14: issue 14's targets, each met or missed, and what holds
# a missed one back: the stage and its measured limit, from these results.
b_report_issue14() {
	local f=$B_RESULTS/migrate.tsv stats="" dstats="" rstats="" mm n dmib rmib
	echo "### Issue 14's targets"
	echo
	[ -f "$f" ] && stats=$(b_stats "$f" mib,kind,method "$B_METRICS_MIGRATE")
	# Small containers: the fixed cost of a move.
	awk -v dt="$(b_stat_migrate "$stats" 16 mixed ours 0)" -v bdt="$(b_stat_migrate "$stats" 16 mixed baseline 0)" \
		-v d="$(b_stat_migrate "$stats" 16 mixed ours 4)" -v x="$(b_stat_migrate "$stats" 16 mixed ours 5)" \
		-v r="$(b_stat_migrate "$stats" 16 mixed ours 6)" -v bd="$(b_stat_migrate "$stats" 16 mixed baseline 4)" \
		-v bx="$(b_stat_migrate "$stats" 16 mixed baseline 5)" -v br="$(b_stat_migrate "$stats" 16 mixed baseline 6)" \
		-v setup="$(b_meta "$B_RESULTS/migrate.meta" ssh_setup_s)" 'BEGIN {
		if (dt == "" || bdt == "" || dt == "-" || bdt == "-") { print "- `downtime_ratio_16` (target <= 0.5): not measured yet (`bench/run migrate` with size 16)."; exit }
		ratio = dt / bdt
		printf "- `downtime_ratio_16` = %.2f (ours %.3f s, baseline %.3f s; target <= 0.5): **%s**.", ratio, dt, bdt, ratio <= 0.5 ? "met" : "missed"
		if (d != "-" && x != "-" && r != "-" && d != "") {
			big = (x >= d && x >= r) ? "the transfer" : (r >= d ? "the restore" : "the dump")
			printf " At 16 MiB a move is its fixed cost: ours spends dump %.3f s, transfer %.3f s, restore and resume %.3f s (largest: %s)", d, x, r, big
			if (dt - d - x - r > 0) printf ", and %.3f s of the downtime outside those stages (freeze to dump, the handshakes);", dt - d - x - r
			else printf "; as the agent times them, they overlap the freeze by a little;"
			if (bd != "-" && bd != "") printf " the baseline dump %.3f s, transfer %.3f s (an ssh set-up alone is %s s), restore %.3f s.", bd, bx, setup, br
			printf " For 0.5 x, ours must fit in %.3f s: CRIU'"'"'s dump and restore as the baseline runs them take %.3f s of it.", bdt / 2, bd + br
		}
		printf "\n" }'
	# Memory.
	if [ -n "$stats" ]; then
		mm=$(b_mem_size "$stats")
		awk -v mm="$mm" -v s="$(b_stat_migrate "$stats" "$mm" mixed ours 7)" -v t="$(b_stat_migrate "$stats" "$mm" mixed ours 8)" \
			-v ss="$(b_stat_migrate "$stats" "$mm" mixed ours 9)" -v ts="$(b_stat_migrate "$stats" "$mm" mixed ours 10)" \
			-v bs="$(b_stat_migrate "$stats" "$mm" mixed baseline 7)" -v bt="$(b_stat_migrate "$stats" "$mm" mixed baseline 8)" \
			-v img="$(b_stat_migrate "$stats" "$mm" mixed ours 3)" 'BEGIN {
			M = 1048576
			if (s == "" || s == "-") { print "- `source_extra_mib_1024` (target <= 64, pages streamed during the dump): not measured yet (`bench/run migrate`, `--mem-sizes 1024`)."; exit }
			printf "- `source_extra_mib_%s` = %.0f (target at 1024 MiB <= 64): **%s**; `target_extra_mib_%s` = %.0f. Of the source'"'"'s peak %.0f MiB is tmpfs, of the target'"'"'s %.0f MiB.", mm, s / M, s / M <= 64 ? "met" : "missed", mm, t / M, ss / M, ts / M
			if (s / M > 64 && img != "" && img != "-" && ss / img > 0.5)
				printf " What holds the source back is the local image set: the dump writes every page (%.0f MiB of images) to the node'"'"'s tmpfs before the stream sends it; only pages streamed while CRIU dumps (its page server through the peer session) leave it out.", img / M
			if (t != "" && t != "-")
				printf " On the target the peak is %.0f MiB on tmpfs (the staging) and %.0f MiB besides (the agent, CRIU, sshd and the relay, buffers)%s.", ts / M, (t - ts) / M, (img != "" && img != "-" && ts / img > 0.5) ? ": the whole image set is staged before CRIU reads it, and the restore frees it page by page only after that" : ""
			if (bs != "" && bs != "-")
				printf " The baseline adds %.0f MiB on the source and %.0f MiB on the target (its images stay on both).", bs / M, bt / M
			printf "\n" }'
	else
		echo "- \`source_extra_mib_1024\`, \`target_extra_mib_1024\`: not measured yet (\`bench/run migrate\`)."
	fi
	# Drain.
	if [ -f "$B_RESULTS/drain.tsv" ]; then
		dstats=$(b_stats "$B_RESULTS/drain.tsv" count,mib,method "$B_METRICS_DRAIN")
		n=$(b_drain_count "$dstats")
		dmib=$(awk -F'\t' -v n="$n" '$1 == n { print $2; exit }' <<<"$dstats")
		awk -v n="$n" -v mib="$dmib" -v w="$(b_stat_by "$dstats" 3 "$n" "$dmib" ours 0 0)" -v bw="$(b_stat_by "$dstats" 3 "$n" "$dmib" baseline 0 0)" \
			-v worst="$(b_stat_by "$dstats" 3 "$n" "$dmib" ours 1 2)" -v bworst="$(b_stat_by "$dstats" 3 "$n" "$dmib" baseline 1 2)" \
			-v p="$(b_meta "$B_RESULTS/drain.meta" drain_parallel | cut -d' ' -f1)" \
			-v single="$(b_stat_migrate "$stats" "$dmib" mixed ours 1)" 'BEGIN {
			if (w == "" || bw == "" || w == "-" || bw == "-") { printf "- `drain_ratio_%s` (target <= 0.35): both sides not measured yet.\n", n; exit }
			printf "- `drain_ratio_%s` = %.2f (ours %.2f s, baseline %.2f s for %s x %s MiB; target <= 0.35%s): **%s**; worst downtime %.3f s (baseline %.3f s).", n, w / bw, w, bw, n, mib, (n == 16 && mib == 64) ? "" : ", set for 16 x 64 MiB", w / bw <= 0.35 ? "met" : "missed", worst, bworst
			printf " The baseline takes %.2f s a container; at %s moves at once ours took %.2f s a container, each move %.2f s while the others ran", bw / n, p, w / n, w * p / n
			if (single != "" && single != "-") printf " (%.2f s alone, `bench/run migrate` at %s MiB): the moves share the same 2 cores, so parallelism buys less than %sx.", single, mib, p
			else printf "."
			printf " For 0.35 x the drain must take %.2f s, %.2f s a container.\n", 0.35 * bw, 0.35 * bw / n }'
	else
		echo "- \`drain_ratio_16\` (target <= 0.35): not measured yet (\`bench/run drain\`)."
	fi
	# Rollback.
	if [ -f "$B_RESULTS/rollback.tsv" ]; then
		rstats=$(b_stats "$B_RESULTS/rollback.tsv" mib,kind,method "$B_METRICS_ROLLBACK")
		rmib=$(awk -F'\t' '$2 == "mixed" { print $1 }' <<<"$rstats" | sort -n | tail -n1)
		awk -v mib="$rmib" -v rb="$(b_stat_by "$rstats" 3 "$rmib" mixed ours 0 0)" -v seen="$(b_stat_by "$rstats" 3 "$rmib" mixed ours 1 0)" \
			-v back="$(b_stat_by "$rstats" 3 "$rmib" mixed ours 2 0)" -v brb="$(b_stat_by "$rstats" 3 "$rmib" mixed baseline 0 0)" 'BEGIN {
			if (rb == "" || rb == "-") { printf "- `rollback_s_%s` (target <= 0.1): not measured yet.\n", mib; exit }
			printf "- `rollback_s_%s` = %.3f s (target <= 0.1): **%s**. The source learns of the failure %.3f s after it", mib, rb, rb <= 0.1 ? "met" : "missed", seen
			if (back != "" && back != "-")
				printf "; its agent has the container running again %.3f s later (the rollback proper)%s", back - seen, (rb > back ? sprintf(", and the container ticks %.3f s after that", rb - back) : " (the container ticked a little before the agent said so)")
			printf "."
			if (brb != "" && brb != "-")
				printf " The baseline'"'"'s way back, CRIU restoring its own %s MiB images, takes %.3f s; ours is %.2f x that. Ours resumes the tasks its dump held stopped; only a tree the dump had to end (its copy needs its pids, a terminal or a file lock: `ckpt_tree_holdable`) is restored from its images, bounded by that restore.", mib, brb, rb / brb
			printf "\n" }'
	else
		echo "- \`rollback_s_1024\` (target <= 0.1): not measured yet (\`bench/run rollback\`)."
	fi
	echo
}

# b_report_levers: what each lever of our default path does, for reading
# the numbers above (their measurements are in the commit history).
b_report_levers() {
	cat <<'EOF'
### The levers in our default path

- **The restore consumes the staging** (`[agent] consume_staging`, on by
  default): CRIU's auto-dedup punches each page out of the staged
  `pages-*.img` once it has restored it, so the next restored pages land in
  the tmpfs pages just freed, which are warm. On a VM with free page
  reporting a restore into cold memory is several times slower: compare the
  baseline's restore stage above with ours. The node never holds the images
  and the restored memory in full at once.
- **zstd on the stream** (feature `zstd`, fast level -2): chunks that shrink
  by a sixteenth go compressed, incompressible pages as they are.
- **Each byte hashed once** (feature `file-mac`): files end with the tree
  HMAC so far instead of a per-file SHA-256; the check per file is as strong.
- **Parallel reads**: up to three chunks read and compressed at once on the
  sender's thread pool, hashed in order.
- **sshd's pipes grown to 1 MiB** (`transfer/dial.c`): with the default
  64 KiB pipe between the target's sshd and `dial-stdio`, sshd buffered the
  channel window itself, growing its buffer in steps whose fresh pages
  fault in slowly on this VM; the first megabytes of every stream crawled
  at 64 KiB per ~0.1 s. That was most of a small container's transfer.
- **sshd's pipes go to the agent itself** (RELAY_FDS): `dial-stdio`, the
  peer key's forced command, hands the session's stdin and stdout to the
  target's agent over the control socket instead of copying every byte
  between them and the socket (a read, a write and two wake-ups per 256
  KiB; before that change per 64 KiB into a buffer freed and faulted in
  again each time: 1.5 s of system time per 2 GiB). In a same-day
  stream A/B against the build before (3 rounds of 2 runs, alternating),
  the incompressible stream ran at 160-233 MB/s against 95-198 MB/s.
- **The receiver's writes off the loop** (`transfer/recv-write.c`): the
  loop checks, decompresses and hashes each frame into a buffer of the
  writer's; the writes run on the threadpool, in order, a MiB at a time,
  and the session is not read while 8 MiB wait. Into memory the VM had
  handed back, `write()` had taken 3.8 s of a 7.3 s 1 GiB stream on the
  loop (`perf`), which meanwhile could not read, check or decompress.
  The price is one copy of each uncompressed frame into the writer's
  buffer (about 0.4 s of the loop's time per GiB here; a ZDATA frame is
  decompressed into it directly). Same day, 7 alternating rounds of 2
  runs against the build before (the first 3 before waiting frames shared
  a buffer): mixed heap 236 against 233 MB/s, incompressible 189 against
  198 MB/s (medians of the round medians; 168 against 134 and 135 against
  122 MB/s in the first, coldest round):
  no gain on this 2-core machine, whose cores the copy competes for,
  but a slow staging file system no longer stalls the agent.
- **Pages stream while CRIU dumps** (`[agent] stream_pages`, on by
  default, feature `ps-stream`): the dump sends its pages to CRIU's page
  server on the target through the peer session, each frame MACed,
  checked, and zstd-compressed where it pays, so the transfer of the pages
  overlaps the dump, and the source writes no page images (its tasks, held
  stopped until the commit, are what a rollback resumes). The dump stage
  above then carries the pages' transfer; the transfer stage is only the
  other images.
- **Page frames tagged as they travel** (feature `ps-ztag`): a compressed
  page frame's tag covers its compressed bytes, so each side hashes what
  crosses the wire (0.39 of a mixed heap's bytes) rather than every page
  byte, and the target checks a frame before it decompresses it. Under
  `perf`, the source agent's loop thread (the pace-setter of a streamed
  dump) spent 18% fewer samples on a 1 GiB mixed dump (1699 against 2084
  at 499 Hz), its SHA-256 share 285 against 464.
- **Poly1305 page tags** (feature `ps-poly1305`): each page frame's tag
  is ChaCha20-Poly1305's over the frame as associated data, under a key of
  the stream's own, instead of HMAC-SHA256: 0.08 s per GiB on each side
  instead of 0.62 s. Six alternating pairs against the build before:
  the dump carrying an incompressible 1 GiB heap 4.41 s against 5.40 s
  (medians), a mixed one 3.81 against 4.02 s.
- **Frame buffers kept in the heap** (`mem_keep_stream_buffers`): glibc
  mapped each encoded page frame's buffer on its own and unmapped it once
  sent, so the source's loop faulted in and zeroed fresh pages for every
  frame (222 of its 1686 samples on a 1 GiB incompressible move); with
  its thresholds raised the frames reuse the heap. Three alternating pairs
  against the build before: the source agent's CPU 1.4-2.2 s lower per
  run, the incompressible dump 0.5-1.0 s shorter. Incompressible page
  frames also skip zstd after one that did not shrink (1, 2, 4... up to 16
  frames).
- **Reads into cache-line-aligned buffers** (`io_buf_alloc()`): `malloc()`
  returns large blocks 16 bytes into a page, and on this CPU the kernel's
  copy from page-aligned sources (the page cache, a pipe, CRIU's spliced
  pages) into such a buffer runs about 4x slower. Aligned, signing a 1 GiB
  staging takes 0.79 s instead of 1.12 s (`nucleus-migrate verify`,
  `farm-bench` A/B), and the source's read of CRIU's page stream fell from
  218 to 41 samples per 1 GiB dump.
- **Post-copy** (`--lazy`): the container resumes on the target after the
  non-memory images; its pages follow through the same SSH session.

What sets the default path's downtime here: the dump, which carries the
pages at the page stream's pace (each frame read from CRIU, compressed,
tagged and encrypted on the source agent's loop thread, libssh2 calling
libcrypto per 16-byte block; checked, decompressed and handed to CRIU's
page server on the target, whose sshd shares the same 2 cores);
then the signing of the staging (one HMAC pass, about 0.8 s per GiB, beside
CRIU's first steps; a consuming restore's page reads wait for it) and
CRIU's restore. The signing's own limit is SHA-256 on this CPU: 1.81
GB/s (`openssl speed -evp sha256`, 1 MiB blocks, 2026-12-07), 0.59 s per
GiB, with reading the staging 0.05-0.1 s more (hashing a mapped 1 GiB
tmpfs file took 0.67 s, reading it 0.71-0.78 s). It cannot start
before the dump ends: the nucleus tree HMAC is one pass over the tree
in its canonical order, and images that sort before `pages-*.img`
(core, inventory, mm and others) reach the target in the image stream,
after the dump. Only work done before the freeze (iterative pre-copy,
which needs the soft-dirty tracking this kernel lacks, so it is not built)
or after the resume (post-copy, `--lazy`) leaves the downtime. The
baseline's restore swings most with the VM's memory state (4.2 s on one
day, 14 s on another, for the same 1 GiB), and the ratio with it: compare
our own downtime across runs too.

Lanes (`[ssh] lanes`, `nucleus-migrate --lanes N`; DESIGN.md, "Striping
the image stream"): a move's page frames dealt in turn over up to four
SSH sessions, each encrypting on a thread of its own. `auto`, the
default, takes one session on a node of two cores or fewer, so every
move above ran over one. On this fixture a second session costs more
than it gives: in three alternating pairs of 1 GiB moves (2026-12-07,
`OURS_AGENT_SET=ssh.lanes=1` against `ssh.lanes=2`) the dump carrying a
mixed heap's pages took 2.47-2.76 s over one session and 2.90-3.25 s
over two, an incompressible heap's 2.98-3.62 s and 3.66-3.74 s: the
second session's encryption needs a core beside the agent's loop and
CRIU's, and the two nodes share two. The image stream is not striped:
in a default move it carries the non-page images, about 10 kB.
`bench/run stream` measures that stream carrying every page, and bounds
what striping it would give in the same runs: the set sent as two
halves at once, in two sessions (the row "two sessions at once", the
`stream_two_sessions_x` keys). Over 8 runs that
was 1.18 x one session incompressible and 1.01 x mixed on an AMD EPYC
machine of this kind, and 1.07 x and 0.91 x on an Intel Xeon with
AVX-512 (both 2026-12-05): a second session fills the time the first
one's loop thread spends waiting (70 % busy, `perf`), and no core is idle
here beyond that. Three runs are too few for this row: the slow runs into
cold memory decide the median (a first `--runs 3` said 1.37 x and 1.21 x),
so `bench/run stream` now makes 8 by default.
Its first piece is built: one session whose SSH work runs on a thread of
its own (`[ssh] thread`, off by default; the row "its SSH session on a
thread of its own", the `stream_thread_x` keys). On this fixture it costs
more than it gives (0.95 x and 0.94 x on the Xeon, 8 runs, 2026-12-05):
the handover through a socketpair adds CPU and waits, and there is no
idle core to take the encryption.
The sending stage's own limit is measured in the same runs too (the row
"sender alone", the `stream_sender_x` keys): our sender into `cat
>/dev/null`, the far side OpenSSH's stream has. Where OpenSSH's
chacha20-poly1305 runs at twice the speed of libssh2's aes128-ctr (the
Xeon: about 620 against 370 MB/s), that limit alone keeps the stream
below its targets, whatever the receiver does.
A drain is mostly CPU-bound, with no one thread setting its pace: under
`perf record -a` (one drain of 16 x 64 MiB, 2026-12-06) 83 % of the two
cores were busy (the agents 41 %, CRIU 22 %, sshd 9 %, the `ip` and
`iptables` runs with which CRIU saves and restores each container's
network namespace 5 %) and 17 % idle, while the busiest thread, the
source agent's loop, never passed 64 % of a core in any quarter second.
The idle part is the gaps between the moves' steps: a third move at once
fills them for about 6 %, at a tenth more downtime per container, and
opening the next move's SSH link ahead gained nothing (DESIGN.md). A page
streamed while CRIU dumps
costs the target more passes than one in the image stream (checked by the
link, copied into CRIU's page server, written, then read again to sign
the staging); compressing the page frames on the pool instead of the
loop thread did not help there (DESIGN.md).

The target's writes into tmpfs pay for memory the VM handed back to its
host: a 1 GiB write into pages freed long before took 2.5 s where the same
write into warm pages took 0.43-0.54 s (one machine, minutes apart). When
the host is in that state the image stream's receiver, not the sender,
sets the stream's pace (`perf`: its thread at 100%, in the kernel's copy
into fresh pages), and OpenSSH's `cat >/dev/null` writes nothing: compare
the baseline's own dump and restore stages across runs to see the state.

EOF
}

b_report_migrate() {
	local f=$B_RESULTS/migrate.tsv m=$B_RESULTS/migrate.meta stats mib kind method
	[ -f "$f" ] || return 0
	stats=$(b_stats "$f" mib,kind,method "$B_METRICS_MIGRATE")
	cat <<EOF
## Migrate: \`bench/run migrate\`

Command: \`$(b_meta "$m" command)\` (in effect: \`$(b_meta "$m" effective)\`)
Ran $(b_meta "$m" started) to $(b_meta "$m" finished); load average before $(b_meta "$m" load_before), after $(b_meta "$m" load_after); CPU busy just before the start: $(b_meta "$m" busy_before) of all cores.
Our tool: $(b_meta "$m" ours).
Runs alternate the methods, and the order of methods and heap kinds flips every other run. Cells: median (min–max) over successful runs.$(b_load_warning "$m")

EOF
	awk -F'\t' '{ print $1 "\t" $2 }' <<<"$stats" | awk '!seen[$0]++' | sort -n -k1,1 -s | while IFS=$'\t' read -r mib kind; do
		echo "### $mib MiB, $kind heap"
		echo
		echo "| method | runs ok | downtime s | total s | wire MB | images MB | dump s | transfer s | restore s |"
		echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
		for method in baseline ours ours-lazy; do
			local row n all
			row=$(awk -F'\t' -v a="$mib" -v b="$kind" -v c="$method" '$1 == a && $2 == b && $3 == c' <<<"$stats")
			if [ -z "$row" ]; then
				[ "$method" = baseline ] || echo "| $(b_method_label "$method") | not run (missing) | | | | | | | |"
				continue
			fi
			n=$(cut -f4 <<<"$row")
			all=$(cut -f5 <<<"$row")
			printf '| %s | %s/%s | %s | %s | %s | %s | %s | %s | %s |\n' "$(b_method_label "$method")" "$n" "$all" \
				"$(b_cell_m "$row" 0 1 3)" "$(b_cell_m "$row" 1 1 3)" "$(b_cell_m "$row" 2 1e6 1)" \
				"$(b_cell_m "$row" 3 1e6 1)" "$(b_cell_m "$row" 4 1 3)" "$(b_cell_m "$row" 5 1 3)" \
				"$(b_cell_m "$row" 6 1 3)"
		done
		printf '| ours/baseline | | %s | %s | %s | | | | |\n\n' \
			"$(b_ratio "$(b_stat_migrate "$stats" "$mib" "$kind" ours 0)" "$(b_stat_migrate "$stats" "$mib" "$kind" baseline 0)")" \
			"$(b_ratio "$(b_stat_migrate "$stats" "$mib" "$kind" ours 1)" "$(b_stat_migrate "$stats" "$mib" "$kind" baseline 1)")" \
			"$(b_ratio "$(b_stat_migrate "$stats" "$mib" "$kind" ours 2)" "$(b_stat_migrate "$stats" "$mib" "$kind" baseline 2)")"
	done
	b_report_memory "$stats"
	b_report_failures "$f"
	b_report_warmup "$B_RESULTS/migrate-warmup.tsv"
	echo "Summary: \`$(b_migrate_summary)\`"
	echo
}

# b_cell_m ROW METRIC SCALE PREC: a table cell from one b_stats row (3 keys).
b_cell_m() {
	local f=$((6 + $2 * 3))
	b_cell "$(cut -f$f <<<"$1")" "$(cut -f$((f + 1)) <<<"$1")" "$(cut -f$((f + 2)) <<<"$1")" "$3" "$4"
}

# b_report_warmup FILE: the unrecorded warm-up moves, for the record.
b_report_warmup() {
	[ -f "$1" ] && [ "$(wc -l <"$1")" -gt 1 ] || return 0
	echo "Warm-up moves (baseline, not in the medians; the first touch of memory is slow on this VM):"
	echo
	awk -F'\t' 'NR > 1 { printf "- %s MiB %s: %s, downtime %s s, dump %s s, transfer %s s, restore %s s\n", $2, $3, $5, $6, $10, $11, $12 }' "$1"
	echo
}

# b_report_failures FILE: runs that failed or look wrong, with their note.
b_report_failures() {
	local bad
	bad=$(awk -F'\t' 'NR > 1 && $5 != "ok"' "$1")
	[ -n "$bad" ] || return 0
	echo "Runs left out of the medians:"
	echo
	awk -F'\t' '{ printf "- run %s, %s: %s (%s)\n", $1, $2 " " $3 " " $4, $5, $NF }' <<<"$bad"
	echo
}

b_report_stream() {
	local f=$B_RESULTS/stream.tsv m=$B_RESULTS/stream.meta stats kind method
	[ -f "$f" ] || return 0
	stats=$(b_stats "$f" kind,method "$B_METRICS_STREAM")
	cat <<EOF
## Stream: \`bench/run stream\`

Command: \`$(b_meta "$m" command)\` (in effect: \`$(b_meta "$m" effective)\`)
Ran $(b_meta "$m" started) to $(b_meta "$m" finished); load average before $(b_meta "$m" load_before), after $(b_meta "$m" load_after); CPU busy just before the start: $(b_meta "$m" busy_before) of all cores.
Our tool: $(b_meta "$m" ours).
Payload: a real CRIU checkpoint directory of a $(b_meta "$m" stream_mib) MiB nm-memhog of each kind
(random: $(b_meta "$m" payload_random) bytes, zstd -1 ratio $(b_meta "$m" zstd_random);
mixed: $(b_meta "$m" payload_mixed) bytes, zstd -1 ratio $(b_meta "$m" zstd_mixed)).
Baseline: \`tar -C DIR -c . | ssh n2 'cat >/dev/null'\`, OpenSSH defaults; an ssh
connection set-up alone (\`ssh n2 true\`) takes $(b_meta "$m" ssh_setup_s) s and is inside every baseline time.
MB/s = payload bytes / 10^6 / wall seconds. Where ours sent the set as two halves as well, the baseline
ran before each of our streams that stage (up to four a run, their order rotating), so that all started from the same state of the
target's memory: here a write into staging freed seconds before is several times faster than one into
memory the VM had handed back (see the note after the targets). Our sender alone, which like the
baseline writes nothing on the target, opened each run. Ours without SSH has no wire bytes: its sender
runs on the target node, joined to the receiver by its unix socket.$(b_load_warning "$m")

| heap | method | runs ok | MB/s | seconds | wire MB |
| --- | --- | --- | --- | --- | --- |
EOF
	for kind in random mixed; do
		for method in baseline ours ours-2 ours-sender ours-local ours-thread; do
			local row
			row=$(awk -F'\t' -v a="$kind" -v b="$method" '$1 == a && $2 == b' <<<"$stats")
			if [ -z "$row" ]; then
				# Results from before these rows have none.
				case $method in ours-2 | ours-sender | ours-local | ours-thread) continue ;; esac
				[ "$method" = baseline ] || grep -q "^$kind	baseline" <<<"$stats" &&
					echo "| $kind | $(b_method_label "stream-$method") | not run (missing) | | | |"
				continue
			fi
			printf '| %s | %s | %s/%s | %s | %s | %s |\n' "$kind" "$(b_method_label "stream-$method")" \
				"$(cut -f3 <<<"$row")" "$(cut -f4 <<<"$row")" \
				"$(b_cell "$(cut -f5 <<<"$row")" "$(cut -f6 <<<"$row")" "$(cut -f7 <<<"$row")" 1 1)" \
				"$(b_cell "$(cut -f8 <<<"$row")" "$(cut -f9 <<<"$row")" "$(cut -f10 <<<"$row")" 1 3)" \
				"$(b_cell "$(cut -f11 <<<"$row")" "$(cut -f12 <<<"$row")" "$(cut -f13 <<<"$row")" 1e6 1)"
		done
	done
	echo
	echo "Summary: \`$(b_stream_summary)\`"
	echo
}

# b_report: writes bench/RESULTS.md from whatever results exist.
# The report sits next to the raw results: bench/RESULTS.md for the default
# bench/results/, inside the directory given by NM_BENCH_RESULTS otherwise.
b_report() {
	local out m=$B_RESULTS/migrate.meta baseline_only=1
	out=$B_RESULTS/RESULTS.md
	[ "$B_RESULTS" = "$BENCH_DIR/results" ] && out=$BENCH_DIR/RESULTS.md
	for m in "$B_RESULTS"/{migrate,stream,drain,rollback}.meta; do [ -f "$m" ] && break; done
	[ -f "$m" ] || b_die "no results in $B_RESULTS yet: run bench/run migrate, stream, drain or rollback"
	cat "$B_RESULTS"/*.tsv 2>/dev/null | awk -F'\t' '$0 ~ /\tours/ && $0 ~ /\tok\t/ { found = 1 } END { exit !found }' &&
		baseline_only=0
	{
		echo "# Benchmark results"
		echo
		echo "Generated by \`bench/run\` from the raw rows in \`bench/results/\`; do not edit the numbers by hand, rerun."
		echo
		if [ "$baseline_only" = 1 ]; then
			echo "**BASELINE ONLY: nucleus-migrate was not available when these ran; no ratios yet.**"
			echo
		fi
		b_report_analysis
		b_report_issue14
		b_report_machine "$m"
		b_report_recipe
		b_report_migrate
		b_report_stream
		b_report_drain
		b_report_rollback
	} >"$out.tmp" && mv "$out.tmp" "$out"
	b_log "wrote $out"
}
