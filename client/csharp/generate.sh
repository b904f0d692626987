#!/usr/bin/env bash
# generate.sh: generates the C# messages and gRPC stubs of calculator.v1 into
# client/csharp/gen with buf (client/csharp/buf.gen.yaml), then checks them.
# No .NET toolchain is needed or used: nothing here compiles C#.
#
# Needs, and installs when missing:
#   - protoc (Debian protobuf-compiler) for buf's `protoc_builtin: csharp`;
#   - grpc_csharp_plugin: no Debian binary package ships it (protobuf-compiler-grpc
#     has only the cpp, php, python and ruby plugins), so it is built from the
#     C# generator sources of Debian's own grpc source package (the grpc version
#     Debian ships, fetched with `apt-get source`, checksums verified by apt)
#     against Debian's libprotoc-dev, into client/csharp/.tools/bin;
#   - buf, pinned, from the repo's scripts/tools.sh.
# Idempotent: the plugin and buf are built/installed once.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
tools="$here/.tools"
plugin_bin="$tools/bin"
out="$here/gen"
mkdir -p "$plugin_bin"

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
apt_install() { # packages..., only those missing
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "csharp: installing ${missing[*]}" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

apt_install protobuf-compiler libprotobuf-dev libprotoc-dev g++ ca-certificates

# ---- grpc_csharp_plugin from Debian's grpc source package ----------------------------
if [ ! -x "$plugin_bin/grpc_csharp_plugin" ] || [ ! -s "$plugin_bin/.grpc_csharp_plugin.version" ]; then
  . /etc/os-release
  mirror=${CALC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # A private deb-src list and state dir: the system's apt configuration is untouched.
  mkdir -p "$work/lists/partial"
  echo "deb-src $mirror ${VERSION_CODENAME:-bookworm} main" >"$work/sources.list"
  aptopts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
  echo "csharp: building grpc_csharp_plugin from Debian's grpc source package" >&2
  apt-get "${aptopts[@]}" -qq update >&2
  (cd "$work" && apt-get "${aptopts[@]}" -qq source --download-only grpc >&2)
  orig=$(ls "$work"/grpc_*.orig.tar.* | head -n1)
  dsc=$(ls "$work"/grpc_*.dsc | head -n1)
  version=$(sed -n 's/^Version: //p' "$dsc")
  tar -xf "$orig" -C "$work" --wildcards '*/src/compiler/*' '*/include/grpcpp/impl/codegen/config_protobuf.h'
  src=$(ls -d "$work"/grpc-*/ | head -n1)
  g++ -std=c++17 -O2 -I"$src" -I"$src/include" \
    "$src/src/compiler/csharp_plugin.cc" "$src/src/compiler/csharp_generator.cc" \
    -o "$plugin_bin/grpc_csharp_plugin" -lprotoc -lprotobuf -pthread
  echo "$version" >"$plugin_bin/.grpc_csharp_plugin.version"
  rm -rf "$work"
  trap - EXIT
fi
export PATH="$plugin_bin:$PATH"

# ---- buf (pinned by the repo) -------------------------------------------------------
# shellcheck source=../../scripts/tools.sh
source "$repo/scripts/tools.sh"

# ---- generate ------------------------------------------------------------------------
cd "$repo"
buf generate --template client/csharp/buf.gen.yaml

# ---- check what was generated ----------------------------------------------------------------
fail=0
check() { # file pattern what
  if ! grep -qE "$2" "$1"; then
    echo "csharp: FAIL: $1 lacks $3" >&2
    fail=1
  fi
}
proto="$repo/proto/calculator/v1/calculator.proto"
msgs="$out/Calculator.cs"
svc="$out/CalculatorGrpc.cs"
for f in "$msgs" "$svc"; do
  if [ ! -s "$f" ]; then
    echo "csharp: FAIL: $f was not generated" >&2
    exit 1
  fi
done
check "$msgs" '^namespace Calculator\.V1 \{' "namespace Calculator.V1"
check "$svc" '^namespace Calculator\.V1 \{' "namespace Calculator.V1"
check "$svc" 'public static partial class CalculatorService$' "class CalculatorService"
check "$svc" 'static readonly string __ServiceName = "calculator\.v1\.CalculatorService";' "the service name"
check "$svc" 'public partial class CalculatorServiceClient : grpc::ClientBase<CalculatorServiceClient>' "the client class"
check "$svc" 'public abstract partial class CalculatorServiceBase' "the server base class"
nmsg=0 nrpc=0
# Every message and enum of the proto is a C# class / enum ...
for m in $(sed -n 's/^message \([A-Za-z0-9_]*\) {.*/\1/p' "$proto"); do
  check "$msgs" "public sealed partial class $m : pb::IMessage<$m>" "message class $m"
  nmsg=$((nmsg + 1))
done
for e in $(sed -n 's/^enum \([A-Za-z0-9_]*\) {.*/\1/p' "$proto"); do
  check "$msgs" "public enum $e \{" "enum $e"
done
# ... and every rpc a method descriptor of the right kind (unary, client/server/duplex
# streaming), with client methods calling it.
rpc_re='^[[:space:]]*rpc[[:space:]]+([A-Za-z0-9_]+)[[:space:]]*\((stream[[:space:]]+)?[A-Za-z0-9_.]+\)[[:space:]]+returns[[:space:]]*\((stream[[:space:]]+)?[A-Za-z0-9_.]+\)'
while IFS= read -r line; do
  [[ $line =~ $rpc_re ]] || continue
  name=${BASH_REMATCH[1]}
  kind=Unary
  if [ -n "${BASH_REMATCH[2]}" ] && [ -n "${BASH_REMATCH[3]}" ]; then kind=DuplexStreaming
  elif [ -n "${BASH_REMATCH[2]}" ]; then kind=ClientStreaming
  elif [ -n "${BASH_REMATCH[3]}" ]; then kind=ServerStreaming; fi
  if ! grep -A3 "__Method_$name = new grpc::Method<" "$svc" | grep -q "grpc::MethodType\.$kind,"; then
    echo "csharp: FAIL: $svc lacks a $kind method descriptor for $name" >&2
    fail=1
  fi
  if [ "$(grep -c "(__Method_$name," "$svc")" -lt 2 ]; then
    echo "csharp: FAIL: $svc lacks client and server bindings of $name" >&2
    fail=1
  fi
  nrpc=$((nrpc + 1))
done <"$proto"
if [ "$nmsg" -lt 1 ] || [ "$nrpc" -lt 1 ]; then
  echo "csharp: FAIL: found $nmsg messages and $nrpc rpcs in $proto" >&2
  fail=1
fi
if [ "$fail" -ne 0 ]; then exit 1; fi
echo "csharp: generated $(ls "$out" | tr '\n' ' ')in client/csharp/gen: $nmsg message classes and $nrpc rpcs checked (grpc_csharp_plugin $(cat "$plugin_bin/.grpc_csharp_plugin.version"), $(buf --version 2>/dev/null | sed 's/^/buf /'))"
