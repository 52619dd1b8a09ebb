#!/usr/bin/env bash
# The main job on the embedded default: synthesise a tiny SD-shaped model, describe it, generate the
# bundled prompt set with each row's seed and guidance (PNG + A1111 parameters + provenance), then the
# pruning pipeline: statistics over target/anchor/adversarial sets -> Wanda mask -> pruned checkpoint
# (+ restore file), and the bundled prompts again with the mask applied in memory.
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
prompts="$root/jobs/prompts"
"$bin" stats --model "$model" --target "$prompts/demo_target.txt" --anchor "$prompts/demo_anchor.txt" \
  --adversarial demo="$prompts/demo.csv" --sampler ddim --steps 20 --max-steps 10 --size 64x64 --seed 0 \
  --force --out "$out/run/stats.h5"
"$bin" mask "$out/run/stats.h5" --method wanda --ratio 0.01 --tau 10 --force --explain --out "$out/run/mask.h5"
"$bin" apply --model "$model" --mask "$out/run/mask.h5" --force --out "$out/run/pruned.safetensors"
"$bin" generate --model "$out/run/pruned.safetensors" --prompts "$prompts/demo.csv" --sampler ddim --steps 20 \
  --size 64x64 --out "$out/pruned-images"
echo "demo: images in $out/images and $out/pruned-images (PNG, 'parameters' and 'sdprune' text chunks)"
echo "demo: statistics $out/run/stats.h5, mask $out/run/mask.h5, pruned model $out/run/pruned.safetensors"
