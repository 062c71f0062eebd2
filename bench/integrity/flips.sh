#!/usr/bin/env bash
# The bit-rot campaign: each round flips a byte in 1% of the CAS blobs (at
# least one), puts their committed mtime back, and runs one command in turn:
# `build //...`, `export` of every image, `push` of every image to a fresh
# repository, `run` of every image. It passes when every command succeeds,
# publishes exactly what a sound cache gives, and `berth cache verify` finds
# exactly the flipped blobs the command did not need. The body is the
# ignored integration test `integrity_flips::flip_campaign`.
#
# Usage: bench/integrity/flips.sh   (env: IMAGES=25, ROUNDS=100, SEED=61723 (0xf11b))
# Needs root, runc, busybox-static, docker-registry.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/bench/common.sh"
cd "$repo"
bench_header "$repo" "cargo test --test it (debug)"
export BERTH_FLIPS_IMAGES=${IMAGES:-25} BERTH_FLIPS_ROUNDS=${ROUNDS:-100} BERTH_FLIPS_SEED=${SEED:-61723}
env | grep '^BERTH_FLIPS_' | sort
nice -n 10 cargo test --test it integrity_flips::flip_campaign -- --ignored --exact --nocapture 2>&1 \
    | grep -E '^(flip campaign|test |thread|failures|  )' || true
bench_load
