//! Draws engine events on stderr: a progress bar on a terminal (nothing for
//! the first 500 ms, redrawn at most every 100 ms, as cargo does), one plain
//! line per finished action otherwise. stdout is never touched.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cache::ActionId;
use crate::report::{Event, Reporter};

/// How progress is drawn (`--console`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Fancy on a terminal, plain otherwise.
    Auto,
    Fancy,
    Plain,
    None,
}

/// How much is said (`-q`, `-v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Nothing but errors (which `cli` prints).
    Quiet,
    /// Actions that ran, and a summary.
    Normal,
    /// Every action, cached or not.
    Verbose,
}

/// The console [`Reporter`].
pub struct ConsoleReporter {
    style: Style,
}

enum Style {
    /// No progress; warnings still go to stderr unless `--quiet`.
    Silent {
        warnings: bool,
    },
    Plain {
        verbosity: Verbosity,
        bytes: AtomicU64,
        remote: RemoteBytes,
    },
    Fancy(Fancy),
}

impl ConsoleReporter {
    pub fn new(mode: ConsoleMode, verbosity: Verbosity) -> ConsoleReporter {
        let mode = match mode {
            ConsoleMode::Auto if std::io::stderr().is_terminal() && std::env::var("TERM").as_deref() != Ok("dumb") => {
                ConsoleMode::Fancy
            }
            ConsoleMode::Auto => ConsoleMode::Plain,
            mode => mode,
        };
        let style = match (mode, verbosity) {
            (_, Verbosity::Quiet) => Style::Silent { warnings: false },
            (ConsoleMode::None, _) => Style::Silent { warnings: true },
            (ConsoleMode::Fancy, _) => Style::Fancy(Fancy::new(verbosity)),
            _ => Style::Plain { verbosity, bytes: AtomicU64::new(0), remote: RemoteBytes::default() },
        };
        ConsoleReporter { style }
    }
}

impl Reporter for ConsoleReporter {
    fn report(&self, event: &Event<'_>) {
        match &self.style {
            Style::Silent { warnings: true } => {
                if let Event::Warning { message } = event {
                    eprintln!("warning: {message}")
                }
            }
            Style::Silent { warnings: false } => {}
            Style::Plain { verbosity, bytes, remote } => plain(*verbosity, bytes, remote, event),
            Style::Fancy(fancy) => fancy.report(event),
        }
    }
}

/// Bytes the remote cache moved, for the summary.
#[derive(Default)]
struct RemoteBytes {
    downloaded: AtomicU64,
    uploaded: AtomicU64,
}

impl RemoteBytes {
    fn add(&self, downloaded: u64, uploaded: u64) {
        self.downloaded.fetch_add(downloaded, Ordering::Relaxed);
        self.uploaded.fetch_add(uploaded, Ordering::Relaxed);
    }

    fn get(&self) -> (u64, u64) {
        (self.downloaded.load(Ordering::Relaxed), self.uploaded.load(Ordering::Relaxed))
    }
}

fn plain(verbosity: Verbosity, bytes: &AtomicU64, remote_bytes: &RemoteBytes, event: &Event<'_>) {
    match *event {
        Event::ActionFinished { owner, kind, duration, .. } => {
            eprintln!("ran     {owner} {kind} ({:.2}s)", duration.as_secs_f64())
        }
        Event::ActionCached { owner, kind, .. } if verbosity == Verbosity::Verbose => {
            eprintln!("cached  {owner} {kind}")
        }
        Event::ActionRemote { owner, kind, .. } => eprintln!("remote  {owner} {kind}"),
        Event::RemoteWarning { message } => eprintln!("warning: {message}"),
        Event::RemoteTransferred { downloaded, uploaded } => remote_bytes.add(downloaded, uploaded),
        Event::ActionFailed { owner, kind, .. } => eprintln!("FAILED  {owner} {kind}"),
        Event::Warning { message } => eprintln!("warning: {message}"),
        Event::BytesTransferred { bytes: moved } => {
            bytes.fetch_add(moved, Ordering::Relaxed);
        }
        Event::BuildFinished { ran, cached, remote, duration, .. } => {
            eprintln!("{}", summary(ran, cached, remote, remote_bytes.get(), duration, bytes.load(Ordering::Relaxed)))
        }
        _ => {}
    }
}

/// `N actions: R ran, C cached[, M remote, D downloaded, U uploaded][, B
/// transferred] in Ts`; the remote part only when a remote cache took part.
fn summary(ran: usize, cached: usize, remote: usize, (down, up): (u64, u64), duration: Duration, bytes: u64) -> String {
    let total = ran + cached + remote;
    let noun = if total == 1 { "action" } else { "actions" };
    let mut text = format!("{total} {noun}: {ran} ran, {cached} cached");
    if remote > 0 || down > 0 || up > 0 {
        text.push_str(&format!(
            ", {remote} remote, {} downloaded, {} uploaded",
            indicatif::HumanBytes(down),
            indicatif::HumanBytes(up)
        ));
    }
    if bytes > 0 {
        text.push_str(&format!(", {} transferred", indicatif::HumanBytes(bytes)));
    }
    text.push_str(&format!(" in {:.2}s", duration.as_secs_f64()));
    text
}

/// The progress bar, hidden until the build has run for 500 ms.
struct Fancy {
    bar: ProgressBar,
    verbosity: Verbosity,
    running: Mutex<BTreeMap<ActionId, String>>,
    done: AtomicUsize,
    bytes: AtomicU64,
    remote_bytes: RemoteBytes,
    /// Set when the build ends, so the 500 ms timer does not reveal a finished bar.
    finished: Arc<(Mutex<bool>, Condvar)>,
}

impl Fancy {
    fn new(verbosity: Verbosity) -> Fancy {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.green} [{pos}/{len}] {elapsed} {wide_msg}")
                .expect("the template is valid"),
        );
        Fancy {
            bar,
            verbosity,
            running: Mutex::new(BTreeMap::new()),
            done: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            remote_bytes: RemoteBytes::default(),
            finished: Arc::new((Mutex::new(false), Condvar::new())),
        }
    }

    fn report(&self, event: &Event<'_>) {
        match *event {
            Event::BuildStarted { actions } => {
                self.bar.set_length(actions as u64);
                let bar = self.bar.clone();
                let finished = self.finished.clone();
                std::thread::spawn(move || {
                    let (lock, signal) = &*finished;
                    let guard = lock.lock().expect("console lock");
                    let (guard, _) = signal
                        .wait_timeout_while(guard, Duration::from_millis(500), |finished| !*finished)
                        .expect("console lock");
                    if !*guard {
                        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
                        bar.enable_steady_tick(Duration::from_millis(100));
                    }
                });
            }
            Event::ActionStarted { id, owner, kind } => {
                self.running.lock().expect("console lock").insert(id, format!("{owner} {kind}"));
                self.update_message();
            }
            Event::ActionCached { owner, kind, .. } => {
                if self.verbosity == Verbosity::Verbose {
                    self.bar.suspend(|| eprintln!("cached  {owner} {kind}"));
                }
                self.bar.set_position(self.done.fetch_add(1, Ordering::Relaxed) as u64 + 1);
            }
            Event::ActionRemote { owner, kind, .. } => {
                if self.verbosity == Verbosity::Verbose {
                    self.bar.suspend(|| eprintln!("remote  {owner} {kind}"));
                }
                self.bar.set_position(self.done.fetch_add(1, Ordering::Relaxed) as u64 + 1);
            }
            Event::RemoteWarning { message } => self.bar.suspend(|| eprintln!("warning: {message}")),
            Event::RemoteTransferred { downloaded, uploaded } => {
                self.remote_bytes.add(downloaded, uploaded);
                self.update_message();
            }
            Event::ActionFinished { id, owner, kind, duration } => {
                self.running.lock().expect("console lock").remove(&id);
                if self.verbosity == Verbosity::Verbose {
                    self.bar.suspend(|| eprintln!("ran     {owner} {kind} ({:.2}s)", duration.as_secs_f64()));
                }
                self.bar.set_position(self.done.fetch_add(1, Ordering::Relaxed) as u64 + 1);
                self.update_message();
            }
            Event::ActionFailed { id, owner, kind, .. } => {
                self.running.lock().expect("console lock").remove(&id);
                self.bar.suspend(|| eprintln!("FAILED  {owner} {kind}"));
            }
            Event::Warning { message } => self.bar.suspend(|| eprintln!("warning: {message}")),
            Event::BytesTransferred { bytes } => {
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
                self.update_message();
            }
            Event::BuildFinished { ran, cached, remote, duration, .. } => {
                let (lock, signal) = &*self.finished;
                *lock.lock().expect("console lock") = true;
                signal.notify_all();
                self.bar.finish_and_clear();
                let (bytes, remote_bytes) = (self.bytes.load(Ordering::Relaxed), self.remote_bytes.get());
                eprintln!("{}", summary(ran, cached, remote, remote_bytes, duration, bytes));
            }
        }
    }

    fn update_message(&self) {
        let running = self.running.lock().expect("console lock");
        let mut message = match running.values().next() {
            Some(first) if running.len() > 1 => format!("{first} (+{} more)", running.len() - 1),
            Some(first) => first.clone(),
            None => String::new(),
        };
        let bytes = self.bytes.load(Ordering::Relaxed);
        if bytes > 0 {
            message.push_str(&format!(" [{}]", indicatif::HumanBytes(bytes)));
        }
        let (down, up) = self.remote_bytes.get();
        if down > 0 || up > 0 {
            message.push_str(&format!(
                " [remote: {} down, {} up]",
                indicatif::HumanBytes(down),
                indicatif::HumanBytes(up)
            ));
        }
        self.bar.set_message(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_actions_and_bytes() {
        assert_eq!(summary(2, 5, 0, (0, 0), Duration::from_millis(1234), 0), "7 actions: 2 ran, 5 cached in 1.23s");
        assert_eq!(
            summary(1, 0, 0, (0, 0), Duration::from_millis(50), 3 << 20),
            "1 action: 1 ran, 0 cached, 3.00 MiB transferred in 0.05s"
        );
        assert_eq!(
            summary(0, 1, 6, (5 << 20, 0), Duration::from_millis(50), 0),
            "7 actions: 0 ran, 1 cached, 6 remote, 5.00 MiB downloaded, 0 B uploaded in 0.05s"
        );
    }

    #[test]
    fn quiet_and_none_draw_nothing_and_auto_is_plain_off_a_terminal() {
        assert!(matches!(ConsoleReporter::new(ConsoleMode::Fancy, Verbosity::Quiet).style, Style::Silent { .. }));
        assert!(matches!(ConsoleReporter::new(ConsoleMode::None, Verbosity::Verbose).style, Style::Silent { .. }));
        if !std::io::stderr().is_terminal() {
            assert!(matches!(ConsoleReporter::new(ConsoleMode::Auto, Verbosity::Normal).style, Style::Plain { .. }));
        }
    }
}
