//! `berth query [EXPR] [--output label|json|dot]`

use clap::{Args, ValueEnum};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// `//...`, `//pkg/...`, `//pkg:name`, `deps(EXPR)`, `rdeps(UNIVERSE, EXPR)`
    #[arg(default_value = "//...")]
    pub expr: String,
    /// How to print the result
    #[arg(long, value_enum, default_value_t = QueryOutput::Label)]
    pub output: QueryOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryOutput {
    Label,
    Json,
    Dot,
}

pub fn run(_args: QueryArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`berth query` is not wired up yet")
}
