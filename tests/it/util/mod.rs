//! Helpers shared by the integration tests: temp workspaces and the real
//! `berth` binary, a real registry on 127.0.0.1, runc prerequisites.
#![allow(dead_code)]

#[macro_use]
pub mod registry;
pub mod runc;
pub mod workspace;
