//! `berth explain LABEL`

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The target whose actions to explain
    pub label: String,
}

pub fn run(_args: ExplainArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`berth explain` is not wired up yet")
}
