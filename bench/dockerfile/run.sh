#!/usr/bin/env bash
# The Dockerfile benchmark: one Dockerfile (7 instructions, 200 context
# files, the busybox base) built by berth (`oci_dockerfile`), by Docker's
# legacy builder (`DOCKER_BUILDKIT=0 docker build`) and by `buildah bud
# --layers`, same context, same base, same machine, same run.
#
# Three cases, each the median of RUNS runs per tool:
# - cold: nothing of this Dockerfile cached (the base image is: loaded into
#   Docker and buildah, built in berth's cache before the clock starts);
#   docker and buildah with `--no-cache`, berth on a fresh copy of a cache
#   holding only the base;
# - no-op: the same build again, everything cached;
# - one file: one COPY'd source file edited, then built again (the edit is
#   undone and the build repeated untimed between runs).
#
# Usage: bench/dockerfile/run.sh [WORKDIR]   (env: BERTH=target/release/berth,
#        RUNS=3). Needs root, runc, docker, buildah and /bin/busybox.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$repo/target/release/berth}
work=${1:-/tmp/berth-bench-dockerfile}
runs=${RUNS:-3}
[ -x "$berth" ] || { echo "error: $berth not found; run \`cargo build --release\` first" >&2; exit 1; }
for tool in docker buildah runc; do
    command -v "$tool" >/dev/null || { echo "error: $tool not installed (scripts/setup.sh)" >&2; exit 1; }
done
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
export DOCKER_BUILDKIT=0

base=berth-bench-base:v1
cleanup() {
    docker rmi -f "$base" berth-bench-docker >/dev/null 2>&1 || true
    buildah rmi -f "localhost/$base" localhost/berth-bench-buildah >/dev/null 2>&1 || true
    return 0
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work/ws/base" "$work/ws/app/src"
cd "$work/ws"
: >WORKSPACE.star
cp /bin/busybox base/busybox
cat >base/BUILD.star <<'STAR'
APPLETS = ["sh", "echo", "cat", "ls", "mkdir", "rm", "touch", "chmod", "cp", "seq", "sed", "wc", "sort"]
oci_layer(
    name = "root",
    files = {"/bin/busybox": "busybox"},
    symlinks = {"/bin/" + a: "busybox" for a in APPLETS},
    directories = ["/tmp", "/proc", "/sys", "/dev", "/etc"],
    mode = "0755",
)
oci_image_build(name = "bb", layers = [":root"], repository = "berth-bench-base", tag = "v1")
STAR
for i in $(seq 1 200); do echo "file $i" >"app/src/f$i.txt"; done
cat >app/Dockerfile <<DF
FROM $base
ENV APP=/app
WORKDIR /app
RUN mkdir -p /app/data && seq 1 20000 > /app/data/numbers
COPY src/ /app/src/
RUN cat /app/src/*.txt | wc -l > /app/count
RUN sort -r /app/data/numbers > /app/data/sorted
CMD ["cat", "/app/count"]
DF
echo "oci_dockerfile(name = \"img\", srcs = glob([\"**\"]), bases = {\"$base\": \"//base:bb\"})" >app/BUILD.star

# The base: built into a seed cache, loaded into Docker and buildah.
export BERTH_CACHE_DIR="$work/seed-cache"
"$berth" -q export //base:bb --format docker-archive -o "$work/base.tar"
docker load -q -i "$work/base.tar" >/dev/null
buildah pull -q "docker-archive:$work/base.tar" >/dev/null
buildah tag "$(buildah images -q --filter reference="$base" | head -n1)" "localhost/$base" 2>/dev/null || true

bench_header "$repo" "$berth"
echo "peers:   $(docker version --format 'docker {{.Server.Version}}') (legacy builder); $(buildah --version)"

now_ms() { date +%s%3N; }
# timed CMD...: prints the milliseconds CMD took; fails the bench if it fails.
timed() {
    local start end
    start=$(now_ms)
    "$@" >"$work/last.log" 2>&1 || { echo "error: $* failed:" >&2; cat "$work/last.log" >&2; exit 1; }
    end=$(now_ms)
    echo $((end - start))
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

docker_build() { docker build "$@" -t berth-bench-docker app; }
buildah_build() { buildah bud --layers --pull=never "$@" -t berth-bench-buildah app; }
berth_build() { "$berth" build //app:img; }

declare -A times
record() { times[$1]="${times[$1]:-} $2"; }
for run in $(seq 1 "$runs"); do
    # Cold.
    record docker-cold "$(timed docker_build --no-cache)"
    record buildah-cold "$(timed buildah_build --no-cache)"
    rm -rf "$work/cache"
    cp -a "$work/seed-cache" "$work/cache"
    export BERTH_CACHE_DIR="$work/cache"
    record berth-cold "$(timed berth_build)"
    # No-op.
    record docker-noop "$(timed docker_build)"
    record buildah-noop "$(timed buildah_build)"
    record berth-noop "$(timed berth_build)"
    # One changed file, then undone (untimed) for the next run.
    echo "file 1 changed in run $run" >app/src/f1.txt
    record docker-one "$(timed docker_build)"
    record buildah-one "$(timed buildah_build)"
    record berth-one "$(timed berth_build)"
    echo "file 1" >app/src/f1.txt
done
bench_load

echo "runs (ms):"
for key in docker-cold buildah-cold berth-cold docker-noop buildah-noop berth-noop docker-one buildah-one berth-one; do
    echo "  $key:${times[$key]}"
done
echo "medians of $runs runs:"
echo "| case | docker (ms) | buildah (ms) | berth (ms) | berth / docker | berth / buildah |"
echo "|---|---|---|---|---|---|"
for case in cold noop one; do
    # shellcheck disable=SC2086
    d=$(median ${times[docker-$case]})
    # shellcheck disable=SC2086
    b=$(median ${times[buildah-$case]})
    # shellcheck disable=SC2086
    o=$(median ${times[berth-$case]})
    name=$case
    [ "$case" = noop ] && name="no-op rebuild"
    [ "$case" = one ] && name="one changed COPY'd file"
    printf '| %s | %d | %d | %d | %.3f | %.3f |\n' "$name" "$d" "$b" "$o" \
        "$(echo "$o / $d" | bc -l)" "$(echo "$o / $b" | bc -l)"
done
