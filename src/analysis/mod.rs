//! Analysis: turns targets into providers (`ImageInfo`, `LayerInfo`, ...)
//! and registers the actions that build them. Nothing runs here.

mod layer_contents;

pub use layer_contents::{PlannedContent, PlannedEntry};
