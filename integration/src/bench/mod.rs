//! The benchmark: wharf against OpenSSH sftp and a raw-quinn transport ceiling, in one run, on this
//! machine. Every figure is the median of several runs, because the machine is shared and noisy;
//! the ratios are what to quote, since they are measured side by side.
//!
//! Workloads: one 1 GiB file (get and put, verified end to end by wharf, by nothing in sftp),
//! 8 × 128 MiB at once, 1,000 files of 4 KiB, a mirror of those 1,000 files with 10 changed
//! (against `rsync -a` over the same ssh), and connect + log in + `ls` + quit.

mod loopback;
mod raw_quinn;
mod s3;
mod sftp;
mod wan;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

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

/// The `wharf` binary as a benchmark drives it: a home of its own, run from a local folder.
struct Client<'a> {
    home: &'a Path,
    local: &'a Path,
}

impl Client<'_> {
    /// Runs `commands` (one `wharf -c` script, from the local folder) against `server` as
    /// `login` (user, password).
    fn run(
        &self,
        server: &crate::server::TestServer,
        login: (&str, &str),
        commands: &str,
    ) -> anyhow::Result<()> {
        let script = format!("lcd {}; {commands}", self.local.display());
        let cert = server.cert().display().to_string();
        let to = crate::client::target(server, login.0);
        let args = ["--ca", &cert, "-c", &script, &to];
        let out = crate::client::wharf(self.home, Some(login.1), &args, None);
        if !out.status.success() {
            bail!("wharf {commands}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
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
        std::env::var("WHARF_BENCH_PROFILES").unwrap_or_else(|_| "lan,s3,wan,lossy,far".into());
    let names: Vec<String> = chosen.split(',').map(|s| s.trim().to_owned()).collect();
    for name in &names {
        if !["lan", "wan", "lossy", "far", "s3"].contains(&name.as_str()) {
            bail!("unknown profile {name:?}: lan, wan, lossy, far or s3");
        }
    }
    Ok(names)
}

/// Runs every profile's workloads and prints a table per profile.
pub fn run(plan: Plan) -> anyhow::Result<()> {
    let profiles = profiles()?;
    if profiles.iter().any(|p| p == "lan") {
        loopback::run(plan)?;
    }
    if profiles.iter().any(|p| p == "s3") {
        s3::run(plan)?;
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
    if std::env::var_os("WHARF_BENCH_ONLY_SHARED").is_none() {
        println!("{}\n", wan::router_ceiling(256 * MIB)?);
    }
    for profile in across {
        // A lossy path gets a smaller file: the baselines would take many minutes over 1 GiB.
        let size = if profile.loss > 0.0 { plan.big_size.min(256 * MIB) } else { plan.big_size };
        wan::run_profile(profile, size, plan.small_runs.min(3))?;
    }
    Ok(())
}
