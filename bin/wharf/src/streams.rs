//! Download lanes the server opens, routed to the `get` waiting for them by transfer id.
//!
//! The `transfer` reply (on the control stream) and the lanes race each other, so lanes that arrive
//! before their `get` asks are held (at most [`MAX_UNCLAIMED`], for at most [`UNCLAIMED_WAIT`]).
//! Routing itself is the transfer engine's [`LaneRouter`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use wharf_common::transfer::lanes::{Early, LaneRouter, accept_lane, stop};

/// Lanes held at most while nobody has asked for them yet; past that, the oldest transfer's go
/// (those of a download cancelled before its reply came are never claimed). As many as the server
/// may have open at once (the client lets it open as many as its default): with many small downloads in flight across a lossy path, a lost packet of
/// the control stream holds back the replies while their lanes keep arriving (holding 64, with 240
/// downloads in flight, 163 of 1,000 across 150 ms and 1 % loss lost their lanes this way).
const MAX_UNCLAIMED: usize = wharf_common::limits::DEFAULT_MAX_UNI_STREAMS as usize;
/// How long a lane is held for a `get` that has not asked for it: as long as a receiver waits for a
/// lane of a transfer under way.
const UNCLAIMED_WAIT: Duration = Duration::from_secs(30);

/// Incoming transfer lanes of one connection.
#[derive(Debug)]
pub struct IncomingStreams {
    router: Arc<LaneRouter>,
}

impl Default for IncomingStreams {
    fn default() -> Self {
        let early = Early::Hold {
            max: MAX_UNCLAIMED,
            wait: UNCLAIMED_WAIT,
            ahead_only: false,
            evict_oldest: true,
        };
        IncomingStreams { router: Arc::new(LaneRouter::new(early)) }
    }
}

impl IncomingStreams {
    /// The `lanes` lanes of transfer `id`, as they arrive (some may be here already).
    pub fn claim(&self, id: u64, lanes: u32) -> mpsc::Receiver<quinn::RecvStream> {
        self.router.expect(id, lanes)
    }

    /// Accepts the server's lanes until the connection ends.
    pub async fn accept(self: Arc<Self>, conn: quinn::Connection) {
        while let Ok(stream) = conn.accept_uni().await {
            let router = self.router.clone();
            tokio::spawn(async move {
                match accept_lane(stream).await {
                    Some((header, stream)) if header.eager.is_none() => {
                        router.route(header.transfer, stream);
                    }
                    Some((_, stream)) => stop(stream),
                    None => {}
                }
            });
        }
    }
}
