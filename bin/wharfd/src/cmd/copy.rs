//! `copy {from, to}` → `done {size, sha256, version}`: a file copied on the server, its bytes never
//! crossing the network, by the same steps as an upload of them.
//!
//! The copy is an upload whose sender is the source file: the quota is reserved before a byte
//! moves, the bytes go into a partial of `to` (claimed, as an upload's is), and only a copy whose
//! digest is right is made durable and renamed into place. When the source's digest was recorded
//! (it came by an upload, or was read since), the copy must match it: a source that no longer
//! does (its bytes rotted on the disk) is refused rather than spread. A copy that fails or is
//! cancelled leaves nothing, not even a partial: there is nothing to resume, the source is still
//! there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::Digest as _;
use wharf_common::claims::Claim;
use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::{ErrorCode, Reply};
use wharf_common::transfer::{Destination, Source, run_on_transfer_thread};

use super::put::{claim, reserve};
use super::{CmdResult, Session, parse_path};
use crate::context::UploadKey;
use crate::quota::UploadCharge;
use crate::storage::{DownloadSource, Home, StorageError, partial_key};

/// Bytes moved per job on a transfer thread. A copy is cancelled (the request dropped) between
/// jobs, and each job holds one buffer, so the memory copies take is bounded by the threads.
const CHUNK: u64 = 1 << 20;

pub async fn run(session: &Session, from: &str, to: &str) -> CmdResult {
    let (from, to) = (parse_path(from)?, parse_path(to)?);
    let source = session.home.begin_download(&from).await?;
    let key = partial_key(&to);
    let claim = claim(session, &to, &key).await?;
    let ledger = session.ledger.get().await?;
    // The source's version names what the partial holds, as an upload's `source` does.
    let target = session.home.begin_upload(&to, source.size, &source.version, false).await?;
    ledger.release(target.discarded);
    let charge = reserve(session, &ledger, &to, source.size, (target.len, target.replaced)).await?;
    // The copy runs to its end in a task of its own, so that a cancelled request (this future
    // dropped) still stops between chunks and drops its partial, holding the claim until then.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_when_dropped = StopWhenDropped(stop.clone());
    let copy = Copy { home: session.home.clone(), from, to, key, charge, stop, _claim: claim };
    let finished = tokio::spawn(copy.finish(source, target.dest)).await;
    finished.map_err(|err| StorageError::new(ErrorCode::Io, format!("the copy stopped: {err}")))?
}

/// A copy under way, with what it holds until it ends.
struct Copy {
    home: Arc<dyn Home>,
    from: RemotePath,
    to: RemotePath,
    key: String,
    charge: UploadCharge,
    stop: Arc<AtomicBool>,
    _claim: Arc<Claim<UploadKey>>,
}

impl Copy {
    /// Copies the bytes, then installs a copy that checks out, or drops the partial.
    async fn finish(self, source: DownloadSource, dest: Arc<dyn Destination>) -> CmdResult {
        let Copy { home, from, to, key, charge, stop, _claim } = self;
        let size = source.size;
        let copied = copy_bytes(source.source, dest, size, &charge, &stop).await;
        let refusal = match copied {
            Ok(digest) if source.digest.is_none_or(|recorded| recorded == digest) => {
                let installed = home.commit_upload(&key, &to, digest, None).await?;
                charge.installed(installed.replaced);
                if source.digest.is_none() {
                    // Read whole just now: remember it for the source too.
                    let recorded = home.record_digest(&from, &source.version, digest).await;
                    if let Err(err) = recorded {
                        tracing::warn!(path = ?from.as_str(), %err, "cannot record digest");
                    }
                }
                let (sha256, version) = (digest.to_string(), Some(installed.version));
                return Ok(Reply::Done { size, sha256, version });
            }
            Ok(digest) => StorageError::new(
                ErrorCode::ChecksumMismatch,
                format!(
                    "{from}: its bytes no longer match the digest recorded when it was stored \
                     (read {digest}, recorded {}); nothing was copied",
                    source.digest.map(|d| d.to_string()).unwrap_or_default()
                ),
            ),
            Err(err) => {
                if !stop.load(Ordering::Relaxed) {
                    tracing::warn!(path = ?to.as_str(), %err, "a copy failed");
                }
                StorageError::from_io(&err, &to)
            }
        };
        charge.discarded(home.discard_upload(&key).await?);
        Err(refusal)
    }
}

/// Tells the copy to stop when the request is dropped (cancelled) before it ends.
struct StopWhenDropped(Arc<AtomicBool>);

impl Drop for StopWhenDropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Copies `size` bytes from `source` into `dest` in order, a chunk per job on a transfer thread,
/// charging them to the quota as they are written, and returns their SHA-256. Fails once `stop`
/// is set.
async fn copy_bytes(
    source: Arc<dyn Source>,
    dest: Arc<dyn Destination>,
    size: u64,
    charge: &UploadCharge,
    stop: &AtomicBool,
) -> std::io::Result<Sha256Digest> {
    let mut hasher = sha2::Sha256::new();
    let mut offset = 0;
    while offset < size {
        if stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled"));
        }
        let len = CHUNK.min(size - offset);
        let (source, dest) = (source.clone(), dest.clone());
        let job = move || {
            let mut buf = vec![0; len as usize];
            source.read_exact_at(&mut buf, offset)?;
            hasher.update(&buf);
            dest.write_all_at(&buf, offset)?;
            Ok::<_, std::io::Error>(hasher)
        };
        hasher = run_on_transfer_thread(job).await.map_err(std::io::Error::other)??;
        charge.written(len);
        offset += len;
    }
    Ok(Sha256Digest::from_hasher(hasher))
}
