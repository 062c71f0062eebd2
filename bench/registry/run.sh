#!/usr/bin/env bash
# The registry benchmark: berth's registry client against `skopeo copy`, each
# pushing to its own freshly started local `docker-registry` (plain HTTP on
# 127.0.0.1): a fresh push of a ~200 MB, 4-layer image, a re-push of the same
# image, and a pull as the base of a build (berth: manifest + config only).
#
# Usage: bench/registry/run.sh          (env: BERTH_BENCH_MB=200, BERTH_BENCH_RUNS=3)
# Needs: docker-registry, skopeo (scripts/setup.sh installs both).
#
# Until `berth push LABEL` is wired to `berth build`, berth is timed through
# its library (`berth::registry::Client::push`, the same code the command
# runs) in the ignored test `tests/registry_bench.rs`, release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in docker-registry skopeo; do
    command -v "$tool" >/dev/null || { echo "error: $tool not installed (run scripts/setup.sh)" >&2; exit 1; }
done
cargo test --release --locked --test registry_bench -- --ignored --nocapture --test-threads=1 registry_benchmark 2>&1 \
    | grep -E '^(image:|\|)'
