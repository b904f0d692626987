#!/usr/bin/env bash
# run-bench.sh builds the C++ load client, calc-bench-cpp (build.sh: the
# Debian packages if missing, then the one target, incrementally, in
# client/cpp/build as run-conformance.sh uses; output on stderr), and runs
# it against a calcd that is already running:
#
#   client/cpp/run-bench.sh --transport tcp|grpc --addr HOST:PORT --concurrency N --duration SECONDS [--warmup SECONDS]
#
# One connection (raw TCP: one calc::TcpClient, N calls in flight through
# its callback form; gRPC: one grpc::Channel, N calls in flight through
# grpc++'s callback API), unary Calculate(ADD, i, 1) with every answer checked. It
# prints one line of JSON on stdout (lang, transport, concurrency, calls,
# errors, seconds, calls_per_sec, p50_us, p99_us) and exits 1 if any call
# failed or none completed: the contract every language's run-bench.sh
# keeps for scripts/bench-langs.sh. It does not start calcd.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/build.sh" calc-bench-cpp
exec "$here/build/calc-bench-cpp" "$@"
