#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx in a *_test.go file) for a short
# time each. Targets are discovered, not listed: a new one runs without
# editing this script. Each package's fuzzing test binary is built once
# (go test -c -fuzz) and run once per target.
#
#   FUZZTIME      per-target budget (default 10s; `make test` uses 3s)
#   FUZZPARALLEL  fuzzing workers per target (default: GOMAXPROCS)
#   FUZZREPORT    if set, a file that gets one Markdown table row per target:
#                 package, target, budget, execs, result, findings
#   FUZZMATCH     if set, only targets whose "./pkg Target" matches this regex
#
# Any failure (a crash, or a broken invariant) fails the script after all
# targets ran; the failing input is left under the package's
# testdata/fuzz/<Target>/ for `go test` to replay. A run that ends while Go
# is still gathering its baseline coverage ("context deadline exceeded",
# no failing input: the machine was too busy) is retried once with twice
# the budget.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
parallel=()
if [ -n "${FUZZPARALLEL:-}" ]; then parallel=(-test.parallel "$FUZZPARALLEL"); fi
report="${FUZZREPORT:-}"
match="${FUZZMATCH:-}"
found=0
failed=()
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gocache=$(go env GOCACHE)
export CGO_ENABLED=1

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

# fuzz DIR BINARY TARGET TIME OUT: runs one target from the package dir, as
# go test does (same corpus cache, failing inputs under testdata/fuzz).
fuzz() {
  local dir=$1 bin=$2 target=$3 time=$4 out=$5
  (cd "$dir" && "$bin" -test.run '^$' -test.fuzz "^${target}\$" -test.fuzztime "$time" \
    -test.fuzzcachedir "$gocache/fuzz/$importpath" "${parallel[@]}") >"$out" 2>&1
}

lastdir= bin=
while read -r dir target; do
  if [ -n "$match" ] && ! [[ "$dir $target" =~ $match ]]; then continue; fi
  found=$((found + 1))
  out="$work/out"
  t0=$(date +%s)
  if [ "$dir" != "$lastdir" ]; then
    lastdir=$dir bin="$work/$(echo "$dir" | tr '/.' '__').test"
    importpath=$(go list "$dir")
    if ! go test -c -fuzz . -o "$bin" "$dir" >"$out" 2>&1; then
      cat "$out"
      bin=
    fi
  fi
  echo "fuzz-smoke: $dir $target ($fuzztime)"
  rc=1
  if [ -n "$bin" ]; then
    fuzz "$dir" "$bin" "$target" "$fuzztime" "$out"
    rc=$?
    if [ $rc -ne 0 ] && grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
      echo "fuzz-smoke: $dir $target: ended in baseline coverage; retrying with twice the time"
      retry=$fuzztime
      if [[ $fuzztime =~ ^[0-9]+s$ ]]; then retry="$((${fuzztime%s} * 2))s"; fi
      fuzz "$dir" "$bin" "$target" "$retry" "$out"
      rc=$?
    fi
  fi
  t1=$(date +%s)
  tail -n 2 "$out"
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
