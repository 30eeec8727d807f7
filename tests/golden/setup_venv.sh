#!/usr/bin/env bash
# Creates (or reuses) the Python environment the golden generator runs in. It lives outside the
# repository because PyPI's torch brings gigabytes of libraries; override with UNCLIP_GOLDEN_VENV.
set -euo pipefail
venv="${UNCLIP_GOLDEN_VENV:-$HOME/.cache/unclip/golden-venv}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r "$here/requirements.txt"
"$venv/bin/pip" install -q --no-deps -r "$here/requirements-nodeps.txt"
echo "$venv"
