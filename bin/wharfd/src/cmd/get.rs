//! `get {path, have, version}` → `transfer {transfer, size, version, ranges, lanes}`, then the bytes
//! on lanes the server opens, then `done {size, sha256}`.
//!
//! A resume (`have` not empty) is honoured only if `version` is the file's current version; otherwise
//! the whole file is sent, so a changed file is never spliced onto an old partial.

use wharf_common::proto::{ErrorCode, Reply};
use wharf_common::transfer::{Plan, Ranges, StreamHeader, TransferError, send_file};

use super::{CmdResult, Progress, Session, parse_path};
use crate::storage::StorageError;

pub async fn run(
    session: &Session,
    path: &str,
    have: &Ranges,
    version: Option<String>,
    progress: &Progress<'_>,
) -> CmdResult {
    let path = parse_path(path)?;
    let source = session.home.begin_download(&path).await?;
    let same_file = version.as_deref() == Some(source.version.as_str());
    // A claim the file cannot back (ranges past its end) is treated like a changed file.
    let have = Ranges::checked(have, source.size).filter(|_| same_file).unwrap_or_default();
    let settings = &session.ctx.config.transfer;
    let plan = Plan::new(
        source.size,
        have.complement(source.size),
        settings.segment_threshold,
        settings.segment_lanes,
    );
    let id = session.transfers.next_id();
    let ready = Reply::Transfer {
        transfer: id,
        size: source.size,
        version: source.version.clone(),
        ranges: plan.ranges.clone(),
        lanes: plan.lanes,
    };
    if !progress.send_flushed(ready).await {
        return Err(failed(&path, "connection closed"));
    }
    let header = StreamHeader::of(id);
    let stall = settings.stall_timeout();
    let sent =
        send_file(&session.outgoing, header, source.source, &plan, source.digest, stall, &|_| {})
            .await;
    let digest = sent.map_err(|err| match err {
        TransferError::File(err) => {
            // As for uploads: the client hears what kind of failure, the log what failed.
            tracing::warn!(path = ?path.as_str(), %err, "a download failed reading the file");
            StorageError::from_io(&err, &path)
        }
        other => failed(&path, &other.to_string()),
    })?;
    if source.digest.is_none() {
        // Hashed while sending: remember it, so the next download need not.
        if let Err(err) = session.home.record_digest(&path, &source.version, digest).await {
            tracing::warn!(path = ?path.as_str(), %err, "cannot record digest");
        }
    }
    Ok(Reply::Done { size: source.size, sha256: digest.to_string(), version: None })
}

fn failed(path: &wharf_common::path::RemotePath, why: &str) -> StorageError {
    StorageError::new(ErrorCode::TransferFailed, format!("{path}: download failed: {why}"))
}
