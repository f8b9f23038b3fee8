//! Transfer streams of one connection: ids, and routing incoming upload lanes to their `put`.
//!
//! A `put` registers a fresh id with the number of lanes it expects; the client opens that many
//! unidirectional streams whose headers name the id. A stream whose header is late, malformed, or
//! names an id nobody waits for (unknown, already served, or another connection's, since ids are per
//! connection) is stopped with [`STOP_UNKNOWN_TRANSFER`] and harms nothing else. So is a lane past
//! the number expected.
//!
//! An eager upload's lane names its `put`'s eager number instead of an id, and may arrive before its
//! request has been read. Requests announce their numbers in order, so a lane whose number is
//! higher than any announced is early and waits (at most [`EARLY_LANE_WAIT`], at most
//! [`MAX_EARLY_LANES`] of them); one whose number was announced is handed over or, if its request
//! has ended, stopped.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use wharf_common::transfer::{StreamHeader, read_header};

/// Stream stop code: the header named no transfer waiting on this connection.
pub const STOP_UNKNOWN_TRANSFER: u32 = 1;
/// How long a new stream may take to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a lane may wait for the eager `put` it names to be read.
const EARLY_LANE_WAIT: Duration = Duration::from_secs(10);
/// Lanes waiting for their eager `put` at once, per connection: as many as the streams a client
/// may open at once by default.
const MAX_EARLY_LANES: usize = 64;

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
    eager: Mutex<EagerLanes>,
}

/// Eager uploads' lanes, by eager number.
#[derive(Debug, Default)]
struct EagerLanes {
    /// The highest number announced so far (numbers start at 1).
    highest: u64,
    /// Announced uploads whose lane has not arrived.
    waiting: HashMap<u64, mpsc::Sender<quinn::RecvStream>>,
    /// Announced uploads whose `put` has not yet taken its lane's receiver.
    receivers: HashMap<u64, mpsc::Receiver<quinn::RecvStream>>,
    /// Lanes that arrived before their request was read.
    early: HashMap<u64, quinn::RecvStream>,
}

/// An eager upload's hold on its lane: dropping it (the `put` ended, however) stops a lane that
/// arrives later.
pub struct EagerLane<'a> {
    streams: &'a TransferStreams,
    number: u64,
    pub lanes: mpsc::Receiver<quinn::RecvStream>,
}

impl Drop for EagerLane<'_> {
    fn drop(&mut self) {
        stop_all(&mut self.lanes);
        self.streams.forget_eager(self.number);
    }
}

/// Stops the lanes handed over but never read.
fn stop_all(lanes: &mut mpsc::Receiver<quinn::RecvStream>) {
    while let Ok(stream) = lanes.try_recv() {
        stop(stream);
    }
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

    /// Announces the eager upload numbered `number`, as its request is read (in request order).
    /// False if the number is not higher than every one before: the request is refused.
    pub fn announce_eager(&self, number: u64) -> bool {
        let mut eager = self.eager.lock();
        if number <= eager.highest {
            return false;
        }
        eager.highest = number;
        let (tx, rx) = mpsc::channel(1);
        match eager.early.remove(&number) {
            Some(stream) => {
                let _ = tx.try_send(stream);
            }
            None => {
                eager.waiting.insert(number, tx);
            }
        }
        eager.receivers.insert(number, rx);
        true
    }

    /// The lane of the announced eager upload `number`, for its `put`.
    pub fn take_eager(&self, number: u64) -> Option<EagerLane<'_>> {
        let lanes = self.eager.lock().receivers.remove(&number)?;
        Some(EagerLane { streams: self, number, lanes })
    }

    /// Forgets an eager upload that was refused or has ended; its lane, there or to come, is
    /// stopped.
    pub fn forget_eager(&self, number: u64) {
        let mut eager = self.eager.lock();
        eager.waiting.remove(&number);
        if let Some(mut lanes) = eager.receivers.remove(&number) {
            stop_all(&mut lanes);
        }
    }

    /// Hands an eager upload's lane to its `put`, keeps it until the request is read, or stops it.
    async fn route_eager(&self, number: u64, stream: quinn::RecvStream) {
        let refused = {
            let mut eager = self.eager.lock();
            if let Some(waiter) = eager.waiting.remove(&number) {
                waiter.try_send(stream).err().map(|err| err.into_inner())
            } else if number > eager.highest && eager.early.len() < MAX_EARLY_LANES {
                eager.early.insert(number, stream);
                None
            } else {
                Some(stream)
            }
        };
        if let Some(stream) = refused {
            stop(stream);
            return;
        }
        tokio::time::sleep(EARLY_LANE_WAIT).await;
        let expired = self.eager.lock().early.remove(&number);
        if let Some(stream) = expired {
            stop(stream);
        }
    }

    /// Reads a new stream's header and hands the stream to its `put`, or stops it.
    pub async fn route(&self, mut stream: quinn::RecvStream) {
        let header = tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await;
        if let Ok(Ok(StreamHeader { transfer: 0, eager: Some(number) })) = header {
            return self.route_eager(number, stream).await;
        }
        let waiter = match header {
            Ok(Ok(header)) if header.eager.is_none() => {
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
        if let Some(stream) = refused {
            stop(stream);
        }
    }
}

fn stop(mut stream: quinn::RecvStream) {
    tracing::debug!("stopping a stream that names no waiting transfer");
    let _ = stream.stop(quinn::VarInt::from_u32(STOP_UNKNOWN_TRANSFER));
}
