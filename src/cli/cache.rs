//! `berth cache stats|gc [--max-size SIZE]`

use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the cache's size and entry counts
    Stats,
    /// Remove least recently used entries until the cache fits
    Gc {
        /// Target size, e.g. `10G`, `500M`
        #[arg(long, value_name = "SIZE")]
        max_size: String,
    },
}

pub fn run(_args: CacheArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`berth cache` is not wired up yet")
}
