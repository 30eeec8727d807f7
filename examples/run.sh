#!/usr/bin/env bash
# The main job: installs what is missing, builds, and makes an image variation of
# examples/data/sample.png with the built-in demo model (a tiny random-weight unclip-h model
# written at first run: its output is noise-like, it proves the whole pipeline runs end to end).
#   bash examples/run.sh [extra `unclip variation` options]
# With real weights:
#   build/release/examples/unclip variation --model sd21-unclip-h.ckpt --image photo.png -o out.png
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash .ci/install-deps
cmake --preset release >/dev/null
cmake --build --preset release --target unclip_cli
cli=build/release/examples/unclip
model=build/release/tiny-unclip-h.safetensors
"$cli" info
[ -f "$model" ] || "$cli" make-tiny-model "$model"
"$cli" variation --model "$model" --allow-reduced --image examples/data/sample.png:1:0.1 \
  --width 256 --height 256 --steps 10 --seed 42 --output variation.png "$@"
echo "variation.png: a variation of examples/data/sample.png by the random-weight demo model (noise-like by design)."
