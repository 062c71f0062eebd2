//! berth builds OCI container images the way Bazel and Buck2 build code.
//!
//! ```text
//! BUILD.star ──frontend──▶ target graph ──analysis──▶ action DAG ──exec──▶ CAS + action cache ──▶ berth-out/
//!  (loading)               (graph)                    (actions)            (cache)                  (oci, registry)
//! ```
//!
//! `remote` extends the cache past the machine's edge (a REAPI v2 server or
//! an OCI registry), behind the scheduler's lookup and store.
//!
//! `session` runs one build through every phase for the commands that need
//! built targets; `report` draws its events; `cli` parses flags into
//! requests. `error` (the crate-wide error) and `sys` (the one module of raw
//! OS calls) sit below every stage.
//!
//! The modules below are listed in pipeline order. Only `frontend` and
//! `analysis` touch the `starlark` crate; only `oci` and `registry` touch tar,
//! compression, oci-spec and HTTP; only `cli` and `report` print.

pub mod workspace;
pub mod frontend;
pub mod graph;
pub mod dockerfile;
pub mod analysis;
pub mod actions;
pub mod exec;
pub mod cache;
pub mod remote;
pub mod oci;
pub mod registry;
pub mod session;
pub mod report;
pub mod cli;
pub mod error;
pub mod sys;

/// The unit tests run under the binary's allocator (`main.rs`), so that the
/// Starlark allocation guard holds for them too.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: frontend::GuardedAllocator = frontend::GuardedAllocator;
