#!/usr/bin/env bash
# Builds calc's Java client (generating the protobuf/gRPC code from ../../proto) and runs its
# conformance runner against a running calcd:
#
#   client/java/run-conformance.sh --grpc 127.0.0.1:4001 --tcp 127.0.0.1:4000
#
# Installs what it needs (JDK 17 and Maven from Debian's packages, only if missing; the Maven
# dependencies and the protoc binaries from Maven Central into ~/.m2), builds and runs the unit
# tests quietly (Maven's log is shown only if either fails), then runs the runner, whose last line is
# "N passed, N failed"; the script's exit status is the runner's.
set -euo pipefail

cd "$(dirname "$0")"
here=$(pwd)
root=$(cd ../.. && pwd)

usage() {
  echo "usage: $0 --grpc HOST:PORT --tcp HOST:PORT" >&2
  exit 2
}

grpc_addr=""
tcp_addr=""
while [ $# -gt 0 ]; do
  case "$1" in
    --grpc) [ $# -ge 2 ] || usage; grpc_addr=$2; shift 2 ;;
    --tcp) [ $# -ge 2 ] || usage; tcp_addr=$2; shift 2 ;;
    --grpc=*) grpc_addr=${1#--grpc=}; shift ;;
    --tcp=*) tcp_addr=${1#--tcp=}; shift ;;
    *) usage ;;
  esac
done
[ -n "$grpc_addr" ] && [ -n "$tcp_addr" ] || usage

# --- tools: a JDK 17+ (javac) and Maven 3.8+ -------------------------------------------------
java_major() {
  # prints the major version of the java on PATH, or 0
  local v
  v=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}') || true
  v=${v#1.}
  echo "${v%%[.+-]*}" | grep -E '^[0-9]+$' || echo 0
}
if ! command -v javac >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] || ! command -v mvn >/dev/null 2>&1; then
  echo "run-conformance.sh: installing openjdk-17-jdk-headless and maven from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless maven >/dev/null
  if [ "$(java_major)" -lt 17 ] && [ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]; then
    export JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
    export PATH="$JAVA_HOME/bin:$PATH"
  fi
fi

# --- generate + build ------------------------------------------------------------------------
# protoc and protoc-gen-grpc-java are fetched from Maven Central by the protobuf plugin; the
# generated sources land in target/generated-sources/protobuf. Maven -q still prints stray ANSI
# resets, so its output goes to a log shown only on failure.
log="$here/target/mvn-build.log"
mkdir -p "$here/target"
if ! mvn -B -q -ntp package >"$log" 2>&1; then
  cat "$log" >&2
  echo "run-conformance.sh: the Maven build or its unit tests failed (log above)" >&2
  exit 1
fi

# --- run -------------------------------------------------------------------------------------
exec java -cp "$here/target/classes:$(cat "$here/target/classpath.txt")" \
  dev.calcrpc.client.conformance.ConformanceRunner \
  --grpc "$grpc_addr" --tcp "$tcp_addr" \
  --cases "$root/testdata/conformance/cases.json" \
  --vectors "$root/testdata/wire/vectors.json"
