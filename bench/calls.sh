#!/bin/sh
# bench/calls.sh: instructions and stores per slice of each call of the
# small-slice stream path, counted by valgrind callgrind — deterministic
# numbers, each with the command that gives them.
#
#   bench/calls.sh [--json] [--bin PATH] [--count N] [--size B] [--batch K]
#
# Runs
#   valgrind --tool=callgrind --cache-sim=yes --toggle-collect=calls_measured_run \
#     sv2shm-bench calls --count N --size B --batch K
# (one process, one thread: a producer and its one consumer taking turns, N
# slices of B bytes in batches of K after a warm-up that is not counted; see
# `sv2shm-bench calls --help`), then
#   callgrind_annotate --inclusive=yes --threshold=100
# and reports, per slice (inclusive count / N), for
#   pool_get_writable_slow        get_writable's slow path (a new slice's room)
#   sv2shm_buffer_get_data_owned  the written bytes handed out as a slice
#   sv2shm_producer_publish       the slice to the consumer's ring
#   sv2shm_consumer_recv          the consumer takes it
#   sv2shm_slice_release          the consumer gives it back
# instructions (Ir) and stores (Dw, data writes), and the sums "producer"
# (the first three) and "consumer" (the last two). Not in these: the inline
# fast path of get_writable, the memset of the bytes, the bench's own loop.
# Instructions and stores are those the code executes, whatever the
# machine's speed or load: they change only with the code (library sources,
# compiler, flags) and the options. The library must have its symbols (the default builds do: no
# strip); a function missing from the profile (inlined, renamed, stripped)
# is an error, not a zero.
#
# Defaults: N = 64000, B = 64, K = 16; the binary is build-rel's
# sv2shm-bench, else build's.
#
# Output: a table on stdout, or with --json one object
#   {"mode": "calls", "machine": {...}, "rows": [{"bench": "calls",
#    "contender": FUNCTION, "size": B, "instructions_per_slice": x,
#    "stores_per_slice": y, "batch": K, "slices": N}, ...]}
# (contender "producer" and "consumer" for the sums).
set -eu

json=0
bin=""
count=64000
size=64
batch=16
funcs="pool_get_writable_slow sv2shm_buffer_get_data_owned sv2shm_producer_publish sv2shm_consumer_recv sv2shm_slice_release"

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

need_value() {
	if [ $# -lt 2 ]; then
		echo "calls.sh: $1 needs a value (try --help)" >&2
		exit 2
	fi
	case "$2" in
	''|*[!0-9]*)
		if [ "$1" != "--bin" ]; then
			echo "calls.sh: $1 $2: want a number (try --help)" >&2
			exit 2
		fi
		;;
	esac
}

while [ $# -gt 0 ]; do
	case "$1" in
	--json) json=1 ;;
	--bin) need_value "$@"; bin="$2"; shift ;;
	--count) need_value "$@"; count="$2"; shift ;;
	--size) need_value "$@"; size="$2"; shift ;;
	--batch) need_value "$@"; batch="$2"; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "calls.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
	shift
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if [ -z "$bin" ]; then
	for d in build-rel build; do
		if [ -x "$root/$d/bench/sv2shm-bench" ]; then
			bin="$root/$d/bench/sv2shm-bench"
			break
		fi
	done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
	echo "calls.sh: sv2shm-bench not found${bin:+ at $bin}; build it (ninja -C build-rel) or pass --bin PATH" >&2
	exit 1
fi
for tool in valgrind callgrind_annotate; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "calls.sh: $tool not installed (apt-get install valgrind)" >&2
		exit 1
	fi
done

tmp=$(mktemp -d /tmp/sv2shm-calls.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

out="$tmp/callgrind.out"
rc=0
valgrind --tool=callgrind --cache-sim=yes --toggle-collect=calls_measured_run \
	--callgrind-out-file="$out" "$bin" calls --count "$count" --size "$size" --batch "$batch" \
	>"$tmp/log" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
	echo "calls.sh: valgrind ... $bin calls --count $count --size $size --batch $batch failed (exit $rc):" >&2
	grep -v '^\(==\|--\)[0-9]*\(==\|--\)' "$tmp/log" | tail -20 >&2 || true
	# sv2shm-bench's usage errors (exit 2) are ours too
	[ "$rc" = 2 ] && exit 2
	exit 1
fi
# From $tmp: callgrind_annotate strips its working directory from a
# function's own file name but not from the file names of call sites, so
# run elsewhere it could list a function twice (its own costs, and its
# inclusive total under the unstripped name).
if ! (cd "$tmp" && callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$out") >"$tmp/annotate" \
	2>"$tmp/annotate.err"; then
	echo "calls.sh: callgrind_annotate failed:" >&2
	tail -20 "$tmp/annotate.err" >&2
	exit 1
fi

# The function table of callgrind_annotate: after the header line ending in
# "file:function", one line per function,
#   9,861,490 (32.41%) 2,994,047 (42.42%) ... ???:sv2shm_producer_publish [/path/bin]
# with one count per event of "Events shown:" ("." for zero; the
# percentages are optional). Only that table is read: call lines ("=>",
# "<", ">") of other sections are not a function's own line, and neither is
# a line without " [object]": in a build with debug information, code
# inlined from another file (a header) is listed as "header.h:FUNCTION",
# a part of FUNCTION's own costs, not its inclusive total.
# Prints "FUNCTION IR DW" per wanted function, "total IR DW" (all of
# calls_measured_run), "missing FUNCTION", "twice FUNCTION" or "error TEXT".
awk -v funcs="$funcs" '
	function num(s) { gsub(",", "", s); return s == "." ? 0 : s + 0 }
	BEGIN { nf = split(funcs, want, " "); for (i = 1; i <= nf; i++) wanted[want[i]] = 1 }
	/^Events shown:/ {
		sub(/^Events shown:[ \t]*/, "")
		ne = split($0, ev, /[ \t]+/)
		for (i = 1; i <= ne; i++) col[ev[i]] = i
		next
	}
	/^-+$/ { if (intable && seen) intable = 0; next }
	/file:function[ \t]*$/ { intable = 1; seen = 0; next }
	/PROGRAM TOTALS[ \t]*$/ {
		line = $0; gsub(/\([ 0-9.]*%\)/, "", line); n = split(line, f, /[ \t]+/)
		k = 0
		for (i = 1; i <= n; i++) if (f[i] != "") v[++k] = f[i]
		tot_ir = num(v[col["Ir"]]); tot_dw = num(v[col["Dw"]]); got_tot = 1
		next
	}
	intable {
		if ($0 ~ /^[ \t]*$/) { if (seen) intable = 0; next }
		seen = 1
		line = $0
		gsub(/\([ 0-9.]*%\)/, "", line)
		sub(/^[ \t]+/, "", line)
		# ne counts, then "file:function [object]"
		for (i = 1; i <= ne; i++) {
			if (!match(line, /^[0-9,.]+[ \t]+/)) next
			c[i] = substr(line, 1, RLENGTH); sub(/[ \t]+$/, "", c[i])
			line = substr(line, RLENGTH + 1)
		}
		if (line ~ /^(=>|<|>|\*)/) next
		if (!sub(/[ \t]+\[[^]]*\][ \t]*$/, "", line)) next
		fn = line
		sub(/^.*:/, "", fn)
		if (fn in wanted) {
			ir[fn] += num(c[col["Ir"]]); dw[fn] += num(c[col["Dw"]]); found[fn]++
		}
	}
	END {
		if (!("Ir" in col) || !("Dw" in col)) { print "error no Ir or Dw in the \"Events shown:\" line"; exit }
		if (!got_tot) { print "total 0 0"; exit }  # nothing collected
		for (i = 1; i <= nf; i++) {
			if (!(want[i] in found)) print "missing " want[i]
			else if (found[want[i]] > 1) print "twice " want[i]
			else printf "%s %.0f %.0f\n", want[i], ir[want[i]], dw[want[i]]
		}
		printf "total %.0f %.0f\n", tot_ir, tot_dw
	}' "$tmp/annotate" >"$tmp/counts"

if grep -q '^error ' "$tmp/counts"; then
	echo "calls.sh: cannot read callgrind_annotate's output: $(sed -n 's/^error //p' "$tmp/counts")" >&2
	exit 1
fi
total_ir=$(awk '$1 == "total" { print $2 }' "$tmp/counts")
if [ "${total_ir:-0}" = 0 ]; then
	echo "calls.sh: callgrind counted nothing: calls_measured_run not found in $bin (inlined, renamed, or the binary is stripped?)" >&2
	exit 1
fi
if grep -q '^twice ' "$tmp/counts"; then
	sed -n 's/^twice //p' "$tmp/counts" | while read -r f; do
		echo "calls.sh: $f is listed more than once by callgrind_annotate --inclusive=yes (two functions of that name?)" >&2
	done
	exit 1
fi
if grep -q '^missing ' "$tmp/counts"; then
	sed -n 's/^missing //p' "$tmp/counts" | while read -r f; do
		echo "calls.sh: $f is not in the profile (inlined, renamed, or the binary has no symbols: build without strip)" >&2
	done
	exit 1
fi

# function ir_per_slice dw_per_slice, with the two sums
awk -v n="$count" -v funcs="$funcs" '
	{ ir[$1] = $2; dw[$1] = $3 }
	END {
		split(funcs, f, " ")
		for (i = 1; i <= 5; i++) printf "%s %.6f %.6f\n", f[i], ir[f[i]] / n, dw[f[i]] / n
		printf "producer %.6f %.6f\n", (ir[f[1]] + ir[f[2]] + ir[f[3]]) / n, (dw[f[1]] + dw[f[2]] + dw[f[3]]) / n
		printf "consumer %.6f %.6f\n", (ir[f[4]] + ir[f[5]]) / n, (dw[f[4]] + dw[f[5]]) / n
		printf "calls_measured_run %.6f %.6f\n", ir["total"] / n, dw["total"] / n
	}' "$tmp/counts" >"$tmp/rows"

jstr() {
	printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'
}
cpu=$(grep -m1 "model name" /proc/cpuinfo | sed 's/.*: //' || true)
cpus=$(nproc)
kernel="$(uname -s) $(uname -r)"
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
vg=$(valgrind --version)

if [ "$json" = 1 ]; then
	printf '{"mode": "calls",\n "machine": {"cpu": "%s", "cpus": %s, "kernel": "%s", "date": "%s", "tool": "%s callgrind --cache-sim=yes", "bin": "%s"},\n "rows": [' \
		"$(jstr "$cpu")" "$cpus" "$(jstr "$kernel")" "$date" "$vg" "$(jstr "$bin")"
	awk -v size="$size" -v n="$count" -v k="$batch" '
		$1 != "calls_measured_run" {
			printf "%s\n  {\"bench\": \"calls\", \"contender\": \"%s\", \"size\": %d, \"instructions_per_slice\": %.2f, \"stores_per_slice\": %.2f, \"batch\": %d, \"slices\": %d}", (NR > 1 ? "," : ""), $1, size, $2, $3, k, n
		}' "$tmp/rows"
	printf ']}\n'
else
	echo "sv2shm-bench calls: instructions and stores per slice ($count slices of $size B, batches of $batch, one thread)"
	echo "$cpu, $cpus CPUs, $kernel, $date; $vg callgrind --cache-sim=yes"
	echo "$bin calls --count $count --size $size --batch $batch"
	echo
	printf '%-30s %14s %10s\n' function instructions stores
	awk '
		$1 == "producer" { print "" }
		$1 == "calls_measured_run" { print ""; $1 = "all of calls_measured_run" }
		{ printf "%-30s %14.1f %10.1f\n", ($1 == "producer" ? "producer (the first three)" : $1 == "consumer" ? "consumer (the last two)" : $1), $2, $3 }
	' "$tmp/rows"
	echo
	echo "Inclusive counts (callees included) / $count slices. producer and consumer are sums of the"
	echo "rows above; \"all\" adds the inline get_writable, the memset and the bench's loop."
fi
