#!/usr/bin/env bash
# Regenerates the toy world end to end (see README.md): data, classifier, VAE, UNet + text encoder,
# export, ESD-u, judge CLIP, C-tool measurements, shipped files in jobs/toyworld/.
# Needs Debian's python3-torch, python3-numpy, python3-pil (/usr/bin/python3) and build/sdprune (or $SDPRUNE).
# Usage: scripts/toyworld/regen.sh [SD_MINUTES] [N]   (defaults 32 CPU-minutes, 200 images per cell; the shipped world: 40)
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
$py train_judge.py 4 "$w/judge-renders.safetensors"
# the judge's image tower fine-tuned on what the models generate (fine-tuning seeds 60000+, labels from the
# plain classifier), three generations in parallel
b="$root/jobs/toyworld/base.safetensors" e="$root/jobs/toyworld/esd-u-triangle.safetensors"
$py finetune_judge.py gen base0 "$b" direct 100 &
$py finetune_judge.py gen base "$b" synonyms,control_square,control_ring 40 &
$py finetune_judge.py gen base2 "$b" control_plus,control_bar,paraphrases 40 &
wait
$py finetune_judge.py gen base2 "$b" control_bar 160 &
$py finetune_judge.py gen esd "$b:$e" direct,control_bar 50 &
$py finetune_judge.py gen base3 "$b:$e" control_plus,control_bar 60 &
wait
$py finetune_judge.py train "$w/judge-renders.safetensors" "$root/jobs/toyworld/judge-clip.safetensors" --steps 800
$py prompts.py "$root/jobs/toyworld/prompts"
# the searched attack set against the erased model (search seeds 70000+/120000+, evaluation seeds 90000+)
$py search_attack.py "$b" "$e" "$root/jobs/toyworld/prompts/searched.csv" --candidates 120 --seeds1 4 --top 16 --seeds2 12 --keep 6
cp "$w/search/search.json" "$root/jobs/toyworld/measurements/search.json"
$py eval_c.py "$root/jobs/toyworld/base.safetensors" --n "$n" --tag base
$py eval_c.py "$root/jobs/toyworld/base.safetensors" --unet "$root/jobs/toyworld/esd-u-triangle.safetensors" --n "$n" --tag esd
$py check_judge.py "$root/jobs/toyworld/judge-clip.safetensors" base esd
$py report.py > "$w/report.md"
cp "$w/eval_base.json" "$root/jobs/toyworld/measurements/base.json"
cp "$w/eval_esd.json" "$root/jobs/toyworld/measurements/esd-u.json"
cp "$w/judge_check.json" "$w/report.md" "$root/jobs/toyworld/measurements/"
# the C tool end to end (stats -> mask -> attack with the judge CLIP) and its assertions: tests/test_toyworld.sh
echo "then: SDPRUNE_BIN=\$SDPRUNE KEEP_TMP=1 bash $root/tests/test_toyworld.sh (tables from its metrics.h5: check_attack.py)"
echo "regen: shipped files in $root/jobs/toyworld, measurements in $w/report.md"
