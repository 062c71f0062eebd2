//! Reporting: the events the engine emits, and the console that draws them
//! (the only module besides `cli` that prints).

mod console;
mod event;

pub use console::{ConsoleMode, ConsoleReporter, Verbosity};
pub use event::{Event, NullReporter, Reporter};
