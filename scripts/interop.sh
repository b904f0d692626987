#!/usr/bin/env bash
# interop.sh builds calcd, starts ONE calcd on free loopback ports, and runs
# every language's conformance runner (client/<lang>/run-conformance.sh)
# against it over gRPC and raw TCP. Each runner installs its own dependencies
# (Maven Central, PyPI, npm, Debian packages). Prints each language's counts
# and time, then the total; exits non-zero if any case failed.
#
#   scripts/interop.sh              all languages
#   scripts/interop.sh python node  only these
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(java python node cpp)

work=$(mktemp -d)
calcd_pid=""
cleanup() {
  [ -z "$calcd_pid" ] || kill "$calcd_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/calcd" ./server/cmd/calcd
"$work/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 2>"$work/calcd.log" &
calcd_pid=$!
addr_of() { # transport: the address calcd logged it listens on
  sed -n "s/.*\"msg\":\"listening\",\"transport\":\"$1\",\"addr\":\"\([^\"]*\)\".*/\1/p" "$work/calcd.log" | head -1
}
for _ in $(seq 100); do
  [ -n "$(addr_of tcp)" ] && break
  sleep 0.1
done
grpc_addr=$(addr_of grpc)
tcp_addr=$(addr_of tcp)
if [ -z "$tcp_addr" ] || [ -z "$grpc_addr" ]; then
  echo "interop: calcd did not start:" >&2
  cat "$work/calcd.log" >&2
  exit 1
fi
echo "interop: calcd serving gRPC on $grpc_addr and raw TCP on $tcp_addr" >&2

total_pass=0
total_fail=0
summary=()
status=0
for lang in "${langs[@]}"; do
  script="client/$lang/run-conformance.sh"
  echo "interop: === $lang ===" >&2
  start=$(date +%s)
  if bash "$script" --grpc "$grpc_addr" --tcp "$tcp_addr" >"$work/$lang.out"; then rc=0; else rc=$?; fi
  secs=$(( $(date +%s) - start ))
  cat "$work/$lang.out"
  counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$work/$lang.out" | tail -1 || true)
  if [ -z "$counts" ]; then
    counts="0 passed, 1 failed"
    echo "interop: $lang printed no counts (exit $rc)" >&2
  fi
  pass=${counts%% passed*}
  fail=${counts#*, }
  fail=${fail%% failed*}
  if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
    fail=1 # the script failed outside its runner (build, unit tests)
  fi
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
  [ "$fail" -eq 0 ] || status=1
  summary+=("$(printf '%-8s %5d passed, %3d failed  %4ds' "$lang" "$pass" "$fail" "$secs")")
done

if ! kill -0 "$calcd_pid" 2>/dev/null; then
  echo "interop: calcd died during the run:" >&2
  cat "$work/calcd.log" >&2
  status=1
fi
echo
echo "interop summary (each language: every case over gRPC and raw TCP, plus the wire vectors):"
printf '  %s\n' "${summary[@]}"
echo "interop: $total_pass passed, $total_fail failed"
exit $status
