//! `berth run LABEL [-- ARG...]`

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to run
    pub label: String,
    /// Set an environment variable in the container (KEY=VALUE)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Give the container the host's network (default: loopback only)
    #[arg(long)]
    pub network: bool,
    /// Arguments that replace the image's `cmd`
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(_args: RunArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`berth run` is not wired up yet")
}
