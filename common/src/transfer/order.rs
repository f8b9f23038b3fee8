//! The order in which a connection sends its lanes' bytes.
//!
//! quinn sends what streams of equal priority have buffered in turn, a packet each. With hundreds
//! of small files in flight, that finished almost none of them until nearly all their bytes had
//! left: across 50 ms, the first of 1,000 uploads was installed 250 ms after the others' bytes began
//! to go. So each lane takes a place in line, and quinn sends the earliest place first (a lane's
//! place is its priority, higher first). A file sent whole takes its place when its lane opens,
//! after every small file opened before it: each round trip finishes the files its packets carried.
//!
//! Places are counted in the small files' bytes. A larger file's lane must not wait behind them
//! for as long as they keep coming (the receiver would give up on it as stalled), nor push them
//! back for as long as it has bytes: before each chunk it takes the place its last chunk's bytes
//! lead to, kept within [`LEAD`] of the next small file's place. While both have bytes to send,
//! each larger file's lane and the small files together get a byte in turn. A chunk waits at most
//! for the small files in line when it was written (the files a sender keeps in flight), and for
//! `LEAD` bytes of those opened after. Lanes of larger files alone share one place, and quinn
//! takes them in turn.
//!
//! The control stream goes before them all ([`crate::net::CONTROL_PRIORITY`]).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::net::CONTROL_PRIORITY;

/// How far, in small files' bytes, a larger file's lane may get ahead of or behind the next small
/// file's place.
const LEAD: u64 = 1 << 20;

/// Bytes per step of place: quinn's priorities are `i32`, so a connection has 2^31 steps of this
/// many bytes (8 TiB of small files) before every lane shares the last place.
const PLACE_STEP: u64 = 4096;

/// A connection, as the sending end of lanes, with the places it gives out.
#[derive(Debug)]
pub struct OutgoingLanes {
    conn: quinn::Connection,
    order: SendOrder,
}

/// An open lane and its place.
pub(super) struct OpenLane {
    pub send: quinn::SendStream,
    /// For a larger file's lane, its place, moved before each chunk; none for a small file's.
    place: Option<u64>,
}

impl OutgoingLanes {
    pub fn new(conn: quinn::Connection) -> OutgoingLanes {
        OutgoingLanes { conn, order: SendOrder::default() }
    }

    /// Opens a lane: for a file of `size` bytes sent whole with `whole`, in line after every such
    /// file opened before it; otherwise beside the next of them.
    pub(super) async fn open(
        &self,
        whole: Option<u64>,
    ) -> Result<OpenLane, quinn::ConnectionError> {
        let send = self.conn.open_uni().await?;
        // Taken once the stream is open, so that places follow the order streams opened in.
        let (place, bulk) = match whole {
            Some(size) => (self.order.small(size), None),
            None => {
                let place = self.order.next_small();
                (place, Some(place))
            }
        };
        set_priority(&send, place);
        Ok(OpenLane { send, place: bulk })
    }

    /// Before a larger file's lane sends `len` more bytes: its place for them, kept within
    /// [`LEAD`] of the next small file's.
    pub(super) fn before_chunk(&self, lane: &mut OpenLane, len: u64) {
        if let Some(place) = lane.place {
            let (now, after) = self.order.bulk(place, len);
            set_priority(&lane.send, now);
            lane.place = Some(after);
        }
    }
}

fn set_priority(send: &quinn::SendStream, place: u64) {
    // Fails only on a stream already closed, which its next write reports.
    let _ = send.set_priority(priority(place));
}

/// The places of one connection's lanes.
#[derive(Debug, Default)]
struct SendOrder {
    /// Bytes of the small files whose lanes opened so far: the place of the next one.
    small_bytes: AtomicU64,
}

impl SendOrder {
    /// The place of a small file of `size` bytes whose lane opens now.
    fn small(&self, size: u64) -> u64 {
        self.small_bytes.fetch_add(size.max(1), Ordering::Relaxed)
    }

    /// The place of the next small file to open.
    fn next_small(&self) -> u64 {
        self.small_bytes.load(Ordering::Relaxed)
    }

    /// For a larger file's lane whose next place is `place`, before it sends `len` bytes: the
    /// place of those bytes (within [`LEAD`] of the next small file's), and the place after them.
    fn bulk(&self, place: u64, len: u64) -> (u64, u64) {
        let next = self.next_small();
        let now = place.clamp(next.saturating_sub(LEAD), next.saturating_add(LEAD));
        (now, now.saturating_add(len))
    }
}

/// The quinn priority of `place`: the earlier the higher, below the control stream's.
fn priority(place: u64) -> i32 {
    let first = u64::try_from(CONTROL_PRIORITY - 1).unwrap_or(0);
    i32::try_from(first.saturating_sub(place / PLACE_STEP).max(1)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn small_files_go_in_the_order_their_lanes_opened() {
        let order = SendOrder::default();
        let places: Vec<i32> = (0..100).map(|_| priority(order.small(4 * KIB))).collect();
        assert!(places[0] < CONTROL_PRIORITY, "the control stream stays first");
        assert!(places.windows(2).all(|w| w[0] > w[1]), "an earlier small file goes first");
        // Files smaller than a step share it, and quinn takes them in turn.
        assert_eq!(priority(order.small(1)), priority(order.small(100)));
    }

    #[test]
    fn a_larger_file_and_the_small_files_take_turns_by_bytes() {
        let order = SendOrder::default();
        let first_small = order.small(4 * KIB);
        let mut bulk = order.next_small();
        assert!(bulk > first_small, "a lane opening now goes after the small files in line");

        // While small files keep coming, the lane keeps its pace: a chunk's bytes each time, never
        // pushed back by the small files opened meanwhile.
        let mut places = Vec::new();
        for _ in 0..8 {
            for _ in 0..64 {
                order.small(16 * KIB);
            }
            let (now, after) = order.bulk(bulk, KIB * KIB);
            places.push(now);
            bulk = after;
        }
        assert!(places.windows(2).all(|w| w[1] - w[0] == KIB * KIB), "{places:?}");
        let small_now = order.next_small();
        assert!(places[7] < small_now, "ahead of the small files opened after its place");

        // Alone for a long while, it gets no further ahead than LEAD: a small file opening then
        // waits for at most that many bytes of it.
        for _ in 0..100 {
            bulk = order.bulk(bulk, KIB * KIB).1;
        }
        let (now, _) = order.bulk(bulk, KIB * KIB);
        assert_eq!(now, order.next_small() + LEAD);
        // Idle for a long while, it may not jump the queue by more than LEAD either.
        for _ in 0..1000 {
            order.small(64 * KIB);
        }
        let (now, _) = order.bulk(bulk, KIB * KIB);
        assert_eq!(now, order.next_small() - LEAD);

        // Lanes of larger files alone, one started long before the other, soon share a place.
        let order = SendOrder::default();
        let (mut first, mut second) = (order.next_small(), order.next_small());
        (0..50).for_each(|_| first = order.bulk(first, KIB * KIB).1);
        let mut shared = Vec::new();
        for _ in 0..2 {
            let ((a, after_a), (b, after_b)) =
                (order.bulk(first, KIB * KIB), order.bulk(second, KIB * KIB));
            (first, second) = (after_a, after_b);
            shared.push((a, b));
        }
        assert_eq!(shared[1].0, shared[1].1, "{shared:?}");
    }

    #[test]
    fn however_many_bytes_a_connection_sends_no_place_wraps_or_reaches_the_control_stream() {
        let last = (1 << 31) * PLACE_STEP;
        assert_eq!(priority(last - 4 * PLACE_STEP), 2);
        for place in [last - 3 * PLACE_STEP, last, last + 1, u64::MAX] {
            assert_eq!(priority(place), 1, "the last places are shared, never wrapped");
        }
        assert_eq!(priority(0), CONTROL_PRIORITY - 1);
        let order = SendOrder { small_bytes: AtomicU64::new(u64::MAX - 1) };
        assert_eq!(order.bulk(0, 1).0, u64::MAX - 1 - LEAD);
        assert_eq!(order.bulk(u64::MAX, 1), (u64::MAX, u64::MAX));
    }
}
