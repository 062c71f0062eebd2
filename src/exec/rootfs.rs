//! Root filesystems for containers, stacked from layers that `oci::extract`
//! put in the cache: overlayfs when the kernel allows it, a copy that
//! applies the whiteouts otherwise. Either way the layer directories in the
//! cache are never written: the container writes into a fresh upper
//! directory (overlayfs) or into its own copy.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::error::{Diagnose, ErrorKind};
use crate::exec::lifecycle::{self, LiveMount};
use crate::exec::rootless;
use crate::oci::{is_opaque_dir, is_whiteout, ExtractedLayer};
use crate::sys;

/// How to stack layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StackMode {
    /// overlayfs, falling back to a copy when the mount is refused.
    #[default]
    Auto,
    /// overlayfs or an error.
    Overlay,
    /// Always copy (slow for big bases; for kernels without overlayfs).
    Copy,
}

#[derive(Debug, thiserror::Error)]
pub enum RootFsError {
    #[error("I/O error at `{path}` while stacking a root filesystem: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("Cannot mount overlayfs for a container root: {reason}")]
    Overlay { reason: String },
    #[error("The deadline passed while copying the layers into a root filesystem")]
    DeadlinePassed,
}

impl Diagnose for RootFsError {
    fn kind(&self) -> ErrorKind {
        match self {
            RootFsError::DeadlinePassed => ErrorKind::User,
            _ => ErrorKind::Environment,
        }
    }

    fn hint(&self) -> Option<String> {
        matches!(self, RootFsError::Overlay { .. }).then(|| {
            "berth needs root and a kernel with overlayfs, or falls back to copies when not asked for overlayfs"
                .to_owned()
        })
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> RootFsError + '_ {
    move |source| RootFsError::Io { path: path.to_path_buf(), source }
}

/// A stacked root filesystem under a private directory; unmounted and
/// removed when dropped.
#[derive(Debug)]
pub struct RootFs {
    dir: PathBuf,
    merged: PathBuf,
    overlay: bool,
    /// The overlay mount, registered so a termination signal detaches it
    /// (`exec::lifecycle`); dropped after the unmount.
    live: Option<LiveMount>,
    /// Where the root is bound for a container in a user namespace (see
    /// [`exposed_roots`]), with its registration.
    exposed: Option<(PathBuf, LiveMount)>,
}

/// Where roots of user-namespaced containers are bound: runc, as the
/// container's root, must be able to walk to the root filesystem, and the
/// cache usually sits below a private home directory. Each root is
/// `/run/berth/OWNER-N` (rootless: `/tmp/berth-UID/roots/OWNER-N`, see
/// `exec::rootless`), with its owner in the name for the sweep.
pub fn exposed_roots() -> PathBuf {
    match rootless::rootless() {
        Some(rootless) => rootless.private_dir().join("roots"),
        None => PathBuf::from("/run/berth"),
    }
}

impl RootFs {
    /// Stacks `layers` (lowest first) under `dir`, which must not exist yet.
    /// A layer whose root was opaque hides every layer below it. A copy
    /// checks `deadline` before each directory.
    ///
    /// `id_shift` is the host id of uid 0 of a user-namespaced container (0
    /// for none): the layers were extracted shifted by it, the root's own
    /// directory is given to it, and the root is bound under
    /// [`exposed_roots`] where that user can reach it.
    ///
    /// `upper_bytes` caps what the container may write: overlayfs's upper
    /// directory goes on a tmpfs of that size (so it is memory, and only
    /// with overlayfs; a copied root is not capped).
    pub fn stack(
        layers: &[ExtractedLayer],
        dir: &Path,
        mode: StackMode,
        deadline: Option<Instant>,
        id_shift: u32,
        upper_bytes: Option<u64>,
    ) -> Result<RootFs, RootFsError> {
        let start = layers.iter().rposition(|layer| layer.opaque_root).unwrap_or(0);
        let layers = &layers[start..];
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_at(dir))?;
        let merged = dir.join("merged");
        fs::DirBuilder::new().mode(0o755).create(&merged).map_err(io_at(&merged))?;
        chown_shifted(&merged, id_shift)?;
        let mut rootfs = RootFs { dir: dir.to_path_buf(), merged, overlay: false, live: None, exposed: None };
        let mut stacked = false;
        if mode != StackMode::Copy {
            match rootfs.mount_overlay(layers, id_shift, upper_bytes) {
                Ok(()) => {
                    rootfs.overlay = true;
                    stacked = true;
                }
                Err(error) if mode == StackMode::Overlay => return Err(error),
                Err(_) => {}
            }
        }
        if !stacked {
            for layer in layers {
                let mut links = HashMap::new();
                apply_layer(&layer.root, &rootfs.merged, &mut links, deadline)?;
            }
        }
        if id_shift != 0 {
            rootfs.expose()?;
        }
        Ok(rootfs)
    }

    /// Binds the root at [`exposed_roots`]`/OWNER-N`.
    fn expose(&mut self) -> Result<(), RootFsError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        if let Some(rootless) = rootless::rootless() {
            // `/tmp` is shared: the directory must be this user's.
            let dir = rootless.private_dir();
            rootless.prepare_private_dir().map_err(io_at(&dir))?;
        }
        let roots = &exposed_roots();
        fs::DirBuilder::new().recursive(true).mode(0o711).create(roots).map_err(io_at(roots))?;
        // Walkable by everyone, listable by root only, whatever the umask.
        fs::set_permissions(roots, fs::Permissions::from_mode(0o711)).map_err(io_at(roots))?;
        let point = roots.join(format!("{}-{}", lifecycle::owner(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        fs::DirBuilder::new().mode(0o700).create(&point).map_err(io_at(&point))?;
        let (live, bound) = lifecycle::mount(&point, &point, || sys::bind_mount(&self.merged, &point));
        if let Err(error) = bound {
            let _ = fs::remove_dir(&point);
            return Err(RootFsError::Io { path: point, source: error });
        }
        self.exposed = Some((point, live));
        Ok(())
    }

    /// The root filesystem to give the container.
    pub fn merged(&self) -> &Path {
        match &self.exposed {
            Some((point, _)) => point,
            None => &self.merged,
        }
    }

    /// Whether overlayfs is in use (otherwise the layers were copied).
    pub fn is_overlay(&self) -> bool {
        self.overlay
    }

    fn mount_overlay(
        &mut self,
        layers: &[ExtractedLayer],
        id_shift: u32,
        upper_bytes: Option<u64>,
    ) -> Result<(), RootFsError> {
        // Short names keep the option string under the page-size limit of
        // mount(2) for deep stacks, whatever the cache path is.
        let lower_dir = self.dir.join("l");
        fs::DirBuilder::new().mode(0o700).create(&lower_dir).map_err(io_at(&lower_dir))?;
        let mut lowers = Vec::new();
        for (index, layer) in layers.iter().enumerate().rev() {
            let link = lower_dir.join(index.to_string());
            std::os::unix::fs::symlink(&layer.root, &link).map_err(io_at(&link))?;
            lowers.push(link);
        }
        if lowers.is_empty() {
            let empty = lower_dir.join("empty");
            fs::DirBuilder::new().mode(0o755).create(&empty).map_err(io_at(&empty))?;
            lowers.push(empty);
        }
        let mut rw = self.dir.clone();
        if let Some(bytes) = upper_bytes {
            // Removed with `dir` (`sys::remove_tree` detaches what is below).
            rw = self.dir.join("rw");
            fs::DirBuilder::new().mode(0o700).create(&rw).map_err(io_at(&rw))?;
            sys::mount_tmpfs(&rw, &format!("size={bytes},mode=0700"))
                .map_err(|error| RootFsError::Overlay { reason: format!("tmpfs for the upper directory: {error}") })?;
        }
        let upper = rw.join("upper");
        let work = rw.join("work");
        for dir in [&upper, &work] {
            fs::DirBuilder::new().mode(0o755).create(dir).map_err(io_at(dir))?;
        }
        // The upper directory is the root directory the container sees.
        chown_shifted(&upper, id_shift)?;
        let lowers: Vec<String> = lowers.iter().map(|path| path.display().to_string()).collect();
        let mut options =
            format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), upper.display(), work.display());
        if rootless::rootless().is_some() {
            // The `trusted.` xattrs are the host root's: overlayfs mounted
            // in a user namespace keeps opaque directories in `user.`
            // (extraction writes those there, `oci::opaque_xattr`).
            options.push_str(",userxattr");
        }
        if options.contains(['\\']) || lowers.iter().any(|lower| lower.contains([',', ':'])) {
            return Err(RootFsError::Overlay { reason: "the cache path holds `,` or `:`".into() });
        }
        if options.len() >= 4096 {
            return Err(RootFsError::Overlay { reason: format!("{} layers are too many for one mount", layers.len()) });
        }
        let (live, mounted) = lifecycle::mount(&self.merged, &self.dir, || sys::mount_overlay(&self.merged, &options));
        mounted.map_err(|error| RootFsError::Overlay { reason: error.to_string() })?;
        self.live = Some(live);
        Ok(())
    }
}

fn chown_shifted(path: &Path, id_shift: u32) -> Result<(), RootFsError> {
    match id_shift {
        0 => Ok(()),
        shift => std::os::unix::fs::lchown(path, Some(shift), Some(shift)).map_err(io_at(path)),
    }
}

impl Drop for RootFs {
    fn drop(&mut self) {
        if let Some((point, live)) = self.exposed.take() {
            let _ = sys::unmount_detached(&point);
            let _ = fs::remove_dir(&point);
            drop(live);
        }
        if self.overlay {
            // Detached, so a stray open file cannot keep the mount (and the
            // cleanup) from happening.
            let _ = sys::unmount_detached(&self.merged);
        }
        // Never into a mount that is still there.
        let _ = sys::remove_tree(&self.dir);
        self.live = None;
    }
}

fn lstat(path: &Path) -> Result<Option<fs::Metadata>, RootFsError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RootFsError::Io { path: path.to_path_buf(), source }),
    }
}

fn remove_any(path: &Path, metadata: &fs::Metadata) -> Result<(), RootFsError> {
    if metadata.is_dir() {
        fs::remove_dir_all(path).map_err(io_at(path))
    } else {
        fs::remove_file(path).map_err(io_at(path))
    }
}

fn set_owner_mode(path: &Path, metadata: &fs::Metadata) -> Result<(), RootFsError> {
    std::os::unix::fs::lchown(path, Some(metadata.uid()), Some(metadata.gid())).map_err(io_at(path))?;
    if !metadata.file_type().is_symlink() {
        fs::set_permissions(path, fs::Permissions::from_mode(metadata.mode() & 0o7777)).map_err(io_at(path))?;
    }
    Ok(())
}

/// Copies one extracted layer over `dst` the way overlayfs would show it:
/// whiteouts delete, opaque directories replace, everything else replaces
/// or merges. Hard links of the layer stay hard links (`links`: source inode
/// → first copy). Symlinks are copied as symlinks, never followed.
fn apply_layer(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    deadline: Option<Instant>,
) -> Result<(), RootFsError> {
    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
        return Err(RootFsError::DeadlinePassed);
    }
    let mut entries: Vec<_> = fs::read_dir(src).map_err(io_at(src))?.collect::<Result<_, _>>().map_err(io_at(src))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let metadata = fs::symlink_metadata(&from).map_err(io_at(&from))?;
        let existing = lstat(&to)?;
        let file_type = metadata.file_type();
        if is_whiteout(&metadata) {
            if let Some(existing) = existing {
                remove_any(&to, &existing)?;
            }
            continue;
        }
        if file_type.is_dir() {
            match existing {
                Some(existing) if existing.is_dir() && !is_opaque_dir(&from) => {}
                Some(existing) => {
                    remove_any(&to, &existing)?;
                    fs::DirBuilder::new().mode(0o700).create(&to).map_err(io_at(&to))?;
                }
                None => fs::DirBuilder::new().mode(0o700).create(&to).map_err(io_at(&to))?,
            }
            apply_layer(&from, &to, links, deadline)?;
            set_owner_mode(&to, &metadata)?;
            continue;
        }
        if let Some(existing) = existing {
            remove_any(&to, &existing)?;
        }
        let inode = (metadata.dev(), metadata.ino());
        if metadata.nlink() > 1 {
            if let Some(first) = links.get(&inode) {
                fs::hard_link(first, &to).map_err(io_at(&to))?;
                continue;
            }
        }
        if file_type.is_symlink() {
            let target = fs::read_link(&from).map_err(io_at(&from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io_at(&to))?;
        } else if file_type.is_file() {
            let mut input = sys::open_nofollow(OpenOptions::new().read(true), &from).map_err(io_at(&from))?;
            let mut output = sys::open_nofollow(OpenOptions::new().write(true).create_new(true).mode(0o600), &to)
                .map_err(io_at(&to))?;
            io::copy(&mut input, &mut output).map_err(io_at(&to))?;
        } else {
            use std::os::unix::fs::FileTypeExt;
            if !file_type.is_fifo() {
                continue; // devices never reach the cache (extraction skips them)
            }
            sys::make_fifo(&to).map_err(io_at(&to))?;
        }
        set_owner_mode(&to, &metadata)?;
        if metadata.nlink() > 1 {
            links.insert(inode, to);
        }
    }
    Ok(())
}
