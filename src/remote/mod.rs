//! The remote cache: berth's action cache and CAS extended past the
//! machine's edge onto an existing engine, a server of the Remote Execution
//! API v2 (REAPI: Capabilities, CAS, ActionCache, ByteStream), such as
//! BuildGrid. The scheduler (`exec/`) consults it after a local miss and
//! feeds it after a local run, through [`RemoteCache`]; nothing else sees it.
//!
//! Second backend: an OCI registry as the cache (`oci://`), through the
//! blocking registry client.
//!
//! Below it sits `cache/` (keys, results, the local CAS a hit is downloaded
//! into) and `registry/`; above it `exec/`. Only this module uses tonic,
//! prost and the REAPI stubs, on one tokio runtime of its own.

mod client;
mod error;
#[cfg(test)]
mod fake_server;
mod oci;
mod remote_cache;
mod wrap;

pub use error::RemoteError;
pub use remote_cache::{LastRemoteBuild, RemoteCache, RemoteStats, DEFAULT_DEADLINE};
pub use wrap::WrappedAction;
