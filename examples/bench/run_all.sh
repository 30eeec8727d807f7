#!/usr/bin/env bash
# Every CPU benchmark in one run, ours and the peers' back to back: the fp32 GEMM ceiling, CLIP
# text and vision encode, UNet CFG step at 512 and 768 px, VAE decode at 768 px, for unclip
# (random full-size sd21-unclip-h weights), diffusers/transformers on PyTorch and, when built,
# stable-diffusion.cpp (plain SD 2.1 768-v file holding the same random weights). Prints a table
# and writes results.json and the full log to the output folder.
#
#   examples/bench/run_all.sh [threads] [repeats] [run_all.py options...]
#     --scaling        also the UNet step at 1024 px and at 768 px on 1 thread (one timed run
#                      each; about 12 more minutes on 2 cores)
#     --sdcpp-f16      also sd.cpp with --type f16
#     --sdcpp-vae      let sd.cpp decode the image and report its VAE time (otherwise it is
#                      stopped once sampling completes)
#     --sdcpp-steps N  sd.cpp sampling steps (default 4; step 1 is its warm-up)
#     --only LIST      a subset: gemm,text,vision,unet512,unet768,sdcpp,vae,checksum
#
# Environment:
#   UNCLIP_BENCH_BUILD       unclip build folder to use as is (default: configure and build the
#                            release preset, build/release)
#   UNCLIP_BENCH_OUT         output folder (default $OUT if set, else build/bench)
#   UNCLIP_BENCH_CHECKPOINT  the unclip-h file (default /tmp/unclip-bench-unclip-h-f16.safetensors,
#                            written with seed 1 if missing: 4 GB, about a minute)
#   UNCLIP_GOLDEN_VENV       venv with torch, diffusers and transformers (default
#                            ~/.cache/unclip/golden-venv); skipped with a message when absent
#   UNCLIP_BENCH_SDCPP_DIR   a stable-diffusion.cpp checkout with its ggml submodule, outside this
#                            repository; built once into its build/ folder (Release, CPU only,
#                            GGML_NATIVE=ON) if build/bin/sd-cli is missing. Unset or absent: the
#                            sd.cpp peer is skipped with a message.
#   UNCLIP_BENCH_COMMIT      the unclip version results.json names (default: git describe --dirty)
#   UNCLIP_BENCH_FIFO=1      every measured program (ours and the peers') runs under `chrt -f 50`
#                            (SCHED_FIFO, needs root), as in run_kernels.sh, so that other processes
#                            cannot take the cores mid-measurement; it starves them meanwhile
# The default run should take about 25-30 minutes on a quiet 2-core VM (estimated from the row
# times; under a load average of 8-13 it takes 2-4 times longer).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
threads="${1:-2}" repeats="${2:-3}"
shift $(( $# > 2 ? 2 : $# ))
venv="${UNCLIP_GOLDEN_VENV:-$HOME/.cache/unclip/golden-venv}"
out="${UNCLIP_BENCH_OUT:-${OUT:-$root/build/bench}}"
checkpoint="${UNCLIP_BENCH_CHECKPOINT:-/tmp/unclip-bench-unclip-h-f16.safetensors}"
sd_checkpoint="$(dirname "$checkpoint")/unclip-bench-sd21-768v-f16.safetensors"
cd "$root"
mkdir -p "$out"

if [ -n "${UNCLIP_BENCH_BUILD:-}" ]; then
  build="$UNCLIP_BENCH_BUILD"
  cmake --build "$build" --target unclip_bench_components unclip_make_random_checkpoint -j2 >/dev/null
else
  build="$root/build/release"
  cmake --preset release >/dev/null
  cmake --build --preset release --target unclip_bench_components unclip_make_random_checkpoint -j2 >/dev/null
fi

# The same seed for both files: every tensor they share (all but the UNet's label_emb, the image
# embedder and the noise augmentor) holds the same values.
if [ ! -f "$checkpoint" ]; then
  "$build/examples/unclip_make_random_checkpoint" --variant unclip-h --dtype f16 --seed 1 "$checkpoint"
fi

sdcpp_args=()
sdcpp_dir="${UNCLIP_BENCH_SDCPP_DIR:-}"
if [ -n "$sdcpp_dir" ] && [ -f "$sdcpp_dir/CMakeLists.txt" ] && [ -f "$sdcpp_dir/ggml/CMakeLists.txt" ]; then
  if [ ! -x "$sdcpp_dir/build/bin/sd-cli" ]; then
    echo "== building stable-diffusion.cpp in $sdcpp_dir/build"
    cmake -S "$sdcpp_dir" -B "$sdcpp_dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
      -DSD_WEBP=OFF -DSD_WEBM=OFF -DSD_SERVER_BUILD_FRONTEND=OFF >/dev/null
    cmake --build "$sdcpp_dir/build" --target sd-cli -j2 >/dev/null
  fi
  if [ ! -f "$sd_checkpoint" ]; then
    "$build/examples/unclip_make_random_checkpoint" --variant sd2 --prediction v --dtype f16 --seed 1 "$sd_checkpoint"
  fi
  sdcpp_args=(--sdcpp "$sdcpp_dir/build/bin/sd-cli" --sd-checkpoint "$sd_checkpoint")
else
  echo "== sd.cpp peer skipped: set UNCLIP_BENCH_SDCPP_DIR to a stable-diffusion.cpp checkout (with ggml)"
fi

torch_args=()
if [ -x "$venv/bin/python" ]; then
  torch_args=(--venv-python "$venv/bin/python")
else
  echo "== PyTorch peer skipped: no $venv/bin/python (set UNCLIP_GOLDEN_VENV)"
fi

python3 "$root/examples/bench/run_all.py" --threads "$threads" --repeats "$repeats" --build "$build" \
  --checkpoint "$checkpoint" --out-dir "$out" ${torch_args[@]+"${torch_args[@]}"} \
  ${sdcpp_args[@]+"${sdcpp_args[@]}"} "$@" 2>&1 | tee "$out/run_all.log"
