//! Reading a step's outputs back from the container's root after the
//! process ended: every output path (with its parent directories) minus
//! what `exclude` matches, sorted by path, with owners and modes as the
//! step left them, never following a symlink.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::actions::runtime::{check_deadline, RuntimeError};
use crate::error::{Error, Result};

/// One entry of the captured layer, as the step left it on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Absolute path in the layer.
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub body: CapturedBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapturedBody {
    Directory,
    /// A file of the container's root; files sharing an inode stay hard links.
    File {
        source: PathBuf,
        size: u64,
    },
    Symlink {
        target: String,
    },
}

/// Splits an absolute container path into components; refuses relative
/// paths and `..`.
fn container_components(path: &str) -> Result<Vec<&str>> {
    if !path.starts_with('/') {
        return Err(
            Error::user(format!("Output `{path}` is not an absolute path")).with_hint(format!("write it as `/{path}`"))
        );
    }
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(Error::user(format!("Output `{path}` has a `..` component"))),
            _ => components.push(component),
        }
    }
    Ok(components)
}

fn exclude_set(patterns: &[String]) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob =
            Glob::new(pattern).map_err(|error| Error::user(format!("Bad `exclude` glob `{pattern}`: {error}")))?;
        builder.add(glob);
    }
    builder.build().map_err(|error| Error::user(format!("Bad `exclude` globs: {error}")))
}

/// The entries of the captured layer: every output (with its parent
/// directories) minus what `exclude` matches, sorted by path, owners and
/// modes as the step left them. Reads the root after the container is gone,
/// never following a symlink: an output below a symlink is refused.
///
/// The deadline is checked before each directory is read.
pub fn capture(
    root: &Path,
    outputs: &[String],
    exclude: &[String],
    deadline: Option<Instant>,
) -> Result<Vec<Captured>, RuntimeError> {
    check_deadline(deadline, "capturing the outputs")?;
    let exclude = exclude_set(exclude)?;
    let excluded = |path: &str| {
        let name = path.rsplit('/').next().unwrap_or(path);
        exclude.is_match(path) || exclude.is_match(name)
    };
    let mut entries: BTreeMap<String, Captured> = BTreeMap::new();
    for output in outputs {
        let components = container_components(output)?;
        let Some((name, parents)) = components.split_last() else {
            return Err(Error::user("Output `/` would capture the whole root")
                .with_hint("name the directories to capture")
                .into());
        };
        let mut host = root.to_path_buf();
        let mut parent_entries = Vec::new();
        for (index, component) in parents.iter().enumerate() {
            host.push(component);
            let shown = format!("/{}", parents[..=index].join("/"));
            let metadata = fs::symlink_metadata(&host).map_err(|_| {
                Error::user(format!("Output `{output}` was not created by the step (`{shown}` does not exist)"))
            })?;
            if metadata.file_type().is_symlink() {
                return Err(Error::user(format!("Output `{output}` goes through the symlink `{shown}`"))
                    .with_hint("name the path the symlink points to")
                    .into());
            }
            if !metadata.is_dir() {
                return Err(
                    Error::user(format!("Output `{output}` is below `{shown}`, which is not a directory")).into()
                );
            }
            parent_entries.push(directory_entry(shown, &metadata));
        }
        host.push(name);
        let metadata = fs::symlink_metadata(&host)
            .map_err(|_| Error::user(format!("Output `{output}` was not created by the step")))?;
        for entry in parent_entries {
            entries.entry(entry.path.clone()).or_insert(entry);
        }
        let dest = format!("/{}", components.join("/"));
        if excluded(&dest) {
            continue;
        }
        add_tree(&host, dest, &metadata, &excluded, deadline, &mut entries)?;
    }
    Ok(entries.into_values().collect())
}

fn directory_entry(path: String, metadata: &fs::Metadata) -> Captured {
    Captured {
        path,
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        body: CapturedBody::Directory,
    }
}

fn add_tree(
    host: &Path,
    dest: String,
    metadata: &fs::Metadata,
    excluded: &dyn Fn(&str) -> bool,
    deadline: Option<Instant>,
    entries: &mut BTreeMap<String, Captured>,
) -> Result<(), RuntimeError> {
    let file_type = metadata.file_type();
    let body = if file_type.is_dir() {
        CapturedBody::Directory
    } else if file_type.is_file() {
        CapturedBody::File { source: host.to_path_buf(), size: metadata.len() }
    } else if file_type.is_symlink() {
        let target = fs::read_link(host)
            .map_err(|error| Error::environment(format!("Cannot read the symlink `{dest}`: {error}")))?;
        let Some(target) = target.to_str() else {
            return Err(Error::user(format!("The target of the symlink `{dest}` is not UTF-8")).into());
        };
        CapturedBody::Symlink { target: target.to_owned() }
    } else {
        // Sockets, fifos and device nodes do not belong in a layer.
        return Ok(());
    };
    let is_dir = body == CapturedBody::Directory;
    entries.insert(
        dest.clone(),
        Captured { path: dest.clone(), mode: metadata.mode() & 0o7777, uid: metadata.uid(), gid: metadata.gid(), body },
    );
    if is_dir {
        check_deadline(deadline, "capturing the outputs")?;
        let read_error = |error| Error::environment(format!("Cannot read the output directory `{dest}`: {error}"));
        let mut children: Vec<_> =
            fs::read_dir(host).map_err(read_error)?.collect::<Result<_, _>>().map_err(read_error)?;
        children.sort_by_key(|child| child.file_name());
        for child in children {
            let name = child.file_name();
            let Some(name) = name.to_str() else {
                return Err(Error::user(format!("A file name under `{dest}` is not UTF-8")).into());
            };
            let child_dest = format!("{dest}/{name}");
            if excluded(&child_dest) {
                continue;
            }
            let child_host = child.path();
            let child_metadata = fs::symlink_metadata(&child_host)
                .map_err(|error| Error::environment(format!("Cannot read `{child_dest}`: {error}")))?;
            add_tree(&child_host, child_dest, &child_metadata, excluded, deadline, entries)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn capture_keeps_outputs_minus_exclude_sorted() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        fs::create_dir_all(out.join("sub")).unwrap();
        fs::write(out.join("b.txt"), "b").unwrap();
        fs::write(out.join("a.o"), "o").unwrap();
        fs::write(out.join("sub/c"), "c").unwrap();
        fs::write(root.path().join("other"), "x").unwrap();
        let entries = capture(root.path(), &strings(&["/out"]), &strings(&["*.o"]), None).unwrap();
        let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(paths, ["/out", "/out/b.txt", "/out/sub", "/out/sub/c"]);
    }

    #[test]
    fn capture_refuses_symlinked_parents_and_missing_outputs() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("out")).unwrap();
        assert!(capture(root.path(), &strings(&["/out/passwd"]), &[], None)
            .unwrap_err()
            .to_string()
            .contains("symlink"));
        assert!(capture(root.path(), &strings(&["/missing"]), &[], None).is_err());
        assert!(capture(root.path(), &strings(&["relative"]), &[], None).is_err());
        // The symlink itself is captured as a symlink, not followed.
        let entries = capture(root.path(), &strings(&["/out"]), &[], None).unwrap();
        assert_eq!(entries[0].body, CapturedBody::Symlink { target: "/etc".into() });
    }

    #[test]
    fn a_passed_deadline_stops_the_capture() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("out")).unwrap();
        let past = Some(Instant::now());
        let error = capture(root.path(), &strings(&["/out"]), &[], past).unwrap_err();
        assert!(matches!(error, RuntimeError::DeadlinePassed { stage: "capturing the outputs" }), "{error}");
    }
}
