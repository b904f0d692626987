#!/usr/bin/env bash
# run-bench.sh runs the Python load client (bench/load.py) against a running calcd, for scripts/bench-langs.sh:
#
#   client/python/run-bench.sh --transport tcp|grpc --addr HOST:PORT --concurrency N --duration SECONDS [--warmup SECONDS]
#
# One connection (calc_client's asyncio TcpChannel to one address, or one grpc.aio channel through GrpcClient),
# N asyncio tasks each with one Calculate call outstanding, every answer checked; one line of JSON on stdout (lang,
# transport, concurrency, calls, errors, seconds, calls_per_sec, p50_us, p99_us), everything else on stderr. Exit 0
# when calls were made and none failed.
#
# It uses the venv run-conformance.sh makes (venv.sh: created or updated only when missing or stale), so after
# run-conformance.sh it starts at once.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/venv.sh" # sets $py
exec "$py" "$here/bench/load.py" "$@"
