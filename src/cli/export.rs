//! `berth export LABEL --format oci-archive|docker-archive -o FILE`

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The image to export
    pub label: String,
    /// The archive format
    #[arg(long, value_enum)]
    pub format: ArchiveFormat,
    /// Where to write the archive
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveFormat {
    /// An OCI image layout in a tar (skopeo's `oci-archive:`)
    OciArchive,
    /// `docker save` format, for `docker load` and `podman load`
    DockerArchive,
}

pub fn run(_args: ExportArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`berth export` is not wired up yet")
}
