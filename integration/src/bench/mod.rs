//! The benchmark: wharf against OpenSSH sftp and a raw-quinn transport ceiling, in one run, on this
//! machine. Every figure is the median of several runs, because the machine is shared and noisy;
//! the ratios are what to quote, since they are measured side by side.
//!
//! Workloads: one 1 GiB file (get and put, verified end to end by wharf, by nothing in sftp),
//! 8 × 128 MiB at once, 1,000 files of 4 KiB, a mirror of those 1,000 files with 10 changed
//! (against `rsync -a` over the same ssh), and connect + log in + `ls` + quit.

mod raw_quinn;
mod sftp;
mod wan;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::client::{target, wharf};
use crate::server::TestServer;

const MIB: u64 = 1 << 20;

/// How many times each measurement runs; the median is reported.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub big_runs: usize,
    pub small_runs: usize,
    pub big_size: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan { big_runs: 3, small_runs: 5, big_size: 1024 * MIB }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(runs: usize, mut once: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        // Flush what earlier runs left dirty, so that no run pays for another's writeback (on ext4,
        // an fsync can force out every file's dirty data).
        std::process::Command::new("sync").status().context("sync")?;
        let started = Instant::now();
        once()?;
        samples.push(started.elapsed());
    }
    Ok(median(samples))
}

/// Like [`measure`], with `prepare` run before each timed run, untimed.
fn measure_after(
    runs: usize,
    mut prepare: impl FnMut() -> anyhow::Result<()>,
    mut once: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        prepare()?;
        std::process::Command::new("sync").status().context("sync")?;
        let started = Instant::now();
        once()?;
        samples.push(started.elapsed());
    }
    Ok(median(samples))
}

/// One row of the result table.
struct Row {
    workload: String,
    /// Bytes moved, for a rate; `None` for a timed action.
    bytes: Option<u64>,
    wharf: Duration,
    sftp: Duration,
    raw: Option<Duration>,
}

fn rate(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / MIB as f64 / time.as_secs_f64()
}

impl Row {
    fn print(&self) {
        match self.bytes {
            Some(bytes) => {
                let (w, s) = (rate(bytes, self.wharf), rate(bytes, self.sftp));
                let raw = self.raw.map(|r| rate(bytes, r));
                let raw_text = raw.map_or("—".into(), |r| format!("{r:.0} MiB/s"));
                let vs_raw = raw.map_or("—".into(), |r| format!("{:.2}×", w / r));
                println!(
                    "| {:<24} | {:>11} | {:>11} | {:>11} | {:>10} | {:>10} |",
                    self.workload,
                    format!("{w:.0} MiB/s"),
                    format!("{s:.0} MiB/s"),
                    raw_text,
                    format!("{:.2}×", w / s),
                    vs_raw
                );
            }
            None => {
                let (w, s) = (self.wharf.as_secs_f64(), self.sftp.as_secs_f64());
                println!(
                    "| {:<24} | {:>11} | {:>11} | {:>11} | {:>10} | {:>10} |",
                    self.workload,
                    format!("{w:.3} s"),
                    format!("{s:.3} s"),
                    "—",
                    format!("{:.2}×", w / s),
                    "—"
                );
            }
        }
    }
}

/// Rewrites 10 of the 1,000 small files in `dir` with new contents: the mirror rows' change.
fn change_ten(dir: &Path, round: &mut u64) -> anyhow::Result<()> {
    *round += 1;
    for n in (0..1000).step_by(100) {
        write_random(&dir.join(format!("f{n:04}")), 4096, 10_000 * *round + n)?;
    }
    Ok(())
}

fn write_random(path: &Path, size: u64, seed: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state = seed | 1;
    let mut block = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(MIB) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// The profiles to run, from `WHARF_BENCH_PROFILES` (comma-separated; all by default).
fn profiles() -> anyhow::Result<Vec<String>> {
    let chosen =
        std::env::var("WHARF_BENCH_PROFILES").unwrap_or_else(|_| "lan,wan,lossy,far".into());
    let names: Vec<String> = chosen.split(',').map(|s| s.trim().to_owned()).collect();
    for name in &names {
        if !["lan", "wan", "lossy", "far"].contains(&name.as_str()) {
            bail!("unknown profile {name:?}: lan, wan, lossy or far");
        }
    }
    Ok(names)
}

/// Runs every profile's workloads and prints a table per profile.
pub fn run(plan: Plan) -> anyhow::Result<()> {
    let profiles = profiles()?;
    if profiles.iter().any(|p| p == "lan") {
        run_loopback(plan)?;
    }
    let across: Vec<crate::wan::Profile> = profiles
        .iter()
        .filter_map(|name| match name.as_str() {
            "wan" => Some(crate::wan::Profile::WAN),
            "lossy" => Some(crate::wan::Profile::LOSSY),
            "far" => Some(crate::wan::Profile::FAR),
            _ => None,
        })
        .collect();
    if across.is_empty() {
        return Ok(());
    }
    if let Some(why) = crate::wan::unavailable() {
        bail!("the WAN profiles need network namespaces and TUN devices: {why}");
    }
    println!("{}\n", wan::router_ceiling(256 * MIB)?);
    for profile in across {
        // A lossy path gets a smaller file: the baselines would take many minutes over 1 GiB.
        let size = if profile.loss > 0.0 { plan.big_size.min(256 * MIB) } else { plan.big_size };
        wan::run_profile(profile, size, plan.small_runs.min(3))?;
    }
    Ok(())
}

/// Today's loopback rows (the `lan` profile): wharf against sftp and raw quinn.
fn run_loopback(plan: Plan) -> anyhow::Result<()> {
    let mut server = TestServer::new("[users]\ndefault_quota = \"unlimited\"\n");
    server.add_user("bench", "bench-password", "unlimited");
    server.start();
    let sshd = sftp::Sshd::start()?;
    let work = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    let (local, remote_sftp) = (work.path().join("local"), work.path().join("sftp-remote"));
    let down = work.path().join("down");
    for dir in [&local, &remote_sftp, &down, &local.join("small")] {
        std::fs::create_dir_all(dir)?;
    }
    eprintln!("bench: writing test files");
    write_random(&local.join("big.bin"), plan.big_size, 1)?;
    for n in 0..8 {
        write_random(&local.join(format!("p{n}.bin")), 128 * MIB, 10 + n)?;
    }
    for n in 0..1000 {
        write_random(&local.join(format!("small/f{n:04}")), 4096, 100 + n)?;
    }
    let wharf_home = server.home("bench");
    for entry in std::fs::read_dir(&local)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), wharf_home.join(entry.file_name()))?;
            std::fs::copy(entry.path(), remote_sftp.join(entry.file_name()))?;
        }
    }

    let cert = server.cert().display().to_string();
    let to = target(&server, "bench");
    let wharf_run = |commands: String| -> anyhow::Result<()> {
        let script = format!("lcd {}; {commands}", local.display());
        let out =
            wharf(home.path(), Some("bench-password"), &["--ca", &cert, "-c", &script, &to], None);
        if !out.status.success() {
            bail!("wharf failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let sftp_run = |commands: String| {
        sshd.sftp(&format!("lcd {}\ncd {}\n{commands}\n", local.display(), remote_sftp.display()))
    };
    let clear = |dir: &Path| -> anyhow::Result<()> {
        std::fs::remove_dir_all(dir)?;
        std::fs::create_dir_all(dir)?;
        Ok(())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let key = server.root().join("certs/server.key");
    let raw = |streams: usize, bytes: u64| -> anyhow::Result<Duration> {
        let samples: anyhow::Result<Vec<Duration>> = (0..plan.big_runs)
            .map(|_| runtime.block_on(raw_quinn::transfer(&server.cert(), &key, streams, bytes)))
            .collect();
        Ok(median(samples?))
    };
    let down_s = down.display().to_string();
    let mut rows = Vec::new();

    let only_small = std::env::var_os("WHARF_BENCH_ONLY_SMALL").is_some();
    eprintln!("bench: 1 file, get");
    if !only_small {
        rows.push(Row {
            workload: format!("1 × {} MiB get", plan.big_size / MIB),
            bytes: Some(plan.big_size),
            wharf: measure(plan.big_runs, || {
                clear(&down)?;
                wharf_run(format!("get big.bin {down_s}"))
            })?,
            sftp: measure(plan.big_runs, || {
                clear(&down)?;
                sftp_run(format!("get big.bin {down_s}/big.bin")).map(drop)
            })?,
            raw: Some(raw(1, plan.big_size)?),
        });
        eprintln!("bench: 1 file, put");
        rows.push(Row {
            workload: format!("1 × {} MiB put", plan.big_size / MIB),
            bytes: Some(plan.big_size),
            wharf: measure(plan.big_runs, || wharf_run("put --no-resume big.bin /".into()))?,
            sftp: measure(plan.big_runs, || sftp_run("put big.bin big.bin".into()).map(drop))?,
            raw: rows.first().and_then(|r| r.raw),
        });
        eprintln!("bench: 8 files at once");
        let parallel_sftp = |verb: &str| -> anyhow::Result<()> {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|n| {
                        let command = match verb {
                            "get" => format!("get p{n}.bin {down_s}/p{n}.bin"),
                            _ => format!("put p{n}.bin p{n}.bin"),
                        };
                        let sftp_run = &sftp_run;
                        scope.spawn(move || sftp_run(command))
                    })
                    .collect();
                for handle in handles {
                    handle.join().map_err(|_| anyhow::anyhow!("sftp thread panicked"))??;
                }
                Ok(())
            })
        };
        rows.push(Row {
            workload: "8 × 128 MiB get".into(),
            bytes: Some(8 * 128 * MIB),
            wharf: measure(plan.big_runs, || {
                clear(&down)?;
                wharf_run(format!("get -j 8 'p*.bin' {down_s}"))
            })?,
            sftp: measure(plan.big_runs, || {
                clear(&down)?;
                parallel_sftp("get")
            })?,
            raw: Some(raw(8, 128 * MIB)?),
        });
        rows.push(Row {
            workload: "8 × 128 MiB put".into(),
            bytes: Some(8 * 128 * MIB),
            wharf: measure(plan.big_runs, || wharf_run("put --no-resume -j 8 p*.bin /".into()))?,
            sftp: measure(plan.big_runs, || parallel_sftp("put"))?,
            raw: rows.last().and_then(|r| r.raw),
        });
    }
    eprintln!("bench: 1,000 small files");
    rows.push(Row {
        workload: "1,000 × 4 KiB put".into(),
        bytes: None,
        wharf: measure(plan.small_runs, || wharf_run("put --no-resume -r -j 16 small /".into()))?,
        sftp: measure(plan.small_runs, || sftp_run("put -r small".into()).map(drop))?,
        raw: None,
    });
    rows.push(Row {
        workload: "1,000 × 4 KiB get".into(),
        bytes: None,
        wharf: measure(plan.small_runs, || {
            clear(&down)?;
            wharf_run(format!("get -r -j 16 small {down_s}"))
        })?,
        sftp: measure(plan.small_runs, || {
            clear(&down)?;
            sftp_run(format!("get -r small {down_s}/small")).map(drop)
        })?,
        raw: None,
    });
    eprintln!("bench: mirror of 1,000 files with 10 changed");
    let rsync_dest = work.path().join("rsync-remote");
    wharf_run("mirror -R -j 16 tree small".into())?;
    sshd.rsync(&local.join("small"), &rsync_dest)?;
    let mut round = 0;
    let mut change_ten = || change_ten(&local.join("small"), &mut round);
    let wharf_mirror = measure_after(plan.small_runs, &mut change_ten, || {
        wharf_run("mirror -R -j 16 tree small".into())
    })?;
    let rsync_mirror = measure_after(plan.small_runs, &mut change_ten, || {
        sshd.rsync(&local.join("small"), &rsync_dest)
    })?;
    rows.push(Row {
        workload: "mirror 1,000, 10 changed".into(),
        bytes: None,
        wharf: wharf_mirror,
        sftp: rsync_mirror,
        raw: None,
    });
    eprintln!("bench: connect, log in, ls, quit");
    rows.push(Row {
        workload: "connect + login + ls".into(),
        bytes: None,
        wharf: measure(plan.small_runs, || wharf_run("ls".into()))?,
        sftp: measure(plan.small_runs, || sftp_run("ls".into()).map(drop))?,
        raw: None,
    });

    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "wharf benchmark: loopback, {cores} cores; median of {} (large) / {} (small) runs",
        plan.big_runs, plan.small_runs
    );
    println!(
        "sftp: OpenSSH, aes128-gcm@openssh.com, no end-to-end verification (the mirror row's baseline is rsync -a over the same ssh); wharf: SHA-256 verified, fsynced"
    );
    println!("rates: higher is better; times: lower is better; ratios are wharf / baseline\n");
    println!(
        "| {:<24} | {:>11} | {:>11} | {:>11} | {:>10} | {:>10} |",
        "workload", "wharf", "sftp", "raw quinn", "vs sftp", "vs raw"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|",
        "-".repeat(26),
        "-".repeat(13),
        "-".repeat(13),
        "-".repeat(13),
        "-".repeat(12),
        "-".repeat(12)
    );
    for row in &rows {
        row.print();
    }
    drop(sshd);
    server.stop();
    Ok(())
}
