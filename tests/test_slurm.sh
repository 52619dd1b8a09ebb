#!/usr/bin/env bash
# slurm/ on a real Slurm: starts munged, slurmctld and slurmd of its own (Debian's slurm-wlm and munge,
# a generated one-node config with 2 CPUs and this machine's hostname, state and spool in a temporary
# folder, as root), submits the demo pipeline with slurm/submit (small settings) and checks every
# stage's outputs, then a mask sweep as an array job, then resume: a running stats job is requeued (as
# a preemption does), told it nears its time limit (the SIGUSR1 of --signal=B:USR1@S: it requeues itself),
# cancelled with scancel and resubmitted, each run continuing from the shards of the one before.
# Skips (77) with a message without root, the packages or working daemons; never under CI=true, where
# each of those reasons fails the test instead (CI installs slurm-wlm and munge through scripts/deps.sh).
# Stops every daemon it started on exit. Label `slurm` (ctest -L slurm); 2-4 minutes on 2 loaded cores.
. "$(dirname "$0")/testlib.sh"
SRC=${SDPRUNE_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
BUILD=$(cd "$(dirname "$BIN")" && pwd)
PY=/usr/bin/python3 # Debian's, with python3-h5py

skip() {
  if [ "${CI:-}" = true ]; then
    echo "FAIL: CI=true and the Slurm test cannot run: $*"
    exit 1
  fi
  echo "SKIP: $*"
  exit 77
}
[ "$(id -u)" -eq 0 ] || skip "the Slurm test runs munged, slurmctld and slurmd as root"
for c in munged mungekey slurmctld slurmd sbatch squeue scontrol scancel srun; do
  command -v "$c" >/dev/null || skip "no $c: apt-get install slurm-wlm munge"
done
[ -x "$BUILD/sdprune-mpi" ] || skip "no $BUILD/sdprune-mpi (built without SDPRUNE_BUILD_MPI)"

# A Slurm session of the caller must not leak into ours.
for v in $(compgen -v SLURM_); do unset "$v"; done
host=$(hostname -s)
chmod 755 "$TMP"
mkdir -p "$TMP/munge" "$TMP/etc" "$TMP/state" "$TMP/spool" "$TMP/log" "$TMP/synth"
chmod 700 "$TMP/etc"
export SLURM_CONF=$TMP/slurm.conf SDPRUNE_SYNTH_CACHE=$TMP/synth

pids=()
stop_daemons() {
  if [ ${#pids[@]} -gt 0 ]; then
    scancel --quiet --user=root 2>/dev/null # our controller's jobs: their steps end with them
    for _ in $(seq 1 40); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null; done
    for p in "${pids[@]}"; do
      for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    done
    pids=()
  fi
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap stop_daemons EXIT
trap 'exit 130' INT TERM

daemon_logs() { tail -n 5 "$TMP"/log/*.log "$TMP"/log/*.out 2>/dev/null | sed 's/^/  /'; }

# Two free TCP ports next to each other (slurmctld, slurmd).
port=
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 30000))
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
  (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null && continue
  port=$p
  break
done
[ -n "$port" ] || skip "no free TCP port pair found"

mungekey -c -k "$TMP/etc/munge.key" 2>"$TMP/log/mungekey.out" || skip "mungekey failed: $(cat "$TMP/log/mungekey.out")"
munged -F -f --socket="$TMP/munge/munge.socket" --key-file="$TMP/etc/munge.key" --pid-file="$TMP/munge/munged.pid" \
  --seed-file="$TMP/etc/munged.seed" --log-file="$TMP/log/munged.log" >"$TMP/log/munged.out" 2>&1 &
pids+=($!)

# cred_expire: a requeued job waits cred_expire + 1 s before it may start again (120 s by default).
cat >"$SLURM_CONF" <<EOF
ClusterName=sdprune-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$TMP/munge/munge.socket,cred_expire=10
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/log/slurmctld.log
SlurmdLogFile=$TMP/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$TMP/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=sched_interval=2,bf_interval=1
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=30
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
for _ in $(seq 1 20); do [ -S "$TMP/munge/munge.socket" ] && break; sleep 0.25; done
munge -S "$TMP/munge/munge.socket" -n </dev/null | unmunge -S "$TMP/munge/munge.socket" >/dev/null 2>&1 ||
  skip "munged does not answer: $(daemon_logs)"
slurmctld -D -i -f "$SLURM_CONF" >"$TMP/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$TMP/log/slurmd.out" 2>&1 &
pids+=($!)
ok=0
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null)
  [ "$state" = idle ] && ok=1 && break
  sleep 0.5
done
[ "$ok" -eq 1 ] || skip "slurmctld + slurmd did not bring node $host up (state '${state:-none}'):
$(daemon_logs)"
# Should this shell be killed outright (SIGKILL from a ctest timeout: no trap runs), a watcher cancels
# the jobs and stops the daemons (its copy of pids is theirs); the trap stops it with them.
(
  trap - EXIT
  while kill -0 $$ 2>/dev/null; do sleep 2; done
  stop_daemons
) </dev/null >/dev/null 2>&1 &
pids=($! "${pids[@]}")
echo "slurm: munged, slurmctld (port $port), slurmd up on $host; srun --mpi=list: $(srun --mpi=list 2>&1 | sed -n '2,$p' | tr -d '\t' | tr '\n' ' ')"

# --- helpers ------------------------------------------------------------------------------------------
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0)) s"; }
# The final jobcomp record of a job or of every task of an array job: JobState ExitCode, one a line.
final_states() {
  local id=$1
  awk -v id="$id" '{ j = ""; a = ""; t = ""; s = ""; e = "";
      for (i = 1; i <= NF; i++) { split($i, kv, "=");
        if (kv[1] == "JobId") j = kv[2]; else if (kv[1] == "ArrayJobId") a = kv[2];
        else if (kv[1] == "ArrayTaskId") t = kv[2]; else if (kv[1] == "JobState") s = kv[2];
        else if (kv[1] == "ExitCode") e = kv[2] }
      if (j == id || a == id) last[(a == id ? "task" t : "job")] = s " " e }
    END { for (k in last) print last[k] }' "$TMP/jobcomp.txt" 2>/dev/null
}
all_completed() { # IDS...: every job's (every task's) last record COMPLETED 0:0
  local id st
  for id in "$@"; do
    st=$(final_states "$id")
    [ -n "$st" ] && ! echo "$st" | grep -qv '^COMPLETED 0:0$' || return 1
  done
}
wait_gone() { # TIMEOUT IDS...: until squeue lists none of them
  local limit=$1
  shift
  local end=$(($(date +%s) + limit)) list
  list=$(IFS=,; echo "$*")
  while [ "$(date +%s)" -lt "$end" ]; do
    [ -z "$(squeue -h -o %i -j "$list" 2>/dev/null)" ] && return 0
    sleep 1
  done
  echo "still queued after $limit s: $(squeue -h -j "$list" 2>&1 | tr '\n' ';')" >&2
  return 1
}
wait_for() { # TIMEOUT CMD...: until CMD succeeds
  local limit=$1
  shift
  local end=$(($(date +%s) + limit))
  while [ "$(date +%s)" -lt "$end" ]; do
    "$@" && return 0
    sleep 0.3
  done
  return 1
}
small=(--set sampler.steps=4 --set sampler.max_steps=2 --set mask.tau=2)
submit() { (cd "$SRC" && slurm/submit --build "$BUILD" --parsable "$@"); }

# --- the demo pipeline: stats -> reduce + mask + apply -> attack -> report --------------------------
OUT=$TMP/demo
ids=$(submit jobs/demo-synth.yaml --out "$OUT" --nodes 1 --ntasks-per-node 2 --cpus-per-task 1 "${small[@]}" 2>"$TMP/submit.err")
check "slurm/submit jobs/demo-synth.yaml submits 4 stages ($(cat "$TMP/submit.err"))" [ "$(echo "$ids" | tr ',' '\n' | grep -c '^[0-9]*$')" -eq 4 ]
IFS=, read -r id_stats id_mask id_attack id_report <<<"$ids"
IFS=, read -r -a id_list <<<"$ids"
check "the mask stage waits for stats (afterok)" bash -c "scontrol show job $id_mask | grep -q 'Dependency=afterok:${id_stats}'"
wait_gone 600 "${id_list[@]}"
check "... the 4 stages end COMPLETED 0:0 ($(for i in "${id_list[@]}"; do echo -n "$i: $(final_states "$i" | tr '\n' ' ') "; done))" \
  all_completed "${id_list[@]}"
for f in stats.h5 mask.h5 pruned.safetensors pruned.restore.h5 metrics.h5 summary.md grids/base/demo.png grids/base+mask/demo.png; do
  check "... leaves $f" [ -s "$OUT/$f" ]
done
log=$OUT/slurm/stats-$id_stats.log
check "the stats stage ran srun --mpi=pmix with one MPI world of 2 ranks (not 2 singletons)" \
  bash -c "grep -q 'srun --mpi=pmix' '$log' && grep -q 'ranks x 1 threads' '$log' && grep -q '2 ranks x 1 threads' '$log'"
check "... over all 12 items" grep -q '12 items done, 0 failed, 0 done before, 0 not done' "$log"
check "the attack stage judged 8 items on 2 ranks" grep -q '8 items (8 run now, 0 failed in all).*on 2 ranks' "$OUT/slurm/attack-$id_attack.log"
check "the report stage printed the summary table" grep -q '| base+mask | demo |' "$OUT/slurm/report-$id_report.log"
if [ -f "$SRC/analysis/report.py" ]; then
  check "... and ran analysis/report.py (PNGs in plots/)" bash -c "ls '$OUT'/plots/*.png >/dev/null 2>&1 || ls '$OUT'/plots/*/*.png >/dev/null 2>&1"
fi
check "the stages ran in order (each started after the one before ended)" "$PY" -c "
import re, sys
ids = '$ids'.split(',')
rec = {}
for line in open('$TMP/jobcomp.txt'):
    f = dict(kv.split('=', 1) for kv in line.split() if '=' in kv)
    rec[f['JobId']] = (f['StartTime'], f['EndTime'])
sys.exit(0 if all(rec[b][0] >= rec[a][1] for a, b in zip(ids, ids[1:])) else 1)"
echo "slurm: pipeline done at $(elapsed)"

# --- a sweep: one mask array task per ratio, from the same statistics --------------------------------
ids=$(submit jobs/demo-synth.yaml --out "$OUT" --stages mask --sweep mask.ratio=0.02,0.05 "${small[@]}" 2>"$TMP/submit.err")
check "slurm/submit --sweep mask.ratio=0.02,0.05 submits one array job ($(cat "$TMP/submit.err"))" bash -c "[[ '$ids' =~ ^[0-9]+$ ]]"
wait_gone 300 "$ids"
check "... both array tasks COMPLETED 0:0 ($(final_states "$ids" | tr '\n' ' '))" \
  bash -c "[ \$(echo '$(final_states "$ids")' | grep -c '^COMPLETED 0:0$') -eq 2 ]"
check "... each task's mask.h5 in OUT/sweep/mask.ratio-R with its ratio, from the shared stats.h5" "$PY" -c "
import h5py, json, os
sp = []
for r in (0.02, 0.05):
    d = '$OUT/sweep/mask.ratio-%g' % r
    assert os.path.realpath(d + '/stats.h5') == os.path.realpath('$OUT/stats.h5')
    with h5py.File(d + '/mask.h5') as f:
        assert json.loads(f.attrs['params'])['ratio'] == r, dict(f.attrs)
        sp.append(float(f.attrs['sparsity']))
    assert os.path.getsize(d + '/pruned.safetensors') > 0
assert sp[0] < sp[1], sp"
echo "slurm: sweep done at $(elapsed)"

# --- resume: requeue (preemption), SIGUSR1 before the time limit, scancel + resubmit -----------------
ROUT=$TMP/resume
resume_args=(jobs/demo-synth.yaml --out "$ROUT" --stages 'stats,mask' --requeue --ntasks-per-node 2 "${small[@]}"
  --set 'seeds.range=[0,3]' -- --progress-every 1)
ids=$(submit "${resume_args[@]}" 2>"$TMP/submit.err")
IFS=, read -r rs rm_ <<<"$ids"
check "a 48-item stats + mask chain with --requeue is submitted ($(cat "$TMP/submit.err"))" bash -c "[ -n '$rs' ] && [ -n '$rm_' ]"
check "... the stats job is requeueable" bash -c "scontrol show job $rs | grep -q 'Requeue=1'"
rlog() { echo "$ROUT/slurm/stats-$1.log"; }
# the text of run K (restart K) of job ID's log
segment() { awk -v k="restart $2," 'index($0, k) { s = 1; buf = "" } s { buf = buf $0 "\n" } END { printf "%s", buf }' "$(rlog "$1")" 2>/dev/null; }
# run K of job ID has completed at least one item in this run
progressed() { segment "$1" "$2" | grep -qE '^items [1-9][0-9]*/'; }
done_before() { segment "$1" "$2" | sed -n 's/.*items (\([0-9]*\) already done in.*/\1/p' | head -n 1; }

check "run 0 starts and completes items" wait_for 120 progressed "$rs" 0
scontrol requeue "$rs"
check "after scontrol requeue (a preemption) the job runs again (restart 1) and completes items" wait_for 120 progressed "$rs" 1
scancel --signal=USR1 --batch "$rs" # what --signal=B:USR1@S delivers S seconds before the time limit
check "after SIGUSR1 the job requeued itself (restart 2) and completes items" wait_for 120 progressed "$rs" 2
check "... run 1 stopped its ranks after their items, then requeued" \
  bash -c "grep -q 'SIGUSR1 (time limit near)' '$(rlog "$rs")' && grep -q 'requeueing job $rs' '$(rlog "$rs")'"
scancel "$rs"
wait_gone 120 "$rs" "$rm_"
check "after scancel the stats job ends and its mask stage is removed (kill-on-invalid-dep)" \
  bash -c "[ -z \"\$(squeue -h -j $rs,$rm_ 2>/dev/null)\" ] && [ ! -e '$ROUT/mask.h5' ]"
check "... the mask job's record says CANCELLED ($(final_states "$rm_"))" bash -c "[[ '$(final_states "$rm_")' == CANCELLED* ]]"
check "... the stopped run says how to continue" grep -q 'run the same command again to continue' "$(rlog "$rs")"
ids=$(submit "${resume_args[@]}" 2>"$TMP/submit.err")
IFS=, read -r rs2 rm2 <<<"$ids"
wait_gone 300 "$rs2" "$rm2"
check "the resubmitted chain ends COMPLETED 0:0" all_completed "$rs2" "$rm2"
d1=$(done_before "$rs" 1) d2=$(done_before "$rs" 2) d3=$(done_before "$rs2" 0)
check "each run started from the items of the runs before (done before: ${d1:-?} < ${d2:-?} < ${d3:-?} < 48)" \
  bash -c "[ '${d1:-0}' -gt 0 ] && [ '${d2:-0}' -gt '${d1:-0}' ] && [ '${d3:-0}' -gt '${d2:-0}' ] && [ '${d3:-48}' -lt 48 ]"
check "... the last one computed only the rest and reduced all 48 items" \
  grep -qE "sdprune-mpi: $((48 - ${d3:-0})) items done, 0 failed, ${d3:-x} done before, 0 not done" "$(rlog "$rs2")"
check "... stats.h5 holds 48 done items and the mask stage ran on it" "$PY" -c "
import h5py, sys
with h5py.File('$ROUT/stats.h5') as f:
    st = f['items']['status'][:].tolist()
sys.exit(0 if len(st) == 48 and set(st) == {b'done'} else 1)"
check "... mask.h5 and the pruned checkpoint written" bash -c "[ -s '$ROUT/mask.h5' ] && [ -s '$ROUT/pruned.safetensors' ]"
echo "slurm: resume done at $(elapsed)"

finish
