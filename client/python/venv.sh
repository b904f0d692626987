# venv.sh is sourced by run-conformance.sh and run-bench.sh (from client/python): it makes client/python/.venv
# ready and sets $py to its python:
#   1. a venv with a CPython >= 3.11 (created if missing or broken; Debian's pythonX.Y-venv installed with apt-get
#      when venv is missing and we are root),
#   2. the package (editable) and its pinned dependencies from PyPI (pyproject.toml, extra "dev"); skipped when
#      pyproject.toml/setup.py did not change since,
#   3. the protobuf/gRPC code regenerated from proto/ (generate.py; cheap, so a changed proto is picked up).
# Everything it prints goes to stderr.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="$here/.venv"
py="$venv/bin/python"

log() { echo "python: $*" >&2; }

python_ok() { # interpreter is CPython >= 3.11
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

pick_python() {
  local cand
  for cand in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && python_ok "$cand"; then
      command -v "$cand"
      return 0
    fi
  done
  return 1
}

make_venv() {
  local base
  base=$(pick_python) || { log "need Python >= 3.11 (set PYTHON=/path/to/python3.11)"; exit 2; }
  rm -rf "$venv"
  if ! "$base" -m venv "$venv" >/dev/null 2>&1; then
    # Debian/Ubuntu ship venv/ensurepip separately.
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      local ver
      ver=$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      log "installing python$ver-venv with apt-get"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$ver-venv" >&2 ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
      rm -rf "$venv"
    fi
    "$base" -m venv "$venv" >&2
  fi
  log "created $venv with $("$py" --version 2>&1)"
}

# 1. venv (recreated if missing or broken, e.g. its interpreter went away)
if ! python_ok "$py"; then
  make_venv
fi

# 2. dependencies and the package itself (editable: src/ is used in place)
stamp="$venv/.calc-client-stamp"
want=$(cat "$here/pyproject.toml" "$here/setup.py" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] ||
  ! "$py" -c 'import grpc, grpc_tools, snappy, google.rpc.status_pb2, grpc_status, pytest' >/dev/null 2>&1; then
  log "installing calc-client and its pinned dependencies"
  (cd "$here" && "$py" -m pip install --quiet --disable-pip-version-check --no-input -e '.[dev]' >&2)
  echo "$want" >"$stamp"
fi

# 3. generated code (cheap; always redone so a changed proto is picked up)
(cd "$here" && "$py" generate.py >&2)
