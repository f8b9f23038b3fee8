//! `get`: claim the local partial, tell the server what it already holds, receive the rest on the
//! lanes the server opens, and rename the partial into place only once the whole file's SHA-256
//! matches (PROTOCOL.md, section 5.2).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wharf_common::claims;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Command, ErrorCode, Reply};
use wharf_common::transfer::{
    DEFAULT_STALL_TIMEOUT, Durability, Plan, Ranges, Received, Written, receive_file,
};

use super::part::LocalPart;
use super::{OnBytes, Outcome, checked_plan, failed, unexpected};
use crate::error::{ClientError, Result};
use crate::link::Link;
use crate::rpc::Replies;
use crate::session::Session;

impl Session {
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
        let part = LocalPart::of(dest);
        // An abandoned download of the same file may still be writing its partial: wait for it.
        let claim = self.downloads().claim_within(&part.part, claims::PATIENCE).await;
        let claim = claim.map(Arc::new).ok_or_else(|| {
            let why = "another download to this file is in progress";
            ClientError::Usage(format!("{}: {why}", dest.display()))
        })?;
        let (have, version) = if resume { part.existing().await } else { (Ranges::new(), None) };
        let link = self.link();
        let cmd = Command::Get { path: remote.to_string(), have: have.truncated(), version };
        let mut replies = link.rpc.request(cmd).await?;
        let (transfer, version, plan) = plan(&link, &mut replies, &have).await?;
        let mut lanes = link.incoming.claim(transfer, plan.lanes);
        let present = plan.ranges.complement(plan.size);
        let writer = part.open(plan.size, version, present, claim).await?;
        on_bytes(plan.present());
        let on_written = |written: Written| on_bytes(written.bytes);
        let (durability, stall) = (Durability::Lazy, DEFAULT_STALL_TIMEOUT);
        let received =
            match receive_file(&mut lanes, writer, &plan, durability, stall, &on_written).await {
                Ok(received) => received,
                Err(err) => return Err(failed(&link, &mut replies, remote, &part.part, err).await),
            };
        let done = link.rpc.next_reply(&mut replies).await?;
        if let Err(mismatch) = verified(remote, &received, &done) {
            part.discard().await;
            return Err(mismatch);
        }
        part.install().await?;
        let (size, resumed_from) = (plan.size, plan.present());
        let (sha256, elapsed) = (received.computed, started.elapsed());
        Ok(Outcome { size, resumed_from, sha256, elapsed, version: None })
    }
}

/// The `transfer` reply: its id, the file's version and the plan, which may only ask for more than
/// this client lacks, never less.
async fn plan(link: &Link, replies: &mut Replies, have: &Ranges) -> Result<(u64, String, Plan)> {
    let (transfer, version, plan) = match link.rpc.next_reply(replies).await? {
        Reply::Transfer { transfer, size, version, ranges, lanes } => {
            (transfer, version, checked_plan(size, &ranges, lanes)?)
        }
        other => return Err(unexpected(&other)),
    };
    let present = plan.ranges.complement(plan.size);
    if present.iter().any(|(start, end)| have.end_of_range_at(start).is_none_or(|e| e < end)) {
        return Err(ClientError::Protocol("the server skipped bytes this client lacks".into()));
    }
    Ok((transfer, version, plan))
}

/// Whether what was written is what the sender hashed and what the server says it sent.
fn verified(remote: &RemotePath, received: &Received, done: &Reply) -> Result<()> {
    let claimed = received.claimed.to_string();
    if received.verified() && matches!(done, Reply::Done { sha256, .. } if *sha256 == claimed) {
        return Ok(());
    }
    Err(ClientError::Remote {
        code: ErrorCode::ChecksumMismatch,
        message: format!(
            "{remote}: checksum mismatch (received {}, server says {}); the partial was removed",
            received.computed, received.claimed
        ),
    })
}
