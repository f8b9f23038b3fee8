//! The receiving end: lanes that check every piece against the plan and gather what they carry
//! into chunks for the writer ([`super::write`]).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::Destination;
use super::pool::ChunkBuf;
use super::write::{Durability, write_in_place};
use super::{
    CHUNK_SIZE, CHUNKS_IN_FLIGHT, LaneFrame, PIECE_SIZE, Plan, STOP_TRANSFER_FAILED, TransferError,
    read_lane_frame, within,
};
use crate::hash::Sha256Digest;

/// How long each lane may take to arrive once the transfer is under way.
const LANE_WAIT: Duration = Duration::from_secs(30);
/// What a receiver got: the digest of the file as written, and the digest the sender claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub computed: Sha256Digest,
    pub claimed: Sha256Digest,
}

impl Received {
    pub fn verified(&self) -> bool {
        self.computed == self.claimed
    }
}

/// One chunk handed to the writer: its length, and how much it grew the file (what a quota
/// must charge, since bytes written into a hole left by an earlier attempt are already counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub grown: u64,
}

/// State the lanes of one transfer share.
struct Lanes<'a> {
    /// Pieces of the plan not yet received, by offset: a segment must name one exactly.
    pieces: Mutex<HashMap<u64, u64>>,
    /// The file's length as far as the chunks handed to the writer reach.
    high_water: AtomicU64,
    received: AtomicU64,
    expected: u64,
    disk: mpsc::Sender<(u64, Bytes)>,
    /// How long a lane may deliver nothing before the transfer fails.
    stall: Duration,
    progress: &'a (dyn Fn(Written) + Sync),
}

/// Receives the plan's ranges into `dest` from the lanes that arrive on `lanes` (headers already
/// read), checks that each lane ends properly, and returns the whole file's digest with the
/// sender's. Bytes outside the plan's ranges must already be in `dest`.
pub async fn receive_file(
    lanes: &mut mpsc::Receiver<quinn::RecvStream>,
    dest: impl Destination,
    plan: &Plan,
    durability: Durability,
    stall: Duration,
    progress: &(dyn Fn(Written) + Sync),
) -> Result<Received, TransferError> {
    let (disk, chunks) = mpsc::channel(CHUNKS_IN_FLIGHT * plan.lanes as usize);
    let (ready, initial_len) = oneshot::channel();
    let (present, size) = (plan.ranges.complement(plan.size), plan.size);
    // A task of its own: it writes what the lanes handed over even if this future is dropped.
    let writer = tokio::spawn(write_in_place(dest, present, size, chunks, durability, ready));
    let outcome = async {
        let initial_len = initial_len.await.map_err(|_| TransferError::WriterStopped)?;
        let shared = Lanes {
            pieces: Mutex::new(plan.ranges.pieces(PIECE_SIZE).into_iter().collect()),
            high_water: AtomicU64::new(initial_len),
            received: AtomicU64::new(0),
            expected: plan.ranges.total(),
            disk,
            stall,
            progress,
        };
        let claims = receive_lanes(lanes, plan.lanes, &shared).await?;
        Ok::<_, TransferError>((claims, shared.received.load(Ordering::Relaxed)))
    }
    .await;
    // The writer's error (a full disk, say) explains a stopped lane better than the lane does.
    let computed = writer.await.map_err(|err| match err.is_panic() {
        true => TransferError::Panicked,
        false => TransferError::WriterStopped,
    })??;
    let (claims, received) = outcome?;
    let computed =
        computed.ok_or(TransferError::Truncated { received, expected: plan.ranges.total() })?;
    let claimed = claims[0];
    if claims.iter().any(|claim| *claim != claimed) {
        return Err(TransferError::Framing("the lanes' end frames name different digests".into()));
    }
    Ok(Received { computed, claimed })
}

/// How a lane that broke no rule ended.
enum LaneEnd {
    /// With its end frame, which names the whole file's digest.
    Claimed(Sha256Digest),
    /// Early, without an end frame: the sender stopped (cancelled, say) and finished its lanes.
    Stopped,
}

/// Runs the lanes as they arrive until each has sent its end frame; returns their digests.
///
/// A lane that stops early does not abandon the others: a sender that stops finishes all its
/// lanes, and what they still carry is worth writing, since a resume then need not send it again.
/// A lane that breaks the rules (or is reset) ends the transfer at once.
async fn receive_lanes(
    arrivals: &mut mpsc::Receiver<quinn::RecvStream>,
    lanes: u32,
    shared: &Lanes<'_>,
) -> Result<Vec<Sha256Digest>, TransferError> {
    let mut running = FuturesUnordered::new();
    let mut arrived = 0;
    let mut claims = Vec::new();
    let mut stopped = false;
    while claims.len() < lanes as usize {
        tokio::select! {
            stream = tokio::time::timeout(LANE_WAIT, arrivals.recv()), if !stopped && arrived < lanes => {
                let stream = stream.ok().flatten().ok_or_else(|| {
                    TransferError::LaneMissing
                })?;
                arrived += 1;
                running.push(receive_lane(stream, shared));
            }
            Some(end) = running.next(), if !running.is_empty() => match end? {
                LaneEnd::Claimed(claim) => claims.push(claim),
                LaneEnd::Stopped => {
                    stopped = true;
                    // Lanes that arrived are drained too; lanes never opened are not waited for.
                    while arrived < lanes {
                        let Ok(stream) = arrivals.try_recv() else { break };
                        arrived += 1;
                        running.push(receive_lane(stream, shared));
                    }
                }
            },
            else => break,
        }
    }
    let missing = shared.pieces.lock().len();
    if stopped || missing > 0 || claims.len() < lanes as usize {
        let received = shared.received.load(Ordering::Relaxed);
        return Err(TransferError::Truncated { received, expected: shared.expected });
    }
    Ok(claims)
}

/// One lane: pieces until the end frame, which must be the last thing on the stream.
async fn receive_lane(
    mut recv: quinn::RecvStream,
    shared: &Lanes<'_>,
) -> Result<LaneEnd, TransferError> {
    let result = async {
        loop {
            match within(shared.stall, read_lane_frame(&mut recv)).await? {
                None => return Ok(LaneEnd::Stopped),
                Some(LaneFrame::Segment { offset, len }) => {
                    take_piece(shared, offset, len)?;
                    if !receive_piece(&mut recv, offset, len, shared).await? {
                        return Ok(LaneEnd::Stopped);
                    }
                }
                Some(LaneFrame::End { sha256 }) => {
                    let claimed = sha256
                        .parse()
                        .map_err(|_| TransferError::Framing("bad digest in an end frame".into()))?;
                    return match recv.read_chunk(1, true).await {
                        Ok(None) => Ok(LaneEnd::Claimed(claimed)),
                        Ok(Some(_)) => {
                            Err(TransferError::Framing("data after an end frame".into()))
                        }
                        Err(err) => Err(err.into()),
                    };
                }
            }
        }
    }
    .await;
    if result.is_err() {
        let _ = recv.stop(quinn::VarInt::from_u32(STOP_TRANSFER_FAILED));
    }
    result
}

/// Marks a piece as taken; a segment that is not an outstanding piece of the plan (outside it, cut
/// differently, or sent twice) breaks the framing.
fn take_piece(shared: &Lanes<'_>, offset: u64, len: u64) -> Result<(), TransferError> {
    match shared.pieces.lock().remove(&offset) {
        Some(planned) if planned == len => Ok(()),
        _ => Err(TransferError::Framing(format!(
            "segment of {len} bytes at {offset} is not an outstanding piece of the transfer"
        ))),
    }
}

/// Reads one piece's bytes and hands them to the writer; `false` if the lane ended first (what
/// arrived of the piece is written all the same).
async fn receive_piece(
    recv: &mut quinn::RecvStream,
    offset: u64,
    len: u64,
    shared: &Lanes<'_>,
) -> Result<bool, TransferError> {
    let mut got = 0;
    while got < len {
        // QUIC hands over one packet's worth (about a kilobyte) at a time. Gathered into chunks
        // of up to 1 MiB, the writer makes a thousand times fewer writes, and the packet
        // buffers go back to QUIC at once instead of waiting in the queue.
        let size = usize::try_from(len - got).unwrap_or(CHUNK_SIZE).min(CHUNK_SIZE);
        let mut chunk = Gathered { shared, offset: offset + got, bytes: ChunkBuf::with_room(size) };
        let mut ended = false;
        while chunk.bytes.len() < size {
            let read = async {
                recv.read_chunk(size - chunk.bytes.len(), true).await.map_err(TransferError::from)
            };
            match within(shared.stall, read).await? {
                Some(packet) => chunk.bytes.extend_from_slice(&packet.bytes),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        let gathered = chunk.take();
        let gathered_len = gathered.len() as u64;
        if gathered_len > 0 {
            if shared.disk.send((offset + got, gathered)).await.is_err() {
                return Err(TransferError::WriterStopped);
            }
            got += gathered_len;
            count(shared, offset + got, gathered_len);
        }
        if ended {
            return Ok(false);
        }
        tokio::task::yield_now().await;
    }
    Ok(true)
}

/// Counts bytes handed to the writer, which writes all it is given: a chunk dropped by a
/// cancellation while waiting for the queue is neither written nor counted.
fn count(shared: &Lanes<'_>, end: u64, bytes: u64) {
    let grown = end.saturating_sub(shared.high_water.fetch_max(end, Ordering::Relaxed));
    shared.received.fetch_add(bytes, Ordering::Relaxed);
    (shared.progress)(Written { bytes, grown });
}

/// A chunk being gathered. If the lane stops before it is full (an error, a cancellation), what
/// arrived is still handed to the writer when there is room, so that a resume need not send
/// it again.
struct Gathered<'a, 'b> {
    shared: &'a Lanes<'b>,
    offset: u64,
    bytes: ChunkBuf,
}

impl Gathered<'_, '_> {
    fn take(&mut self) -> Bytes {
        self.bytes.freeze()
    }
}

impl Drop for Gathered<'_, '_> {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let (offset, bytes) = (self.offset, self.take());
        let len = bytes.len() as u64;
        if self.shared.disk.try_send((offset, bytes)).is_ok() {
            count(self.shared, offset + len, len);
        }
    }
}
