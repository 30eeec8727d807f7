#!/usr/bin/env bash
# The CUDA backend's one run on a GPU machine that has no network: build, test, memcheck and
# benchmark against diffusers, inside a time budget. From the repository root, with .deps (the
# header-only dependencies, minizip and zlib: UNCLIP_DEPS_DIR) and .whl (the diffusers wheel)
# carried beside the working tree:
#
#   bash tests/cuda/device_check.sh
#
# Stages, each reported and none stopping the next (a stage that needs an earlier one's output
# says so and is skipped):
#   info       nvidia-smi -L, toolchain versions
#   wheels     pip install .whl/*.whl into /tmp/site (PYTHONPATH)
#   peer       examples/bench/run_cuda.sh peer (diffusers on the GPU), started in the background on
#              two cores the build leaves free, so that it overlaps the compile (UNCLIP_CHECK_PEER_EARLY=0:
#              run it after our CLI instead); ctest waits for it, so no GPU work overlaps it
#   configure  Release, Ninja, UNCLIP_CUDA=ON, sm_90, UNCLIP_DEPS_DIR=.deps
#   build      unclip_make_random_checkpoint first (then the 4 GB checkpoint is written in the
#              background), then unclip_tests_cuda, the CLI and unclip_bench_cuda (if defined)
#   ctest      ctest -L cuda
#   bench      examples/bench/run_cuda.sh ours + table (unclip CLI --device cuda and, where built,
#              unclip_bench_cuda's components, vs diffusers)
#   ab         unclip_bench_cuda (UNet step, VAE decode, warm end to end) with a switch off and on
#              (UNCLIP_CHECK_AB_SWITCH, a comma list, default UNCLIP_CUDA_GRAPHS: 0, 1), twice over: bench_ab.log
#              (switches not yet timed on a GPU: UNCLIP_CUDA_GRAPHS, UNCLIP_CUDA_DEVICE_SAMPLING, UNCLIP_CUDA_CUDNN,
#              UNCLIP_CUDA_CONV_TUNING)
#   memcheck   compute-sanitizer --tool memcheck on unclip_tests_cuda --test-case="*end to end*"
#              (after the bench: the slowest check, and the one a short budget can best do without)
#   profile    ncu --metrics gpu__time_duration.sum, per-kernel summaries of unclip_bench_cuda's UNet
#              step and VAE decode, one run each
# Every stage runs under `timeout`; once the budget (UNCLIP_CHECK_BUDGET seconds, default 480) is
# spent, the remaining stages are skipped with a message. Logs and JSON go to $OUT (default
# build/device-check-out), nine files:
#   device_check.log build.log ctest_cuda.log memcheck.log bench.log bench_ab.log diffusers.json bench_cuda.json
#   profile_unet768.csv, profile_vae.csv (ncu's per-kernel summaries: four UNet steps, two VAE
#   decodes at 768 px; profile.csv is the stage's log)
# The last thing printed is the summary table.
#
# Environment: UNCLIP_CHECK_BUDGET (seconds, default 480), UNCLIP_CHECK_SKIP (comma list of
# stages to skip: peer,ctest,memcheck,bench,ab,profile), UNCLIP_CHECK_PEER_EARLY (default 1),
# UNCLIP_CHECK_BUILD (build folder, default build/device-check; kept between runs on one machine),
# UNCLIP_CHECK_PREBUILT=1 (UNCLIP_CHECK_BUILD already holds tests/unclip_tests_cuda, examples/unclip,
# examples/unclip_make_random_checkpoint, examples/unclip_bench_cuda and lib/ with the shared
# libraries they need, built elsewhere for sm_90: no configure, no build; the peer runs after ours).
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root" || exit 1
OUT="${OUT:-$root/build/device-check-out}"
export OUT
mkdir -p "$OUT"
budget="${UNCLIP_CHECK_BUDGET:-480}"
skip=",${UNCLIP_CHECK_SKIP:-},"
build="${UNCLIP_CHECK_BUILD:-$root/build/device-check}"
cores="$(nproc 2>/dev/null || echo 4)"
work="${TMPDIR:-/tmp}/unclip-bench-cuda"
# examples/bench/run_cuda.sh uses this build and writes bench.log, diffusers.json, bench_cuda.json here.
export UNCLIP_BENCH_BUILD="$build" UNCLIP_BENCH_OUT="$OUT"
t0=$SECONDS

names=() results=() times=()
record() { names+=("$1"); results+=("$2"); times+=("$3"); }
elapsed() { echo $((SECONDS - t0)); }
left() { echo $((budget - (SECONDS - t0))); }
banner() { echo; echo "=== [$(elapsed) s] $*"; }

# run_stage NAME CAP MIN LOGFILE command...: runs the command under timeout (the smaller of CAP and
# the budget left), appending its output to LOGFILE ("-": to the terminal); skips it when less
# than MIN seconds are left. Returns the command's status (2 when skipped).
run_stage() {
  local name=$1 cap=$2 min=$3 logfile=$4
  shift 4
  local l
  l=$(left)
  if [ "$l" -lt "$min" ]; then
    banner "$name: SKIPPED, budget spent (${l} s left, ${min} s needed)"
    record "$name" "skipped (budget)" 0
    return 2
  fi
  local lim=$((cap < l ? cap : l)) s=$SECONDS rc
  banner "$name (limit ${lim} s): $*"
  if [ "$logfile" = "-" ]; then
    timeout -k 10 "$lim" "$@"
    rc=$?
  else
    timeout -k 10 "$lim" "$@" >>"$logfile" 2>&1
    rc=$?
  fi
  local d=$((SECONDS - s)) what
  case $rc in
    0) what="ok" ;;
    124|137) what="TIMED OUT after ${lim} s" ;;
    *) what="FAILED (exit $rc)" ;;
  esac
  echo "--- $name: $what in ${d} s"
  record "$name" "$what" "$d"
  return $rc
}

# wait_bounded PID CAP: waits for a background job, at most CAP seconds or the budget left; a job
# still running then is ended. Returns the job's status (124 when it was ended).
wait_bounded() {
  local pid=$1 cap=$2 l
  l=$(left)
  local lim=$((cap < l ? cap : l)) s=$SECONDS
  while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - s)) -lt "$lim" ]; do sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "--- still running after ${lim} s: ending it"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 124
  fi
  wait "$pid"
}

skipped() { case "$skip" in *",$1,"*) record "$1" "skipped (UNCLIP_CHECK_SKIP)" 0; return 0 ;; esac; return 1; }

main() {
  banner "info"
  nvidia-smi -L 2>&1 || echo "nvidia-smi: not available"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used,memory.total --format=csv 2>&1 | head -3
  if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
  echo "cmake: $(cmake --version 2>/dev/null | head -1); ninja $(ninja --version 2>/dev/null); $(c++ --version 2>/dev/null | head -1)"
  echo "python3: $(python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1)"
  # cuDNN (the convolutions load it at run time): PyTorch's nvidia-cudnn wheel brings one where the
  # loader has none; its folder goes on the loader's path, for its own sub-libraries too.
  if [ -z "${UNCLIP_CUDNN_LIBRARY:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcudnn\.so\.9 '; then
    local cudnn_file
    cudnn_file="$(timeout 60 python3 -c 'import glob, os, site
found = sorted(f for d in site.getsitepackages() for f in glob.glob(os.path.join(d, "nvidia", "**", "libcudnn.so.9"), recursive=True))
print(found[0] if found else "")' 2>/dev/null)"
    if [ -n "$cudnn_file" ]; then
      export LD_LIBRARY_PATH="$(dirname "$cudnn_file")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      echo "cuDNN: $cudnn_file (PyTorch's wheel), on LD_LIBRARY_PATH"
    else
      echo "cuDNN: no libcudnn.so.9 found; convolutions take im2col + cuBLAS"
    fi
  fi
  echo "cores: $cores; budget ${budget} s; OUT=$OUT"
  rm -rf "$work"
  rm -f "$OUT"/bench.log "$OUT"/diffusers.json "$OUT"/bench_cuda.json

  # --- the diffusers wheel --------------------------------------------------------------------
  local have_wheels=0
  if compgen -G ".whl/*.whl" >/dev/null; then
    if run_stage wheels 60 10 - python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl; then
      export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
      if HF_HUB_OFFLINE=1 timeout 60 python3 -c "import torch, diffusers, transformers, huggingface_hub
print('diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'hub', huggingface_hub.__version__)
from diffusers import StableUnCLIPImg2ImgPipeline, UniPCMultistepScheduler"; then
        have_wheels=1
      else
        record python "diffusers does not import: the peer is skipped" 0
      fi
    fi
  else
    banner "wheels: no .whl/*.whl (carry .whl): the diffusers side is skipped"
    record wheels "missing .whl" 0
  fi

  # --- the peer, early, on two cores of its own --------------------------------------------------
  local peer_pid="" build_cpus=() jobs=$cores peer_early="${UNCLIP_CHECK_PEER_EARLY:-1}"
  [ -n "${UNCLIP_CHECK_PREBUILT:-}" ] && peer_early=0  # nothing to overlap with: no build
  if [ "$have_wheels" = 1 ] && [ "$peer_early" = 1 ] && ! skipped peer; then
    if [ "$cores" -ge 8 ] && command -v taskset >/dev/null; then
      jobs=$((cores - 2))
      build_cpus=(taskset -c "0-$((cores - 3))")
      banner "peer: diffusers in the background on cores $((cores - 2))-$((cores - 1)) (log: bench.log)"
      OMP_NUM_THREADS=2 UNCLIP_BENCH_CONCURRENT_BUILD=1 taskset -c "$((cores - 2))-$((cores - 1))" \
        bash examples/bench/run_cuda.sh peer >"$work.peer.out" 2>&1 &
      peer_pid=$!
    else
      echo "(fewer than 8 cores or no taskset: the peer runs after our CLI instead)"
      peer_early=0
    fi
  fi

  # --- configure and build (or executables built elsewhere, UNCLIP_CHECK_PREBUILT=1) ----------------
  local built_tool=0 built_tests=0 built_cli=0 ck_pid=""
  if [ -n "${UNCLIP_CHECK_PREBUILT:-}" ]; then
    banner "prebuilt executables in $build (no configure, no build)"
    export LD_LIBRARY_PATH="$build/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export UNCLIP_TEST_DATA_DIR="$root/tests/data"
    [ -x "$build/tests/unclip_tests_cuda" ] && built_tests=1
    [ -x "$build/examples/unclip" ] && built_cli=1
    if [ -x "$build/examples/unclip_make_random_checkpoint" ]; then
      built_tool=1
      if ! skipped bench; then
        bash examples/bench/run_cuda.sh checkpoint >"$work.checkpoint.out" 2>&1 &
        ck_pid=$!
      fi
    fi
  else
  # A rerun on the same machine relinks these, so that an executable found afterwards is this run's.
  rm -f "$build/tests/unclip_tests_cuda" "$build/examples/unclip" "$build/examples/unclip_make_random_checkpoint" \
    "$build/examples/unclip_bench_cuda"
  if run_stage configure 120 30 "$OUT/build.log" cmake -S "$root" -B "$build" -G Ninja \
      -DCMAKE_BUILD_TYPE=Release -DUNCLIP_CUDA=ON -DUNCLIP_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DUNCLIP_DEPS_DIR="$root/.deps" -DUNCLIP_BUILD_TESTS=ON -DUNCLIP_BUILD_EXAMPLES=ON; then
    grep -E "^(Eigen3_DIR|nlohmann_json_DIR|doctest_DIR|CLI11_DIR|UNCLIP_STB_INCLUDE_DIR|UNCLIP_MINIZIP_LIBRARY|ZLIB_LIBRARY_RELEASE|CMAKE_CUDA_COMPILER|CMAKE_CUDA_ARCHITECTURES):" \
      "$build/CMakeCache.txt" | sed 's/^/    /'
    grep -m1 "unclip: CUDA backend" "$OUT/build.log"
    if run_stage build-lib 330 60 "$OUT/build.log" ${build_cpus[@]+"${build_cpus[@]}"} \
        cmake --build "$build" --target unclip_make_random_checkpoint -j "$jobs"; then
      built_tool=1
      if ! skipped bench; then
        # One core (of the build's); the rest keep compiling.
        ${build_cpus[@]+"${build_cpus[@]}"} bash examples/bench/run_cuda.sh checkpoint >"$work.checkpoint.out" 2>&1 &
        ck_pid=$!
      fi
    fi
    if [ -n "$peer_pid" ] && ! kill -0 "$peer_pid" 2>/dev/null; then
      jobs=$cores
      build_cpus=()
    fi
    # The GPU component benchmark too, where the build defines it; -k 0: one target's failure leaves
    # the others built.
    local targets=(unclip_tests_cuda unclip_cli)
    ninja -C "$build" -t targets all 2>/dev/null | grep -q "^unclip_bench_cuda:" && targets+=(unclip_bench_cuda)
    run_stage build-tests 300 45 "$OUT/build.log" ${build_cpus[@]+"${build_cpus[@]}"} \
      cmake --build "$build" --target "${targets[@]}" -j "$jobs" -- -k 0
    [ -x "$build/tests/unclip_tests_cuda" ] && built_tests=1
    [ -x "$build/examples/unclip" ] && built_cli=1
    if [ "$built_tests" = 0 ] || [ "$built_cli" = 0 ] || [ "$built_tool" = 0 ]; then
      echo "--- build errors (first lines; all in build.log):"
      grep -E -m 25 -B1 -A4 "error|FAILED" "$OUT/build.log" | cut -c1-300
    fi
  fi
  fi

  # --- the peer must be done before anything else uses the GPU -----------------------------------
  if [ -n "$peer_pid" ]; then
    banner "waiting for the diffusers peer"
    local s=$SECONDS
    wait_bounded "$peer_pid" 300
    local rc=$?
    tail -n 30 "$work.peer.out"
    record peer "$([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)") (during the build)" $((SECONDS - s))
  fi

  # --- tests --------------------------------------------------------------------------------------
  if skipped ctest; then :
  elif [ "$built_tests" = 1 ]; then
    if [ -n "${UNCLIP_CHECK_PREBUILT:-}" ]; then
      # No CTest files travel with the executables: the doctest program runs every case itself.
      run_stage ctest 180 30 "$OUT/ctest_cuda.log" "$build/tests/unclip_tests_cuda" --duration=true
      grep -E "TEST CASE|ERROR|FAILED|test cases:|assertions:|Status:|s: " "$OUT/ctest_cuda.log" | cut -c1-250 | tail -n 60
    else
    run_stage ctest 180 30 "$OUT/ctest_cuda.log" ctest --test-dir "$build" -L cuda --output-on-failure --timeout 90
    grep -E "tests passed|tests failed|Not Run|Failed|\*\*\*|Skipped|Timeout" "$OUT/ctest_cuda.log" | tail -n 25
    fi
  else
    record ctest "not run (unclip_tests_cuda not built)" 0
  fi

  # --- benchmark ----------------------------------------------------------------------------------
  if ! skipped bench; then
    if [ -n "$ck_pid" ]; then
      banner "waiting for the checkpoint writer"
      local s=$SECONDS
      wait_bounded "$ck_pid" 300
      local rc=$?
      tail -n 3 "$work.checkpoint.out"
      record checkpoint "$([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)") (written during the build)" $((SECONDS - s))
    fi
    if [ "$built_cli" = 1 ]; then
      run_stage bench-ours 260 40 - bash examples/bench/run_cuda.sh ours
    else
      record bench-ours "not run (CLI not built)" 0
    fi
    if [ "$have_wheels" = 1 ] && [ "$peer_early" != 1 ] && ! skipped peer; then
      run_stage peer 240 60 - bash examples/bench/run_cuda.sh peer
    fi
    banner "bench table"
    timeout 60 bash examples/bench/run_cuda.sh table
  fi

  # --- A/B of switches (UNCLIP_CHECK_AB_SWITCH, a comma list, default UNCLIP_CUDA_GRAPHS; each is on
  # by default, e.g. UNCLIP_CUDA_DEVICE_SAMPLING): off and on, twice each, in one call, so the ratios
  # come from one machine at one time -------------------------------------------------------------
  local ab_ck="${UNCLIP_BENCH_CHECKPOINT:-/tmp/unclip-bench-unclip-h-f16.safetensors}"
  local ab_switch="${UNCLIP_CHECK_AB_SWITCH:-UNCLIP_CUDA_GRAPHS}"
  if skipped ab; then :
  elif [[ "$skip" == *",bench,"* ]]; then record ab "not run (bench skipped)" 0
  elif [ -x "$build/examples/unclip_bench_cuda" ] && [ -f "$ab_ck" ]; then
    local ab_count
    ab_count=$(($(tr -cd , <<< "$ab_switch" | wc -c) + 1))
    run_stage ab $((150 * ab_count)) 45 "$OUT/bench_ab.log" bash -c 'IFS=, read -ra switches <<< "$2"
      for switch in "${switches[@]}"; do
        for round in 1 2; do
          for value in 0 1; do
            echo "== $switch=$value (round $round)"
            env "$switch=$value" "$0" --checkpoint "$1" --only unet768,vae,e2e --repeats 5 || exit 1
          done
        done
      done' "$build/examples/unclip_bench_cuda" "$ab_ck" "$ab_switch"
    grep -E "^== |unet768 |unet768_graph |vae768 |e2e768 |e2e768 phases" "$OUT/bench_ab.log"
  else
    record ab "not run (unclip_bench_cuda or the checkpoint missing)" 0
  fi

  # --- memcheck last: the slowest check, and the one a short budget can best do without ----------
  if skipped memcheck; then :
  elif [ "$built_tests" = 1 ]; then
    local sanitizer
    sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)"
    if [ -n "$sanitizer" ]; then
      # API errors are left out: libraries may probe with calls that fail (cuDNN is loaded now), and
      # every call of ours is checked (UNCLIP_CUDA_CHECK), so a failing one fails its test anyway.
      run_stage memcheck 160 45 "$OUT/memcheck.log" "$sanitizer" --tool memcheck --report-api-errors no \
        --error-exitcode 99 "$build/tests/unclip_tests_cuda" --test-case="*end to end*"
      grep -E "ERROR SUMMARY|test cases:|assertions:|Device not supported|No test cases" "$OUT/memcheck.log" | tail -n 5
      if grep -qE "test cases: *0 " "$OUT/memcheck.log"; then
        echo "--- memcheck: NO test case matched '*end to end*'"
        results[${#results[@]}-1]="NO TEST CASE MATCHED '*end to end*'"
      fi
    else
      record memcheck "compute-sanitizer not found" 0
    fi
  else
    record memcheck "not run (unclip_tests_cuda not built)" 0
  fi

  # --- where the GPU time goes: per-kernel times of a UNet step and a VAE decode (Nsight Compute) ----
  local ncu_bin ck="${UNCLIP_BENCH_CHECKPOINT:-/tmp/unclip-bench-unclip-h-f16.safetensors}"
  ncu_bin="$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
  if skipped profile; then :
  elif [ -n "$ncu_bin" ] && [ -x "$build/examples/unclip_bench_cuda" ] && [ -f "$ck" ]; then
    # One run per module, so each summary is that module's alone (the UNet's holds four steps: a
    # warm-up and a timed run launched kernel by kernel, then both again from the CUDA graph).
    run_stage profile 150 40 "$OUT/profile.csv" bash -c 'for module in unet768 vae; do
        "$0" --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
          "$1" --checkpoint "$2" --only "$module" --repeats 1 > "$3/profile_$module.csv" || exit 1
        echo "== $module: $3/profile_$module.csv"
      done' "$ncu_bin" "$build/examples/unclip_bench_cuda" "$ck" "$OUT"
    python3 examples/bench/profile_summary.py "$OUT/profile_unet768.csv" --steps 4 || true
    python3 examples/bench/profile_summary.py "$OUT/profile_vae.csv" --steps 2 || true
  else
    record profile "not run (ncu, unclip_bench_cuda or the checkpoint missing)" 0
  fi

  # --- summary: the last thing printed ------------------------------------------------------------
  echo
  echo "=== device_check summary ($(elapsed) s of ${budget} s; logs in $OUT)"
  local i
  for i in "${!names[@]}"; do printf "  %-12s %6s s  %s\n" "${names[$i]}" "${times[$i]}" "${results[$i]}"; done
  local line
  line=$(grep -hE "tests passed|tests failed out of" "$OUT/ctest_cuda.log" 2>/dev/null | tail -1)
  [ -n "$line" ] && echo "  ctest:     $line"
  line=$(grep -h "ERROR SUMMARY" "$OUT/memcheck.log" 2>/dev/null | tail -1)
  [ -n "$line" ] && echo "  memcheck:  $line"
  if [ -f "$OUT/bench_cuda.json" ]; then
    python3 - "$OUT/bench_cuda.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
o, r = (d.get("ours") or {}).get("median") or {}, d.get("ratios") or {}
p = (d.get("diffusers") or {}).get("e2e", {})
f = lambda v, s=1, fmt="{:.3f}": "-" if v is None else fmt.format(v * s)  # noqa: E731
print(f"  bench:     e2e unclip {f(o.get('generate_s'))} s / diffusers {f(p.get('median_s'))} s = {f(r.get('generate_s'), fmt='{:.2f}')};"
      f" step {f(o.get('step_median_s'), 1e3, '{:.1f}')} / {f(p.get('step_median_s'), 1e3, '{:.1f}')} ms = {f(r.get('step_median_s'), fmt='{:.2f}')}")
EOF
  fi
  for i in "${!names[@]}"; do
    case "${results[$i]}" in ok*|"skipped (UNCLIP_CHECK_SKIP)") ;; *) return 1 ;; esac
  done
  return 0
}

main "$@" 2>&1 | tee "$OUT/device_check.log"
exit "${PIPESTATUS[0]}"
