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

mod ahead;
mod direct;
mod ends;
pub mod lanes;
mod order;
mod pool;
mod receive;
mod record;
mod send;
mod workers;
mod write;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::frame::{FrameError, decode_body, encode_frame, read_frame};

pub use ahead::{AHEAD_PER_FILE, AHEAD_PER_PROCESS};
pub use direct::{DIRECT_FROM, Unbuffered};
pub use ends::{Destination, Held, Recorded, Source};
pub use order::OutgoingLanes;
pub use pool::MAX_IDLE_CHUNKS;
pub use receive::{Received, Written, receive_file};
pub use record::PartialRecord;
pub use send::send_file;
pub use wharf_wire::lane::{
    EARLY_LANE_WAIT, HEADER_TIMEOUT, LaneFrame, MAX_EARLY_LANES, MAX_LANES, PIECE_SIZE, Plan,
    RESUME_MIN_SIZE, STOP_TRANSFER_FAILED, STOP_UNCLAIMED_LANE, StreamHeader,
};
pub use wharf_wire::ranges::{MAX_RANGES, Ranges};
pub use workers::{MIN_TRANSFER_THREADS, run as run_on_transfer_thread, set_thread_niceness};
pub use write::{CHECKPOINT_EVERY, Durability};

/// Bytes read from disk and written to a stream at a time.
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// Chunks in flight between the disk and one lane: reads ahead of a sending lane, and chunks queued for
/// the writer per receiving lane (bounds memory per lane to 4 MiB).
const CHUNKS_IN_FLIGHT: usize = 4;

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
    /// Whether the peer broke the transfer off (stopped reading an upload; ended a download's
    /// lanes early, reset them, or never opened one), so that the peer's own reply, not this end,
    /// can say why.
    pub fn broken_off_by_peer(&self) -> bool {
        matches!(
            self,
            TransferError::Truncated { .. }
                | TransferError::LaneMissing
                | TransferError::Read(quinn::ReadError::Reset(_))
                | TransferError::Write(quinn::WriteError::Stopped(_))
        )
    }

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
    // Sized to the range: a small file's hash should not zero a quarter of a megabyte.
    let len = usize::try_from(end.saturating_sub(start)).unwrap_or(HASH_BUFFER);
    let mut buf = vec![0u8; len.min(HASH_BUFFER)];
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
