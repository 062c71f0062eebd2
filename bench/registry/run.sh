#!/usr/bin/env bash
# The registry benchmark: berth's registry client against `skopeo copy`, each
# pushing to its own freshly started local `docker-registry` (plain HTTP on
# 127.0.0.1): a fresh push of a ~200 MB, 4-layer image, a re-push of the same
# image, and a pull as the base of a build (berth: manifest + config only).
#
# Usage: bench/registry/run.sh          (env: BERTH_BENCH_MB=200, BERTH_BENCH_RUNS=3)
# Needs: docker-registry, skopeo (scripts/setup.sh installs both).
#
# This one times berth's library (`berth::registry::Client`, the code
# `berth push` runs) in the ignored test `tests/it/registry_bench.rs`, release
# build, and also measures a pull as a base (bytes fetched). `cli.sh` beside
# it times the real `berth push LABEL` command.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in docker-registry skopeo; do
    command -v "$tool" >/dev/null || { echo "error: $tool not installed (run scripts/setup.sh)" >&2; exit 1; }
done
cargo test --release --locked --test it -- --ignored --nocapture --test-threads=1 registry_bench::registry_benchmark 2>&1 \
    | grep -oE '(image:.*|^\|.*)'
