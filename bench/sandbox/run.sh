#!/usr/bin/env bash
# The sandbox figures of issue 14, release binaries:
#
# 1. A trivial step on a warm base against `buildah from` + `run` +
#    `commit`: bench/runc/run.sh's part 1 (its part 2, the 200 MiB base,
#    runs too), with the user namespace, seccomp allowlist and shared
#    cgroup on.
# 2. The same trivial step with berth rootless (as the user
#    `berth-rootless` of scripts/setup.sh): bench/sandbox/trivial_step.sh
#    run as root and as that user, same binary, same machine.
# 3. Extracting a 200 MB, 10,000-file base layer: berth's layer store
#    against `umoci unpack` of the same layer (bench/sandbox/extract.rs).
#
# Usage: bench/sandbox/run.sh [WORKDIR]     (default /tmp/berth-bench-sandbox)
# Needs root, runc, busybox-static, hyperfine, buildah, umoci, the .debs of
# third_party/debs, and for part 2 the users of scripts/setup.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/berth-bench-sandbox}
berth=${BERTH:-$repo/target/release/berth}
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
[ "$(id -u)" = 0 ] || { echo "error: run as root" >&2; exit 1; }
(cd "$repo" && cargo build --release --quiet && cargo build --release --quiet --example extract_base)
bench_header "$repo" "$berth"
rm -rf "$work"
mkdir -p "$work"

echo "== 1. trivial step vs buildah (bench/runc/run.sh)"
BERTH=$berth "$repo/bench/runc/run.sh" "$work/runc"

echo "== 2. trivial step, root and rootless (bench/sandbox/trivial_step.sh)"
BERTH=$berth RUNS=${RUNS:-10} "$repo/bench/sandbox/trivial_step.sh"
user=berth-rootless
if id -u "$user" >/dev/null 2>&1; then
    # The user runs a copy of the binary and the script from a directory it can read.
    mkdir -p "$work/rootless"
    cp "$berth" "$work/rootless/berth"
    cp "$repo/bench/sandbox/trivial_step.sh" "$work/rootless/"
    chown -R "$user" "$work/rootless"
    setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups -- \
        env HOME="$work/rootless" TMPDIR="$work/rootless" BERTH="$work/rootless/berth" RUNS="${RUNS:-10}" \
        bash "$work/rootless/trivial_step.sh" | sed 's/^/rootless: /'
else
    echo "rootless: skipped (no user $user; run scripts/setup.sh)"
fi

echo "== 3. extraction of a 200 MB, 10k-file base vs umoci unpack"
"$repo/target/release/examples/extract_base" "$work" "${EXTRACT_RUNS:-3}"
bench_load
