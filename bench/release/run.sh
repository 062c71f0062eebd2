#!/usr/bin/env bash
# The release benchmark: `berth push //...` of a 20-image monorepo against a
# loop of `skopeo copy oci:<the same berth-out/ layouts> docker://...`, each
# to its own freshly started local `docker-registry` (plain HTTP, 127.0.0.1).
#
# Per run: 20 images of one 10 MB random-data layer each (200 MB in all) are
# built and pushed once by both tools; then half of them change (new data,
# built, not timed) and both push the release again: that push is timed.
# Last, berth re-pushes the unchanged release; the blob uploads and manifest
# PUTs it caused are counted in the registry's access log.
#
# Usage: bench/release/run.sh [WORKDIR]   (env: BERTH=target/release/berth,
#        IMAGES=20, MB=10 per image, RUNS=3). Needs docker-registry, skopeo,
#        python3.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$repo/target/release/berth}
work=${1:-/tmp/berth-bench-release}
images=${IMAGES:-20}
mb=${MB:-10}
runs=${RUNS:-3}
[ -x "$berth" ] || { echo "error: $berth not found; run \`cargo build --release\` first" >&2; exit 1; }
for tool in docker-registry skopeo python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool not installed (scripts/setup.sh)" >&2; exit 1; }
done
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
# shellcheck source=bench/registry/common.sh
source "$repo/bench/registry/common.sh"

rm -rf "$work"
mkdir -p "$work/ws"
trap stop_registries EXIT

names=()
for i in $(seq -f '%02g' 0 $((images - 1))); do names+=("img$i"); done
# data N: fresh random data for image N.
data() { head -c "$((mb * 1000 * 1000))" /dev/urandom >"$work/ws/$1/data.bin"; }

bench_header "$repo" "$berth"
echo "peers:   $(skopeo --version); $(docker-registry --version)"
export BERTH_CACHE_DIR="$work/cache"
declare -a berth_release skopeo_release berth_again
for run in $(seq "$runs"); do
    a=$(start_registry "berth-$run")
    b=$(start_registry "skopeo-$run")
    printf 'workspace(name = "release_bench")\nregistry("%s", insecure = True)\n' "$a" >"$work/ws/WORKSPACE.star"
    for name in "${names[@]}"; do
        mkdir -p "$work/ws/$name"
        data "$name"
        cat >"$work/ws/$name/BUILD.star" <<STAR
oci_layer(name = "data", files = {"/data.bin": "data.bin"})

oci_image_build(name = "$name", layers = [":data"], repository = "$a/release/$name", tag = "v1")
STAR
    done
    (cd "$work/ws" && "$berth" -q build //... >/dev/null)
    push_berth() { (cd "$work/ws" && "$berth" -q push //... --json); }
    push_skopeo() {
        for name in "${names[@]}"; do
            skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$work/ws/berth-out/$name/$name" \
                "docker://$b/release/$name:v1"
        done
    }
    push_berth >/dev/null
    push_skopeo
    # Half of the release changes.
    for name in "${names[@]:0:$((images / 2))}"; do data "$name"; done
    (cd "$work/ws" && "$berth" -q build //... >/dev/null)
    if [ $((run % 2)) = 1 ]; then
        berth_release+=("$(timed push_berth)"); skopeo_release+=("$(timed push_skopeo)")
    else
        skopeo_release+=("$(timed push_skopeo)"); berth_release+=("$(timed push_berth)")
    fi
    from=$(log_lines "berth-$run")
    berth_again+=("$(timed push_berth)")
    again_uploads=$(uploads "berth-$run" "$from")
    again_puts=$(manifest_puts "berth-$run" "$from")
    kill "$(cat "$work/registries/berth-$run/pid")" "$(cat "$work/registries/skopeo-$run/pid")" 2>/dev/null || true
    rm -rf "$work/registries/berth-$run/storage" "$work/registries/skopeo-$run/storage"
done

br=$(median "${berth_release[@]}"); sr=$(median "${skopeo_release[@]}"); ba=$(median "${berth_again[@]}")
bench_load
echo "release: $images images of one ${mb} MB random layer each, half changed since the last push; median of $runs runs"
echo "runs (ms): berth push //... ${berth_release[*]}; skopeo copy loop ${skopeo_release[*]}; unchanged re-push ${berth_again[*]}"
echo "| step | berth | peer | berth / peer |"
echo "|---|---|---|---|"
echo "| release push, half changed: \`berth push //...\` vs a \`skopeo copy oci:... docker://...\` loop | $br ms | $sr ms | $(ratio "$br" "$sr") |"
echo "| re-push of the unchanged release | $ba ms | | |"
echo "| blob uploads / manifest PUTs of that re-push (last run) | $again_uploads / $again_puts | | |"
