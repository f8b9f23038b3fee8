//! The `s3` profile: wharf on the s3 backend (a one-node Garage and a PostgreSQL, on this machine)
//! against the local backend in the same run, through the same client; and two s3 nodes against
//! one, with two clients at once. Everything is on loopback, so the figures say what the store
//! and the database cost, not what a network between the nodes would.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::{Client, MIB, Plan, measure, rate, write_random};
use crate::engines::Engines;
use crate::server::TestServer;

/// The user every server of this profile has, and its password (the one [`Engines::node`] gives).
const LOGIN: (&str, &str) = ("bench", "pw");
const UNLIMITED: &str = "[users]\ndefault_quota = \"unlimited\"\n";

/// Runs the rows and prints their two tables.
pub fn run(plan: Plan) -> anyhow::Result<()> {
    if let Some(why) = crate::engines::unavailable() {
        bail!("the s3 profile needs Garage and PostgreSQL: {why}");
    }
    eprintln!("bench: s3 profile, starting Garage and PostgreSQL");
    let mut engines = Engines::start_durable();
    // The default pool, as a deployment would have it.
    engines.pool_size = wharfd::config::DatabaseSettings::default().pool_size;
    let mut local = TestServer::plain(UNLIMITED);
    local.add_user(LOGIN.0, LOGIN.1, "unlimited");
    local.start();
    let a = engines.node_with_quota(UNLIMITED, &[LOGIN.0], "unlimited");
    let b = engines.node(UNLIMITED, &[]);
    let files = Files::write(plan)?;

    let only_small = std::env::var_os("WHARF_BENCH_ONLY_SMALL").is_some();
    let rows = backend_rows(plan, &files, &local, &a, only_small).and_then(|backends| {
        let nodes = if only_small { Vec::new() } else { node_rows(plan, &files, [&a, &b])? };
        Ok((backends, nodes))
    });
    let (backends, nodes) = rows.inspect_err(|_| keep_logs(&engines, &[&local, &a, &b]))?;
    print_tables(plan, &backends, &nodes);
    Ok(())
}

/// Copies the logs of the store and of every server out of their temporary directories, which
/// go with them, so that a failed row can be explained.
fn keep_logs(engines: &Engines, servers: &[&TestServer]) {
    let dir = std::env::temp_dir().join(format!("wharf-bench-s3-logs-{}", std::process::id()));
    let logs = std::iter::once(("garage.log".to_owned(), engines.garage.log()))
        .chain(servers.iter().enumerate().map(|(n, s)| (format!("wharfd-{n}.log"), s.log())));
    let kept = std::fs::create_dir_all(&dir).and_then(|()| {
        logs.into_iter().try_for_each(|(name, log)| std::fs::write(dir.join(name), log))
    });
    match kept {
        Ok(()) => eprintln!("bench: s3 failed; the logs are in {}", dir.display()),
        Err(err) => eprintln!("bench: s3 failed, and its logs could not be kept: {err}"),
    }
}

/// The local side: the files the rows send, and a folder they receive into.
struct Files {
    work: tempfile::TempDir,
    home: tempfile::TempDir,
    size: u64,
}

impl Files {
    fn write(plan: Plan) -> anyhow::Result<Files> {
        eprintln!("bench: writing test files");
        let files =
            Files { work: tempfile::tempdir()?, home: tempfile::tempdir()?, size: plan.big_size };
        std::fs::create_dir_all(files.local().join("small"))?;
        write_random(&files.local().join("big.bin"), plan.big_size, 1)?;
        for half in 0..2 {
            write_random(
                &files.local().join(format!("half{half}.bin")),
                plan.big_size / 2,
                2 + half,
            )?;
        }
        for n in 0..1000 {
            write_random(&files.local().join(format!("small/f{n:04}")), 4096, 100 + n)?;
        }
        Ok(files)
    }

    fn local(&self) -> PathBuf {
        self.work.path().join("local")
    }

    /// A fresh, empty download folder.
    fn down(&self) -> anyhow::Result<String> {
        let down = self.work.path().join("down");
        if down.exists() {
            std::fs::remove_dir_all(&down)?;
        }
        std::fs::create_dir_all(&down)?;
        Ok(down.display().to_string())
    }

    fn run(&self, server: &TestServer, commands: &str) -> anyhow::Result<()> {
        let local = self.local();
        let client = Client { home: self.home.path(), local: &local };
        client.run(server, LOGIN, commands)
    }
}

/// One workload measured two ways: `first` and `second` (local and s3, or one node and two).
struct Pair {
    workload: String,
    /// Bytes moved, for a rate; `None` for a timed action.
    bytes: Option<u64>,
    first: Duration,
    second: Duration,
}

impl Pair {
    fn print(&self) {
        let cell = |time: Duration| match self.bytes {
            Some(bytes) => format!("{:.0} MiB/s", rate(bytes, time)),
            None => format!("{:.3} s", time.as_secs_f64()),
        };
        // The second's rate over the first's, or the first's time over the second's: the same.
        let ratio = self.first.as_secs_f64() / self.second.as_secs_f64();
        println!(
            "| {:<34} | {:>11} | {:>11} | {:>8} |",
            self.workload,
            cell(self.first),
            cell(self.second),
            format!("{ratio:.2}×")
        );
    }
}

/// The same transfers through the local backend and through one s3 node.
fn backend_rows(
    plan: Plan,
    files: &Files,
    local: &TestServer,
    s3: &TestServer,
    only_small: bool,
) -> anyhow::Result<Vec<Pair>> {
    let (big, mib) = (plan.big_runs, files.size / MIB);
    let both = |runs: usize, what: &str, workload: String, bytes: Option<u64>, get: bool| {
        eprintln!("bench: s3, {what}");
        let time = |server: &TestServer| {
            measure(runs, || {
                let down = files.down()?;
                files.run(server, &if get { format!("{what} {down}") } else { what.to_owned() })
            })
        };
        Ok::<_, anyhow::Error>(Pair { workload, bytes, first: time(local)?, second: time(s3)? })
    };
    let small = plan.small_runs;
    let mut rows = Vec::new();
    if !only_small {
        rows.push(both(
            big,
            "put --no-resume big.bin /",
            format!("1 × {mib} MiB put"),
            Some(files.size),
            false,
        )?);
        rows.push(both(big, "get big.bin", format!("1 × {mib} MiB get"), Some(files.size), true)?);
    }
    let put = "put --no-resume -r -j 16 small /";
    rows.push(both(small, put, "1,000 × 4 KiB put".into(), None, false)?);
    rows.push(both(small, "get -r -j 16 small", "1,000 × 4 KiB get".into(), None, true)?);
    Ok(rows)
}

/// Two clients at once, each moving half of the large size: both through node A, then one
/// through A and one through B.
fn node_rows(plan: Plan, files: &Files, [a, b]: [&TestServer; 2]) -> anyhow::Result<Vec<Pair>> {
    // Both halves on the store, for the get rows.
    files.run(a, "put --no-resume half0.bin half1.bin /")?;
    let at_once = |servers: [&TestServer; 2], get: bool| {
        let down = files.down()?;
        std::thread::scope(|scope| {
            let runs: Vec<_> = (0..2)
                .map(|n| {
                    let (server, down) = (servers[n], &down);
                    let commands = if get {
                        format!("get half{n}.bin {down}")
                    } else {
                        format!("put --no-resume half{n}.bin /")
                    };
                    scope.spawn(move || files.run(server, &commands))
                })
                .collect();
            for run in runs {
                run.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let runs = plan.big_runs;
    let mut rows = Vec::new();
    for (verb, get) in [("put", false), ("get", true)] {
        eprintln!("bench: s3, two clients {verb} through one node and through two");
        rows.push(Pair {
            workload: format!("2 × {} MiB {verb} at once", files.size / 2 / MIB),
            bytes: Some(files.size),
            first: measure(runs, || at_once([a, a], get))?,
            second: measure(runs, || at_once([a, b], get))?,
        });
    }
    Ok(rows)
}

fn print_tables(plan: Plan, backends: &[Pair], nodes: &[Pair]) {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "wharf benchmark: s3 backend (one Garage node, PostgreSQL) on loopback, {cores} cores; \
         median of {} (large) / {} (small) runs",
        plan.big_runs, plan.small_runs
    );
    println!(
        "ratios: the second column's rate over the first's (time: the first's over the second's); above 1, the second is faster\n"
    );
    let header = |first: &str, second: &str| {
        println!("| {:<34} | {:>11} | {:>11} | {:>8} |", "workload", first, second, "ratio");
        println!("|{}|{}|{}|{}|", "-".repeat(36), "-".repeat(13), "-".repeat(13), "-".repeat(10));
    };
    header("local", "s3");
    backends.iter().for_each(Pair::print);
    if nodes.is_empty() {
        return;
    }
    println!(
        "\ntwo clients at once on the s3 backend: both through one node, or one through each\n"
    );
    header("1 node", "2 nodes");
    nodes.iter().for_each(Pair::print);
    println!();
}
