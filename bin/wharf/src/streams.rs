//! Download lanes the server opens, routed to the `get` waiting for them by transfer id.
//!
//! The `transfer` reply (on the control stream) and the lanes race each other, so lanes that arrive
//! before anyone waits for them are held until their `get` asks (at most [`MAX_UNCLAIMED`]).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use wharf_common::transfer::read_header;

/// Streams held at most while nobody has asked for them yet.
const MAX_UNCLAIMED: usize = 64;
/// How long a stream may take to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Stop code for a stream nobody will read.
const STOP_UNCLAIMED: u32 = 1;

/// A `get` waiting for `left` more lanes.
#[derive(Debug)]
struct Waiting {
    lanes: mpsc::Sender<quinn::RecvStream>,
    left: u32,
}

#[derive(Debug, Default)]
struct Routes {
    arrived: HashMap<u64, Vec<quinn::RecvStream>>,
    waiting: HashMap<u64, Waiting>,
}

impl Routes {
    fn unclaimed(&self) -> usize {
        self.arrived.values().map(Vec::len).sum()
    }
}

/// Incoming transfer streams of one connection.
#[derive(Debug, Default)]
pub struct IncomingStreams {
    routes: Mutex<Routes>,
}

impl IncomingStreams {
    fn lock(&self) -> parking_lot::MutexGuard<'_, Routes> {
        self.routes.lock()
    }

    /// The `lanes` streams of transfer `id`, as they arrive (some may be here already).
    pub fn claim(&self, id: u64, lanes: u32) -> mpsc::Receiver<quinn::RecvStream> {
        let (tx, rx) = mpsc::channel(lanes.max(1) as usize);
        let mut routes = self.lock();
        let early = routes.arrived.remove(&id).unwrap_or_default();
        let left = lanes.saturating_sub(u32::try_from(early.len()).unwrap_or(u32::MAX));
        for stream in early {
            // A server that sends more lanes than it announced gets the extras stopped.
            if let Err(err) = tx.try_send(stream) {
                let _ = err.into_inner().stop(quinn::VarInt::from_u32(STOP_UNCLAIMED));
            }
        }
        if left > 0 {
            routes.waiting.insert(id, Waiting { lanes: tx, left });
        }
        rx
    }

    /// Accepts the server's streams until the connection ends.
    pub async fn accept(self: std::sync::Arc<Self>, conn: quinn::Connection) {
        while let Ok(mut stream) = conn.accept_uni().await {
            let this = self.clone();
            tokio::spawn(async move {
                let Ok(Ok(header)) =
                    tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await
                else {
                    let _ = stream.stop(quinn::VarInt::from_u32(STOP_UNCLAIMED));
                    return;
                };
                this.route(header.transfer, stream);
            });
        }
    }

    fn route(&self, id: u64, stream: quinn::RecvStream) {
        let mut routes = self.lock();
        let Some(waiting) = routes.waiting.get_mut(&id) else {
            // Lanes of downloads cancelled before their reply came are never claimed: past the
            // bound, drop the oldest transfer's (ids only grow), not the newcomer.
            if routes.unclaimed() >= MAX_UNCLAIMED
                && let Some(oldest) = routes.arrived.keys().min().copied()
                && let Some(stale) = routes.arrived.remove(&oldest)
            {
                for mut stream in stale {
                    let _ = stream.stop(quinn::VarInt::from_u32(STOP_UNCLAIMED));
                }
            }
            routes.arrived.entry(id).or_default().push(stream);
            return;
        };
        waiting.left -= 1;
        let sent = waiting.lanes.try_send(stream);
        if waiting.left == 0 || sent.is_err() {
            routes.waiting.remove(&id);
        }
        if let Err(err) = sent {
            let _ = err.into_inner().stop(quinn::VarInt::from_u32(STOP_UNCLAIMED));
        }
    }
}
