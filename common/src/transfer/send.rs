//! The sending end: lanes that take pieces from a shared queue, and a whole-file hash beside them.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared, try_join_all};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::{
    CHUNK_SIZE, CHUNKS_IN_FLIGHT, LaneFrame, PIECE_SIZE, Plan, StreamHeader, TransferError,
    hash_range, within, write_frame,
};
use crate::hash::Sha256Digest;

/// Pieces not yet taken by a lane.
type Queue = Arc<Mutex<VecDeque<(u64, u64)>>>;

/// What one lane needs besides the connection.
struct Lane {
    header: StreamHeader,
    file: Arc<File>,
    queue: Queue,
    stall: Duration,
}

/// What a lane's disk thread hands to its stream.
enum Item {
    Piece { offset: u64, len: u64 },
    Chunk(Bytes),
}

/// Sends the plan's ranges of `file` as transfer `header` on `plan.lanes` new streams of `conn`,
/// each ending with the whole file's digest. With `known` (a digest recorded when the file was stored)
/// the file is not hashed; otherwise a blocking thread hashes it beside the lanes. A lane that cannot
/// move anything for `stall` fails the transfer. `progress` is called with each chunk's length as it
/// is handed to QUIC.
pub async fn send_file(
    conn: &quinn::Connection,
    header: StreamHeader,
    file: File,
    plan: &Plan,
    known: Option<Sha256Digest>,
    stall: Duration,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Sha256Digest, TransferError> {
    let file = Arc::new(file);
    let size = plan.size;
    // Every lane ends with the digest, as soon as both its pieces and the hash are done: a lane that
    // finishes early ends without waiting for the others.
    let digest: SharedDigest = match known {
        Some(known) => futures_util::future::ready(Ok(known)).boxed().shared(),
        None => {
            let file = file.clone();
            let hashing = tokio::task::spawn_blocking(move || {
                let mut hasher = Sha256::new();
                hash_range(&file, 0, size, &mut hasher).map(|()| Sha256Digest::from_hasher(hasher))
            });
            async move {
                match hashing.await {
                    Ok(Ok(digest)) => Ok(digest),
                    Ok(Err(err)) => Err((err.kind(), err.to_string())),
                    Err(err) => Err((std::io::ErrorKind::Other, format!("hashing thread: {err}"))),
                }
            }
            .boxed()
            .shared()
        }
    };
    let queue: Queue = Arc::new(Mutex::new(plan.ranges.pieces(PIECE_SIZE)));
    let lanes = (0..plan.lanes).map(|_| {
        let lane = Lane { header, file: file.clone(), queue: queue.clone(), stall };
        send_lane(conn, lane, digest.clone(), progress)
    });
    let digests = try_join_all(lanes).await?;
    Ok(digests[0])
}

/// The whole file's digest, computed once and awaited by every lane.
type SharedDigest = Shared<BoxFuture<'static, Result<Sha256Digest, (std::io::ErrorKind, String)>>>;

/// One lane: opens a stream, sends pieces from the queue until it is empty, then the end frame.
async fn send_lane(
    conn: &quinn::Connection,
    Lane { header, file, queue, stall }: Lane,
    digest: SharedDigest,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Sha256Digest, TransferError> {
    let open =
        async { conn.open_uni().await.map_err(|err| TransferError::Stream(err.to_string())) };
    let mut send = within(stall, open).await?;
    within(stall, write_frame(&mut send, &header)).await?;
    let (tx, mut rx) = mpsc::channel::<Item>(CHUNKS_IN_FLIGHT);
    let reader = tokio::task::spawn_blocking(move || read_pieces(&file, &queue, &tx));
    while let Some(item) = rx.recv().await {
        match item {
            Item::Piece { offset, len } => {
                within(stall, write_frame(&mut send, &LaneFrame::Segment { offset, len })).await?;
            }
            Item::Chunk(chunk) => {
                let len = chunk.len() as u64;
                let write = async {
                    send.write_chunk(chunk)
                        .await
                        .map_err(|err| TransferError::Stream(err.to_string()))
                };
                within(stall, write).await?;
                progress(len);
                // Flow control often accepts chunk after chunk without blocking; yield once per
                // chunk so that other tasks run and a cancellation takes effect within one chunk.
                tokio::task::yield_now().await;
            }
        }
    }
    reader.await.map_err(|err| TransferError::Stream(format!("reader thread: {err}")))??;
    let digest = digest.await.map_err(|(kind, message)| std::io::Error::new(kind, message))?;
    within(stall, write_frame(&mut send, &LaneFrame::End { sha256: digest.to_string() })).await?;
    send.finish().map_err(|err| TransferError::Stream(err.to_string()))?;
    Ok(digest)
}

/// The blocking half of a lane: takes a piece when the lane has room for it, and reads it in chunks.
/// Taking pieces only as the lane drains is what lets a fast lane do a slow lane's share.
fn read_pieces(file: &File, queue: &Queue, tx: &mpsc::Sender<Item>) -> Result<(), TransferError> {
    loop {
        let Some((offset, len)) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
        else {
            return Ok(());
        };
        if tx.blocking_send(Item::Piece { offset, len }).is_err() {
            // The network side gave up; its error is the one to report.
            return Err(TransferError::Stream("sending stopped".into()));
        }
        // Positional reads: the lanes share one file description, so a seek would race.
        let mut position = offset;
        while position < offset + len {
            let want =
                usize::try_from(offset + len - position).unwrap_or(CHUNK_SIZE).min(CHUNK_SIZE);
            let mut chunk = vec![0u8; want];
            if let Err(err) = file.read_exact_at(&mut chunk, position) {
                return Err(match err.kind() {
                    std::io::ErrorKind::UnexpectedEof => TransferError::SourceChanged,
                    _ => err.into(),
                });
            }
            position += want as u64;
            if tx.blocking_send(Item::Chunk(Bytes::from(chunk))).is_err() {
                return Err(TransferError::Stream("sending stopped".into()));
            }
        }
    }
}
