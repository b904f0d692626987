#!/usr/bin/env bash
# fuzz.sh fuzzes one target for a while, telling a crasher from a failure of
# Go's fuzzing engine:
#
#   scripts/fuzz.sh PKG TARGET [FUZZTIME]
#
# PKG is a package directory (./internal/wire), TARGET a fuzz function
# (FuzzReadFrame), FUZZTIME a -fuzztime value (default $FUZZTIME, else 10s).
# It runs
#
#   go test -run '^$' -fuzz "^TARGET$" -fuzztime FUZZTIME PKG
#
# and, when that fails:
#   - a crasher fails at once: a new file in PKG/testdata/fuzz/TARGET/ (kept,
#     to be committed as a regression input), "Failing input written to" or
#     "failure while testing seed corpus entry" in the output;
#   - an error of the fuzzing engine itself, with no failing input, is
#     retried once: "context deadline exceeded" at the -fuzztime boundary
#     (a race in the coordinator, go.dev/issue/75804, fixed in Go 1.27) and
#     the coordinator's messages about a worker process it lost
#     (src/internal/fuzz/worker.go);
#   - anything else (a build error, a test timeout) fails at once.
# A second failure of any kind fails.
#
# FUZZ_GO overrides the go command (scripts/fuzz_selftest.sh uses it to
# simulate the engine's errors).
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 PKG TARGET [FUZZTIME]" >&2
  exit 2
fi
pkg=$1
target=$2
fuzztime=${3:-${FUZZTIME:-10s}}
go=${FUZZ_GO:-go}
if [ ! -d "$pkg" ]; then
  echo "fuzz.sh: $pkg is not a package directory" >&2
  exit 2
fi
corpus="$pkg/testdata/fuzz/$target"

# The coordinator's messages for a failure of the engine rather than of the
# target: Go 1.26's src/internal/fuzz/worker.go and fuzz.go. Each counts only
# when no failing input was saved.
engine_errors=(
  'context deadline exceeded'
  'fuzzing process hung or terminated unexpectedly'
  'fuzzing process terminated by unexpected signal'
  'fuzzing process terminated without fuzzing'
  'communicating with fuzzing process'
  'communicating with fuzzing coordinator'
)
# The messages that mean a failing input: the fuzzer saved one, or a seed
# corpus entry failed.
crasher_signs=(
  'Failing input written to'
  'failure while testing seed corpus entry'
)

log=$(mktemp)
trap 'rm -f "$log"' EXIT

corpus_files() { if [ -d "$corpus" ]; then find "$corpus" -type f | LC_ALL=C sort; fi; }

# attempt runs the fuzzer once, its output shown and kept in $log. It
# returns 0 on success, 1 for a crasher or an unknown failure, and 3 for an
# error of the fuzzing engine (then $engine_error names it).
attempt() {
  local before after new sign
  before=$(corpus_files)
  set +e
  "$go" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] && return 0
  after=$(corpus_files)
  new=$(LC_ALL=C comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep -v '^$' || true)
  if [ -n "$new" ]; then
    echo "fuzz.sh: $target found a failing input, kept to commit as a regression input: $(paste -sd ' ' <<<"$new")" >&2
    return 1
  fi
  for sign in "${crasher_signs[@]}"; do
    if grep -qF -- "$sign" "$log"; then
      echo "fuzz.sh: $target failed on an input: $(grep -F -m1 -- "$sign" "$log")" >&2
      return 1
    fi
  done
  for sign in "${engine_errors[@]}"; do
    if grep -qF -- "$sign" "$log"; then
      engine_error=$(grep -F -m1 -- "$sign" "$log" | sed 's/^[[:space:]]*//')
      return 3
    fi
  done
  echo "fuzz.sh: $target failed (exit $rc), not with a known fuzzing-engine error: not retried" >&2
  return 1
}

engine_error=
rc=0
attempt || rc=$?
if [ "$rc" -eq 3 ]; then
  echo "fuzz.sh: retrying $target once after a fuzzing-engine error (not a crasher): $engine_error" >&2
  rc=0
  attempt || rc=$?
  if [ "$rc" -eq 3 ]; then
    echo "fuzz.sh: $target failed again with a fuzzing-engine error: $engine_error" >&2
  fi
fi
[ "$rc" -eq 0 ] || exit 1
