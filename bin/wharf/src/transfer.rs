//! Uploading and downloading one file, verified by SHA-256, resumable.
//!
//! - `put`: the local file's identity (size, modification time, inode) is the `source` the server
//!   keys its partial by, so a resume never splices a changed file onto old bytes. The server verifies
//!   the whole file and only then renames it into place.
//! - `get`: bytes land in `NAME.wharf-part`, with the server's file version in
//!   `NAME.wharf-part.meta`; the whole file is verified before it is renamed to `NAME`. A part whose
//!   version no longer matches is started over. Like scp and sftp, a download is not fsynced: the
//!   local disk's durability is the local system's business, and syncing costs a second pass.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_common::transfer::{
    Durability, RESUME_MIN_SIZE, StreamHeader, TransferError, receive_file, send_file,
};

use crate::error::{ClientError, Result};
use crate::session::Session;

/// How long a download waits for an earlier one to the same file to let go of it.
const CLAIM_PATIENCE: Duration = Duration::from_secs(5);
/// How long to wait for the server's download stream after its `transfer` reply.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// What a finished transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub size: u64,
    /// Bytes that were already in place from an earlier attempt.
    pub resumed_from: u64,
    pub sha256: Sha256Digest,
    pub elapsed: Duration,
}

/// Called as bytes move: first with the bytes already in place (a resume), then per chunk.
pub type OnBytes<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// The partial file of a download to `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".wharf-part");
    PathBuf::from(name)
}

fn meta_path(dest: &Path) -> PathBuf {
    let mut name = part_path(dest).into_os_string();
    name.push(".meta");
    PathBuf::from(name)
}

fn local_error(context: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |err| ClientError::local(context.display().to_string(), err)
}

fn transfer_error(what: &str, err: TransferError) -> ClientError {
    match err {
        TransferError::File(err) => ClientError::local(what.to_owned(), err),
        other => ClientError::Remote {
            code: ErrorCode::TransferFailed,
            message: format!("{what}: {other}"),
        },
    }
}

/// Runs blocking local file work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

impl Session {
    /// Uploads `local` to `remote`. With `resume`, continues an interrupted upload of the same file.
    pub async fn put(
        &self,
        local: &Path,
        remote: &RemotePath,
        resume: bool,
        on_bytes: OnBytes<'_>,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let path = local.to_owned();
        let (file, meta) = blocking(move || {
            let file = std::fs::File::open(&path)?;
            let meta = file.metadata()?;
            Ok::<_, std::io::Error>((file, meta))
        })
        .await
        .map_err(local_error(local))?;
        if meta.is_dir() {
            return Err(ClientError::local(
                local.display().to_string(),
                std::io::ErrorKind::IsADirectory.into(),
            ));
        }
        let size = meta.len();
        let source = format!("{size}-{}.{:09}-{}", meta.mtime(), meta.mtime_nsec(), meta.ino());
        let cmd = Command::Put { path: remote.to_string(), size, source, resume };
        let mut replies = self.rpc().request(cmd).await?;
        let (transfer, offset) = match self.rpc().next_reply(&mut replies).await? {
            Reply::Transfer { transfer, offset, .. } => (transfer, offset),
            other => return Err(unexpected(&other)),
        };
        on_bytes(offset);
        let mut stream =
            self.connection().open_uni().await.map_err(|err| self.rpc().lost(err.to_string()))?;
        let header = StreamHeader { transfer };
        let sent = send_file(&mut stream, header, file, (offset, size), None, on_bytes).await;
        let sent = match sent {
            Ok(digest) => digest,
            // The server's reply says more than a reset stream would (e.g. quota, or a closed connection).
            Err(err) => {
                return match self.rpc().next_reply(&mut replies).await {
                    Err(reply_err) => Err(reply_err),
                    Ok(_) => Err(transfer_error(&remote.to_string(), err)),
                };
            }
        };
        match self.rpc().next_reply(&mut replies).await? {
            Reply::Done { sha256, .. } if sha256 == sent.to_string() => {
                Ok(Outcome { size, resumed_from: offset, sha256: sent, elapsed: started.elapsed() })
            }
            Reply::Done { sha256, .. } => Err(ClientError::Remote {
                code: ErrorCode::ChecksumMismatch,
                message: format!("{remote}: server stored {sha256}, but {sent} was sent"),
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Downloads `remote` to the local file `dest`. With `resume`, continues from `dest.wharf-part`
    /// if the remote file has not changed since.
    pub async fn get(
        &self,
        remote: &RemotePath,
        dest: &Path,
        resume: bool,
        on_bytes: OnBytes<'_>,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let (part, meta) = (part_path(dest), meta_path(dest));
        // An abandoned download of the same file may still be writing its partial: wait for it.
        let claim =
            self.downloads().claim_within(&part, CLAIM_PATIENCE).await.map(Arc::new).ok_or_else(
                || {
                    ClientError::Usage(format!(
                        "{}: another download to this file is in progress",
                        dest.display()
                    ))
                },
            )?;
        let (offset, version) = if resume { existing_part(&part, &meta).await } else { (0, None) };
        let cmd = Command::Get { path: remote.to_string(), offset, version };
        let mut replies = self.rpc().request(cmd).await?;
        let (transfer, offset, size, version) = match self.rpc().next_reply(&mut replies).await? {
            Reply::Transfer { transfer, offset, size, version } => {
                (transfer, offset, size, version)
            }
            other => return Err(unexpected(&other)),
        };
        let stream = self.incoming().claim(transfer);
        let file = {
            let (part_file, meta_file) = (part.clone(), meta.clone());
            blocking(move || {
                if size >= RESUME_MIN_SIZE {
                    std::fs::write(&meta_file, &version)?;
                }
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&part_file)
            })
            .await
            .map_err(local_error(&part))?
        };
        on_bytes(offset);
        let mut stream = match tokio::time::timeout(STREAM_WAIT, stream).await {
            Ok(Ok(stream)) => stream,
            _ => {
                let message = format!("{remote}: the download stream never arrived");
                return Err(ClientError::Remote { code: ErrorCode::TransferFailed, message });
            }
        };
        // The disk thread shares the claim, so it lasts until its last write even if we are cancelled.
        let received = receive_file(
            &mut stream,
            (file, claim.clone()),
            (offset, size),
            Durability::Lazy,
            on_bytes,
        )
        .await
        .map_err(|err| transfer_error(&remote.to_string(), err))?;
        let done = self.rpc().next_reply(&mut replies).await?;
        if !received.verified()
            || !matches!(&done, Reply::Done { sha256, .. } if *sha256 == received.claimed.to_string())
        {
            let (part, meta) = (part.clone(), meta.clone());
            blocking(move || {
                let _ = std::fs::remove_file(part);
                let _ = std::fs::remove_file(meta);
            })
            .await;
            return Err(ClientError::Remote {
                code: ErrorCode::ChecksumMismatch,
                message: format!(
                    "{remote}: checksum mismatch (received {}, server says {}); the partial was removed",
                    received.computed, received.claimed
                ),
            });
        }
        let final_path = dest.to_owned();
        blocking(move || {
            std::fs::rename(&part, &final_path)?;
            let _ = std::fs::remove_file(&meta);
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(local_error(dest))?;
        Ok(Outcome {
            size,
            resumed_from: offset,
            sha256: received.computed,
            elapsed: started.elapsed(),
        })
    }
}

/// The resume point and remote version of an existing partial download, if both are there.
async fn existing_part(part: &Path, meta: &Path) -> (u64, Option<String>) {
    let (part, meta) = (part.to_owned(), meta.to_owned());
    blocking(move || match (std::fs::metadata(&part), std::fs::read_to_string(&meta)) {
        (Ok(part), Ok(version)) => (part.len(), Some(version)),
        _ => (0, None),
    })
    .await
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}
