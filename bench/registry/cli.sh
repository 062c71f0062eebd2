#!/usr/bin/env bash
# The registry benchmark through the real command line: `berth push LABEL`
# against `skopeo copy oci:<the same berth-out/ layout> docker://...`, each to
# its own freshly started local `docker-registry` (plain HTTP on 127.0.0.1).
#
#   fresh push of a ~200 MB image of 4 layers (random data, so gzip keeps it
#   ~200 MB), then a re-push of the same image; median of RUNS runs.
#
# Usage: bench/registry/cli.sh [WORKDIR]   (env: BERTH=target/release/berth,
#        MB=200, RUNS=3). Needs docker-registry, skopeo, python3.
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

rm -rf "$work"
mkdir -p "$work/ws"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_registry NAME: a fresh registry; prints its host:port.
start_registry() {
    local dir="$work/registries/$1" port
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$port
  secret: berth-bench
YAML
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen("http://%s/v2/" % sys.argv[1])' "127.0.0.1:$port" \
            2>/dev/null && break
        sleep 0.05
    done
    echo "127.0.0.1:$port"
}

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
export BERTH_CACHE_DIR="$work/cache"
cd "$work/ws"
"$berth" -q build //:image >/dev/null
layout="$work/ws/berth-out/image"
[ -f "$layout/index.json" ] || { echo "error: no OCI layout at $layout" >&2; exit 1; }

ms() { python3 -c 'import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))' "$@"; }
now() { date +%s.%N; }
# timed COMMAND...: prints the wall time in ms of the command.
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

declare -a berth_fresh skopeo_fresh berth_again skopeo_again
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
    berth_again+=("$(timed push_berth)")
    skopeo_again+=("$(timed push_skopeo)")
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
bf=$(median "${berth_fresh[@]}"); sf=$(median "${skopeo_fresh[@]}")
ba=$(median "${berth_again[@]}"); sa=$(median "${skopeo_again[@]}")
ratio() { python3 -c 'import sys; print("%.2fx" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
size=$(du -sb "$layout/blobs" | cut -f1)
echo "image: 4 layers, $((size / 1000000)) MB of blobs; median of $runs runs; \`berth push\` vs \`skopeo copy oci:... docker://...\`, each to a fresh registry"
echo "| step | berth | skopeo | berth / skopeo |"
echo "|---|---|---|---|"
echo "| fresh push | $bf ms | $sf ms | $(ratio "$bf" "$sf") |"
echo "| re-push (nothing to upload) | $ba ms | $sa ms | $(ratio "$ba" "$sa") |"
