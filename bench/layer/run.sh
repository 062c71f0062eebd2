#!/usr/bin/env bash
# Packs one ~500 MB tree of tens of thousands of files into one gzip layer
# with `berth build` (a cold cache, an `oci_layer(srcs = glob(["**"]))`
# image), umoci insert and buildah copy + commit, next to
# `tar | pigz -6 | sha256sum` as the pipeline reference. Also runs the
# `pack_layer` action alone (bench/layer/pack_layer.rs) with all cores and
# with one thread, which must give the same digest. Last, it rebuilds
# `//app:image` (the big layer plus a one-file package) after touching that
# package's file. Prints the median wall time of RUNS runs (default 3; one
# for buildah, nine for the rebuild) and the largest peak memory (GNU time's
# maximum resident set size).
#
# Usage: [RUNS=N] bench/layer/run.sh [SOURCE_DIR]
#   SOURCE_DIR defaults to /usr/lib/google-cloud-sdk/lib (545 MB, 33k files);
#   it is copied into a temp dir first, and the page cache warmed before
#   every run, so every tool reads the same files from memory.
set -euo pipefail

src=${1:-/usr/lib/google-cloud-sdk/lib}
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/var/tmp}/berth-bench.XXXXXX")
cleanup() {
    if [ -n "${container:-}" ]; then buildah rm "$container" >/dev/null 2>&1 || true; fi
    buildah rmi -f berth-bench >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

workspace=$work/workspace
tree=$workspace/tree
mkdir -p "$workspace"
: >"$workspace/WORKSPACE.star"
cp -a "$src" "$tree"
cat >"$tree/BUILD.star" <<'BUILD'
oci_layer(name = "layer", srcs = glob(["**"], exclude = ["BUILD.star"]))

oci_image_build(name = "image", layers = [":layer"])
BUILD
mkdir -p "$workspace/app"
echo hello >"$workspace/app/main.txt"
cat >"$workspace/app/BUILD.star" <<'BUILD'
oci_layer(name = "layer", srcs = ["main.txt"])

oci_image_build(name = "image", layers = ["//tree:layer", ":layer"])
BUILD
files=$(find "$tree" -type f | wc -l)
size=$(du -sm "$tree" | cut -f1)
echo "tree: $size MB, $files files (copy of $src); $(nproc) cores"
# Before each run: flush dirty pages (the tree's copy, the previous run's
# output), so no run pays for another's writeback, and read every file, so
# each run starts from the page cache (some VMs' DAMON reclaim pages idle
# file pages out within seconds).
warm="sync; find '$tree' -type f -exec cat {} + >/dev/null"

(cd "$repo" && cargo build --release --quiet --bin berth --example pack_layer)
berth=$repo/target/release/berth
pack_layer=$repo/target/release/examples/pack_layer

# measure NAME PREPARE COMMAND...: runs the shell snippet PREPARE (fresh
# caches, warm page cache), then COMMAND, $runs times; prints the median wall
# time and the largest peak RSS.
runs=${RUNS:-3}
measure() {
    local name=$1 prepare=$2
    shift 2
    local walls=() rss_max=0 wall rss
    for _ in $(seq "$runs"); do
        sh -c "$prepare"
        /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
            echo "$name failed:" >&2
            cat "$work/err" >&2
            return 1
        }
        read -r wall rss <"$work/time"
        walls+=("$wall")
        if [ "$rss" -gt "$rss_max" ]; then rss_max=$rss; fi
    done
    wall=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")
    printf '%-34s %9.2f %9d   (%s)\n' "$name" "$wall" $((rss_max / 1024)) "${walls[*]}"
}

echo "median of $runs runs each, page cache warm"
printf '%-34s %9s %9s\n' tool "wall (s)" "peak MB"
measure "berth build (cold cache)" "rm -rf '$work/cache-0'; $warm" \
    env BERTH_CACHE_DIR="$work/cache-0" sh -c "cd '$workspace' && '$berth' build --console none //tree:image"
echo "  image $(cut -d' ' -f2 "$work/out")"
measure "pack_layer action (all cores)" "rm -rf '$work/cache-1'; $warm" "$pack_layer" "$tree" "$work/cache-1" gzip
head -c 71 "$work/out" >"$work/digest-all"
measure "pack_layer action (1 thread)" "rm -rf '$work/cache-2'; $warm" "$pack_layer" "$tree" "$work/cache-2" gzip 1
head -c 71 "$work/out" >"$work/digest-one"
cmp -s "$work/digest-all" "$work/digest-one" || { echo "gzip bytes depend on the thread count!" >&2; exit 1; }
echo "  layer $(cat "$work/digest-all") (same with 1 thread and all cores)"

measure "tar | pigz -6 | sha256sum" "$warm" sh -c "tar -C '$tree' --sort=name -cf - . | pigz -6 | sha256sum"

if command -v umoci >/dev/null; then
    measure "umoci insert" \
        "rm -rf '$work/umoci' && umoci init --layout '$work/umoci' >/dev/null && umoci new --image '$work/umoci:bench' >/dev/null; $warm" \
        umoci insert --image "$work/umoci:bench" "$tree" /
else
    echo "SKIP: umoci is not installed"
fi

if command -v buildah >/dev/null; then
    container=$(buildah from scratch)
    runs=1 measure "buildah copy + commit (1 run)" "$warm" \
        sh -c "buildah copy '$container' '$tree' / && buildah commit '$container' berth-bench"
else
    echo "SKIP: buildah is not installed"
fi

# The image holding the big layer, rebuilt after touching a file of another,
# small package: the big layer's 33k sources are loaded and stat'ed, not read.
build_app="cd '$workspace' && BERTH_CACHE_DIR='$work/cache-0' '$berth' build --console none //app:image"
sh -c "$build_app" >/dev/null
runs=9 measure "berth build after touching app/" "echo more >>'$workspace/app/main.txt'; du -s '$tree' >/dev/null" \
    sh -c "$build_app"
