#!/bin/sh
# bench/instructions.sh: the single-thread seed bench in instructions and
# cache accesses, per contender — the form of the seed's iai table
# (utils/buffer/benches/pool_iai.rs).
#
#   bench/instructions.sh [--json] [--bin PATH] [--slots N] [--iterations N] [--only LIST]
#
# For each contender, runs
#   valgrind --tool=callgrind --cache-sim=yes --toggle-collect=seed_measured_run \
#     sv2shm-bench seed --bench single-thread --only C --iterations N --once
# so only one call of the seed's bench function is counted (construction,
# 1000 iterations, destruction; not the 5 MiB input generation, not process
# start-up). From callgrind's totals, as iai computes them:
#   instructions  = Ir
#   l1_accesses   = Ir + Dr + Dw - (I1mr + D1mr + D1mw)    (hits in L1)
#   l2_accesses   = (I1mr + D1mr + D1mw) - ram_accesses    (iai's "L2": hits in the simulated LL)
#   ram_accesses  = ILmr + DLmr + DLmw                     (misses in the simulated LL)
#   est_cycles    = l1 + 5 * l2 + 35 * ram
# The cache model is valgrind's (the host's L1 and last-level geometry, as it
# detects them; two levels only), not a hardware measurement: perf's hardware
# counters are not available in this VM (perf stat -e instructions reports
# <not supported>).
#
# Output: a table on stdout, or with --json one object
#   {"machine": {...}, "rows": [{"bench": "single-thread", "contender": ...,
#    "slots": N, "iterations": N, "instructions": ..., "l1_accesses": ...,
#    "l2_accesses": ..., "ram_accesses": ..., "estimated_cycles": ...,
#    "median_ns": null, "ratio": instructions / system-memory's}], "mode": "instructions"}
set -eu

json=0
bin=""
slots=8
iterations=1000
only="pool system-memory ppool max-efficiency shared-pool"

usage() {
	sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case "$1" in
	--json) json=1 ;;
	--bin) bin="$2"; shift ;;
	--slots) slots="$2"; shift ;;
	--iterations) iterations="$2"; shift ;;
	--only) only=$(echo "$2" | tr ',' ' '); shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "instructions.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
	shift
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
if [ -z "$bin" ]; then
	for d in build-bench5 build-bench build; do
		if [ -x "$root/$d/bench/sv2shm-bench" ]; then
			bin="$root/$d/bench/sv2shm-bench"
			break
		fi
	done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
	echo "instructions.sh: sv2shm-bench not found; build it (meson setup build && ninja -C build) or pass --bin" >&2
	exit 1
fi
if ! command -v valgrind >/dev/null 2>&1; then
	echo "instructions.sh: valgrind not installed (apt-get install valgrind)" >&2
	exit 1
fi

tmp=$(mktemp -d /tmp/sv2shm-instructions.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

# contender instructions l1 l2 ram cycles
: >"$tmp/rows"
for c in $only; do
	out="$tmp/cg.$c.out"
	if ! valgrind --tool=callgrind --cache-sim=yes --toggle-collect=seed_measured_run \
		--callgrind-out-file="$out" "$bin" seed --bench single-thread --only "$c" \
		--iterations "$iterations" --slots "$slots" --once >"$tmp/log.$c" 2>&1; then
		echo "instructions.sh: valgrind run for $c failed:" >&2
		tail -20 "$tmp/log.$c" >&2
		exit 1
	fi
	# "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw" and "totals: ..." (or "summary:")
	awk -v c="$c" '
		/^events:/ { for (i = 2; i <= NF; i++) ev[$i] = i - 1 }
		/^(totals|summary):/ { for (i = 2; i <= NF; i++) v[i - 1] = $i; got = 1 }
		END {
			if (!got) exit 1
			ir = v[ev["Ir"]]; dr = v[ev["Dr"]]; dw = v[ev["Dw"]]
			l1m = v[ev["I1mr"]] + v[ev["D1mr"]] + v[ev["D1mw"]]
			ram = v[ev["ILmr"]] + v[ev["DLmr"]] + v[ev["DLmw"]]
			l2 = l1m - ram
			l1 = ir + dr + dw - l1m
			printf "%s %.0f %.0f %.0f %.0f %.0f\n", c, ir, l1, l2, ram, l1 + 5 * l2 + 35 * ram
		}' "$out" >>"$tmp/rows" || { echo "instructions.sh: no totals in $out" >&2; exit 1; }
	grep -h "^once:" "$tmp/log.$c" >&2 || true
done

ref=$(awk '$1 == "system-memory" { print $2 }' "$tmp/rows")
cpu=$(grep -m1 "model name" /proc/cpuinfo | sed 's/.*: //')
cpus=$(nproc)
kernel="$(uname -s) $(uname -r)"
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
vg=$(valgrind --version)

if [ "$json" = 1 ]; then
	printf '{"machine": {"cpu": "%s", "cpus": %s, "kernel": "%s", "date": "%s", "tool": "%s callgrind --cache-sim=yes"},\n "rows": [' \
		"$cpu" "$cpus" "$kernel" "$date" "$vg"
	awk -v ref="${ref:-0}" -v slots="$slots" -v it="$iterations" '
		{
			ratio = ref > 0 ? sprintf("%.4g", $2 / ref) : "null"
			fmt = "%s\n  {\"bench\": \"single-thread\", \"contender\": \"%s\", \"slots\": %d, \"iterations\": %d, \"median_ns\": null, \"instructions\": %s, \"l1_accesses\": %s, \"l2_accesses\": %s, \"ram_accesses\": %s, \"estimated_cycles\": %s, \"ratio\": %s, \"ratio_vs\": \"system-memory\"}"
			printf fmt, (NR > 1 ? "," : ""), $1, slots, it, $2, $3, $4, $5, $6, ratio
		}' "$tmp/rows"
	printf '],\n "mode": "instructions"}\n'
else
	echo "sv2shm-bench instructions (single-thread, N = $slots slots, $iterations iterations, one call of the seed's bench function)"
	echo "$cpu, $cpus CPUs, $kernel, $date; $vg callgrind --cache-sim=yes"
	echo
	printf '%-16s %14s %14s %12s %12s %14s  %s\n' contender instructions l1_accesses l2_accesses ram_accesses est_cycles "instructions vs system-memory"
	awk -v ref="${ref:-0}" '{
		r = ref > 0 ? sprintf("%.2fx", $2 / ref) : "-"
		printf "%-16s %14s %14s %12s %12s %14s  %s\n", $1, $2, $3, $4, $5, $6, r
	}' "$tmp/rows"
	echo
	echo "In the seed's iai layout:"
	awk '{
		printf "%s\n  Instructions:     %14s\n  L1 Accesses:      %14s\n  L2 Accesses:      %14s\n  RAM Accesses:     %14s\n  Estimated Cycles: %14s\n", $1, $2, $3, $4, $5, $6
	}' "$tmp/rows"
fi
