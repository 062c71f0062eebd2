#!/usr/bin/env bash
# Extraction of N and 2N replaced directories (default N = 5000; the issue's
# budget is time(2N) <= 2.2 x time(N)); run as root (extraction restores
# owners). DIR defaults to $TMPDIR; pass /dev/shm to leave the disk out.
# Dev profile (dependencies optimised, berth not), as the tests build it.
#
# Usage: bench/extract/replaced_dirs.sh [N] [DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
cargo run --quiet --example extract_replaced_dirs -- "${1:-5000}" "${2:-${TMPDIR:-/tmp}}"
