#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx) for a short time each.
# FUZZTIME overrides the per-target budget (default 10s).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
found=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
    found=$((found + 1))
    echo "fuzz-smoke: ./$dir $target ($fuzztime)"
    CGO_ENABLED=1 go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$dir"
  done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
echo "fuzz-smoke: $found targets run"
