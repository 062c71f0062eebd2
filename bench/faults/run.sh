#!/usr/bin/env bash
# The fault campaign: pushes then pulls through a proxy that damages a share
# of the requests (dropped connections, truncated and flipped bodies, 500s,
# 429s, stalls, flipped or cut request bodies; the token server sits behind
# the same proxy), with berth's default retry settings. It passes when every
# push and pull succeeds, every tag names the pushed digest and no cache
# holds a corrupt blob. The body is the ignored integration test
# `integrity_faults::fault_campaign` (the CI sample is its small sibling).
#
# Usage: bench/faults/run.sh   (env: PUSHES=200, PULLS=1000, MAX_BLOB_MB=50,
#        RATE_PERCENT=10, STALL_MS=2000, SEED=24301 (0x5eed), THREADS=4)
# Needs docker-registry. Runs the debug test binary under `nice -n 10`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/bench/common.sh"
cd "$repo"
bench_header "$repo" "cargo test --test it (debug)"
export BERTH_FAULTS_PUSHES=${PUSHES:-200} BERTH_FAULTS_PULLS=${PULLS:-1000}
export BERTH_FAULTS_MAX_BLOB_MB=${MAX_BLOB_MB:-50} BERTH_FAULTS_RATE_PERCENT=${RATE_PERCENT:-10}
export BERTH_FAULTS_STALL_MS=${STALL_MS:-2000} BERTH_FAULTS_SEED=${SEED:-24301} BERTH_FAULTS_THREADS=${THREADS:-4}
env | grep '^BERTH_FAULTS_' | sort
nice -n 10 cargo test --test it integrity_faults::fault_campaign -- --ignored --exact --nocapture 2>&1 \
    | grep -E '^(fault campaign|[0-9]+ requests|test |thread|failures|  )' || true
bench_load
