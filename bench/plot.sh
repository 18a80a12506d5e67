#!/bin/sh
# bench/plot.sh: turn sv2shm-bench JSON into one PNG chart.
#
#   bench/plot.sh OUT.png FILE.json [FILE.json ...]
#
# FILE.json: the output of `sv2shm-bench seed|lag|ipc --json` or of
# `bench/instructions.sh --json` (any mix; a file may hold several runs'
# objects one after the other). One panel per kind of data found:
#   seed N=8, seed N=64   median per bench, one bar per contender (log scale, ms)
#   lag                   pool_share against L (lines per N and contender)
#   lag time              ns per message against L (lines per N and contender)
#   ipc round trip        median per size, bar per contender (log scale, us)
#   ipc stream            msgs/s per size, bar per contender (log scale)
#   ipc fan-out           msgs/s per size and consumer count, bar per contender
#   instructions          instructions per contender (single-thread)
#
# Needs gnuplot (apt-get install gnuplot-nox) and jq (apt-get install jq).
set -eu

if [ $# -lt 2 ]; then
	sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi
out=$1
shift
for t in gnuplot jq; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "plot.sh: $t not installed (apt-get install gnuplot-nox jq)" >&2
		exit 1
	fi
done

tmp=$(mktemp -d /tmp/sv2shm-plot.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Every row of every object, with the object's mode attached.
jq -s '[.[] | (.mode // "") as $m | .rows[] | . + {mode: $m}]' "$@" >"$tmp/rows.json"
machine=$(jq -rs '[.[] | .machine | select(.) ] | .[0] | "\(.cpu), \(.cpus) CPUs, \(.kernel), \(.date)"' "$@")

# A clustered-bar table: first column the group label, then one column per
# contender (given order), "?" where missing. $1 file, $2 jq filter selecting
# rows, $3 jq expression for the group label, $4 jq expression for the value,
# $5 contenders (space separated).
table() {
	f=$1 sel=$2 grp=$3 val=$4 conts=$5
	cjson=$(printf '%s\n' $conts | jq -R . | jq -s .)
	jq -r --argjson conts "$cjson" "
		[.[] | select($sel)] as \$r
		| (\$r | map($grp) | reduce .[] as \$g ([]; if index([\$g]) then . else . + [\$g] end)) as \$groups
		| (\"group \" + (\$conts | join(\" \"))),
		  (\$groups[] as \$g
		   | [\"\\\"\" + \$g + \"\\\"\"] + [\$conts[] as \$c
		       | ([\$r[] | select(($grp) == \$g and .contender == \$c) | $val] | if length > 0 and .[0] != null then (.[0] | tostring) else \"?\" end)]
		   | join(\" \"))
	" "$tmp/rows.json" >"$f"
	# no data rows: empty
	[ "$(wc -l <"$f")" -gt 1 ] || : >"$f"
}

seedc="pool system-memory ppool max-efficiency shared-pool"
ipcc="memfd-spin memfd-futex uds-seqpacket pipe sv2shm sv2shm-blocking sv2shm-eventfd sv2shm-futex sv2shm-syscall iceoryx"
seedsel='(.bench == "single-thread" or .bench == "multi-thread" or .bench == "multi-thread-2" or .bench == "workers") and .mode != "instructions"'
table "$tmp/seed8.dat" "$seedsel and .slots == 8" '.bench' '.median_ns / 1e6' "$seedc"
table "$tmp/seed64.dat" "$seedsel and .slots == 64" '.bench' '.median_ns / 1e6' "$seedc"
table "$tmp/rt.dat" '.bench == "ipc-roundtrip"' '(.size | tostring) + " B"' '.median_ns / 1e3' "$ipcc"
table "$tmp/stream.dat" '.bench == "ipc-stream"' '(.size | tostring) + " B"' '.msgs_per_s' "$ipcc"
table "$tmp/fanout.dat" '.bench == "ipc-fanout"' '(.size | tostring) + " B x" + (.consumers | tostring)' '.msgs_per_s' \
	"sv2shm sv2shm-blocking uds-seqpacket"
table "$tmp/instr.dat" '.mode == "instructions"' '"N=" + (.slots | tostring)' '.instructions / 1e6' "$seedc"

# Lag lines: one file per (N, contender): L pool_share ns_per_msg
lagsets=""
for key in $(jq -r '[.[] | select(.bench == "lag") | "\(.slots):\(.contender)"] | unique | .[]' "$tmp/rows.json"); do
	n=${key%%:*}
	c=${key#*:}
	jq -r --argjson n "$n" --arg c "$c" \
		'.[] | select(.bench == "lag" and .slots == $n and .contender == $c) | "\(.lag) \(.pool_share // "?") \(.median_ns)"' \
		"$tmp/rows.json" | sort -n >"$tmp/lag.$n.$c.dat"
	lagsets="$lagsets $n:$c"
done

panels=0
for f in seed8 seed64 rt stream fanout instr; do
	[ -s "$tmp/$f.dat" ] && panels=$((panels + 1))
done
[ -n "$lagsets" ] && panels=$((panels + 2))
if [ "$panels" -eq 0 ]; then
	echo "plot.sh: no rows to plot in $*" >&2
	exit 1
fi
cols=2
[ "$panels" -eq 1 ] && cols=1
rows=$(((panels + cols - 1) / cols))
width=$((cols * 900))
height=$((rows * 520 + 60))

ncols() { head -1 "$1" | awk '{ print NF }'; }

{
	echo "set terminal pngcairo size $width,$height font 'DejaVu Sans,10'"
	echo "set output '$out'"
	echo "set multiplot layout $rows,$cols title 'sv2shm-bench — $machine' font ',12'"
	echo "set style data histograms"
	echo "set style histogram clustered gap 1"
	echo "set style fill solid 0.85 border -1"
	echo "set boxwidth 0.9"
	echo "set grid ytics"
	echo "set key outside right top vertical font ',9'"
	echo "set datafile missing '?'"
	# ten distinguishable colours (the ipc panels have ten contenders)
	i=1
	for col in '#1f77b4' '#ff7f0e' '#2ca02c' '#d62728' '#9467bd' '#8c564b' '#e377c2' '#7f7f7f' '#bcbd22' '#17becf'; do
		echo "set linetype $i lc rgb '$col' lw 1.5 pt $i"
		i=$((i + 1))
	done
	bars() { # file title ylabel logscale
		echo "set title '$2'"
		echo "set ylabel '$3'"
		if [ "$4" = log ]; then echo "set logscale y; set yrange [*:*]"; else echo "unset logscale y; set yrange [0:*]"; fi
		echo "set xtics rotate by -20 font ',9'"
		n=$(ncols "$1")
		echo "plot for [i=2:$n] '$1' using i:xtic(1) title columnheader(i)"
	}
	[ -s "$tmp/seed8.dat" ] && bars "$tmp/seed8.dat" "seed benchmarks, N = 8 slots (median per sample, lower is better)" "ms (log)" log
	[ -s "$tmp/seed64.dat" ] && bars "$tmp/seed64.dat" "seed benchmarks, N = 64 slots (median per sample, lower is better)" "ms (log)" log
	if [ -n "$lagsets" ]; then
		echo "set style data linespoints"
		echo "unset logscale y"
		echo "set xtics auto rotate by 0 font ',9'"
		echo "set xlabel 'L (newest slices kept)'"
		echo "set title 'FIFO lag: share of slices from the pool (capacity 2^16*5)'"
		echo "set ylabel 'pool share'"
		echo "set yrange [0:1.05]"
		printf "plot "
		sep=""
		for s in $lagsets; do
			n=${s%%:*}
			c=${s#*:}
			[ "$c" = system-memory ] && continue
			printf "%s'%s' using 1:2 title 'N=%s %s' with linespoints" "$sep" "$tmp/lag.$n.$c.dat" "$n" "$c"
			sep=", "
		done
		echo
		echo "set title 'FIFO lag: time per message'"
		echo "set ylabel 'ns per message'"
		echo "set yrange [0:*]"
		printf "plot "
		sep=""
		for s in $lagsets; do
			n=${s%%:*}
			c=${s#*:}
			printf "%s'%s' using 1:3 title 'N=%s %s' with linespoints" "$sep" "$tmp/lag.$n.$c.dat" "$n" "$c"
			sep=", "
		done
		echo
		echo "unset xlabel"
		echo "set yrange [*:*]"
		echo "set style data histograms"
	fi
	[ -s "$tmp/rt.dat" ] && bars "$tmp/rt.dat" "ipc round trip (median, lower is better)" "us (log)" log
	[ -s "$tmp/stream.dat" ] && bars "$tmp/stream.dat" "ipc stream (higher is better)" "msgs/s (log)" log
	[ -s "$tmp/fanout.dat" ] && bars "$tmp/fanout.dat" "ipc fan-out: messages that reached every consumer (higher is better)" "msgs/s (log)" log
	[ -s "$tmp/instr.dat" ] && bars "$tmp/instr.dat" "single-thread instructions, callgrind (lower is better)" "million instructions" lin
	echo "unset multiplot"
} >"$tmp/plot.gp"

gnuplot "$tmp/plot.gp"
echo "plot.sh: wrote $out ($panels panels)" >&2
