#!/usr/bin/env bash
# The example jobs of the literature (jobs/nudity.yaml, vangogh.yaml, church.yaml) are accepted as they
# are: from the repository, `sdprune attack JOB` fails only on the first file the user has to supply, with
# its path (no parse or validation error). Then each job is copied into a job folder with every file
# its comments ask for replaced by a small stand-in (models/*.pt and the checkpoint: the synthesised
# tiny SD-1 model; models/clip-*: the synthesised tiny CLIP as a Hugging Face folder; prompts/*: the real
# literature CSVs from ../shared/prompts when present, else one-row CSVs; the shipped ConceptPrune
# prompts as they are) and run end to end as its comments say, on 1 row per set, 2 steps, 64x64:
# `sdprune-mpi run JOB` (statistics, mask, pruned checkpoint) then `sdprune attack JOB --set
# sampler.name=lms ...`; metrics.h5 must hold every model x set of the job, the models' UNet overrides
# resolved in the job's folder.
. "$(dirname "$0")/testlib.sh"
SRC=${SDPRUNE_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
MPI_BIN=${SDPRUNE_MPI_BIN:-$(dirname "$BIN")/sdprune-mpi}
SHARED_PROMPTS=${SDPRUNE_REFERENCE:+$SDPRUNE_REFERENCE/../prompts}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
export SDPRUNE_SYNTH_CACHE="$TMP/synth"
JOBS="nudity vangogh church"

# The paths a job names under models/ and prompts/, outside comments (one per line, unique).
job_paths() { sed 's/#.*//' "$1" | grep -oE '(models|prompts)/[A-Za-z0-9_.+-]+' | sort -u; }

# 1. the jobs as shipped: accepted, and the first missing file named
for job in $JOBS; do
  f="$SRC/jobs/$job.yaml"
  check "jobs/$job.yaml exists" [ -s "$f" ]
  missing=$(cd "$SRC/jobs" && for p in $(job_paths "$f"); do [ -e "$p" ] || echo "$p"; done)
  if [ -z "$missing" ]; then
    echo "note: every file of jobs/$job.yaml is present in jobs/: the missing-file check is skipped"
    continue
  fi
  (cd "$SRC" && "$BIN" attack "jobs/$job.yaml" --out "$TMP/shipped-$job") >/dev/null 2>"$TMP/shipped-$job.err"
  rc=$?
  check "sdprune attack jobs/$job.yaml as shipped: exit 1 (rc $rc: $(cat "$TMP/shipped-$job.err"))" [ $rc -eq 1 ]
  check "... one line naming a file the user supplies, nothing about the job file itself" bash -c "
    [ \$(wc -l <'$TMP/shipped-$job.err') -eq 1 ] &&
    grep -qE '^sdprune attack: jobs/(models|prompts)/[^:]+: cannot open: No such file' '$TMP/shipped-$job.err' &&
    ! grep -q 'jobs/$job.yaml:' '$TMP/shipped-$job.err'"
done

if [ ! -x "$MPI_BIN" ]; then
  [ "${CI:-}" = true ] && { echo "no sdprune-mpi beside $BIN under CI" >&2; exit 1; }
  echo "SKIP: no sdprune-mpi beside $BIN: the end-to-end runs of the example jobs"
  finish
  exit $?
fi

# 2. a job folder with stand-ins, run as the comments say
"$BIN" synth --arch tiny-sd1 --dtype f16 --out "$TMP/tiny-sd1.safetensors" >/dev/null 2>&1
"$BIN" synth --arch tiny-clip --out "$TMP/tiny-clip.safetensors" >/dev/null 2>&1
stand_in() { # stand_in JOBDIR PATH: the stand-in for one file a job names
  local dir=$1 p=$2 name
  name=$(basename "$p")
  mkdir -p "$dir/$(dirname "$p")"
  case "$p" in
  models/clip-*)
    mkdir -p "$dir/$p" && cp "$TMP/tiny-clip.safetensors" "$dir/$p/model.safetensors"
    $PY -c "import json, struct, sys; b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
open(sys.argv[2], 'w').write(json.loads(b[8:8 + n])['__metadata__']['config'])" \
      "$TMP/tiny-clip.safetensors" "$dir/$p/config.json" ;;
  models/*) cp "$TMP/tiny-sd1.safetensors" "$dir/$p" ;; # a UNet override: a whole checkpoint's UNet keys
  prompts/conceptprune_*) cp "$SRC/jobs/$p" "$dir/$p" ;;
  prompts/*.csv)
    if [ -n "$SHARED_PROMPTS" ] && [ -s "$SHARED_PROMPTS/$name" ]; then cp "$SHARED_PROMPTS/$name" "$dir/$p"
    else printf 'case_number,prompt,evaluation_seed,evaluation_guidance\n0,a stand-in prompt,7,7.5\n' >"$dir/$p"; fi ;;
  prompts/*) echo "a stand-in prompt" >"$dir/$p" ;;
  esac
}
small="--set sampler.limit=1 --set sampler.steps=2 --set sampler.size=64x64"
for job in $JOBS; do
  dir="$TMP/$job"
  mkdir -p "$dir/jobs" && cp "$SRC/jobs/$job.yaml" "$dir/jobs/"
  for p in $(job_paths "$SRC/jobs/$job.yaml"); do stand_in "$dir/jobs" "$p"; done
  model="--set model.path=$dir/jobs/models/sd-v1-4.safetensors" # the checkpoint's stand-in is no torch zip
  cp "$TMP/tiny-sd1.safetensors" "$dir/jobs/models/sd-v1-4.safetensors"
  t0=$(date +%s)
  (cd "$dir" && "${MPIEXEC:-mpirun}" --oversubscribe -np 2 "$MPI_BIN" run "jobs/$job.yaml" $model $small \
    --set sampler.max_steps=2 --set mask.tau=2) >/dev/null 2>"$TMP/$job-run.log"
  check "$job: sdprune-mpi run jobs/$job.yaml in a job folder with stand-ins ($(tail -n 1 "$TMP/$job-run.log"))" \
    bash -c "[ $? -eq 0 ] && [ -s '$dir/runs/$job/mask.h5' ] && [ -s '$dir/runs/$job/pruned.safetensors' ]"
  (cd "$dir" && "$BIN" attack "jobs/$job.yaml" $model $small --set sampler.name=lms --set sampler.guidance= \
    --quiet) >/dev/null 2>"$TMP/$job-attack.log"
  check "$job: sdprune attack jobs/$job.yaml --set sampler.name=lms ... ($(tail -n 1 "$TMP/$job-attack.log"))" [ $? -eq 0 ]
  echo "$job: run + attack $(($(date +%s) - t0)) s"
  check "$job: metrics.h5 holds every model x set of the job, UNet overrides from the job's folder" $PY -c "
import h5py, pandas as pd, re, sys
f = h5py.File('$dir/runs/$job/metrics.h5')
dec = lambda t: pd.DataFrame(f[t][:]).apply(lambda c: c.str.decode('utf-8') if c.dtype == object else c)
models, sets, metrics = dec('models'), dec('sets'), dec('metrics')
job = ''.join(l.split('#')[0] + '\n' for l in open('$dir/jobs/$job.yaml')).split('attack:')[1]  # comments out
want_models = re.findall(r'\{name: ([^,}]+)', job.split('sets:')[0])
want_sets = re.findall(r'- \{name: ([^,}]+)', job.split('sets:')[1])
assert list(models.name) == want_models, (list(models.name), want_models)
assert list(sets.name) == want_sets, (list(sets.name), want_sets)
assert len(metrics) == len(want_models) * len(want_sets), metrics
for m in models.itertuples():
    assert m.unet == '' or m.unet.startswith('jobs/models/'), m.unet
assert (models.unet != '').sum() == 2 and (models['mask'] != '').sum() == 1, models
"
done
finish
