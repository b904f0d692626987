#!/usr/bin/env bash
# generate.sh installs the pinned tools and regenerates gen/ from proto/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/tools.sh"
cd "$root"
buf format -w
buf generate
