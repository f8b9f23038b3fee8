//! The lanes of one connection's uploads: transfer ids, and the eager uploads' numbers.
//!
//! A `put` registers a fresh id with the number of lanes it expects before it names the id in its
//! `transfer` reply, so a lane naming any other id is stopped at once. An eager upload's lane names
//! its `put`'s number instead, and may arrive before its request has been read: requests announce
//! their numbers in order, so a lane whose number is above any announced is early and waits (at
//! most [`EARLY_LANE_WAIT`], at most [`MAX_EARLY_LANES`] of them). Routing itself is the transfer
//! engine's [`LaneRouter`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use wharf_common::transfer::lanes::{Early, LaneRouter, accept_lane, stop};
use wharf_common::transfer::{EARLY_LANE_WAIT, MAX_EARLY_LANES};

/// Upload lanes awaited by `put` requests.
#[derive(Debug)]
pub struct UploadLanes {
    next_id: AtomicU64,
    by_id: Arc<LaneRouter>,
    by_eager_number: Arc<LaneRouter>,
    /// Announced eager uploads whose `put` has not yet taken its lane's receiver.
    announced: Mutex<HashMap<u64, mpsc::Receiver<quinn::RecvStream>>>,
}

impl Default for UploadLanes {
    fn default() -> Self {
        let early = Early::Hold {
            max: MAX_EARLY_LANES,
            wait: EARLY_LANE_WAIT,
            ahead_only: true,
            evict_oldest: false,
        };
        UploadLanes {
            next_id: AtomicU64::new(0),
            by_id: Arc::new(LaneRouter::new(Early::Refuse)),
            by_eager_number: Arc::new(LaneRouter::new(early)),
            announced: Mutex::default(),
        }
    }
}

/// An eager upload's hold on its lane: dropping it (the `put` ended, however) stops a lane that
/// arrives later.
pub struct EagerLane<'a> {
    owner: &'a UploadLanes,
    number: u64,
    pub lanes: mpsc::Receiver<quinn::RecvStream>,
}

impl Drop for EagerLane<'_> {
    fn drop(&mut self) {
        self.owner.by_eager_number.forget(self.number, Some(&mut self.lanes));
    }
}

impl UploadLanes {
    /// A fresh transfer id for this connection (downloads use them too, for their own lanes).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a fresh id expecting `lanes` streams and returns it with the receiver they will
    /// arrive on.
    pub fn expect(&self, lanes: u32) -> (u64, mpsc::Receiver<quinn::RecvStream>) {
        let id = self.next_id();
        (id, self.by_id.expect(id, lanes))
    }

    /// Forgets an id whose streams will no longer be read.
    pub fn forget(&self, id: u64) {
        self.by_id.forget(id, None);
    }

    /// Announces the eager upload numbered `number`, as its request is read (in request order).
    /// False if the number is not higher than every one before: the request is refused.
    pub fn announce_eager(&self, number: u64) -> bool {
        let Some(lanes) = self.by_eager_number.expect_ahead(number, 1) else { return false };
        self.announced.lock().insert(number, lanes);
        true
    }

    /// The lane of the announced eager upload `number`, for its `put`.
    pub fn take_eager(&self, number: u64) -> Option<EagerLane<'_>> {
        let lanes = self.announced.lock().remove(&number)?;
        Some(EagerLane { owner: self, number, lanes })
    }

    /// Forgets an eager upload that was refused; its lane, there or to come, is stopped.
    pub fn forget_eager(&self, number: u64) {
        let mut lanes = self.announced.lock().remove(&number);
        self.by_eager_number.forget(number, lanes.as_mut());
    }

    /// Reads a new stream's header and hands the stream to its `put`, or stops it.
    pub async fn route(&self, stream: quinn::RecvStream) {
        let Some((header, stream)) = accept_lane(stream).await else { return };
        match (header.transfer, header.eager) {
            (0, Some(number)) => self.by_eager_number.route(number, stream),
            (id, None) => self.by_id.route(id, stream),
            _ => stop(stream),
        }
    }
}
