#!/usr/bin/env bash
# The CPU kernel figures of BENCHMARKS.md ("CPU kernels"): GEMM and 3x3 convolutions, the UNet CFG
# step at 512 and 768 px in fp32 and with bf16 GEMMs (fp16 weights kept as the pipeline keeps them),
# the VAE decode at 768 px and both CLIP towers, each followed by PyTorch on the same shapes.
#   examples/bench/run_kernels.sh [threads] [repeats]
# UNCLIP_BENCH_FIFO=1 runs every program under SCHED_FIFO (chrt, root), so that other processes on a
# shared machine cannot take the cores during a measurement.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
threads="${1:-2}" repeats="${2:-3}"
venv="${UNCLIP_GOLDEN_VENV:-$HOME/.cache/unclip/golden-venv}"
cd "$root"
cmake --preset release >/dev/null
cmake --build --preset release --target unclip_bench_cpu_ops unclip_bench_unet unclip_bench_clip >/dev/null
run() { if [ "${UNCLIP_BENCH_FIFO:-0}" = 1 ]; then chrt -f 50 "$@"; else "$@"; fi; }
torch() { run env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" "$@"; }
bin=build/release/examples
date -u; uptime
echo "== cpu ops: unclip"; run "$bin/unclip_bench_cpu_ops" --threads "$threads" --repeats 5
echo "== cpu ops: PyTorch"; torch examples/bench/bench_cpu_ops_torch.py --threads "$threads" --repeats 5
for size in 512 768; do
  vae=$([ "$size" = 768 ] || echo --skip-vae)
  echo "== UNet $size: unclip fp32"; run "$bin/unclip_bench_unet" --size "$size" --threads "$threads" --repeats "$repeats" --f16-weights $vae
  echo "== UNet $size: unclip bf16 GEMMs"; run "$bin/unclip_bench_unet" --size "$size" --threads "$threads" --repeats "$repeats" --f16-weights --bf16 --skip-vae
  echo "== UNet $size: PyTorch"; torch examples/bench/bench_unet_torch.py --size "$size" --threads "$threads" --repeats "$repeats" $vae
done
echo "== CLIP: unclip fp32"; run "$bin/unclip_bench_clip" --threads "$threads" --repeats 5
echo "== CLIP: unclip bf16 GEMMs"; run "$bin/unclip_bench_clip" --threads "$threads" --repeats 5 --bf16
echo "== CLIP: PyTorch"; torch examples/bench/bench_clip_torch.py --threads "$threads" --repeats 5
date -u; uptime
