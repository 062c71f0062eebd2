//! `deb_layer`: one reproducible layer from the data archives of `.deb`
//! files, for Debian-based images built without a registry.
//!
//! Analysis registers one [`DebLayer`] per `deb_layer` target, with the
//! `.deb` source files as inputs (in `debs` order) and their pinned sha256s
//! as params. Executing it checks every package against its pin, reads it
//! with `oci::deb`, merges the packages' entries (a later package may repeat
//! a path only with identical contents, or as a directory), and packs the
//! union with `oci::LayerBuilder` like every other layer: sorted, mtime
//! `SOURCE_DATE_EPOCH`, no user or group names, but with the packages' own
//! modes, owners, symlinks and hard links. Output: a [`DebLayerOutput`] (the
//! layer, and the packages that went in).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::actions::{
    Action, ActionContext, ActionResult, DebLayerOutput, DebPackage, Input, LayerOutput, ResolvedInput,
};
use crate::cache::{CanonicalJson, Digest};
use crate::error::{Diagnose, ErrorKind, Result};
use crate::oci::deb::{self, Deb, DebControl, DebEntry, DebEntryKind, DebError};
use crate::oci::{Body, Compression, EntryMeta, FileSource, LayerBuilder, OciError};

/// The `deb_layer` action. Build it with [`DebLayer::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebLayer {
    debs: Vec<PinnedDeb>,
    compression: Compression,
    source_date_epoch: u64,
}

/// A `.deb` source file and the digest it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedDeb {
    /// Workspace-relative path (`third_party/debs/libc6_2.36-9_amd64.deb`).
    pub path: PathBuf,
    pub sha256: Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum DebLayerError {
    #[error("`debs` has {debs} file(s) but `sha256s` has {sha256s}")]
    CountMismatch { debs: usize, sha256s: usize },
    #[error("`deb_layer` needs at least one .deb in `debs`")]
    NoDebs,
    #[error("The sha256 `{text}` for `{}` is not a sha256 digest", path.display())]
    BadSha256 { path: PathBuf, text: String },
    #[error("`{}` has sha256 `{}`, but `deb_layer` expects `{}`", path.display(), actual.hex(), expected.hex())]
    Sha256Mismatch { path: PathBuf, expected: Digest, actual: Digest },
    #[error("`{}` changed while it was read (it hashed to `{expected}` before the build, `{actual}` now)", path.display())]
    Changed { path: PathBuf, expected: Digest, actual: Digest },
    #[error("Cannot read `{}`: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("`{}` is not a valid .deb: {source}", path.display())]
    Deb { path: PathBuf, source: DebError },
    #[error("`{path}` is {first_what} in {first} but {second_what} in {second}")]
    Conflict { path: String, first: String, first_what: String, second: String, second_what: String },
    #[error("`deb_layer` was given {got} input(s) for {expected} .deb file(s)")]
    Inputs { got: usize, expected: usize },
    #[error(transparent)]
    Layer(#[from] OciError),
}

impl Diagnose for DebLayerError {
    fn kind(&self) -> ErrorKind {
        match self {
            DebLayerError::Layer(error) => error.kind(),
            DebLayerError::Read { source, .. } if source.kind() != io::ErrorKind::NotFound => ErrorKind::Environment,
            DebLayerError::Inputs { .. } => ErrorKind::Internal,
            _ => ErrorKind::User,
        }
    }

    fn hint(&self) -> Option<String> {
        let hint = match self {
            DebLayerError::Layer(error) => return error.hint(),
            DebLayerError::CountMismatch { .. } => "give one sha256 per .deb, in the same order",
            DebLayerError::BadSha256 { .. } => "write 64 lowercase hex digits, with or without `sha256:`",
            DebLayerError::Sha256Mismatch { .. } => {
                "re-run `scripts/fetch-debs.sh` to fetch the pinned file, or update the lock (`scripts/fetch-debs.sh --update`) and the sha256s"
            }
            DebLayerError::Changed { .. } => "do not change sources during a build; rerun it",
            DebLayerError::Deb { .. } => "re-run `scripts/fetch-debs.sh`; the file may be truncated",
            DebLayerError::Conflict { .. } => {
                "two packages of one `deb_layer` may share a path only with identical contents; drop one of them or put them in separate layers"
            }
            DebLayerError::NoDebs | DebLayerError::Read { .. } | DebLayerError::Inputs { .. } => return None,
        };
        Some(hint.to_owned())
    }
}

impl DebLayer {
    /// The action for a `deb_layer` target: `debs` are the workspace-relative
    /// paths of its `.deb` source files, `sha256s` its attribute as written
    /// (`sha256:<hex>` or bare hex), `compression` the layer's compression.
    pub fn new(
        debs: Vec<PathBuf>,
        sha256s: &[String],
        compression: Compression,
        source_date_epoch: u64,
    ) -> Result<DebLayer, DebLayerError> {
        if debs.len() != sha256s.len() {
            return Err(DebLayerError::CountMismatch { debs: debs.len(), sha256s: sha256s.len() });
        }
        if debs.is_empty() {
            return Err(DebLayerError::NoDebs);
        }
        let debs = debs
            .into_iter()
            .zip(sha256s)
            .map(|(path, text)| match Digest::parse_lenient(text) {
                Ok(sha256) => Ok(PinnedDeb { path, sha256 }),
                Err(_) => Err(DebLayerError::BadSha256 { path, text: text.clone() }),
            })
            .collect::<Result<_, _>>()?;
        Ok(DebLayer { debs, compression, source_date_epoch })
    }

    pub fn debs(&self) -> &[PinnedDeb] {
        &self.debs
    }

    /// Reads every input, checked against its pin, and merges the packages.
    fn read_union(&self, ctx: &ActionContext<'_>) -> Result<(Vec<DebControl>, Vec<DebEntry>), DebLayerError> {
        if ctx.inputs.len() != self.debs.len() {
            return Err(DebLayerError::Inputs { got: ctx.inputs.len(), expected: self.debs.len() });
        }
        let mut packages = Vec::with_capacity(self.debs.len());
        for (pinned, input) in self.debs.iter().zip(&ctx.inputs) {
            let ResolvedInput::Source { path, digest, .. } = input else {
                return Err(DebLayerError::Inputs { got: ctx.inputs.len(), expected: self.debs.len() });
            };
            let bytes = fs::read(path).map_err(|source| DebLayerError::Read { path: pinned.path.clone(), source })?;
            packages.push((pinned.path.clone(), read_pinned(pinned, *digest, &bytes)?));
        }
        let controls = packages.iter().map(|(_, deb)| deb.control.clone()).collect();
        Ok((controls, union(packages)?))
    }
}

/// Checks one package's bytes against its pin (and against the digest the
/// scheduler saw, so a file edited mid-build fails instead of being cached),
/// then reads it.
pub fn read_pinned(pinned: &PinnedDeb, seen: Digest, bytes: &[u8]) -> Result<Deb, DebLayerError> {
    let actual = Digest::of(bytes);
    if actual != pinned.sha256 {
        return Err(DebLayerError::Sha256Mismatch { path: pinned.path.clone(), expected: pinned.sha256, actual });
    }
    if actual != seen {
        return Err(DebLayerError::Changed { path: pinned.path.clone(), expected: seen, actual });
    }
    deb::read_deb(bytes).map_err(|source| DebLayerError::Deb { path: pinned.path.clone(), source })
}

/// Merges packages in order. A path that a later package repeats must be a
/// directory in both (the later one's mode and owner win, as when dpkg
/// installs them in that order) or identical in every field; anything else
/// is a conflict naming both packages. Returns the entries sorted by path.
pub fn union(packages: Vec<(PathBuf, Deb)>) -> Result<Vec<DebEntry>, DebLayerError> {
    let names: Vec<String> = packages
        .iter()
        .map(|(path, deb)| format!("`{}` {} (`{}`)", deb.control.package, deb.control.version, path.display()))
        .collect();
    // Path → (index of the package that put it there, entry).
    let mut merged: BTreeMap<String, (usize, DebEntry)> = BTreeMap::new();
    for (index, (_, deb)) in packages.into_iter().enumerate() {
        for entry in deb.entries {
            match merged.get(&entry.path) {
                Some((_, old)) if old == &entry => {}
                Some((_, old)) if old.kind == DebEntryKind::Directory && entry.kind == DebEntryKind::Directory => {}
                Some((first, old)) => {
                    return Err(DebLayerError::Conflict {
                        path: entry.path.clone(),
                        first: names[*first].clone(),
                        first_what: describe(old),
                        second: names[index].clone(),
                        second_what: describe(&entry),
                    })
                }
                None => {}
            }
            merged.insert(entry.path.clone(), (index, entry));
        }
    }
    // A path under another package's symlink or file: dpkg would write
    // through the link (or fail); a layer can do neither, so name both.
    for (path, (index, entry)) in &merged {
        let mut parent = path.as_str();
        while let Some(cut) = parent.rfind('/').filter(|&cut| cut > 0) {
            parent = &path[..cut];
            match merged.get(parent) {
                Some((parent_index, parent_entry)) if parent_entry.kind != DebEntryKind::Directory => {
                    return Err(DebLayerError::Conflict {
                        path: parent.to_owned(),
                        first: names[*parent_index].clone(),
                        first_what: describe(parent_entry),
                        second: names[*index].clone(),
                        second_what: format!("the parent directory of {} `{path}`", kind_name(entry)),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(merged.into_values().map(|(_, entry)| entry).collect())
}

fn kind_name(entry: &DebEntry) -> &'static str {
    match entry.kind {
        DebEntryKind::File(_) => "file",
        DebEntryKind::Directory => "directory",
        DebEntryKind::Symlink(_) => "symlink",
        DebEntryKind::HardLink(_) => "hard link",
    }
}

fn describe(entry: &DebEntry) -> String {
    let owner = format!("mode {:04o}, owner {}:{}", entry.mode, entry.uid, entry.gid);
    match &entry.kind {
        DebEntryKind::File(data) => {
            format!("a file of {} bytes (sha256 `{}`, {owner})", data.len(), Digest::of(data).hex())
        }
        DebEntryKind::Directory => format!("a directory ({owner})"),
        DebEntryKind::Symlink(target) => format!("a symlink to `{target}`"),
        DebEntryKind::HardLink(target) => format!("a hard link to `{target}` ({owner})"),
    }
}

impl Action for DebLayer {
    fn kind(&self) -> &'static str {
        "deb_layer"
    }

    fn kind_version(&self) -> u32 {
        1
    }

    fn params(&self) -> CanonicalJson {
        // File names stay out: the input digests already say which bytes.
        CanonicalJson::of(&serde_json::json!({
            "sha256s": self.debs.iter().map(|deb| deb.sha256.to_string()).collect::<Vec<_>>(),
            "compression": self.compression,
            "source_date_epoch": self.source_date_epoch,
        }))
    }

    fn inputs(&self) -> Vec<Input> {
        self.debs.iter().map(|deb| Input::Source(deb.path.clone())).collect()
    }

    fn execute(&self, ctx: &ActionContext<'_>) -> Result<ActionResult> {
        let (controls, entries) = self.read_union(ctx)?;
        let mut builder = LayerBuilder::new(self.source_date_epoch);
        for entry in entries {
            let meta = EntryMeta { mode: Some(entry.mode), uid: entry.uid, gid: entry.gid, mtime: None };
            let body = match entry.kind {
                DebEntryKind::File(bytes) => {
                    Body::File { source: FileSource::Bytes(bytes), executable: entry.mode & 0o111 != 0 }
                }
                DebEntryKind::Directory => Body::Directory,
                DebEntryKind::Symlink(target) => Body::Symlink { target },
                DebEntryKind::HardLink(target) => Body::HardLink { target },
            };
            builder.add(&entry.path, meta, body).map_err(DebLayerError::from)?;
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let packed = builder.write_to_cas(ctx.cas(), self.compression, threads).map_err(DebLayerError::from)?;
        let packages = controls
            .into_iter()
            .map(|c| DebPackage { package: c.package, version: c.version, architecture: c.architecture })
            .collect();
        Ok(DebLayerOutput { layer: LayerOutput::packed(&packed), packages }.to_result())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::deb::DebCompression;

    fn control(package: &str) -> DebControl {
        DebControl { package: package.to_owned(), version: "1.0-1".to_owned(), architecture: "amd64".to_owned() }
    }

    fn entry(path: &str, kind: DebEntryKind, mode: u32) -> DebEntry {
        DebEntry { path: path.to_owned(), kind, mode, uid: 0, gid: 0 }
    }

    fn file(path: &str, data: &str) -> DebEntry {
        entry(path, DebEntryKind::File(data.as_bytes().to_vec()), 0o644)
    }

    fn dir(path: &str, mode: u32) -> DebEntry {
        entry(path, DebEntryKind::Directory, mode)
    }

    fn deb(package: &str, entries: Vec<DebEntry>) -> (PathBuf, Deb) {
        let path = PathBuf::from(format!("third_party/debs/{package}.deb"));
        (path, Deb { control: control(package), data_compression: DebCompression::Xz, entries })
    }

    #[test]
    fn new_checks_counts_and_digests() {
        let one = vec![PathBuf::from("a.deb")];
        assert!(matches!(
            DebLayer::new(one.clone(), &[], Compression::Gzip, 0),
            Err(DebLayerError::CountMismatch { debs: 1, sha256s: 0 })
        ));
        assert!(matches!(DebLayer::new(vec![], &[], Compression::Gzip, 0), Err(DebLayerError::NoDebs)));
        let error = DebLayer::new(one.clone(), &["abc".to_owned()], Compression::Gzip, 0).unwrap_err();
        assert!(error.to_string().starts_with("The sha256 `abc` for `a.deb` is not a sha256 digest"), "{error}");
        let bare = Digest::of(b"x").hex();
        let action = DebLayer::new(one, &[bare], Compression::Gzip, 0).unwrap();
        assert_eq!(action.debs()[0].sha256, Digest::of(b"x"));
        assert_eq!(action.inputs(), [Input::Source(PathBuf::from("a.deb"))]);
    }

    #[test]
    fn params_hold_pins_compression_and_epoch_but_no_paths() {
        let action = DebLayer::new(
            vec![PathBuf::from("/home/me/ws/a.deb")],
            &[Digest::of(b"x").to_string()],
            Compression::Zstd,
            1700000000,
        )
        .unwrap();
        let params = action.params().to_value();
        assert_eq!(params["compression"], "zstd");
        assert_eq!(params["source_date_epoch"], 1700000000);
        assert_eq!(params["sha256s"][0], Digest::of(b"x").to_string());
        assert!(!params.to_string().contains("home"));
    }

    #[test]
    fn a_file_changed_since_it_was_hashed_fails() {
        let bytes = b"the package as it is read now";
        let pinned = PinnedDeb { path: PathBuf::from("third_party/debs/hello.deb"), sha256: Digest::of(bytes) };
        let error = read_pinned(&pinned, Digest::of(b"older bytes"), bytes).unwrap_err();
        assert!(matches!(error, DebLayerError::Changed { .. }), "{error}");
    }

    #[test]
    fn union_lets_directories_and_identical_entries_repeat() {
        let merged = union(vec![
            deb("a", vec![dir("/usr", 0o755), dir("/usr/share", 0o755), file("/usr/share/common", "same")]),
            deb("b", vec![dir("/usr", 0o755), dir("/usr/share", 0o775), file("/usr/share/common", "same")]),
        ])
        .unwrap();
        let paths: Vec<_> = merged.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/usr", "/usr/share", "/usr/share/common"]);
        assert_eq!(merged[1].mode, 0o775, "the later package's directory mode wins");
    }

    #[test]
    fn conflicting_paths_name_both_packages() {
        let error = union(vec![
            deb("a", vec![dir("/bin", 0o755), file("/bin/sh", "dash")]),
            deb("b", vec![dir("/bin", 0o755), entry("/bin/sh", DebEntryKind::Symlink("busybox".into()), 0o777)]),
        ])
        .unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("`/bin/sh` is a file of 4 bytes"), "{message}");
        assert!(message.contains("in `a` 1.0-1 (`third_party/debs/a.deb`) but a symlink to `busybox` in `b` 1.0-1 (`third_party/debs/b.deb`)"), "{message}");

        let modes = union(vec![
            deb("a", vec![entry("/x", DebEntryKind::File(b"x".to_vec()), 0o644)]),
            deb("b", vec![entry("/x", DebEntryKind::File(b"x".to_vec()), 0o755)]),
        ]);
        assert!(matches!(modes, Err(DebLayerError::Conflict { .. })), "same bytes, other mode");
        let dir_vs_file = union(vec![deb("a", vec![dir("/x", 0o755)]), deb("b", vec![file("/x", "")])]);
        assert!(matches!(dir_vs_file, Err(DebLayerError::Conflict { .. })));

        // Merged /usr: a symlink `/bin` in one package, `/bin/busybox` in another.
        let under_link = union(vec![
            deb("base-files", vec![entry("/bin", DebEntryKind::Symlink("usr/bin".into()), 0o777)]),
            deb("busybox", vec![dir("/bin", 0o755), file("/bin/busybox", "elf")]),
        ]);
        assert!(matches!(under_link, Err(DebLayerError::Conflict { .. })), "directory over symlink");
        let under_link = union(vec![
            deb("base-files", vec![entry("/bin", DebEntryKind::Symlink("usr/bin".into()), 0o777)]),
            deb("busybox", vec![file("/bin/busybox", "elf")]),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            under_link.starts_with("`/bin` is a symlink to `usr/bin` in `base-files` 1.0-1 (`third_party/debs/base-files.deb`) but the parent directory of file `/bin/busybox` in `busybox`"),
            "{under_link}"
        );
    }
}
