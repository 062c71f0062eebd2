//! Resource limits of Starlark evaluation, so that a runaway BUILD or `.star`
//! file ends in a clear error in bounded time and memory instead of hanging
//! or aborting berth.
//!
//! starlark-rust enforces a call-depth limit, a tick limit (one tick per call
//! or loop iteration) and a heap limit (checked every 1,000 ticks). Single
//! native operations such as `"x" * (1 << 30)` or `[0] * (1 << 28)`
//! allocate their result in one go, between two checks, and a loop of a few
//! hundred such operations can exhaust memory before the next check; Rust
//! aborts the process when an allocation fails. `GuardedAllocator` refuses,
//! while a file evaluates on the current thread, any single allocation above
//! `MAX_ALLOCATION` and any allocation that takes the thread's live memory
//! above `MAX_LIVE_BYTES`, and exits with an error naming the file instead.
//! It guards only where it is the global allocator: `main.rs` declares it
//! for the binary (with its tuning), `lib.rs` for the unit tests.
//!
//! `MAX_LIVE_BYTES` is one budget for the whole loader: the live bytes of
//! every file evaluating at once, on every loading thread and the glob
//! walker threads they start, count together, so the total does not grow
//! with the core count.
//!
//! Time: each file has a wall-clock deadline (`--load-timeout`, default
//! 60 s), checked by the evaluator every thousand steps and by the
//! allocation guard every few hundred allocations and at every large one,
//! so a loop of huge string operations inside the step budget ends too.
//!
//! Values: `json.encode` recurses once per nesting level on the native
//! stack; `check_value_depth` refuses values nested deeper than
//! `MAX_VALUE_DEPTH` before it is called (comparisons and `repr` have
//! starlark-rust's own guard).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mimalloc::MiMalloc;
use starlark::eval::Evaluator;
use starlark::ErrorKind;

use crate::error::Error;
use crate::frontend::error::LoadError;
use crate::workspace::Location;

/// Deepest Starlark call stack: rule macros nest a handful deep.
pub(crate) const MAX_CALL_DEPTH: usize = 200;
/// Function calls plus loop iterations per file. Also bounds how deep a value
/// can nest (each level costs a tick), which freezing walks recursively on
/// a `STACK_BYTES` stack: a million levels fit.
pub(crate) const MAX_TICKS: u64 = 1_000_000;
/// Starlark heap per file.
pub(crate) const MAX_HEAP_BYTES: usize = 1 << 30;
/// Stack of the threads that parse and evaluate files.
pub(crate) const STACK_BYTES: usize = 256 << 20;
/// Largest single allocation while a file evaluates.
pub(crate) const MAX_ALLOCATION: usize = 1 << 30;
/// Most memory the loader's evaluations may hold at once (allocated minus
/// freed, summed over every file evaluating and its glob walkers), above
/// the heap limit, which is only checked now and then.
pub(crate) const MAX_LIVE_BYTES: isize = 2 << 30;
/// Longest chain of `.star` files loading each other.
pub(crate) const MAX_LOAD_DEPTH: usize = 500;
/// Deepest value `json.encode` takes: it recurses on the native stack.
pub(crate) const MAX_VALUE_DEPTH: usize = 100;
/// The per-file deadline when `--load-timeout` is not given.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How often (in allocations) the guard looks at the clock.
const DEADLINE_CHECK_PERIOD: u32 = 256;
/// Allocations at least this large always look at the clock.
const LARGE_ALLOCATION: usize = 1 << 20;

/// `--load-timeout`, in milliseconds (0: not set, the default applies).
static LOAD_TIMEOUT_MS: AtomicU64 = AtomicU64::new(0);

/// Sets the wall-clock limit of evaluating one file (`--load-timeout`).
pub fn set_load_timeout(timeout: Duration) {
    LOAD_TIMEOUT_MS.store(timeout.as_millis().clamp(1, u64::MAX as u128) as u64, Ordering::Relaxed);
}

/// The wall-clock limit of evaluating one file.
pub fn load_timeout() -> Duration {
    match LOAD_TIMEOUT_MS.load(Ordering::Relaxed) {
        0 => DEFAULT_LOAD_TIMEOUT,
        ms => Duration::from_millis(ms),
    }
}

/// `1.5 s` or `60 s`, as messages show a timeout.
fn seconds(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds.fract() == 0.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{seconds} s")
    }
}

/// Sets every limit on a fresh evaluator; its deadline is `load_timeout()`
/// from now.
pub(crate) fn apply(eval: &mut Evaluator) {
    eval.set_max_callstack_size(MAX_CALL_DEPTH).expect("a fresh evaluator has no call-stack limit");
    eval.set_max_tick_count(MAX_TICKS).expect("a fresh evaluator has no tick limit");
    eval.set_max_heap_size(MAX_HEAP_BYTES).expect("a fresh evaluator has no heap limit");
    let deadline = Instant::now() + load_timeout();
    // Called by the evaluator every thousand steps.
    eval.set_check_cancelled(Box::new(move || Instant::now() >= deadline));
}

/// Refuses a value nested deeper than `MAX_VALUE_DEPTH` (lists, tuples,
/// dicts, structs and anything with attributes), walking it without
/// recursion, so a native function that recurses over it cannot overflow
/// the stack.
pub(crate) fn check_value_depth<'v>(
    value: starlark::values::Value<'v>,
    heap: starlark::values::Heap<'v>,
) -> anyhow::Result<()> {
    use starlark::values::dict::DictRef;
    use starlark::values::list::ListRef;
    use starlark::values::structs::StructRef;
    use starlark::values::tuple::TupleRef;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_VALUE_DEPTH {
            return Err(anyhow::anyhow!(
                "The value nests more than {MAX_VALUE_DEPTH} levels deep (lists, dicts, structs); berth refuses to encode it"
            ));
        }
        if let Some(list) = ListRef::from_value(value) {
            stack.extend(list.iter().map(|child| (child, depth + 1)));
        } else if let Some(tuple) = TupleRef::from_value(value) {
            stack.extend(tuple.iter().map(|child| (child, depth + 1)));
        } else if let Some(dict) = DictRef::from_value(value) {
            stack.extend(dict.iter().flat_map(|(key, child)| [(key, depth + 1), (child, depth + 1)]));
        } else if let Some(fields) = StructRef::from_value(value) {
            stack.extend(fields.iter().map(|(_, child)| (child, depth + 1)));
        } else if value.unpack_str().is_none() {
            // Records, namespaces, enums: their attributes.
            for name in value.dir_attr() {
                if let Ok(Some(child)) = value.get_attr(&name, heap) {
                    stack.push((child, depth + 1));
                }
            }
        }
    }
    Ok(())
}

/// Runs an evaluation of `file` with the allocation guard on, turning
/// Starlark errors (and panics of native code) into `LoadError`s.
pub(crate) fn guarded<T>(file: &str, run: impl FnOnce() -> starlark::Result<T>) -> Result<T, LoadError> {
    quiet_guarded_panics();
    let _guard = Guard::enter(file, Instant::now() + load_timeout());
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(classify(file, error)),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Err(LoadError::Limit(
                Error::user(format!("Evaluating `{file}` failed inside a built-in: {reason}")).with_hint(
                    "this is most likely an operation on a value far too large; check loops and repetitions",
                ),
            ))
        }
    }
}

/// A panic of a built-in while a file evaluates becomes that file's error
/// (see [`guarded`]): the default hook's "thread panicked" report would
/// only repeat it, so it is kept for panics anywhere else.
fn quiet_guarded_panics() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if guarded_file().is_none() {
                previous(info);
            }
        }));
    });
}

fn classify(file: &str, error: starlark::Error) -> LoadError {
    let location = error.span().map(|span| {
        let begin = span.resolve_span().begin;
        Location { path: span.filename().to_owned(), line: begin.line as u32 + 1, column: begin.column as u32 + 1 }
    });
    let message = error.without_diagnostic().to_string();
    let limit =
        |message: String, hint: &str| LoadError::Limit(Error::user(message).maybe_at(location.clone()).with_hint(hint));
    if matches!(error.kind(), ErrorKind::StackOverflow(_)) {
        return limit(
            format!("Evaluating `{file}` exceeded {MAX_CALL_DEPTH} nested calls"),
            "look for a function that calls itself without end",
        );
    }
    if message.starts_with("Execution duration limit") {
        return limit(
            format!("Evaluating `{file}` took more than {MAX_TICKS} steps (function calls and loop iterations)"),
            "look for a loop over a huge range; BUILD files should declare targets, not compute",
        );
    }
    if message.starts_with("Evaluation cancelled") {
        return limit(
            format!("Evaluating `{file}` took longer than {} (`--load-timeout`)", seconds(load_timeout())),
            "look for a loop doing heavy work; BUILD files should declare targets, not compute",
        );
    }
    if message.starts_with("Heap memory limit") {
        return limit(
            format!("Evaluating `{file}` used more than {} MiB of Starlark heap", MAX_HEAP_BYTES >> 20),
            "look for a list or string grown without bound",
        );
    }
    LoadError::Starlark(starlark_message(&error))
}

/// starlark-rust's rendering (with the source snippet), without the
/// `error: ` it starts some messages with: the command line adds its own.
pub(crate) fn starlark_message(error: &starlark::Error) -> String {
    let text = error.to_string();
    text.strip_prefix("error: ").map(str::to_owned).unwrap_or(text).trim_end().to_owned()
}

thread_local! {
    /// The file being evaluated on this thread, while the guard is on.
    static GUARDED_FILE: Cell<Option<(*const u8, usize)>> = const { Cell::new(None) };
    /// Bytes allocated minus bytes freed on this thread since the guard went on.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    /// When the file being evaluated on this thread must be done.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Allocations since the guard last looked at the clock.
    static SINCE_CLOCK: Cell<u32> = const { Cell::new(0) };
}

/// The live bytes of every guarded thread together: the loader's one budget.
static TOTAL_LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

/// Turns the allocation guard on for this thread while it lives.
pub(crate) struct Guard {
    previous: Option<(*const u8, usize)>,
    previous_live: isize,
    previous_deadline: Option<Instant>,
}

/// What a thread evaluating a file hands to threads it starts (glob
/// walkers), so their allocations count for the file too.
#[derive(Clone, Copy)]
pub(crate) struct GuardScope {
    file: Option<(*const u8, usize)>,
    deadline: Option<Instant>,
}

// SAFETY: the pointer is to the file name, which outlives the scoped
// threads it is handed to (they end before the evaluation that owns it).
unsafe impl Send for GuardScope {}
unsafe impl Sync for GuardScope {}

impl GuardScope {
    /// The guard of the current thread, if it evaluates a file.
    pub(crate) fn current() -> GuardScope {
        GuardScope { file: guarded_file(), deadline: DEADLINE.try_with(Cell::get).ok().flatten() }
    }

    /// Puts the current thread under this scope's guard while the returned
    /// value lives (no guard if the scope had none).
    pub(crate) fn enter(self) -> Guard {
        Guard::install(self.file, self.deadline)
    }
}

impl Guard {
    fn enter(file: &str, deadline: Instant) -> Guard {
        Guard::install(Some((file.as_ptr(), file.len())), Some(deadline))
    }

    fn install(file: Option<(*const u8, usize)>, deadline: Option<Instant>) -> Guard {
        let previous = GUARDED_FILE.with(|cell| cell.replace(file));
        let previous_live = LIVE_BYTES.with(|cell| cell.replace(0));
        let previous_deadline = DEADLINE.with(|cell| cell.replace(deadline));
        Guard { previous, previous_live, previous_deadline }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // What this evaluation still holds leaves the loader's budget with it.
        let live = LIVE_BYTES.with(|cell| cell.replace(self.previous_live));
        TOTAL_LIVE_BYTES.fetch_sub(live, Ordering::Relaxed);
        GUARDED_FILE.with(|cell| cell.set(self.previous));
        DEADLINE.with(|cell| cell.set(self.previous_deadline));
    }
}

/// mimalloc, refusing huge allocations while Starlark evaluates on the
/// current thread (see the module documentation). Outside evaluation it is
/// mimalloc plus one comparison. Declare it as the `#[global_allocator]` of
/// a process that loads BUILD files.
pub struct GuardedAllocator;

fn guarded_file() -> Option<(*const u8, usize)> {
    // `try_with`: the thread-local may be gone while the thread exits.
    GUARDED_FILE.try_with(Cell::get).ok().flatten()
}

/// Accounts for `grown` more bytes (negative when freed) and refuses the
/// allocation of `size` bytes if it breaks a limit.
fn account(size: usize, grown: isize) {
    let Some(file) = guarded_file() else { return };
    if size > MAX_ALLOCATION {
        refuse(file, Refusal::Single(size));
    }
    if LIVE_BYTES.try_with(|cell| cell.set(cell.get().saturating_add(grown))).is_ok() {
        let total = TOTAL_LIVE_BYTES.fetch_add(grown, Ordering::Relaxed).saturating_add(grown);
        if total > MAX_LIVE_BYTES {
            refuse(file, Refusal::Live);
        }
    }
    // Every few hundred allocations, and at every large one (next to
    // filling a MiB, reading the clock costs nothing).
    let look = size >= LARGE_ALLOCATION
        || SINCE_CLOCK
            .try_with(|cell| {
                let count = cell.get() + 1;
                cell.set(if count >= DEADLINE_CHECK_PERIOD { 0 } else { count });
                count >= DEADLINE_CHECK_PERIOD
            })
            .unwrap_or(false);
    if look {
        if let Ok(Some(deadline)) = DEADLINE.try_with(Cell::get) {
            if Instant::now() >= deadline {
                refuse(file, Refusal::Timeout);
            }
        }
    }
}

fn check_result(pointer: *mut u8, size: usize) -> *mut u8 {
    if pointer.is_null() {
        if let Some(file) = guarded_file() {
            refuse(file, Refusal::Single(size));
        }
    }
    pointer
}

enum Refusal {
    Single(usize),
    Live,
    Timeout,
}

/// Prints the error without allocating and exits with the user-error code.
fn refuse((file, length): (*const u8, usize), refusal: Refusal) -> ! {
    fn write(bytes: &[u8]) {
        // SAFETY: writing an initialised buffer to stderr.
        unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    }
    let size = match refusal {
        Refusal::Single(size) => size,
        Refusal::Live => 0,
        Refusal::Timeout => load_timeout().as_secs() as usize,
    };
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = size;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    write(b"error: Evaluating `");
    // SAFETY: the guard holds a pointer to the file name, alive while it is on.
    write(unsafe { std::slice::from_raw_parts(file, length) });
    match refusal {
        Refusal::Single(_) => {
            write(b"` tried to allocate ");
            write(&digits[at..]);
            write(b" bytes at once; berth stops at 1 GiB\n");
            write(b"hint: look for a huge repetition such as `\"x\" * (1 << 30)` or `[0] * (1 << 28)`\n");
        }
        Refusal::Live => {
            // The budget is the whole loader's (every file loading at once).
            write(b"` used more than 2 GiB of memory\n");
            write(b"hint: look for a loop building large strings or lists\n");
        }
        Refusal::Timeout => {
            write(b"` took longer than ");
            write(&digits[at..]);
            write(b" s (`--load-timeout`)\n");
            write(b"hint: look for a loop doing heavy work; BUILD files should declare targets, not compute\n");
        }
    }
    // SAFETY: `_exit` ends the process without running code that could allocate.
    unsafe { libc::_exit(1) }
}

unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size(), layout.size() as isize);
        check_result(unsafe { MiMalloc.alloc(layout) }, layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        account(layout.size(), layout.size() as isize);
        check_result(unsafe { MiMalloc.alloc_zeroed(layout) }, layout.size())
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if guarded_file().is_some() && LIVE_BYTES.try_with(|cell| cell.set(cell.get() - layout.size() as isize)).is_ok()
        {
            TOTAL_LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { MiMalloc.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(new_size, new_size as isize - layout.size() as isize);
        check_result(unsafe { MiMalloc.realloc(pointer, layout, new_size) }, new_size)
    }
}

/// What `release_freed_memory` does: set once, by `main.rs`, which chose
/// the allocator and knows how to tune it.
static RELEASE_FREED_MEMORY: OnceLock<fn()> = OnceLock::new();

/// Sets how the process returns the memory loading freed to the OS (see
/// `release_freed_memory`). The first call wins.
pub fn set_release_freed_memory(release: fn()) {
    let _ = RELEASE_FREED_MEMORY.set(release);
}

/// Called once BUILD files are loaded, when the Starlark heaps and glob
/// listings are freed and the rest of the build allocates far less often:
/// runs what `set_release_freed_memory` set, if anything (nothing in tests
/// and benchmarks, which keep their allocator's defaults).
pub fn release_freed_memory() {
    if let Some(release) = RELEASE_FREED_MEMORY.get() {
        release();
    }
}

/// Most operators and brackets in one statement: the parser recurses once per
/// nesting level, so a machine-made `[[[[...]]]]` could overflow its stack.
pub(crate) const MAX_STATEMENT_NESTING: usize = 2000;
/// Deepest indentation, in columns, for the same reason.
pub(crate) const MAX_INDENT: usize = 2000;

/// Refuses source text whose statements could nest deeper than the parser's
/// stack allows, before it is parsed. A lexical scan: strings and comments
/// are skipped; brackets, operators and the keywords that build expressions
/// are counted per statement.
pub(crate) fn check_nesting(path: &str, text: &str) -> Result<(), LoadError> {
    let bytes = text.as_bytes();
    let (mut at, mut line, mut depth, mut count, mut line_start) = (0usize, 1u32, 0usize, 0usize, true);
    let mut statement_line = 1u32;
    let too_deep = |line: u32, what: String| {
        LoadError::Limit(
            Error::user(format!("Statement nests too deeply to load: {what}"))
                .at(Location { path: path.to_owned(), line, column: 1 })
                .with_hint("split it into smaller statements or functions"),
        )
    };
    while at < bytes.len() {
        if line_start {
            let indent = bytes[at..].iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
            if indent > MAX_INDENT {
                return Err(too_deep(line, format!("indented more than {MAX_INDENT} columns")));
            }
            line_start = false;
        }
        let byte = bytes[at];
        match byte {
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
                continue;
            }
            b'\'' | b'"' => {
                let triple = bytes[at..].starts_with(&[byte; 3]);
                at += if triple { 3 } else { 1 };
                while at < bytes.len() {
                    match bytes[at] {
                        b'\\' => at += 1,
                        b'\n' => line += 1,
                        quote if quote == byte && (!triple || bytes[at..].starts_with(&[byte; 3])) => {
                            at += if triple { 3 } else { 1 };
                            break;
                        }
                        _ => {}
                    }
                    at += 1;
                }
                continue;
            }
            b'\n' => {
                line += 1;
                line_start = true;
                let continued = at > 0 && bytes[at - 1] == b'\\';
                if depth == 0 && !continued {
                    count = 0;
                    statement_line = line;
                }
            }
            b';' if depth == 0 => {
                count = 0;
                statement_line = line;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                count += 1;
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'|' | b'&' | b'^' | b'~' | b'<' | b'>' | b'=' | b'!' => count += 1,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let end = at + bytes[at..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
                if matches!(&bytes[at..end], b"not" | b"and" | b"or" | b"if" | b"else" | b"lambda" | b"for" | b"in") {
                    count += 1;
                }
                at = end;
                if count > MAX_STATEMENT_NESTING {
                    return Err(too_deep(
                        statement_line,
                        format!("more than {MAX_STATEMENT_NESTING} operators and brackets"),
                    ));
                }
                continue;
            }
            _ => {}
        }
        if count > MAX_STATEMENT_NESTING {
            return Err(too_deep(statement_line, format!("more than {MAX_STATEMENT_NESTING} operators and brackets")));
        }
        at += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_files_pass_the_nesting_check() {
        let text = "load(\"//x:y.star\", \"z\")\n# a comment with ((((( and '\ndef f(a, *, b = [1, 2]):\n    return {\"k\": a + b} if a else None\n\ns = \"\"\"\n[[[[ not counted\n\"\"\"\nsrcs = [\n" .to_owned()
            + &"    \"file.txt\",\n".repeat(5000)
            + "]\n";
        check_nesting("BUILD.star", &text).unwrap();
        let many = "x = 1\n".repeat(10000) + &"y = a + b\n".repeat(5000);
        check_nesting("BUILD.star", &many).unwrap();
    }

    #[test]
    fn deep_nesting_is_refused_with_its_line() {
        for text in [
            format!("a = 1\nx = {}{}\n", "[".repeat(3000), "]".repeat(3000)),
            format!("a = 1\nx = {}1\n", "-".repeat(3000)),
            format!("a = 1\nx = {}True\n", "not ".repeat(3000)),
            format!("a = 1\nx = ({})\n", "1 +\n".repeat(3000) + "1"),
        ] {
            let error = check_nesting("app/BUILD.star", &text).unwrap_err().to_string();
            assert!(error.starts_with("Statement nests too deeply to load: more than 2000 operators and brackets\n  --> app/BUILD.star:2:1"), "{error}");
        }
        let indented = format!("if True:\n{}pass\n", " ".repeat(3000));
        assert!(check_nesting("a", &indented).unwrap_err().to_string().contains("indented more than 2000 columns"));
    }
}
