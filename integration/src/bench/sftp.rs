//! A throwaway OpenSSH server on a free loopback port, with its own keys and configuration, and the
//! `sftp` client pointed at it: the baseline wharf is measured against.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd that accepts one key for the current user.
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
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
        ensure_sshd()?;
        std::fs::create_dir_all("/run/sshd").context("privilege separation directory")?;
        let dir = tempfile::tempdir()?;
        for key in ["host_key", "client_key"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join(key)))?;
        }
        std::fs::copy(dir.path().join("client_key.pub"), dir.path().join("authorized_keys"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = dir.path().join("sshd_config");
        let mut file = std::fs::File::create(&config)?;
        writeln!(
            file,
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nPidFile {pid}\nLogLevel ERROR",
            host = dir.path().join("host_key").display(),
            keys = dir.path().join("authorized_keys").display(),
            pid = dir.path().join("sshd.pid").display(),
        )?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()?;
        let sshd = Sshd { dir, child, port };
        sshd.wait_until_listening()?;
        Ok(sshd)
    }

    /// sshd prints nothing when it is ready, so wait for its port to accept connections.
    fn wait_until_listening(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("sshd did not start listening on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// Runs `sftp` with `commands` as its batch, in the cipher the comparison uses.
    pub fn sftp(&self, commands: &str) -> anyhow::Result<Output> {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let mut child = Command::new("sftp")
            .args([
                "-q",
                "-b",
                "-",
                "-c",
                "aes128-gcm@openssh.com",
                "-o",
                "StrictHostKeyChecking=no",
            ])
            .args([
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-i")
            .arg(self.key())
            .arg("-P")
            .arg(self.port.to_string())
            .arg(format!("{user}@127.0.0.1"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().context("stdin")?.write_all(commands.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("sftp failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(output)
    }
}

impl Sshd {
    /// `rsync -a SOURCE/ DEST` over ssh to this server, in the cipher the comparison uses: the
    /// baseline for `mirror`.
    pub fn rsync(&self, source: &Path, dest: &Path) -> anyhow::Result<()> {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let ssh = format!(
            "ssh -c aes128-gcm@openssh.com -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o BatchMode=yes -o LogLevel=ERROR -i {} -p {}",
            self.key().display(),
            self.port
        );
        let output = Command::new(RSYNC)
            .args(["-a", "-e", &ssh])
            .arg(format!("{}/", source.display()))
            .arg(format!("{user}@127.0.0.1:{}", dest.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        if !output.status.success() {
            bail!("rsync failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
