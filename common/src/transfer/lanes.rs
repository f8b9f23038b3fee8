//! Routing a connection's incoming lanes to the transfers waiting for them, by the key their
//! header names (a transfer id, or an eager upload's number).
//!
//! A lane and the control-stream message that announces its transfer race each other, so a lane may
//! arrive before anyone waits for it. What happens then is the router's [`Early`] rule: the server
//! stops such a lane at once for transfer ids (it registers an id before it names it), keeps it a
//! while for eager numbers, and the client keeps it until its `get` reads the reply. Whatever is
//! refused is stopped with [`STOP_UNCLAIMED_LANE`], and harms nothing else.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{HEADER_TIMEOUT, STOP_UNCLAIMED_LANE, StreamHeader, read_header};

/// What a router does with a lane whose key nobody waits for yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Early {
    /// Stop it: keys are registered before any lane can name them.
    Refuse,
    /// Keep it until its key is expected, for at most `wait`, and at most `max` lanes at once.
    Hold {
        max: usize,
        wait: Duration,
        /// Keep only lanes whose key is above every key expected so far (keys are expected in
        /// increasing order, so a lower one belongs to a transfer that has come and gone).
        ahead_only: bool,
        /// When `max` lanes are held: stop the one with the lowest key (a cancelled transfer's,
        /// since keys only grow) rather than the newcomer.
        evict_oldest: bool,
    },
}

/// A transfer waiting for `left` more lanes.
#[derive(Debug)]
struct Waiting {
    lanes: mpsc::Sender<quinn::RecvStream>,
    left: u32,
}

#[derive(Debug, Default)]
struct Routes {
    waiting: HashMap<u64, Waiting>,
    /// Lanes that came before their key was expected, by key.
    held: BTreeMap<u64, Vec<quinn::RecvStream>>,
    /// The highest key expected so far.
    highest: u64,
}

impl Routes {
    fn held_count(&self) -> usize {
        self.held.values().map(Vec::len).sum()
    }
}

/// The incoming lanes of one connection, for one kind of key.
#[derive(Debug)]
pub struct LaneRouter {
    routes: Mutex<Routes>,
    early: Early,
}

impl LaneRouter {
    pub fn new(early: Early) -> LaneRouter {
        LaneRouter { routes: Mutex::new(Routes::default()), early }
    }

    /// The `lanes` lanes of `key`, as they arrive; some may be here already. Lanes past that
    /// number are stopped.
    pub fn expect(&self, key: u64, lanes: u32) -> mpsc::Receiver<quinn::RecvStream> {
        let mut routes = self.routes.lock();
        Self::expect_locked(&mut routes, key, lanes)
    }

    /// Like [`LaneRouter::expect`], if `key` is above every key expected before; `None` otherwise.
    pub fn expect_ahead(&self, key: u64, lanes: u32) -> Option<mpsc::Receiver<quinn::RecvStream>> {
        let mut routes = self.routes.lock();
        (key > routes.highest).then(|| Self::expect_locked(&mut routes, key, lanes))
    }

    fn expect_locked(
        routes: &mut Routes,
        key: u64,
        lanes: u32,
    ) -> mpsc::Receiver<quinn::RecvStream> {
        let (tx, rx) = mpsc::channel(lanes.max(1) as usize);
        routes.highest = routes.highest.max(key);
        let early = routes.held.remove(&key).unwrap_or_default();
        let left = lanes.saturating_sub(u32::try_from(early.len()).unwrap_or(u32::MAX));
        for stream in early {
            if let Err(err) = tx.try_send(stream) {
                stop(err.into_inner());
            }
        }
        if left > 0 {
            routes.waiting.insert(key, Waiting { lanes: tx, left });
        }
        rx
    }

    /// Forgets `key`: its lanes still to come are stopped, and so are those handed over but never
    /// taken from `lanes`.
    pub fn forget(&self, key: u64, lanes: Option<&mut mpsc::Receiver<quinn::RecvStream>>) {
        self.routes.lock().waiting.remove(&key);
        if let Some(lanes) = lanes {
            while let Ok(stream) = lanes.try_recv() {
                stop(stream);
            }
        }
    }

    /// Hands `stream` to the transfer waiting for `key`, keeps it for later, or stops it.
    pub fn route(self: &Arc<Self>, key: u64, stream: quinn::RecvStream) {
        let mut routes = self.routes.lock();
        if let Some(waiting) = routes.waiting.get_mut(&key) {
            waiting.left -= 1;
            // The channel holds every expected lane, so a send fails only if the transfer gave up.
            let sent = waiting.lanes.try_send(stream);
            if waiting.left == 0 || sent.is_err() {
                routes.waiting.remove(&key);
            }
            if let Err(err) = sent {
                stop(err.into_inner());
            }
            return;
        }
        let Early::Hold { max, wait, ahead_only, evict_oldest } = self.early else {
            return stop(stream);
        };
        if (ahead_only && key <= routes.highest) || max == 0 {
            return stop(stream);
        }
        if routes.held_count() >= max {
            if !evict_oldest {
                return stop(stream);
            }
            if let Some((_, stale)) = routes.held.pop_first() {
                stale.into_iter().for_each(stop);
            }
        }
        routes.held.entry(key).or_default().push(stream);
        let router = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let expired =
                router.upgrade().and_then(|router| router.routes.lock().held.remove(&key));
            expired.into_iter().flatten().for_each(stop);
        });
    }
}

/// Reads a new stream's header, within [`HEADER_TIMEOUT`]; a stream whose header is late or
/// malformed is stopped, and `None` returned.
pub async fn accept_lane(
    mut stream: quinn::RecvStream,
) -> Option<(StreamHeader, quinn::RecvStream)> {
    match tokio::time::timeout(HEADER_TIMEOUT, read_header(&mut stream)).await {
        Ok(Ok(header)) => Some((header, stream)),
        _ => {
            stop(stream);
            None
        }
    }
}

/// Stops a lane nobody will read.
pub fn stop(mut stream: quinn::RecvStream) {
    let _ = stream.stop(quinn::VarInt::from_u32(STOP_UNCLAIMED_LANE));
}
