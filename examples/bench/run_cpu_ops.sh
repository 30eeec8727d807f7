#!/usr/bin/env bash
# Runs bench_cpu_ops and its PyTorch counterpart back to back on the same machine and threads.
#   examples/bench/run_cpu_ops.sh [threads] [repeats]
# PyTorch comes from the golden venv (UNCLIP_GOLDEN_VENV, default ~/.cache/unclip/golden-venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
threads="${1:-2}" repeats="${2:-7}"
venv="${UNCLIP_GOLDEN_VENV:-$HOME/.cache/unclip/golden-venv}"
cmake --build --preset release --target unclip_bench_cpu_ops >/dev/null
echo "== unclip"
"$root/build/release/examples/unclip_bench_cpu_ops" --threads "$threads" --repeats "$repeats"
echo "== PyTorch"
# OPENBLAS_CORETYPE is set on some machines here for old OpenBLAS builds; it slows current numpy.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" "$root/examples/bench/bench_cpu_ops_torch.py" \
  --threads "$threads" --repeats "$repeats"
