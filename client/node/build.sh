#!/usr/bin/env bash
# build.sh installs the Node client's dependencies (npm ci from the committed
# package-lock.json, only when package.json or the lock changed), generates
# the protobuf code with buf + protoc-gen-es and compiles src/ to dist/ with
# tsc (only when an input changed). run-conformance.sh and run-bench.sh run
# it first; all of its output goes to stderr. The hash of the build's inputs
# is left in dist/.calc-build-stamp.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

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
  echo "build: npm ci" >&2
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
if [ "$(cat dist/.calc-build-stamp 2>/dev/null || true)" != "$build_hash" ] || [ ! -f dist/conformance.js ] ||
  [ ! -f dist/bench.js ] || [ ! -d src/gen ]; then
  echo "build: buf generate + tsc" >&2
  rm -rf src/gen dist
  node_modules/.bin/buf generate ../../proto --template buf.gen.yaml >&2
  node_modules/.bin/buf generate googleapis-subset --template buf.gen.yaml >&2
  node_modules/.bin/tsc -p tsconfig.json >&2
  echo "$build_hash" >dist/.calc-build-stamp
fi
