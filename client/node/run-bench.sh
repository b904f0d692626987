#!/usr/bin/env bash
# run-bench.sh builds the Node client (build.sh: npm ci, buf generate, tsc,
# each only when its inputs changed; output on stderr) and runs its load
# client, dist/bench.js, against a calcd that is already running:
#
#   client/node/run-bench.sh --transport tcp|grpc --addr HOST:PORT --concurrency N --duration SECONDS [--warmup SECONDS]
#
# One connection (raw TCP: the package's CalcTcpChannel transport; gRPC:
# connect-node's gRPC transport, one HTTP/2 session), N calls in flight,
# unary Calculate(ADD, i, 1) with every answer checked. It prints one line
# of JSON on stdout (lang, transport, concurrency, calls, errors, seconds,
# calls_per_sec, p50_us, p99_us) and exits 1 if any call failed or none
# completed: the contract every language's run-bench.sh keeps for
# scripts/bench-langs.sh. It does not start calcd.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/build.sh"
exec node "$here/dist/bench.js" "$@"
