#!/usr/bin/env bash
# provision-man.sh PROVISION VERSION: nucleus-provision(8), rendered from
# `nucleus-provision --help` (the manual lives in one place, the script).
# Headings become sections; the text stays as --help lays it out.
set -euo pipefail
prog=$1 version=$2
help=$(bash "$prog" --help)
printf '.TH NUCLEUS-PROVISION 8 "" "nucleus-migrate %s" "System Administration"\n' "$version"
printf '%s\n' "$help" | awk '
	function flush() { if (open) { print ".fi"; open = 0 } }
	/^[A-Z][A-Z ]*$/ { flush(); print ".SH " $0; next }
	{
		if (!open) { print ".nf"; open = 1 }
		sub(/^    /, "")
		gsub(/\\/, "\\e")
		if ($0 ~ /^[.\047]/) $0 = "\\&" $0
		print
	}
	END { flush() }'
