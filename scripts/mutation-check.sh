#!/usr/bin/env bash
# Removes each check of the DESIGN.md verifier checklist in turn, in a copy
# of the tree (HEAD; never the working tree itself), runs the tests named
# for it and expects them to fail. Prints a table; exits 1 if a removal
# went unnoticed. Arguments go to integration/cmd/mutcheck (-only REGEX,
# -worktree, -explore, -locate, -out FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1
exec go run ./integration/cmd/mutcheck -repo . "$@"
