#!/usr/bin/env bash
# Loading benchmark: a workspace of 2,000 packages, each BUILD.star holding
# two targets declared through one `load` of a shared macro file, and
# `berth query //... --output label` timed with hyperfine (release build).
#
# Usage: bench/loading/run.sh [PACKAGES]     (default 2000)
# Environment: BERTH (a berth binary; default: build target/release/berth),
#              WORK (where the workspace goes; default bench/work/loading).
set -euo pipefail

packages="${1:-2000}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="${WORK:-$repo/bench/work/loading}"

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
hyperfine --warmup 2 --runs 10 --export-markdown "$work/result.md" \
    "$BERTH query //... --output label"
