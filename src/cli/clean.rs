//! `berth clean [--cache]`

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Also remove the cache
    #[arg(long)]
    pub cache: bool,
}

pub fn run(_args: CleanArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`berth clean` is not wired up yet")
}
