//! The sending end: lanes that take pieces from a shared queue, and a whole-file hash beside them.
//! Reading and hashing run as short jobs on the transfer threads ([`super::workers`]).

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, Shared, try_join_all};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt as _, StreamExt as _};
use sha2::{Digest as _, Sha256};

use super::order::OutgoingLanes;
use super::pool::ChunkBuf;
use super::{
    CHUNK_SIZE, CHUNKS_IN_FLIGHT, HASH_STEP, LaneFrame, PIECE_SIZE, Plan, Source, StreamHeader,
    TransferError, hash_range, within, workers, write_frame,
};
use crate::hash::Sha256Digest;

/// Pieces not yet taken by a lane.
type Queue = Arc<Mutex<VecDeque<(u64, u64)>>>;

/// What one lane sends, besides the digest it ends with.
struct LaneWork {
    header: StreamHeader,
    /// The size of the small file the lane carries whole, which takes a place in line
    /// ([`super::order`]).
    whole: Option<u64>,
    content: Content,
    queue: Queue,
    stall: Duration,
}

/// Where the lanes read the bytes they send.
#[derive(Clone)]
enum Content {
    /// The source, a chunk at a time on the transfer threads.
    Source(Arc<dyn Source>),
    /// A small file, read whole by the job that hashed it.
    Held(Bytes),
}

impl Content {
    /// The `want` bytes at `position`.
    async fn read(&self, position: u64, want: usize) -> Result<Bytes, TransferError> {
        match self {
            Content::Source(source) => {
                let source = source.clone();
                workers::run(move || read_chunk(&*source, position, want)).await?
            }
            Content::Held(all) => {
                // The plan's pieces lie inside the file, so this fails only on a bug.
                let past_the_end = || {
                    let message = "a piece past the end of the file";
                    TransferError::File(std::io::Error::new(ErrorKind::InvalidInput, message))
                };
                let start = usize::try_from(position).map_err(|_| past_the_end())?;
                let end = start.checked_add(want).filter(|&end| end <= all.len());
                Ok(all.slice(start..end.ok_or_else(past_the_end)?))
            }
        }
    }
}

/// The whole file's digest, computed once and awaited by every lane.
type SharedDigest = Shared<BoxFuture<'static, Result<Sha256Digest, (std::io::ErrorKind, String)>>>;

/// Sends the plan's ranges of `source` as transfer `header` on `plan.lanes` new lanes of `out`,
/// each ending with the whole file's digest. With `known` (a digest recorded when the file was stored)
/// the file is not hashed; otherwise it is hashed beside the lanes. A lane that cannot move anything
/// for `stall` fails the transfer. `progress` is called with each chunk's length as it is handed to
/// QUIC.
pub async fn send_file(
    out: &OutgoingLanes,
    header: StreamHeader,
    source: Arc<dyn Source>,
    plan: &Plan,
    known: Option<Sha256Digest>,
    stall: Duration,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Sha256Digest, TransferError> {
    // Every lane ends with the digest, as soon as both its pieces and the hash are done: a lane that
    // finishes early ends without waiting for the others. Unless the digest is known or the file
    // is small (below), the hash is a task of its own so that it moves while the lanes do; it
    // stops if the transfer is dropped.
    let whole = plan.ranges.total() == plan.size;
    let small = usize::try_from(plan.size).ok().filter(|&size| whole && size <= CHUNK_SIZE);
    let ready = |digest| futures_util::future::ready(Ok(digest)).boxed().shared();
    let (content, digest, _hashing): (_, SharedDigest, _) = match (known, small) {
        (Some(known), _) => (Content::Source(source), ready(known), None),
        // A small file sent whole is read once, by one job that also hashes it: one read and one
        // trip to the transfer threads, where a separate hash took a second of each and a task
        // (1,000 gets of 4 KiB on loopback: server CPU 258 → 210 ms, medians of 10). The digest
        // is of exactly the bytes sent, as the receiver's check requires.
        (None, Some(size)) => {
            let (bytes, digest) = workers::run(move || read_and_hash(&*source, size)).await??;
            (Content::Held(bytes), ready(digest), None)
        }
        (None, None) => {
            let task = tokio::spawn(hash_file(source.clone(), plan.size));
            let abort = AbortOnDrop(task.abort_handle());
            let digest = async move {
                match task.await {
                    Ok(result) => result.map_err(|err| (err.kind(), err.to_string())),
                    Err(err) => Err((std::io::ErrorKind::Other, format!("hashing task: {err}"))),
                }
            };
            (Content::Source(source), digest.boxed().shared(), Some(abort))
        }
    };
    let queue: Queue = Arc::new(Mutex::new(plan.ranges.pieces(PIECE_SIZE)));
    let whole = small.map(|_| plan.size);
    let lanes = (0..plan.lanes).map(|_| {
        let lane =
            LaneWork { header, whole, content: content.clone(), queue: queue.clone(), stall };
        send_lane(out, lane, digest.clone(), progress)
    });
    let digests = try_join_all(lanes).await?;
    Ok(digests[0])
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Hashes `source[..size]`, [`HASH_STEP`] bytes per job.
async fn hash_file(source: Arc<dyn Source>, size: u64) -> std::io::Result<Sha256Digest> {
    let mut hasher = Sha256::new();
    let mut position = 0;
    while position < size {
        let end = size.min(position + HASH_STEP);
        let source = source.clone();
        let job = move || hash_range(&*source, position, end, &mut hasher).map(|()| hasher);
        hasher = workers::run(job).await.map_err(std::io::Error::other)??;
        position = end;
    }
    Ok(Sha256Digest::from_hasher(hasher))
}

/// One lane: opens a stream, sends pieces from the queue until it is empty, then the end frame. A
/// lane takes a piece only once it has sent the last, which is what lets a fast lane do a slow
/// lane's share.
async fn send_lane(
    out: &OutgoingLanes,
    LaneWork { header, whole, content, queue, stall }: LaneWork,
    digest: SharedDigest,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Sha256Digest, TransferError> {
    let open = async { out.open(whole).await.map_err(TransferError::from) };
    let mut lane = within(stall, open).await?;
    within(stall, write_frame(&mut lane.send, &header)).await?;
    loop {
        let next = queue.lock().pop_front();
        let Some((offset, len)) = next else { break };
        within(stall, write_frame(&mut lane.send, &LaneFrame::Segment { offset, len })).await?;
        // Up to CHUNKS_IN_FLIGHT reads ahead of the stream, so the disk and the network overlap.
        let mut reads = FuturesOrdered::new();
        let mut position = offset;
        loop {
            while reads.len() < CHUNKS_IN_FLIGHT && position < offset + len {
                let want =
                    usize::try_from(offset + len - position).unwrap_or(CHUNK_SIZE).min(CHUNK_SIZE);
                reads.push_back(content.read(position, want));
                position += want as u64;
            }
            let Some(chunk) = reads.next().await else { break };
            let chunk = chunk?;
            let len = chunk.len() as u64;
            out.before_chunk(&mut lane, len);
            let write = async { lane.send.write_chunk(chunk).await.map_err(TransferError::from) };
            within(stall, write).await?;
            progress(len);
            // Flow control often accepts chunk after chunk without blocking; yield once per chunk
            // so that other tasks run and a cancellation takes effect within one chunk.
            tokio::task::yield_now().await;
        }
    }
    let digest = digest.await.map_err(|(kind, message)| std::io::Error::new(kind, message))?;
    within(stall, write_frame(&mut lane.send, &LaneFrame::End { sha256: digest.to_string() }))
        .await?;
    lane.send.finish()?;
    Ok(digest)
}

/// Reads the whole of a small file and hashes what it read.
fn read_and_hash(source: &dyn Source, size: usize) -> Result<(Bytes, Sha256Digest), TransferError> {
    let bytes = read_chunk(source, 0, size)?;
    let digest = Sha256Digest::from_hasher(Sha256::new_with_prefix(&bytes));
    Ok((bytes, digest))
}

/// Reads `want` bytes at `position`. Positional reads: the lanes share one source, so a seek would
/// race.
fn read_chunk(source: &dyn Source, position: u64, want: usize) -> Result<Bytes, TransferError> {
    let mut chunk = ChunkBuf::with_room(want);
    source.read_exact_at(chunk.fill(want), position).map_err(|err| match err.kind() {
        std::io::ErrorKind::UnexpectedEof => TransferError::SourceChanged,
        _ => err.into(),
    })?;
    Ok(chunk.freeze())
}
