#!/usr/bin/env bash
# run-conformance.sh installs the Node client's dependencies (npm ci from the
# committed package-lock.json), generates the protobuf code with buf +
# protoc-gen-es, compiles it with tsc, runs its tests (unit tests, and live
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

command -v node >/dev/null || { echo "node (20 or later) is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is required" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  { echo "node 20 or later is required, found $(node --version)" >&2; exit 1; }

hash_of() { # files... -> one sha256 over their names and contents
  local f
  for f in "$@"; do
    printf '%s\n' "$f"
    sha256sum <"$f"
  done | sha256sum | cut -d' ' -f1
}

# 1. Dependencies, exactly as locked. The stamp records which lock file the
#    installed node_modules came from.
lock_hash=$(hash_of package.json package-lock.json)
if [ "$(cat node_modules/.calc-install-stamp 2>/dev/null || true)" != "$lock_hash" ]; then
  echo "run-conformance: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$lock_hash" >node_modules/.calc-install-stamp
fi

# 2. Generate (buf + protoc-gen-es from node_modules) and compile (tsc), when
#    any input changed since the last build.
mapfile -t inputs < <(
  {
    find ../../proto googleapis-subset -name '*.proto'
    find src -name '*.ts' -not -path 'src/gen/*'
    printf '%s\n' buf.gen.yaml tsconfig.json package.json package-lock.json ../../buf.yaml
  } | LC_ALL=C sort
)
build_hash=$(hash_of "${inputs[@]}")
if [ "$(cat dist/.calc-build-stamp 2>/dev/null || true)" != "$build_hash" ] || [ ! -f dist/conformance.js ] || [ ! -d src/gen ]; then
  echo "run-conformance: buf generate + tsc" >&2
  rm -rf src/gen dist
  node_modules/.bin/buf generate ../../proto --template buf.gen.yaml >&2
  node_modules/.bin/buf generate googleapis-subset --template buf.gen.yaml >&2
  node_modules/.bin/tsc -p tsconfig.json >&2
  echo "$build_hash" >dist/.calc-build-stamp
fi

# 3. Tests (node:test): unit tests (the wire vectors, in-process fake
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

# 4. Run.
exec node dist/conformance.js "$@"
