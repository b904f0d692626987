#!/usr/bin/env bash
# run-conformance.sh installs the Node client's dependencies (npm ci from the
# committed package-lock.json), generates the protobuf code with buf +
# protoc-gen-es, compiles it with tsc (build.sh), runs its tests (unit tests, and live
# tests that build calcd with go and start their own: TLS, mutual TLS,
# tokens, reconnecting, two servers) once per build, then runs the
# conformance runner against a calcd that is already running:
#
#   client/node/run-conformance.sh --grpc 127.0.0.1:50051 --tcp 127.0.0.1:4000
#   CALC_TOKEN=... client/node/run-conformance.sh --grpc ... --tcp ... \
#     --tls-ca ca.pem --tls-cert client.pem --tls-key client-key.pem
#
# Every case of testdata/conformance/cases.json runs over gRPC and raw TCP and
# every vector of testdata/wire/vectors.json is decoded; the last line printed
# is "N passed, N failed" and the exit status is non-zero if anything failed.
# It does not start calcd. Re-running is fast: npm ci runs only when
# package-lock.json changed, generate + build only when an input changed.
# Extra arguments (--verbose, --cases FILE, --vectors FILE, --tls, --tls-ca FILE,
# --tls-cert FILE, --tls-key FILE, --tls-server-name NAME, --token TOKEN) go to
# the runner; the token defaults to the environment's CALC_TOKEN. --ws URL runs
# every case over the browser WebSocket transport too, against calcd's HTTP
# port (--ws ws://127.0.0.1:8080/ws).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

usage() {
  echo "usage: $0 --grpc HOST:PORT --tcp HOST:PORT [--verbose] [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--token TOKEN]" >&2
  exit 2
}
case " $* " in
*" --grpc "* | *" --grpc="*) ;;
*) usage ;;
esac
case " $* " in
*" --tcp "* | *" --tcp="*) ;;
*) usage ;;
esac

# 1. Install, generate and compile, each only when its inputs changed.
./build.sh
build_hash=$(cat dist/.calc-build-stamp)

# 2. Tests (node:test): unit tests (the wire vectors, in-process fake
#    servers) and live tests against calcd processes they build and start.
#    They run once per build: interop.sh calls this script twice (plaintext,
#    then TLS) with the same build.
if [ "$(cat dist/.calc-test-stamp 2>/dev/null || true)" != "$build_hash" ]; then
  command -v go >/dev/null || { echo "run-conformance: go is required by the live tests" >&2; exit 1; }
  if ! node --test dist/test/*.test.js dist/test/live/*.test.js >&2; then
    echo "run-conformance: tests failed" >&2
    exit 1
  fi
  echo "$build_hash" >dist/.calc-test-stamp
else
  echo "run-conformance: tests already passed for this build" >&2
fi

# 3. Run.
exec node dist/conformance.js "$@"
