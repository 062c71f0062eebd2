#!/usr/bin/env bash
# Loading benchmark: a workspace of 2,000 packages, each BUILD.star holding
# two targets declared through one `load` of a shared macro file, timed with
# hyperfine (release build) in two commands that do different work:
#
#   load:                          `berth query //... --output label` (evaluates
#                                  every BUILD.star and its `load`; no analysis)
#   load + analyse + cache check:  a no-op `berth build //...` after a first
#                                  build (evaluates, analyses every target into
#                                  actions, keys each action and finds it in the
#                                  action cache, checks each berth-out/ layout;
#                                  the script checks that no action ran)
#
# Usage: bench/loading/run.sh [PACKAGES]     (default 2000)
# Environment: BERTH (a berth binary; default: build target/release/berth),
#              WORK (where the workspace goes; default bench/work/loading).
set -euo pipefail

packages="${1:-2000}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="${WORK:-$repo/bench/work/loading}"
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"

if [[ -z "${BERTH:-}" ]]; then
    cargo build --release --manifest-path "$repo/Cargo.toml" --bin berth >&2
    BERTH="$repo/target/release/berth"
fi
command -v hyperfine >/dev/null || { echo "SKIP: hyperfine is not installed" >&2; exit 0; }

rm -rf "$work"
mkdir -p "$work/tools"
echo 'workspace(name = "loading_bench")' > "$work/WORKSPACE.star"
touch "$work/tools/BUILD.star"
cat > "$work/tools/defs.star" <<'STAR'
def service(name, srcs, port = 8080):
    """Two targets: the service's files and its image."""
    files(name = name + "_files", srcs = srcs)
    oci_image_build(
        name = name,
        packages = [":" + name + "_files"],
        exposed_ports = [f"{port}/tcp"],
        env = {"SERVICE": name},
    )
STAR
for i in $(seq -w 1 "$packages"); do
    dir="$work/services/group${i:0:2}/svc$i"
    mkdir -p "$dir"
    echo "print('svc$i')" > "$dir/main.py"
    cat > "$dir/BUILD.star" <<STAR
load("//tools:defs.star", "service")

service(name = "svc$i", srcs = ["main.py"], port = 8000)
STAR
done

count="$(cd "$work" && "$BERTH" query //... --output label | wc -l)"
expected=$((packages * 2))
if [[ "$count" -ne "$expected" ]]; then
    echo "error: berth query printed $count labels, expected $expected" >&2
    exit 1
fi
echo "berth query //... prints $count labels for $packages packages" >&2

cd "$work"
export BERTH_CACHE_DIR="$work/.cache"
bench_header "$repo" "$BERTH"
/usr/bin/time -f "first build: %e s wall, %M KB max RSS" "$BERTH" --console plain build //... >/dev/null 2>"$work/first.log" \
    || { cat "$work/first.log" >&2; exit 1; }
grep -E '^[0-9]+ actions:|^first build:' "$work/first.log"
# The timed builds must be no-ops (checked below); the warmups let the
# file-digest memo settle for sources written within its racy window.
bench_load
hyperfine --warmup 3 --runs 10 --export-markdown "$work/result.md" --export-json "$work/result.json" \
    -n "load: berth query //... --output label" "$BERTH query //... --output label" \
    -n "load + analyse + cache check: no-op berth build //..." "$BERTH --console none build //..."
bench_load
"$BERTH" --console plain build //... >/dev/null 2>"$work/noop.log"
summary=$(grep -E '^[0-9]+ actions:' "$work/noop.log")
echo "no-op build: $summary"
[[ "$summary" == *" 0 ran,"* ]] || { echo "error: the no-op build ran actions:" >&2; cat "$work/noop.log" >&2; exit 1; }
cat "$work/result.md"
