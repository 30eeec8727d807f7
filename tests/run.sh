#!/usr/bin/env bash
# The test command: installs what is missing, builds the release preset and runs every test.
#   bash tests/run.sh [ctest arguments, e.g. -L foundation]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash .ci/install-deps
cmake --preset release
cmake --build --preset release
ctest --preset release "$@"
