//! Uploading and downloading one file, verified by SHA-256, resumable.
//!
//! - [`upload`]: the local file's content version (size, times, inode) is the `source` the server
//!   keys its partial by, so a resume never splices a changed file onto old bytes. The server
//!   verifies the whole file and only then renames it into place.
//! - [`download`]: bytes land in a partial file beside the destination ([`part`]), verified whole
//!   before it is renamed to its name.

mod download;
mod part;
mod upload;

use std::path::Path;
use std::time::Duration;

use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::{ErrorCode, Reply};
use wharf_common::transfer::{Plan, Ranges, TransferError};

use crate::error::{ClientError, Result};
use crate::link::Link;
use crate::rpc::Replies;

pub use part::part_path;
pub use upload::PutOptions;

/// What a finished transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub size: u64,
    /// Bytes that were already in place from an earlier attempt.
    pub resumed_from: u64,
    pub sha256: Sha256Digest,
    pub elapsed: Duration,
    /// After an upload, the stored file's version, if the server said it (servers before it
    /// was added do not); none after a download.
    pub version: Option<String>,
}

/// Called as bytes move: first with the bytes already in place (a resume), then per chunk.
pub type OnBytes<'a> = &'a (dyn Fn(u64) + Send + Sync);

fn local_error(context: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |err| ClientError::local(context.display().to_string(), err)
}

/// What a failed transfer means to the user, and so its exit code: a lost connection is the
/// network's (and worth a reconnection), a panic is the client's own bug, a local file error is
/// the local disk's.
fn transfer_error(what: &str, local: &Path, err: TransferError) -> ClientError {
    if let Some(lost) = err.connection_lost() {
        return crate::rpc::closed_error(lost);
    }
    match err {
        // This end's own file: named as it is here, or a full local disk reads as the server's.
        TransferError::File(err) => ClientError::local(local.display().to_string(), err),
        TransferError::Panicked | TransferError::ThreadsStopped => {
            ClientError::Internal(format!("{what}: {err}"))
        }
        other => ClientError::Remote {
            code: ErrorCode::TransferFailed,
            message: format!("{what}: {other}"),
        },
    }
}

/// How long a transfer the server broke off waits for the server's reply saying why.
const REASON_WAIT: Duration = Duration::from_secs(5);

/// The error of a transfer that failed: the server's reply when the server broke it off (over
/// quota, or its store failed, which a stopped or ended lane cannot tell), else what failed here
/// (this end's own disk, or the connection).
async fn failed(
    link: &Link,
    replies: &mut Replies,
    remote: &RemotePath,
    local: &Path,
    err: TransferError,
) -> ClientError {
    if err.broken_off_by_peer()
        && let Ok(Err(reason @ ClientError::Remote { .. })) =
            tokio::time::timeout(REASON_WAIT, link.rpc.next_reply(replies)).await
    {
        return reason;
    }
    transfer_error(&remote.to_string(), local, err)
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
                "here/x: no storage space",
            ),
            (TransferError::Stalled(Duration::from_secs(60)), 1, "/x: no progress for 60 s"),
        ];
        for (err, code, starts) in cases {
            let mapped = transfer_error("/x", Path::new("here/x"), err);
            assert_eq!(mapped.exit_code(), code, "{mapped}");
            assert!(mapped.to_string().starts_with(starts), "{mapped}");
        }
    }
}
