"""Writes an `sdprune attack` job for measurements on the toy world: chosen models and prompt sets, the
judge CLIP zero-shot (the detector of jobs/toyworld/toyworld.yaml), absolute paths.
usage: attack_job.py OUT.yaml RUN_DIR --models NAME=BASE[:UNET][+MASK] ... --sets NAME ... [--judge J]
       [--prompts DIR]   (sets are files DIR/NAME.csv; default DIR jobs/toyworld/prompts)"""
import argparse, os
from common import JOBS

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("run")
ap.add_argument("--models", nargs="+", required=True)
ap.add_argument("--sets", nargs="+", required=True)
ap.add_argument("--judge", default=os.path.join(JOBS, "judge-clip.safetensors"))
ap.add_argument("--prompts", default=os.path.join(JOBS, "prompts"))
a = ap.parse_args()
P = os.path.join(JOBS, "prompts")
lines = ["description: toy world measurement (scripts/toyworld/attack_job.py)",
         f"model: {{path: {JOBS}/base.safetensors}}",
         "sets:", f"  - {{role: target, file: {P}/target.csv}}", f"  - {{role: anchor, file: {P}/anchor.csv}}",
         "seeds: {default: 0}", "sampler: {name: ddim, steps: 20, max_steps: 10, size: 16x16}",
         "attack:", "  models:"]
for m in a.models:
    name, _, spec = m.partition("=")
    spec, _, mask = spec.partition("+")
    base, _, unet = spec.partition(":")
    s = f"    - {{name: {name}, path: {base}"
    s += f", unet: {unet}" if unet else ""
    s += f", mask: {mask}" if mask else ""
    lines.append(s + "}")
lines.append("  sets:")
for s in a.sets:
    lines.append(f"    - {{name: {s}, file: {os.path.join(a.prompts, s + '.csv')}}}")
lines += ["  detector:", f"    clip: {a.judge}", '    concept: ["a photo of a triangle"]',
          '    neutral: ["a photo of a square", "a photo of a ring", "a photo of a plus", "a photo of a bar"]',
          "    threshold: 0.5", f"out: {a.run}"]
open(a.out, "w").write("\n".join(lines) + "\n")
