//! `berth push LABEL [--repository R] [--tag T]...`

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image to push
    pub label: String,
    /// Push to this repository instead of the target's `repository`
    #[arg(long)]
    pub repository: Option<String>,
    /// Tag to push (repeatable); defaults to the target's `tag`/`tags`
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

pub fn run(_args: PushArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`berth push` is not wired up yet")
}
