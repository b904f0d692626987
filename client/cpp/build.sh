#!/usr/bin/env bash
# build.sh [TARGET...] installs what the C++ client needs (Debian packages,
# only those missing), configures client/cpp/build once (RelWithDebInfo:
# -O2 -g) and builds TARGETs there (default: everything, tests included),
# incrementally. run-conformance.sh and run-bench.sh run it; all of its
# output goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build="$here/build"

# Debian bookworm packages: compilers and CMake (normally present), grpc++ and
# protobuf with protoc and grpc_cpp_plugin, snappy, nlohmann-json, OpenSSL
# (TLS 1.3 for the raw TCP client), GoogleTest.
packages=(g++ make cmake pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libsnappy-dev nlohmann-json3-dev libssl-dev libgtest-dev)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "cpp: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" -j2 "${targets[@]}" >&2
