//! Messages of the control stream.
//!
//! The client sends [`Request`]s; the server answers each with one or more [`Response`]s carrying the
//! same id. Every request ends with exactly one *final* reply ([`Reply::is_final`]); a listing may send
//! non-final `entries` pages before it. Requests run concurrently on the server, so replies to different
//! ids may arrive in any order. All structs travel as MessagePack maps with the field names shown here
//! (`rmp_serde::to_vec_named`); enums are tagged by a string field (`op`, `type`, `code`, `kind`).

use serde::{Deserialize, Serialize};

use crate::ranges::Ranges;

/// One client request: an id the client picks, and the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, unique among its requests still in flight, never 0.
    pub id: u32,
    /// What to do.
    pub cmd: Command,
}

/// The commands a client can send. Paths are UTF-8, `/` being the user's home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Authenticate. Must be the first request on a connection.
    Login { user: String, password: String },
    /// Authenticate with a key: `key` is the Ed25519 public key and `signature` its signature of the
    /// login message, both in base64 (see [`crate::keys`]). Otherwise like `login`.
    LoginKey { user: String, key: String, signature: String },
    /// Metadata of one path; symlinks inside the home are followed.
    Stat { path: String },
    /// The entries of a directory, in pages.
    List { path: String },
    /// Create a directory; with `parents`, create missing ancestors and accept an existing directory.
    Mkdir { path: String, parents: bool },
    /// Remove an empty directory.
    Rmdir { path: String },
    /// Remove a file or symlink; with `recursive`, also a directory and everything below it.
    Remove { path: String, recursive: bool },
    /// Rename `from` to `to`; an existing file at `to` is replaced, an existing directory is not.
    Rename { from: String, to: String },
    /// Copy the file `from` to `to` on the server, as an upload of its bytes would (the quota
    /// reserved first, the copy verified and made durable before it appears under `to`, which it
    /// replaces if it is a file). Answered `done`, with the copy's digest and version.
    Copy { from: String, to: String },
    /// The user's quota: bytes used, reserved and allowed.
    Quota,
    /// Upload a file of `size` bytes to `path`. `source` identifies the local file's version (any
    /// string that changes when the file does); with `resume`, a partial upload of the same path,
    /// size and source continues where it stopped. The server answers `transfer`, the client sends
    /// the bytes on a unidirectional stream, and the final reply is `done` once the server has
    /// verified the whole file and renamed it into place.
    /// `mtime`, if given, is the modification time (seconds since the epoch) the stored file gets.
    Put {
        path: String,
        size: u64,
        source: String,
        resume: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtime: Option<i64>,
        /// Set for an eager upload: the client sends the whole file at once on one lane whose
        /// header carries this number. Numbers increase on each connection; `size` is at most
        /// `MAX_EAGER_SIZE`, and nothing is resumed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eager: Option<u64>,
        /// Make the missing folders above `path` first, as `mkdir` with `parents` does. `put -r`
        /// and `mirror -R` send it instead of making the folders a round trip before.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        parents: bool,
    },
    /// Abandon the request `request` (an upload or download the user interrupted): the server stops
    /// it, frees what it held, and answers it with `cancelled`. Answered `ok` at once, also when that
    /// request has already finished.
    Cancel { request: u32 },
    /// Download `path`. `have` lists the byte ranges a partial download already holds; if
    /// `version` equals the file's current version the server sends only the rest (a resume),
    /// otherwise the whole file. The server answers `transfer`, sends the bytes on unidirectional
    /// streams it opens, and the final reply is `done`.
    Get { path: String, have: Ranges, version: Option<String> },
    /// Every file, directory and symlink below the directory `path`, recursively, never following
    /// symlinks, in pages of `tree_entries`: what a mirror compares.
    Tree { path: String },
    /// The SHA-256 of the file `path` as it is now, and its version.
    Digest { path: String },
    /// Set the permission bits (`0o000`..=`0o777`) of `path`.
    Chmod { path: String, mode: u32 },
    /// The user's partial uploads: what interrupted uploads keep (and count against the quota).
    Partials,
    /// Delete partial uploads: the one for `path`, or with no `path` all that no upload is writing
    /// right now. Answered `dropped`.
    DropPartials {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
}

/// One entry of a `tree` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// The path relative to the listed directory, `/`-separated, never empty.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: i64,
    /// Changes whenever the entry's content may have changed (size, modification and change times,
    /// inode): equal versions mean an unchanged file, without reading it.
    pub version: String,
}

/// A file's content version as `tree` reports it (and as the client keeps it for its own files):
/// size, modification time, change time (which any write moves, even one that puts the
/// modification time back) and inode.
pub fn content_version(len: u64, mtime: (i64, i64), ctime: (i64, i64), ino: u64) -> String {
    format!("{len}-{}.{:09}-{}.{:09}-{ino}", mtime.0, mtime.1, ctime.0, ctime.1)
}

/// One partial upload, as `partials` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialUpload {
    /// The path the upload was going to; absent for small files, whose partials record none.
    pub path: Option<String>,
    /// The whole file's size, when known.
    pub size: Option<u64>,
    /// Bytes the partial holds on disk (what the quota counts).
    pub held: u64,
    /// Last written, seconds since the epoch.
    pub modified: i64,
}

/// One server message: the id of the request it answers (0 for a notice) and the reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: u32,
    pub reply: Reply,
}

/// What the server says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// The request succeeded and has nothing to return.
    Ok,
    /// The request failed.
    Error(ErrorReply),
    /// Login succeeded. `requests_in_flight` is how many requests this connection may have in
    /// flight at once (past it, `busy`): a client pipelining many small transfers stays under it.
    /// Absent (0) from servers before it was added, which allowed 32. `quota` is nil while the
    /// server is still measuring the home (the user's first login since it started): ask `quota`.
    LoggedIn {
        user: String,
        quota: Option<QuotaInfo>,
        #[serde(default)]
        requests_in_flight: u32,
    },
    /// Answer to `stat`.
    Stat { entry: Entry },
    /// One page of a listing; the last page has `done` set (and may be empty).
    Entries { entries: Vec<Entry>, done: bool },
    /// Answer to `quota`.
    Quota { quota: QuotaInfo },
    /// A transfer is ready (non-final): `lanes` streams carry transfer id `transfer`, and between
    /// them exactly the byte `ranges` of a file of `size` bytes whose version is `version`.
    Transfer { transfer: u64, size: u64, version: String, ranges: Ranges, lanes: u32 },
    /// A transfer finished: `size` bytes with the SHA-256 `sha256` (64 hex digits). An upload's
    /// also says the version of the file it installed (absent from servers before it was added),
    /// which a mirror remembers instead of listing the tree again.
    Done {
        size: u64,
        sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// Sent unprompted with id 0, e.g. before a shutdown; needs no answer.
    Notice { message: String },
    /// One page of a `tree` listing; the last page has `done` set (and may be empty).
    TreeEntries { entries: Vec<TreeEntry>, done: bool },
    /// Answer to `digest`.
    Digest { sha256: String, version: String },
    /// Answer to `partials`.
    Partials { partials: Vec<PartialUpload> },
    /// Answer to `drop_partials`: how many partials were deleted and the bytes given back.
    Dropped { count: u64, bytes: u64 },
}

impl Reply {
    /// True if no further reply will follow for this request id.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Reply::Entries { done: false, .. }
                | Reply::TreeEntries { done: false, .. }
                | Reply::Notice { .. }
                | Reply::Transfer { .. }
        )
    }

    /// Shorthand for an error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error(ErrorReply { code, message: message.into() })
    }
}

/// A failed request: a machine-readable code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

/// Typed error codes. They travel as snake_case strings; a client must treat an unknown code as
/// [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The path or one of its parents does not exist.
    NotFound,
    /// The operation is not allowed, including any attempt to leave the home.
    PermissionDenied,
    /// The target already exists.
    Exists,
    /// A directory was needed but something else is there.
    NotADirectory,
    /// A file was needed but a directory is there.
    IsADirectory,
    /// The directory is not empty.
    NotEmpty,
    /// The path is malformed: NUL, backslash, too long, or the home itself where that makes no sense.
    InvalidPath,
    /// The operation would take the user past their quota.
    QuotaExceeded,
    /// Wrong user name or password. Deliberately does not say which.
    AuthFailed,
    /// Too many failed logins from this address; try again later.
    TooManyAttempts,
    /// A command other than `login` arrived before a successful login.
    NotLoggedIn,
    /// `login` arrived on a connection that is already logged in.
    AlreadyLoggedIn,
    /// The request is well-formed MessagePack but not a valid request (bad id, bad fields).
    BadRequest,
    /// The request id is already in use by a request still in flight.
    DuplicateId,
    /// The server is at a limit (requests in flight, connections); retry later.
    Busy,
    /// The server is shutting down.
    ShuttingDown,
    /// The filesystem reported an error not covered above.
    Io,
    /// The received file's SHA-256 differs from the sender's; nothing was installed.
    ChecksumMismatch,
    /// The transfer stream broke: reset, truncated, overrun, or it never came.
    TransferFailed,
    /// The client cancelled the request.
    Cancelled,
    /// A code this client does not know.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The code's wire name, e.g. `not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Exists => "exists",
            ErrorCode::NotADirectory => "not_a_directory",
            ErrorCode::IsADirectory => "is_a_directory",
            ErrorCode::NotEmpty => "not_empty",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::AlreadyLoggedIn => "already_logged_in",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::DuplicateId => "duplicate_id",
            ErrorCode::Busy => "busy",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Io => "io",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::TransferFailed => "transfer_failed",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata of one directory entry or stat result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The final path component (for `stat` of the root: `/`).
    pub name: String,
    pub kind: EntryKind,
    /// Size in bytes (for a symlink: the length of its target).
    pub size: u64,
    /// Unix permission bits, e.g. `0o644`.
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
}

/// What an entry is. Listings do not follow symlinks, so a symlink shows as itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Sockets, FIFOs, devices.
    #[serde(other)]
    Other,
}

impl EntryKind {
    /// Classifies a file from its type bits, as both the server's storage and the client's local side
    /// see them (symlinks not followed).
    pub fn classify(is_symlink: bool, is_dir: bool, is_file: bool) -> EntryKind {
        match (is_symlink, is_dir, is_file) {
            (true, _, _) => EntryKind::Symlink,
            (_, true, _) => EntryKind::Dir,
            (_, _, true) => EntryKind::File,
            _ => EntryKind::Other,
        }
    }
}

/// Seconds since the Unix epoch for an entry's `mtime`; 0 when unknown or before 1970.
pub fn unix_seconds(time: Option<std::time::SystemTime>) -> i64 {
    time.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A user's space: `used` bytes stored, `reserved` bytes promised to uploads in progress, and the
/// `limit` (absent when unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaInfo {
    pub used: u64,
    pub reserved: u64,
    pub limit: Option<u64>,
}

/// QUIC application close codes the server (and client) use when closing a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// Normal close: the peer said goodbye.
    Normal = 0,
    /// The peer broke the protocol: bad frame, bad stream, bad message. The reason says which.
    ProtocolError = 1,
    /// Too many failed logins on this connection.
    TooManyFailures = 2,
    /// No successful login within the allowed time.
    LoginTimeout = 3,
    /// The server is shutting down.
    ShuttingDown = 4,
    /// The server refused the connection: too many connections in total or from this address.
    TooManyConnections = 5,
    /// The logged-in session sent nothing for too long.
    Idle = 6,
    /// The session's account was deleted, or its password changed: log in again.
    AccountChanged = 7,
}

impl CloseCode {
    /// Maps a received close code back, if it is one of ours.
    pub fn from_u64(code: u64) -> Option<CloseCode> {
        [
            CloseCode::Normal,
            CloseCode::ProtocolError,
            CloseCode::TooManyFailures,
            CloseCode::LoginTimeout,
            CloseCode::ShuttingDown,
            CloseCode::TooManyConnections,
            CloseCode::Idle,
            CloseCode::AccountChanged,
        ]
        .into_iter()
        .find(|c| *c as u64 == code)
    }
}
