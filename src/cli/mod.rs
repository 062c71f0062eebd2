//! The command line: one file per subcommand. Each turns its flags into a
//! validated request, calls the engine, and prints data on stdout (talk goes
//! to stderr through `report`).

mod build;
mod cache;
mod clean;
mod explain;
mod export;
mod global;
mod pin;
mod push;
mod query;
mod run;

use clap::{Parser, Subcommand};

pub use global::GlobalArgs;

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "Reproducible, cached OCI image builds from Starlark BUILD files")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build targets (default `//...`) into `berth-out/`
    Build(build::BuildArgs),
    /// Run an image with runc, stdio attached, its exit code passed through
    Run(run::RunArgs),
    /// Push an image to a registry and print the pushed manifest digest
    Push(push::PushArgs),
    /// Write an image as an OCI or Docker archive
    Export(export::ExportArgs),
    /// Query the target graph: `//...`, `deps(L)`, `rdeps(U, L)`
    Query(query::QueryArgs),
    /// Resolve IMAGE:TAG to a digest and print a ready `oci_pull_image(...)`
    Pin(pin::PinArgs),
    /// Say why each action of the last build ran or was cached
    Explain(explain::ExplainArgs),
    /// Remove `berth-out/` (and the cache with `--cache`)
    Clean(clean::CleanArgs),
    /// Inspect or trim the cache
    Cache(cache::CacheArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Build(args) => build::run(args, &cli.global),
        Command::Run(args) => run::run(args, &cli.global),
        Command::Push(args) => push::run(args, &cli.global),
        Command::Export(args) => export::run(args, &cli.global),
        Command::Query(args) => query::run(args, &cli.global),
        Command::Pin(args) => pin::run(args, &cli.global),
        Command::Explain(args) => explain::run(args, &cli.global),
        Command::Clean(args) => clean::run(args, &cli.global),
        Command::Cache(args) => cache::run(args, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(error) => report_error(&error),
    }
}

/// Prints an error (with its `hint:` lines) and picks the exit code from its
/// kind: 1 for bad input, 3 for the environment.
fn report_error(error: &anyhow::Error) -> i32 {
    let kind = error.downcast_ref::<crate::error::Error>().map(|error| error.kind);
    eprintln!("error: {error:#}");
    match kind {
        Some(crate::error::ErrorKind::Internal) => {
            eprintln!("hint: this is a bug in berth; please report it with the command that caused it");
            1
        }
        Some(kind) => kind.exit_code(),
        None => 1,
    }
}
