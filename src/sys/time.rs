//! The kernel's coarse wall clock, which it stamps files with.

/// Nanoseconds since the epoch on `CLOCK_REALTIME_COARSE`, or `None` if the
/// clock cannot be read. It decides only whether a file stamp is trusted,
/// never what goes into a key or an output.
pub fn coarse_realtime_ns() -> Option<i64> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid out-pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } != 0 {
        return None;
    }
    Some(now.tv_sec.saturating_mul(1_000_000_000).saturating_add(now.tv_nsec))
}
