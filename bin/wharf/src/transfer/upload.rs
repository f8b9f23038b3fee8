//! `put`: announce the file, send what the server lacks on the lanes it names, and check that the
//! digest it stored is the one sent. A small file is sent eagerly, without waiting for the
//! `transfer` reply (PROTOCOL.md, section 5.1).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wharf_common::hash::Sha256Digest;
use wharf_common::limits::MAX_EAGER_SIZE;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_common::transfer::{DEFAULT_STALL_TIMEOUT, Plan, Ranges, StreamHeader, send_file};

use super::{OnBytes, Outcome, checked_plan, failed, local_error, unexpected};
use crate::error::{ClientError, Result};
use crate::link::Link;
use crate::local::blocking;
use crate::rpc::Replies;
use crate::session::Session;

/// How [`Session::put_with`] uploads.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    /// Continue an interrupted upload of the same file.
    pub resume: bool,
    /// The stored file gets the local file's modification time (`put -p`).
    pub keep_time: bool,
    /// The server makes the missing folders above the remote path first.
    pub make_parents: bool,
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
        self.put_with(local, remote, PutOptions { resume, ..PutOptions::default() }, on_bytes).await
    }

    /// Like [`Session::put`], as `options` say.
    pub async fn put_with(
        &self,
        local: &Path,
        remote: &RemotePath,
        options: PutOptions,
        on_bytes: OnBytes<'_>,
    ) -> Result<Outcome> {
        let PutOptions { resume, keep_time, make_parents } = options;
        let started = Instant::now();
        let (file, meta) = open_local(local).await?;
        let size = meta.len();
        let link = self.link();
        // A small file goes at once, without waiting a round trip for the `transfer` reply. Its
        // number is given as the request is sent.
        let eager = (size <= MAX_EAGER_SIZE).then_some(0);
        let cmd = Command::Put {
            path: remote.to_string(),
            size,
            source: crate::local::content_version(&meta),
            resume: resume && eager.is_none(),
            mtime: keep_time.then(|| meta.mtime()),
            eager,
            parents: make_parents,
        };
        let mut replies = link.rpc.request(cmd).await?;
        let (header, plan) = plan(&link, &mut replies, size).await?;
        on_bytes(plan.present());
        let sent = send_file(
            &link.outgoing,
            header,
            Arc::new(file),
            &plan,
            None,
            DEFAULT_STALL_TIMEOUT,
            on_bytes,
        )
        .await;
        let sent = match sent {
            Ok(digest) => digest,
            Err(err) => return Err(failed(&link, &mut replies, remote, local, err).await),
        };
        let version = stored(&link, &mut replies, &plan, remote, sent).await?;
        let (resumed_from, elapsed) = (plan.present(), started.elapsed());
        Ok(Outcome { size, resumed_from, sha256: sent, elapsed, version })
    }
}

/// Opens the local file, which must not be a directory.
async fn open_local(local: &Path) -> Result<(std::fs::File, std::fs::Metadata)> {
    let path = local.to_owned();
    let (file, meta) = blocking(move || {
        let file = std::fs::File::open(&path)?;
        let meta = file.metadata()?;
        Ok::<_, std::io::Error>((file, meta))
    })
    .await
    .map_err(local_error(local))?;
    if meta.is_dir() {
        return Err(local_error(local)(std::io::ErrorKind::IsADirectory.into()));
    }
    Ok((file, meta))
}

/// The lanes' header and the plan: for an eager upload, the whole file on the lane of its number,
/// at once; otherwise what the server's `transfer` reply asks for.
async fn plan(link: &Link, replies: &mut Replies, size: u64) -> Result<(StreamHeader, Plan)> {
    if let Some(number) = replies.eager() {
        return Ok((StreamHeader::eager(number), Plan::new(size, Ranges::full(size), u64::MAX, 1)));
    }
    match link.rpc.next_reply(replies).await? {
        Reply::Transfer { transfer, size: announced, ranges, lanes, .. } if announced == size => {
            Ok((StreamHeader::of(transfer), checked_plan(size, &ranges, lanes)?))
        }
        other => Err(unexpected(&other)),
    }
}

/// Waits for the server to say it stored what was sent: the `transfer` reply an eager upload did
/// not wait for (all of the file owed, one lane), then `done` with the digest sent. Returns the
/// stored file's version, if the server said it.
async fn stored(
    link: &Link,
    replies: &mut Replies,
    plan: &Plan,
    remote: &RemotePath,
    sent: Sha256Digest,
) -> Result<Option<String>> {
    if replies.eager().is_some() {
        match link.rpc.next_reply(replies).await? {
            Reply::Transfer { transfer: 0, size, ranges, lanes: 1, .. }
                if size == plan.size && ranges == plan.ranges => {}
            other => return Err(unexpected(&other)),
        }
    }
    match link.rpc.next_reply(replies).await? {
        Reply::Done { sha256, version, .. } if sha256 == sent.to_string() => Ok(version),
        Reply::Done { sha256, .. } => Err(ClientError::Remote {
            code: ErrorCode::ChecksumMismatch,
            message: format!("{remote}: server stored {sha256}, but {sent} was sent"),
        }),
        other => Err(unexpected(&other)),
    }
}
