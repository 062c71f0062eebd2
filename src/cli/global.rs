//! Flags shared by every subcommand (uv's `GlobalArgs`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Run at most N actions at once (default: the number of cores)
    #[arg(short = 'j', long = "jobs", global = true, value_name = "N")]
    pub jobs: Option<usize>,
    /// The cache directory (default: `$XDG_CACHE_HOME/berth`)
    #[arg(long, global = true, env = "BERTH_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print every action, cached or not
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// How progress is drawn on stderr
    #[arg(long, global = true, value_enum, default_value_t = Console::Auto)]
    pub console: Console,
    /// Never touch the network; fail if a blob is not cached
    #[arg(long, global = true)]
    pub offline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Console {
    /// Fancy on a terminal, plain otherwise
    Auto,
    Fancy,
    Plain,
    None,
}
