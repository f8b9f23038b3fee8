//! What a node has done, for a fleet to be watched: counters kept in atomics as things happen,
//! served in the Prometheus text format on the admin address of `[metrics] listen`. Sessions,
//! logins by result, transfers and bytes by direction, error replies by code, and the latency of
//! the object store and the database (as summaries: a sum of seconds and a count).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wharf_common::proto::ErrorCode;

/// How long a scraper has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a request read: the request line and headers of a scrape are far smaller.
const MAX_REQUEST: usize = 8 * 1024;

/// Which way a transfer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

/// How a login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Ok,
    Failed,
    /// Refused without a check: the address failed too often.
    Refused,
}

impl Login {
    /// How a login that failed with `err` counts.
    pub fn failure(err: &crate::auth::LoginError) -> Login {
        match err {
            crate::auth::LoginError::TooManyAttempts => Login::Refused,
            _ => Login::Failed,
        }
    }
}

/// A latency summary: seconds spent, and how many operations spent them.
#[derive(Debug, Default)]
pub struct Timing {
    micros: AtomicU64,
    count: AtomicU64,
}

impl Timing {
    /// Counts one operation that started at `started`.
    pub fn since(&self, started: Instant) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `operation` and counts the time it took.
    pub async fn time<T>(&self, operation: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = operation.await;
        self.since(started);
        result
    }
}

/// The node's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions: AtomicI64,
    logins: [AtomicU64; 3],
    transfers: [[AtomicU64; 2]; 2],
    bytes: [AtomicU64; 2],
    errors: Mutex<BTreeMap<&'static str, u64>>,
    pub store: Timing,
    pub database: Timing,
}

/// The process's counters.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);
    &METRICS
}

/// A logged-in session, counted until dropped.
pub struct OpenSession(&'static Metrics);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn session(&'static self) -> OpenSession {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        OpenSession(self)
    }

    pub fn login(&self, result: Login) {
        self.logins[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A transfer ended: `Some(bytes)` if it succeeded.
    pub fn transfer(&self, direction: Direction, moved: Option<u64>) {
        let d = direction as usize;
        self.transfers[d][usize::from(moved.is_none())].fetch_add(1, Ordering::Relaxed);
        self.bytes[d].fetch_add(moved.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn error(&self, code: ErrorCode) {
        *self.errors.lock().entry(code.as_str()).or_default() += 1;
    }

    /// The counters in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP wharf_sessions Logged-in sessions open now.");
        let _ = writeln!(out, "# TYPE wharf_sessions gauge");
        let _ = writeln!(out, "wharf_sessions {}", self.sessions.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP wharf_logins_total Login attempts, by result.");
        let _ = writeln!(out, "# TYPE wharf_logins_total counter");
        for (result, counter) in ["ok", "failed", "refused"].iter().zip(&self.logins) {
            let _ = writeln!(out, "wharf_logins_total{{result=\"{result}\"}} {}", load(counter));
        }
        let _ =
            writeln!(out, "# HELP wharf_transfers_total Transfers ended, by direction and result.");
        let _ = writeln!(out, "# TYPE wharf_transfers_total counter");
        let _ =
            writeln!(out, "# HELP wharf_transfer_bytes_total Bytes of transfers that succeeded.");
        let _ = writeln!(out, "# TYPE wharf_transfer_bytes_total counter");
        for (d, direction) in ["upload", "download"].iter().enumerate() {
            for (r, result) in ["ok", "failed"].iter().enumerate() {
                let count = load(&self.transfers[d][r]);
                let labels = format!("direction=\"{direction}\",result=\"{result}\"");
                let _ = writeln!(out, "wharf_transfers_total{{{labels}}} {count}");
            }
            let bytes = load(&self.bytes[d]);
            let _ =
                writeln!(out, "wharf_transfer_bytes_total{{direction=\"{direction}\"}} {bytes}");
        }
        let _ = writeln!(out, "# HELP wharf_errors_total Error replies, by code.");
        let _ = writeln!(out, "# TYPE wharf_errors_total counter");
        for (code, count) in self.errors.lock().iter() {
            let _ = writeln!(out, "wharf_errors_total{{code=\"{code}\"}} {count}");
        }
        for (name, timing, what) in [
            ("wharf_store_seconds", &self.store, "Object store requests (the s3 backend)."),
            ("wharf_database_seconds", &self.database, "Database work (the s3 backend)."),
        ] {
            let seconds = load(&timing.micros) as f64 / 1e6;
            let _ = writeln!(out, "# HELP {name} {what}");
            let _ = writeln!(out, "# TYPE {name} summary");
            let _ = writeln!(out, "{name}_sum {seconds}");
            let _ = writeln!(out, "{name}_count {}", load(&timing.count));
        }
        out
    }
}

/// Serves the counters to scrapers on `listen` (any path answers them), until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            // Read the request (its content does not matter) up to the blank line that ends it.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            let read = async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                true
            };
            if !matches!(tokio::time::timeout(REQUEST_TIMEOUT, read).await, Ok(true)) {
                return;
            }
            let body = global().render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds the admin address for [`serve`].
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding metrics on {listen}"))
}
