#!/usr/bin/env bash
# A trivial step (`echo N > /out/n`) on a warm busybox base, with the user
# namespace, seccomp allowlist and shared cgroup on: the wall time of
# `berth build` for RUNS (default 10) steps that each miss the cache (the
# command differs), after one build that warmed the layer store. Prints
# the median and the range. Needs root, runc, busybox-static and the
# `berth` ranges of /etc/subuid (scripts/setup.sh).
#
# Usage: [RUNS=N] [BERTH=path/to/berth] bench/sandbox/trivial_step.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$repo/target/debug/berth}
runs=${RUNS:-10}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/berth-bench.XXXXXX")
# `berth clean --cache` first: rootless, the layer store holds files of the
# user's subordinate ids, which only berth (in its namespace) can remove.
trap '(cd "$work" && "$berth" --quiet clean --cache) || true; rm -rf "$work"' EXIT
mkdir -p "$work/app"
: > "$work/WORKSPACE.star"
cp /bin/busybox "$work/app/busybox"
write_build() {
    cat > "$work/app/BUILD.star" <<STAR
oci_layer(name = "l", files = {"/bin/busybox": "busybox"},
          symlinks = {"/bin/sh": "busybox", "/bin/mkdir": "busybox", "/bin/echo": "busybox"}, mode = "0755")
oci_image_build(name = "base", layers = [":l"])
oci_build_layer(name = "step", base = ":base", command = ["mkdir -p /out", "echo $1 > /out/n"], outputs = ["/out"])
STAR
}
export BERTH_CACHE_DIR=$work/cache
cd "$work"
write_build warm
"$berth" --console none build //app:step >/dev/null
times=()
for i in $(seq "$runs"); do
    write_build "run-$i"
    start=$(date +%s.%N)
    "$berth" --console none build //app:step >/dev/null
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc)")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{ t[NR] = $1 } END {
    printf "trivial step on a warm base: median %.3f s (min %.3f, max %.3f) over %d runs\n", t[int((NR + 1) / 2)], t[1], t[NR], NR }'
