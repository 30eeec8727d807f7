#!/usr/bin/env bash
# The C ABI of a shared libunclip against the committed baseline tests/abi/unclip.abi (libabigail,
# Debian package abigail-tools).
#   check_abi.sh LIBRARY UNCLIP_H            fails on any change other than an added function or a
#                                            field appended to a params struct
#   check_abi.sh --update LIBRARY UNCLIP_H   rewrites the baseline after an intended change
# Only the C API is covered (the C++ API has no binary promise, see README.md), and its types are
# read from debug information: LIBRARY's capi/unclip.cpp must be compiled with -g, as the consumer
# tests' add_subdirectory build does. Without abidw/abidiff it prints "SKIP: ..." and succeeds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
update=0
if [ "${1:-}" = "--update" ]; then
  update=1
  shift
fi
if [ $# -ne 2 ]; then
  sed -n '2,10p' "${BASH_SOURCE[0]}"
  exit 2
fi
library=$1 header=$2
for tool in abidw abidiff; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool not found (Debian package abigail-tools)"
    exit 0
  fi
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/headers"
cp "$header" "$tmp/headers/unclip.h"
# Types declared outside unclip.h are private; C++ symbols are left out.
abidw --no-corpus-path --no-comp-dir-path --no-show-locs --drop-undefined-syms --no-elf-needed --exported-interfaces-only \
  --headers-dir "$tmp/headers" --drop-private-types --suppressions "$here/cxx.suppr" \
  --out-file "$tmp/current.abi" "$library"
if ! grep -q '<function-decl name=.unclip_pipeline_open' "$tmp/current.abi"; then
  echo "check_abi: no C API types in $library: was capi/unclip.cpp compiled with -g?" >&2
  exit 1
fi
if [ "$update" -eq 1 ]; then
  cp "$tmp/current.abi" "$here/unclip.abi"
  echo "check_abi: baseline $here/unclip.abi rewritten"
  exit 0
fi
# abidiff's exit status is a bit mask: 4 = an ABI change, 8 = an incompatible one, 1/2 = errors.
status=0
abidiff --leaf-changes-only --no-added-syms --suppressions "$here/cxx.suppr" \
  "$here/unclip.abi" "$tmp/current.abi" >"$tmp/report" || status=$?
if [ "$status" -ne 0 ]; then
  cat "$tmp/report"
  # The one change allowed besides new functions (README.md, "ABI and symbols"): fields appended
  # to a params struct that callers pass singly, by pointer, with its struct_size. Not
  # unclip_conditioning (callers pass arrays of it: its size is their stride) nor
  # unclip_image_view (embedded by value in other structs). Any report line not of that shape fails.
  if [ "$status" -ne 4 ] || ! awk '
      /^(Leaf changes summary|Changed leaf types summary):/ || /^$/ { next }
      /^Removed\/Changed\/Added (functions|variables) summary:/ { if ($0 !~ /: 0 Removed, 0 Changed,/) bad = 1; next }
      /^\x27struct unclip_(open_params|generate_params|progress)\x27 changed:$/ { size = ""; next }
      /^  type size changed from [0-9]+ to [0-9]+ \(in bits\)$/ { size = $5; next }
      /^  [0-9]+ data member insertions?:$/ { next }
      /^    \x27.*\x27, at offset [0-9]+ \(in bits\)$/ {
        offset = $(NF - 2)
        if (size == "" || offset + 0 < size + 0) bad = 1
        next
      }
      { bad = 1 }
      END { exit bad }' "$tmp/report"; then
    echo "check_abi: the C ABI changed (abidiff status $status). Removing or changing a function," >&2
    echo "moving or resizing fields or renumbering an enum breaks callers; if the change is intended" >&2
    echo "(a new minor version), rerun with --update and commit tests/abi/unclip.abi." >&2
    exit 1
  fi
  echo "check_abi: only fields appended to params structs (compatible)"
fi
added="$(abidiff --suppressions "$here/cxx.suppr" "$here/unclip.abi" "$tmp/current.abi" | grep -E "^  \[A\]" || true)"
if [ -n "$added" ]; then
  echo "check_abi: compatible additions (update the baseline with --update):"
  echo "$added"
fi
echo "check_abi: the C ABI of $library matches tests/abi/unclip.abi"
