//! Transfer streams of one connection: ids, and routing incoming upload lanes to their `put`.
//!
//! A `put` registers a fresh id with the number of lanes it expects; the client opens that many
//! unidirectional streams whose headers name the id. A stream whose header is late, malformed, or
//! names an id nobody waits for (unknown, already served, or another connection's, since ids are per
//! connection) is stopped with [`STOP_UNKNOWN_TRANSFER`] and harms nothing else. So is a lane past
//! the number expected.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use wharf_common::transfer::read_header;

/// Stream stop code: the header named no transfer waiting on this connection.
pub const STOP_UNKNOWN_TRANSFER: u32 = 1;
/// How long a new stream may take to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A `put` waiting for its lanes.
#[derive(Debug)]
struct Waiting {
    lanes: mpsc::Sender<quinn::RecvStream>,
    left: u32,
}

/// Upload lanes awaited by `put` requests, by transfer id.
#[derive(Debug, Default)]
pub struct TransferStreams {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiting>>,
}

impl TransferStreams {
    /// A fresh transfer id for this connection.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a fresh id expecting `lanes` streams and returns it with the receiver they will
    /// arrive on.
    pub fn expect(&self, lanes: u32) -> (u64, mpsc::Receiver<quinn::RecvStream>) {
        let id = self.next_id();
        let (tx, rx) = mpsc::channel(lanes.max(1) as usize);
        self.lock().insert(id, Waiting { lanes: tx, left: lanes });
        (id, rx)
    }

    /// Forgets an id whose streams will no longer be read.
    pub fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock()
    }

    /// Reads a new stream's header and hands the stream to its `put`, or stops it.
    pub async fn route(&self, mut stream: quinn::RecvStream) {
        let header = tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await;
        let waiter = match header {
            Ok(Ok(header)) => {
                let mut waiting = self.lock();
                let lanes = waiting.get_mut(&header.transfer).map(|waiting| {
                    waiting.left -= 1;
                    (waiting.lanes.clone(), waiting.left == 0)
                });
                if let Some((_, true)) = lanes {
                    waiting.remove(&header.transfer);
                }
                lanes.map(|(lanes, _)| lanes)
            }
            _ => None,
        };
        // The channel holds every expected lane, so a send fails only if the `put` has given up.
        let refused = match waiter {
            Some(lanes) => lanes.try_send(stream).err().map(|err| err.into_inner()),
            None => Some(stream),
        };
        if let Some(mut stream) = refused {
            tracing::debug!("stopping a stream that names no waiting transfer");
            let _ = stream.stop(quinn::VarInt::from_u32(STOP_UNKNOWN_TRANSFER));
        }
    }
}
