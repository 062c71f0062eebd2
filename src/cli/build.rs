//! `berth build [PATTERN...]`: builds the targets, writes `berth-out/`, and
//! prints one line per requested target: its label and main digest.

use clap::Args;

use crate::cli::stdout::Stdout;
use crate::cli::GlobalArgs;
use crate::error::Result;
use crate::session::{already_in_out_dir, write_outputs};
use crate::workspace::Pattern;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Target patterns: `//...`, `//pkg/...`, `//pkg:all`, `//pkg:name`
    #[arg(default_value = "//...")]
    pub patterns: Vec<String>,
}

pub fn run(args: BuildArgs, global: &GlobalArgs) -> Result<i32> {
    let reporter = global.reporter();
    let session = global.session(&reporter)?;
    let patterns = parse_patterns(&args.patterns, &session.current_package())?;
    let (cas, out_dir) = (&session.cache.cas, session.workspace.out_dir());
    let built = session.build_checked(&patterns, false, &|built, label, digest| {
        already_in_out_dir(cas, &out_dir, built, label, digest)
    })?;
    let not_fetched = write_outputs(cas, &out_dir, &built)?;
    if !global.quiet {
        for (label, count) in not_fetched {
            eprintln!(
                "note: `berth-out/` for `{label}` leaves out {count} base layer(s) that were not downloaded (lazy pull); `berth export` and `berth push` fetch or mount them"
            );
        }
    }
    let mut stdout = Stdout::lock();
    for (label, output) in &built.targets {
        stdout.print(format_args!("{label} {}\n", output.digest()))?;
    }
    stdout.flush()?;
    // The process exits next; freeing a 30,000-entry analysis piece by piece
    // would take longer than the no-op build it belongs to.
    std::mem::forget(built);
    Ok(0)
}

/// Parses command-line patterns (`//app:img`, `//...`, and, relative to
/// the current directory's package, `:img` or `...`).
fn parse_patterns(texts: &[String], package: &str) -> Result<Vec<Pattern>> {
    Ok(texts.iter().map(|text| Pattern::parse_in(text, package)).collect::<Result<_, _>>()?)
}
