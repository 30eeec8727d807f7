#!/usr/bin/env bash
# Full-size UNet CFG step and VAE decode: unclip (random sd21-unclip-h weights in the real names and
# shapes, written once to the temp folder) and diffusers on PyTorch, one after the other on the same
# machine and threads.
#   examples/bench/run_unet.sh [size] [threads] [repeats]
# PyTorch comes from the golden venv (UNCLIP_GOLDEN_VENV, default ~/.cache/unclip/golden-venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
size="${1:-768}" threads="${2:-2}" repeats="${3:-3}"
venv="${UNCLIP_GOLDEN_VENV:-$HOME/.cache/unclip/golden-venv}"
cd "$root"
cmake --preset release >/dev/null
cmake --build --preset release --target unclip_bench_unet >/dev/null
echo "== unclip"
build/release/examples/unclip_bench_unet --size "$size" --threads "$threads" --repeats "$repeats"
echo "== diffusers on PyTorch"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" examples/bench/bench_unet_torch.py \
  --size "$size" --threads "$threads" --repeats "$repeats"
