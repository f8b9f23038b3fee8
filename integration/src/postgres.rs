//! A throwaway PostgreSQL for a test: `initdb` on a temporary directory, `pg_ctl start` on a free
//! loopback port, and `pg_ctl stop` when dropped. initdb refuses to run as root, so as root the
//! cluster belongs to the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Where Debian puts the server programs (`postgresql-15`; any version will do).
fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("WHARF_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Why a PostgreSQL cannot be started here, if it cannot.
pub fn unavailable() -> Option<String> {
    match bin_dir() {
        None => Some("no PostgreSQL server programs (apt-get install postgresql)".into()),
        Some(_) => None,
    }
}

/// A running PostgreSQL, stopped when dropped.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Runs the programs as this user (`postgres` when the tests run as root).
    run_as: Option<&'static str>,
    /// Whether commits reach the disk (`fsync`): off for tests, which crash nothing but processes;
    /// on for the benchmark, as in production.
    durable: bool,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts a new cluster with one database, `wharf`, without `fsync`.
    pub fn start() -> anyhow::Result<Postgres> {
        Postgres::start_with(false)
    }

    /// Starts a new cluster with one database, `wharf`, whose commits wait for the disk.
    pub fn start_durable() -> anyhow::Result<Postgres> {
        Postgres::start_with(true)
    }

    fn start_with(durable: bool) -> anyhow::Result<Postgres> {
        let bin = bin_dir().context("no PostgreSQL server programs")?;
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let run_as = rustix::process::geteuid().is_root().then_some("postgres");
        if run_as.is_some() {
            // The cluster's files must belong to the user who runs it.
            let status =
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status()?;
            anyhow::ensure!(status.success(), "chown of the cluster directory failed");
        }
        let mut pg = Postgres { bin, data, port: 0, run_as, durable, _dir: dir };
        pg.run("initdb", &["-A", "trust", "-U", "postgres", "--no-sync", "-D", &pg.data_arg()])?;
        pg.start_on_a_free_port()?;
        let port = pg.port.to_string();
        pg.run("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "wharf"])?;
        Ok(pg)
    }

    /// The port is free when chosen but may be taken before the server binds it, so a failed
    /// start is tried again on another port. The last failure carries the server's log.
    fn start_on_a_free_port(&mut self) -> anyhow::Result<()> {
        const ATTEMPTS: usize = 3;
        let mut failure = None;
        for _ in 0..ATTEMPTS {
            self.port = crate::free_tcp_port()?;
            match self.resume() {
                Ok(()) => return Ok(()),
                Err(error) => failure = Some(error.context(format!("server log:\n{}", self.log()))),
            }
        }
        Err(failure.expect("at least one attempt"))
    }

    /// Starts the server on the cluster (again), on its port, and waits until it accepts
    /// connections.
    pub fn resume(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={}",
            self.port,
            self.data_arg(),
            if self.durable { "on" } else { "off" }
        );
        let data = self.data_arg();
        self.run("pg_ctl", &["-D", &data, "-o", &options, "-w", "-l", &self.log_arg(), "start"])
    }

    /// Stops the server at once (`-m immediate`, as a crash would), keeping the cluster.
    pub fn halt(&self) -> anyhow::Result<()> {
        self.run("pg_ctl", &["-D", &self.data_arg(), "-m", "immediate", "-w", "stop"])
    }

    /// The connection URL of the `wharf` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/wharf", self.port)
    }

    /// The rows in `table` of the `wharf` database right now.
    pub fn count(&self, table: &str) -> u64 {
        let count = self.query(&format!("SELECT count(*) FROM {table}"));
        count.parse().expect("a count")
    }

    /// The one value `sql` selects from the `wharf` database, as text.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "wharf",
            ])
            .args(["-tAc", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn data_arg(&self) -> String {
        self.data.display().to_string()
    }

    fn log_arg(&self) -> String {
        self.data.with_file_name("server.log").display().to_string()
    }

    /// The server's log, for a failing test.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_arg()).unwrap_or_default()
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        let out = command.args(args).stdin(Stdio::null()).current_dir(tmp_dir()).output()?;
        if !out.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// A directory every user may enter, to run the programs from.
fn tmp_dir() -> &'static Path {
    Path::new("/tmp")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}
