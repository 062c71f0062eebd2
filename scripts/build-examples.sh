#!/usr/bin/env bash
# The main job: sets the machine up, builds berth, and builds every example.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --examples-only
cargo build --release --locked
./target/release/berth build //examples/...
