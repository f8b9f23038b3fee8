//! `put {path, size, source, resume}` → `transfer {transfer, offset, size, version}`, then the bytes on
//! the client's stream, then `done {size, sha256}`.
//!
//! Order matters here. The quota is reserved before any byte moves, and the partial is claimed so that
//! no second upload to the same path can share it. Bytes written count as used at once, since the
//! partial keeps them even if the transfer breaks (it can then resume). Only a file whose SHA-256
//! matches the sender's is made durable and renamed into place; a mismatch drops the partial.

use std::sync::Arc;
use std::time::Duration;

use wharf_common::proto::{ErrorCode, Reply};
use wharf_common::transfer::{Durability, receive_file};

use super::{CmdResult, Progress, Session, parse_path};
use crate::storage::{StorageError, partial_key};

/// How long a `put` waits for an earlier upload of the same path to end.
const CLAIM_PATIENCE: Duration = Duration::from_secs(5);
/// How long the client has to open the upload stream after the `transfer` reply.
const STREAM_WAIT: Duration = Duration::from_secs(30);

pub async fn run(
    session: &Session,
    path: &str,
    size: u64,
    source: &str,
    resume: bool,
    progress: &Progress<'_>,
) -> CmdResult {
    let path = parse_path(path)?;
    let key = partial_key(&path);
    let claim = session
        .ledger
        .uploads()
        .claim_within(&key, CLAIM_PATIENCE)
        .await
        .map(Arc::new)
        .ok_or_else(|| {
            StorageError::new(
                ErrorCode::Busy,
                format!("{path}: another upload to this path is in progress"),
            )
        })?;
    let target = session.home.begin_upload(&path, size, source, resume).await?;
    session.ledger.release(target.discarded);
    let needed = size.saturating_sub(target.offset).saturating_sub(target.replaced);
    let mut reservation = session.ledger.reserve(needed).map_err(|over| {
        StorageError::new(
            ErrorCode::QuotaExceeded,
            format!("{path}: needs {} more bytes, {} available", over.needed, over.available),
        )
    })?;

    let (id, stream) = session.transfers.expect();
    let ready =
        Reply::Transfer { transfer: id, offset: target.offset, size, version: source.to_owned() };
    if !progress.send(ready).await {
        session.transfers.forget(id);
        return Err(failed(&path, "connection closed"));
    }
    let Ok(Ok(mut stream)) = tokio::time::timeout(STREAM_WAIT, stream).await else {
        session.transfers.forget(id);
        return Err(failed(&path, "the upload stream never arrived"));
    };
    // The disk thread shares the claim: it is released only when both this task (through the commit)
    // and the thread (after its last write) are done, even if this task is cancelled first.
    let dest = (target.file, claim.clone());
    let received =
        receive_file(&mut stream, dest, (target.offset, size), Durability::Synced, |n| {
            reservation.consume(n)
        })
        .await;
    let received = match received {
        Ok(received) => received,
        Err(err) => {
            let _ =
                stream.stop(quinn::VarInt::from_u32(crate::conn::transfers::STOP_TRANSFER_FAILED));
            // The partial stays, with its bytes counted, for a later resume.
            return Err(failed(&path, &err.to_string()));
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
    let replaced = session.home.commit_upload(&key, &path, received.computed).await?;
    session.ledger.release(replaced);
    Ok(Reply::Done { size, sha256: received.computed.to_string() })
}

fn failed(path: &wharf_common::path::RemotePath, why: &str) -> StorageError {
    StorageError::new(ErrorCode::TransferFailed, format!("{path}: upload failed: {why}"))
}
