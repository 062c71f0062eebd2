#!/usr/bin/env bash
# The engine benchmark: a no-op rebuild of a generated workspace (200 images
# from 2,000 source files, ~500 MB) must take under 0.25 s of wall time with
# a release build, and touching one source file must rerun exactly the
# actions downstream of it (the script lists the actions that ran from
# `--console plain` and compares them with that set, and checks that
# `berth explain` names the file; it exits non-zero otherwise).
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

# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"

[ -x "$berth" ] || { echo "error: $berth not found; run \`cargo build --release\` first" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "error: hyperfine not installed" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
python3 "$repo/bench/engine/gen.py" "$work/ws" --images "$images" \
    --files-per-image "$files_per_image" --total-mb "$total_mb"
export BERTH_CACHE_DIR="$work/cache"
cd "$work/ws"

bench_header "$repo" "$berth"
echo "== cold build ($images images, $((images * files_per_image)) files, ${total_mb} MB)" >&2
/usr/bin/time -f "cold build: %e s wall, %M KB max RSS" "$berth" --console plain build //... >/dev/null 2>"$work/cold.log" \
    || { cat "$work/cold.log" >&2; exit 1; }
tail -n 2 "$work/cold.log" >&2

echo "== no-op rebuild" >&2
bench_load
# Every timed run must be a no-op: the first warmup also lets the file-digest
# memo settle for files written within its racy window.
hyperfine --warmup 3 --runs 20 --export-json "$work/noop.json" \
    "$berth --console none build //..."
read -r mean cpu < <(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(r['mean'], r['user'] + r['system'])" "$work/noop.json")
"$berth" --console plain build //... >/dev/null 2>"$work/noop.log"
grep -q " 0 ran," "$work/noop.log" || { echo "error: the no-op rebuild ran actions:" >&2; cat "$work/noop.log" >&2; exit 1; }

echo "== touch one file" >&2
# Exactly the actions downstream of svc007/src/file00.bin must run: the
# layer that packs it and the config and manifest of the image holding that
# layer. Every other action must be a cache hit.
touched=svc007/src/file00.bin
expected=$(printf '%s\n' "//svc007:files pack_layer" "//svc007:image write_config" "//svc007:image write_manifest")
printf 'touched\n' >> "$work/ws/$touched"
"$berth" -v --console plain build //... >/dev/null 2>"$work/touch.log"
grep -v '^cached ' "$work/touch.log" >&2
ran_set=$(awk '$1 == "ran" { print $2, $3 }' "$work/touch.log" | LC_ALL=C sort)
ran=$(printf '%s\n' "$ran_set" | grep -c . || true)
total=$(sed -nE 's/^([0-9]+) actions:.*/\1/p' "$work/touch.log")
cached=$(awk '$1 == "cached"' "$work/touch.log" | wc -l)
if [ "$ran_set" != "$expected" ]; then
    echo "error: touching $touched must rerun exactly these actions:" >&2
    sed 's/^/  /' <<<"$expected" >&2
    echo "but these ran:" >&2
    sed 's/^/  /' <<<"$ran_set" >&2
    exit 1
fi
if [ "$cached" -ne $((total - ran)) ] || ! grep -q "^$total actions: $ran ran, $cached cached" "$work/touch.log"; then
    echo "error: $total actions, $ran ran, but $cached reported cached" >&2
    exit 1
fi
# berth explain must give the touched file as the reason the layer reran.
"$berth" explain //svc007:files >"$work/explain.txt"
cat "$work/explain.txt" >&2
grep -q "source file \`$touched\` changed" "$work/explain.txt" \
    || { echo "error: berth explain does not name $touched as the reason //svc007:files reran" >&2; exit 1; }

python3 - "$mean" "$target_seconds" "$ran" "$cpu" "$cached" <<'PY'
import os, sys
mean, target, ran, cpu, cached = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
print(f"no-op rebuild: {mean * 1000:.0f} ms mean wall, {cpu * 1000:.0f} ms CPU (user+sys), "
      f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
      f"(target < {target * 1000:.0f} ms wall): {'PASS' if mean < target else 'FAIL'}")
print(f"touch one file: exactly the {ran} downstream actions ran, the other {cached} were cached: PASS")
sys.exit(0 if mean < target else 1)
PY
