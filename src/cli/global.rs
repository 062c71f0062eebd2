//! Flags shared by every subcommand (uv's `GlobalArgs`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cache::resolve_cache_dir;
use crate::error::{Error, Result};
use crate::exec::default_jobs;
use crate::report::{ConsoleMode, ConsoleReporter, Reporter, Verbosity};
use crate::session::{RemoteCacheChoice, Session, SessionOptions};
use crate::workspace::RemoteCacheUrl;

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
    /// Run `workspace_status(command)` and fill `{KEY}` in `tag`, `remote_tags`, `labels` and `annotations`
    #[arg(long, global = true)]
    pub stamp: bool,
    /// Wall-clock limit of evaluating one BUILD or `.star` file, in seconds
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60.0)]
    pub load_timeout: f64,
    /// Use this remote cache (grpc://host:port[/instance], grpcs://..., oci://host[:port]/repo) instead of
    /// `remote_cache(...)` of `WORKSPACE.star`
    #[arg(long, global = true, env = "BERTH_REMOTE_CACHE", value_name = "URL", value_parser = RemoteCacheUrl::parse)]
    pub remote_cache: Option<RemoteCacheUrl>,
    /// Build without any remote cache (wins over --remote-cache, `BERTH_REMOTE_CACHE` and the workspace)
    #[arg(long, global = true)]
    pub no_remote_cache: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Console {
    /// Fancy on a terminal, plain otherwise
    Auto,
    Fancy,
    Plain,
    None,
}

impl GlobalArgs {
    /// The console reporter these flags ask for.
    pub fn reporter(&self) -> ConsoleReporter {
        let mode = match self.console {
            Console::Auto => ConsoleMode::Auto,
            Console::Fancy => ConsoleMode::Fancy,
            Console::Plain => ConsoleMode::Plain,
            Console::None => ConsoleMode::None,
        };
        let verbosity = match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        };
        ConsoleReporter::new(mode, verbosity)
    }

    /// Hands `--load-timeout` to the loader.
    pub fn apply_load_timeout(&self) -> Result<()> {
        if !(self.load_timeout.is_finite() && self.load_timeout > 0.0 && self.load_timeout <= 86_400.0) {
            return Err(Error::user(format!("`--load-timeout {}` is not a number of seconds", self.load_timeout))
                .with_hint("give a positive number of seconds, at most a day, e.g. `--load-timeout 120`"));
        }
        crate::frontend::set_load_timeout(std::time::Duration::from_secs_f64(self.load_timeout));
        Ok(())
    }

    /// Opens the workspace around the current directory and the cache.
    pub fn session<'a>(&self, reporter: &'a dyn Reporter) -> Result<Session<'a>> {
        let options = SessionOptions {
            cache_dir: resolve_cache_dir(self.cache_dir.as_deref())?,
            jobs: self.jobs.unwrap_or_else(default_jobs).max(1),
            offline: self.offline,
            stamp: self.stamp,
            remote_cache: match (self.no_remote_cache, &self.remote_cache) {
                (true, _) => RemoteCacheChoice::Off,
                (false, Some(url)) => RemoteCacheChoice::Url(url.clone()),
                (false, None) => RemoteCacheChoice::Workspace,
            },
        };
        Session::open(&current_dir()?, options, reporter)
    }
}

/// The directory berth was started in: where the workspace is looked for,
/// and the package that relative labels and patterns belong to.
pub fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().map_err(|error| Error::environment(format!("Cannot read the current directory: {error}")))
}
