#!/usr/bin/env bash
# The engine benchmark: a no-op rebuild of a generated workspace (200 images
# from 2,000 source files, ~500 MB) must take under 0.25 s of wall time with
# a release build, and touching one source file must rebuild only the
# actions downstream of it.
#
# Usage: bench/engine/run.sh [WORKDIR]     (default /tmp/berth-bench-engine)
# Needs: python3, hyperfine, a release build (`cargo build --release`).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$repo/target/release/berth}
work=${1:-/tmp/berth-bench-engine}
images=${IMAGES:-200}
files_per_image=${FILES_PER_IMAGE:-10}
total_mb=${TOTAL_MB:-500}
target_seconds=0.25

[ -x "$berth" ] || { echo "error: $berth not found; run \`cargo build --release\` first" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "error: hyperfine not installed" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
python3 "$repo/bench/engine/gen.py" "$work/ws" --images "$images" \
    --files-per-image "$files_per_image" --total-mb "$total_mb"
export BERTH_CACHE_DIR="$work/cache"
cd "$work/ws"

echo "== cold build ($images images, $((images * files_per_image)) files, ${total_mb} MB)" >&2
/usr/bin/time -f "cold build: %e s wall, %M KB max RSS" "$berth" --console plain build //... >/dev/null 2>"$work/cold.log" \
    || { cat "$work/cold.log" >&2; exit 1; }
tail -n 2 "$work/cold.log" >&2

echo "== no-op rebuild" >&2
# Every timed run must be a no-op: the first warmup also lets the file-digest
# memo settle for files written within its racy window.
hyperfine --warmup 3 --runs 20 --export-json "$work/noop.json" \
    "$berth --console none build //..."
read -r mean cpu < <(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(r['mean'], r['user'] + r['system'])" "$work/noop.json")
"$berth" --console plain build //... >/dev/null 2>"$work/noop.log"
grep -q " 0 ran," "$work/noop.log" || { echo "error: the no-op rebuild ran actions:" >&2; cat "$work/noop.log" >&2; exit 1; }

echo "== touch one file" >&2
printf 'touched\n' >> "$work/ws/svc007/src/file00.bin"
"$berth" --console plain build //... >/dev/null 2>"$work/touch.log"
ran=$(grep -c '^ran ' "$work/touch.log" || true)
foreign=$(grep '^ran ' "$work/touch.log" | grep -v ' //svc007:' || true)
cat "$work/touch.log" >&2
if [ -n "$foreign" ] || [ "$ran" -eq 0 ]; then
    echo "error: touching svc007/src/file00.bin must rebuild svc007's actions only" >&2
    exit 1
fi

python3 - "$mean" "$target_seconds" "$ran" "$cpu" <<'PY'
import os, sys
mean, target, ran, cpu = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
print(f"no-op rebuild: {mean * 1000:.0f} ms mean wall, {cpu * 1000:.0f} ms CPU (user+sys), "
      f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
      f"(target < {target * 1000:.0f} ms wall): {'PASS' if mean < target else 'FAIL'}")
print(f"touch one file: {ran} actions ran, all downstream of it: PASS")
sys.exit(0 if mean < target else 1)
PY
