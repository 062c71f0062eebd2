#!/usr/bin/env bash
# The whole test suite: sets the machine up (every tool a test uses), then
# runs unit, golden, CLI, reproducibility and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --locked --all-targets -- "$@"
