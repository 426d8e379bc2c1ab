#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx in a *_test.go file) for a short
# time each. Targets are discovered, not listed: a new one runs without
# editing this script.
#
#   FUZZTIME      per-target budget (default 10s; `make test` uses 3s)
#   FUZZPARALLEL  fuzzing workers per target (default: go test's, GOMAXPROCS)
#   FUZZREPORT    if set, a file that gets one Markdown table row per target:
#                 package, target, budget, execs, result, findings
#   FUZZMATCH     if set, only targets whose "pkg target" matches this regex
#
# Any failure (a crash, or a broken invariant) fails the script after all
# targets ran; the failing input is left under the package's
# testdata/fuzz/<Target>/ for `go test` to replay.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
parallel=()
if [ -n "${FUZZPARALLEL:-}" ]; then parallel=(-parallel "$FUZZPARALLEL"); fi
report="${FUZZREPORT:-}"
match="${FUZZMATCH:-}"
found=0
failed=()
start=$(date +%s)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

targets() {
  # Tracked and new (not yet committed) test files alike.
  { git ls-files '*_test.go'; git ls-files --others --exclude-standard '*_test.go'; } |
    sort -u | while IFS= read -r file; do
      [ -f "$file" ] || continue
      for t in $(grep -oE '^func Fuzz[A-Za-z0-9_]+\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
        echo "./$(dirname "$file") $t"
      done
    done
}

while read -r dir target; do
  if [ -n "$match" ] && ! [[ "$dir $target" =~ $match ]]; then continue; fi
  found=$((found + 1))
  echo "fuzz-smoke: $dir $target ($fuzztime)"
  t0=$(date +%s)
  CGO_ENABLED=1 go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "${parallel[@]}" "$dir" >"$out" 2>&1
  rc=$?
  t1=$(date +%s)
  tail -n 3 "$out"
  execs=$(grep -oE 'execs: [0-9]+' "$out" | tail -n 1 | awk '{print $2}')
  if [ $rc -eq 0 ]; then
    result=pass findings=none
  else
    cat "$out"
    result=FAIL
    findings=$(grep -oE 'testdata/fuzz/[A-Za-z0-9_]+/[0-9a-f]+' "$out" | head -n 1)
    findings="${findings:-see log}"
    failed+=("$dir $target")
  fi
  if [ -n "$report" ]; then
    echo "| ${dir#./} | $target | ${fuzztime} (wall $((t1 - t0))s) | ${execs:-0} | $result | $findings |" >>"$report"
  fi
done < <(targets)

echo "fuzz-smoke: $found targets in $(($(date +%s) - start))s, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'fuzz-smoke: FAILED %s\n' "${failed[@]}"
  exit 1
fi
if [ "$found" -eq 0 ]; then
  echo "fuzz-smoke: no fuzz targets found" >&2
  exit 1
fi
