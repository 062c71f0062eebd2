//! `berth pin IMAGE:TAG`: resolves a tag to a digest with the registry and
//! prints a ready `oci_pull_image(...)` on stdout.

use clap::Args;

use crate::cli::GlobalArgs;
use crate::registry::{Client, ClientOptions, Reference};
use crate::workspace::RegistrySetting;

#[derive(Debug, Args)]
pub struct PinArgs {
    /// `registry/repository:tag` to resolve
    pub image: String,
    /// The target name to print (default: the repository's last component)
    #[arg(long)]
    pub name: Option<String>,
    /// Ask the registry without credentials
    #[arg(long)]
    pub anonymous: bool,
}

pub fn run(args: PinArgs, global: &GlobalArgs) -> anyhow::Result<i32> {
    let reference = Reference::parse(&args.image).map_err(crate::error::Error::from)?;
    if reference.tag.is_none() && reference.digest.is_none() {
        return Err(crate::error::Error::user(format!(
            "`{}` names no tag to pin\nhint: write `{}:<tag>`",
            args.image, args.image
        ))
        .into());
    }
    let client = Client::new(client_options(global)).map_err(crate::error::Error::from)?;
    let (digest, _media_type) = client.resolve_tag(&reference, args.anonymous).map_err(crate::error::Error::from)?;
    let name = args.name.unwrap_or_else(|| target_name(&reference.image.repository));
    let anonymous = if args.anonymous { "    anonymous = True,\n" } else { "" };
    print!(
        "oci_pull_image(\n    name = \"{name}\",\n    repository = \"{}\",\n    digest = \"{digest}\",\n{anonymous})\n",
        reference.image
    );
    Ok(0)
}

/// The registry client options for this invocation.
///
/// Integration point: `registry(...)` settings come from `WORKSPACE.star`
/// once workspace evaluation lands; until then plain-HTTP registries are
/// named in `BERTH_INSECURE_REGISTRIES` (comma-separated `host:port`).
pub(crate) fn client_options(global: &GlobalArgs) -> ClientOptions {
    let registries = std::env::var("BERTH_INSECURE_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| RegistrySetting { host: host.to_owned(), mirrors: Vec::new(), insecure: true })
        .collect();
    ClientOptions { registries, offline: global.offline, ..ClientOptions::default() }
}

/// `team/web-app` → `web-app`; characters a target name cannot hold become `_`.
fn target_name(repository: &str) -> String {
    let last = repository.rsplit('/').next().unwrap_or(repository);
    last.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_come_from_the_last_component() {
        assert_eq!(target_name("team/web-app"), "web-app");
        assert_eq!(target_name("python3.12"), "python3_12");
    }
}
