//! The soak run: many clients doing mixed work against one server for a bounded time, while a few
//! bulk transfers run, measuring throughput, control-command latency and the server's resources.
//!
//! `cargo run --release -p wharf-integration --bin soak` runs the full version (100 clients, 8 bulk
//! transfers); the end-to-end suite runs a short one and asserts no errors and no leaks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use wharf::session::Session;
use wharf_common::path::RemotePath;

use crate::client::options_from;
use crate::server::TestServer;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct SoakPlan {
    pub clients: usize,
    pub bulk: usize,
    pub duration: Duration,
    /// Size of each bulk transfer.
    pub bulk_size: usize,
}

/// What the run saw.
#[derive(Debug, Default)]
pub struct SoakReport {
    pub ops: u64,
    pub errors: Vec<String>,
    pub elapsed: Duration,
    /// Latencies of the mixed clients' `ls` and `stat` while the bulk transfers ran: these include
    /// waiting for the driver's own runtime, which runs every client.
    pub control: Vec<Duration>,
    /// Latencies of a probe's `ls`, every [`PROBE_EVERY`] while the bulk transfers ran, from a
    /// session on a thread and runtime of its own: the server's responsiveness.
    pub probe: Vec<Duration>,
    pub bulk_bytes: u64,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub fds_before: usize,
    pub fds_after: usize,
    /// What the descriptors open after the run, and not before, point at: empty unless one leaked.
    pub fds_new: Vec<String>,
}

impl SoakReport {
    /// The `q`-quantile (0..=1) of the probe's latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.probe, q)
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn print(&self, plan: &SoakPlan) {
        println!(
            "soak: {} clients and {} bulk transfers for {:?}\n\
             operations: {} ({:.0}/s), errors: {}\n\
             ls latency while bulk transfers ran, probe: p50 {:.1} ms, p99 {:.1} ms ({} samples)\n\
             ls and stat latency of the mixed clients: p50 {:.1} ms, p99 {:.1} ms ({} samples)\n\
             bulk: {:.0} MiB moved\n\
             server RSS: {} MiB before, {} MiB peak; open descriptors: {} before, {} after",
            plan.clients,
            plan.bulk,
            plan.duration,
            self.ops,
            self.ops_per_sec(),
            self.errors.len(),
            self.quantile(0.5).as_secs_f64() * 1000.0,
            self.quantile(0.99).as_secs_f64() * 1000.0,
            self.probe.len(),
            quantile(&self.control, 0.5).as_secs_f64() * 1000.0,
            quantile(&self.control, 0.99).as_secs_f64() * 1000.0,
            self.control.len(),
            self.bulk_bytes as f64 / 1048576.0,
            self.rss_before_kib / 1024,
            self.rss_peak_kib / 1024,
            self.fds_before,
            self.fds_after,
        );
        for target in &self.fds_new {
            println!("descriptor open after the run, not before: {target}");
        }
        for err in self.errors.iter().take(10) {
            println!("error: {err}");
        }
    }
}

/// The `q`-quantile (0..=1) of `latencies`.
fn quantile(latencies: &[Duration], q: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let index = ((sorted.len().saturating_sub(1)) as f64 * q).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// How often the probe lists a directory.
pub const PROBE_EVERY: Duration = Duration::from_millis(20);

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// One upload large enough to be resumable, before anything is counted: the server opens a few
/// descriptors once and keeps them (rustix's handles on `/proc`, which atomic record writes use), and
/// those are not a leak.
async fn warm_up(server: &TestServer, file: &std::path::Path) -> anyhow::Result<()> {
    let options = options_from(server, client_ip(0));
    let session = Session::open(&options, "soak0", "pw").await?;
    session.put(file, &path("/warm-up"), false, &|_| {}).await?;
    session.remove(&path("/warm-up"), false).await?;
    session.close().await;
    Ok(())
}

/// What each of the process's open descriptors points at (a path, `socket:[…]`, `anon_inode:…`).
fn open_fds(pid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let mut targets: Vec<String> = entries
        .flatten()
        .map(|entry| {
            std::fs::read_link(entry.path())
                .map_or_else(|_| "(closed while read)".to_owned(), |t| t.display().to_string())
        })
        .collect();
    targets.sort();
    targets
}

/// The entries of `after` beyond those in `before`, counting repeats, but for handles on `/proc`:
/// rustix opens those on first use (cap-tempfile's rename, cap-std's chmod) and keeps them for the
/// life of the process, so when they appear depends only on which request came first.
fn beyond(before: &[String], after: &[String]) -> Vec<String> {
    let mut left = before.to_vec();
    after
        .iter()
        .filter(|target| !target.starts_with("/proc/") && target.as_str() != "/proc")
        .filter(|target| match left.iter().position(|seen| seen == *target) {
            Some(at) => {
                left.swap_remove(at);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

/// Clients spread over loopback addresses, a few per address, as real users would be.
fn client_ip(n: usize) -> [u8; 4] {
    [127, 0, 1 + (n / 200) as u8, 1 + (n % 200) as u8]
}

fn path(raw: &str) -> RemotePath {
    RemotePath::parse(raw).expect("valid path")
}

/// Shared across the run: the errors seen, the latencies measured.
#[derive(Default)]
struct Tally {
    ops: u64,
    errors: Vec<String>,
    control: Vec<Duration>,
    bulk_bytes: u64,
}

/// Runs `plan` against `server`, whose users `soak0`..`soak9` (password `pw`) must exist.
pub async fn run(server: &TestServer, plan: SoakPlan) -> anyhow::Result<SoakReport> {
    let pid = server.pid().ok_or_else(|| anyhow::anyhow!("the server is not running"))?;
    let local = tempfile::tempdir()?;
    let small = local.path().join("small");
    let medium = local.path().join("medium");
    let bulk = local.path().join("bulk");
    std::fs::write(&small, vec![7u8; 4096])?;
    std::fs::write(&medium, vec![9u8; 1 << 20])?;
    std::fs::write(&bulk, vec![3u8; plan.bulk_size])?;
    warm_up(server, &medium).await?;
    let (rss_before_kib, fds_before) = (status_kib(pid, "VmRSS:"), open_fds(pid));

    let tally = Arc::new(Mutex::new(Tally::default()));
    let bulk_running = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + plan.duration;
    let started = Instant::now();
    let files = (small, medium, bulk);
    let mut tasks =
        spawn_clients(server, &plan, &files, local.path(), deadline, &tally, &bulk_running);
    let probe = {
        let options = options_from(server, client_ip(plan.clients + plan.bulk));
        let running = bulk_running.clone();
        std::thread::spawn(move || probe(&options, &running, deadline))
    };
    let rss_peak_kib = watch(&mut tasks, pid, rss_before_kib, &tally).await;
    let elapsed = started.elapsed();
    let probe = match probe.join() {
        Ok(Ok(latencies)) => latencies,
        Ok(Err(err)) => {
            tally.lock().await.errors.push(format!("probe: {err:#}"));
            Vec::new()
        }
        Err(_) => anyhow::bail!("the probe thread panicked"),
    };
    let fds_after = settled_fds(pid, &fds_before).await;
    let tally = std::mem::take(&mut *tally.lock().await);
    Ok(SoakReport {
        ops: tally.ops,
        errors: tally.errors,
        elapsed,
        control: tally.control,
        probe,
        bulk_bytes: tally.bulk_bytes,
        rss_before_kib,
        rss_peak_kib,
        fds_new: beyond(&fds_before, &fds_after),
        fds_before: fds_before.len(),
        fds_after: fds_after.len(),
    })
}

/// The soak's clients: `plan.bulk` moving a large file back and forth, `plan.clients` doing mixed
/// small work, until `deadline`.
fn spawn_clients(
    server: &TestServer,
    plan: &SoakPlan,
    (small, medium, bulk): &(PathBuf, PathBuf, PathBuf),
    local: &std::path::Path,
    deadline: Instant,
    tally: &Arc<Mutex<Tally>>,
    bulk_running: &Arc<AtomicBool>,
) -> tokio::task::JoinSet<anyhow::Result<()>> {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..plan.bulk {
        let options = options_from(server, client_ip(plan.clients + n));
        let (tally, running, bulk) = (tally.clone(), bulk_running.clone(), bulk.clone());
        let dir = local.join(format!("bulk-{n}"));
        tasks.spawn(async move {
            let session = Session::open(&options, &format!("soak{}", n % 10), "pw").await?;
            std::fs::create_dir_all(&dir)?;
            running.store(true, Ordering::Relaxed);
            bulk_loop(&session, n, &bulk, &dir, deadline, &tally).await;
            session.close().await;
            anyhow::Ok(())
        });
    }
    for n in 0..plan.clients {
        let options = options_from(server, client_ip(n));
        let (tally, running) = (tally.clone(), bulk_running.clone());
        let (small, medium, local) = (small.clone(), medium.clone(), local.to_owned());
        tasks.spawn(async move {
            let session = Session::open(&options, &format!("soak{}", n % 10), "pw").await?;
            let files = Files { small: &small, medium: &medium, local: &local };
            client_loop(&session, n, files, deadline, &tally, &running).await;
            session.close().await;
            anyhow::Ok(())
        });
    }
    tasks
}

/// Waits for every client, noting their errors and the server's peak memory; returns that peak.
async fn watch(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    pid: u32,
    rss_before_kib: u64,
    tally: &Mutex<Tally>,
) -> u64 {
    let mut rss_peak_kib = rss_before_kib;
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => {
                if let Some(result) = joined
                    && let Err(err) = result.map_err(anyhow::Error::from).and_then(|r| r)
                {
                    tally.lock().await.errors.push(format!("client: {err:#}"));
                }
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        rss_peak_kib = rss_peak_kib.max(status_kib(pid, "VmRSS:"));
    }
    rss_peak_kib
}

/// The server's open descriptors once closed connections are torn down, which takes a moment
/// (at most 10 s).
async fn settled_fds(pid: u32, before: &[String]) -> Vec<String> {
    let settle = Instant::now() + Duration::from_secs(10);
    let mut after = open_fds(pid);
    while !beyond(before, &after).is_empty() && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = open_fds(pid);
    }
    after
}

/// Lists `/` every [`PROBE_EVERY`] while the bulk transfers run, on a runtime of its own so that
/// the latencies are the server's and the network's, not the wait for a busy driver.
fn probe(
    options: &wharf::session::ConnectOptions,
    bulk_running: &AtomicBool,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let session = Session::open(options, "soak0", "pw").await?;
        let mut latencies = Vec::new();
        while Instant::now() < deadline {
            tokio::time::sleep(PROBE_EVERY).await;
            if !bulk_running.load(Ordering::Relaxed) {
                continue;
            }
            let started = Instant::now();
            session.list(&path("/")).await?;
            latencies.push(started.elapsed());
        }
        session.close().await;
        Ok(latencies)
    })
}

/// The local files a client uses.
#[derive(Clone, Copy)]
struct Files<'a> {
    small: &'a Path,
    medium: &'a Path,
    local: &'a Path,
}

/// One client: a mix of listing, stat, small and medium uploads and downloads, and deletes.
async fn client_loop(
    session: &Session,
    n: usize,
    files: Files<'_>,
    deadline: Instant,
    tally: &Mutex<Tally>,
    bulk_running: &AtomicBool,
) {
    let dir = format!("/c{n}");
    let down: PathBuf = files.local.join(format!("down-{n}"));
    let mut round = 0u64;
    if let Err(err) = session.mkdir(&path(&dir), true).await {
        tally.lock().await.errors.push(format!("mkdir {dir}: {err}"));
        return;
    }
    while Instant::now() < deadline {
        round += 1;
        let name = format!("{dir}/f{}", round % 4);
        let started = Instant::now();
        let result = match round % 8 {
            0 | 4 => session.list(&path(&dir)).await.map(drop),
            1 | 5 => session.stat(&path(&dir)).await.map(drop),
            2 => session.put(files.small, &path(&name), false, &|_| {}).await.map(drop),
            3 => session.put(files.medium, &path(&name), false, &|_| {}).await.map(drop),
            6 => match session.get(&path(&name), &down, false, &|_| {}).await {
                // A file a delete got to first is fine; anything else is an error.
                Err(wharf::error::ClientError::Remote {
                    code: wharf_common::proto::ErrorCode::NotFound,
                    ..
                }) => Ok(()),
                other => other.map(drop),
            },
            _ => match session.remove(&path(&name), false).await {
                Err(wharf::error::ClientError::Remote {
                    code: wharf_common::proto::ErrorCode::NotFound,
                    ..
                }) => Ok(()),
                other => other,
            },
        };
        let took = started.elapsed();
        let mut tally = tally.lock().await;
        tally.ops += 1;
        match result {
            Ok(())
                if matches!(round % 8, 0 | 1 | 4 | 5) && bulk_running.load(Ordering::Relaxed) =>
            {
                tally.control.push(took);
            }
            Ok(()) => {}
            Err(err) => tally.errors.push(format!("client {n}, round {round}: {err}")),
        }
    }
}

/// One bulk transfer stream: uploads and downloads a large file back to back.
async fn bulk_loop(
    session: &Session,
    n: usize,
    bulk: &Path,
    dir: &Path,
    deadline: Instant,
    tally: &Mutex<Tally>,
) {
    let remote = path(&format!("/bulk-{n}"));
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let result = if round % 2 == 1 {
            session.put(bulk, &remote, false, &|_| {}).await
        } else {
            session.get(&remote, &dir.join("bulk"), false, &|_| {}).await
        };
        let mut tally = tally.lock().await;
        match result {
            Ok(outcome) => tally.bulk_bytes += outcome.size,
            Err(err) => tally.errors.push(format!("bulk {n}: {err}")),
        }
    }
}
