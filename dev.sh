#!/usr/bin/env bash
# sv2shm developer entry point: installs what the project needs from Debian,
# builds it with meson, and runs the demo or the tests.
#
#   ./dev.sh demo    install, build, run the main job (sv2shm demo: a broker, a producer, consumers)
#   ./dev.sh test    install, build, run the whole test suite (meson test)
#   ./dev.sh deps    only install the Debian packages
#   ./dev.sh --help
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(meson ninja-build pkg-config gcc liburing-dev libcmocka-dev clang libclang-rt-14-dev valgrind scdoc)
BUILD=${SV2SHM_BUILD:-build}

usage() {
	sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}

deps() {
	local missing=()
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "dev.sh: installing ${missing[*]}"
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
	if [ ! -f "$BUILD/build.ninja" ]; then
		meson setup "$BUILD" "$@"
	fi
	meson compile -C "$BUILD"
}

case "${1:-}" in
demo)
	deps
	build
	# The main job: a private broker, a producer and three consumers passing
	# Sv2 frames while one consumer is killed; then the crate's examples.
	"$BUILD/client/sv2shm" demo
	meson test -C "$BUILD" --suite examples --verbose
	;;
test)
	deps
	build
	meson test -C "$BUILD" --print-errorlogs
	;;
deps)
	deps
	;;
-h | --help | help)
	usage
	;;
*)
	usage >&2
	exit 2
	;;
esac
