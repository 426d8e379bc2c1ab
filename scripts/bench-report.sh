#!/bin/sh
# Runs every Confidant benchmark and the raw-cryptography floor
# (shared/floor) interleaved in one sequence on this machine, and rewrites
# the generated part of BENCHMARKS.md: the machine, the exact commands,
# medians over the rounds and each result as a ratio to its floor.
#
#   scripts/bench-report.sh [-count N] [-suites REGEXP] [-raw FILE] [-out FILE]
#
# Defaults: 3 rounds (about 10 minutes on 2 cores), all suites, BENCHMARKS.md.
# The TPM simulator needs cgo (and libssl-dev). Only ratios within one run
# mean anything on a shared machine. See integration/cmd/benchreport.
set -eu
cd "$(dirname "$0")/.."
exec go run ./integration/cmd/benchreport "$@"
