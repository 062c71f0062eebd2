//! `berth pin IMAGE:TAG`

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct PinArgs {
    /// `registry/repository:tag` to resolve
    pub image: String,
}

pub fn run(_args: PinArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`berth pin` is not wired up yet")
}
