//! `berth build [PATTERN...]`

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Target patterns: `//...`, `//pkg/...`, `//pkg:all`, `//pkg:name`
    #[arg(default_value = "//...")]
    pub patterns: Vec<String>,
}

pub fn run(_args: BuildArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`berth build` is not wired up yet")
}
