//! Reporting: the events the engine emits, and the console that draws them
//! (the only module besides `cli` that prints).

mod event;

pub use event::{Event, NullReporter, Reporter};
