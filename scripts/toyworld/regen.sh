#!/usr/bin/env bash
# Regenerates the toy world end to end (see README.md): data, classifier, VAE, UNet + text encoder,
# export, ESD-u, judge CLIP, C-tool measurements, shipped files in jobs/toyworld/.
# Needs Debian's python3-torch, python3-numpy, python3-pil (/usr/bin/python3) and build/sdprune.
# Usage: scripts/toyworld/regen.sh [SD_MINUTES] [N]   (defaults 32 CPU-minutes, 200 images per cell)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
minutes=${1:-32}
n=${2:-200}
py="nice -n 10 /usr/bin/python3"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export TOYWORLD_WORK=${TOYWORLD_WORK:-/tmp/toyworld}
w=$TOYWORLD_WORK
mkdir -p "$w" "$root/jobs/toyworld"
cd "$here"
$py make_data.py 12000
$py train_classifier.py
$py train_vae.py 5
$py train_sd.py "$minutes"            # resumes from $w/sd_ckpt.pt if present
$py export_model.py "$root/jobs/toyworld/base.safetensors" --raw --drop-encoder
$py esd.py "$root/jobs/toyworld/base.safetensors" "$root/jobs/toyworld/esd-u-triangle.safetensors"
$py train_judge.py 4 "$root/jobs/toyworld/judge-clip.safetensors"
$py prompts.py "$root/jobs/toyworld/prompts"
$py eval_c.py "$root/jobs/toyworld/base.safetensors" --n "$n" --tag base
$py eval_c.py "$root/jobs/toyworld/base.safetensors" --unet "$root/jobs/toyworld/esd-u-triangle.safetensors" --n "$n" --tag esd
$py check_judge.py "$root/jobs/toyworld/judge-clip.safetensors" base esd
$py report.py > "$w/report.md"
echo "regen: shipped files in $root/jobs/toyworld, measurements in $w/report.md"
