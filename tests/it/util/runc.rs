//! What container tests share: one container at a time, and a busybox base
//! layer made from `busybox-static` (`util::need` checks it is static).

use std::io::Write;
use std::sync::{Mutex, MutexGuard};

use crate::util::need::Need;

/// Applets linked next to `/bin/busybox` in the test base.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "echo", "cat", "sleep", "wget", "ls", "mkdir", "touch", "chmod", "chown", "ip", "id", "true", "false",
    "rm", "cp", "ln", "test", "[", "env", "head", "tail", "dd", "nc", "printf", "stat", "wc", "seq", "sync", "yes",
    "mv", "grep", "sed", "find", "mknod", "mkfifo", "hostname", "ps", "kill",
];

/// What a test that runs containers on the busybox base needs.
pub const CONTAINER: &[Need] = &[Need::Root, Need::Runc, Need::Busybox, Need::Subids];

/// Where Debian's `busybox-static` puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

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

/// Pids of the processes running `sleep MARKER` (a test's container picks
/// a marker no other test uses, so its process can be found from outside).
pub fn sleepers(marker: &str) -> Vec<u32> {
    let wanted = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| cmdline.ends_with(wanted.as_bytes()))
        })
        .collect()
}

/// Polls `done` every 50 ms; panics naming `what` after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits (at most a minute) for a container's `sleep MARKER` and returns
/// its pid.
#[track_caller]
pub fn wait_for_sleeper(marker: &str) -> u32 {
    let mut found = None;
    wait_until("the container's `sleep` to start", std::time::Duration::from_secs(60), || {
        found = sleepers(marker).first().copied();
        found.is_some()
    });
    found.expect("found")
}
