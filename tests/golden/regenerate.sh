#!/usr/bin/env bash
# One command to rebuild every fixture under tests/data from the reference libraries:
#   tests/golden/regenerate.sh [area ...]      (areas: see generate.py --help)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$("$here/setup_venv.sh" | tail -n 1)"
exec "$venv/bin/python" "$here/generate.py" "$@"
