#!/usr/bin/env bash
# The registry benchmark through the real command line: `berth push LABEL`
# against `skopeo copy oci:<the same berth-out/ layout> docker://...`, each to
# its own freshly started local `docker-registry` (plain HTTP on 127.0.0.1).
#
#   fresh push of a ~200 MB image of 4 layers (random data, so gzip keeps it
#   ~200 MB), then a re-push of the same image; median of RUNS runs.
#
# Then, from each registry, a build that adds a layer to the pushed image as
# its base, with a fresh cache or store each run: `berth build` of
# `oci_image_build(base = oci_pull_image(...), layers = [...])` against
# `buildah from docker://...` + `copy` + `commit`. The bytes each one fetched
# are summed from the registry's access log.
#
# Usage: bench/registry/cli.sh [WORKDIR]   (env: BERTH=target/release/berth,
#        MB=200, RUNS=3). Needs docker-registry, skopeo, python3; buildah is
#        measured when present.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$repo/target/release/berth}
work=${1:-/tmp/berth-bench-registry}
mb=${MB:-200}
runs=${RUNS:-3}
[ -x "$berth" ] || { echo "error: $berth not found; run \`cargo build --release\` first" >&2; exit 1; }
for tool in docker-registry skopeo python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool not installed (scripts/setup.sh)" >&2; exit 1; }
done
have_buildah=false
command -v buildah >/dev/null && have_buildah=true
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
# shellcheck source=bench/registry/common.sh
source "$repo/bench/registry/common.sh"

rm -rf "$work"
mkdir -p "$work/ws"
cleanup() {
    stop_registries
    # Images a failed run left behind (each run removes its own).
    if $have_buildah && [ -f "$work/buildah.ids" ]; then xargs -r buildah rmi -f <"$work/buildah.ids" >/dev/null 2>&1 || true; fi
    return 0
}
trap cleanup EXIT

# The workspace: four layers of random data, one image.
layer_mb=$((mb / 4))
for i in 0 1 2 3; do
    head -c "$((layer_mb * 1000 * 1000))" /dev/urandom >"$work/ws/$i.bin"
done
cat >"$work/ws/WORKSPACE.star" <<'STAR'
workspace(name = "registry_bench")
STAR
cat >"$work/ws/BUILD.star" <<'STAR'
[oci_layer(name = "layer%d" % i, files = {"/data/%d.bin" % i: "%d.bin" % i}) for i in range(4)]

oci_image_build(name = "image", layers = [":layer%d" % i for i in range(4)])
STAR
bench_header "$repo" "$berth"
echo "peers:   $(skopeo --version); $(buildah --version 2>/dev/null || echo 'no buildah'); $(docker-registry --version)"
export BERTH_CACHE_DIR="$work/cache"
cd "$work/ws"
"$berth" -q build //:image >/dev/null
layout="$work/ws/berth-out/image"
[ -f "$layout/index.json" ] || { echo "error: no OCI layout at $layout" >&2; exit 1; }

# The workspace that builds on the pushed image: one small layer on top.
mkdir -p "$work/pull"
echo extra >"$work/pull/extra.txt"
# served_bytes REGISTRY FROM_LINE: the response bytes it logged after FROM_LINE.
served_bytes() { tail -n "+$(($2 + 1))" "$work/registries/$1/log" | awk '$6 ~ /^"(GET|HEAD)$/ { n += $10 } END { print n + 0 }'; }

declare -a berth_fresh skopeo_fresh berth_again skopeo_again berth_pull buildah_pull
for run in $(seq "$runs"); do
    a=$(start_registry "berth-$run")
    b=$(start_registry "skopeo-$run")
    # registry(...) for berth's plain-HTTP registry.
    printf 'workspace(name = "registry_bench")\nregistry("%s", insecure = True)\n' "$a" >"$work/ws/WORKSPACE.star"
    push_berth() { "$berth" -q push //:image --repository "$a/bench/app" --tag v1; }
    push_skopeo() { skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout" "docker://$b/bench/app:v1"; }
    if [ $((run % 2)) = 1 ]; then
        berth_fresh+=("$(timed push_berth)"); skopeo_fresh+=("$(timed push_skopeo)")
    else
        skopeo_fresh+=("$(timed push_skopeo)"); berth_fresh+=("$(timed push_berth)")
    fi
    from_a=$(log_lines "berth-$run"); from_b=$(log_lines "skopeo-$run")
    berth_again+=("$(timed push_berth)")
    skopeo_again+=("$(timed push_skopeo)")
    berth_reuploads=$(uploads "berth-$run" "$from_a"); skopeo_reuploads=$(uploads "skopeo-$run" "$from_b")

    digest=$(push_berth)
    cp "$work/ws/WORKSPACE.star" "$work/pull/WORKSPACE.star"
    cat >"$work/pull/BUILD.star" <<STAR
oci_pull_image(name = "base", repository = "$a/bench/app", digest = "$digest")

oci_layer(name = "extra", files = {"/extra.txt": "extra.txt"})

oci_image_build(name = "app", base = ":base", layers = [":extra"])
STAR
    build_berth() { (cd "$work/pull" && BERTH_CACHE_DIR="$work/pull-cache-$run" "$berth" -q build //:app); }
    from=$(log_lines "berth-$run")
    berth_pull+=("$(timed build_berth)")
    berth_bytes=$(served_bytes "berth-$run" "$from")
    if $have_buildah; then
        build_buildah() {
            local ctr
            ctr=$(buildah from -q --tls-verify=false "docker://$b/bench/app:v1")
            buildah copy -q "$ctr" "$work/pull/extra.txt" /extra.txt
            buildah commit -q --rm "$ctr" | tee -a "$work/buildah.ids" >"$work/buildah.last"
        }
        from=$(log_lines "skopeo-$run")
        buildah_pull+=("$(timed build_buildah)")
        buildah_bytes=$(served_bytes "skopeo-$run" "$from")
        # Without the image and its base, the next run pulls every layer again.
        buildah rmi -f "$(cat "$work/buildah.last")" "$b/bench/app:v1" >/dev/null
    fi
done

bf=$(median "${berth_fresh[@]}"); sf=$(median "${skopeo_fresh[@]}")
ba=$(median "${berth_again[@]}"); sa=$(median "${skopeo_again[@]}")
size=$(du -sb "$layout/blobs" | cut -f1)
bench_load
echo "image: 4 layers, $((size / 1000000)) MB of blobs; median of $runs runs; each tool to its own fresh registry"
echo "runs (ms): berth push ${berth_fresh[*]}; skopeo ${skopeo_fresh[*]}; re-push: berth ${berth_again[*]}; skopeo ${skopeo_again[*]}"
echo "| step | berth | peer | berth / peer |"
echo "|---|---|---|---|"
echo "| fresh push: \`berth push\` vs \`skopeo copy oci:... docker://...\` | $bf ms | $sf ms | $(ratio "$bf" "$sf") |"
echo "| re-push (nothing to upload) | $ba ms | $sa ms | $(ratio "$ba" "$sa") |"
echo "| blob uploads the re-push started (last run) | $berth_reuploads | $skopeo_reuploads | |"
bp=$(median "${berth_pull[@]}")
if $have_buildah; then
    echo "runs (ms): berth build ${berth_pull[*]}; buildah ${buildah_pull[*]}"
    bb=$(median "${buildah_pull[@]}")
    echo "| build on the pushed image as base: \`berth build\` vs \`buildah from docker://...\` + \`copy\` + \`commit\` | $bp ms | $bb ms | $(ratio "$bp" "$bb") |"
    echo "| bytes that build fetched from the registry (last run) | $berth_bytes B | $buildah_bytes B | 1/$((buildah_bytes / berth_bytes)) |"
else
    echo "runs (ms): berth build ${berth_pull[*]}"
    echo "| build on the pushed image as base: \`berth build\` | $bp ms | (no buildah) | |"
    echo "| bytes that build fetched from the registry (last run) | $berth_bytes B | | |"
fi
