#!/usr/bin/env bash
# Builds calc's Java client (generating the protobuf/gRPC code from ../../proto), runs its unit and
# integration tests, and runs its conformance runner against a running calcd:
#
#   client/java/run-conformance.sh --grpc 127.0.0.1:4001 --tcp 127.0.0.1:4000 [runner options]
#
# Every argument goes to the runner: --grpc and --tcp are required; --tls, --tls-ca FILE,
# --tls-cert FILE, --tls-key FILE, --tls-server-name NAME and --token TOKEN (default: env
# CALC_TOKEN) connect both transports over TLS with a client certificate and a token.
#
# Installs what it needs (JDK 17 and Maven from Debian's packages, only if missing; the Maven
# dependencies and the protoc binaries from Maven Central into ~/.m2), builds and runs the tests
# quietly (Maven's log is shown only if either fails; the integration tests build calcd with Go and
# start their own), then runs the runner, whose last line is "N passed, N failed"; the script's
# exit status is the runner's.
set -euo pipefail

cd "$(dirname "$0")"
here=$(pwd)
root=$(cd ../.. && pwd)

usage() {
  echo "usage: $0 --grpc HOST:PORT --tcp HOST:PORT [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--token TOKEN]" >&2
  exit 2
}

have_grpc=""
have_tcp=""
for a in "$@"; do
  case "$a" in
    --grpc|--grpc=*) have_grpc=1 ;;
    --tcp|--tcp=*) have_tcp=1 ;;
    -h|--help) usage ;;
  esac
done
[ -n "$have_grpc" ] && [ -n "$have_tcp" ] || usage

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
args=()
for a in "$@"; do # the runner takes "--flag value"; accept "--flag=value" too
  case "$a" in
    --*=*) args+=("${a%%=*}" "${a#*=}") ;;
    *) args+=("$a") ;;
  esac
done
exec java -cp "$here/target/classes:$(cat "$here/target/classpath.txt")" \
  dev.calcrpc.client.conformance.ConformanceRunner \
  --cases "$root/testdata/conformance/cases.json" \
  --vectors "$root/testdata/wire/vectors.json" \
  "${args[@]}"
