//! Raw OS calls, each behind a small safe function: the one place berth
//! names `libc` (besides the process-wide choices in `main.rs` and the
//! loader's abort path in `frontend::limits`). Everything above reaches the
//! kernel through here, so an `unsafe` block is never further than one file
//! from its `SAFETY:` note, and a second platform would start here.
//!
//! - `file`: atomic writes (temp file, fsync, rename), access stamps,
//!   directory exchange, `O_NOFOLLOW` opens.
//! - `lock`: `flock(2)`.
//! - `mount`: overlayfs mounts and lazy unmounts.
//! - `node`: device nodes, FIFOs and extended attributes.
//! - `process`: privileges, signals, `prctl`, resource limits, memory size.
//! - `time`: the kernel's coarse file clock.

mod file;
mod lock;
mod mount;
mod node;
mod process;
mod time;

pub use file::{exchange, open_nofollow, touch, write_atomic, AtomicFile, Durability};
pub use lock::{flock, LockMode};
pub use mount::{mount_overlay, unmount_detached};
pub use node::{get_xattr, make_fifo, make_whiteout, set_xattr};
pub use process::{
    effective_uid, kill, open_files_hard_limit, process_exists, restore_transparent_huge_pages, total_memory,
    IgnoreInterrupts, Signal, ENOSYS, EPERM,
};
pub use time::coarse_realtime_ns;
