//! A real `wharfd` process with a temporary root.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::binary;
use crate::engines::{Engines, on_own_runtime};

/// How long a server gets to start or stop before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable that chooses the storage backend of every [`TestServer::new`]:
/// `local` (the default) or `s3`, which gives each server a Garage and a PostgreSQL of its own.
pub const BACKEND_VARIABLE: &str = "WHARF_TEST_BACKEND";

/// A change a test makes to a home on the s3 backend, through a session.
enum Change<'a> {
    /// Upload this local file there, making the parent directories.
    Put(&'a Path),
    MakeDir,
    Remove,
}

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
    engines: Option<Engines>,
    /// Each added user's password, for [`TestServer::place`] to log in with on the s3 backend.
    passwords: HashMap<String, String>,
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
            input.write_all(text.as_bytes()).expect("write stdin");
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

    /// The content of `user`'s file at `path` (relative to the home) as the server stored it,
    /// looked at behind the server's back; `None` if there is none.
    pub fn stored(&self, user: &str, path: &str) -> Option<Vec<u8>> {
        match &self.engines {
            Some(engines) => engines.stored(user, path),
            None => std::fs::read(self.home(user).join(path)).ok(),
        }
    }

    /// Whether `user` has a file or directory at `path` (relative to the home).
    pub fn exists(&self, user: &str, path: &str) -> bool {
        match &self.engines {
            Some(engines) => engines.exists(user, path),
            None => self.home(user).join(path).exists(),
        }
    }

    /// The bytes `user`'s partial uploads hold on the server.
    pub fn partial_bytes(&self, user: &str) -> u64 {
        match &self.engines {
            Some(engines) => engines.partial_bytes(user),
            None => local_partial_bytes(self.root(), user),
        }
    }

    /// How many partial uploads `user` has on the server (on the local backend: how many files
    /// of them, data and records, so that a stray record counts too).
    pub fn partial_uploads(&self, user: &str) -> usize {
        match &self.engines {
            Some(engines) => engines.partial_uploads(user),
            None => std::fs::read_dir(self.root().join("var/partials").join(user))
                .map_or(0, Iterator::count),
        }
    }

    /// Makes `user`'s partial uploads look `age` old, as if their clients had gone that long ago.
    pub fn age_partials(&self, user: &str, age: Duration) {
        if let Some(engines) = &self.engines {
            return engines.age_partials(user, age);
        }
        let then = std::time::SystemTime::now() - age;
        for entry in
            std::fs::read_dir(self.root().join("var/partials").join(user)).expect("partials")
        {
            let file = std::fs::File::options().write(true).open(entry.expect("entry").path());
            file.expect("open a partial").set_modified(then).expect("age a partial");
        }
    }

    /// Spoils what `user`'s partial uploads hold, as a failing disk would: one byte flipped in
    /// the middle of each partial file (local) or of each first stored piece (s3). Returns how
    /// many it spoiled.
    pub fn corrupt_partials(&self, user: &str) -> usize {
        if let Some(engines) = &self.engines {
            return engines.corrupt_partials(user);
        }
        local_partials(self.root(), user).map(|entry| flip_middle_byte(&entry.path())).count()
    }

    /// How many files (not directories) `user` has beneath the directory `dir`, however deep.
    pub fn files_beneath(&self, user: &str, dir: &str) -> usize {
        match &self.engines {
            Some(engines) => engines.files_beneath(user, dir),
            None => local_files(&self.home(user).join(dir)).count(),
        }
    }

    /// Makes `count` empty files named `{prefix}{i:06}` in `user`'s directory `dir`, which must
    /// exist: a huge directory, made behind the server's back.
    pub fn empty_files(&self, user: &str, dir: &str, prefix: &str, count: usize) {
        if let Some(engines) = &self.engines {
            return engines.empty_files(user, dir, prefix, count);
        }
        let dir = self.home(user).join(dir);
        for i in 0..count {
            std::fs::File::create(dir.join(format!("{prefix}{i:06}"))).expect("create");
        }
    }

    /// Bytes in the files (not the directories) of `user`'s home.
    pub fn stored_bytes(&self, user: &str) -> u64 {
        match &self.engines {
            Some(engines) => engines.stored_bytes(user),
            None => local_files(&self.home(user)).sum(),
        }
    }

    /// Puts a file with `data` at `path` in `user`'s home, making its parent directories: on the
    /// local backend straight onto the disk, on the s3 backend through a session of that user
    /// (the server must be running).
    pub fn place(&self, user: &str, path: &str, data: &[u8]) {
        if self.is_local() {
            let file = self.home(user).join(path);
            std::fs::create_dir_all(file.parent().expect("a parent")).expect("parent directories");
            std::fs::write(file, data).expect("place a file");
            return;
        }
        let staged = tempfile::NamedTempFile::new().expect("staging file");
        std::fs::write(staged.path(), data).expect("stage the file");
        self.as_user(user, path, Change::Put(staged.path()));
    }

    /// Makes the directory `path` (and its parents) in `user`'s home, like [`TestServer::place`].
    pub fn make_dir(&self, user: &str, path: &str) {
        if self.is_local() {
            std::fs::create_dir_all(self.home(user).join(path)).expect("make a directory");
            return;
        }
        self.as_user(user, path, Change::MakeDir);
    }

    /// Removes the file `path` from `user`'s home, like [`TestServer::place`].
    pub fn remove_file(&self, user: &str, path: &str) {
        if self.is_local() {
            std::fs::remove_file(self.home(user).join(path)).expect("remove a file");
            return;
        }
        self.as_user(user, path, Change::Remove);
    }

    /// Makes `change` at `path` through a session of `user`.
    fn as_user(&self, user: &str, path: &str, change: Change<'_>) {
        let password = self.passwords.get(user).expect("a user added by the test");
        let remote = wharf_common::path::RemotePath::parse(&format!("/{path}")).expect("a path");
        let options = crate::client::options(self);
        on_own_runtime(async {
            let session = wharf::session::Session::open(&options, user, password)
                .await
                .expect("log in to change a home");
            match change {
                Change::MakeDir => session.mkdir(&remote, true).await.expect("make a directory"),
                Change::Remove => session.remove(&remote, false).await.expect("remove a file"),
                Change::Put(upload) => {
                    if !remote.parent().is_root() {
                        session.mkdir(&remote.parent(), true).await.expect("parent directories");
                    }
                    session.put(upload, &remote, false, &|_| {}).await.expect("place a file");
                }
            }
            session.close().await;
        });
    }

    /// Starts `wharfd serve --listen 127.0.0.1:0` and waits for its `listening on` line.
    pub fn start(&mut self) {
        self.start_on(SocketAddr::from(([127, 0, 0, 1], 0)));
    }

    /// Starts the server on a given address (to come back on the same port after a restart).
    pub fn start_on(&mut self, listen: SocketAddr) {
        self.launch(Command::new(binary("wharfd")), listen);
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

/// The data files of `user`'s partial uploads under the local backend's `root`.
fn local_partials(root: &Path, user: &str) -> impl Iterator<Item = std::fs::DirEntry> {
    let entries = std::fs::read_dir(root.join("var/partials").join(user)).into_iter().flatten();
    entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
}

/// Bytes of all partial uploads `user` has under the local backend's `root`.
pub fn local_partial_bytes(root: &Path, user: &str) -> u64 {
    local_partials(root, user).map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).sum()
}

/// Flips one byte in the middle of a file, in place: a concurrent append by a writer that is
/// still finishing cannot undo it.
pub fn flip_middle_byte(path: &Path) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::File::options().read(true).write(true).open(path).expect("partial");
    let middle = file.metadata().expect("metadata").len() / 2;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, middle).expect("read");
    file.write_all_at(&[byte[0] ^ 0xff], middle).expect("write");
}

/// The files beneath `dir`, however deep, with their sizes.
fn local_files(dir: &Path) -> Box<dyn Iterator<Item = u64>> {
    let entries = std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok);
    Box::new(entries.flat_map(|entry| match entry.file_type() {
        Ok(kind) if kind.is_dir() => local_files(&entry.path()),
        _ => Box::new(std::iter::once(entry.metadata().map_or(0, |m| m.len()))),
    }))
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
