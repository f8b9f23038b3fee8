//! Live transfer progress: one bar per active file and an overall bar (files done, bytes, rate, ETA),
//! drawn with indicatif on a terminal; plain lines otherwise. Each finished file prints one line with
//! its size, time, rate and whether its checksum matched. A background job ([`crate::jobs`]) draws
//! nothing: its bars count out of sight for `jobs`, and its lines are kept for its report.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::ClientError;
use crate::format::human_bytes;
use crate::jobs::JobOutput;
use crate::transfer::Outcome;

const FILE_TEMPLATE: &str = "{msg:32!} [{bar:24}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}";
const TOTAL_TEMPLATE: &str = "{prefix:32!} [{bar:24}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}";

/// A bar whose transfer moved nothing for this long says "stalled" instead of showing a frozen rate.
pub const STALLED_AFTER: Duration = Duration::from_secs(3);

/// How often the stall watcher looks at the bars.
const STALL_CHECK: Duration = Duration::from_millis(500);

/// Progress of a batch of transfers.
pub struct TransferUi {
    multi: MultiProgress,
    overall: ProgressBar,
    tty: bool,
    /// The bars are drawn (on a terminal); until [`TransferUi::show`], nothing is.
    shown: AtomicBool,
    verb: &'static str,
    files: usize,
    done: AtomicUsize,
    /// The files in progress, for the stall watcher (which ends when the UI is dropped).
    active: Arc<Mutex<Vec<Weak<FileState>>>>,
    /// The background job this batch runs in, which keeps its lines.
    job: Option<Arc<JobOutput>>,
    /// Set as the bars are cleared for good ([`ClearOnDrop`]): nothing draws them again.
    closed: Arc<AtomicBool>,
}

/// Progress of one file.
pub struct FileProgress {
    state: Arc<FileState>,
    overall: ProgressBar,
    /// 0 until known, for a download that learns its size as it starts.
    size: AtomicU64,
    tty: bool,
    /// Last quarter reported on a plain (non-terminal) output.
    quarter: AtomicU64,
    /// The next report is the first of an attempt: the bytes already in place, not a rate.
    first: AtomicBool,
    /// What the latest attempt found in place (its first report): a resume's starting point.
    carried: AtomicU64,
    /// In a background job: no quarter lines either.
    quiet: bool,
}

/// What the stall watcher sees of a file.
struct FileState {
    bar: ProgressBar,
    name: String,
    last_moved: Mutex<Instant>,
    stalled: AtomicBool,
    /// The UI's [`TransferUi::closed`].
    closed: Arc<AtomicBool>,
}

impl FileState {
    /// Whether the bars were cleared for good: a transfer task still finishing after a Ctrl-C
    /// must not draw its bar again between the clearing and the hiding of the bars.
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn moved(&self) {
        *self.last_moved.lock() = Instant::now();
        if self.stalled.swap(false, Ordering::Relaxed) {
            self.bar.set_message(self.name.clone());
        }
    }

    fn check_stall(&self) {
        if self.closed() {
            return;
        }
        let idle = self.last_moved.lock().elapsed();
        if idle >= STALLED_AFTER && !self.stalled.swap(true, Ordering::Relaxed) {
            self.bar.set_message(format!("{} (stalled)", self.name));
        }
    }
}

impl FileProgress {
    /// Goes back to zero for a fresh attempt.
    pub fn restart(&self) {
        if self.state.closed() {
            return;
        }
        let bar = &self.state.bar;
        self.overall.set_position(self.overall.position().saturating_sub(bar.position()));
        bar.set_position(0);
        self.quarter.store(0, Ordering::Relaxed);
        self.first.store(true, Ordering::Relaxed);
        self.carried.store(0, Ordering::Relaxed);
    }

    /// Whether the latest attempt resumed: found bytes of the file already in place.
    pub fn resumed(&self) -> bool {
        self.carried.load(Ordering::Relaxed) > 0
    }

    /// Counts `bytes` moved. The first report of an attempt is what was already in place (a resume):
    /// it moves the bar but does not count towards the rate.
    pub fn advance(&self, bytes: u64) {
        if self.state.closed() {
            return;
        }
        let bar = &self.state.bar;
        bar.inc(bytes);
        self.overall.inc(bytes);
        if self.first.swap(false, Ordering::Relaxed) {
            self.carried.store(bytes, Ordering::Relaxed);
            bar.reset_eta();
            self.overall.reset_eta();
        }
        self.state.moved();
        let size = self.size.load(Ordering::Relaxed);
        if !self.tty && !self.quiet && size > 0 {
            let quarter = (bar.position() * 4 / size).min(3);
            let before = self.quarter.fetch_max(quarter, Ordering::Relaxed);
            // A file that moves in a few large steps still says every quarter it passed.
            for passed in before + 1..=quarter {
                plain_line(&format!("{}: {}%", self.state.name, passed * 25));
            }
        }
    }

    /// Gives the bar of a file started with size 0 its size, once: a download sent before its
    /// size was known learns it from the stat sent beside it. Later calls (the same file's next
    /// attempt) change nothing.
    pub fn learn_size(&self, size: u64) {
        let learned = self.size.compare_exchange(0, size, Ordering::Relaxed, Ordering::Relaxed);
        if learned.is_ok() && !self.state.closed() {
            self.state.bar.set_length(size);
            self.overall.inc_length(size);
        }
    }

    /// The file's name as shown.
    pub fn name(&self) -> &str {
        &self.state.name
    }
}

impl TransferUi {
    /// `verb` is `put` or `get`; `files` and `bytes` are the totals. Nothing is drawn until
    /// [`TransferUi::show`].
    pub fn new(verb: &'static str, files: usize, bytes: u64) -> TransferUi {
        let job = crate::jobs::current();
        let tty = job.is_none() && std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
        let overall = multi.add(ProgressBar::new(bytes));
        overall.set_style(style(TOTAL_TEMPLATE));
        if let Some(job) = &job {
            job.track(overall.clone());
        }
        let active = Arc::new(Mutex::new(Vec::new()));
        if tty {
            watch_stalls(Arc::downgrade(&active));
        }
        let shown = AtomicBool::new(false);
        let done = AtomicUsize::new(0);
        let closed = Arc::new(AtomicBool::new(false));
        let ui = TransferUi { multi, overall, tty, shown, verb, files, done, active, job, closed };
        ui.update_prefix();
        ui
    }

    /// Starts drawing the bars (on a terminal). A batch shows them once its login is answered, so
    /// that a refused login shows none, though its first requests went out behind it.
    pub fn show(&self) {
        if self.tty && !self.shown.swap(true, Ordering::Relaxed) {
            self.multi.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn update_prefix(&self) {
        let done = self.done.load(Ordering::Relaxed);
        self.overall.set_prefix(format!("{} {done}/{} files", self.verb, self.files));
    }

    /// Starts the bar of one file.
    pub fn start(&self, name: &str, size: u64) -> FileProgress {
        let name = crate::format::shown(name).into_owned();
        let bar = self.multi.insert_before(&self.overall, ProgressBar::new(size));
        bar.set_style(style(FILE_TEMPLATE));
        bar.set_message(name.clone());
        let state = Arc::new(FileState {
            bar,
            name,
            last_moved: Mutex::new(Instant::now()),
            stalled: AtomicBool::new(false),
            closed: self.closed.clone(),
        });
        self.active.lock().push(Arc::downgrade(&state));
        FileProgress {
            state,
            overall: self.overall.clone(),
            size: AtomicU64::new(size),
            tty: self.tty,
            quarter: AtomicU64::new(0),
            first: AtomicBool::new(true),
            carried: AtomicU64::new(0),
            quiet: self.job.is_some(),
        }
    }

    /// Ends one file's bar and prints its result line.
    pub fn finish(&self, file: FileProgress, result: &Result<Outcome, ClientError>) {
        if file.state.closed() {
            return;
        }
        file.state.bar.finish_and_clear();
        self.done.fetch_add(1, Ordering::Relaxed);
        self.update_prefix();
        let line = match result {
            Ok(outcome) => finished_line(self.verb, file.name(), outcome),
            // A batch of one fails with this very error, which its caller reports.
            Err(_) if self.files == 1 => return,
            Err(err) => format!("{} {}: failed: {err}", self.verb, file.name()),
        };
        self.print(line);
    }

    /// Prints a line above the bars (or plainly, without a terminal).
    pub fn print(&self, line: String) {
        let line = crate::format::printable(&line).into_owned();
        if let Some(job) = &self.job {
            job.line(line);
        } else if self.tty {
            // A hidden target drops lines. A line to print means a transfer was answered, and so
            // was the login ahead of it, though what shows the bars on that answer may not have
            // run yet.
            self.show();
            let _ = self.multi.println(line);
        } else {
            plain_line(&line);
        }
    }

    /// A guard that clears every bar when dropped.
    pub fn clear_on_drop(&self) -> ClearOnDrop {
        ClearOnDrop(self.multi.clone(), self.closed.clone())
    }

    /// Removes the overall bar.
    pub fn close(self) {
        self.overall.finish_and_clear();
    }
}

/// Marks bars whose transfer moved nothing for [`STALLED_AFTER`], on a thread of its own that ends
/// with the UI: a transfer stuck on a dead connection must not show a frozen rate as if it moved.
fn watch_stalls(active: Weak<Mutex<Vec<Weak<FileState>>>>) {
    let spawned = std::thread::Builder::new().name("wharf-stalls".into()).spawn(move || {
        loop {
            std::thread::sleep(STALL_CHECK);
            let Some(active) = active.upgrade() else { return };
            let mut files = active.lock();
            files.retain(|file| match file.upgrade() {
                Some(file) => {
                    file.check_stall();
                    true
                }
                None => false,
            });
        }
    });
    if let Err(err) = spawned {
        tracing::debug!(%err, "no stall watcher");
    }
}

/// Clears the bars when dropped. The future running a batch holds one, so that when it is
/// cancelled (Ctrl-C) the bars go at once, not whenever the aborted transfer tasks let go.
pub struct ClearOnDrop(MultiProgress, Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.1.store(true, Ordering::Release);
        let _ = self.0.clear();
        // Aborted transfer tasks may still be finishing on another thread: nothing they draw now
        // should reach the screen.
        self.0.set_draw_target(ProgressDrawTarget::hidden());
    }
}

/// Prints a line on standard output without a terminal. A reader that went away (`| head`) is not
/// an error here: the command's own output notices it and ends quietly.
fn plain_line(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{}", crate::format::printable(line));
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// `put big.iso: 1.0 GiB in 2.6 s (394.2 MiB/s), sha256 ok (3f2a9c0d1e4b…)`.
pub fn finished_line(verb: &str, name: &str, outcome: &Outcome) -> String {
    let secs = outcome.elapsed.as_secs_f64().max(1e-6);
    let moved = outcome.size - outcome.resumed_from;
    let rate = human_bytes((moved as f64 / secs) as u64);
    let resumed = if outcome.resumed_from > 0 {
        format!(", resumed at {}", human_bytes(outcome.resumed_from))
    } else {
        String::new()
    };
    let digest = outcome.sha256.to_string();
    format!(
        "{verb} {name}: {} in {secs:.1} s ({rate}/s{resumed}), sha256 ok ({}…)",
        human_bytes(outcome.size),
        &digest[..12]
    )
}
