#!/usr/bin/env bash
# The whole test suite: sets the machine up (every tool a test uses), then
# runs unit, golden, CLI, reproducibility and end-to-end tests, then the
# doctests (`--all-targets` leaves them out).
#
# A test whose prerequisite is missing prints `SKIP:`, which `cargo test`
# hides: BERTH_TEST_REQUIRE (tests/it/util/need.rs) turns the skip into a
# failure for each need it lists. The default lists everything setup.sh
# installs, plus a running Docker engine (not installed here; CI's machine
# starts one) and a non-loopback address. To allow some skips, set it
# yourself: `BERTH_TEST_REQUIRE=debs,registry scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export BERTH_TEST_REQUIRE="${BERTH_TEST_REQUIRE-root,runc,busybox,registry,debs,docker,skopeo,umoci,oci-image-tool,podman,faketime,network,openssl,buildgrid,subids,rootless}"
cargo test --locked --all-targets -- "$@"
cargo test --locked --doc
