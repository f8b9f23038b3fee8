//! `get {path, offset, version}` → `transfer {transfer, offset, size, version}`, then the bytes on a
//! stream the server opens, then `done {size, sha256}`.
//!
//! A resume (`offset` > 0) is honoured only if `version` is the file's current version; otherwise the
//! transfer starts at 0, so a changed file is never spliced onto an old partial.

use wharf_common::proto::{ErrorCode, Reply};
use wharf_common::transfer::{StreamHeader, send_file};

use super::{CmdResult, Progress, Session, parse_path};
use crate::storage::StorageError;

pub async fn run(
    session: &Session,
    path: &str,
    offset: u64,
    version: Option<String>,
    progress: &Progress<'_>,
) -> CmdResult {
    let path = parse_path(path)?;
    let source = session.home.begin_download(&path).await?;
    let same_file = version.as_deref() == Some(source.version.as_str());
    let offset = if same_file && offset <= source.size { offset } else { 0 };
    let id = session.transfers.next_id();
    let ready = Reply::Transfer {
        transfer: id,
        offset,
        size: source.size,
        version: source.version.clone(),
    };
    if !progress.send(ready).await {
        return Err(failed(&path, "connection closed"));
    }
    let mut stream =
        session.conn.open_uni().await.map_err(|err| failed(&path, &err.to_string()))?;
    let header = StreamHeader { transfer: id };
    let digest =
        send_file(&mut stream, header, source.file, (offset, source.size), source.digest, |_| {})
            .await
            .map_err(|err| failed(&path, &err.to_string()))?;
    if source.digest.is_none() {
        // Hashed while sending: remember it, so the next download need not.
        if let Err(err) = session.home.record_digest(&path, &source.version, digest).await {
            tracing::warn!(%path, %err, "cannot record digest");
        }
    }
    Ok(Reply::Done { size: source.size, sha256: digest.to_string() })
}

fn failed(path: &wharf_common::path::RemotePath, why: &str) -> StorageError {
    StorageError::new(ErrorCode::TransferFailed, format!("{path}: download failed: {why}"))
}
