//! Prerequisites of container tests (root, runc) and a busybox base made from `busybox-static`.

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Applets linked next to `/bin/busybox` in the test base.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "echo", "cat", "sleep", "wget", "ls", "mkdir", "touch", "chmod", "chown", "ip", "id", "true", "false",
    "rm", "cp", "ln", "test", "[", "env", "head", "tail", "dd", "nc", "printf", "stat", "wc", "seq", "sync", "yes",
    "mv", "grep", "sed", "find", "mknod", "mkfifo", "hostname", "ps", "kill",
];

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Returns `Some(reason)` when container tests cannot run here (and prints
/// `SKIP: <reason>`); `None` when root and runc are available.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let reason = if unsafe { libc::geteuid() } != 0 {
        Some("container tests need root".to_owned())
    } else if berth::exec::Runc::locate(None).is_err() {
        Some("`runc` is not installed (Debian package `runc`)".to_owned())
    } else if !is_static_busybox(Path::new(BUSYBOX)) {
        Some(format!("`{BUSYBOX}` is missing (Debian package `busybox-static`)"))
    } else {
        None
    };
    if let Some(reason) = &reason {
        eprintln!("SKIP: {reason}");
    }
    reason
}

/// Only root is needed (extraction restores owners and device markers).
pub fn skip_unless_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let skip = unsafe { libc::geteuid() } != 0;
    if skip {
        eprintln!("SKIP: extraction tests need root");
    }
    skip
}

fn is_static_busybox(path: &Path) -> bool {
    // A dynamic busybox would need the host's libc in the container: look
    // for a PT_INTERP program header in the (64-bit, little-endian) ELF.
    let Ok(bytes) = std::fs::read(path) else { return false };
    if bytes.len() < 64 || !bytes.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|index| {
        let at = phoff + index * phentsize;
        bytes.get(at..at + 4).is_some_and(|p_type| p_type != 3u32.to_le_bytes())
    })
}

/// Container tests that check `runc list` run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A tar writer for test layers: explicit headers, root-owned, mtime 0.
pub struct TarBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        TarBuilder { builder: tar::Builder::new(Vec::new()) }
    }
}

impl TarBuilder {
    fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(0);
        header
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut header = Self::header(tar::EntryType::Directory, mode);
        self.builder.append_data(&mut header, path, std::io::empty()).unwrap();
        self
    }

    pub fn file(mut self, path: &str, mode: u32, contents: &[u8]) -> Self {
        let mut header = Self::header(tar::EntryType::Regular, mode);
        header.set_size(contents.len() as u64);
        self.builder.append_data(&mut header, path, contents).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777);
        self.builder.append_link(&mut header, path, target).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

/// A busybox base layer (uncompressed tar): `/bin/busybox`, a symlink per
/// applet, `/etc/passwd`, `/etc/group`, `/tmp`, `/root` and mount points.
pub fn busybox_tar() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX).expect("busybox-static is installed");
    let mut tar = TarBuilder::default().dir("bin", 0o755).file("bin/busybox", 0o755, &busybox);
    for applet in APPLETS {
        tar = tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    tar.dir("dev", 0o755)
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")
        .dir("proc", 0o755)
        .dir("root", 0o700)
        .dir("sys", 0o755)
        .dir("tmp", 0o1777)
        .finish()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}
