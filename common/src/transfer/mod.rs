//! Moving one file's bytes over QUIC unidirectional streams ("lanes"), verified by SHA-256.
//!
//! The control stream's `transfer` reply fixes a [`Plan`]: the file's size, the byte ranges the
//! sender must send (all of them, or what a resumed receiver still lacks), and how many lanes carry
//! them. Both ends cut those ranges into the same pieces of [`PIECE_SIZE`] bytes. Each lane carries,
//! in order:
//!
//! 1. a header frame, [`StreamHeader`], naming the transfer;
//! 2. any number of pieces, each a [`LaneFrame::Segment`] frame followed by its raw bytes;
//! 3. a [`LaneFrame::End`] frame with the SHA-256 of the *whole* file, then the end of the stream.
//!
//! The sender's lanes take pieces from one shared queue as they drain, so a fast lane ends up
//! carrying more pieces than a slow one and every lane stays busy until the queue is empty. The
//! receiver writes each piece in place and hashes the file in order as its prefix fills in
//! ([`receive`], [`write`]). Disk I/O and hashing run as short jobs on a few transfer threads
//! ([`workers`]), never on the async runtime; 1 MiB [`bytes::Bytes`] chunks pass to and from QUIC
//! without copies (`read_chunk` / `write_chunk`), in buffers that are reused ([`pool`]).

mod ends;
pub mod lanes;
mod pool;
mod ranges;
mod receive;
mod send;
mod workers;
mod write;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::frame::{FrameError, decode_body, encode_frame, read_frame};

pub use ends::{Destination, Held, Recorded, Source};
pub use pool::MAX_IDLE_CHUNKS;
pub use ranges::{MAX_RANGES, Ranges};
pub use receive::{Received, STOP_TRANSFER_FAILED, Written, receive_file};
pub use send::send_file;
pub use workers::{MIN_TRANSFER_THREADS, run as run_on_transfer_thread, set_thread_niceness};
pub use write::{CHECKPOINT_EVERY, Durability};

/// Bytes read from disk and written to a stream at a time.
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// The unit a lane takes from the queue. Small enough that the lanes finish close together, large
/// enough that the per-piece frame and queue costs vanish.
pub const PIECE_SIZE: u64 = 8 * 1024 * 1024;

/// Most lanes one transfer may use; a peer asking for more is refused.
pub const MAX_LANES: u32 = 16;

/// Files smaller than this are never resumed, in either direction: their partial metadata would cost
/// more (inodes, on a busy filesystem) than sending them again. Measured in the benchmark: 1,000
/// uploads of 4 KiB took 6.6 s with metadata and digest records for every file.
pub const RESUME_MIN_SIZE: u64 = 1024 * 1024;

/// Chunks in flight between the disk and one lane: reads ahead of a sending lane, and chunks queued for
/// the writer per receiving lane (bounds memory per lane to 4 MiB).
const CHUNKS_IN_FLIGHT: usize = 4;

/// What the `transfer` reply fixed: the file's size, the ranges to send, and the number of lanes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub size: u64,
    pub ranges: Ranges,
    pub lanes: u32,
}

impl Plan {
    /// The plan a sender proposes for a file of `size` bytes of which `ranges` are owed: one lane
    /// below `segment_threshold` bytes, otherwise up to `max_lanes` (never more lanes than pieces).
    pub fn new(size: u64, ranges: Ranges, segment_threshold: u64, max_lanes: u32) -> Plan {
        let pieces = u32::try_from(ranges.pieces(PIECE_SIZE).len()).unwrap_or(u32::MAX);
        let lanes =
            if size < segment_threshold { 1 } else { max_lanes.min(pieces).clamp(1, MAX_LANES) };
        Plan { size, ranges, lanes }
    }

    /// Checks a plan received from a peer: ranges within the file, a sane number of lanes.
    pub fn checked(size: u64, ranges: &Ranges, lanes: u32) -> Option<Plan> {
        let ranges = Ranges::checked(ranges, size)?;
        (1..=MAX_LANES).contains(&lanes).then_some(Plan { size, ranges, lanes })
    }

    /// Bytes already in place at the receiver.
    pub fn present(&self) -> u64 {
        self.size - self.ranges.total()
    }
}

/// First frame of a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    /// The id the control stream's `transfer` reply gave; 0 on an eager upload's lane.
    pub transfer: u64,
    /// On an eager upload's lane (sent without waiting for the `transfer` reply): the `eager`
    /// number of its `put`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eager: Option<u64>,
}

impl StreamHeader {
    /// The header of a lane of the transfer `transfer`.
    pub fn of(transfer: u64) -> StreamHeader {
        StreamHeader { transfer, eager: None }
    }

    /// The header of the lane of the eager upload numbered `eager`.
    pub fn eager(eager: u64) -> StreamHeader {
        StreamHeader { transfer: 0, eager: Some(eager) }
    }
}

/// The frames that follow a lane's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum LaneFrame {
    /// The next `len` raw bytes are the file's bytes from `offset`: exactly one piece of the plan.
    Segment { offset: u64, len: u64 },
    /// The lane is done; `sha256` is the digest of the whole file, 64 lowercase hex digits.
    End { sha256: String },
}

/// Why a transfer failed. QUIC's errors stay typed, so that a caller can tell a lost connection
/// ([`TransferError::connection_lost`]) from a peer that gave up on one lane.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Reading or writing the file's bytes failed.
    #[error("file error: {0}")]
    File(#[from] std::io::Error),
    /// A lane could not be opened: the connection is gone.
    #[error("cannot open a lane: {0}")]
    Open(#[from] quinn::ConnectionError),
    /// Sending on a lane failed: the peer stopped it, or the connection is gone.
    #[error("sending failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// Receiving on a lane failed: the peer reset it, or the connection is gone.
    #[error("receiving failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// A lane was finished twice, or after it was reset.
    #[error("the lane was already closed")]
    Closed(#[from] quinn::ClosedStream),
    /// A lane of the plan never arrived.
    #[error("a lane of the transfer never arrived")]
    LaneMissing,
    /// The writer stopped before the lanes did (its own error, if any, is reported instead).
    #[error("the writer stopped")]
    WriterStopped,
    /// A job on a transfer thread panicked: a bug, not the network's fault.
    #[error("a transfer thread panicked")]
    Panicked,
    /// The transfer threads are gone (the process is going down).
    #[error("the transfer threads stopped")]
    ThreadsStopped,
    /// A newer transfer of the same file took it over.
    #[error("a newer transfer of this file took over")]
    Superseded,
    /// The lanes ended before all owed bytes arrived.
    #[error("the transfer ended after {received} of {expected} bytes")]
    Truncated { received: u64, expected: u64 },
    /// The sender broke the lane framing: a piece not in the plan, data past a piece, a bad frame.
    #[error("sender broke the transfer framing: {0}")]
    Framing(String),
    /// The source file is shorter than announced (it changed during the transfer).
    #[error("the source file changed during the transfer")]
    SourceChanged,
    /// Nothing moved on a lane for the stall timeout: the peer stopped reading or sending.
    #[error("no progress for {} s: the peer stopped reading or sending", .0.as_secs())]
    Stalled(std::time::Duration),
}

impl TransferError {
    /// The connection's error, if the transfer failed because its connection ended.
    pub fn connection_lost(&self) -> Option<&quinn::ConnectionError> {
        match self {
            TransferError::Open(err)
            | TransferError::Write(quinn::WriteError::ConnectionLost(err))
            | TransferError::Read(quinn::ReadError::ConnectionLost(err)) => Some(err),
            _ => None,
        }
    }
}

/// Runs one step of a lane, failing it with [`TransferError::Stalled`] if it takes longer than
/// `stall`: a peer that stops reading (or sending) must not hold a transfer, its threads and its
/// buffers forever.
async fn within<T>(
    stall: std::time::Duration,
    step: impl Future<Output = Result<T, TransferError>>,
) -> Result<T, TransferError> {
    tokio::time::timeout(stall, step).await.unwrap_or(Err(TransferError::Stalled(stall)))
}

/// How long a lane may make no progress before the transfer fails, unless the caller says otherwise.
pub const DEFAULT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Most bytes one job hashes of a file already on disk, so that no job holds a transfer thread long.
const HASH_STEP: u64 = 8 * 1024 * 1024;

/// Bytes read at a time to hash a file already on disk: large enough for full speed, small enough
/// that hundreds of concurrent hashes cost little memory.
const HASH_BUFFER: usize = 256 * 1024;

/// Hashes `source[start..end]` into `hasher`.
pub fn hash_range(
    source: &(impl Source + ?Sized),
    start: u64,
    end: u64,
    hasher: &mut Sha256,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; HASH_BUFFER];
    let mut position = start;
    while position < end {
        let want = usize::try_from(end - position).unwrap_or(HASH_BUFFER).min(HASH_BUFFER);
        read_exact_at(source, &mut buf[..want], position)?;
        hasher.update(&buf[..want]);
        position += want as u64;
    }
    Ok(())
}

fn read_exact_at(
    source: &(impl Source + ?Sized),
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<()> {
    source.read_exact_at(buf, offset).map_err(|err| match err.kind() {
        std::io::ErrorKind::UnexpectedEof => std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file is shorter than announced",
        ),
        _ => err,
    })
}

async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
) -> Result<(), TransferError> {
    let frame = encode_frame(msg).map_err(|err| TransferError::Framing(err.to_string()))?;
    Ok(send.write_all(&frame).await?)
}

/// Reads a lane's next frame; `None` if the lane ended there, between frames.
async fn read_lane_frame(recv: &mut quinn::RecvStream) -> Result<Option<LaneFrame>, TransferError> {
    let Some(body) = read_frame(recv).await.map_err(|err| match err {
        // Frames are read through `AsyncRead`, which wraps quinn's error in an `io::Error`.
        FrameError::Io(err) => match err.downcast::<quinn::ReadError>() {
            Ok(err) => TransferError::Read(err),
            Err(err) => TransferError::File(err),
        },
        other => {
            TransferError::Framing(format!("bad frame where a segment or end was due: {other}"))
        }
    })?
    else {
        return Ok(None);
    };
    decode_body(&body).map(Some).map_err(|err| TransferError::Framing(err.to_string()))
}

/// Reads the header frame of an incoming lane.
pub async fn read_header(recv: &mut quinn::RecvStream) -> Result<StreamHeader, FrameError> {
    let body = read_frame(recv).await?.ok_or(FrameError::Truncated)?;
    decode_body(&body)
}
