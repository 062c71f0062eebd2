#!/usr/bin/env bash
# The runc step benchmark, whole commands only.
#
# 1. A trivial step (`mkdir -p /out && echo hi > /out/x`, `/out` captured)
#    committed as an image on a warm busybox base: `berth build` of
#    `oci_image_build(base, layers = [oci_build_layer(...)])` against
#    `buildah from` + `run` + `commit --rm` and `docker run` + `commit` +
#    `rm`, all on the same base (Debian's busybox-static from
#    third_party/debs, exported with `berth export --format docker-archive`
#    and loaded into each peer's store). Before each timed berth run the
#    step's one action-cache entry is removed, so the step really runs while
#    the extracted base stays in the cache; the script checks both.
# 2. A 200 MiB base, then ten steps on it, each a whole `berth build` of its
#    own image: the first step extracts the base, the other ten find it
#    extracted. buildah and docker do the same after `buildah pull` /
#    `docker load` of the same base.
#
# Usage: bench/runc/run.sh [WORKDIR]      (default /tmp/berth-bench-runc)
# Environment: BERTH (default target/release/berth), RUNS (default 20),
#              BIG_MIB (default 200). Needs: root, runc, hyperfine, the
#              .debs of third_party/debs (scripts/fetch-debs.sh); buildah and
#              docker are measured when present.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$repo/target/release/berth}
work=${1:-/tmp/berth-bench-runc}
runs=${RUNS:-20}
big_mib=${BIG_MIB:-200}
big_steps=10
step='mkdir -p /out && echo hi > /out/x'
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"

[ -x "$berth" ] || { echo "error: $berth not found; run \`cargo build --release\` first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "error: runc steps need root" >&2; exit 1; }
for tool in runc hyperfine python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool not installed (scripts/setup.sh)" >&2; exit 1; }
done
ls "$repo"/third_party/debs/busybox-static_*.deb >/dev/null 2>&1 \
    || { echo "error: no busybox-static .deb in third_party/debs; run scripts/fetch-debs.sh" >&2; exit 1; }
have_buildah=false
command -v buildah >/dev/null && have_buildah=true
have_docker=false
command -v docker >/dev/null && docker info >/dev/null 2>&1 && have_docker=true
export DOCKER_BUILDKIT=0

rm -rf "$work"
mkdir -p "$work/ws/third_party" "$work/ws/runc_bench" "$work/ws/runc_bench_big/data"
cp -a "$repo/third_party/debs" "$work/ws/third_party/"
echo 'workspace(name = "runc_bench")' >"$work/ws/WORKSPACE.star"
# The package names become the image names `berth export` writes into a
# docker-archive (`runc_bench/base:latest`), so the peers' stores get names
# no one else uses.
cat >"$work/ws/runc_bench/BUILD.star" <<STAR
oci_image_build(name = "base", base = "//third_party/debs:busybox_base")

oci_build_layer(
    name = "step",
    base = ":base",
    command = ["$step"],
    outputs = ["/out"],
)

oci_image_build(name = "image", base = ":base", layers = [":step"])
STAR
python3 - "$work/ws/runc_bench_big/data" "$big_mib" <<'PY'
import random, sys
# 1 MiB files of seeded noise: incompressible, like real binaries.
rng = random.Random(1)
for index in range(int(sys.argv[2])):
    with open(f"{sys.argv[1]}/{index:04d}.bin", "wb") as f:
        f.write(rng.randbytes(1 << 20))
PY
cat >"$work/ws/runc_bench_big/BUILD.star" <<STAR
oci_layer(name = "data", srcs = glob(["data/**"]))

oci_image_build(name = "base", base = "//third_party/debs:busybox_base", layers = [":data"])

[oci_build_layer(
    name = "step%d" % i,
    base = ":base",
    command = ["mkdir -p /out && echo %d > /out/x" % i],
    outputs = ["/out"],
) for i in range($big_steps + 1)]

[oci_image_build(name = "image%d" % i, base = ":base", layers = [":step%d" % i]) for i in range($big_steps + 1)]
STAR

# What the peers create, removed on exit: containers and images by id.
cleanup() {
    if $have_buildah; then
        [ -f "$work/buildah.ids" ] && xargs -r buildah rmi -f <"$work/buildah.ids" >/dev/null 2>&1 || true
        buildah rmi -f runc_bench/base runc_bench_big/base >/dev/null 2>&1 || true
    fi
    if $have_docker; then
        [ -f "$work/docker.ids" ] && xargs -r docker rmi -f <"$work/docker.ids" >/dev/null 2>&1 || true
        docker rm -f runc-bench-step runc-bench-big >/dev/null 2>&1 || true
        docker rmi -f runc_bench/base runc_bench_big/base >/dev/null 2>&1 || true
    fi
    return 0
}
trap cleanup EXIT

cd "$work/ws"
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
# extracted CACHE: how many extracted layer directories the cache holds.
extracted() { find "$1/layers" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }
# ran_actions LOG: the actions a `--console plain` build ran, one per line.
ran_actions() { awk '$1 == "ran" { print $2, $3 }' "$1"; }

bench_header "$repo" "$berth"
echo "peers:   $(buildah --version 2>/dev/null || echo 'no buildah'); $(docker version --format 'docker {{.Server.Version}}' 2>/dev/null || echo 'no docker'), $(docker info --format 'storage {{.Driver}}' 2>/dev/null); $(runc --version | head -n 1)"

echo
echo "== 1. a trivial step committed as an image on a warm busybox base"
export BERTH_CACHE_DIR="$work/cache"
"$berth" -q build //runc_bench:base >/dev/null
ls "$BERTH_CACHE_DIR/ac" >"$work/ac-before"
"$berth" -q build //runc_bench:step >/dev/null
ls "$BERTH_CACHE_DIR/ac" >"$work/ac-after"
# The step's action is the one entry building //runc_bench:step added.
mapfile -t new < <(comm -13 "$work/ac-before" "$work/ac-after")
[ "${#new[@]}" = 1 ] || { echo "error: building the step added ${#new[@]} action-cache entries, expected 1" >&2; exit 1; }
entry="$BERTH_CACHE_DIR/ac/${new[0]}"
"$berth" -q build //runc_bench:image >/dev/null
layers=$(extracted "$BERTH_CACHE_DIR")
[ "$layers" -gt 0 ] || { echo "error: the step left no extracted base layer in the cache" >&2; exit 1; }
rm "$entry"
"$berth" --console plain build //runc_bench:image 2>"$work/check.log" >/dev/null
if [ "$(ran_actions "$work/check.log")" != "//runc_bench:step run_step" ]; then
    echo "error: without its action-cache entry, a build must run the step and nothing else:" >&2
    cat "$work/check.log" >&2
    exit 1
fi
echo "berth: removing action-cache entry ac/${new[0]:0:12}... before each run reruns exactly //runc_bench:step run_step; $layers extracted base layers"

commands=("$berth --console none build //runc_bench:image")
prepares=(--prepare "rm -f $entry")
if $have_buildah; then
    "$berth" -q export //runc_bench:base --format docker-archive -o "$work/base.tar"
    buildah pull -q "docker-archive:$work/base.tar" >/dev/null
    commands+=("ctr=\$(buildah from --pull=never runc_bench/base) && buildah run --network none \$ctr -- /bin/sh -c '$step' && buildah commit -q --rm \$ctr >>$work/buildah.ids")
    prepares+=(--prepare true)
fi
if $have_docker; then
    [ -f "$work/base.tar" ] || "$berth" -q export //runc_bench:base --format docker-archive -o "$work/base.tar"
    docker load -q -i "$work/base.tar" >/dev/null
    commands+=("docker run --name runc-bench-step --network none runc_bench/base /bin/sh -c '$step' && docker commit runc-bench-step >>$work/docker.ids && docker rm runc-bench-step >/dev/null")
    prepares+=(--prepare true)
fi
bench_load
hyperfine --warmup 2 --runs "$runs" "${prepares[@]}" --export-json "$work/step.json" "${commands[@]}"
bench_load
[ -f "$entry" ] || { echo "error: the last timed berth run did not store the step's result" >&2; exit 1; }
[ "$(extracted "$BERTH_CACHE_DIR")" = "$layers" ] \
    || { echo "error: the timed runs extracted the base again ($(extracted "$BERTH_CACHE_DIR") layer directories, was $layers)" >&2; exit 1; }
echo "base stayed warm: still $layers extracted layer directories"

echo
echo "== 2. a ${big_mib} MiB base, then $big_steps steps on it (each a whole command)"
export BERTH_CACHE_DIR="$work/cache-big"
"$berth" -q build //runc_bench_big:base >/dev/null
echo "base: $(du -sm "$work/ws/runc_bench_big/data" | cut -f1) MiB of data on busybox; extracted layers before the first step: $(extracted "$BERTH_CACHE_DIR")"
declare -a berth_ms
for i in $(seq 0 "$big_steps"); do
    start=$(date +%s%N)
    "$berth" --console plain build "//runc_bench_big:image$i" 2>"$work/big$i.log" >/dev/null
    berth_ms+=("$(ms_since "$start")")
    ran=$(ran_actions "$work/big$i.log" | grep -c ' run_step$' || true)
    [ "$ran" = 1 ] || { echo "error: building image$i ran $ran steps, expected 1" >&2; cat "$work/big$i.log" >&2; exit 1; }
    echo "berth build //runc_bench_big:image$i: ${berth_ms[$i]} ms; extracted layer directories: $(extracted "$BERTH_CACHE_DIR")"
    if [ "$i" = 0 ]; then base_layers=$(extracted "$BERTH_CACHE_DIR"); fi
done
[ "$(extracted "$BERTH_CACHE_DIR")" = "$base_layers" ] \
    || { echo "error: a step after the first extracted the base again" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
summary() { # NAME FIRST REST...: one line per tool.
    local name=$1 first=$2
    shift 2
    echo "$name: first step $first ms; then $# steps: median $(median "$@") ms, $(printf '%s\n' "$@" | sort -n | head -n 1)-$(printf '%s\n' "$@" | sort -n | tail -n 1) ms"
}
results=("$(summary "berth build" "${berth_ms[0]}" "${berth_ms[@]:1}") (extracted layer directories: $(extracted "$BERTH_CACHE_DIR"))")

if $have_buildah || $have_docker; then
    "$berth" -q export //runc_bench_big:base --format docker-archive -o "$work/big.tar"
fi
if $have_buildah; then
    start=$(date +%s%N)
    buildah pull -q "docker-archive:$work/big.tar" >/dev/null
    pull=$(ms_since "$start")
    declare -a buildah_ms
    for i in $(seq 0 "$big_steps"); do
        start=$(date +%s%N)
        ctr=$(buildah from --pull=never runc_bench_big/base)
        buildah run --network none "$ctr" -- /bin/sh -c "mkdir -p /out && echo $i > /out/x"
        buildah commit -q --rm "$ctr" >>"$work/buildah.ids"
        buildah_ms+=("$(ms_since "$start")")
    done
    results+=("buildah pull docker-archive: $pull ms; $(summary "buildah from+run+commit" "${buildah_ms[0]}" "${buildah_ms[@]:1}")")
fi
if $have_docker; then
    start=$(date +%s%N)
    docker load -q -i "$work/big.tar" >/dev/null
    load=$(ms_since "$start")
    declare -a docker_ms
    for i in $(seq 0 "$big_steps"); do
        start=$(date +%s%N)
        docker run --name runc-bench-big --network none runc_bench_big/base /bin/sh -c "mkdir -p /out && echo $i > /out/x"
        docker commit runc-bench-big >>"$work/docker.ids"
        docker rm runc-bench-big >/dev/null
        docker_ms+=("$(ms_since "$start")")
    done
    results+=("docker load: $load ms; $(summary "docker run+commit+rm" "${docker_ms[0]}" "${docker_ms[@]:1}")")
fi
bench_load
printf '%s\n' "${results[@]}"
