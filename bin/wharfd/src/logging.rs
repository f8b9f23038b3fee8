//! Logging: the console, `var/log/wharfd.log`, and `var/log/audit.log` for login attempts only.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

use crate::layout::Layout;

/// Keeps the background log writers alive; dropping it flushes them.
#[derive(Debug)]
pub struct LogGuards(#[allow(dead_code)] Vec<WorkerGuard>);

/// Installs the global subscriber. `level` is the configured level; `RUST_LOG` overrides it.
pub fn init(layout: &Layout, level: &str) -> std::io::Result<LogGuards> {
    std::fs::create_dir_all(layout.logs())?;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let (main_file, main_guard) = tracing_appender::non_blocking(tracing_appender::rolling::never(
        layout.logs(),
        "wharfd.log",
    ));
    let (audit_file, audit_guard) = tracing_appender::non_blocking(
        tracing_appender::rolling::never(layout.logs(), "audit.log"),
    );
    let audit_only = Targets::new().with_target("audit", tracing::Level::INFO);
    tracing_subscriber::registry()
        .with(fmt::layer().with_writer(std::io::stderr).with_filter(filter()))
        .with(fmt::layer().with_ansi(false).with_writer(main_file).with_filter(filter()))
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_target(false)
                .with_writer(audit_file)
                .with_filter(audit_only),
        )
        .init();
    Ok(LogGuards(vec![main_guard, audit_guard]))
}
