//! A real `wharfd` process with a temporary root.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::binary;
use crate::engines::Engines;

/// How long a server gets to start or stop before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable that chooses the storage backend of every [`TestServer::new`]:
/// `local` (the default) or `s3`, which gives each server a Garage and a PostgreSQL of its own.
pub const BACKEND_VARIABLE: &str = "WHARF_TEST_BACKEND";

/// Whether this run's servers store their files on the s3 backend.
pub fn s3_backend() -> bool {
    std::env::var(BACKEND_VARIABLE).is_ok_and(|backend| backend == "s3")
}

/// A server root in a temporary directory, and the server process once started.
pub struct TestServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    addr: Option<SocketAddr>,
    /// The server's own Garage and PostgreSQL, on the s3 backend (stopped after the server).
    pub(crate) engines: Option<Engines>,
    /// Each added user's password, for [`TestServer::place`] to log in with on the s3 backend.
    pub(crate) passwords: HashMap<String, String>,
}

impl TestServer {
    /// A fresh root with `wharfd setup` done and `config` (TOML) as `etc/wharfd.toml`, on this
    /// run's backend ([`s3_backend`]).
    pub fn new(config: &str) -> TestServer {
        let mut server = TestServer::plain(config);
        if s3_backend() {
            let engines = Engines::start_now();
            let config = format!("{config}\n{}", engines.config(server.root()));
            std::fs::write(server.root().join("etc/wharfd.toml"), config).expect("write config");
            server.engines = Some(engines);
            server.migrate();
        }
        server
    }

    /// A fresh root with `wharfd setup` done and `config` (TOML) as `etc/wharfd.toml`, whatever
    /// this run's backend: for tests that configure the storage themselves.
    pub fn plain(config: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary root");
        let passwords = HashMap::new();
        let server = TestServer { dir, child: None, addr: None, engines: None, passwords };
        let setup = server.wharfd(&["setup"], None);
        assert!(setup.status.success(), "setup failed: {}", String::from_utf8_lossy(&setup.stderr));
        std::fs::write(server.root().join("etc/wharfd.toml"), config).expect("write config");
        server
    }

    /// `wharfd migrate`, which must succeed.
    pub fn migrate(&self) {
        let out = self.wharfd(&["migrate"], None);
        assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Whether this server keeps its files on its local disk (under [`TestServer::home`]).
    pub fn is_local(&self) -> bool {
        self.engines.is_none()
    }

    /// Like [`TestServer::plain`], with a certificate that also names `host` (an address inside an
    /// emulated WAN, say).
    pub fn for_host(config: &str, host: &str) -> TestServer {
        let server = TestServer::plain(config);
        let setup = server.wharfd(&["setup", "--force", "--host", host], None);
        assert!(setup.status.success(), "setup failed: {}", String::from_utf8_lossy(&setup.stderr));
        server
    }

    /// Starts a server with the default configuration and the given users (name, password).
    pub fn with_users(users: &[(&str, &str)]) -> TestServer {
        TestServer::configured("", users)
    }

    /// Like [`TestServer::with_users`], with `config` (TOML) as the configuration.
    pub fn configured(config: &str, users: &[(&str, &str)]) -> TestServer {
        let mut server = TestServer::new(config);
        for (name, password) in users {
            server.add_user(name, password, "100MiB");
        }
        server.start();
        server
    }

    /// A server that splits every file of more than one piece into lanes (`lanes` of them at most).
    pub fn segmented(lanes: u32, users: &[(&str, &str)]) -> TestServer {
        let config = format!("[transfer]\nsegment_threshold = 1\nsegment_lanes = {lanes}\n");
        TestServer::configured(&config, users)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn cert(&self) -> PathBuf {
        self.root().join("certs/server.crt")
    }

    /// A user's home directory on the server's disk.
    pub fn home(&self, user: &str) -> PathBuf {
        self.root().join("var/homes").join(user)
    }

    /// Runs `wharfd --root ROOT ARGS...`, with `stdin` fed in if given.
    pub fn wharfd(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(binary("wharfd"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wharfd");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            feed(&mut input, text);
        }
        drop(input);
        child.wait_with_output().expect("wharfd output")
    }

    /// `wharfd user add NAME --quota QUOTA --password-stdin`, which must succeed.
    pub fn add_user(&mut self, name: &str, password: &str, quota: &str) {
        let out = self.wharfd(
            &["user", "add", name, "--quota", quota, "--password-stdin"],
            Some(&format!("{password}\n")),
        );
        assert!(out.status.success(), "user add {name}: {}", String::from_utf8_lossy(&out.stderr));
        self.passwords.insert(name.to_owned(), password.to_owned());
    }

    /// Starts `wharfd serve --listen 127.0.0.1:0` and waits for its `listening on` line.
    pub fn start(&mut self) {
        self.start_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    }

    /// Starts the server on a given address (to come back on the same port after a restart).
    pub fn start_on(&mut self, listen: SocketAddr) {
        self.launch(Command::new(binary("wharfd")), listen);
    }

    /// Starts the server on loopback with its soft limit on open files lowered to `soft`, as a
    /// service manager may start it.
    pub fn start_with_open_files(&mut self, soft: u64) {
        let mut shell = Command::new("sh");
        // `sh -c SCRIPT NAME ARGS...`: the script lowers the limit, then becomes wharfd with the
        // arguments `launch` adds.
        shell
            .args(["-c", &format!("ulimit -Sn {soft} && exec \"$0\" \"$@\"")])
            .arg(binary("wharfd"));
        self.launch(shell, SocketAddr::from(([127, 0, 0, 1], 0)));
    }

    /// Starts the server inside the network namespace `namespace` (see [`crate::wan`]), listening
    /// on `listen` there.
    pub fn start_in(&mut self, namespace: &str, listen: SocketAddr) {
        self.launch(crate::wan::in_namespace(namespace, binary("wharfd")), listen);
    }

    fn launch(&mut self, mut wharfd: Command, listen: SocketAddr) {
        assert!(self.child.is_none(), "server already running");
        let log = std::fs::File::create(self.root().join("server-stderr.log")).expect("stderr log");
        let mut child = wharfd
            .arg("--root")
            .arg(self.root())
            .args(["serve", "--listen", &listen.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("WHARF_TEST_SERVER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn wharfd serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("wharfd listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("address"));
                }
            }
        });
        self.child = Some(child);
        let addr = rx
            .recv_timeout(START_TIMEOUT)
            .unwrap_or_else(|_| panic!("server did not start:\n{}", self.log()));
        self.addr = Some(addr);
    }

    /// The address the running server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("server started")
    }

    /// The server's stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("server-stderr.log")).unwrap_or_default()
    }

    /// The audit log (complete once the server has stopped).
    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.root().join("var/log/audit.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a graceful exit, which must succeed.
    /// Sends SIGTERM without waiting for the server to exit ([`TestServer::stop`] waits).
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            signal(child, rustix::process::Signal::TERM);
        }
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, rustix::process::Signal::TERM);
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            status
        });
        if rx.recv_timeout(START_TIMEOUT).is_err() {
            panic!("server did not stop after SIGTERM:\n{}", self.log());
        }
        let status = waiter.join().expect("waiter").expect("wait");
        assert!(status.success(), "server exited with {status}:\n{}", self.log());
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, rustix::process::Signal::KILL);
            let _ = child.wait();
        }
    }

    /// Sends SIGHUP, which makes the server reopen its log files.
    pub fn hangup(&self) {
        if let Some(child) = &self.child {
            signal(child, rustix::process::Signal::HUP);
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Runs `wharfd --root ROOT ARGS...` (a way of serving) until it prints a line `last` accepts (or
/// ends its output), stops it, and returns the lines it printed: for what `serve` announces.
pub fn serve_and_read(root: &Path, args: &[&str], last: impl Fn(&str) -> bool) -> Vec<String> {
    let mut child = Command::new(binary("wharfd"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wharfd serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let done = last(&line);
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = i32::try_from(child.id()).ok().and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // A child that has exited already is not an error here.
        let _ = rustix::process::kill_process(pid, signal);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `text` to a child's standard input. A program that fails before it reads its input (a
/// duplicate user, a password piped without `--password-stdin`, a usage error) may be gone before
/// the write: the broken pipe is its answer, which the test then checks, not a failure of the test.
pub fn feed(input: &mut impl Write, text: &str) {
    if let Err(err) = input.write_all(text.as_bytes()) {
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {err}");
    }
}
