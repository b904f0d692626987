#!/usr/bin/env bash
# run-conformance.sh --grpc HOST:PORT --tcp HOST:PORT [--tls] [--tls-ca FILE]
#                    [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--token TOKEN]
#
# Installs what the C++ client needs (Debian packages, only those missing),
# configures and builds client/cpp/build (generated code included, and, with
# Go, the calcd and devcerts the tests start), runs the unit tests (ctest:
# the codec, the client against scripted servers, TLS/token refusals and
# reconnects against calcd processes of their own), then runs
# calc-conformance against a calcd that is already running: every case of
# testdata/conformance/cases.json over gRPC and raw TCP, and every vector of
# testdata/wire/vectors.json. Its arguments go to calc-conformance as they
# are: with the --tls options both transports run over TLS, and the token
# (--token, or CALC_TOKEN in the environment) is sent on every call. The
# last line is the runner's "N passed, N failed"; the exit status is
# non-zero if anything failed. It does not start the calcd it is given.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build="$here/build"

if [ "$#" -eq 0 ]; then
  echo "usage: $0 --grpc HOST:PORT --tcp HOST:PORT" >&2
  exit 2
fi

"$here/build.sh"  # packages, configure, build (everything: the tests too)

unit=0
(cd "$build" && ctest --output-on-failure --timeout 120 >&2) || unit=$?
if [ "$unit" -ne 0 ]; then echo "cpp: unit tests (ctest) failed" >&2; fi

rc=0
"$build/calc-conformance" --cases "$repo/testdata/conformance/cases.json" \
  --vectors "$repo/testdata/wire/vectors.json" "$@" || rc=$?
if [ "$unit" -ne 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
exit "$rc"
