//! What goes into a layer: `files` and `oci_layer` attributes turned into a
//! list of destination paths and what each holds, checked for the mistakes
//! users make (missing files, bad prefixes, two things at one path).

use std::collections::BTreeMap;

use crate::analysis::at;
use crate::error::{Error, Result};
use crate::graph::{FilesAttrs, OciLayerAttrs, TargetNode};
use crate::workspace::Label;

/// One path of a layer and what it holds, before packing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    /// Absolute, normalised path inside the image (`/app/main.py`).
    pub path: String,
    pub content: PlannedContent,
    /// `None`: normalised (0644, or 0755 for directories and executables).
    pub mode: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    /// `None`: `SOURCE_DATE_EPOCH` or 0.
    pub mtime: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedContent {
    /// A source file, by workspace-relative path.
    Source(String),
    Contents(String),
    Symlink(String),
    Directory,
}

/// Where a `files` target's sources land: `/<package dir>/<src>`, unless
/// `strip_prefix` or `prefix` say otherwise.
pub fn files_entries(target: &TargetNode, attrs: &FilesAttrs, sources: &[SourceRef]) -> Result<Vec<PlannedEntry>> {
    let placement = Placement::new(target, &PlacementAttrs::from(attrs), Anchor::Workspace)?;
    sources.iter().map(|source| placement.place(target, source)).collect()
}

/// A source file named by a label attribute, with the path it has in the
/// workspace (its label's package joined with its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    pub label: Label,
    pub workspace_path: String,
}

impl SourceRef {
    pub fn new(label: &Label) -> SourceRef {
        SourceRef { label: label.clone(), workspace_path: label.path() }
    }
}

/// Which directory a source's default destination is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// `files`: `/<package dir>/<src>`, as the design says.
    Workspace,
    /// `oci_layer`: `/<src>`, like a `COPY` from the package directory.
    Package,
}

/// The attributes that place a target's entries: `prefix`, `strip_prefix`
/// and, for `oci_layer`, ownership, mode and mtime.
pub struct PlacementAttrs<'a> {
    pub prefix: Option<&'a str>,
    pub strip_prefix: Option<&'a str>,
    pub mode: Option<i64>,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub mtime: Option<i64>,
}

impl<'a> From<&'a FilesAttrs> for PlacementAttrs<'a> {
    fn from(attrs: &'a FilesAttrs) -> PlacementAttrs<'a> {
        PlacementAttrs {
            prefix: attrs.prefix.as_deref(),
            strip_prefix: attrs.strip_prefix.as_deref(),
            mode: None,
            uid: None,
            gid: None,
            mtime: None,
        }
    }
}

impl<'a> From<&'a OciLayerAttrs> for PlacementAttrs<'a> {
    fn from(attrs: &'a OciLayerAttrs) -> PlacementAttrs<'a> {
        PlacementAttrs {
            prefix: attrs.prefix.as_deref(),
            strip_prefix: attrs.strip_prefix.as_deref(),
            mode: attrs.mode,
            uid: attrs.uid,
            gid: attrs.gid,
            mtime: attrs.mtime,
        }
    }
}

/// Where a target's entries go and whom they belong to.
pub struct Placement {
    package: String,
    anchor: Anchor,
    /// Workspace-relative directory removed from each source path.
    strip: Option<String>,
    prefix: String,
    mode: Option<u32>,
    uid: u32,
    gid: u32,
    mtime: Option<u64>,
}

impl Placement {
    pub fn new(target: &TargetNode, attrs: &PlacementAttrs, anchor: Anchor) -> Result<Placement> {
        let package = target.label.package.clone();
        let strip = match attrs.strip_prefix {
            None | Some("") => None,
            Some(strip) => Some(resolve_strip_prefix(target, &package, strip)?),
        };
        let prefix = match attrs.prefix {
            None => String::new(),
            Some(prefix) => normalise_image_path(target, "prefix", prefix)?,
        };
        Ok(Placement {
            package,
            anchor,
            strip,
            prefix: if prefix == "/" { String::new() } else { prefix },
            mode: mode_attr(target, attrs.mode)?,
            uid: id_attr(target, "uid", attrs.uid)?,
            gid: id_attr(target, "gid", attrs.gid)?,
            mtime: match attrs.mtime {
                None => None,
                Some(mtime) if mtime >= 0 => Some(mtime as u64),
                Some(mtime) => return Err(attr_error(target, "mtime", &format!("`{mtime}` is negative"))),
            },
        })
    }

    /// The entry for one source file.
    pub fn place(&self, target: &TargetNode, source: &SourceRef) -> Result<PlannedEntry> {
        let relative = match &self.strip {
            Some(strip) => match source.workspace_path.strip_prefix(strip.as_str()).and_then(|r| r.strip_prefix('/')) {
                Some(rest) => rest.to_owned(),
                None => {
                    return Err(at(
                        target,
                        format!(
                            "source `{}` of `{}` is not under `strip_prefix` directory `{strip}`",
                            source.workspace_path, target.label
                        ),
                    )
                    .with_hint(
                        "strip_prefix is relative to the package; start it with `/` to name a workspace directory",
                    ))
                }
            },
            None => match self.anchor {
                Anchor::Workspace => source.workspace_path.clone(),
                Anchor::Package if self.package.is_empty() => source.workspace_path.clone(),
                Anchor::Package => match source.workspace_path.strip_prefix(&format!("{}/", self.package)) {
                    Some(rest) => rest.to_owned(),
                    // A source from another package keeps its workspace path.
                    None => source.workspace_path.clone(),
                },
            },
        };
        Ok(self.entry(format!("{}/{relative}", self.prefix), PlannedContent::Source(source.workspace_path.clone())))
    }

    /// An entry at an explicit destination, with this target's ownership.
    pub fn entry(&self, path: String, content: PlannedContent) -> PlannedEntry {
        let mode = match content {
            PlannedContent::Source(_) | PlannedContent::Contents(_) => self.mode,
            PlannedContent::Symlink(_) | PlannedContent::Directory => None,
        };
        PlannedEntry { path, content, mode, uid: self.uid, gid: self.gid, mtime: self.mtime }
    }

    /// Moves an entry that already has a destination (from a `files` target)
    /// under this target's `prefix`.
    pub fn reprefix(&self, mut entry: PlannedEntry) -> PlannedEntry {
        entry.path = format!("{}{}", self.prefix, entry.path);
        entry
    }
}

/// `oci_layer`'s entries, from every content attribute; `srcs` are the
/// resolved `srcs` (source files and the entries of `files` targets).
pub fn layer_entries(target: &TargetNode, attrs: &OciLayerAttrs, srcs: Vec<LayerSource>) -> Result<Vec<PlannedEntry>> {
    let placement = Placement::new(target, &PlacementAttrs::from(attrs), Anchor::Package)?;
    let mut entries = Vec::new();
    // Paths an `oci_layer` in `srcs` put there: a later source replaces
    // them (one layer from several, later entries winning).
    let mut merged: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut push = |entries: &mut Vec<PlannedEntry>, entry: PlannedEntry, from_layer: bool| {
        if merged.remove(&entry.path) || from_layer {
            entries.retain(|existing: &PlannedEntry| existing.path != entry.path);
        }
        if from_layer {
            merged.insert(entry.path.clone());
        }
        entries.push(entry);
    };
    for src in srcs {
        match src {
            LayerSource::File(source) => push(&mut entries, placement.place(target, &source)?, false),
            LayerSource::Entries(from_files) => {
                for entry in from_files {
                    push(&mut entries, placement.reprefix(entry), false);
                }
            }
            LayerSource::Layer(from_layer) => {
                for entry in from_layer {
                    push(&mut entries, placement.reprefix(entry), true);
                }
            }
        }
    }
    for (dest, label) in &attrs.files {
        let path = normalise_image_path(target, "files", dest)?;
        entries.push(placement.entry(path, PlannedContent::Source(SourceRef::new(label).workspace_path)));
    }
    for (dest, text) in &attrs.contents {
        let path = normalise_image_path(target, "contents", dest)?;
        entries.push(placement.entry(path, PlannedContent::Contents(text.clone())));
    }
    for (dest, link_target) in &attrs.symlinks {
        let path = normalise_image_path(target, "symlinks", dest)?;
        entries.push(placement.entry(path, PlannedContent::Symlink(link_target.clone())));
    }
    for dir in &attrs.directories {
        let path = normalise_image_path(target, "directories", dir)?;
        entries.push(placement.entry(path, PlannedContent::Directory));
    }
    check_no_duplicates(target, &entries)?;
    Ok(entries)
}

/// A resolved `srcs` item of `oci_layer`.
pub enum LayerSource {
    File(SourceRef),
    /// The entries of a `files` target, already placed.
    Entries(Vec<PlannedEntry>),
    /// The entries of an `oci_layer` target: merged, so a later source at
    /// one of their paths replaces the entry instead of clashing with it.
    Layer(Vec<PlannedEntry>),
}

/// Two entries at one path would make the layer depend on which one the
/// tar reader keeps: refuse them by name.
pub fn check_no_duplicates(target: &TargetNode, entries: &[PlannedEntry]) -> Result<()> {
    let mut seen: BTreeMap<&str, &PlannedEntry> = BTreeMap::new();
    for entry in entries {
        if let Some(first) = seen.insert(&entry.path, entry) {
            if first.content == PlannedContent::Directory && entry.content == PlannedContent::Directory {
                continue;
            }
            return Err(at(
                target,
                format!(
                    "`{}` puts two entries at `{}` ({} and {})",
                    target.label,
                    entry.path,
                    describe(&first.content),
                    describe(&entry.content)
                ),
            )
            .with_hint("give one of them another destination with `prefix`, `strip_prefix` or `files`"));
        }
    }
    Ok(())
}

fn describe(content: &PlannedContent) -> String {
    match content {
        PlannedContent::Source(path) => format!("source `{path}`"),
        PlannedContent::Contents(_) => "inline contents".to_owned(),
        PlannedContent::Symlink(target) => format!("a symlink to `{target}`"),
        PlannedContent::Directory => "a directory".to_owned(),
    }
}

/// `strip_prefix`: relative to the package, or workspace-relative when it
/// starts with `/`; either way it must stay inside the package, so a layer
/// never depends on where another package keeps its files.
fn resolve_strip_prefix(target: &TargetNode, package: &str, strip: &str) -> Result<String> {
    let joined = match strip.strip_prefix('/') {
        Some(absolute) => absolute.trim_end_matches('/').to_owned(),
        None if package.is_empty() => strip.trim_end_matches('/').to_owned(),
        None => format!("{package}/{}", strip.trim_end_matches('/')),
    };
    let normalised = normalise_relative(&joined)
        .ok_or_else(|| attr_error(target, "strip_prefix", &format!("`{strip}` leaves the workspace")))?;
    let inside = package.is_empty()
        || normalised == package
        || normalised.strip_prefix(package).is_some_and(|rest| rest.starts_with('/'));
    if !inside {
        return Err(at(
            target,
            format!("`strip_prefix` `{strip}` of `{}` is outside its package `{package}`", target.label),
        )
        .with_hint(format!("use a directory inside `{package}` (relative, or starting with `/{package}`)")));
    }
    Ok(normalised)
}

/// Resolves `.` and `..` in a `/`-separated relative path; `None` if it
/// climbs above its start. The empty path stands for the workspace root.
fn normalise_relative(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// An absolute, normalised path inside the image; `..` may not climb above `/`.
pub fn normalise_image_path(target: &TargetNode, attr: &str, path: &str) -> Result<String> {
    match normalise_relative(path) {
        Some(relative) if relative.is_empty() => Ok("/".to_owned()),
        Some(relative) => Ok(format!("/{relative}")),
        None => Err(attr_error(target, attr, &format!("path `{path}` climbs above `/`"))),
    }
}

/// A path under `berth-out/` (`output_path`): relative, and made of plain
/// names only, so the file it names is inside `berth-out/` whatever the
/// directories on the way hold.
pub fn output_relative_path(target: &TargetNode, attr: &str, path: &str) -> Result<String> {
    let problem = if path.starts_with('/') {
        Some(format!("`{path}` is absolute; it must be relative to `berth-out/`"))
    } else if path.split('/').any(|part| part == "..") {
        Some(format!("`{path}` has a `..` component; it must stay inside `berth-out/`"))
    } else if path.split('/').all(|part| part.is_empty() || part == ".") {
        Some(format!("`{path}` names no file"))
    } else if path.ends_with('/') || path.split('/').next_back() == Some(".") {
        Some(format!("`{path}` names a directory, not a file"))
    } else if path.contains('\0') {
        Some("the path holds a NUL byte".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(attr_error(target, attr, &problem)
            .with_hint(format!("write a relative path such as `{}/layer.tar.gz`", target.label.name))),
        None => Ok(path.split('/').filter(|part| !part.is_empty() && *part != ".").collect::<Vec<_>>().join("/")),
    }
}

/// A path inside a step's container (`outputs`): absolute, with no `..`.
pub fn container_path(target: &TargetNode, attr: &str, path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(attr_error(target, attr, &format!("`{path}` is not an absolute path inside the container"))
            .with_hint(format!("write it as `/{}`", path.trim_start_matches("./"))));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(attr_error(target, attr, &format!("`{path}` has a `..` component")));
    }
    Ok(())
}

/// `mode` is already an int (the front-end parses `"0755"`); it must fit in
/// the 12 permission bits.
fn mode_attr(target: &TargetNode, mode: Option<i64>) -> Result<Option<u32>> {
    match mode {
        None => Ok(None),
        Some(mode) if (0..=0o7777).contains(&mode) => Ok(Some(mode as u32)),
        Some(mode) => Err(attr_error(target, "mode", &format!("`{mode:#o}` is not a file mode"))
            .with_hint("use an octal mode such as 0o644 or \"0755\"")),
    }
}

fn id_attr(target: &TargetNode, attr: &str, id: Option<i64>) -> Result<u32> {
    match id {
        None => Ok(0),
        Some(id) => u32::try_from(id).map_err(|_| attr_error(target, attr, &format!("`{id}` is not a valid id"))),
    }
}

pub fn attr_error(target: &TargetNode, attr: &str, problem: &str) -> Error {
    at(target, format!("Attribute `{attr}` of `{}`: {problem}", target.label))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::RuleAttrs;
    use crate::workspace::Location;

    fn target(package: &str, attrs: RuleAttrs) -> TargetNode {
        let location = Location { path: format!("{package}/BUILD.star"), line: 1, column: 1 };
        TargetNode::new(Label::new(package, "t"), attrs, location)
    }

    fn files(prefix: Option<&str>, strip_prefix: Option<&str>) -> FilesAttrs {
        FilesAttrs { srcs: vec![], prefix: prefix.map(str::to_owned), strip_prefix: strip_prefix.map(str::to_owned) }
    }

    /// An `oci_layer` with every attribute unset.
    fn layer() -> OciLayerAttrs {
        OciLayerAttrs {
            srcs: vec![],
            files: vec![],
            contents: vec![],
            symlinks: vec![],
            directories: vec![],
            prefix: None,
            strip_prefix: None,
            mode: None,
            uid: None,
            gid: None,
            mtime: None,
        }
    }

    fn files_at(package: &str, attrs: FilesAttrs, sources: &[SourceRef]) -> Result<Vec<PlannedEntry>> {
        files_entries(&target(package, RuleAttrs::Files(Box::new(attrs.clone()))), &attrs, sources)
    }

    fn layer_at(package: &str, attrs: OciLayerAttrs, srcs: Vec<LayerSource>) -> Result<Vec<PlannedEntry>> {
        layer_entries(&target(package, RuleAttrs::OciLayer(Box::new(attrs.clone()))), &attrs, srcs)
    }

    fn source(package: &str, name: &str) -> SourceRef {
        SourceRef::new(&Label::new(package, name))
    }

    #[test]
    fn files_land_under_their_package_dir() {
        let entries = files_at("app", files(None, None), &[source("app", "src/main.py")]).unwrap();
        assert_eq!(entries[0].path, "/app/src/main.py");
        assert_eq!(entries[0].content, PlannedContent::Source("app/src/main.py".into()));
    }

    #[test]
    fn strip_prefix_and_prefix_move_files() {
        let entries = files_at("app", files(Some("/opt/app"), Some("src")), &[source("app", "src/main.py")]).unwrap();
        assert_eq!(entries[0].path, "/opt/app/main.py");

        assert_eq!(files_at("app", files(None, Some("/app")), &[source("app", "x")]).unwrap()[0].path, "/x");
    }

    #[test]
    fn strip_prefix_outside_the_package_is_refused() {
        for bad in ["/etc", "../other", "/"] {
            let error = files_at("app", files(None, Some(bad)), &[source("app", "x")]).unwrap_err();
            assert!(
                error.message.contains("outside its package") || error.message.contains("leaves"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn oci_layer_sources_are_relative_to_the_package() {
        let attrs = OciLayerAttrs {
            prefix: Some("/app".into()),
            contents: vec![("/etc/motd".into(), "hi".into())],
            symlinks: vec![("/bin/sh".into(), "busybox".into())],
            directories: vec!["/tmp".into()],
            ..layer()
        };
        let entries = layer_at("hello", attrs, vec![LayerSource::File(source("hello", "hello.sh"))]).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/app/hello.sh", "/etc/motd", "/bin/sh", "/tmp"]);
    }

    #[test]
    fn duplicate_destinations_are_refused_by_path() {
        let attrs = OciLayerAttrs { contents: vec![("/a".into(), "x".into())], ..layer() };
        let error = layer_at("p", attrs, vec![LayerSource::File(source("p", "a"))]).unwrap_err();
        assert!(error.message.contains("two entries at `/a`"), "{error}");
    }

    #[test]
    fn invalid_mode_is_refused() {
        let attrs = OciLayerAttrs { mode: Some(0o17777), ..layer() };
        assert!(layer_at("p", attrs, vec![]).unwrap_err().message.contains("is not a file mode"));
    }

    #[test]
    fn invalid_ids_and_mtimes_are_refused() {
        let error = layer_at("p", OciLayerAttrs { uid: Some(-1), ..layer() }, vec![]).unwrap_err();
        assert!(error.message.contains("`-1` is not a valid id"), "{error}");
        let error = layer_at("p", OciLayerAttrs { mtime: Some(-1), ..layer() }, vec![]).unwrap_err();
        assert!(error.message.contains("`-1` is negative"), "{error}");
    }

    #[test]
    fn paths_may_not_climb_above_root() {
        let attrs = OciLayerAttrs { directories: vec!["/../etc".into()], ..layer() };
        assert!(layer_at("p", attrs, vec![]).is_err());
    }
}
