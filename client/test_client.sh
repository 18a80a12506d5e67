#!/usr/bin/env bash
# End-to-end test of the sv2shm command against a private sv2shmd:
#   status with no pool and with two (text, --json, --prometheus);
#   every real frame of ../shared/sv2-frames/frames through --file, byte for byte;
#   all of them as one stream through stdin and through --listen (bash's /dev/tcp);
#   synthetic frames to two checking consumers (--checksum --json);
#   bad usage exits 2.
# Needs only coreutils and bash. Exit 77 (skipped) without the frames folder.
#
#   test_client.sh SV2SHM SV2SHMD FRAMES_DIR
set -uo pipefail
SV2SHM=$1
SV2SHMD=$2
FRAMES=$3

if [ ! -d "$FRAMES" ]; then
	echo "SKIP: no frames folder at $FRAMES"
	exit 77
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/sv2shm-test.XXXXXX")
SOCK=$DIR/sock
PIDS=()
cleanup() {
	for p in "${PIDS[@]}" $(jobs -p); do kill "$p" 2>/dev/null; done
	[ -n "${BROKER:-}" ] && kill -TERM "$BROKER" 2>/dev/null && wait "$BROKER" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT

passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }

"$SV2SHMD" --foreground --socket "$SOCK" --log-level warn &
BROKER=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done

sv() { "$SV2SHM" "$1" --socket "$SOCK" "${@:2}"; }
# The same, for `svbg ... &`: exec makes $! the sv2shm process itself (not a
# subshell around it), so that kill and wait reach it.
svbg() { exec "$SV2SHM" "$1" --socket "$SOCK" "${@:2}"; }
# The bytes of a file, or of `consume --hexdump` output, as one hex byte a line.
hexbytes_file() { od -An -v -tx1 "$1" | tr -s ' \n' '\n' | sed '/^$/d'; }
hexbytes_dump() { grep -E '^[0-9a-f]{8}  ' | cut -c11-58 | tr -s ' \n' '\n' | sed '/^$/d'; }
wait_pool() {
	for _ in $(seq 200); do
		sv status --json 2>/dev/null | grep -q "\"name\": \"$1\"" && return 0
		sleep 0.05
	done
	return 1
}

# --- status, no pool
out=$(sv status) && echo "$out" | grep -q '^no pools$' && echo "$out" | grep -q '^broker: sv2shmd' &&
	ok "status with no pool" || bad "status with no pool: $out"
out=$(sv status --json) && [ "$out" = "$(echo "$out" | head -1)" ] && echo "$out" | grep -q '^{"pools": \[\], "broker": {' &&
	ok "status --json with no pool" || bad "status --json: $out"

# --- status, two pools (producers waiting for their consumers)
svbg produce --pool p-one --synthetic 12-100 --quiet 2>/dev/null &
PIDS+=($!)
svbg produce --pool p-two --slots 16 --capacity 64K --synthetic 12-100 --quiet 2>/dev/null &
PIDS+=($!)
wait_pool p-one && wait_pool p-two
out=$(sv status)
[ "$(echo "$out" | grep -c '^pool ')" = 2 ] && echo "$out" | grep -qE '^  -{16}  BACK MODE$' &&
	ok "status with two pools" || bad "status with two pools: $out"
out=$(sv status --json)
echo "$out" | grep -q '"name": "p-one"' && echo "$out" | grep -q '"slot_map": "----------------"' &&
	echo "$out" | grep -q '"counters": {"published": 0, "bytes": 0' && ok "status --json with two pools" ||
	bad "status --json: $out"
out=$(sv status --prometheus)
echo "$out" | grep -q '^# TYPE sv2shm_pool_published_total counter$' &&
	echo "$out" | grep -q '^sv2shm_pool_slots{pool="p-two"} 16$' && ok "status --prometheus" ||
	bad "status --prometheus: $out"
for p in "${PIDS[@]}"; do kill -TERM "$p"; wait "$p"; done
PIDS=()

# --- every real frame through --file, byte for byte
n=0
for f in "$FRAMES"/*.bin; do
	svbg produce --pool real --file "$f" --quiet 2>"$DIR/prod.err" &
	pp=$!
	wait_pool real
	seen=$(sv consume --pool real --hexdump --timeout 10000 2>"$DIR/cons.err")
	wait "$pp"
	prc=$?
	if [ $prc = 0 ] && [ "$(echo "$seen" | grep -c '^frame ')" = 1 ] &&
		[ "$(echo "$seen" | hexbytes_dump)" = "$(hexbytes_file "$f")" ]; then
		n=$((n + 1))
	else
		bad "--file $(basename "$f"): produce exit $prc; $(cat "$DIR/prod.err" "$DIR/cons.err")"
	fi
done
total=$(ls "$FRAMES"/*.bin | wc -l)
[ "$n" = "$total" ] && ok "$n real frames through --file, byte for byte"

# --- all of them as one stream: stdin, then --listen
cat "$FRAMES"/*.bin >"$DIR/stream.bin"
svbg produce --pool stream <"$DIR/stream.bin" 2>"$DIR/prod.err" &
pp=$!
wait_pool stream
seen=$(sv consume --pool stream --hexdump --timeout 10000 2>/dev/null)
wait "$pp" && [ "$(echo "$seen" | grep -c '^frame ')" = "$total" ] &&
	[ "$(echo "$seen" | hexbytes_dump)" = "$(hexbytes_file "$DIR/stream.bin")" ] &&
	ok "the $total frames as one stream on stdin" || bad "stream on stdin: $(cat "$DIR/prod.err")"

svbg produce --pool tcp --listen 127.0.0.1:0 --count "$total" 2>"$DIR/prod.err" &
pp=$!
wait_pool tcp
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$DIR/prod.err" | cut -d: -f2)
svbg consume --pool tcp --hexdump --timeout 10000 >"$DIR/seen.txt" 2>/dev/null &
cp=$!
sleep 0.2
cat "$DIR/stream.bin" >"/dev/tcp/127.0.0.1/$port"
wait "$pp" && wait "$cp" && [ "$(grep -c '^frame ' "$DIR/seen.txt")" = "$total" ] &&
	[ "$(hexbytes_dump <"$DIR/seen.txt")" = "$(hexbytes_file "$DIR/stream.bin")" ] &&
	ok "the $total frames through --listen 127.0.0.1:$port" || bad "--listen: $(cat "$DIR/prod.err")"

# --- synthetic frames, two checking consumers
svbg produce --pool synth --synthetic 12-5000 --count 20000 --consumers 2 --quiet 2>"$DIR/prod.err" &
pp=$!
wait_pool synth
svbg consume --pool synth --checksum --quiet --json >"$DIR/c1.json" 2>/dev/null &
c1=$!
svbg consume --pool synth --checksum --quiet --json --hold-ms 1 >"$DIR/c2.json" 2>/dev/null &
c2=$!
wait "$pp" && wait "$c1" && wait "$c2" && grep -q '^{"received": 20000, "verified": 20000, "corrupt": 0, "missed": 0, "bytes": [0-9]*}$' "$DIR/c1.json" &&
	grep -q '^{"received": 20000, "verified": 20000, "corrupt": 0, "missed": 0,' "$DIR/c2.json" &&
	ok "20000 synthetic frames to two --checksum consumers" || bad "synthetic: $(cat "$DIR/prod.err" "$DIR/c1.json" "$DIR/c2.json")"

# --- bad usage: exit 2
for args in "status --bogus" "produce --pool x --listen 10.1.2.3:4000" "produce --pool x --synthetic 5-10" \
	"consume" "demo --seconds 0"; do
	# shellcheck disable=SC2086
	"$SV2SHM" $args 2>/dev/null
	rc=$?
	[ $rc = 2 ] && ok "exit 2: sv2shm $args" || bad "sv2shm $args: exit $rc, not 2"
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
