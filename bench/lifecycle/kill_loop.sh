#!/usr/bin/env bash
# The kill campaign of issue 14: berth killed with SIGKILL or SIGTERM at a
# random moment of a build (extraction, stacking, the step) or of `berth run`, COUNT times
# (default 50), each followed by `berth cache gc` and a check that no
# container (`runc list`), no mount under the cache and no process of the
# step is left. Runs the seeded test `lifecycle::killed_at_random_moments_leaves_nothing`
# with BERTH_KILL_LOOPS=COUNT and BERTH_KILL_SEED=SEED. Needs root, runc and
# busybox-static.
#
# Usage: bench/lifecycle/kill_loop.sh [COUNT] [SEED]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
BERTH_KILL_LOOPS=${1:-50} BERTH_KILL_SEED=${2:-14} BERTH_TEST_REQUIRE=root,runc,busybox \
    cargo test --locked --test it -- --exact lifecycle::killed_at_random_moments_leaves_nothing --nocapture
