#!/usr/bin/env bash
# Sanitizer runs of the test suite, a CI stage (.ci/run) that also runs by hand:
#   asan  AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer (the `asan` preset) over
#         what reads untrusted bytes or crosses the C boundary: safetensors, checkpoints (.ckpt
#         pickles and zips, diffusers folders), the tokenizer and prompt parser, images, the fuzz
#         regressions, hostile inputs and limits, the C API and the end-to-end pipeline (leak-free);
#   tsan  ThreadSanitizer (the `tsan` preset) over the concurrency tests.
# Both build the baseline CPU kernels only (UNCLIP_CPU_DISPATCH=OFF): the AVX2/AVX-512 variants
# triple the kernel compile time and compute the same results, which the release run checks.
#   bash .ci/sanitizers.sh [asan] [tsan]        (default: both)
# UNCLIP_SANITIZER_BUILD_PREFIX puts the build folders elsewhere (default build/, giving build/asan
# and build/tsan, the presets' folders).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
prefix="${UNCLIP_SANITIZER_BUILD_PREFIX:-build/}"
stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=(asan tsan)

# Any report fails the test that triggered it; leaks are reported at exit (ASan enables LSan).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

for stage in "${stages[@]}"; do
  start=$SECONDS
  build="${prefix}${stage}"
  case "$stage" in
    asan)
      echo "== ASan + UBSan + LSan: the test suite ($build)"
      cmake --preset asan -B "$build" -DUNCLIP_CPU_DISPATCH=OFF >/dev/null
      cmake --build "$build" -j2 --target unclip_tests_safetensors unclip_tests_checkpoint unclip_tests_clip \
        unclip_tests_capi unclip_tests_pipeline unclip_tests_reliability unclip_tests_concurrency \
        unclip_test_out_of_memory unclip_test_make_tiny_model unclip_c_variation unclip_cpp_variation \
        $(printf 'unclip_fuzz_replay_%s ' safetensors pickle ckpt diffusers_config prompt image capi)
      ctest --test-dir "$build" -j2 --output-on-failure -L 'safetensors|checkpoint|clip|capi|pipeline|reliability|concurrency|fuzz'
      ;;
    tsan)
      echo "== ThreadSanitizer: the concurrency tests ($build)"
      cmake --preset tsan -B "$build" >/dev/null
      cmake --build "$build" -j2 --target unclip_tests_concurrency
      ctest --test-dir "$build" -j2 --output-on-failure -L concurrency
      ;;
    *) echo "sanitizers.sh: unknown stage '$stage' (asan, tsan)" >&2; exit 2 ;;
  esac
  echo "sanitizers: $stage done in $((SECONDS - start)) s"
done
