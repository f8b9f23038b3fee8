//! One module per control-stream command. Each parses its paths, acts through the user's [`Home`],
//! and returns its final [`Reply`]; [`dispatch`] turns errors into error replies.
//!
//! `login` is not here: it is only valid before a session exists and lives in `conn/login.rs`.

mod chmod;
mod copy;
mod get;
pub mod lanes;
mod list;
mod mkdir;
mod partials;
mod put;
mod quota;
mod remove;
mod rename;
mod rmdir;
mod stat;
mod tree;

use std::sync::Arc;

use tokio::sync::mpsc;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Command, ErrorCode, Reply, Response};

use crate::context::ServerContext;
use crate::quota::UserLedger;
use crate::storage::{Home, StorageError, StorageResult};
use lanes::UploadLanes;

/// A logged-in user's view of the server.
pub struct Session {
    pub user: String,
    /// What this session logged in with: once the account no longer grants it (password changed,
    /// key removed), the session ends.
    pub credential: crate::auth::Credential,
    pub home: Arc<dyn Home>,
    /// The user's quota ledger; whatever changes the space used waits for it to be measured.
    pub ledger: UserLedger,
    pub ctx: Arc<ServerContext>,
    /// The connection, for accepting upload lanes and closing.
    pub conn: quinn::Connection,
    /// The same connection as the sending end of download lanes, in the order they go out in.
    pub outgoing: wharf_common::transfer::OutgoingLanes,
    /// Transfer ids and incoming upload lanes of this connection.
    pub transfers: Arc<UploadLanes>,
}

impl Session {
    /// The claim key of this user's partial upload `key`.
    pub fn upload_key(&self, key: &str) -> crate::context::UploadKey {
        (self.user.clone(), key.to_owned())
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("user", &self.user).finish_non_exhaustive()
    }
}

/// What the connection's reply writer is handed: a response, or a request to say when everything
/// before it has been handed to the control stream.
#[derive(Debug)]
pub enum Outgoing {
    Response(Response),
    Flushed(tokio::sync::oneshot::Sender<()>),
}

impl From<Response> for Outgoing {
    fn from(response: Response) -> Outgoing {
        Outgoing::Response(response)
    }
}

/// Sends the non-final replies of one request (listing pages).
#[derive(Debug)]
pub struct Progress<'a> {
    pub id: u32,
    pub replies: &'a mpsc::Sender<Outgoing>,
}

impl Progress<'_> {
    /// Sends one intermediate reply; false if the connection is gone.
    pub async fn send(&self, reply: Reply) -> bool {
        self.replies.send(Response { id: self.id, reply }.into()).await.is_ok()
    }

    /// Sends one intermediate reply and waits until it is on the control stream, ahead of anything
    /// sent after; false if the connection is gone.
    ///
    /// A download's lanes start only then. Otherwise their bytes could use up the connection's
    /// receive window at a client still waiting for the `transfer` reply that tells it to read
    /// them: a deadlock, seen in 2 of 30 runs of eight parallel 128 MiB downloads on loopback.
    pub async fn send_flushed(&self, reply: Reply) -> bool {
        let (flushed, written) = tokio::sync::oneshot::channel();
        self.send(reply).await
            && self.replies.send(Outgoing::Flushed(flushed)).await.is_ok()
            && written.await.is_ok()
    }
}

/// Forwards pages as the storage layer produces them, each as a non-final reply made by `reply`,
/// holding one back so that the last can carry `done`. Memory stays bounded by a couple of pages.
pub async fn forward_pages<T>(
    mut pages: tokio::sync::mpsc::Receiver<Result<Vec<T>, StorageError>>,
    progress: &Progress<'_>,
    reply: impl Fn(Vec<T>, bool) -> Reply,
) -> CmdResult {
    let mut previous = None;
    while let Some(page) = pages.recv().await {
        if let Some(entries) = previous.replace(page?)
            && !progress.send(reply(entries, false)).await
        {
            break;
        }
    }
    Ok(reply(previous.unwrap_or_default(), true))
}

/// What a command returns: its final reply, or the error to send instead.
pub type CmdResult = Result<Reply, StorageError>;

/// Parses a wire path into a [`RemotePath`], refusing malformed ones with `invalid_path`.
pub fn parse_path(raw: &str) -> Result<RemotePath, StorageError> {
    RemotePath::parse(raw)
        .map_err(|err| StorageError::new(ErrorCode::InvalidPath, format!("{raw:?}: {err}")))
}

/// Runs one command and returns its final reply. Commands that read or change files are written to
/// the audit log with their outcome, so that an operator can answer "who changed this file".
pub async fn dispatch(session: &Session, cmd: Command, progress: &Progress<'_>) -> Reply {
    let audit = Audited::of(&cmd);
    let direction = match &cmd {
        Command::Put { .. } => Some(crate::metrics::Direction::Upload),
        Command::Get { .. } => Some(crate::metrics::Direction::Download),
        _ => None,
    };
    let reply = run(session, cmd, progress).await;
    if let Some(audit) = audit {
        audit.log(&session.user, &reply);
    }
    count(direction, &reply);
    reply
}

/// Counts the reply in the node's metrics.
fn count(direction: Option<crate::metrics::Direction>, reply: &Reply) {
    let metrics = crate::metrics::global();
    if let Reply::Error(err) = reply {
        metrics.error(err.code);
    }
    if let Some(direction) = direction {
        let moved = match reply {
            Reply::Done { size, .. } => Some(*size),
            _ => None,
        };
        metrics.transfer(direction, moved);
    }
}

/// Audits the folders an upload made on its way (`put` with `parents`), as the `mkdir` of `dir`
/// it stands for, `via` the upload.
pub(super) fn audit_made_parents(session: &Session, dir: &RemotePath, made: &StorageResult<()>) {
    let reply = match made {
        Ok(()) => Reply::Ok,
        Err(err) => Reply::error(err.code, err.message.clone()),
    };
    let audited = Audited { op: "mkdir", path: dir.to_string(), to: None, via: Some("upload") };
    audited.log(&session.user, &reply);
}

/// What the audit log says of one command.
struct Audited {
    op: &'static str,
    path: String,
    to: Option<String>,
    /// The command that did this on its way, when it was not asked for by itself.
    via: Option<&'static str>,
}

impl Audited {
    fn of(cmd: &Command) -> Option<Audited> {
        let (op, path, to) = match cmd {
            Command::Put { path, .. } => ("upload", path.clone(), None),
            Command::Get { path, .. } => ("download", path.clone(), None),
            Command::Remove { path, .. } => ("delete", path.clone(), None),
            Command::Rmdir { path } => ("rmdir", path.clone(), None),
            Command::Mkdir { path, .. } => ("mkdir", path.clone(), None),
            Command::Rename { from, to } => ("rename", from.clone(), Some(to.clone())),
            Command::Copy { from, to } => ("copy", from.clone(), Some(to.clone())),
            Command::Chmod { path, .. } => ("chmod", path.clone(), None),
            Command::DropPartials { path } => {
                ("drop_partials", path.clone().unwrap_or_default(), None)
            }
            _ => return None,
        };
        Some(Audited { op, path, to, via: None })
    }

    fn log(&self, user: &str, reply: &Reply) {
        let (result, size) = match reply {
            Reply::Error(err) => (err.code.as_str(), None),
            Reply::Done { size, .. } => ("ok", Some(*size)),
            _ => ("ok", None),
        };
        // `?` quotes and escapes names, so a hostile path cannot forge audit lines.
        tracing::info!(
            target: "audit",
            user = ?user,
            op = self.op,
            path = ?self.path,
            to = self.to.as_ref().map(tracing::field::debug),
            via = self.via,
            size,
            result,
            "file"
        );
    }
}

async fn run(session: &Session, cmd: Command, progress: &Progress<'_>) -> Reply {
    let result = match cmd {
        Command::Login { .. } | Command::LoginKey { .. } => {
            return Reply::error(
                ErrorCode::AlreadyLoggedIn,
                format!("already logged in as {}", session.user),
            );
        }
        // Handled where requests are started, since it acts on other requests' tasks.
        Command::Cancel { .. } => return Reply::Ok,
        Command::Stat { path } => stat::run(session, &path).await,
        Command::List { path } => list::run(session, &path, progress).await,
        Command::Mkdir { path, parents } => mkdir::run(session, &path, parents).await,
        Command::Rmdir { path } => rmdir::run(session, &path).await,
        Command::Remove { path, recursive } => remove::run(session, &path, recursive).await,
        Command::Rename { from, to } => rename::run(session, &from, &to).await,
        Command::Copy { from, to } => copy::run(session, &from, &to).await,
        Command::Quota => quota::run(session).await,
        Command::Put { path, size, source, resume, mtime, eager, parents } => {
            let source = &source;
            let upload = put::Upload { path: &path, size, source, resume, mtime, eager, parents };
            put::run(session, &upload, progress).await
        }
        Command::Chmod { path, mode } => chmod::run(session, &path, mode).await,
        Command::Partials => partials::list(session).await,
        Command::Tree { path } => tree::run(session, &path, progress).await,
        Command::Digest { path } => tree::digest(session, &path).await,
        Command::DropPartials { path } => partials::drop(session, path.as_deref()).await,
        Command::Get { path, have, version } => {
            get::run(session, &path, &have, version, progress).await
        }
    };
    result.unwrap_or_else(|err| Reply::error(err.code, err.message))
}
