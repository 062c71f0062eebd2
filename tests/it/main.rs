//! berth's integration tests, one binary with a module per area (ripgrep's
//! `tests/tests.rs` shape): cargo links the library and the helpers once,
//! instead of once per test file.
//!
//! Tiers, cheapest first: the source tree itself (`layering`), the engine and
//! the action kinds through the library API, the real `berth` binary in temp
//! workspaces (CLI, golden, reproducibility), then end-to-end tests against
//! real runc, a real registry on 127.0.0.1, skopeo, umoci, docker and
//! podman. A test whose prerequisite is missing prints `SKIP: <reason>`
//! through `util::need`, or fails when `BERTH_TEST_REQUIRE` lists it.

mod util;

mod cli_cache;
mod cli_export;
mod crash_consistency;
mod deb_bases;
mod deb_bases_cli;
mod deb_layer;
mod deb_reader;
mod dockerfile;
mod engine;
mod examples;
mod extract_cache;
mod extract_hostile;
mod extract_linear;
mod fuzz_corpus;
mod hostile_archives;
mod hostile_starlark;
mod image_errors;
mod integrity_faults;
mod integrity_flips;
mod integrity_heal;
mod integrity_paths;
mod integrity_verify;
mod layering;
mod lifecycle;
mod loading_errors;
mod migration;
mod oci_image;
mod push_release;
mod query;
mod registry_auth;
mod registry_bench;
mod registry_cli;
mod registry_credentials;
mod registry_docker_hub;
mod registry_e2e;
mod registry_faults;
mod registry_interop;
mod registry_safety;
mod remote_cache;
mod reproducibility;
mod rootfs;
mod rules;
mod runc_cli;
mod runc_steps;
mod sandbox_escapes;
mod sandbox_host_reads;
mod sandbox_limits;
mod sandbox_rootless;
mod sandbox_userns;
mod stamp;
mod tls_registry;
