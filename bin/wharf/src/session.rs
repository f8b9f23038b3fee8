//! [`Session`]: a logged-in connection to a wharf server, the API the shell, batch mode and tests use.
//!
//! The session keeps the remote working directory on the client: every request carries an absolute
//! path, which is what lets requests run concurrently and be pipelined without ordering hazards.
//! Reaching and trusting the server is [`crate::link`]'s work; logging in and reconnecting are here.

use std::path::PathBuf;
use std::sync::Arc;
use wharf_common::net::CloseCodeExt as _;

use parking_lot::Mutex;
use std::time::Duration;

use wharf_common::claims::ClaimSet;
use wharf_common::path::{self, RemotePath};
use wharf_common::proto::{
    CloseCode, Command, Entry, EntryKind, ErrorCode, PartialUpload, QuotaInfo, Reply, TreeEntry,
};

use crate::error::{ClientError, Result};
pub use crate::link::{AskUser, ConnectOptions, Trust, UnknownHost};
use crate::link::{Link, connect_link};

mod login;
pub use login::Secret;
use login::login_on;
use wharf_common::limits::MIN_REQUESTS_IN_FLIGHT;

/// A logged-in session with a wharf server.
#[derive(Debug)]
pub struct Session {
    link: Mutex<Arc<Link>>,
    /// Held while a new link is made, so that transfers that lost the same link reconnect once.
    relinking: tokio::sync::Mutex<()>,
    options: ConnectOptions,
    /// Kept for reconnecting, like lftp does; it never leaves this process except to log in again.
    secret: Mutex<Option<Secret>>,
    /// Local partial downloads being written, so two downloads never share one.
    downloads: Arc<ClaimSet<PathBuf>>,
    host: String,
    user: Mutex<Option<String>>,
    cwd: Mutex<RemotePath>,
    /// The working directory before the last `cd`, where `cd -` goes back to.
    previous_cwd: Mutex<Option<RemotePath>>,
    /// The server's limit on requests in flight, from its login reply; `None` while a login that
    /// other requests followed at once waits for its reply ([`Session::login_then`]).
    requests_in_flight: tokio::sync::watch::Sender<Option<usize>>,
    /// The transfers running in the background (`put ... &`).
    jobs: crate::jobs::Jobs,
}

impl Session {
    /// Connects and checks the server's certificate. Nothing secret has been sent when this returns.
    pub async fn connect(options: &ConnectOptions) -> Result<Session> {
        let link = match connect_link(options, 0).await {
            // The server gave up on the login while a person was checking its host key, which is
            // pinned by now: connect again.
            Err(ClientError::ConnectionLost(_))
                if matches!(options.trust, Trust::Pinned { .. }) =>
            {
                connect_link(options, 0).await?
            }
            other => other?,
        };
        Ok(Session {
            link: Mutex::new(Arc::new(link)),
            relinking: tokio::sync::Mutex::new(()),
            options: options.clone(),
            secret: Mutex::new(None),
            downloads: Arc::default(),
            host: options.target.host.clone(),
            user: Mutex::new(None),
            cwd: Mutex::new(RemotePath::root()),
            previous_cwd: Mutex::new(None),
            requests_in_flight: tokio::sync::watch::Sender::new(Some(MIN_REQUESTS_IN_FLIGHT)),
            jobs: crate::jobs::Jobs::default(),
        })
    }

    /// The transfers running in the background.
    pub fn jobs(&self) -> &crate::jobs::Jobs {
        &self.jobs
    }

    /// The current link.
    pub(crate) fn link(&self) -> Arc<Link> {
        lock(&self.link).clone()
    }

    /// The current link's generation: 0 for the first connection, one more for each reconnection.
    pub fn generation(&self) -> u64 {
        self.link().generation
    }

    /// Whether link `generation` is gone: closed, or already replaced.
    pub fn lost(&self, generation: u64) -> bool {
        let link = self.link();
        link.generation != generation || link.conn.close_reason().is_some() || link.rpc.ended()
    }

    /// Connects again, not logged in, if the current link has closed: the server ends connections
    /// that do not log in within its login timeout, and a person checking a host key and typing a
    /// password may take longer than that. Returns whether it reconnected.
    pub async fn relink_if_closed(&self) -> Result<bool> {
        let _relinking = self.relinking.lock().await;
        let old = self.link();
        if old.conn.close_reason().is_none() && !old.rpc.ended() {
            return Ok(false);
        }
        let link = connect_link(&self.options, old.generation + 1).await?;
        *lock(&self.link) = Arc::new(link);
        Ok(true)
    }

    /// Replaces link `generation`, which was lost, with a new connection logged in as before. If
    /// another task has already replaced it, does nothing. The server's certificate is checked as
    /// at first (a pinned host is never asked about again).
    pub async fn reconnect(&self, generation: u64) -> Result<()> {
        let _relinking = self.relinking.lock().await;
        if self.link().generation != generation {
            return Ok(());
        }
        let user = lock(&self.user).clone();
        let secret = lock(&self.secret).clone();
        let (Some(user), Some(secret)) = (user, secret) else {
            return Err(ClientError::Usage("not logged in".into()));
        };
        let link = connect_link(&self.options, generation + 1).await?;
        if let Err(err) = login_on(&link, &user, &secret).await {
            link.conn.close(CloseCode::Normal.varint(), b"login failed");
            return Err(err);
        }
        let old = std::mem::replace(&mut *lock(&self.link), Arc::new(link));
        old.conn.close(CloseCode::Normal.varint(), b"replaced");
        Ok(())
    }
}

/// How long [`Session::close`] waits, at most, for its close to leave.
const CLOSE_SEND_AT_MOST: Duration = Duration::from_millis(250);

impl Session {
    /// The connection's current round-trip estimate.
    pub fn rtt(&self) -> Duration {
        self.link().conn.rtt()
    }

    /// The connection's transport statistics as quinn counts them: datagrams and bytes each way,
    /// losses, and the path's current datagram size.
    pub fn transport_stats(&self) -> quinn::ConnectionStats {
        self.link().conn.stats()
    }

    /// How many requests this connection may have in flight at once, as the server said at login
    /// (before a login's reply, the minimum every server allows; see [`Session::login_answered`]).
    pub fn requests_in_flight(&self) -> usize {
        self.requests_in_flight.borrow().unwrap_or(MIN_REQUESTS_IN_FLIGHT)
    }

    /// Connects, checks the server and logs in.
    pub async fn open(options: &ConnectOptions, user: &str, password: &str) -> Result<Session> {
        let session = Session::connect(options).await?;
        session.login(user, password).await?;
        Ok(session)
    }

    /// The logged-in user name (empty before login).
    pub fn user(&self) -> String {
        lock(&self.user).clone().unwrap_or_default()
    }

    /// The host as given on the command line.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The remote working directory.
    pub fn cwd(&self) -> RemotePath {
        lock(&self.cwd).clone()
    }

    /// Resolves `raw` against the working directory. A leading `~` (alone, or before a `/`) is the
    /// home, `/`, as a shell reads it (`./~` names a file called `~`).
    pub fn resolve(&self, raw: &str) -> Result<RemotePath> {
        let raw = match crate::local::below_home(raw) {
            Some(rest) => std::borrow::Cow::Owned(format!("/{rest}")),
            None => std::borrow::Cow::Borrowed(raw),
        };
        let raw = raw.as_ref();
        self.cwd().join(raw).map_err(|err| ClientError::Remote {
            code: ErrorCode::InvalidPath,
            message: format!("{raw:?}: {err}"),
        })
    }

    /// Changes the working directory to `raw`, which must be a directory; `-` is the one before
    /// the last change, as in a Unix shell (`./-` names a directory called `-`).
    pub async fn cd(&self, raw: &str) -> Result<RemotePath> {
        let path = match raw {
            "-" => lock(&self.previous_cwd)
                .clone()
                .ok_or_else(|| ClientError::Usage("cd -: no previous directory".into()))?,
            raw => self.resolve(raw)?,
        };
        let entry = self.stat(&path).await?;
        if entry.kind != EntryKind::Dir {
            return Err(ClientError::Remote {
                code: ErrorCode::NotADirectory,
                message: format!("{path}: not a directory"),
            });
        }
        let left = std::mem::replace(&mut *lock(&self.cwd), path.clone());
        *lock(&self.previous_cwd) = Some(left);
        Ok(path)
    }

    pub async fn stat(&self, path: &RemotePath) -> Result<Entry> {
        match self.link().rpc.call(Command::Stat { path: path.to_string() }).await? {
            Reply::Stat { entry } => Ok(entry),
            other => Err(unexpected(&other)),
        }
    }

    /// All entries of a directory, in the server's order.
    /// Every name is checked ([`path::is_entry_name`]): callers join them to local folders.
    pub async fn list(&self, path: &RemotePath) -> Result<Vec<Entry>> {
        let entries = self
            .all_pages(Command::List { path: path.to_string() }, |reply| match reply {
                Reply::Entries { entries, done } => Ok((entries, done)),
                other => Err(other),
            })
            .await?;
        match entries.iter().find(|entry| !path::is_entry_name(&entry.name)) {
            Some(bad) => Err(not_an_entry(path, &bad.name)),
            None => Ok(entries),
        }
    }

    /// Sends `cmd` and gathers the pages of its answer, which `page` takes apart into entries and
    /// whether it was the last.
    async fn all_pages<T>(
        &self,
        cmd: Command,
        page: impl Fn(Reply) -> std::result::Result<(Vec<T>, bool), Reply>,
    ) -> Result<Vec<T>> {
        let link = self.link();
        let mut replies = link.rpc.request(cmd).await?;
        let mut all = Vec::new();
        loop {
            let (entries, done) = page(link.rpc.next_reply(&mut replies).await?)
                .map_err(|other| unexpected(&other))?;
            all.extend(entries);
            if done {
                return Ok(all);
            }
        }
    }

    /// Everything below the directory `path`, recursively (symlinks listed, not followed). Every
    /// path is checked to be relative and to stay below ([`path::is_relative_entry_path`]).
    pub async fn tree(&self, path: &RemotePath) -> Result<Vec<TreeEntry>> {
        let entries = self
            .all_pages(Command::Tree { path: path.to_string() }, |reply| match reply {
                Reply::TreeEntries { entries, done } => Ok((entries, done)),
                other => Err(other),
            })
            .await?;
        match entries.iter().find(|entry| !path::is_relative_entry_path(&entry.path)) {
            Some(bad) => Err(not_an_entry(path, &bad.path)),
            None => Ok(entries),
        }
    }

    /// The SHA-256 (hex) of the remote file `path` as it is now, and its version.
    pub async fn digest(&self, path: &RemotePath) -> Result<(String, String)> {
        match self.link().rpc.call(Command::Digest { path: path.to_string() }).await? {
            Reply::Digest { sha256, version } => Ok((sha256, version)),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn mkdir(&self, path: &RemotePath, parents: bool) -> Result<()> {
        self.expect_ok(Command::Mkdir { path: path.to_string(), parents }).await
    }

    pub async fn rmdir(&self, path: &RemotePath) -> Result<()> {
        self.expect_ok(Command::Rmdir { path: path.to_string() }).await
    }

    pub async fn remove(&self, path: &RemotePath, recursive: bool) -> Result<()> {
        self.expect_ok(Command::Remove { path: path.to_string(), recursive }).await
    }

    pub async fn rename(&self, from: &RemotePath, to: &RemotePath) -> Result<()> {
        self.expect_ok(Command::Rename { from: from.to_string(), to: to.to_string() }).await
    }

    /// Copies the file `from` to `to` on the server (the bytes never cross the network); returns
    /// the copy's size and SHA-256 (hex).
    pub async fn copy(&self, from: &RemotePath, to: &RemotePath) -> Result<(u64, String)> {
        let cmd = Command::Copy { from: from.to_string(), to: to.to_string() };
        match self.link().rpc.call(cmd).await? {
            Reply::Done { size, sha256, .. } => Ok((size, sha256)),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets the permission bits of `path`.
    pub async fn chmod(&self, path: &RemotePath, mode: u32) -> Result<()> {
        self.expect_ok(Command::Chmod { path: path.to_string(), mode }).await
    }

    /// The user's partial uploads.
    pub async fn partials(&self) -> Result<Vec<PartialUpload>> {
        match self.link().rpc.call(Command::Partials).await? {
            Reply::Partials { partials } => Ok(partials),
            other => Err(unexpected(&other)),
        }
    }

    /// Drops the partial upload for `path`, or all that are not running; returns (count, bytes).
    pub async fn drop_partials(&self, path: Option<&RemotePath>) -> Result<(u64, u64)> {
        let path = path.map(RemotePath::to_string);
        match self.link().rpc.call(Command::DropPartials { path }).await? {
            Reply::Dropped { count, bytes } => Ok((count, bytes)),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn quota(&self) -> Result<QuotaInfo> {
        match self.link().rpc.call(Command::Quota).await? {
            Reply::Quota { quota } => Ok(quota),
            other => Err(unexpected(&other)),
        }
    }

    pub(crate) fn downloads(&self) -> &Arc<ClaimSet<PathBuf>> {
        &self.downloads
    }

    /// Sends any command and returns its final reply, unchecked. For protocol tests and tools that
    /// need to send what the typed methods would refuse to.
    pub async fn call_raw(&self, cmd: Command) -> Result<Reply> {
        self.link().rpc.call(cmd).await
    }

    /// Moves the connection to a new local UDP socket, as a change of network would; QUIC connection
    /// migration carries on every stream in flight.
    pub fn rebind(&self, socket: std::net::UdpSocket) -> std::io::Result<()> {
        let socket = wharf_common::datagram::limited_socket(socket)?;
        self.link().endpoint.rebind_abstract(socket)
    }

    /// Completes when the connection closes, with the reason as an error.
    pub async fn closed(&self) -> ClientError {
        crate::rpc::closed_error(&self.link().conn.closed().await)
    }

    async fn expect_ok(&self, cmd: Command) -> Result<()> {
        match self.link().rpc.call(cmd).await? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Closes the connection politely: returns once the close has left.
    ///
    /// The close is one packet, which the connection's driver task builds and sends. Waiting out
    /// the draining period (three probe timeouts: ~0.3 s across a 50 ms path), or a round trip,
    /// would only delay the exit: nothing the server sends now changes anything, and a close lost
    /// on the way costs the server no more than its idle timeout. (The driver counts a datagram and
    /// sends it under the connection's lock, which `stats` takes too.)
    pub async fn close(self) {
        let link = self.link();
        let sent_before = link.conn.stats().udp_tx.datagrams;
        link.conn.close(CloseCode::Normal.varint(), b"bye");
        let deadline = tokio::time::Instant::now() + CLOSE_SEND_AT_MOST;
        while link.conn.stats().udp_tx.datagrams == sent_before
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // An acknowledgement the driver sent in the instant between the count and the close would
        // have ended the wait before the close left: one more turn of the driver covers that.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    mutex.lock()
}

/// A listing that names something other than an entry of the listed directory: from a broken or
/// hostile server, and refused whole before any of it names a local file.
fn not_an_entry(dir: &RemotePath, name: &str) -> ClientError {
    ClientError::Protocol(format!(
        "listing {dir}: the server sent the entry name {name:?}; refused"
    ))
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}
