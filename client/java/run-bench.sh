#!/usr/bin/env bash
# run-bench.sh runs the Java load client (src/test/java/dev/calcrpc/client/bench/LoadMain.java) against a
# running calcd, for scripts/bench-langs.sh:
#
#   client/java/run-bench.sh --transport tcp|grpc --addr HOST:PORT --concurrency N --duration SECONDS [--warmup SECONDS]
#
# One connection (a TcpChannel, or one grpc-java channel), N Calculate calls outstanding through the async stub,
# every answer checked; one line of JSON on stdout (lang, transport, concurrency, calls, errors, seconds,
# calls_per_sec, p50_us, p99_us), everything else on stderr. Exit 0 when calls were made and none failed.
#
# It builds incrementally in the same target/ as run-conformance.sh (mvn package -DskipTests, only when a source,
# pom.xml or a proto is newer than the last build), so after run-conformance.sh it starts at once. JVM options:
# env CALC_BENCH_JAVA_OPTS (e.g. -XX:+FlightRecorder -XX:StartFlightRecording=filename=/tmp/bench.jfr).
set -euo pipefail

cd "$(dirname "$0")"
here=$(pwd)
root=$(cd ../.. && pwd)

if ! command -v javac >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  echo "run-bench.sh: installing openjdk-17-jdk-headless and maven from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless maven >/dev/null
fi

main_class=target/test-classes/dev/calcrpc/client/bench/LoadMain.class
if [ ! -f "$main_class" ] || [ ! -f target/classpath.txt ] ||
  [ -n "$(find src pom.xml "$root/proto" -newer "$main_class" -type f -print -quit)" ]; then
  echo "run-bench.sh: building the Java client and its load client (mvn package -DskipTests)" >&2
  mkdir -p target
  log=target/mvn-bench-build.log
  if ! mvn -B -q -ntp package -DskipTests >"$log" 2>&1; then
    cat "$log" >&2
    echo "run-bench.sh: the Maven build failed (log above)" >&2
    exit 1
  fi
  touch "$main_class"
fi

# shellcheck disable=SC2086 # the options are meant to split
exec java ${CALC_BENCH_JAVA_OPTS:-} -cp "$here/target/classes:$here/target/test-classes:$(cat "$here/target/classpath.txt")" \
  dev.calcrpc.client.bench.LoadMain "$@"
