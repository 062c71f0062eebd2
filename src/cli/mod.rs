//! The command line: one file per subcommand. Each turns its flags into a
//! validated request, calls the engine, and prints data on stdout through
//! `stdout::Stdout` (talk goes to stderr through `report`).
//!
//! Every command returns the crate's `Result`; `main` renders an error and
//! picks the exit code from its kind, here and nowhere else.

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
mod stdout;

use clap::{Parser, Subcommand};

use crate::error::{Error, ErrorKind};

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
    // Run as a user, berth is root of a user namespace of its own
    // (`exec::rootless`); this must come while the process has one thread.
    crate::exec::enter_rootless();
    // berth started as its own watchdog (`exec::install_signal_handlers`).
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|arg| arg == crate::exec::WATCHDOG_ARG) {
        let owner = args.next().map(|owner| owner.to_string_lossy().into_owned()).unwrap_or_default();
        return crate::exec::run_watchdog(&owner);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { 2 } else { 0 };
        }
    };
    if let Err(error) = cli.global.apply_load_timeout() {
        eprintln!("error: {error}");
        return 2;
    }
    // SIGINT, SIGTERM, SIGHUP: delete running containers, unmount their
    // roots, exit 130/143/129.
    crate::exec::install_signal_handlers(|signal| {
        let name = match signal {
            crate::sys::SIGINT => "SIGINT",
            crate::sys::SIGTERM => "SIGTERM",
            _ => "SIGHUP",
        };
        eprintln!("error: Interrupted by {name}; running containers were deleted");
    });
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
    // The cgroup this berth's containers shared (they are all gone now).
    crate::exec::release_cgroup();
    if let (Some(warning), false) = (crate::exec::runc_warning(), cli.global.quiet) {
        eprintln!("warning: {warning}");
    }
    match result {
        Ok(code) => code,
        Err(error) => report_error(&error),
    }
}

/// Prints an error (message, location, hint) and picks the exit code from
/// its kind: 1 for bad input, 3 for the environment, 1 for a bug in berth.
fn report_error(error: &Error) -> i32 {
    eprint!("{}", render_error(error));
    error.kind.exit_code()
}

/// `error: ` and the error; a bug in berth also asks for a report.
fn render_error(error: &Error) -> String {
    let mut text = format!("error: {error}\n");
    if error.kind == ErrorKind::Internal {
        text.push_str("hint: this is a bug in berth; please report it with the command that caused it\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::Location;

    #[test]
    fn the_exit_code_is_the_kinds() {
        assert_eq!(report_error(&Error::user("Invalid label `//a:`")), 1);
        assert_eq!(report_error(&Error::environment("`runc` was not found on `PATH`")), 3);
        assert_eq!(report_error(&Error::internal("Blob `sha256:00` is not in the cache")), 1);
    }

    #[test]
    fn errors_render_with_location_and_hint_and_bugs_ask_for_a_report() {
        let located = Error::user("Unknown attribute `srcz`")
            .at(Location { path: "app/BUILD.star".into(), line: 3, column: 1 })
            .with_hint("did you mean `srcs`?");
        assert_eq!(
            render_error(&located),
            "error: Unknown attribute `srcz`\n  --> app/BUILD.star:3:1\nhint: did you mean `srcs`?\n"
        );
        assert_eq!(
            render_error(&Error::internal("Blob `x` is not in the cache")),
            "error: Blob `x` is not in the cache\nhint: this is a bug in berth; please report it with the command that caused it\n"
        );
    }
}
