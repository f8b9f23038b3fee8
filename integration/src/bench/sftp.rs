//! A throwaway OpenSSH server on a free loopback port, with its own keys and configuration, and the
//! `sftp` client pointed at it: the baseline wharf is measured against.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::wan::Wan;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd that accepts one key for the current user.
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    /// Where the server listens and clients connect.
    host: IpAddr,
    /// The network namespace clients run in, across an emulated WAN (see [`crate::wan`]).
    client_ns: Option<String>,
}

/// Where an sshd runs: on loopback, or across an emulated WAN.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    Loopback,
    Across(&'a Wan),
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Installs openssh-server and rsync with apt-get if missing (CI machines start without them).
fn ensure_sshd() -> anyhow::Result<()> {
    if Path::new(SSHD).exists() && Path::new(RSYNC).exists() {
        return Ok(());
    }
    eprintln!("bench: installing openssh-server and rsync for the baselines");
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "openssh-server", "rsync"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

const RSYNC: &str = "/usr/bin/rsync";

impl Sshd {
    pub fn start() -> anyhow::Result<Sshd> {
        Sshd::start_at(Place::Loopback)
    }

    /// Starts sshd on the server's side of `place`.
    pub fn start_at(place: Place<'_>) -> anyhow::Result<Sshd> {
        ensure_sshd()?;
        std::fs::create_dir_all("/run/sshd").context("privilege separation directory")?;
        let dir = tempfile::tempdir()?;
        for key in ["host_key", "client_key"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join(key)))?;
        }
        std::fs::copy(dir.path().join("client_key.pub"), dir.path().join("authorized_keys"))?;
        // A free port on loopback is free in a fresh namespace too.
        let port = crate::free_tcp_port()?;
        let host = match place {
            Place::Loopback => IpAddr::from([127, 0, 0, 1]),
            Place::Across(wan) => wan.server_ip(),
        };
        let config = dir.path().join("sshd_config");
        let mut file = std::fs::File::create(&config)?;
        writeln!(
            file,
            "Port {port}\nListenAddress {listen}\nHostKey {host_key}\nAuthorizedKeysFile {keys}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nPidFile {pid}\nLogLevel ERROR",
            listen = host,
            host_key = dir.path().join("host_key").display(),
            keys = dir.path().join("authorized_keys").display(),
            pid = dir.path().join("sshd.pid").display(),
        )?;
        let mut sshd_command = match place {
            Place::Loopback => Command::new(SSHD),
            Place::Across(wan) => wan.in_server(SSHD),
        };
        let child = sshd_command
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stderr(std::fs::File::create(dir.path().join("sshd.log"))?)
            .spawn()?;
        let client_ns = match place {
            Place::Loopback => None,
            Place::Across(wan) => Some(wan.client_namespace().to_owned()),
        };
        let sshd = Sshd { dir, child, port, host, client_ns };
        sshd.wait_until_listening()?;
        Ok(sshd)
    }

    /// sshd prints nothing when it is ready, so wait for its port to accept connections (from the
    /// client's side: across a WAN, by a probe run there).
    fn wait_until_listening(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listening = match &self.client_ns {
                None => std::net::TcpStream::connect((self.host, self.port)).is_ok(),
                Some(_) => self
                    .command("bash")
                    .arg("-c")
                    .arg(format!("exec 3<>/dev/tcp/{}/{}", self.host, self.port))
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success()),
            };
            if listening {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("sshd.log"));
                bail!(
                    "sshd did not start listening on {}:{}: {}",
                    self.host,
                    self.port,
                    log.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `program` on the clients' side.
    fn command(&self, program: &str) -> Command {
        match &self.client_ns {
            None => Command::new(program),
            Some(ns) => crate::wan::in_namespace(ns, program),
        }
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// Runs `sftp` with `commands` as its batch, in the cipher the comparison uses.
    pub fn sftp(&self, commands: &str) -> anyhow::Result<Output> {
        let output = self.spawn_sftp(commands)?.wait_with_output()?;
        if !output.status.success() {
            bail!("sftp failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(output)
    }

    /// Starts `sftp` with `commands` as its batch, without waiting for it.
    pub fn spawn_sftp(&self, commands: &str) -> anyhow::Result<Child> {
        let mut child = self
            .command("sftp")
            .args(["-q", "-b", "-", "-c", "aes128-gcm@openssh.com"])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])
            .arg("-i")
            .arg(self.key())
            .arg("-P")
            .arg(self.port.to_string())
            .arg(format!("{}@{}", user(), self.host))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().context("stdin")?.write_all(commands.as_bytes())?;
        Ok(child)
    }
}

impl Sshd {
    /// `rsync -a SOURCE/ DEST` over ssh to this server, in the cipher the comparison uses: the
    /// baseline for `mirror` and for uploading many small files.
    pub fn rsync(&self, source: &Path, dest: &Path) -> anyhow::Result<()> {
        let remote = format!("{}@{}:{}", user(), self.host, dest.display());
        self.run_rsync(format!("{}/", source.display()), remote)
    }

    /// `rsync -a` from SOURCE/ on this server to DEST here: the baseline for downloading many files.
    pub fn rsync_from(&self, source: &Path, dest: &Path) -> anyhow::Result<()> {
        let remote = format!("{}@{}:{}/", user(), self.host, source.display());
        self.run_rsync(remote, dest.display().to_string())
    }

    fn run_rsync(&self, from: String, to: String) -> anyhow::Result<()> {
        let ssh = format!(
            "ssh -c aes128-gcm@openssh.com -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o BatchMode=yes -o LogLevel=ERROR -i {} -p {}",
            self.key().display(),
            self.port
        );
        let output = self
            .command(RSYNC)
            .args(["-a", "-e", &ssh])
            .arg(from)
            .arg(to)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        if !output.status.success() {
            bail!("rsync failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }
}

fn user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
