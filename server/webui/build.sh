#!/usr/bin/env bash
# build.sh rebuilds the web page's script, static/assets/app.js, from
# web/app.ts and the Node client's browser transport (client/node/src), with
# the esbuild and TypeScript pinned in client/node/package-lock.json. The
# bundle is committed, so that a Go-only build embeds the page without Node.
#
#   server/webui/build.sh           rebuild static/assets/app.js
#   server/webui/build.sh --check   fail if the committed bundle differs from a rebuild
#
# It installs client/node's dependencies (npm ci) when its lock file changed,
# generates the protobuf code (buf + protoc-gen-es, pinned there too), type
# checks the page against the DOM's types and none of Node's (what the page
# imports may use no Node API), then bundles it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node_dir=$(cd "$here/../../client/node" && pwd)
check=false
case "${1:-}" in
--check) check=true ;;
"") ;;
*)
  echo "usage: $0 [--check]" >&2
  exit 2
  ;;
esac

command -v npm >/dev/null || { echo "build.sh: npm (Node 20 or later) is required" >&2; exit 1; }

# npm ci only when package.json or the lock file changed, with the stamp
# client/node/build.sh keeps (run-conformance.sh and run-bench.sh run it), so neither repeats the other's.
hash_of() { # files... -> one sha256 over their names and contents, as client/node/build.sh
  local f
  for f in "$@"; do
    printf '%s\n' "$f"
    sha256sum <"$f"
  done | sha256sum | cut -d' ' -f1
}
lock_hash=$(cd "$node_dir" && hash_of package.json package-lock.json)
if [ "$(cat "$node_dir/node_modules/.calc-install-stamp" 2>/dev/null || true)" != "$lock_hash" ]; then
  echo "build.sh: npm ci in client/node" >&2
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$lock_hash" >"$node_dir/node_modules/.calc-install-stamp"
fi
(
  cd "$node_dir"
  node_modules/.bin/buf generate ../../proto --template buf.gen.yaml
  node_modules/.bin/buf generate googleapis-subset --template buf.gen.yaml
)
"$node_dir/node_modules/.bin/tsc" -p "$here/web/tsconfig.json"

out="$here/static/assets/app.js"
if $check; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  out="$tmp/app.js"
fi
# Run from the repository root so that the paths esbuild records are the
# same on every machine.
cd "$here/../.."
"$node_dir/node_modules/.bin/esbuild" server/webui/web/app.ts --bundle --format=esm --target=es2020 \
  --minify --legal-comments=none --charset=utf8 --log-level=warning --outfile="$out"
if $check; then
  if ! cmp -s "$out" "$here/static/assets/app.js"; then
    echo "server/webui/static/assets/app.js differs from what server/webui/build.sh builds: run it and commit" >&2
    exit 1
  fi
  echo "server/webui: the committed bundle is what build.sh builds" >&2
fi
