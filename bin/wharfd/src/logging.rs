//! Logging: the console, `var/log/wharfd.log`, and `var/log/audit.log` for who did what (logins,
//! uploads, downloads, deletes, renames).
//!
//! The log files are opened by [`LogFile`], mode 0600 (the audit log names users and addresses), and
//! reopened on SIGHUP so that logrotate can move them away. Colour codes go to the console only
//! when it is a terminal, never into a file.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal as _, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

use crate::layout::Layout;

/// Keeps the background log writers alive (dropping it flushes them), and reopens the files.
#[derive(Debug)]
pub struct LogGuards {
    _writers: Vec<WorkerGuard>,
    files: Vec<LogFile>,
}

impl LogGuards {
    /// Reopens every log file by name: after a rotation, writing goes on in the new file.
    pub fn reopen(&self) -> std::io::Result<()> {
        self.files.iter().try_for_each(LogFile::reopen)
    }
}

/// An append-only log file that can be reopened under its name.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    pub fn open(path: &Path) -> std::io::Result<LogFile> {
        Ok(LogFile { path: path.to_owned(), file: Arc::new(Mutex::new(open_private(path)?)) })
    }

    pub fn reopen(&self) -> std::io::Result<()> {
        let fresh = open_private(&self.path)?;
        *self.file.lock() = fresh;
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.lock().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.lock().flush()
    }
}

fn open_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// Checks a configured level (`info`, `wharfd=debug,quinn=warn`, ...) before anything starts.
pub fn check_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let invalid =
        |why: String| format!("invalid [log] level {level:?}: {why} (try info, debug or warn)");
    // EnvFilter takes a bare word for a target name, so a typo like "inf" would silently log nothing.
    for directive in level.split(',').map(str::trim) {
        let wanted = directive.rsplit_once('=').map_or(directive, |(_, level)| level);
        if !LEVELS.contains(&wanted.to_ascii_lowercase().as_str()) {
            return Err(invalid(format!("{wanted:?} is not one of {}", LEVELS.join(", "))));
        }
    }
    EnvFilter::try_new(level).map(drop).map_err(|err| invalid(err.to_string()))
}

/// Installs the global subscriber. `level` is the configured level; `RUST_LOG` overrides it.
pub fn init(layout: &Layout, level: &str) -> std::io::Result<LogGuards> {
    check_level(level).map_err(std::io::Error::other)?;
    crate::layout::private_dir(&layout.logs())?;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let main = LogFile::open(&layout.logs().join("wharfd.log"))?;
    let audit = LogFile::open(&layout.logs().join("audit.log"))?;
    let (main_writer, main_guard) = tracing_appender::non_blocking(main.clone());
    let (audit_writer, audit_guard) = tracing_appender::non_blocking(audit.clone());
    let audit_only = Targets::new().with_target("audit", tracing::Level::INFO);
    let console = fmt::layer().with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(console.with_writer(std::io::stderr).with_filter(filter()))
        .with(
            fmt::layer()
                .with_ansi(false)
                .fmt_fields(FileFields::default())
                .with_writer(main_writer)
                .with_filter(filter()),
        )
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_target(false)
                .with_writer(audit_writer)
                .with_filter(audit_only),
        )
        .init();
    Ok(LogGuards { _writers: vec![main_guard, audit_guard], files: vec![main, audit] })
}

/// The default field format under a type of its own. fmt layers keep a span's formatted fields in
/// the span, keyed by their formatter's type, and each layer appends a recorded field (the user,
/// known only after login) to them: with the console and the file sharing one type, every line
/// said `user="ann" user="ann"` (tracing issue #1372).
#[derive(Default)]
struct FileFields(fmt::format::DefaultFields);

impl<'writer> fmt::FormatFields<'writer> for FileFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

/// Reopens the log files on every SIGHUP, for as long as the server runs.
///
/// It listens from the call on (made inside the runtime, before the server says it listens): a
/// SIGHUP before an `async` listener's first poll would have ended the process, SIGHUP's default.
pub fn reopen_on_sighup(guards: Arc<LogGuards>) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup());
    async move {
        let Ok(mut hangups) = hangups else {
            tracing::warn!("cannot listen for SIGHUP; log files will not be reopened");
            return;
        };
        while hangups.recv().await.is_some() {
            match guards.reopen() {
                Ok(()) => tracing::info!("log files reopened"),
                Err(err) => tracing::error!(%err, "cannot reopen the log files"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_level;

    #[test]
    fn levels_are_checked_word_by_word() {
        for good in ["info", "warn", "wharfd=debug,quinn=warn", "TRACE", "off"] {
            assert!(check_level(good).is_ok(), "{good}");
        }
        for bad in ["loud", "inf", "wharfd=loud", ""] {
            assert!(check_level(bad).is_err(), "{bad:?}");
        }
    }
}
