//! Analysis: turns targets into providers (`ImageInfo`, `LayerInfo`, ...)
//! and registers the actions that build them. Nothing runs here.

mod analyzer;
mod key_values;
mod layer_contents;
mod providers;
mod rules;

pub use analyzer::{analyze, at, created_by, shared, Analysis, AnalysisContext, Analyzer};
pub use key_values::key_values;
pub use layer_contents::{PlannedContent, PlannedEntry};
pub use providers::{FilesInfo, ImageInfo, IndexInfo, LayerInfo, Provider, RunAs};
