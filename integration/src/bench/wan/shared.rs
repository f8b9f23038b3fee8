//! The shared-bottleneck rows: one wharf download beside one sftp download through the same
//! bottleneck, each one's share of the link over the same window, against sftp over each TCP
//! controller, and two sftp downloads for reference.
//!
//! Both downloads of a row connect and log in, then wait at a start gate, and begin their gets
//! together: a flow that starts first fills the queue before the other, and keeps a lead over a
//! window this short (two sftp downloads over Cubic started 0.7 s apart shared the `wan` link
//! 65/32 and 72/25, the first ahead). Each client waits in a local shell command of its own
//! batch (`!`), which both wharf and sftp run once they are logged in.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{MIB, Site, bytes_under};
use crate::wan::Profile;

/// The shared-bottleneck row: both downloads run this long before the measurement, and then for
/// [`share_window`].
const SHARE_WARMUP: Duration = Duration::from_secs(5);
/// The shared-bottleneck row's window unless `WHARF_BENCH_SHARE_SECS` sets another: two Cubic
/// flows take longer than this to even out, so a longer window tells more, at its cost in time.
const SHARE_WINDOW: Duration = Duration::from_secs(15);
/// The smallest file of the shared-bottleneck row (see [`file_size`]).
const SHARED_FILE_SIZE: u64 = 1024 * MIB;
/// Linux's default TCP congestion controller: the shared-bottleneck row runs against it too when
/// the baselines use another.
const LINUX_DEFAULT_TCP: &str = "cubic";
/// The longest a download may take to connect and log in (an sftp login across `far` took 4 s),
/// and the longest a client waits at the start gate.
const GATE_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared-bottleneck rows: wharf against sftp over each TCP controller (the baselines' and
/// Linux's default; BBR keeps sending through losses that make Cubic back off), and, for
/// reference, sftp over the one against sftp over the other (or over the same, if there is one):
/// what TCP flows get against each other on the same path.
pub(super) fn rows(site: &Site) -> Vec<Shared> {
    let mut controllers = vec![site.tcp.clone()];
    if site.tcp != LINUX_DEFAULT_TCP {
        controllers.push(LINUX_DEFAULT_TCP.to_owned());
    }
    let mut pairs: Vec<[Download; 2]> =
        controllers.iter().map(|tcp| [Download::Wharf, Download::Sftp(tcp.clone())]).collect();
    if let (Some(first), Some(last)) = (controllers.first(), controllers.last()) {
        pairs.push([Download::Sftp(first.clone()), Download::Sftp(last.clone())]);
    }
    let shared = pairs
        .into_iter()
        .map(|pair| {
            // A failed share is reported in place of its figures, not at the cost of the table.
            let shares = shared_row(site, &pair).map_err(|err| format!("{err:#}"));
            Shared { pair, shares }
        })
        .collect();
    if let Err(err) = site.wan.set_tcp_congestion(&site.tcp) {
        eprintln!("bench: could not set TCP back to {}: {err:#}", site.tcp);
    }
    shared
}

/// One of the two downloads of a shared-bottleneck row.
#[derive(Debug)]
enum Download {
    Wharf,
    /// sftp, its server's TCP connection made under this congestion controller.
    Sftp(String),
}

impl std::fmt::Display for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Download::Wharf => f.write_str("wharf"),
            Download::Sftp(tcp) => write!(f, "sftp (TCP {tcp})"),
        }
    }
}

/// One shared-bottleneck row: its two downloads, and each one's rate.
pub(super) struct Shared {
    pair: [Download; 2],
    shares: Result<(f64, f64), String>,
}

/// Two downloads at once, each of the same large file into a folder of its own: after a warm-up,
/// each one's bytes over the same window, as a rate.
fn shared_row(site: &Site, pair: &[Download; 2]) -> anyhow::Result<(f64, f64)> {
    site.clear_down()?;
    let gate = Gate::new(&site.down().join("gate"))?;
    let dirs = [site.down().join("first"), site.down().join("second")];
    let mut children = Vec::new();
    for ((download, dir), name) in pair.iter().zip(&dirs).zip(["first", "second"]) {
        std::fs::create_dir_all(dir)?;
        let mut child = Stopped(start_download(site, download, dir, &gate.wait_command(name))?);
        // Logged in: the TCP controller sshd took for this connection is set, and the next
        // download may set another.
        gate.await_arrival(name, download, &mut child.0)?;
        children.push(child);
    }
    gate.open()?;
    std::thread::sleep(SHARE_WARMUP);
    let before = dirs.each_ref().map(|dir| bytes_under(dir));
    let started = Instant::now();
    std::thread::sleep(share_window());
    let after = dirs.each_ref().map(|dir| bytes_under(dir));
    let window = started.elapsed().as_secs_f64();
    for (download, child) in pair.iter().zip(&mut children) {
        if let Some(status) = child.0.try_wait()? {
            bail!("{download} ended inside the window ({status}): the shares are not comparable");
        }
    }
    Ok(((after[0] - before[0]) as f64 / window, (after[1] - before[1]) as f64 / window))
}

/// How long the shared-bottleneck row measures: `WHARF_BENCH_SHARE_SECS`, or [`SHARE_WINDOW`].
fn share_window() -> Duration {
    std::env::var("WHARF_BENCH_SHARE_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(SHARE_WINDOW, Duration::from_secs)
}

/// The shared-bottleneck row's file: more than the whole link moves in the warm-up and the window,
/// so that neither download ends inside it.
pub(super) fn file_size(profile: Profile) -> u64 {
    let time = (SHARE_WARMUP + share_window()).as_secs_f64();
    let link = profile.bytes_per_sec().map_or(0, |rate| (rate * time) as u64);
    SHARED_FILE_SIZE.max(link.div_ceil(MIB) * MIB + 64 * MIB)
}

/// The start gate of a row's downloads: a folder where each client, once logged in, marks its
/// arrival and waits for the file that opens the gate.
struct Gate {
    dir: PathBuf,
    script: PathBuf,
}

impl Gate {
    fn new(dir: &Path) -> anyhow::Result<Gate> {
        std::fs::create_dir_all(dir)?;
        let script = dir.join("wait.sh");
        let open = dir.join("open");
        // Bounded, so that a client whose row failed never waits forever; it fails its batch if
        // the gate never opened.
        let polls = GATE_TIMEOUT.as_millis() / 10;
        std::fs::write(
            &script,
            format!(
                "touch \"$1\"\ni=0\nwhile [ ! -e '{open}' ] && [ $i -lt {polls} ]; do sleep 0.01; i=$((i+1)); done\n[ -e '{open}' ]\n",
                open = open.display()
            ),
        )?;
        Ok(Gate { dir: dir.to_owned(), script })
    }

    /// The file whose presence says that the client called `name` is logged in and waiting.
    fn waiting(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.waiting"))
    }

    /// The local shell command, for wharf's and sftp's `!`, with which the client called `name`
    /// marks its arrival and waits.
    fn wait_command(&self, name: &str) -> String {
        format!("!sh {} {}", self.script.display(), self.waiting(name).display())
    }

    /// Waits until `download`, the client called `name`, has arrived at the gate.
    fn await_arrival(
        &self,
        name: &str,
        download: &Download,
        child: &mut Child,
    ) -> anyhow::Result<()> {
        let waiting = self.waiting(name);
        let deadline = Instant::now() + GATE_TIMEOUT;
        while !waiting.exists() {
            if let Some(status) = child.try_wait()? {
                bail!("{download} ended before it reached the start gate ({status})");
            }
            if Instant::now() > deadline {
                bail!("{download} did not reach the start gate in {GATE_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn open(&self) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("open"), b"")?;
        Ok(())
    }
}

/// Starts `download` of `big2.bin` into `dir`, once the client has run `wait` (the start gate).
fn start_download(
    site: &Site,
    download: &Download,
    dir: &Path,
    wait: &str,
) -> anyhow::Result<Child> {
    match download {
        Download::Wharf => {
            let args =
                site.wharf_args(&format!("{wait}; get --no-resume big2.bin {}", dir.display()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Ok(crate::client::spawn_wharf_in(
                site.wan.client_namespace(),
                site.home.path(),
                Some("bench-password"),
                &args,
            ))
        }
        Download::Sftp(tcp) => {
            // sshd's side of the connection takes the namespace's controller when it accepts,
            // so the next download may set another once this one has connected.
            site.wan.set_tcp_congestion(tcp)?;
            site.sshd.spawn_sftp(&format!(
                "cd {}\n{wait}\nget big2.bin {}/big2.bin\n",
                site.sftp_remote().display(),
                dir.display()
            ))
        }
    }
}

/// A child process that is stopped and waited for when this is dropped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prints each row's shares of the link (bytes per second), or why it has none.
pub(super) fn print(shared: &[Shared], link: Option<f64>) {
    for Shared { pair: [first, second], shares } in shared {
        match (shares, link) {
            (Err(why), _) => println!("shared bottleneck, {first} and {second}: no figures: {why}"),
            (Ok((a, b)), Some(link)) => println!(
                "shared bottleneck over {} s: {first} {:.1} MiB/s ({:.0} % of the link), {second} {:.1} MiB/s ({:.0} %)",
                share_window().as_secs(),
                a / MIB as f64,
                a / link * 100.0,
                b / MIB as f64,
                b / link * 100.0
            ),
            (Ok(_), None) => {}
        }
    }
}
