#!/usr/bin/env bash
# make demo: the whole Confidant flow on this machine, narrated. make demo
# has already installed the system packages and built bin/; this runs
# integration/cmd/confidant-demo, which starts a verifier and confidant-hostd
# in a temporary directory, builds and encrypts the demo image, boots it,
# boots a tampered copy that is refused, and removes everything again
# (also on Ctrl-C).
#
#   scripts/demo.sh [--keep] [--guest-timeout 3m]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=bin
for p in confidant-verifier confidant-hostd confidant-image confidant-agent; do
	if [ ! -x "$bin/$p" ]; then
		echo "demo: $bin/$p is missing; building the programs first (make build)"
		make build
		break
	fi
done

# The demo program is built once into a temporary file, so that an
# interrupt reaches it directly and its own cleanup runs.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/confidant-demo-bin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/confidant-demo" ./integration/cmd/confidant-demo
"$tmp/confidant-demo" --bin "$bin" "$@"
