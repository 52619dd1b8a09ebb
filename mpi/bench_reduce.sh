#!/usr/bin/env bash
# Benchmark (not a test) of the offline reduce at full size: writes N synthetic rank shards of an SD-1.5
# job (16 ff layers of width 1280/2560/5120, pndm 50 steps = 51 recorded evaluations, 3 sets; see
# mpi/bench_shards.c), evicts them from the page cache (fsync + POSIX_FADV_DONTNEED, checked with
# fincore), times `sdprune reduce`, and measures the disk's sequential read rate in the same run on a
# fresh file of the same total size read with O_DIRECT (dd iflag=direct). Prints shards/s, GB/s and the
# share of the disk rate; the shard and per-item record sizes; removes everything it wrote.
# Usage: mpi/bench_reduce.sh [BUILD_DIR=build] [N_SHARDS=8] [ROWS_PER_SET=50]   (TMPDIR picks the disk)
set -euo pipefail
build=${1:-build}
n=${2:-8}
rows=${3:-50}
dir=$(mktemp -d "${TMPDIR:-/tmp}/sdprune-bench-reduce.XXXXXX")
trap 'rm -rf "$dir"' EXIT
evict() { # drop the named files' pages from the page cache (clean pages: fsync first)
  /usr/bin/python3 - "$@" <<'PY'
import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
PY
}
cached_mb() { fincore -b -n -o RES "$@" 2>/dev/null | awk '{s += $1} END {printf "%.0f", s / 1000000}'; }

"$build/sdprune-bench-shards" "$dir" "$n" "$rows" --record "$dir/record.h5"
shard_bytes=$(stat -c %s "$dir"/shards/rank-*.h5 | awk '{s += $1} END {printf "%d", s}')
per_shard=$((shard_bytes / n))
record_bytes=$(stat -c %s "$dir/record.h5")
rm -f "$dir/record.h5"

# the disk: a fresh file as large as the shards, written, evicted, read with O_DIRECT
dd if=/dev/urandom of="$dir/disk.bin" bs=16M count=$(((shard_bytes + 16777215) / 16777216)) status=none
evict "$dir/disk.bin"
t0=$(date +%s.%N)
dd if="$dir/disk.bin" of=/dev/null bs=16M iflag=direct status=none
t1=$(date +%s.%N)
disk_bytes=$(stat -c %s "$dir/disk.bin")
rm -f "$dir/disk.bin"
disk_gbs=$(echo "$disk_bytes / ($t1 - $t0) / 1000000000" | bc -l)

evict "$dir"/shards/rank-*.h5
before=$(cached_mb "$dir"/shards/rank-*.h5)
t0=$(date +%s.%N)
"$build/sdprune" reduce "$dir" --out "$dir/stats.h5" --quiet
t1=$(date +%s.%N)
cold=$(echo "$t1 - $t0" | bc -l)
# one shard alone, evicted again: the fixed cost (writing and compressing the result) apart from the
# per-shard cost, which is what grows with the rank count
evict "$dir"/shards/rank-*.h5
first=$(ls "$dir"/shards/rank-*.h5 | head -1)
t0=$(date +%s.%N)
"$build/sdprune" reduce "$first" --out "$dir/stats1.h5" --quiet 2>/dev/null || true
t1=$(date +%s.%N)
one=$(echo "$t1 - $t0" | bc -l)
t0=$(date +%s.%N) # again with the shards in the page cache: what the reduce itself costs
"$build/sdprune" reduce "$dir" --out "$dir/stats2.h5" --quiet
t1=$(date +%s.%N)
warm=$(echo "$t1 - $t0" | bc -l)

printf 'shards: %d x %.1f MB (%.2f GB), %d items; per-item record %.1f MB\n' "$n" "$(echo "$per_shard / 1000000" | bc -l)" \
  "$(echo "$shard_bytes / 1000000000" | bc -l)" "$((rows * 3))" "$(echo "$record_bytes / 1000000" | bc -l)"
printf 'disk: sequential read %.2f GB/s (O_DIRECT, %.2f GB fresh file)\n' "$disk_gbs" "$(echo "$disk_bytes / 1000000000" | bc -l)"
printf 'reduce, shards evicted (%s MB cached before): %.1f s, %.3f shards/s, %.3f GB/s = %.1f%% of the disk rate\n' \
  "$before" "$cold" "$(echo "$n / $cold" | bc -l)" "$(echo "$shard_bytes / $cold / 1000000000" | bc -l)" \
  "$(echo "100 * $shard_bytes / $cold / 1000000000 / $disk_gbs" | bc -l)"
printf 'reduce, shards cached: %.1f s, %.3f shards/s, %.3f GB/s\n' "$warm" "$(echo "$n / $warm" | bc -l)" \
  "$(echo "$shard_bytes / $warm / 1000000000" | bc -l)"
marginal=$(echo "($n - 1) * $per_shard / ($cold - $one) / 1000000000" | bc -l)
printf 'reduce of 1 shard (evicted): %.1f s; per additional shard %.2f s: %.3f GB/s = %.1f%% of the disk rate (the rate N ranks approach)\n' \
  "$one" "$(echo "($cold - $one) / ($n - 1)" | bc -l)" "$marginal" "$(echo "100 * $marginal / $disk_gbs" | bc -l)"
