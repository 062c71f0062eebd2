//! Helpers shared by the integration tests, one job per module: temp
//! workspaces and the real `berth` binary, what a test needs from the
//! machine (and the one way to skip without it), a real registry on
//! 127.0.0.1 and the small servers put in front of it, test images, layers
//! and `.deb` fixtures.

pub mod certs;
pub mod buildgrid;
pub mod deb;
pub mod faults;
pub mod http;
pub mod images;
pub mod need;
pub mod process;
pub mod registry;
pub mod rootless;
pub mod runc;
pub mod token;
pub mod workspace;

/// A number from the environment variable `name` (how the `bench/` scripts
/// size a full campaign), else `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}
