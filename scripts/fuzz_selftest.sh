#!/usr/bin/env bash
# fuzz_selftest.sh proves, in a few seconds, that scripts/fuzz.sh fails on a
# crasher and retries only an error of the fuzzing engine:
#   1. a seed corpus entry that panics fails, without a retry;
#   2. an input the fuzzer finds fails, without a retry, and the crasher
#      file it saved is kept;
#   3. a simulated coordinator race ("context deadline exceeded", no input
#      saved) is retried once and passes when the retry does;
#   4. the same error twice fails after one retry;
#   5. any other failure (a build error) fails without a retry.
# Cases 1 and 2 run the real go command on a throwaway module in a
# temporary directory; 3 to 5 put a fake go command in FUZZ_GO.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz="$root/scripts/fuzz.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GOWORK=off GOTOOLCHAIN=local GOFLAGS=

failed=0
out="$tmp/out"

# run CASE WANT_EXIT ARGS...: runs fuzz.sh with ARGS, its output in $out,
# and checks the exit status (0, or "nonzero").
run() {
  local name=$1 want=$2
  shift 2
  local rc=0
  (cd "$tmp/mod" && "$fuzz" "$@") >"$out" 2>&1 || rc=$?
  if { [ "$want" = 0 ] && [ "$rc" -ne 0 ]; } || { [ "$want" = nonzero ] && [ "$rc" -eq 0 ]; }; then
    fail "$name: exit $rc, want $want"
    return
  fi
  echo "ok   $name (exit $rc)"
  grep '^fuzz.sh:' "$out" | sed 's/^/       /' || true
}

fail() {
  echo "FAIL $1" >&2
  sed 's/^/       | /' "$out" >&2
  failed=1
}

# expect NAME PATTERN / expect_not NAME PATTERN: a fixed string in $out.
expect() { grep -qF -- "$2" "$out" || fail "$1: output lacks \"$2\""; }
expect_not() { ! grep -qF -- "$2" "$out" || fail "$1: output has \"$2\""; }

# The throwaway module: FuzzX panics on an input starting with "x".
mkdir -p "$tmp/mod"
cat >"$tmp/mod/go.mod" <<'EOF'
module fuzzselftest

go 1.22
EOF
write_target() {
  cat >"$tmp/mod/x_test.go" <<EOF
package fuzzselftest

import "testing"

func FuzzX(f *testing.F) {
	f.Add([]byte("$1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[0] == 'x' {
			panic("input starts with x")
		}
	})
}
EOF
}

# 1. The seed corpus hits the panic.
write_target xa
run "seed crasher fails" nonzero . FuzzX 20s
expect "seed crasher fails" "failure while testing seed corpus entry"
expect_not "seed crasher fails" "retrying"

# 2. The fuzzer finds the panic (one byte from the seed: well under a
# second) and saves the input, which fuzz.sh keeps.
write_target a
run "found crasher fails" nonzero . FuzzX 20s
expect "found crasher fails" "found a failing input"
expect_not "found crasher fails" "retrying"
if [ -z "$(ls "$tmp/mod/testdata/fuzz/FuzzX" 2>/dev/null)" ]; then
  fail "found crasher fails: no crasher kept in testdata/fuzz/FuzzX"
fi

# The fake go command: its first $FAKE_FLAKES calls end like Go 1.26's
# coordinator race; later ones pass. FAKE_MODE=build fails to build instead.
cat >"$tmp/fakego" <<'EOF'
#!/usr/bin/env bash
echo "$*" >>"$FAKE_STATE"
if [ "${FAKE_MODE:-}" = build ]; then
  printf '# fuzzselftest\n./x_test.go:3:1: syntax error: non-declaration statement outside function body\nFAIL\tfuzzselftest [build failed]\n'
  exit 1
fi
if [ "$(wc -l <"$FAKE_STATE")" -le "$FAKE_FLAKES" ]; then
  printf 'fuzz: elapsed: 3s, execs: 40304 (0/sec), new interesting: 4 (total: 8)\n--- FAIL: FuzzX (3.20s)\n    context deadline exceeded\nFAIL\nexit status 1\nFAIL\tfuzzselftest\t3.202s\n'
  exit 1
fi
printf 'fuzz: elapsed: 3s, execs: 40304 (13431/sec), new interesting: 4 (total: 8)\nPASS\nok  \tfuzzselftest\t3.202s\n'
EOF
chmod +x "$tmp/fakego"
export FUZZ_GO="$tmp/fakego" FAKE_STATE="$tmp/calls"
calls() { wc -l <"$FAKE_STATE" | tr -d ' '; }

# 3. One engine error, then a pass.
: >"$FAKE_STATE"
FAKE_FLAKES=1 run "engine error retried" 0 . FuzzX 1s
expect "engine error retried" "fuzz.sh: retrying FuzzX once after a fuzzing-engine error (not a crasher): context deadline exceeded"
[ "$(calls)" = 2 ] || fail "engine error retried: $(calls) go runs, want 2"
grep -qF -- "test -run ^\$ -fuzz ^FuzzX\$ -fuzztime 1s ." "$FAKE_STATE" || fail "engine error retried: go ran with $(head -1 "$FAKE_STATE")"

# 4. The engine error twice.
: >"$FAKE_STATE"
FAKE_FLAKES=2 run "engine error twice fails" nonzero . FuzzX 1s
expect "engine error twice fails" "failed again with a fuzzing-engine error"
[ "$(calls)" = 2 ] || fail "engine error twice fails: $(calls) go runs, want 2"

# 5. Another failure is not retried.
: >"$FAKE_STATE"
FAKE_MODE=build FAKE_FLAKES=0 run "build error not retried" nonzero . FuzzX 1s
expect_not "build error not retried" "retrying"
[ "$(calls)" = 1 ] || fail "build error not retried: $(calls) go runs, want 1"

if [ "$failed" -ne 0 ]; then
  echo "fuzz_selftest: FAIL" >&2
  exit 1
fi
echo "fuzz_selftest: ok"
