//! A build session: loading → analysis → execution → outputs, in one place,
//! for every command that needs built targets (`build`, `run`, `push`,
//! `export`).

mod outputs;
mod session;

pub use outputs::{write_outputs, TargetOutput};
pub use session::{Built, Session, SessionOptions};
