//! Raw OS calls, each behind a small safe function: the one place berth
//! names `libc` (besides the process-wide choices in `main.rs` and the
//! loader's abort path in `frontend::limits`). Everything above reaches the
//! kernel through here, so an `unsafe` block is never further than one file
//! from its `SAFETY:` note, and a second platform would start here.
//!
//! - `file`: atomic writes (temp file, fsync, rename), access stamps,
//!   directory exchange, `O_NOFOLLOW` opens.
//! - `lock`: `flock(2)`.
//! - `mount`: overlayfs mounts, lazy unmounts, the mount table, removing
//!   a tree without descending into a mount.
//! - `node`: device nodes, FIFOs and extended attributes.
//! - `process`: privileges, signals, `prctl`, resource limits, memory size.
//! - `signal`: SIGINT/SIGTERM/SIGHUP handed to a thread through a pipe.
//! - `time`: the kernel's coarse file clock.
//! - `userns`: entering a user namespace as an unprivileged user.

mod file;
mod lock;
mod mount;
mod node;
mod process;
mod signal;
mod time;
mod userns;

pub use file::{exchange, open_nofollow, read_regular_capped, touch, write_atomic, AtomicFile, Durability};
pub use lock::{flock, LockMode};
pub use mount::{
    bind_mount, free_bytes, mount_overlay, mount_points, mount_tmpfs, remove_tree, unmount_below, unmount_detached,
};
pub use node::{get_xattr, make_fifo, make_whiteout, set_xattr};
pub use process::{
    effective_uid, kill, kill_when_parent_dies, new_session, open_files_hard_limit, process_exists, process_start_time,
    restore_transparent_huge_pages, total_memory, Signal, EBUSY, ELOOP, ENOSYS, EPERM,
};
pub use signal::{raise, TerminationSignals, SIGHUP, SIGINT, SIGTERM};
pub use time::coarse_realtime_ns;
pub use userns::{make_mounts_slave, map_self, real_ids, unshare_user_namespace};
