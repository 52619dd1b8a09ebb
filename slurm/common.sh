# shellcheck shell=bash
# Shared by the stage scripts slurm/*.sbatch (sourced inside the allocation, never run): where the
# binaries are, threads per rank, the MPI launcher, the array-sweep settings and the self-requeue
# before the time limit. Not the chaining of stages: that is slurm/submit.
#
# Environment (slurm/submit sets it; when a stage script is sbatch'ed by hand the defaults apply):
#   SDPRUNE_ROOT      the repository (default: the submit folder)
#   SDPRUNE_BUILD     folder with sdprune and sdprune-mpi (default: $SDPRUNE_ROOT/build)
#   SDPRUNE_LAUNCHER  srun (default: srun --mpi=pmix, see slurm/README.md) or mpirun
#   SDPRUNE_SRUN_MPI  srun's --mpi plugin (default pmix)
#   SDPRUNE_SWEEP     the sweep's tasks file (OUT/sweep/tasks.tsv); read by array tasks only

SDPRUNE_ROOT=${SDPRUNE_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
SDPRUNE_BUILD=${SDPRUNE_BUILD:-$SDPRUNE_ROOT/build}
SDPRUNE_LAUNCHER=${SDPRUNE_LAUNCHER:-srun}
SDPRUNE_SRUN_MPI=${SDPRUNE_SRUN_MPI:-pmix}
SDPRUNE_BIN=$SDPRUNE_BUILD/sdprune
SDPRUNE_MPI_BIN=$SDPRUNE_BUILD/sdprune-mpi

# Threads per rank: the engine reads SLURM_CPUS_PER_TASK itself; OpenMP and OpenBLAS outside it (and
# mpirun's ranks, which do not see srun's per-step value) get the same number.
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${OMP_NUM_THREADS:-1}}

stage_log() { echo "[$(date '+%F %T')] ${SLURM_JOB_NAME:-sdprune}: $*" >&2; }

stage_start() {
  local what=$1
  for b in "$SDPRUNE_BIN" "$SDPRUNE_MPI_BIN"; do
    [ -x "$b" ] || { stage_log "no executable $b (set SDPRUNE_BUILD)"; exit 2; }
  done
  stage_log "$what: job ${SLURM_JOB_ID:-?}${SLURM_ARRAY_TASK_ID:+ array task $SLURM_ARRAY_TASK_ID}" \
    "restart ${SLURM_RESTART_COUNT:-0}, ${SLURM_JOB_NUM_NODES:-1} node(s) ${SLURM_JOB_NODELIST:-}," \
    "${SLURM_NTASKS:-1} rank(s) x ${OMP_NUM_THREADS} thread(s), launcher $SDPRUNE_LAUNCHER"
}

# sweep_args: in an array task, the extra arguments of its line in $SDPRUNE_SWEEP
# ("INDEX<TAB>DIR<TAB>KEY=VALUE[<TAB>KEY=VALUE...]"): --set KEY=VALUE ... --out DIR. Sets SWEEP_DIR.
SWEEP_ARGS=()
SWEEP_DIR=
sweep_args() {
  [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && [ -n "${SDPRUNE_SWEEP:-}" ] || return 0
  local line
  line=$(awk -F'\t' -v i="$SLURM_ARRAY_TASK_ID" '$1 == i' "$SDPRUNE_SWEEP")
  [ -n "$line" ] || { stage_log "array task $SLURM_ARRAY_TASK_ID has no line in $SDPRUNE_SWEEP"; exit 2; }
  local fields
  IFS=$'\t' read -r -a fields <<<"$line"
  SWEEP_DIR=${fields[1]}
  local kv
  for kv in "${fields[@]:2}"; do SWEEP_ARGS+=(--set "$kv"); done
  SWEEP_ARGS+=(--out "$SWEEP_DIR")
  stage_log "sweep task $SLURM_ARRAY_TASK_ID: ${fields[*]:2} -> $SWEEP_DIR"
}

# The output folder an argument list names: the last --out (what sdprune-mpi takes).
out_of() {
  local out='' prev=''
  for a in "$@"; do
    [ "$prev" = --out ] && out=$a
    prev=$a
  done
  echo "$out"
}

# Self-requeue before the time limit: slurm/submit --requeue asks Slurm for SIGUSR1 to this script a
# few minutes before the limit (--signal=B:USR1@SECONDS). The ranks are then told to stop (SIGTERM:
# sdprune-mpi finishes the item in hand and writes its shard), and the job is put back in the queue with
# the same id, so the stages that depend on it keep waiting and its rerun resumes.
REQUEUE_ASKED=0
LAUNCH_PID=
on_usr1() {
  REQUEUE_ASKED=1
  stage_log "SIGUSR1 (time limit near): stopping the ranks after their current item, then requeueing"
  [ -n "$LAUNCH_PID" ] || return 0
  if [ "$SDPRUNE_LAUNCHER" = srun ]; then
    # To the ranks themselves: srun answers a SIGTERM of its own by killing its step outright.
    scancel --signal=TERM "$SLURM_JOB_ID"
  else
    kill -TERM "$LAUNCH_PID" 2>/dev/null # mpirun passes it on, then kills the ranks that outlive it
  fi
}
trap on_usr1 USR1

# launch ARGS...: runs ARGS over the allocation's ranks, in the background so that the trap above can
# act while it runs; returns its exit status.
launch() {
  local cmd
  case "$SDPRUNE_LAUNCHER" in
  srun)
    # srun does not take --cpus-per-task from the batch allocation since Slurm 22.05: pass it on.
    cmd=(srun --mpi="$SDPRUNE_SRUN_MPI" --kill-on-bad-exit=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}") ;;
  mpirun)
    # Open MPI reads the allocation itself (ras/plm slurm: its daemons are started with srun). Binding
    # off: each rank's OpenMP threads need all of its cpus, which mpirun's default (a core) would deny.
    cmd=(mpirun -np "${SLURM_NTASKS:-1}" --bind-to none -x OMP_NUM_THREADS -x SLURM_CPUS_PER_TASK)
    if [ "$(id -u)" -eq 0 ]; then
      export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi ;;
  *)
    stage_log "unknown SDPRUNE_LAUNCHER '$SDPRUNE_LAUNCHER' (srun or mpirun)"
    return 2 ;;
  esac
  stage_log "${cmd[*]} $*"
  "${cmd[@]}" "$@" &
  LAUNCH_PID=$!
  local rc
  while :; do
    wait "$LAUNCH_PID"
    rc=$?
    # wait returns early (status > 128) when a trapped signal arrives; the launcher is still running.
    kill -0 "$LAUNCH_PID" 2>/dev/null || break
  done
  LAUNCH_PID=
  if [ "$REQUEUE_ASKED" -eq 1 ]; then
    stage_log "requeueing job ${SLURM_JOB_ID} (the rerun resumes from the shards)"
    if scontrol requeue "$SLURM_JOB_ID"; then
      sleep 300 # the requeue ends this script: a stopped stage must not end as a success or failure
    fi
    stage_log "scontrol requeue failed (a job submitted without --requeue cannot be requeued)"
  fi
  return "$rc"
}
