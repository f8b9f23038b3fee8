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

use wharf_common::claims;
use wharf_common::hash::Sha256Digest;
use wharf_common::limits::MAX_EAGER_SIZE;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_common::transfer::{
    DEFAULT_STALL_TIMEOUT, Destination as _, Durability, Held, Plan, RESUME_MIN_SIZE, Ranges,
    Recorded, StreamHeader, TransferError, Written, receive_file, send_file,
};

use crate::error::{ClientError, Result};
use crate::session::Session;

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

/// What a failed transfer means to the user, and so its exit code: a lost connection is the
/// network's (and worth a reconnection), a panic is the client's own bug, a local file error is
/// the local disk's.
fn transfer_error(what: &str, err: TransferError) -> ClientError {
    if let Some(lost) = err.connection_lost() {
        return crate::rpc::closed_error(lost);
    }
    match err {
        TransferError::File(err) => ClientError::local(what.to_owned(), err),
        TransferError::Panicked | TransferError::ThreadsStopped => {
            ClientError::Internal(format!("{what}: {err}"))
        }
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
        self.put_keeping(local, remote, resume, false, on_bytes).await
    }

    /// Like [`Session::put`]; with `keep_time`, the stored file gets the local file's modification
    /// time (`put -p`).
    pub async fn put_keeping(
        &self,
        local: &Path,
        remote: &RemotePath,
        resume: bool,
        keep_time: bool,
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
        let source = crate::local::content_version(&meta);
        let mtime = keep_time.then(|| meta.mtime());
        let link = self.link();
        // A small file goes at once, without waiting a round trip for the `transfer` reply. Its
        // number is given as the request is sent.
        let eager = (size <= MAX_EAGER_SIZE).then_some(0);
        let resume = resume && eager.is_none();
        let cmd = Command::Put { path: remote.to_string(), size, source, resume, mtime, eager };
        let mut replies = link.rpc.request(cmd).await?;
        let eager = replies.eager();
        let (header, plan) = match eager {
            Some(number) => {
                (StreamHeader::eager(number), Plan::new(size, Ranges::full(size), u64::MAX, 1))
            }
            None => match link.rpc.next_reply(&mut replies).await? {
                Reply::Transfer { transfer, size: announced, ranges, lanes, .. }
                    if announced == size =>
                {
                    (StreamHeader::of(transfer), checked_plan(size, &ranges, lanes)?)
                }
                other => return Err(unexpected(&other)),
            },
        };
        on_bytes(plan.present());
        let stall = DEFAULT_STALL_TIMEOUT;
        let sent =
            send_file(&link.conn, header, Arc::new(file), &plan, None, stall, on_bytes).await;
        let sent = match sent {
            Ok(digest) => digest,
            // The server's reply says more than a reset stream would (e.g. quota, or a closed connection).
            Err(err) => {
                return match link.rpc.next_reply(&mut replies).await {
                    Err(reply_err) => Err(reply_err),
                    Ok(_) => Err(transfer_error(&remote.to_string(), err)),
                };
            }
        };
        if eager.is_some() {
            // The server accepts an eager upload as it would any other, with all of it owed.
            match link.rpc.next_reply(&mut replies).await? {
                Reply::Transfer { transfer: 0, size: announced, ranges, lanes: 1, .. }
                    if announced == size && ranges == plan.ranges => {}
                other => return Err(unexpected(&other)),
            }
        }
        match link.rpc.next_reply(&mut replies).await? {
            Reply::Done { sha256, .. } if sha256 == sent.to_string() => {
                let resumed_from = plan.present();
                Ok(Outcome { size, resumed_from, sha256: sent, elapsed: started.elapsed() })
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
            self.downloads().claim_within(&part, claims::PATIENCE).await.map(Arc::new).ok_or_else(
                || {
                    ClientError::Usage(format!(
                        "{}: another download to this file is in progress",
                        dest.display()
                    ))
                },
            )?;
        let (have, version) =
            if resume { existing_part(&part, &meta).await } else { (Ranges::new(), None) };
        let cmd = Command::Get { path: remote.to_string(), have: have.truncated(), version };
        let link = self.link();
        let mut replies = link.rpc.request(cmd).await?;
        let (transfer, version, plan) = match link.rpc.next_reply(&mut replies).await? {
            Reply::Transfer { transfer, size, version, ranges, lanes } => {
                (transfer, version, checked_plan(size, &ranges, lanes)?)
            }
            other => return Err(unexpected(&other)),
        };
        // What the server does not resend must be here already: a server may only resend more.
        let present = plan.ranges.complement(plan.size);
        if present.iter().any(|(start, end)| have.end_of_range_at(start).is_none_or(|e| e < end)) {
            return Err(ClientError::Protocol("the server skipped bytes this client lacks".into()));
        }
        let mut lanes = link.incoming.claim(transfer, plan.lanes);
        let size = plan.size;
        let part_file = {
            let (part_file, meta_file) = (part.clone(), meta.clone());
            blocking(move || {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&part_file)?;
                let resumable = (size >= RESUME_MIN_SIZE).then_some((meta_file, version));
                let record = move |present: &Ranges| record_part(resumable.as_ref(), present);
                let dest = Held { dest: Recorded { dest: file, record }, guard: claim };
                dest.checkpoint(&present);
                Ok::<_, std::io::Error>(dest)
            })
            .await
            .map_err(local_error(&part))?
        };
        on_bytes(plan.present());
        let on_written = |written: Written| on_bytes(written.bytes);
        let received = receive_file(
            &mut lanes,
            part_file,
            &plan,
            Durability::Lazy,
            DEFAULT_STALL_TIMEOUT,
            &on_written,
        )
        .await
        .map_err(|err| transfer_error(&remote.to_string(), err))?;
        let done = link.rpc.next_reply(&mut replies).await?;
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
            resumed_from: plan.present(),
            sha256: received.computed,
            elapsed: started.elapsed(),
        })
    }
}

/// The ranges in place and the remote version of an existing partial download, if both are there.
async fn existing_part(part: &Path, meta: &Path) -> (Ranges, Option<String>) {
    let (part, meta) = (part.to_owned(), meta.to_owned());
    blocking(move || {
        let (Ok(part), Ok(text)) = (std::fs::metadata(&part), std::fs::read_to_string(&meta))
        else {
            return (Ranges::new(), None);
        };
        match parse_part_meta(&text)
            .and_then(|(version, present)| Some((Ranges::checked(&present, part.len())?, version)))
        {
            Some((present, version)) => (present, Some(version)),
            None => (Ranges::new(), None),
        }
    })
    .await
}

/// A partial download's metadata: the remote version on the first line, then one `START END` line per
/// range in place.
fn format_part_meta(version: &str, present: &Ranges) -> String {
    let mut text = format!("{version}\n");
    for (start, end) in present.truncated().iter() {
        text.push_str(&format!("{start} {end}\n"));
    }
    text
}

fn parse_part_meta(text: &str) -> Option<(String, Ranges)> {
    let mut lines = text.lines();
    let version = lines.next()?.to_owned();
    let mut present = Ranges::new();
    for line in lines {
        let (start, end) = line.split_once(' ')?;
        present.insert(start.parse().ok()?, end.parse().ok()?);
    }
    Some((version, present))
}

/// Records which ranges of a partial download are in place, for a resume: in the metadata file
/// `resumable` names, with the remote version they belong to. Small downloads (`None`) are never
/// resumed, so nothing is recorded.
fn record_part(resumable: Option<&(PathBuf, String)>, present: &Ranges) {
    let Some((meta, version)) = resumable else { return };
    if let Err(err) =
        crate::local::replace_file(meta, format_part_meta(version, present).as_bytes())
    {
        tracing::debug!(%err, "cannot record the progress of a download");
    }
}

/// Checks the plan in a `transfer` reply.
fn checked_plan(size: u64, ranges: &Ranges, lanes: u32) -> Result<Plan> {
    Plan::checked(size, ranges, lanes).ok_or_else(|| {
        ClientError::Protocol(format!("bad transfer plan: {lanes} lanes, {ranges:?}"))
    })
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_transfer_exits_by_whose_fault_it_was() {
        let lost = TransferError::Write(quinn::WriteError::ConnectionLost(
            quinn::ConnectionError::TimedOut,
        ));
        let cases = [
            (lost, 3, "connection lost"),
            (TransferError::Panicked, 1, "internal error"),
            (
                TransferError::File(std::io::Error::from(std::io::ErrorKind::StorageFull)),
                1,
                "/x: no storage space",
            ),
            (TransferError::Stalled(Duration::from_secs(60)), 1, "/x: no progress for 60 s"),
        ];
        for (err, code, starts) in cases {
            let mapped = transfer_error("/x", err);
            assert_eq!(mapped.exit_code(), code, "{mapped}");
            assert!(mapped.to_string().starts_with(starts), "{mapped}");
        }
    }
}
