//! `put {path, size, source, resume}` → `transfer {transfer, size, version, ranges, lanes}`, then the
//! bytes on the client's lanes, then `done {size, sha256}`.
//!
//! Order matters here. The quota is reserved before any byte moves, and the partial is claimed so that
//! no second upload to the same path can share it. Bytes written count as used at once, since the
//! partial keeps them even if the transfer breaks (it can then resume). Only a file whose SHA-256
//! matches the sender's is made durable and renamed into place; a mismatch drops the partial.

use std::sync::Arc;

use tokio::sync::mpsc;
use wharf_common::claims::{self, Claim};
use wharf_common::hash::Sha256Digest;
use wharf_common::limits::MAX_EAGER_SIZE;
use wharf_common::path::RemotePath;
use wharf_common::proto::{ErrorCode, Reply};
use wharf_common::transfer::{
    Durability, Held, Plan, Ranges, Received, TransferError, Written, receive_file,
    run_on_transfer_thread,
};

use super::lanes::EagerLane;
use super::{CmdResult, Progress, Session, parse_path};
use crate::context::UploadKey;
use crate::quota::{Ledger, UploadCharge};
use crate::storage::{StorageError, UploadTarget, partial_key};

/// What a `put` asks for.
pub struct Upload<'a> {
    pub path: &'a str,
    pub size: u64,
    pub source: &'a str,
    pub resume: bool,
    pub mtime: Option<i64>,
    /// The eager number, for an upload whose one lane the client opened without waiting.
    pub eager: Option<u64>,
    /// Make the missing folders above `path` first.
    pub parents: bool,
}

pub async fn run(session: &Session, upload: &Upload<'_>, progress: &Progress<'_>) -> CmdResult {
    let &Upload { path, size, source, resume, mtime, eager, parents } = upload;
    // Held to the end, however this ends: a lane of an upload that has ended is stopped.
    let mut eager_lane = take_eager_lane(session, eager, size)?;
    let path = parse_path(path)?;
    let key = partial_key(&path);
    let claim = claim(session, &path, &key).await?;
    // Before the upload touches the home: it may discard a partial and replace a file.
    let ledger = session.ledger.get().await?;
    let resume = resume && eager.is_none();
    let target = match session.home.begin_upload(&path, size, source, resume).await {
        // Only a missing folder above the file makes an upload NotFound: make it, then begin
        // again. An upload whose folders exist pays nothing for `parents`.
        Err(err) if parents && err.code == ErrorCode::NotFound => {
            let dir = path.parent();
            let made = session.home.mkdir(&dir, true).await;
            super::audit_made_parents(session, &dir, &made);
            made?;
            session.home.begin_upload(&path, size, source, resume).await?
        }
        begun => begun?,
    };
    ledger.release(target.discarded);
    let charge = reserve(session, &ledger, &path, size, (target.len, target.replaced)).await?;
    let plan = plan(session, size, &target.present, eager.is_some());

    let mut own_lanes;
    let (id, lanes) = match eager_lane.as_mut() {
        Some(lane) => (0, &mut lane.lanes),
        None => {
            let (id, receiver) = session.transfers.expect(plan.lanes);
            own_lanes = receiver;
            (id, &mut own_lanes)
        }
    };
    let ranges = plan.ranges.clone();
    let ready = Reply::Transfer {
        transfer: id,
        size,
        version: source.to_owned(),
        ranges,
        lanes: plan.lanes,
    };
    if !progress.send(ready).await {
        session.transfers.forget(id);
        return Err(failed(&path, "connection closed"));
    }
    let received = receive(session, target, claim, lanes, &plan, &charge).await;
    session.transfers.forget(id);
    let received = match received {
        Ok(received) => received,
        Err(BrokenOff { error, grown }) => {
            // The partial stays, with what it holds counted, for a later resume.
            charge.broke_off(grown);
            return Err(match error {
                TransferError::File(err) => {
                    // The client hears only the kind of error; the log keeps what failed (the
                    // disk, or the object store or database of the s3 backend).
                    tracing::warn!(path = ?path.as_str(), %err, "an upload failed writing the file");
                    StorageError::from_io(&err, &path)
                }
                other => failed(&path, &other.to_string()),
            });
        }
    };
    let (sha256, version) = install(session, &key, &path, received, mtime, charge).await?;
    Ok(Reply::Done { size, sha256: sha256.to_string(), version: Some(version) })
}

/// The lane an eager upload's client opened, checked against the eager rules.
fn take_eager_lane(
    session: &Session,
    eager: Option<u64>,
    size: u64,
) -> Result<Option<EagerLane<'_>>, StorageError> {
    let Some(number) = eager else { return Ok(None) };
    let lane = session
        .transfers
        .take_eager(number)
        .ok_or_else(|| bad_request("eager upload not announced"))?;
    if size > MAX_EAGER_SIZE {
        return Err(bad_request(&format!("an eager upload is at most {MAX_EAGER_SIZE} bytes")));
    }
    Ok(Some(lane))
}

/// Claims the partial of `path`, taking it over from an older upload by the same user.
pub(super) async fn claim(
    session: &Session,
    path: &RemotePath,
    key: &str,
) -> Result<Arc<Claim<UploadKey>>, StorageError> {
    let uploads = &session.ctx.uploads;
    let claim = uploads.take_over(&session.upload_key(key), claims::PATIENCE).await.map(Arc::new);
    claim.ok_or_else(|| {
        StorageError::new(
            ErrorCode::Busy,
            format!("{path}: another upload to this path is still finishing; try again"),
        )
    })
}

/// Reserves what the upload still owes the quota, or refuses it before any byte moves: in this
/// node's ledger, then (on a backend several nodes share) across the nodes. The partial is `len`
/// bytes long, and the file it replaces `replaced` bytes.
pub(super) async fn reserve(
    session: &Session,
    ledger: &Arc<Ledger>,
    path: &RemotePath,
    size: u64,
    (len, replaced): (u64, u64),
) -> Result<UploadCharge, StorageError> {
    // The quota counts a partial by its length, so the upload owes what takes it to `size`.
    let needed = size.saturating_sub(len).saturating_sub(replaced);
    let key = partial_key(path);
    let limit = ledger.info().limit;
    let refused = match UploadCharge::reserve(ledger, needed) {
        Ok(charge) => {
            match session.home.reserve_shared(&key, size.saturating_sub(replaced), limit).await? {
                Ok(()) => return Ok(charge),
                // The charge goes with this return, giving back the node's reservation.
                Err(over) => over,
            }
        }
        Err(over) => over,
    };
    if len == 0 {
        // Nothing was kept from before: leave no empty partial behind for a refused upload.
        session.home.discard_upload(&key).await?;
    }
    let limit = limit.map_or_else(String::new, |l| format!(" of {}", bytes(l)));
    Err(StorageError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "{path}: over quota: needs {}, {}{limit} left",
            bytes(refused.needed),
            bytes(refused.available)
        ),
    ))
}

fn bytes(n: u64) -> String {
    wharf_common::units::format_bytes(n)
}

/// The plan for what is still owed: one lane for an eager upload, else as the settings say.
fn plan(session: &Session, size: u64, present: &Ranges, eager: bool) -> Plan {
    let settings = &session.ctx.config.transfer;
    let (threshold, max_lanes) = match eager {
        true => (u64::MAX, 1),
        false => (settings.segment_threshold, settings.segment_lanes),
    };
    Plan::new(size, present.complement(size), threshold, max_lanes)
}

/// A receive that failed, and how many bytes the partial grew by before it did.
struct BrokenOff {
    error: TransferError,
    grown: u64,
}

/// Receives the plan's bytes into the partial, charging them as they are written. A newer upload
/// of the same path by the same user (its client reconnected, or restarted after a crash) takes
/// over at once instead of waiting for this one's connection to time out.
async fn receive(
    session: &Session,
    target: UploadTarget,
    claim: Arc<Claim<UploadKey>>,
    lanes: &mut mpsc::Receiver<quinn::RecvStream>,
    plan: &Plan,
    charge: &UploadCharge,
) -> Result<Received, BrokenOff> {
    let start = target.len;
    // The writer shares the claim: it is released only when both this task (through the commit)
    // and the thread (after its last write) are done, even if this task is cancelled first.
    let (finished, writer_done) = tokio::sync::oneshot::channel();
    let guard = (claim.clone(), Finished(Some(finished)));
    let dest = Held { dest: target.dest.clone(), guard };
    let stall = session.ctx.config.transfer.stall_timeout();
    let on_written = |written: Written| charge.written(written.grown);
    let received = tokio::select! {
        received = receive_file(lanes, dest, plan, Durability::Synced, stall, &on_written) => received,
        () = claim.stop_requested() => Err(TransferError::Superseded),
    };
    let error = match received {
        Ok(received) => return Ok(received),
        Err(error) => error,
    };
    // Taken over, the receiver was dropped while the writer may still be writing what the lanes
    // handed over: measure the partial once it is done, or its bytes go uncounted.
    let _ = tokio::time::timeout(claims::PATIENCE, writer_done).await;
    let partial = target.dest;
    let now = run_on_transfer_thread(move || partial.held()).await.ok().and_then(Result::ok);
    Err(BrokenOff { error, grown: now.map_or(0, |now| now.saturating_sub(start)) })
}

/// Installs a verified upload under its name (settling the quota), or drops a mismatched one.
async fn install(
    session: &Session,
    key: &str,
    path: &RemotePath,
    received: Received,
    mtime: Option<i64>,
    charge: UploadCharge,
) -> Result<(Sha256Digest, String), StorageError> {
    if !received.verified() {
        charge.discarded(session.home.discard_upload(key).await?);
        return Err(StorageError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "{path}: checksum mismatch (received {}, sender says {}); nothing was installed",
                received.computed, received.claimed
            ),
        ));
    }
    let installed = session.home.commit_upload(key, path, received.computed, mtime).await?;
    charge.installed(installed.replaced);
    Ok((received.computed, installed.version))
}

fn bad_request(why: &str) -> StorageError {
    StorageError::new(ErrorCode::BadRequest, why.to_owned())
}

fn failed(path: &RemotePath, why: &str) -> StorageError {
    StorageError::new(ErrorCode::TransferFailed, format!("{path}: upload failed: {why}"))
}

/// Tells the upload, when the writer drops it after its last write, that the partial holds all it
/// will.
struct Finished(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(finished) = self.0.take() {
            let _ = finished.send(());
        }
    }
}
