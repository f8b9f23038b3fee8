//! The storage layer: the only way the server touches users' files.
//!
//! [`Storage`] manages homes; [`Home`] is one user's home, and every path it takes is a
//! [`RemotePath`] resolved *beneath* that home. A backend can only narrow what a user reaches, never
//! widen it. The filesystem backend ([`fs::FsStorage`]) resolves through a cap-std directory handle
//! (openat2 `RESOLVE_BENEATH` on Linux); another backend, such as object storage, implements the same
//! two traits.
//!
//! A backend owns the bytes of its files. The transfer engine reads a download through the
//! [`Source`] that [`Home::begin_download`] hands out, and writes an upload into the
//! [`Destination`] of [`Home::begin_upload`]; the backend keeps the partial (and the record of
//! which ranges it holds) until [`Home::commit_upload`] installs it, after the engine verified it.
//! Nothing outside the backend sees a file descriptor.

mod dir_sync;
pub mod fs;
mod fs_transfer;
mod fs_tree;
pub mod layer;
pub mod s3;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Entry, ErrorCode};
use wharf_common::transfer::{Destination, Ranges, Source};

/// The backend the configuration names: the local filesystem under `layout`, or the object store
/// and database of `[storage]` and `[database]`.
pub async fn open(
    layout: &crate::layout::Layout,
    config: &crate::config::Config,
    pool: crate::blocking::BlockingPool,
) -> anyhow::Result<Arc<dyn Storage>> {
    use anyhow::Context as _;
    Ok(match config.storage.backend {
        crate::config::Backend::Local => {
            std::fs::create_dir_all(layout.homes())?;
            let fs = fs::FsStorage::open(layout, pool)
                .with_context(|| format!("opening {}", layout.homes().display()))?;
            Arc::new(fs)
        }
        crate::config::Backend::S3 => {
            Arc::new(s3::S3Storage::open(&config.storage, &config.database, layout.root()).await?)
        }
    })
}

/// A failed storage operation: a wire error code and a message that names the remote path only,
/// never a server-side path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub code: ErrorCode,
    pub message: String,
}

impl StorageError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> StorageError {
        StorageError { code, message: message.into() }
    }

    /// Maps an I/O error on `path` to its wire code. This is the one place where that mapping lives.
    pub fn from_io(err: &std::io::Error, path: &RemotePath) -> StorageError {
        use std::io::ErrorKind as K;
        if let Some(failure) =
            err.get_ref().and_then(|inner| inner.downcast_ref::<ServiceFailure>())
        {
            return StorageError::new(ErrorCode::Io, format!("{path}: {}", failure.told));
        }
        if err.raw_os_error() == Some(libc::ELOOP) {
            let what = "too many levels of symbolic links";
            return StorageError::new(ErrorCode::InvalidPath, format!("{path}: {what}"));
        }
        let (code, what) = match err.kind() {
            K::NotFound => (ErrorCode::NotFound, "no such file or directory".to_owned()),
            // cap-std reports any attempt to resolve outside the home (`..`, absolute or escaping
            // symlinks) as PermissionDenied.
            K::PermissionDenied => (ErrorCode::PermissionDenied, "permission denied".to_owned()),
            K::AlreadyExists => (ErrorCode::Exists, "already exists".to_owned()),
            K::NotADirectory => (ErrorCode::NotADirectory, "not a directory".to_owned()),
            K::IsADirectory => (ErrorCode::IsADirectory, "is a directory".to_owned()),
            K::DirectoryNotEmpty => (ErrorCode::NotEmpty, "directory not empty".to_owned()),
            K::InvalidFilename | K::InvalidInput => {
                (ErrorCode::InvalidPath, "invalid path".to_owned())
            }
            K::QuotaExceeded => (ErrorCode::QuotaExceeded, "disk quota exceeded".to_owned()),
            K::StorageFull => (ErrorCode::Io, "no space left on the server".to_owned()),
            kind => (ErrorCode::Io, format!("I/O error ({kind})")),
        };
        StorageError::new(code, format!("{path}: {what}"))
    }
}

/// A service a backend relies on failing (the s3 backend's object store or database), carried
/// through the transfer engine inside an `io::Error`: `told` is for the client, which learns what
/// failed but no internal names; the error's text, for the log, is the whole `detail`.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ServiceFailure {
    pub told: String,
    pub detail: String,
}

impl ServiceFailure {
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// Convenience alias.
pub type StorageResult<T> = Result<T, StorageError>;

/// Pages of a directory listing, produced as the client consumes them. The channel is bounded, so a
/// huge directory is never held in memory at once.
pub type Listing = mpsc::Receiver<StorageResult<Vec<Entry>>>;

/// Pages of a recursive `tree` listing, produced as the client consumes them.
pub type TreeListing = mpsc::Receiver<StorageResult<Vec<wharf_common::proto::TreeEntry>>>;

/// The partial-upload key of `path`: stable, so that the same upload finds its partial again, and
/// free of any character of the path.
pub fn partial_key(path: &RemotePath) -> String {
    Sha256Digest::of(path.as_str().as_bytes()).to_string()
}

/// A partial upload, ready for its bytes.
pub struct UploadTarget {
    /// The partial's key ([`partial_key`]).
    pub key: String,
    /// Where the transfer engine writes the bytes. The backend owns them: it records the ranges in
    /// place at each checkpoint (so a later attempt can resume), and keeps them until
    /// [`Home::commit_upload`] or [`Home::discard_upload`].
    pub dest: Arc<dyn Destination>,
    /// Byte ranges already in place from an earlier attempt: what a resume need not send again.
    pub present: Ranges,
    /// The partial's length now, which the quota already counts.
    pub len: u64,
    /// Bytes of the existing file the upload will replace, if any.
    pub replaced: u64,
    /// Bytes of a stale partial (other size or source) discarded to start afresh.
    pub discarded: u64,
}

impl std::fmt::Debug for UploadTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadTarget")
            .field("key", &self.key)
            .field("present", &self.present)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// What installing an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Bytes of the file it replaced (0 if there was none).
    pub replaced: u64,
    /// The installed file's version, as `tree` and `get` report it.
    pub version: String,
}

/// A file opened for download.
pub struct DownloadSource {
    /// Where the transfer engine reads the bytes: the file as it was opened, whatever happens to
    /// its name meanwhile.
    pub source: Arc<dyn Source>,
    pub size: u64,
    /// Changes whenever the file does (size, modification time, inode).
    pub version: String,
    /// The verified digest recorded when the file was stored, if it is still valid.
    pub digest: Option<Sha256Digest>,
}

/// All homes.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Opens `user`'s home. The user name has been validated by the user store.
    async fn open_home(&self, user: &str) -> StorageResult<Arc<dyn Home>>;
    /// Creates `user`'s home if it does not exist.
    async fn create_home(&self, user: &str) -> StorageResult<()>;
    /// Deletes `user`'s home and everything in it.
    async fn remove_home(&self, user: &str) -> StorageResult<()>;
    /// Deletes partial uploads not written to for `max_age`; returns the bytes freed per user.
    async fn expire_partials(
        &self,
        max_age: std::time::Duration,
    ) -> StorageResult<Vec<(String, u64)>>;
}

/// One user's home. Every path is resolved beneath it.
#[async_trait]
pub trait Home: Send + Sync + 'static {
    /// Metadata of `path`, following symlinks that stay inside the home.
    async fn stat(&self, path: &RemotePath) -> StorageResult<Entry>;
    /// The entries of the directory `path`, without following symlinks, in pages of at most
    /// [`wharf_common::limits::LIST_PAGE_ENTRIES`].
    async fn list(&self, path: &RemotePath) -> StorageResult<Listing>;
    /// Creates a directory; with `parents`, its missing ancestors too, and an existing directory is fine.
    async fn mkdir(&self, path: &RemotePath, parents: bool) -> StorageResult<()>;
    /// Removes an empty directory.
    async fn rmdir(&self, path: &RemotePath) -> StorageResult<()>;
    /// Removes a file or symlink, or with `recursive` a directory tree. Returns the bytes freed.
    async fn remove(&self, path: &RemotePath, recursive: bool) -> StorageResult<u64>;
    /// Renames `from` to `to`, replacing a file at `to`. Returns the bytes freed by the replaced file.
    async fn rename(&self, from: &RemotePath, to: &RemotePath) -> StorageResult<u64>;
    /// Bytes used by regular files in the home, plus partial uploads.
    async fn usage(&self) -> StorageResult<u64>;
    /// Opens (or, with `resume` and a matching `size` and `source`, reopens) the partial upload for
    /// `path`. The target must not be a directory, and its parent must exist.
    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: u64,
        source: &str,
        resume: bool,
    ) -> StorageResult<UploadTarget>;
    /// Makes a verified partial durable and visible: set its modification time to `mtime` if given,
    /// fsync, rename over `path`, fsync the directory, and record `digest`. Says what it replaced
    /// and the new file's version.
    async fn commit_upload(
        &self,
        key: &str,
        path: &RemotePath,
        digest: Sha256Digest,
        mtime: Option<i64>,
    ) -> StorageResult<Installed>;
    /// The user's partial uploads, each with its key (see [`partial_key`]).
    async fn partials(&self) -> StorageResult<Vec<(String, wharf_common::proto::PartialUpload)>>;
    /// Sets the permission bits of `path` (the caller keeps `mode` within `0o777`).
    async fn chmod(&self, path: &RemotePath, mode: u32) -> StorageResult<()>;
    /// Everything below the directory `path`, recursively, never following symlinks, in pages.
    async fn tree(&self, path: &RemotePath) -> StorageResult<TreeListing>;
    /// The SHA-256 of the file `path` and its version: the recorded digest if it is still valid,
    /// otherwise the file is read (off the executor) and the digest recorded.
    async fn digest(&self, path: &RemotePath) -> StorageResult<(Sha256Digest, String)>;
    /// Deletes a partial upload; returns its bytes.
    async fn discard_upload(&self, key: &str) -> StorageResult<u64>;
    /// Opens a regular file for download.
    async fn begin_download(&self, path: &RemotePath) -> StorageResult<DownloadSource>;
    /// Reserves, across every node that shares this backend, the space upload `key` takes once
    /// whole (`bytes`: its size less the file it replaces), within `limit`; `Ok(Err(..))` if it
    /// does not fit. A backend of one node leaves this to the node's ledger ([`crate::quota`]).
    async fn reserve_shared(
        &self,
        _key: &str,
        _bytes: u64,
        _limit: Option<u64>,
    ) -> StorageResult<Result<(), crate::quota::OverQuota>> {
        Ok(Ok(()))
    }
    /// Records the digest of a file computed while it was sent, if the file is still `version`.
    async fn record_digest(
        &self,
        path: &RemotePath,
        version: &str,
        digest: Sha256Digest,
    ) -> StorageResult<()>;
}
