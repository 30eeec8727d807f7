#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan: the `fuzz` preset) and runs each in turn.
#   bash tests/fuzz/run.sh [seconds-per-target, default 60] [target ...]
# Targets: safetensors pickle ckpt diffusers_config prompt image capi (default: all, one at a time).
# Working corpora grow under <build>/fuzz-corpus/<target> (seeded from tests/fuzz/corpus/<target>);
# crashes land in <build>/fuzz-artifacts/<target>/. A crash, once fixed, is copied into
# tests/fuzz/regressions/<target>/ so that ctest -L fuzz replays it in every build.
# UNCLIP_FUZZ_BUILD_DIR overrides the build folder (default build/fuzz); UNCLIP_FUZZ_JOBS the
# parallel build jobs (default 2).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
seconds="${1:-60}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(safetensors pickle ckpt diffusers_config prompt image capi)
build="${UNCLIP_FUZZ_BUILD_DIR:-build/fuzz}"

command -v clang++ >/dev/null || { echo "run.sh: clang++ not found (apt-get install clang)" >&2; exit 1; }
cmake --preset fuzz -B "$build" >/dev/null
cmake --build "$build" -j "${UNCLIP_FUZZ_JOBS:-2}" --target $(printf 'unclip_fuzz_%s ' "${targets[@]}")

summary=()
status=0
for t in "${targets[@]}"; do
  corpus="$build/fuzz-corpus/$t"
  artifacts="$build/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  log="$build/fuzz-$t.log"
  echo "== fuzz $t for ${seconds}s (log $log)"
  # rss_limit: the targets cap their own allocations well below it; a run over it is a finding.
  set +e
  "$build/tests/fuzz/unclip_fuzz_$t" "$corpus" tests/fuzz/corpus/$t tests/fuzz/regressions/$t \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=30 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  crashes=$(find "$artifacts" -type f | wc -l)
  summary+=("$(printf '%-18s %6ss %12s execs  exit %-3s %s artifact(s) in %s' "$t" "$seconds" "$execs" "$rc" "$crashes" "$artifacts")")
  [ "$rc" -eq 0 ] || status=1
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit "$status"
