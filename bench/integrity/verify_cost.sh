#!/usr/bin/env bash
# What verification before publishing costs: a cold build of the examples
# (fresh cache, release binary) and a no-op build after it, timed; then
# `verify_cost` times the verification itself with berth's own function over
# what that build published (every blob: the cold build's cost; manifests
# and indexes only: the no-op build's).
#
# Usage: bench/integrity/verify_cost.sh [WORKDIR]   (env: RUNS=5 no-op builds,
#        NO_BUILD=1 to use the release binaries already built)
# Needs what the examples need (root, runc, the .deb bases in third_party).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/bench/common.sh"
work=${1:-/tmp/berth-bench-verify}
runs=${RUNS:-5}
cd "$repo"
[ "${NO_BUILD:-0}" = 1 ] || nice -n 10 cargo build --release --bin berth --example verify_cost 2>&1 | tail -1
target=${CARGO_TARGET_DIR:-$repo/target}
berth=$target/release/berth
bench_header "$repo" "$berth"

rm -rf "$work"
mkdir -p "$work/ws"
cp "$repo/WORKSPACE.star" "$work/ws/"
cp -a "$repo/examples" "$repo/third_party" "$repo/tools" "$work/ws/"
rm -rf "$work/ws/examples/"*/berth-out
export BERTH_CACHE_DIR=$work/cache
cd "$work/ws"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
start=$(ms)
"$berth" --console none build //examples/... >/dev/null 2>"$work/cold.log" || { cat "$work/cold.log" >&2; exit 1; }
cold=$(( $(ms) - start ))
echo "cold build of //examples/...: $cold ms"
noops=()
for _ in $(seq "$runs"); do
    start=$(ms)
    "$berth" --console none build //examples/... >/dev/null 2>>"$work/noop.log"
    noops+=($(( $(ms) - start )))
done
echo "no-op builds: ${noops[*]} ms"
"$target/release/examples/verify_cost" "$BERTH_CACHE_DIR" "$work/ws/berth-out" | tee "$work/verify.txt"
verify=$(awk '/^published blobs/ { print $(NF-1) }' "$work/verify.txt")
awk -v v="$verify" -v c="$cold" 'BEGIN { printf "verification share of the cold build: %.2f%%\n", 100 * v / c }'
bench_load
