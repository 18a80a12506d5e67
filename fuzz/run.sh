#!/usr/bin/env bash
# fuzz/run.sh — build and run sv2shm's libFuzzer targets.
#
#   fuzz/run.sh TARGET SECONDS [-- LIBFUZZER_ARGS...]   run one target that long
#   fuzz/run.sh                                          every target, 10 s each
#   fuzz/run.sh --list                                   the targets
#   fuzz/run.sh --help
#
# Targets:
#   faster         the seed's `faster`: pool capacity, slots and lengths from tables of
#                  likely values; slices held on worker threads, invariants after each step
#   slower         the seed's `slower`: the whole space (capacity 0 .. 2^32, 1..64 slots,
#                  messages up to 1 MiB, holds up to 1 ms on workers pinned to other cores)
#   cross_process  a producer and 1-2 consumer processes: slices published, checked,
#                  held, released through io_uring; every slot comes back
#   descriptor     arbitrary descriptors and control blocks against a real region
#   frame_decoder  arbitrary streams through the Sv2 frame decoder, fed in chunks or
#                  through a pipe, checked against an independent parse
#   hostile        a consumer that breaks every rule (ring fields, release records,
#                  memfd attacks, socket floods, hang-ups) against a live producer, while
#                  an honest consumer process checks every byte; no producer call blocks,
#                  the pool is whole again once the hostile consumer is gone
#   protocol       the broker daemon's logic (daemon/broker.c) through a fake environment:
#                  arbitrary connections, messages with and without fds (real memfds, right
#                  and wrong), process deaths, timers, full sockets; every reply, close,
#                  process watch and ring write checked against a model of the protocol
#
# The build lives in build-fuzz/ (made on first use with clang, -Dfuzz=enabled,
# -Db_lundef=false: the sanitizer-instrumented shared library cannot link with
# --no-undefined). Each run fuzzes a scratch copy of fuzz/corpus/TARGET (the
# repository is never written, except for crashes); inputs that crash, leak or
# time out are saved in fuzz/findings/TARGET/ (git-ignored), the targets' own
# messages appended to fuzz/findings/TARGET/failures.log (libFuzzer's -fork
# mode shows only the last lines of a crash). To keep one as a
# regression test, copy it into fuzz/regress/TARGET/: tests/test_fuzz_regress.c
# runs every file there (and every corpus file) without libFuzzer.
#
# Environment:
#   SV2SHM_FUZZ_BUILD=DIR        build directory (default: build-fuzz; relative to the
#                                current directory)
#   SV2SHM_FUZZ_KEEP=1           keep the scratch corpus (its path is printed)
#   SV2SHM_FUZZ_JOBS=N           run N fuzzing processes in parallel (-fork=N)
#   SV2SHM_FUZZ_VERBOSE=1        faster/slower: print every step with the slot map;
#                                cross_process: trace every publish and consumer fork;
#                                hostile: trace every operation, publish and removal;
#                                protocol: trace every operation and message, show the
#                                broker's log
#   SV2SHM_FUZZ_GDB=1            cross_process: backtrace a consumer that stops answering
#
# Exit status: 0 when every target ran clean, 1 when one crashed (or leaked, or
# timed out), 2 for a usage error or a failed build.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${SV2SHM_FUZZ_BUILD:-$ROOT/build-fuzz}
[[ "$BUILD" == /* ]] || BUILD=$PWD/$BUILD # the fuzzer runs in its scratch directory
TARGETS=(faster slower cross_process descriptor frame_decoder hostile protocol)

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

# Per-target libFuzzer settings.
max_len() {
	case $1 in
	faster) echo 512 ;;
	slower) echo 4096 ;;
	cross_process) echo 1024 ;;
	descriptor) echo 4096 ;;
	frame_decoder) echo 16384 ;;
	hostile) echo 1024 ;;
	protocol) echo 4096 ;;
	esac
}
timeout_s() {
	case $1 in
	cross_process) echo 90 ;; # a stuck consumer is reported by the target after 25 s
	hostile) echo 30 ;;       # the target's own watchdog aborts an input after 10 s
	*) echo 30 ;;
	esac
}

build() {
	if [ ! -f "$BUILD/build.ninja" ]; then
		echo "run.sh: configuring $BUILD" >&2
		CC=${CC:-clang} meson setup "$BUILD" "$ROOT" -Dfuzz=enabled -Dtests=false -Dexamples=false \
			-Db_lundef=false >/dev/null
	fi
	ninja -C "$BUILD" $(printf 'fuzz/fuzz_%s ' "${TARGETS[@]}") >/dev/null
}

# run_one TARGET SECONDS [extra libFuzzer args...]: 0 clean, 1 crashed
run_one() {
	local t=$1 secs=$2
	shift 2
	local bin="$BUILD/fuzz/fuzz_$t"
	local scratch findings="$HERE/findings/$t"
	scratch=$(mktemp -d "${TMPDIR:-/tmp}/sv2shm-fuzz-$t.XXXXXX")
	mkdir -p "$scratch/corpus" "$findings"
	cp "$HERE/corpus/$t/"* "$scratch/corpus/" 2>/dev/null || true
	local args=(
		"$scratch/corpus"
		-max_total_time="$secs"
		-max_len="$(max_len "$t")"
		-timeout="$(timeout_s "$t")"
		-rss_limit_mb=16384 # 4 GiB pools are lazily backed, but count once touched
		-print_final_stats=1
		-artifact_prefix="$findings/"
	)
	[ -f "$HERE/$t.dict" ] && args+=(-dict="$HERE/$t.dict")
	[ -n "${SV2SHM_FUZZ_JOBS:-}" ] && args+=(-fork="$SV2SHM_FUZZ_JOBS" -ignore_crashes=0)
	echo "=== $t: ${secs}s, corpus $scratch/corpus, crashes to fuzz/findings/$t/" >&2
	local rc=0 new
	touch "$scratch/start"
	(cd "$scratch" && UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
		SV2SHM_FUZZ_FAIL_LOG=${SV2SHM_FUZZ_FAIL_LOG:-$findings/failures.log} "$bin" "${args[@]}" "$@") ||
		rc=$?
	new=$(find "$findings" -type f -newer "$scratch/start" -printf '    %p\n')
	if [ "${SV2SHM_FUZZ_KEEP:-0}" = 1 ]; then
		echo "=== $t: scratch corpus kept in $scratch/corpus" >&2
	else
		rm -rf "$scratch"
	fi
	if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
		echo "=== $t: FAILED (exit $rc); new findings:" >&2
		[ -n "$new" ] && echo "$new" >&2
		return 1
	fi
	echo "=== $t: clean" >&2
	return 0
}

case "${1:-}" in
-h | --help | help)
	usage
	exit 0
	;;
--list)
	printf '%s\n' "${TARGETS[@]}"
	exit 0
	;;
"")
	build || exit 2
	failed=()
	for t in "${TARGETS[@]}"; do
		run_one "$t" 10 || failed+=("$t")
	done
	if [ ${#failed[@]} -gt 0 ]; then
		echo "run.sh: crashed: ${failed[*]} (inputs in fuzz/findings/)" >&2
		exit 1
	fi
	echo "run.sh: all ${#TARGETS[@]} targets clean" >&2
	exit 0
	;;
esac

t=$1
secs=${2:-}
if [[ ! " ${TARGETS[*]} " == *" $t "* ]]; then
	echo "run.sh: unknown target '$t' (fuzz/run.sh --list)" >&2
	exit 2
fi
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
	echo "run.sh: SECONDS must be a positive integer" >&2
	usage >&2
	exit 2
fi
shift 2
[ "${1:-}" = "--" ] && shift
build || exit 2
run_one "$t" "$secs" "$@" || exit 1
