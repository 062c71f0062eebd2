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

rm -rf "$work"
mkdir -p "$work/ws"
cleanup() {
    for pid in "$work"/registries/*/pid; do kill "$(cat "$pid")" 2>/dev/null || true; done
    return 0
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_registry NAME: a fresh registry with its access log; prints host:port.
start_registry() {
    local dir="$work/registries/$1" port
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$port
  secret: berth-bench
YAML
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen("http://%s/v2/" % sys.argv[1])' "127.0.0.1:$port" \
            2>/dev/null && break
        sleep 0.05
    done
    echo "127.0.0.1:$port"
}

ms() { python3 -c 'import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))' "$@"; }
now() { date +%s.%N; }
timed() {
    sync
    local start end
    start=$(now)
    if ! "$@" >/dev/null 2>"$work/step.err"; then
        echo "error: $* failed:" >&2; cat "$work/step.err" >&2; kill $$
    fi
    end=$(now)
    ms "$start" "$end"
}
log_lines() { wc -l <"$work/registries/$1/log"; }
uploads() { tail -n "+$(($2 + 1))" "$work/registries/$1/log" | awk '$6 == "\"POST" && $7 ~ /\/blobs\/uploads\// { n++ } END { print n + 0 }'; }
manifest_puts() { tail -n "+$(($2 + 1))" "$work/registries/$1/log" | awk '$6 == "\"PUT" && $7 ~ /\/manifests\// { n++ } END { print n + 0 }'; }

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

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { python3 -c 'import sys; print("%.2fx" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
br=$(median "${berth_release[@]}"); sr=$(median "${skopeo_release[@]}"); ba=$(median "${berth_again[@]}")
bench_load
echo "release: $images images of one ${mb} MB random layer each, half changed since the last push; median of $runs runs"
echo "runs (ms): berth push //... ${berth_release[*]}; skopeo copy loop ${skopeo_release[*]}; unchanged re-push ${berth_again[*]}"
echo "| step | berth | peer | berth / peer |"
echo "|---|---|---|---|"
echo "| release push, half changed: \`berth push //...\` vs a \`skopeo copy oci:... docker://...\` loop | $br ms | $sr ms | $(ratio "$br" "$sr") |"
echo "| re-push of the unchanged release | $ba ms | | |"
echo "| blob uploads / manifest PUTs of that re-push (last run) | $again_uploads / $again_puts | | |"
