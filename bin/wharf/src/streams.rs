//! Download streams the server opens, routed to the `get` waiting for each by transfer id.
//!
//! The `transfer` reply (on the control stream) and the data stream race each other, so a stream that
//! arrives before anyone waits for it is held until its `get` asks (at most [`MAX_UNCLAIMED`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;
use wharf_common::transfer::read_header;

/// Streams held at most while nobody has asked for them yet.
const MAX_UNCLAIMED: usize = 64;
/// How long a stream may take to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Routes {
    arrived: HashMap<u64, quinn::RecvStream>,
    waiting: HashMap<u64, oneshot::Sender<quinn::RecvStream>>,
}

/// Incoming transfer streams of one connection.
#[derive(Debug, Default)]
pub struct IncomingStreams {
    routes: Mutex<Routes>,
}

impl IncomingStreams {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stream of transfer `id`, now or when it arrives.
    pub fn claim(&self, id: u64) -> oneshot::Receiver<quinn::RecvStream> {
        let (tx, rx) = oneshot::channel();
        let mut routes = self.lock();
        match routes.arrived.remove(&id) {
            Some(stream) => {
                let _ = tx.send(stream);
            }
            None => {
                routes.waiting.insert(id, tx);
            }
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
                    let _ = stream.stop(quinn::VarInt::from_u32(1));
                    return;
                };
                let mut routes = this.lock();
                match routes.waiting.remove(&header.transfer) {
                    Some(waiter) => {
                        let _ = waiter.send(stream);
                    }
                    None => {
                        // Streams of downloads cancelled before their reply came are never claimed:
                        // past the bound, drop the oldest (ids only grow), not the newcomer.
                        if routes.arrived.len() >= MAX_UNCLAIMED
                            && let Some(oldest) = routes.arrived.keys().min().copied()
                            && let Some(mut stale) = routes.arrived.remove(&oldest)
                        {
                            let _ = stale.stop(quinn::VarInt::from_u32(1));
                        }
                        routes.arrived.insert(header.transfer, stream);
                    }
                }
            });
        }
    }
}
