//! The benchmark across an emulated WAN (see [`crate::wan`]): wharfd and sshd in the server's
//! namespace, wharf, sftp and rsync in the client's, every packet through the same router.
//!
//! Rows per profile: one large get and put (rates, also as a share of the link), 1,000 × 4 KiB
//! put and get against sftp and `rsync -a`, the same number in 110 folders against rsync, a mirror
//! of the flat 1,000 with 10 changed against rsync, connect + log in + `ls` against sftp, and shared-bottleneck rows: one wharf get beside
//! one sftp get over each TCP controller, and two sftp gets for reference (each one's share,
//! measured in the same window).

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use anyhow::bail;

mod shared;

use super::sftp::{Place, Sshd};
use super::{MIB, change_ten, measure, measure_after, write_random};
use crate::client::wharf_in;
use crate::server::TestServer;
use crate::wan::{Profile, Wan};
use shared::Shared;

/// How long a baseline may take before it is stopped and its rate taken from what it moved.
const BASELINE_CAP: Duration = Duration::from_secs(120);

/// One measured cell: a time, and for bulk rows the bytes moved in it.
#[derive(Debug, Clone, Copy)]
struct Cell {
    time: Duration,
    bytes: Option<u64>,
}

impl Cell {
    fn rate(&self) -> Option<f64> {
        self.bytes.map(|b| b as f64 / self.time.as_secs_f64())
    }
}

struct Row {
    workload: String,
    wharf: Cell,
    sftp: Option<Cell>,
    rsync: Option<Cell>,
}

/// Everything one profile's rows need: the path, the servers and the files on both sides.
struct Site {
    wan: Wan,
    server: TestServer,
    sshd: Sshd,
    work: tempfile::TempDir,
    home: tempfile::TempDir,
    big_size: u64,
    /// `WHARF_BENCH_CONGESTION`: the controller both ends use, if not their default.
    congestion: Option<String>,
    /// The TCP congestion controller of sftp and rsync: `WHARF_BENCH_TCP`, or the host's.
    tcp: String,
}

impl Site {
    fn local(&self) -> PathBuf {
        self.work.path().join("local")
    }
    fn down(&self) -> PathBuf {
        self.work.path().join("down")
    }
    fn sftp_remote(&self) -> PathBuf {
        self.work.path().join("sftp-remote")
    }

    /// The `wharf` arguments that run `script` against this site's server.
    fn wharf_args(&self, script: &str) -> Vec<String> {
        let cert = self.server.cert().display().to_string();
        let target = format!("bench@{}", self.server.addr());
        let mut args = vec!["--ca".into(), cert, "-c".into(), script.into(), target];
        if let Some(congestion) = &self.congestion {
            args.extend(["--congestion".into(), congestion.clone()]);
        }
        args
    }

    fn wharf(&self, commands: &str) -> anyhow::Result<Output> {
        let script = format!("lcd {}; {commands}", self.local().display());
        let args = self.wharf_args(&script);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out =
            wharf_in(self.wan.client_namespace(), self.home.path(), Some("bench-password"), &args);
        if !out.status.success() {
            bail!("wharf {commands}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(out)
    }

    fn sftp(&self, commands: &str) -> anyhow::Result<()> {
        let batch = format!(
            "lcd {}\ncd {}\n{commands}\n",
            self.local().display(),
            self.sftp_remote().display()
        );
        self.sshd.sftp(&batch).map(drop)
    }

    fn clear_down(&self) -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(self.down());
        std::fs::create_dir_all(self.down())?;
        Ok(())
    }
}

/// Bytes in the regular files under `dir`, partial downloads included.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            // Blocks, not length: a download's lanes write at several offsets at once, so the
            // length runs ahead of the bytes in place.
            Ok(_) => entry.metadata().map_or(0, |meta| meta.blocks() * 512),
            Err(_) => 0,
        })
        .sum()
}

/// Waits for `child`, stopping it at `cap`; the time it ran.
fn run_capped(mut child: Child, cap: Duration) -> anyhow::Result<(Duration, bool)> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("baseline failed: {status}");
            }
            return Ok((started.elapsed(), true));
        }
        if started.elapsed() > cap {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((started.elapsed(), false));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Builds the site for `profile`: namespaces, router, wharfd and sshd, and the test files.
fn build(profile: Profile, big_size: u64) -> anyhow::Result<Site> {
    let wan = Wan::new(profile, 1)?;
    let tcp = match std::env::var("WHARF_BENCH_TCP") {
        Ok(tcp) => tcp,
        Err(_) => std::fs::read_to_string(crate::wan::TCP_CONGESTION)?.trim().to_owned(),
    };
    wan.set_tcp_congestion(&tcp)?;
    let congestion = std::env::var("WHARF_BENCH_CONGESTION").ok();
    let mut config = "[users]\ndefault_quota = \"unlimited\"\n".to_owned();
    if let Some(congestion) = &congestion {
        config.push_str(&format!("[transport]\ncongestion = \"{congestion}\"\n"));
    }
    let mut server = TestServer::for_host(&config, &wan.server_ip().to_string());
    server.add_user("bench", "bench-password", "unlimited");
    server.start_in(wan.server_namespace(), SocketAddr::new(wan.server_ip(), 0));
    let sshd = Sshd::start_at(Place::Across(&wan))?;
    let site = Site {
        wan,
        server,
        sshd,
        work: tempfile::tempdir()?,
        home: tempfile::tempdir()?,
        big_size,
        congestion,
        tcp,
    };
    for dir in
        [site.local(), site.sftp_remote(), site.local().join("small"), site.local().join("tree")]
    {
        std::fs::create_dir_all(dir)?;
    }
    write_random(&site.local().join("big.bin"), big_size, 1)?;
    // The shared-bottleneck row's files: large enough that neither download ends in its window.
    write_random(&site.local().join("big2.bin"), shared::file_size(profile), 2)?;
    // The shared-bottleneck row alone (`WHARF_BENCH_ONLY_SHARED`) needs no small files.
    let small_files = if std::env::var_os("WHARF_BENCH_ONLY_SHARED").is_some() { 0 } else { 1000 };
    for n in 0..small_files {
        write_random(&site.local().join(format!("small/f{n:04}")), 4096, 100 + n)?;
        // The same number of files again, ten to a folder in ten folders of ten.
        let folder = site.local().join(format!("tree/d{}/e{}", n / 100, n / 10 % 10));
        std::fs::create_dir_all(&folder)?;
        write_random(&folder.join(format!("f{}", n % 10)), 4096, 5000 + n)?;
    }
    let wharf_home = site.server.home("bench");
    for dest in [&wharf_home, &site.sftp_remote()] {
        std::fs::copy(site.local().join("big.bin"), dest.join("big.bin"))?;
        std::fs::copy(site.local().join("big2.bin"), dest.join("big2.bin"))?;
        for dir in ["small", "tree"] {
            copy_dir(&site.local().join(dir), &dest.join(dir))?;
        }
    }
    Ok(site)
}

/// Copies the tree `from` to `to`.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// The large get and put: wharf complete and verified; sftp stopped at [`BASELINE_CAP`] if slower.
fn bulk_rows(site: &Site) -> anyhow::Result<Vec<Row>> {
    let size = site.big_size;
    let down = site.down().display().to_string();
    // Emptied untimed for both, as for sftp below.
    let wharf_get = measure_after(
        1,
        || site.clear_down(),
        || site.wharf(&format!("get big.bin {down}")).map(drop),
    )?;
    site.clear_down()?;
    let sftp_get = site.sshd.spawn_sftp(&format!(
        "cd {}\nget big.bin {down}/big.bin\n",
        site.sftp_remote().display()
    ))?;
    let (sftp_get_time, _) = run_capped(sftp_get, BASELINE_CAP)?;
    let sftp_get_bytes = bytes_under(&site.down());

    let wharf_put = measure(1, || site.wharf("put --no-resume big.bin /up.bin").map(drop))?;
    let sftp_put = site.sshd.spawn_sftp(&format!(
        "lcd {}\ncd {}\nput big.bin up.bin\n",
        site.local().display(),
        site.sftp_remote().display()
    ))?;
    let (sftp_put_time, _) = run_capped(sftp_put, BASELINE_CAP)?;
    let sftp_put_bytes =
        std::fs::metadata(site.sftp_remote().join("up.bin")).map_or(0, |meta| meta.len());
    let label = |verb| format!("1 × {} MiB {verb}", size / MIB);
    Ok(vec![
        Row {
            workload: label("get"),
            wharf: Cell { time: wharf_get, bytes: Some(size) },
            sftp: Some(Cell { time: sftp_get_time, bytes: Some(sftp_get_bytes) }),
            rsync: None,
        },
        Row {
            workload: label("put"),
            wharf: Cell { time: wharf_put, bytes: Some(size) },
            sftp: Some(Cell { time: sftp_put_time, bytes: Some(sftp_put_bytes) }),
            rsync: None,
        },
    ])
}

/// 1,000 × 4 KiB each way, the mirror with 10 changed, and connecting. sftp moves small files one round trip
/// after another (156 s and 208 s for 1,000 across 50 ms): with `sftp_small` false it is left out.
fn small_rows(site: &Site, runs: usize, sftp_small: bool) -> anyhow::Result<Vec<Row>> {
    let down = site.down().display().to_string();
    let local_small = site.local().join("small");
    let rsync_up = site.work.path().join("rsync-up");
    let clear_rsync_up = || -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&rsync_up);
        Ok(())
    };
    let put = Row {
        workload: "1,000 × 4 KiB put".into(),
        wharf: cell(measure_after(
            runs,
            || Ok(()),
            || site.wharf("put --no-resume -r -j 16 small /up").map(drop),
        )?),
        sftp: sftp_small
            .then(|| measure(1, || site.sftp("put -r small up")).map(cell))
            .transpose()?,
        rsync: Some(cell(measure_after(runs, clear_rsync_up, || {
            site.sshd.rsync(&local_small, &rsync_up)
        })?)),
    };
    let get = Row {
        workload: "1,000 × 4 KiB get".into(),
        wharf: cell(measure_after(
            runs,
            || site.clear_down(),
            || site.wharf(&format!("get -r -j 16 small {down}")).map(drop),
        )?),
        sftp: sftp_small
            .then(|| {
                measure(1, || {
                    site.clear_down()?;
                    site.sftp(&format!("get -r small {down}/small"))
                })
                .map(cell)
            })
            .transpose()?,
        rsync: Some(cell(measure_after(
            runs,
            || site.clear_down(),
            || site.sshd.rsync_from(&site.sftp_remote().join("small"), &site.down()),
        )?)),
    };
    let (tree_put, tree_get) = tree_rows(site, runs)?;
    let mirror = mirror_row(site, runs)?;
    let connect = Row {
        workload: "connect + login + ls".into(),
        wharf: cell(measure_after(runs, || Ok(()), || site.wharf("ls").map(drop))?),
        sftp: Some(cell(measure_after(runs, || Ok(()), || site.sftp("ls"))?)),
        rsync: None,
    };
    Ok(vec![put, get, tree_put, tree_get, mirror, connect])
}

/// The same 1,000 × 4 KiB in 110 folders, up and down, against rsync: what a folder costs
/// beyond its files.
fn tree_rows(site: &Site, runs: usize) -> anyhow::Result<(Row, Row)> {
    let down = site.down().display().to_string();
    let rsync_up = site.work.path().join("rsync-up-tree");
    let clear_rsync_up = || -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&rsync_up);
        Ok(())
    };
    let mut upload = 0;
    let put = Row {
        workload: "1,000 in 110 folders put".into(),
        wharf: cell(measure_after(
            runs,
            || Ok(()),
            || {
                // Into a new folder each run: every folder is made each time.
                upload += 1;
                site.wharf(&format!("put --no-resume -r -j 16 tree /up-tree{upload}")).map(drop)
            },
        )?),
        sftp: None,
        rsync: Some(cell(measure_after(runs, clear_rsync_up, || {
            site.sshd.rsync(&site.local().join("tree"), &rsync_up)
        })?)),
    };
    let get = Row {
        workload: "1,000 in 110 folders get".into(),
        wharf: cell(measure_after(
            runs,
            || site.clear_down(),
            || site.wharf(&format!("get -r -j 16 tree {down}")).map(drop),
        )?),
        sftp: None,
        rsync: Some(cell(measure_after(
            runs,
            || site.clear_down(),
            || site.sshd.rsync_from(&site.sftp_remote().join("tree"), &site.down()),
        )?)),
    };
    Ok((put, get))
}

/// The mirror with 10 changed: both destinations start in step, then 10 files change before each
/// run.
fn mirror_row(site: &Site, runs: usize) -> anyhow::Result<Row> {
    let local_small = site.local().join("small");
    let rsync_dest = site.work.path().join("rsync-mirror");
    site.wharf("mirror -R -j 16 tree small")?;
    site.sshd.rsync(&local_small, &rsync_dest)?;
    let mut round = 0;
    let mut change_ten = || change_ten(&local_small, &mut round);
    let wharf_mirror = measure_after(runs, &mut change_ten, || {
        site.wharf("mirror -R -j 16 tree small").map(drop)
    })?;
    let rsync_mirror =
        measure_after(runs, &mut change_ten, || site.sshd.rsync(&local_small, &rsync_dest))?;
    Ok(Row {
        workload: "mirror 1,000, 10 changed".into(),
        wharf: cell(wharf_mirror),
        sftp: None,
        rsync: Some(cell(rsync_mirror)),
    })
}

fn cell(time: Duration) -> Cell {
    Cell { time, bytes: None }
}

/// What the router carries with no delay, no cap and no loss: a wharf get through it.
pub fn router_ceiling(size: u64) -> anyhow::Result<String> {
    let site = build(Profile::UNSHAPED, size)?;
    let down = site.down().display().to_string();
    let mut site = site;
    let before = site.wan.carried()?;
    let elapsed = measure(1, || {
        site.clear_down()?;
        site.wharf(&format!("get big.bin {down}")).map(drop)
    })?;
    let after = site.wan.carried()?;
    let carried = after.1.bytes - before.1.bytes;
    Ok(format!(
        "router ceiling (no delay, no cap): a {} MiB wharf get at {:.0} MiB/s; the router carried {:.0} MiB/s ({} packets) toward the client, dropping {}",
        size / MIB,
        size as f64 / MIB as f64 / elapsed.as_secs_f64(),
        carried as f64 / MIB as f64 / elapsed.as_secs_f64(),
        after.1.packets - before.1.packets,
        after.1.queue_drops - before.1.queue_drops,
    ))
}

/// Runs every row for `profile` and prints its table.
pub fn run_profile(profile: Profile, big_size: u64, small_runs: usize) -> anyhow::Result<()> {
    eprintln!("bench: {} profile: setting up", profile.name);
    let mut site = build(profile, big_size)?;
    let mut rows = Vec::new();
    let only_shared = std::env::var_os("WHARF_BENCH_ONLY_SHARED").is_some();
    if std::env::var_os("WHARF_BENCH_ONLY_SMALL").is_none() && !only_shared {
        eprintln!("bench: {}: large get and put", profile.name);
        rows.extend(bulk_rows(&site)?);
    }
    if std::env::var_os("WHARF_BENCH_SKIP_SMALL").is_none() && !only_shared {
        eprintln!("bench: {}: small files, mirror, connect", profile.name);
        // sftp's small-file rows only where they take minutes, not tens of them.
        rows.extend(small_rows(&site, small_runs, profile.name == "wan")?);
    }
    let skip_shared = ["WHARF_BENCH_ONLY_SMALL", "WHARF_BENCH_SKIP_SHARED"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    let shared = if !skip_shared {
        eprintln!("bench: {}: shared bottleneck", profile.name);
        shared::rows(&site)
    } else {
        Vec::new()
    };
    let (up, down) = site.wan.carried()?;
    print_table(profile, &site.tcp, &rows, &shared);
    println!(
        "router: {} packets up ({} lost, {} queue drops), {} down ({} lost, {} queue drops)\n",
        up.packets, up.lost, up.queue_drops, down.packets, down.lost, down.queue_drops
    );
    Ok(())
}

fn print_table(profile: Profile, tcp: &str, rows: &[Row], shared: &[Shared]) {
    let link = profile.bytes_per_sec();
    println!(
        "profile {}: {} ms round trip, {}, {} % loss each way, queue {} KiB; sftp and rsync over TCP {tcp}",
        profile.name,
        profile.round_trip.as_millis(),
        profile.rate_bps.map_or("no cap".into(), |b| format!("{} Mbit/s", b / 1_000_000)),
        profile.loss * 100.0,
        profile.queue_bytes() / 1024
    );
    println!(
        "| {:<24} | {:>12} | {:>12} | {:>12} | {:>8} | {:>8} | {:>10} |",
        "workload", "wharf", "sftp", "rsync -a", "vs sftp", "vs rsync", "wharf/link"
    );
    println!("|{}|", ["-"; 7].map(|_| "-----------").join("|"));
    let show = |c: &Cell| match c.rate() {
        Some(rate) => format!("{:.1} MiB/s", rate / MIB as f64),
        None => format!("{:.3} s", c.time.as_secs_f64()),
    };
    // A ratio of times for timed rows, of rates for bulk rows: either way above 1 means wharf is
    // better for rates and worse for times, so say which.
    let ratio = |w: &Cell, b: &Option<Cell>| match (b, w.rate()) {
        (None, _) => "—".to_owned(),
        (Some(b), Some(rate)) => format!("{:.2}× rate", rate / b.rate().unwrap_or(f64::NAN)),
        (Some(b), None) => format!("{:.2}×", w.time.as_secs_f64() / b.time.as_secs_f64()),
    };
    for row in rows {
        let share = match (row.wharf.rate(), link) {
            (Some(rate), Some(link)) => format!("{:.0} %", rate / link * 100.0),
            _ => "—".into(),
        };
        println!(
            "| {:<24} | {:>12} | {:>12} | {:>12} | {:>8} | {:>8} | {:>10} |",
            row.workload,
            show(&row.wharf),
            row.sftp.as_ref().map_or("—".into(), show),
            row.rsync.as_ref().map_or("—".into(), show),
            ratio(&row.wharf, &row.sftp),
            ratio(&row.wharf, &row.rsync),
            share
        );
    }
    shared::print(shared, link);
}
