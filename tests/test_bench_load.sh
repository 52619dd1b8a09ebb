#!/usr/bin/env bash
# sdprune bench --background-load N: the node line names the load and the OpenMP wait policy, the busy
# child runs at nice 19 in a session of its own while bench runs, and nothing of it is left at exit;
# the default wait policy (core/omp_env.c) is applied once and a user's own setting is kept.
source "$(dirname "$0")/testlib.sh"

env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$BIN" bench --arch tiny-sd1 --latent 8x8 --repeat 1 --no-weights-cache \
  --cache-dir "$TMP/bench" --background-load 2 > "$TMP/load.txt" 2>&1 &
bench_pid=$!
child=""
for _ in $(seq 1 200); do # the child appears once bench has parsed its options
  child=$(pgrep -P "$bench_pid" | head -n 1 || true)
  [ -n "$child" ] && break
  sleep 0.05
done
check "load: a child process while bench runs" test -n "$child"
if [ -n "$child" ]; then
  check "load: the child at nice 19" test "$(ps -o ni= -p "$child" | tr -d ' ')" = 19
  check "load: the child in a session of its own" test "$(ps -o sid= -p "$child" | tr -d ' ')" = "$child"
fi
wait "$bench_pid"
check "load: bench exit 0" test $? -eq 0
check "load: node line names the load" grep -q "^node: .*background load: 2 busy threads at nice 19" "$TMP/load.txt"
check "load: sdprune's default wait policy" grep -q "OpenMP wait: GOMP_SPINCOUNT=[0-9]* (sdprune default)" "$TMP/load.txt"
check "load: the child is gone after exit" bash -c "[ -z '$child' ] || ! kill -0 '$child' 2>/dev/null"
check "load: a row for the shape" grep -Eq '^8x8 +2 ' "$TMP/load.txt"

OMP_WAIT_POLICY=passive "$BIN" bench --arch tiny-sd1 --latent 8x8 --repeat 1 --no-weights-cache --cache-dir "$TMP/bench" \
  > "$TMP/user.txt" 2>&1
check "wait: the user's OMP_WAIT_POLICY kept" grep -q "OpenMP wait: OMP_WAIT_POLICY=passive (user)" "$TMP/user.txt"
"$BIN" bench --background-load -1 > "$TMP/bad.txt" 2>&1
check "load: a negative count is refused with status 2" test $? -eq 2
finish
