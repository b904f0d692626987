#!/usr/bin/env bash
# generate.sh installs the pinned tools and regenerates gen/ and
# internal/schema/calculator.binpb from proto/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/tools.sh"
cd "$root"
buf format -w
buf generate
# The schema with its comments, for server reflection (internal/schema).
buf build --as-file-descriptor-set -o internal/schema/calculator.binpb
