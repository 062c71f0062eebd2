//! A build session: loading → analysis → execution → outputs, in one place,
//! for every command that needs built targets (`build`, `run`, `push`,
//! `export`).

mod build;
mod outputs;

pub use build::{Built, RemoteCacheChoice, Session, SessionOptions};
pub use outputs::{write_outputs, TargetOutput};
