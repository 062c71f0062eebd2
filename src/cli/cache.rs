//! `berth cache stats|gc [--max-size SIZE]|verify [--repair]`: measure the
//! cache, evict least recently used entries until it fits (under the
//! exclusive lock, so it is safe while other builds run: it waits for
//! them), or check every blob, action result and extracted layer.

use clap::{Args, Subcommand};

use std::path::Path;

use crate::cache::{gc, resolve_cache_dir, stats, verify_cache, CacheLock};
use crate::cli::stdout::Stdout;
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::oci::verify_layer_store;
use crate::remote::LastRemoteBuild;

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
    /// Hash every blob, check every action result and extracted layer;
    /// exit 1 if something is bad and not repaired
    Verify {
        /// Remove what is bad (under the exclusive lock); the next build
        /// rebuilds or fetches it again
        #[arg(long)]
        repair: bool,
    },
}

pub fn run(args: CacheArgs, global: &GlobalArgs) -> Result<i32> {
    let dir = resolve_cache_dir(global.cache_dir.as_deref())?;
    let mut stdout = Stdout::lock();
    match args.command {
        CacheCommand::Stats => {
            let stats = stats(&dir)?;
            stdout.print(format_args!(
                "cache:       {}\ncas blobs:   {} ({})\nac entries:  {} ({})\nunpacked:    {} layers ({})\nother:       {}\ntotal:       {}\n",
                dir.display(),
                stats.cas_blobs,
                human_size(stats.cas_bytes),
                stats.ac_entries,
                human_size(stats.ac_bytes),
                stats.extracted_layers,
                human_size(stats.extracted_bytes),
                human_size(stats.other_bytes),
                human_size(stats.total_bytes())
            ))?;
            if let Some(last) = LastRemoteBuild::load(&dir) {
                let stats = last.stats;
                stdout.print(format_args!(
                    "remote:      {} (last build: {} of {} lookups hit, {} downloaded, {} uploaded)\n",
                    last.remote,
                    stats.hits,
                    stats.lookups,
                    human_size(stats.downloaded),
                    human_size(stats.uploaded)
                ))?;
            }
        }
        CacheCommand::Verify { repair } => {
            let _lock = if repair { Some(exclusive_lock(&dir, global.quiet)?) } else { None };
            return verify(&dir, repair, global.quiet, &mut stdout);
        }
        CacheCommand::Gc { max_size } => {
            let max_size = parse_size(&max_size)?;
            let lock = exclusive_lock(&dir, global.quiet)?;
            // Containers a killed berth left go before their roots do.
            crate::exec::sweep(&dir, None);
            let report = gc(&dir, max_size, &lock)?;
            stdout.print(format_args!(
                "Removed {} action cache entries and {} blobs ({}); the cache holds {}\n",
                report.removed_ac_entries,
                report.removed_blobs,
                human_size(report.removed_bytes),
                human_size(report.remaining_bytes)
            ))?;
        }
    }
    stdout.flush()?;
    Ok(0)
}

/// The cache's exclusive lock, waiting (and saying so) for running builds.
fn exclusive_lock(dir: &Path, quiet: bool) -> Result<CacheLock> {
    Ok(match CacheLock::try_exclusive(dir)? {
        Some(lock) => lock,
        None => {
            if !quiet {
                eprintln!("Waiting for running builds to release the cache at `{}`", dir.display());
            }
            CacheLock::exclusive(dir)?
        }
    })
}

/// `berth cache verify`: counts on stdout, what is bad on stderr; 1 when
/// something is bad and was not repaired.
fn verify(dir: &Path, repair: bool, quiet: bool, stdout: &mut Stdout) -> Result<i32> {
    let cache = verify_cache(dir, repair)?;
    let layers = verify_layer_store(dir, repair)
        .map_err(|error| Error::environment(format!("Cannot check the layers under `{}`: {error}", dir.display())))?;
    stdout.print(format_args!(
        "blobs:            {} checked, {} corrupt\naction results:   {} checked, {} bad\nextracted layers: {} checked, {} bad\n",
        cache.blobs,
        cache.bad_blobs.len(),
        cache.entries,
        cache.bad_entries.len(),
        layers.checked,
        layers.bad.len()
    ))?;
    let bad = cache.bad_blobs.len() + cache.bad_entries.len() + layers.bad.len();
    if repair && bad > 0 {
        stdout.print(format_args!("removed:          {}\n", cache.removed + layers.removed))?;
    }
    stdout.flush()?;
    if !quiet {
        for name in &cache.bad_blobs {
            eprintln!("corrupt blob `sha256:{name}`");
        }
        for name in &cache.bad_entries {
            eprintln!("bad action result `ac/{name}` (unreadable, or it names a missing or corrupt blob)");
        }
        for (name, problem) in &layers.bad {
            eprintln!("bad extracted layer `layers/{name}`: {problem}");
        }
        if bad > 0 && !repair {
            eprintln!(
                "hint: `berth cache verify --repair` removes them; the next build rebuilds or fetches them again"
            );
        }
    }
    Ok(if bad > 0 && !repair { 1 } else { 0 })
}

const UNITS: [(&str, u64); 5] = [("B", 1), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)];

/// Parses `500M`, `10G`, `1.5G`, `750K`, `1024` (bytes), with an optional
/// `B` or `iB` after the unit, case-insensitive; units are powers of 1024.
pub(crate) fn parse_size(text: &str) -> Result<u64> {
    let invalid = || {
        Error::user(format!("Invalid size `{text}`: expected a number with an optional unit K, M, G or T"))
            .with_hint("for example `--max-size 500M` or `--max-size 10G`")
    };
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.strip_suffix("IB").or_else(|| unit.strip_suffix('B').filter(|u| !u.is_empty())).unwrap_or(&unit);
    let multiplier = match unit {
        "" => 1,
        unit => UNITS.iter().find(|(name, _)| *name == unit).map(|(_, factor)| *factor).ok_or_else(invalid)?,
    };
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as u64)
}

/// `1536` → `1.5 KiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    let (name, factor) = UNITS.iter().rev().find(|(_, factor)| bytes >= *factor).copied().unwrap_or(("B", 1));
    if factor == 1 {
        format!("{bytes} B")
    } else {
        format!("{:.1} {name}iB", bytes as f64 / factor as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("10g").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("2KB").unwrap(), 2048);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("0").unwrap(), 0);
        for bad in ["", "M", "10X", "-5M", "1.2.3G", "ten"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(10 << 30), "10.0 GiB");
    }
}
