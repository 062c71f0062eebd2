//! `berth pin IMAGE:TAG`: resolves a tag to a digest with the registry and
//! prints a ready `oci_pull_image(...)` on stdout.

use clap::Args;

use crate::cli::global::current_dir;
use crate::cli::stdout::Stdout;
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::registry::{Client, ClientOptions, Reference};
use crate::workspace::{find_root, WorkspaceError};

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

pub fn run(args: PinArgs, global: &GlobalArgs) -> Result<i32> {
    let reference = Reference::parse(&args.image)?;
    if reference.tag.is_none() && reference.digest.is_none() {
        return Err(Error::user(format!("`{}` names no tag to pin", args.image))
            .with_hint(format!("write `{}:<tag>`", args.image)));
    }
    let client = Client::new(client_options(global)?)?;
    let (digest, _media_type) = client.resolve_tag(&reference, args.anonymous)?;
    let name = args.name.unwrap_or_else(|| target_name(&reference.image.repository));
    let anonymous = if args.anonymous { "    anonymous = True,\n" } else { "" };
    let mut stdout = Stdout::lock();
    stdout.print(format_args!(
        "oci_pull_image(\n    name = \"{name}\",\n    repository = \"{}\",\n    digest = \"{digest}\",\n{anonymous})\n",
        reference.image
    ))?;
    stdout.flush()?;
    Ok(0)
}

/// The registry client options for this invocation: `registry(...)`
/// settings (mirrors, plain HTTP) from the enclosing workspace's
/// `WORKSPACE.star`, if there is one; none outside a workspace.
pub(crate) fn client_options(global: &GlobalArgs) -> Result<ClientOptions> {
    let (registries, workspace_root) = match find_root(&current_dir()?) {
        Ok(root) => (crate::frontend::open_workspace(&root)?.settings.registries, Some(root)),
        Err(WorkspaceError::NotFound { .. }) => (Vec::new(), None),
        Err(error) => return Err(error.into()),
    };
    Ok(ClientOptions { registries, workspace_root, offline: global.offline, ..ClientOptions::default() })
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
