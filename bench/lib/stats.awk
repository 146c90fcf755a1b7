# Median, min and max per group of a bench results table (TSV with a header).
#
#   awk -F'\t' -v keys=mib,kind,method -v metrics=downtime_s,total_s -f stats.awk FILE
#
# Prints one tab-separated line per group, in order of first appearance:
# the key values, runs that succeeded ("ok"), all runs, then median, min and
# max of each metric over the successful runs ("-" where there is none).
# Plain POSIX awk (mawk has no asort).

function sorted_insert(arr, n, v,    i) {
	for (i = n; i > 0 && arr[i] > v; i--)
		arr[i + 1] = arr[i]
	arr[i + 1] = v
}

NR == 1 {
	for (i = 1; i <= NF; i++)
		col[$i] = i
	nk = split(keys, K, ",")
	nm = split(metrics, M, ",")
	next
}

{
	g = ""
	for (i = 1; i <= nk; i++)
		g = g (i > 1 ? "\t" : "") $(col[K[i]])
	if (!(g in all)) {
		order[++ngroups] = g
		all[g] = 0
		ok[g] = 0
	}
	all[g]++
	if ($(col["status"]) != "ok")
		next
	ok[g]++
	for (m = 1; m <= nm; m++) {
		# Rows written before a column existed have none: no value.
		v = (M[m] in col) ? $(col[M[m]]) : "-"
		if (v == "-" || v == "")
			continue
		key = g SUBSEP m
		cnt[key]++
		vals[key, cnt[key]] = v + 0
	}
}

END {
	for (o = 1; o <= ngroups; o++) {
		g = order[o]
		line = g "\t" ok[g] "\t" all[g]
		for (m = 1; m <= nm; m++) {
			key = g SUBSEP m
			n = cnt[key] + 0
			if (n == 0) {
				line = line "\t-\t-\t-"
				continue
			}
			delete s
			for (i = 1; i <= n; i++)
				sorted_insert(s, i - 1, vals[key, i])
			med = (n % 2) ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
			line = line "\t" med "\t" s[1] "\t" s[n]
		}
		print line
	}
}
