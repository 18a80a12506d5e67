#!/bin/sh
# The shared library exports exactly what libsv2shm.syms lists, and every
# function the public headers declare with SV2SHM_EXPORT is in that list.
set -eu
so=$1 syms=$2 include=$3
listed=$(grep -E '^\s+sv2shm_[a-z0-9_]+;' "$syms" | tr -d ' \t;' | sort)
exported=$(nm -D --defined-only "$so" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort)
declared=$(cat "$include"/sv2shm/*.h | tr '\n' ' ' | grep -oE 'SV2SHM_EXPORT [^;(]*\(' |
	grep -oE 'sv2shm_[a-z0-9_]+\($' | tr -d '(' | sort)
fail=0
if [ "$listed" != "$exported" ]; then
	echo "exported symbols differ from libsv2shm.syms:"
	diff /dev/fd/3 /dev/fd/4 3<<E1 4<<E2 || true
$listed
E1
$exported
E2
	fail=1
fi
if [ "$listed" != "$declared" ]; then
	echo "SV2SHM_EXPORT declarations differ from libsv2shm.syms:"
	diff /dev/fd/3 /dev/fd/4 3<<E1 4<<E2 || true
$listed
E1
$declared
E2
	fail=1
fi
n=$(echo "$listed" | wc -l)
[ $fail -eq 0 ] && echo "1 passed, 0 failed: $n exported symbols match the list and the headers"
exit $fail
