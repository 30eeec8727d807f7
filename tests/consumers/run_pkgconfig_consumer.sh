#!/usr/bin/env bash
# Builds tests/consumers/project's C and C++ programs with plain compiler calls and the flags
# pkg-config gives for an installed unclip, then runs both.
#   run_pkgconfig_consumer.sh PREFIX LIBDIR PROJECT_DIR WORK_DIR MODEL CC CXX [--static]
# Without pkg-config it prints "SKIP: ..." (the ctest entry has a SKIP_REGULAR_EXPRESSION for it).
set -euo pipefail
prefix=$1 libdir=$2 project=$3 work=$4 model=$5 cc=$6 cxx=$7 mode=${8:-}
if ! command -v pkg-config >/dev/null 2>&1; then
  echo "SKIP: pkg-config not found (Debian package pkg-config)"
  exit 0
fi
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
mkdir -p "$work"
pc_args=(--cflags --libs unclip)
link_extra=()
if [ "$mode" = "--static" ]; then
  pc_args=(--static "${pc_args[@]}")
else
  # A shared libunclip outside the loader's directories: the host records where it is.
  link_extra=("-Wl,-rpath,$(pkg-config --variable=libdir unclip)")
fi
flags=$(pkg-config "${pc_args[@]}")
echo "pkg-config ${pc_args[*]}: $flags"
# shellcheck disable=SC2086 # the flags are words
"$cc" -std=c99 -pedantic-errors -Wall -Wextra -Werror -o "$work/consumer_c" "$project/consumer.c" $flags "${link_extra[@]}"
# shellcheck disable=SC2086
"$cxx" -std=c++17 -Wall -Wextra -Werror -o "$work/consumer_cpp" "$project/consumer.cpp" $flags "${link_extra[@]}"
for program in consumer_c consumer_cpp; do
  rm -f "$work/$program.png"
  "$work/$program" "$model" "$work/$program.png"
  [ -s "$work/$program.png" ] || { echo "$program wrote no image" >&2; exit 1; }
done
