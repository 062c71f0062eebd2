#!/usr/bin/env bash
# The runc step benchmark.
#
# 1. Overhead of a trivial step (`mkdir -p /out && echo hi > /out/x`, with
#    `/out` captured as a layer) on a warm busybox base: berth's run_step
#    (target <= 0.3 s) against `buildah run` and `docker run` on the same
#    busybox rootfs (imported with `docker import`: the engine cannot pull).
# 2. A ~200 MB base, then ten steps on it: the base is extracted by the first
#    step only.
#
# Usage: bench/runc/run.sh [WORKDIR]      (default /tmp/berth-bench-runc)
# Needs: root, runc, busybox-static, hyperfine; buildah and docker are
# measured when present.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/berth-bench-runc}
steps=${STEPS:-20}
big_mib=${BIG_MIB:-200}
step='mkdir -p /out && echo hi > /out/x'

cd "$repo"
cargo build --release --example runc_step_bench >&2
bench=$repo/target/release/examples/runc_step_bench

rm -rf "$work"
mkdir -p "$work"
"$bench" busybox-tar "$work/busybox.tar.gz"
"$bench" big-tar "$work/big.tar.gz" "$big_mib"

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "== berth run_step: $steps trivial steps on a busybox base (the first one extracts it)"
"$bench" steps "$work/cache-busybox" "$work/busybox.tar.gz" "$steps" "$step" | tee "$work/berth.txt"
warm=$(grep ' warm ' "$work/berth.txt" | awk '{ print $4 }' | median)
echo "berth warm step median: ${warm} s (target <= 0.3 s)"

if command -v buildah >/dev/null; then
    echo "== buildah run on the same busybox rootfs"
    ctr=$(buildah from scratch)
    trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
    buildah add "$ctr" "$work/busybox.tar.gz" / >/dev/null
    hyperfine --warmup 2 --runs "$steps" --export-json "$work/buildah.json" \
        "buildah run --network none $ctr -- /bin/sh -c '$step'"
fi

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "== docker run on the same busybox rootfs (docker import)"
    docker import "$work/busybox.tar.gz" berth-bench-busybox:latest >/dev/null
    hyperfine --warmup 2 --runs "$steps" --export-json "$work/docker.json" \
        "docker run --rm --network none berth-bench-busybox:latest /bin/sh -c '$step'"
    docker rmi berth-bench-busybox:latest >/dev/null
fi

echo "== a ${big_mib} MiB base, then ten steps on it"
ls -l "$work/big.tar.gz"
"$bench" steps "$work/cache-big" "$work/big.tar.gz" 11 "$step" | tee "$work/big.txt"
echo "extraction directories under $work/cache-big/layers:"
ls "$work/cache-big/layers"
echo "steps that extracted the base: $(grep -c 'cold' "$work/big.txt") of $(grep -c '^step' "$work/big.txt")"
