#!/usr/bin/env bash
# tools.sh installs the pinned code-generation tools into .tools/bin: buf (from
# the npm registry, which ships its release binary) and the Go protoc plugins
# (from the Go module proxy). It is idempotent and safe to source.
set -euo pipefail

BUF_VERSION=1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"

if [ "$("$bin/buf" --version 2>/dev/null)" != "$BUF_VERSION" ]; then
  echo "tools: installing buf $BUF_VERSION" >&2
  npm install --silent --no-audit --no-fund --prefix "$root/.tools/npm" "@bufbuild/buf@$BUF_VERSION" >&2
  ln -sf "$root/.tools/npm/node_modules/.bin/buf" "$bin/buf"
fi

install_go_tool() { # name package version
  local stamp="$bin/.$1.version"
  if [ ! -x "$bin/$1" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$3" ]; then
    echo "tools: installing $1 $3" >&2
    GOBIN="$bin" GOFLAGS=-mod=mod go install "$2@$3"
    echo "$3" >"$stamp"
  fi
}
install_go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

export PATH="$bin:$PATH"
