//! The loopback rows (the `lan` profile): wharf against sftp and raw quinn on this machine, one
//! server of each beside the other.

use std::path::PathBuf;
use std::time::Duration;

use super::{
    Client, MIB, Plan, Row, change_ten, measure, measure_after, median, raw_quinn, sftp,
    write_random,
};
use crate::server::TestServer;

/// Runs the loopback rows and prints their table.
pub fn run(plan: Plan) -> anyhow::Result<()> {
    let bench = Loopback::start(plan)?;
    let mut rows = Vec::new();
    if std::env::var_os("WHARF_BENCH_ONLY_SMALL").is_none() {
        bench.large_rows(&mut rows)?;
    }
    bench.small_rows(&mut rows)?;
    bench.mirror_row(&mut rows)?;
    eprintln!("bench: connect, log in, ls, quit");
    rows.push(Row {
        workload: "connect + login + ls".into(),
        bytes: None,
        wharf: measure(plan.small_runs, || bench.wharf_run("ls"))?,
        sftp: measure(plan.small_runs, || bench.sftp_run("ls").map(drop))?,
        raw: None,
    });
    print_table(&rows, plan);
    bench.stop();
    Ok(())
}

/// A wharfd and an sshd serving the same files, and the local side's folders.
struct Loopback {
    plan: Plan,
    server: TestServer,
    sshd: sftp::Sshd,
    work: tempfile::TempDir,
    /// The client's home (known hosts and the like).
    home: tempfile::TempDir,
    local: PathBuf,
    remote_sftp: PathBuf,
    down: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Loopback {
    fn start(plan: Plan) -> anyhow::Result<Loopback> {
        let mut server = TestServer::plain("[users]\ndefault_quota = \"unlimited\"\n");
        server.add_user("bench", "bench-password", "unlimited");
        server.start();
        let sshd = sftp::Sshd::start()?;
        let work = tempfile::tempdir()?;
        let (local, remote_sftp) = (work.path().join("local"), work.path().join("sftp-remote"));
        let down = work.path().join("down");
        for dir in [&local, &remote_sftp, &down, &local.join("small")] {
            std::fs::create_dir_all(dir)?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let home = tempfile::tempdir()?;
        let bench = Loopback { plan, server, sshd, work, home, local, remote_sftp, down, runtime };
        bench.write_files()?;
        Ok(bench)
    }

    /// The files every row reads, on the local side and on both servers.
    fn write_files(&self) -> anyhow::Result<()> {
        eprintln!("bench: writing test files");
        write_random(&self.local.join("big.bin"), self.plan.big_size, 1)?;
        for n in 0..8 {
            write_random(&self.local.join(format!("p{n}.bin")), 128 * MIB, 10 + n)?;
        }
        for n in 0..1000 {
            write_random(&self.local.join(format!("small/f{n:04}")), 4096, 100 + n)?;
        }
        let wharf_home = self.server.home("bench");
        for entry in std::fs::read_dir(&self.local)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), wharf_home.join(entry.file_name()))?;
                std::fs::copy(entry.path(), self.remote_sftp.join(entry.file_name()))?;
            }
        }
        Ok(())
    }

    fn wharf_run(&self, commands: &str) -> anyhow::Result<()> {
        let client = Client { home: self.home.path(), local: &self.local };
        client.run(&self.server, ("bench", "bench-password"), commands)
    }

    fn sftp_run(&self, commands: &str) -> anyhow::Result<std::process::Output> {
        let (local, remote) = (self.local.display(), self.remote_sftp.display());
        self.sshd.sftp(&format!("lcd {local}\ncd {remote}\n{commands}\n"))
    }

    /// Empties the download folder before a timed run, untimed: freeing a downloaded 1 GiB takes
    /// 0.25 s here, which is no part of the next download.
    fn clear_down(&self) -> anyhow::Result<()> {
        std::fs::remove_dir_all(&self.down)?;
        std::fs::create_dir_all(&self.down)?;
        Ok(())
    }

    fn down(&self) -> String {
        self.down.display().to_string()
    }

    /// The raw-quinn ceiling for `bytes` on each of `streams` streams.
    fn raw(&self, streams: usize, bytes: u64) -> anyhow::Result<Duration> {
        let key = self.server.root().join("certs/server.key");
        let cert = self.server.cert();
        let samples: anyhow::Result<Vec<Duration>> = (0..self.plan.big_runs)
            .map(|_| self.runtime.block_on(raw_quinn::transfer(&cert, &key, streams, bytes)))
            .collect();
        Ok(median(samples?))
    }

    /// One large file each way, then eight at once each way.
    fn large_rows(&self, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let (runs, size, down) = (self.plan.big_runs, self.plan.big_size, self.down());
        eprintln!("bench: 1 file, get");
        let raw_one = Some(self.raw(1, size)?);
        rows.push(Row {
            workload: format!("1 × {} MiB get", size / MIB),
            bytes: Some(size),
            wharf: measure_after(
                runs,
                || self.clear_down(),
                || self.wharf_run(&format!("get big.bin {down}")),
            )?,
            sftp: measure_after(
                runs,
                || self.clear_down(),
                || self.sftp_run(&format!("get big.bin {down}/big.bin")).map(drop),
            )?,
            raw: raw_one,
        });
        eprintln!("bench: 1 file, put");
        rows.push(Row {
            workload: format!("1 × {} MiB put", size / MIB),
            bytes: Some(size),
            wharf: measure(runs, || self.wharf_run("put --no-resume big.bin /"))?,
            sftp: measure(runs, || self.sftp_run("put big.bin big.bin").map(drop))?,
            raw: raw_one,
        });
        eprintln!("bench: 8 files at once");
        let raw_eight = Some(self.raw(8, 128 * MIB)?);
        rows.push(Row {
            workload: "8 × 128 MiB get".into(),
            bytes: Some(8 * 128 * MIB),
            wharf: measure_after(
                runs,
                || self.clear_down(),
                || self.wharf_run(&format!("get -j 8 'p*.bin' {down}")),
            )?,
            sftp: measure_after(runs, || self.clear_down(), || self.parallel_sftp("get"))?,
            raw: raw_eight,
        });
        rows.push(Row {
            workload: "8 × 128 MiB put".into(),
            bytes: Some(8 * 128 * MIB),
            wharf: measure(runs, || self.wharf_run("put --no-resume -j 8 p*.bin /"))?,
            sftp: measure(runs, || self.parallel_sftp("put"))?,
            raw: raw_eight,
        });
        Ok(())
    }

    /// Eight sftp sessions at once, one file each (sftp has no parallel transfers of its own).
    fn parallel_sftp(&self, verb: &str) -> anyhow::Result<()> {
        let down = self.down();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|n| {
                    let command = match verb {
                        "get" => format!("get p{n}.bin {down}/p{n}.bin"),
                        _ => format!("put p{n}.bin p{n}.bin"),
                    };
                    scope.spawn(move || self.sftp_run(&command))
                })
                .collect();
            for handle in handles {
                handle.join().map_err(|_| anyhow::anyhow!("sftp thread panicked"))??;
            }
            Ok(())
        })
    }

    /// A thousand small files each way.
    fn small_rows(&self, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        let (runs, down) = (self.plan.small_runs, self.down());
        eprintln!("bench: 1,000 small files");
        rows.push(Row {
            workload: "1,000 × 4 KiB put".into(),
            bytes: None,
            wharf: measure(runs, || self.wharf_run("put --no-resume -r -j 16 small /"))?,
            sftp: measure(runs, || self.sftp_run("put -r small").map(drop))?,
            raw: None,
        });
        rows.push(Row {
            workload: "1,000 × 4 KiB get".into(),
            bytes: None,
            wharf: measure_after(
                runs,
                || self.clear_down(),
                || self.wharf_run(&format!("get -r -j 16 small {down}")),
            )?,
            sftp: measure_after(
                runs,
                || self.clear_down(),
                || self.sftp_run(&format!("get -r small {down}/small")).map(drop),
            )?,
            raw: None,
        });
        Ok(())
    }

    /// A mirror of the thousand files with ten changed, against rsync over the same ssh.
    fn mirror_row(&self, rows: &mut Vec<Row>) -> anyhow::Result<()> {
        eprintln!("bench: mirror of 1,000 files with 10 changed");
        let (small, rsync_dest) = (self.local.join("small"), self.work.path().join("rsync-remote"));
        self.wharf_run("mirror -R -j 16 tree small")?;
        self.sshd.rsync(&small, &rsync_dest)?;
        let mut round = 0;
        let mut change = || change_ten(&small, &mut round);
        let runs = self.plan.small_runs;
        let wharf =
            measure_after(runs, &mut change, || self.wharf_run("mirror -R -j 16 tree small"))?;
        let rsync = measure_after(runs, &mut change, || self.sshd.rsync(&small, &rsync_dest))?;
        let workload = "mirror 1,000, 10 changed".into();
        rows.push(Row { workload, bytes: None, wharf, sftp: rsync, raw: None });
        Ok(())
    }

    fn stop(self) {
        let Loopback { mut server, sshd, .. } = self;
        drop(sshd);
        server.stop();
    }
}

fn print_table(rows: &[Row], plan: Plan) {
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
    let dashes = |n: usize| "-".repeat(n);
    let (w, n) = (dashes(26), dashes(13));
    println!("|{w}|{n}|{n}|{n}|{}|{}|", dashes(12), dashes(12));
    for row in rows {
        row.print();
    }
}
