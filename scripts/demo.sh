#!/usr/bin/env bash
# make demo: runs the most complete Confidant flow that exists today and says
# plainly what it does. The end-to-end guest boot (issue 8) replaces this.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

say "Confidant demo (foundation stage)"
echo "The end-to-end confidential boot is not built yet. This demo runs what exists:"
echo "the repository's layering check (shared/ never imports a component)."
CGO_ENABLED=1 go test -count=1 -v -run 'TestSharedIsALeaf' ./shared/ | grep -E '^(=== RUN|--- |ok|FAIL)'
say "done"
