//! The lanes of a transfer on the wire: the plan both ends agree on, the frames a lane carries,
//! and the constants that bound them (`PROTOCOL.md`, section 5).
//!
//! The control stream's `transfer` reply fixes a [`Plan`]: the file's size, the byte ranges the
//! sender must send, and how many lanes carry them. Both ends cut those ranges into the same pieces
//! of [`PIECE_SIZE`] bytes. Each lane carries a [`StreamHeader`] frame, then pieces (each a
//! [`LaneFrame::Segment`] frame followed by its raw bytes), then a [`LaneFrame::End`] frame with the
//! SHA-256 of the whole file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ranges::Ranges;

/// The unit a lane takes from the queue. Small enough that the lanes finish close together, large
/// enough that the per-piece frame and queue costs vanish.
pub const PIECE_SIZE: u64 = 8 * 1024 * 1024;

/// Most lanes one transfer may use; a peer asking for more is refused.
pub const MAX_LANES: u32 = 16;

/// Files smaller than this are never resumed, in either direction: their partial metadata would cost
/// more (inodes, on a busy filesystem) than sending them again. Measured in the benchmark: 1,000
/// uploads of 4 KiB took 6.6 s with metadata and digest records for every file.
pub const RESUME_MIN_SIZE: u64 = 1024 * 1024;

/// Stream stop code a receiver uses when it gives up on a lane (bad data, write error).
pub const STOP_TRANSFER_FAILED: u32 = 2;

/// Stream stop code for a lane nobody waits for: its header was late or malformed, it names no
/// transfer awaited on this connection, it came past the planned number of lanes, or it waited too
/// long for its transfer.
pub const STOP_UNCLAIMED_LANE: u32 = 1;

/// How long a new stream may take to send its header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server keeps an eager upload's lane that arrived before its `put` was read.
pub const EARLY_LANE_WAIT: Duration = Duration::from_secs(10);
/// Eager lanes a server keeps at once per connection, waiting for their `put`: as many as the
/// streams a client may open at once by default.
pub const MAX_EARLY_LANES: usize = crate::limits::DEFAULT_MAX_UNI_STREAMS as usize;

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
