#!/usr/bin/env bash
# unclip's CUDA backend against diffusers on the same GPU, in one run: a 768x768, 20-step
# uni_pc_bh2, CFG 7 image variation of examples/data/sample.png with random full-size
# sd21-unclip-h weights (fp16), through the unclip CLI (--device cuda), plus our components through
# unclip_bench_cuda where the build has it; then bench_diffusers_cuda.py (StableUnCLIPImg2ImgPipeline,
# fp16, SDPA, UniPC bh2, same settings, plus its components and the fp16 GEMM ceiling). Prints one
# table of ratios (ours / diffusers; below 1 means unclip is faster) and writes, under the output
# folder:
#   bench.log         the CLI runs (each line time-stamped) and the peer's output
#   diffusers.json    the peer's results
#   bench_cuda.json   ours, the peer's, the ratios and the nvidia-smi readings
#
#   examples/bench/run_cuda.sh [all|checkpoint|ours|peer|table]
#     all         (default) checkpoint, ours, peer, table
#     checkpoint  write the checkpoint if it is missing
#     ours        the CLI runs and unclip_bench_cuda (the checkpoint must exist)
#     peer        the diffusers side only (tests/cuda/device_check.sh runs it during the build,
#                 pinned to cores the build leaves free)
#     table       the ratios from what ours and peer left in the output folder
#
# Environment:
#   UNCLIP_BENCH_BUILD       a CUDA build folder with unclip_cli and unclip_make_random_checkpoint
#                            (default build/device-check if it exists, else build/cuda-bench,
#                            configured and built here: Release, UNCLIP_CUDA=ON)
#   UNCLIP_BENCH_OUT         output folder (default $OUT if set, else build/bench-cuda)
#   UNCLIP_BENCH_CHECKPOINT  the unclip-h file (default /tmp/unclip-bench-unclip-h-f16.safetensors,
#                            written with seed 1 if missing, as run_all.sh does: 4 GB)
#   UNCLIP_BENCH_PYTHON      python with torch, transformers and diffusers (default python3; with
#                            /tmp/site on PYTHONPATH when diffusers is only there, as device_check.sh
#                            installs the carried wheels)
#   UNCLIP_BENCH_RUNS        CLI runs (default 2; each is a fresh process, so each includes the
#                            first-use costs diffusers' warmed-up runs do not have: the per-step
#                            row compares warm steps)
#   UNCLIP_BENCH_PEER_ARGS   extra arguments for bench_diffusers_cuda.py
#   UNCLIP_BENCH_CLI_TIMEOUT, UNCLIP_BENCH_PEER_TIMEOUT   seconds per CLI run / for the peer
#                            (default 150 / 240)
#   UNCLIP_BENCH_SIZE, UNCLIP_BENCH_STEPS   image size and steps (default 768, 20; smaller ones are
#                            for smoke tests, e.g. with UNCLIP_BENCH_PEER_ARGS="--tiny --device cpu")
#   UNCLIP_BENCH_DEVICE      the CLI's --device (default cuda; cpu for a smoke test of this script)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mode="${1:-all}"
out="${UNCLIP_BENCH_OUT:-${OUT:-$root/build/bench-cuda}}"
checkpoint="${UNCLIP_BENCH_CHECKPOINT:-/tmp/unclip-bench-unclip-h-f16.safetensors}"
python="${UNCLIP_BENCH_PYTHON:-python3}"
runs="${UNCLIP_BENCH_RUNS:-2}"
cli_timeout="${UNCLIP_BENCH_CLI_TIMEOUT:-150}"
peer_timeout="${UNCLIP_BENCH_PEER_TIMEOUT:-240}"
steps="${UNCLIP_BENCH_STEPS:-20}" size="${UNCLIP_BENCH_SIZE:-768}" cfg=7 sampler=uni_pc_bh2 seed=1
device="${UNCLIP_BENCH_DEVICE:-cuda}"
image="$root/examples/data/sample.png"
work="${TMPDIR:-/tmp}/unclip-bench-cuda"
cd "$root" || exit 1
mkdir -p "$out" "$work"
log="$out/bench.log"

say() { echo "== $*" | tee -a "$log"; }

gpu_state() {  # one CSV line of the card's clocks and memory, tagged
  if command -v nvidia-smi >/dev/null; then
    echo "$1,$(nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,memory.used --format=csv,noheader | head -1)" \
      >>"$work/gpu.csv"
  fi
}

# Samples the device's used memory every 100 ms into $1 until stop_sampling (nvidia-smi; includes
# the CUDA context, unlike torch.cuda.max_memory_allocated).
start_sampling() {
  sampler_pid=""
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$1" 2>/dev/null &
    sampler_pid=$!
  fi
}
stop_sampling() {
  if [ -n "${sampler_pid:-}" ]; then kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null; fi
  sampler_pid=""
}

find_build() {
  if [ -n "${UNCLIP_BENCH_BUILD:-}" ]; then build="$UNCLIP_BENCH_BUILD"
  elif [ -x "$root/build/device-check/examples/unclip" ]; then build="$root/build/device-check"
  else
    build="$root/build/cuda-bench"
    if [ ! -x "$build/examples/unclip" ] || [ ! -x "$build/examples/unclip_make_random_checkpoint" ]; then
      say "configuring and building $build"
      deps=()
      [ -d "$root/.deps" ] && deps=(-DUNCLIP_DEPS_DIR="$root/.deps")
      cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DUNCLIP_CUDA=ON \
        -DUNCLIP_BUILD_TESTS=OFF -DUNCLIP_BUILD_EXAMPLES=ON ${deps[@]+"${deps[@]}"} >>"$log" 2>&1 &&
        cmake --build "$build" --target unclip_cli unclip_make_random_checkpoint -j"$(nproc)" >>"$log" 2>&1 ||
        { say "build failed (see $log)"; return 1; }
    fi
  fi
  cli="$build/examples/unclip"
  maker="$build/examples/unclip_make_random_checkpoint"
}

make_checkpoint() {
  [ -f "$checkpoint" ] && { say "checkpoint $checkpoint exists"; return 0; }
  find_build || return 1
  say "writing $checkpoint (random full-size sd21-unclip-h, fp16, seed 1)"
  local t0=$SECONDS
  local partial="${checkpoint%.safetensors}.partial.safetensors"  # renamed once complete
  if ! "$maker" --variant unclip-h --dtype f16 --seed 1 "$partial" >>"$log" 2>&1 || ! mv "$partial" "$checkpoint"; then
    say "checkpoint writer failed (see $log)"; rm -f "$partial"; return 1
  fi
  say "checkpoint written in $((SECONDS - t0)) s"
}

# Each CLI output line prefixed with the host clock (perf_counter) at which it arrived: the CLI
# flushes every progress line, so steps 2..N give warm per-step times at sub-millisecond
# resolution (its own "elapsed" is printed in tenths of a second).
stamp() { "$python" -u -c '
import sys, time
for line in sys.stdin:
    sys.stdout.write("%.6f %s" % (time.perf_counter(), line)); sys.stdout.flush()'; }

run_ours() {
  find_build || return 1
  [ -f "$checkpoint" ] || { say "no checkpoint at $checkpoint: run '$0 checkpoint' first"; return 1; }
  [ -x "$cli" ] || { say "no CLI at $cli"; return 1; }
  rm -f "$work"/ours_*.log "$work"/ours_*.mem
  # Line-buffered stdout: into a pipe the CLI's printf would hold lines back until the next flush.
  local linebuf=()
  command -v stdbuf >/dev/null && linebuf=(stdbuf -oL -eL)
  local k rc
  for k in $(seq 1 "$runs"); do
    gpu_state "before ours run $k"
    say "unclip run $k: $cli variation --device $device ${size}x${size} $steps steps $sampler cfg $cfg"
    start_sampling "$work/ours_$k.mem"
    timeout "$cli_timeout" ${linebuf[@]+"${linebuf[@]}"} "$cli" variation --device "$device" --model "$checkpoint" --image "$image" \
      --steps "$steps" --cfg "$cfg" --sampler "$sampler" --width "$size" --height "$size" --seed "$seed" \
      -o "$work/variation_$k.png" 2>&1 | stamp >"$work/ours_$k.log"
    rc=${PIPESTATUS[0]}
    stop_sampling
    gpu_state "after ours run $k"
    echo "$rc" >"$work/ours_$k.rc"
    sed 's/^/    /' "$work/ours_$k.log" | tee -a "$log" | grep -v " step " || true
    [ "$rc" = 0 ] || { say "unclip run $k failed (exit $rc$([ "$rc" = 124 ] && echo ", timed out after ${cli_timeout} s"))"; return 1; }
  done
  # Our components, where the build has the GPU component benchmark (RESULT lines, read by table).
  local bench="$build/examples/unclip_bench_cuda"
  rm -f "$work/ours_components.log"
  if [ -x "$bench" ] && [ "$device" = cuda ]; then
    gpu_state "before unclip_bench_cuda"
    say "unclip components: $bench --checkpoint ... --repeats 5"
    # The UNet and VAE also with L2-sized convolution bands (2^24 columns; the default is 2^27).
    timeout "$cli_timeout" "$bench" --checkpoint "$checkpoint" --repeats 5 --column-limits $((1 << 27)),$((1 << 24)) \
      >"$work/ours_components.log" 2>&1
    rc=$?
    gpu_state "after unclip_bench_cuda"
    sed 's/^/    /' "$work/ours_components.log" | tee -a "$log" | grep -v "^    RESULT" || true
    [ "$rc" = 0 ] || { say "unclip_bench_cuda failed (exit $rc)"; return 1; }
  else
    say "no $bench (or not --device cuda): component rows for unclip skipped"
  fi
}

run_peer() {
  local py_env=()
  if ! "$python" -c "import diffusers" 2>/dev/null && [ -d /tmp/site/diffusers ]; then
    py_env=(env "PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}")
  fi
  gpu_state "before diffusers"
  say "diffusers peer: bench_diffusers_cuda.py ${UNCLIP_BENCH_PEER_ARGS:-}"
  start_sampling "$work/peer.mem"
  # shellcheck disable=SC2086
  PYTHONUNBUFFERED=1 timeout "$peer_timeout" ${py_env[@]+"${py_env[@]}"} "$python" \
    "$root/examples/bench/bench_diffusers_cuda.py" --out "$out/diffusers.json" --steps "$steps" --cfg "$cfg" \
    --size "$size" ${UNCLIP_BENCH_PEER_ARGS:-} 2>&1 | tee "$work/peer.log" | sed 's/^/    /' >>"$log"
  local rc=${PIPESTATUS[0]}
  stop_sampling
  gpu_state "after diffusers"
  grep -v "^There are modules" "$work/peer.log" | tail -15
  [ "$rc" = 0 ] || { say "diffusers peer failed (exit $rc$([ "$rc" = 124 ] && echo ", timed out after ${peer_timeout} s"))"; return 1; }
}

table() {
  "$python" - "$work" "$out" "$runs" "$steps" <<'EOF'
import glob, json, os, re, statistics, sys
work, out, runs, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def mem_peak(path):
    try:
        vals = [int(v) for v in open(path).read().split() if v.strip().isdigit()]
        return max(vals) / 1024 if vals else None
    except OSError:
        return None

ours = []
for k in range(1, runs + 1):
    path = os.path.join(work, f"ours_{k}.log")
    if not os.path.exists(path):
        continue
    rc = open(os.path.join(work, f"ours_{k}.rc")).read().strip() if os.path.exists(os.path.join(work, f"ours_{k}.rc")) else "?"
    lines = [l.rstrip("\n").split(" ", 1) for l in open(path) if " " in l]
    t_first = float(lines[0][0]) if lines else None
    t_load = t_gen = load_s = gen_s = None
    step_t = {}
    for ts, text in lines:
        ts = float(ts)
        m = re.search(r"loaded in ([0-9.]+) s", text)
        if m:
            t_load, load_s = ts, float(m.group(1))
        m = re.match(r"step (\d+)/(\d+)", text)
        if m:
            step_t[int(m.group(1))] = ts
        m = re.search(r"generated .* in ([0-9.]+) s", text)
        if m:
            t_gen, gen_s = ts, float(m.group(1))
    r = {"run": k, "exit": rc, "load_s_printed": load_s, "generate_s_printed": gen_s,
         "lines_wall_s": (float(lines[-1][0]) - t_first) if lines else None}
    if t_load is not None and t_gen is not None:
        r["generate_s"] = t_gen - t_load  # host clock: "loaded" line to "generated" line
    if len(step_t) >= 3:
        ks = sorted(step_t)
        diffs = [step_t[b] - step_t[a] for a, b in zip(ks, ks[1:])]
        r["step_median_s"] = statistics.median(diffs)
        r["step_mean_s"] = (step_t[ks[-1]] - step_t[ks[0]]) / (ks[-1] - ks[0])
        r["step_times_s"] = diffs
        r["first_step_s"] = step_t[ks[0]] - t_load if t_load is not None else None
    r["device_mem_peak_gib"] = mem_peak(os.path.join(work, f"ours_{k}.mem"))
    ours.append(r)

peer = None
try:
    peer = json.load(open(os.path.join(out, "diffusers.json")))
except (OSError, ValueError):
    pass

gpu = open(os.path.join(work, "gpu.csv")).read().splitlines() if os.path.exists(os.path.join(work, "gpu.csv")) else []
ok = [r for r in ours if "generate_s" in r and r["exit"] == "0"]
def med(key):  # the median over the CLI runs, as the peer reports its runs
    vals = [r[key] for r in ok if r.get(key) is not None]
    return statistics.median(vals) if vals else None
o = {"generate_s": med("generate_s"), "step_median_s": med("step_median_s"), "load_s": med("load_s_printed"),
     "device_mem_peak_gib": med("device_mem_peak_gib"), "runs_ok": len(ok),
     "generate_min_s": min((r["generate_s"] for r in ok), default=None)}
p = {}
if peer:
    e = peer.get("e2e", {})
    p = {"generate_s": e.get("median_s"), "step_median_s": e.get("step_median_s"),
         # The process's device memory after its runs (torch.cuda.mem_get_info: context, workspaces and
         # the allocator's pool); its nvidia-smi samples would include the fp32 weights it built first.
         "device_mem_peak_gib": e.get("device_used_gib"),
         "nvidia_smi_peak_gib": mem_peak(os.path.join(work, "peer.mem")),
         "torch_peak_allocated_gib": e.get("peak_allocated_gib"), "gemm_tflops": peer.get("gemm", {}).get("tflops")}
rows = [("end to end (generate), s", "generate_s", 1), ("UNet CFG step in the loop, ms", "step_median_s", 1e3),
        ("device memory, GiB (ours: nvidia-smi peak)", "device_mem_peak_gib", 1)]
ratios = {}
print()
size = peer.get("e2e", {}).get("size", "?") if peer else "?"
print(f"unclip CUDA vs diffusers: {peer.get('gpu') if peer else '?'}, {size}x{size}, {steps} steps uni_pc_bh2, CFG 7, "
      f"{peer.get('dtype') if peer else 'fp16'}")
print(f"{'':40} {'unclip':>10} {'diffusers':>10} {'ratio':>7}")
for label, key, scale in rows:
    a, b = o.get(key), p.get(key)
    ratio = a / b if a and b else None
    ratios[key] = ratio
    fa = f"{a * scale:10.3f}" if a is not None else f"{'-':>10}"
    fb = f"{b * scale:10.3f}" if b is not None else f"{'-':>10}"
    fr = f"{ratio:7.2f}" if ratio is not None else f"{'-':>7}"
    print(f"{label:40} {fa} {fb} {fr}")
# Components: unclip_bench_cuda's RESULT lines against the peer's components.
mine = {}
path = os.path.join(work, "ours_components.log")
if os.path.exists(path):
    for line in open(path):
        if line.startswith("RESULT "):
            try:
                r = json.loads(line[7:])
                mine[r["component"]] = r
            except (ValueError, KeyError):
                pass
comps = (peer or {}).get("components", {})
# (Our component benchmark runs at 512/768 px; the peer's sizes are its own, smaller in smoke tests.)
# (The _graph rows replay our step from a CUDA graph, as the pipeline does; the peer runs eagerly.)
for key, peer_key, label in (("vision", "vision", "CLIP vision encode 224, ms"), ("text", "text", "text encode 77 tokens, ms"),
                             ("unet768", "unet768", "UNet CFG step {} px (component), ms"),
                             ("unet768_graph", "unet768", "UNet CFG step {} px, graph, ms"),
                             ("unet512", "unet512", "UNet CFG step {} px (component), ms"),
                             ("unet512_graph", "unet512", "UNet CFG step {} px, graph, ms"),
                             ("vae768", "vae768", "VAE decode {} px, ms")):
    a = mine.get(key, {}).get("median_s")
    b = comps.get(peer_key, {}).get("median_s")
    if a is None and b is None:
        continue
    label = label.format(comps.get(peer_key, {}).get("image") or peer_key[-3:])
    ratio = a / b if a and b else None
    ratios[key] = ratio
    print(f"{label:40} {a * 1e3 if a is not None else float('nan'):10.2f} {b * 1e3 if b is not None else float('nan'):10.2f} "
          f"{ratio if ratio is not None else float('nan'):7.2f}")
# The warm end to end: Pipeline::generate in a process that has generated before, as the peer's.
a, b = mine.get("e2e768", {}).get("median_s"), p.get("generate_s")
if a is not None:
    ratio = a / b if b else None
    ratios["e2e_warm"] = ratio
    print(f"{'end to end, warm process (Pipeline), s':40} {a:10.3f} {b if b is not None else float('nan'):10.3f} "
          f"{ratio if ratio is not None else float('nan'):7.2f}")
g_ours = mine.get("gemm8192", {}).get("tflops")
g_peer = p.get("gemm_tflops")
if g_ours or g_peer:
    ratio = g_ours / g_peer if g_ours and g_peer else None
    ratios["gemm_tflops"] = ratio
    print(f"{'fp16 GEMM 8192^3, TFLOP/s':40} {g_ours or float('nan'):10.1f} {g_peer or float('nan'):10.1f} "
          f"{ratio if ratio is not None else float('nan'):7.2f}")
if o.get("load_s") is not None:
    print(f"{'unclip model load (printed), s':40} {o['load_s']:10.1f}")
if peer:
    if peer.get("concurrent_build"):
        print("(the diffusers side ran while the project compiled on other cores: see bench_cuda.json)")
print(f"(ratio = unclip / diffusers; GEMM row: ours / torch's rate. Below 1 otherwise, unclip is faster or")
print(f" smaller. Medians of {len(ok)} unclip CLI runs and the peer's runs. unclip runs are fresh processes: their")
print(" end-to-end time includes first-use costs the peer's warmed-up runs do not have; the per-step row")
print(" compares warm steps.)")
for line in gpu:
    print("gpu:", line)
json.dump({"ours": {"runs": ours, "median": o, "components": mine}, "diffusers": peer, "ratios": ratios, "gpu_readings": gpu},
          open(os.path.join(out, "bench_cuda.json"), "w"), indent=1)
print(f"wrote {os.path.join(out, 'bench_cuda.json')}")
EOF
}

status=0
case "$mode" in
  checkpoint) make_checkpoint || status=1 ;;
  ours) run_ours || status=1 ;;
  peer) run_peer || status=1 ;;
  table) table | tee -a "$log" ;;
  all)
    rm -f "$work/gpu.csv"
    make_checkpoint || status=1
    [ "$status" = 0 ] && { run_ours || status=1; }
    run_peer || status=1
    table | tee -a "$log"
    ;;
  *) echo "usage: $0 [all|checkpoint|ours|peer|table]" >&2; exit 2 ;;
esac
exit "$status"
