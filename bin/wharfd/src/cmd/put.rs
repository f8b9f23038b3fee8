//! `put {path, size, source, resume}` → `transfer {transfer, size, version, ranges, lanes}`, then the
//! bytes on the client's lanes, then `done {size, sha256}`.
//!
//! Order matters here. The quota is reserved before any byte moves, and the partial is claimed so that
//! no second upload to the same path can share it. Bytes written count as used at once, since the
//! partial keeps them even if the transfer breaks (it can then resume). Only a file whose SHA-256
//! matches the sender's is made durable and renamed into place; a mismatch drops the partial.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wharf_common::limits::MAX_EAGER_SIZE;
use wharf_common::proto::{ErrorCode, Reply};
use wharf_common::transfer::{
    Destination, Durability, Plan, Ranges, TransferError, Written, receive_file,
};

use super::{CmdResult, Progress, Session, parse_path};
use crate::storage::{StorageError, partial_key};
use wharf_common::claims::Claim;

/// How long a `put` waits for an earlier upload of the same path to end once asked to stop.
const CLAIM_PATIENCE: Duration = Duration::from_secs(5);

/// What a `put` asks for.
pub struct Upload<'a> {
    pub path: &'a str,
    pub size: u64,
    pub source: &'a str,
    pub resume: bool,
    pub mtime: Option<i64>,
    /// The eager number, for an upload whose one lane the client opened without waiting.
    pub eager: Option<u64>,
}

pub async fn run(session: &Session, upload: &Upload<'_>, progress: &Progress<'_>) -> CmdResult {
    let &Upload { path, size, source, resume, mtime, eager } = upload;
    // Held to the end, however this ends: a lane of an upload that has ended is stopped.
    let mut eager_lane = match eager {
        Some(number) => Some(
            session
                .transfers
                .take_eager(number)
                .ok_or_else(|| bad_request("eager upload not announced"))?,
        ),
        None => None,
    };
    if eager.is_some() && size > MAX_EAGER_SIZE {
        return Err(bad_request(&format!("an eager upload is at most {MAX_EAGER_SIZE} bytes")));
    }
    let resume = resume && eager.is_none();
    let path = parse_path(path)?;
    let key = partial_key(&path);
    let claim =
        session.ledger.uploads().take_over(&key, CLAIM_PATIENCE).await.map(Arc::new).ok_or_else(
            || {
                StorageError::new(
                    ErrorCode::Busy,
                    format!("{path}: another upload to this path is still finishing; try again"),
                )
            },
        )?;
    let target = session.home.begin_upload(&path, size, source, resume).await?;
    session.ledger.release(target.discarded);
    // The quota counts a partial by its length, so the upload owes what takes it to `size`.
    let needed = size.saturating_sub(target.len).saturating_sub(target.replaced);
    let reservation = session.ledger.reserve(needed);
    if reservation.is_err() && target.len == 0 {
        // Nothing was kept from before: leave no empty partial behind for a refused upload.
        session.home.discard_upload(&key).await?;
    }
    let reservation = reservation.map_err(|over| {
        let limit =
            session.ledger.info().limit.map_or_else(String::new, |l| {
                format!(" of {}", wharf_common::units::format_bytes(l))
            });
        StorageError::new(
            ErrorCode::QuotaExceeded,
            format!(
                "{path}: over quota: needs {}, {}{limit} left",
                wharf_common::units::format_bytes(over.needed),
                wharf_common::units::format_bytes(over.available),
            ),
        )
    })?;

    let settings = &session.ctx.config.transfer;
    let (threshold, max_lanes) = match eager {
        Some(_) => (u64::MAX, 1),
        None => (settings.segment_threshold, settings.segment_lanes),
    };
    let plan = Plan::new(size, target.present.complement(size), threshold, max_lanes);
    let mut own_lanes;
    let (id, lanes) = match eager_lane.as_mut() {
        Some(lane) => (0, &mut lane.lanes),
        None => {
            let (id, receiver) = session.transfers.expect(plan.lanes);
            own_lanes = receiver;
            (id, &mut own_lanes)
        }
    };
    let ready = Reply::Transfer {
        transfer: id,
        size,
        version: source.to_owned(),
        ranges: plan.ranges.clone(),
        lanes: plan.lanes,
    };
    if !progress.send(ready).await {
        session.transfers.forget(id);
        return Err(failed(&path, "connection closed"));
    }
    // The writer shares the claim: it is released only when both this task (through the commit)
    // and the thread (after its last write) are done, even if this task is cancelled first.
    let partial = target.file.try_clone().map_err(|err| StorageError::from_io(&err, &path))?;
    let (finished, writer_done) = tokio::sync::oneshot::channel();
    let dest = Partial {
        file: target.file,
        checkpoint: target.checkpoint,
        _claim: claim.clone(),
        finished: Some(finished),
    };
    let reservation = parking_lot::Mutex::new(reservation);
    let charged = AtomicU64::new(0);
    let charge = |written: Written| {
        reservation.lock().consume(written.grown);
        charged.fetch_add(written.grown, Ordering::Relaxed);
    };
    let stall = settings.stall_timeout();
    // A newer upload of the same path by the same user (its client reconnected, or was restarted
    // after a crash) takes over at once instead of waiting for this one's connection to time out.
    let received = tokio::select! {
        received = receive_file(lanes, dest, &plan, Durability::Synced, stall, &charge) => received,
        () = claim.stop_requested() => Err(TransferError::Stream("a newer upload of this path took over".into())),
    };
    session.transfers.forget(id);
    let received = match received {
        Ok(received) => received,
        Err(err) => {
            // Taken over, the receiver was dropped while the writer may still be writing what the
            // lanes handed over: measure the partial once it is done, or its bytes go uncounted.
            let _ = tokio::time::timeout(CLAIM_PATIENCE, writer_done).await;
            // The partial stays, with its bytes counted, for a later resume. Bytes charged but
            // never written (the disk filled up, say) are given back.
            let now = tokio::task::spawn_blocking(move || partial.metadata().map(|m| m.len()))
                .await
                .ok()
                .and_then(Result::ok);
            let grown = now.map_or(0, |now| now.saturating_sub(target.len));
            session.ledger.release(charged.load(Ordering::Relaxed).saturating_sub(grown));
            return Err(match err {
                TransferError::File(err) => StorageError::from_io(&err, &path),
                other => failed(&path, &other.to_string()),
            });
        }
    };
    if !received.verified() {
        let freed = session.home.discard_upload(&key).await?;
        session.ledger.release(freed);
        return Err(StorageError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "{path}: checksum mismatch (received {}, sender says {}); nothing was installed",
                received.computed, received.claimed
            ),
        ));
    }
    let replaced = session.home.commit_upload(&key, &path, received.computed, mtime).await?;
    session.ledger.release(replaced);
    Ok(Reply::Done { size, sha256: received.computed.to_string() })
}

fn bad_request(why: &str) -> StorageError {
    StorageError::new(ErrorCode::BadRequest, why.to_owned())
}

fn failed(path: &wharf_common::path::RemotePath, why: &str) -> StorageError {
    StorageError::new(ErrorCode::TransferFailed, format!("{path}: upload failed: {why}"))
}

/// A partial upload as the writer sees it. The writer drops it after its last write, which tells
/// `finished`.
struct Partial {
    file: std::fs::File,
    checkpoint: Box<dyn Fn(&Ranges) + Send>,
    _claim: Arc<Claim<String>>,
    finished: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(finished) = self.finished.take() {
            let _ = finished.send(());
        }
    }
}

impl Destination for Partial {
    fn file(&self) -> &std::fs::File {
        &self.file
    }

    fn checkpoint(&self, present: &Ranges) {
        (self.checkpoint)(present);
    }
}
