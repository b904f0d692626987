#!/usr/bin/env bash
# interop.sh builds calcd, starts ONE calcd on free loopback ports, and runs
# every language's conformance runner (client/<lang>/run-conformance.sh)
# against it over gRPC and raw TCP. Each runner installs its own dependencies
# (Maven Central, PyPI, npm, Debian packages). Prints each language's counts
# and time, then the total; exits non-zero if any case failed.
#
# A second pass, "<lang>+tls", starts a second calcd with TLS, mutual TLS
# (--tls-client-ca) and --auth-tokens (dev certificates from tools/devcerts,
# a policy with the SHA-256 of a random token) and runs each runner that
# speaks TLS (tls_langs below) over TLS with a client certificate and that
# token (passed in the environment as CALC_TOKEN, never on a command line).
# The CALC_TLS_* variables also let a language's own TLS tests use it.
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
tls_pid=""
cleanup() {
  [ -z "$calcd_pid" ] || kill "$calcd_pid" 2>/dev/null || true
  [ -z "$tls_pid" ] || kill "$tls_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/calcd" ./server/cmd/calcd
# With an HTTP port, the node runner also runs every case over the browser
# WebSocket transport (/ws on that port).
http_args=(--http-addr 127.0.0.1:0)
"$work/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 "${http_args[@]}" 2>"$work/calcd.log" &
calcd_pid=$!
source scripts/lib.sh
tcp_addr=$(listen_addr "$work/calcd.log" tcp || true)
grpc_addr=$(listen_addr "$work/calcd.log" grpc || true)
http_addr=$(listen_addr "$work/calcd.log" http || true)
if [ -z "$tcp_addr" ] || [ -z "$grpc_addr" ] || [ -z "$http_addr" ]; then
  echo "interop: calcd did not start:" >&2
  cat "$work/calcd.log" >&2
  exit 1
fi
echo "interop: calcd serving gRPC on $grpc_addr, raw TCP on $tcp_addr and HTTP (with /ws) on $http_addr" >&2

total_pass=0
total_fail=0
summary=()
status=0
run_lang() { # label script args...: run one runner, print its output, add up its counts
  local lang=$1 script=$2 start secs rc counts pass fail
  shift 2
  echo "interop: === $lang ===" >&2
  start=$(date +%s)
  if bash "$script" "$@" >"$work/$lang.out"; then rc=0; else rc=$?; fi
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
  summary+=("$(printf '%-10s %5d passed, %3d failed  %4ds' "$lang" "$pass" "$fail" "$secs")")
}

for lang in "${langs[@]}"; do
  ws_args=()
  if [ "$lang" = node ]; then ws_args=(--ws "ws://$http_addr/ws"); fi
  run_lang "$lang" "client/$lang/run-conformance.sh" --grpc "$grpc_addr" --tcp "$tcp_addr" "${ws_args[@]}"
done

# <lang>+tls: a second calcd requiring TLS 1.3, a client certificate and a token.
tls_langs=(python java node cpp)
run_tls=()
for lang in "${langs[@]}"; do
  for t in "${tls_langs[@]}"; do [ "$lang" != "$t" ] || run_tls+=("$lang"); done
done
if [ ${#run_tls[@]} -gt 0 ]; then
  certs="$work/certs"
  go run ./tools/devcerts -out "$certs" >&2
  token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '{"principals":[{"name":"interop","token_sha256":"%s","methods":["*"]}]}\n' \
    "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" >"$work/policy.json"
  "$work/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 \
    --tls-cert "$certs/server.pem" --tls-key "$certs/server-key.pem" --tls-client-ca "$certs/ca.pem" \
    --auth-tokens "$work/policy.json" 2>"$work/calcd-tls.log" &
  tls_pid=$!
  tls_tcp=$(listen_addr "$work/calcd-tls.log" tcp || true)
  tls_grpc=$(listen_addr "$work/calcd-tls.log" grpc || true)
  if [ -z "$tls_tcp" ] || [ -z "$tls_grpc" ]; then
    echo "interop: the TLS calcd did not start:" >&2
    cat "$work/calcd-tls.log" >&2
    total_fail=$((total_fail + 1))
    status=1
    summary+=("$(printf '%-10s %5d passed, %3d failed  %4ds' tls 0 1 0)")
  else
    echo "interop: TLS calcd (mTLS, --auth-tokens) serving gRPC on $tls_grpc and raw TCP on $tls_tcp" >&2
    for lang in "${run_tls[@]}"; do
      CALC_TOKEN=$token CALC_TLS_TCP=$tls_tcp CALC_TLS_GRPC=$tls_grpc CALC_TLS_CA="$certs/ca.pem" \
        CALC_TLS_CERT="$certs/client.pem" CALC_TLS_KEY="$certs/client-key.pem" \
        CALC_TLS_SERVER_CERT="$certs/server.pem" CALC_TLS_SERVER_KEY="$certs/server-key.pem" \
        run_lang "$lang+tls" "client/$lang/run-conformance.sh" --grpc "$tls_grpc" --tcp "$tls_tcp" \
        --tls-ca "$certs/ca.pem" --tls-cert "$certs/client.pem" --tls-key "$certs/client-key.pem"
    done
    if ! kill -0 "$tls_pid" 2>/dev/null; then
      echo "interop: the TLS calcd died during the run:" >&2
      cat "$work/calcd-tls.log" >&2
      status=1
    fi
  fi
fi

if ! kill -0 "$calcd_pid" 2>/dev/null; then
  echo "interop: calcd died during the run:" >&2
  cat "$work/calcd.log" >&2
  status=1
fi
echo
echo "interop summary (each language: every case over gRPC and raw TCP, plus the wire vectors (node: and over WebSocket, with an HTTP port); <lang>+tls: the same over TLS with a client certificate and a token):"
printf '  %s\n' "${summary[@]}"
echo "interop: $total_pass passed, $total_fail failed"
exit $status
