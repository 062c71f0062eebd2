//! A build session: loading → analysis → execution → outputs, in one place,
//! for every command that needs built targets (`build`, `run`, `push`,
//! `export`).

mod build;
mod outputs;
mod published;
mod stamp;

pub use build::{Built, RemoteCacheChoice, Session, SessionOptions};
pub use outputs::{already_in_out_dir, corrupt_published, write_outputs, TargetOutput};
