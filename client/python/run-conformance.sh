#!/usr/bin/env bash
# run-conformance.sh --grpc HOST:PORT --tcp HOST:PORT
#
# Builds and tests the Python client of calc, then runs its conformance runner
# against a calcd that is already running (this script does not start one):
#   1. a venv in client/python/.venv with a CPython >= 3.11 (created if missing),
#   2. the package and its pinned dependencies from PyPI (pyproject.toml, extra
#      "dev"); skipped when pyproject.toml/setup.py did not change since,
#   3. the protobuf/gRPC code regenerated from proto/ (generate.py);
#      steps 1-3 are venv.sh, which run-bench.sh shares,
#   4. the tests (pytest; output on stderr); tests/test_channel.py builds calcd
#      (go build, or $CALCD) and starts, kills and restarts calcds of its own on
#      loopback ports: with the CALC_TLS_* variables set, over mutual TLS,
#   5. python -m calc_client.conformance "$@" (e.g. --tls-ca/--tls-cert/--tls-key;
#      the token comes from env CALC_TOKEN), whose last stdout line is
#      "N passed, N failed".
# Exits non-zero if the unit tests or any conformance check failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
# steps 1-3: the venv, the package and its dependencies, the generated code; sets $py
source "$here/venv.sh"

# 4. tests (test_channel.py starts calcds of its own); a failure is reported but the runner still runs
unit=0
"$py" -m pytest -p no:cacheprovider tests >&2 || unit=$?

# 5. the conformance runner against the given calcd
rc=0
root=$(cd "$here/../.." && pwd)
"$py" -m calc_client.conformance \
  --cases "$root/testdata/conformance/cases.json" --vectors "$root/testdata/wire/vectors.json" "$@" || rc=$?
if [ "$unit" -ne 0 ]; then
  log "tests failed (pytest exit $unit)"
  [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
