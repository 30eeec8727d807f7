#!/usr/bin/env bash
# Runs bench_clip and its PyTorch counterpart back to back on the same machine and threads.
#   examples/bench/run_clip.sh [threads] [repeats]
# PyTorch comes from the golden venv (UNCLIP_GOLDEN_VENV, default ~/.cache/unclip/golden-venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
threads="${1:-2}" repeats="${2:-5}"
venv="${UNCLIP_GOLDEN_VENV:-$HOME/.cache/unclip/golden-venv}"
build="${UNCLIP_BENCH_BUILD:-$root/build/release}"
if [ -z "${UNCLIP_BENCH_BUILD:-}" ]; then cmake --build --preset release --target unclip_bench_clip >/dev/null; fi
echo "== unclip"
"$build/examples/unclip_bench_clip" --threads "$threads" --repeats "$repeats"
echo "== PyTorch"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" "$root/examples/bench/bench_clip_torch.py" \
  --threads "$threads" --repeats "$repeats"
