#!/usr/bin/env bash
# The main job on the embedded default: synthesise a tiny SD-shaped model, describe it, and generate
# the bundled prompt set with each row's seed and guidance (PNG + A1111 parameters + provenance).
# Usage: jobs/demo.sh [BUILD_DIR] (default build); output in out/demo/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
bin="$build/sdprune"
out="$root/out/demo"
mkdir -p "$out"
model="$out/tiny-sd1.safetensors"
[ -f "$model" ] || "$bin" synth --arch tiny-sd1 --dtype f16 --seed 0 --out "$model"
"$bin" inspect "$model"
"$bin" generate --model "$model" --prompts "$root/jobs/prompts/demo.csv" --sampler ddim --steps 20 \
  --size 64x64 --out "$out/images"
echo "demo: images in $out/images (PNG, 'parameters' and 'sdprune' text chunks)"
