//! Transfer streams of one connection: ids, and routing incoming upload streams to their `put`.
//!
//! A `put` registers a fresh id and waits; the client opens a unidirectional stream whose header names
//! that id. A stream whose header is late, malformed, or names an id nobody waits for (unknown, already
//! served, or another connection's, since ids are per connection) is stopped with
//! [`STOP_UNKNOWN_TRANSFER`] and harms nothing else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use wharf_common::transfer::read_header;

/// Stream stop code: the header named no transfer waiting on this connection.
pub const STOP_UNKNOWN_TRANSFER: u32 = 1;
/// Stream stop code: the receiver gave up on the transfer (bad data, write error).
pub const STOP_TRANSFER_FAILED: u32 = 2;
/// How long a new stream may take to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Upload streams awaited by `put` requests, by transfer id.
#[derive(Debug, Default)]
pub struct TransferStreams {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<quinn::RecvStream>>>,
}

impl TransferStreams {
    /// A fresh transfer id for this connection.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a fresh id and returns it with the receiver its stream will arrive on.
    pub fn expect(&self) -> (u64, oneshot::Receiver<quinn::RecvStream>) {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        (id, rx)
    }

    /// Forgets an id whose stream will no longer be read.
    pub fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<quinn::RecvStream>>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads a new stream's header and hands the stream to its `put`, or stops it.
    pub async fn route(&self, mut stream: quinn::RecvStream) {
        let header = tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await;
        let waiter = match header {
            Ok(Ok(header)) => self.lock().remove(&header.transfer),
            _ => None,
        };
        match waiter {
            Some(waiter) => {
                if let Err(mut stream) = waiter.send(stream) {
                    let _ = stream.stop(quinn::VarInt::from_u32(STOP_UNKNOWN_TRANSFER));
                }
            }
            None => {
                tracing::debug!("stopping a stream that names no waiting transfer");
                let _ = stream.stop(quinn::VarInt::from_u32(STOP_UNKNOWN_TRANSFER));
            }
        }
    }
}
