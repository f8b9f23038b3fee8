//! Chunks that arrive ahead of the hash frontier, held in memory until the frontier reaches them.
//!
//! A file's lanes carry different pieces at once, so all but one of them land beyond the bytes
//! hashed so far ([`super::write`]). Written in place, such a chunk goes through the page cache and
//! is read back later to be hashed: two copies of every byte the other lanes carry, and on a
//! virtual machine that hands freed memory back to its host, a page fault for each page written
//! (BENCHMARK.md, "Writing around the page cache"). Held here instead, it is hashed and written once
//! when the frontier gets to it, by the same path as a chunk that landed there.
//!
//! Memory is bounded twice: per file ([`AHEAD_PER_FILE`]) and for the whole process
//! ([`AHEAD_PER_PROCESS`]). A chunk over either bound is written in place as before; nothing waits
//! for room. Only whole chunks ([`CHUNK_SIZE`]) are held: they are the bytes that can go around the
//! page cache; a shorter one (a piece's tail, what a lane gathered when it stopped) costs little to
//! write and read back. Held chunks are not on disk: a writer that stops short writes them in place
//! ([`Ahead::take_all`]) before it records what a resume may keep.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::{CHUNK_SIZE, PIECE_SIZE};

/// Bytes one file may hold ahead of its frontier: the pieces of the three other lanes of a
/// transfer with the default four (`segment_lanes`). More lanes hold as much and write the rest
/// in place.
pub const AHEAD_PER_FILE: usize = 3 * PIECE_SIZE as usize;

/// Bytes all the files of this process may hold ahead together: five transfers' worth. Past it,
/// many uploads at once use the page cache as they did, which is the better buffer at that scale.
pub const AHEAD_PER_PROCESS: usize = 128 * 1024 * 1024;

/// A bound on bytes held by many owners at once.
pub(super) struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub(super) const fn new(limit: usize) -> Budget {
        Budget { limit, used: AtomicUsize::new(0) }
    }

    /// Takes `bytes` of the budget, if that many are left.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The budget every writer of this process shares.
static PROCESS_BUDGET: Budget = Budget::new(AHEAD_PER_PROCESS);

/// One file's chunks held ahead of its frontier, by offset.
pub(super) struct Ahead {
    chunks: BTreeMap<u64, Bytes>,
    bytes: usize,
    per_file: usize,
    /// Chunks shorter than this are not held.
    shortest: usize,
    budget: &'static Budget,
}

impl Ahead {
    /// Holds whole chunks, within [`AHEAD_PER_FILE`] and the [`PROCESS_BUDGET`].
    pub(super) fn new() -> Ahead {
        Ahead::bounded(AHEAD_PER_FILE, CHUNK_SIZE, &PROCESS_BUDGET)
    }

    pub(super) fn bounded(per_file: usize, shortest: usize, budget: &'static Budget) -> Ahead {
        Ahead { chunks: BTreeMap::new(), bytes: 0, per_file, shortest, budget }
    }

    /// Holds `chunk` if it is long enough and both bounds leave room for it; hands it back
    /// otherwise.
    pub(super) fn hold(&mut self, offset: u64, chunk: Bytes) -> Result<(), Bytes> {
        let len = chunk.len();
        let fits_file = self.bytes.checked_add(len).is_some_and(|total| total <= self.per_file);
        if len < self.shortest || !fits_file || !self.budget.take(len) {
            return Err(chunk);
        }
        self.bytes += len;
        if let Some(replaced) = self.chunks.insert(offset, chunk) {
            // The receiver lets each byte in once, so this is never reached; kept exact anyway.
            self.release(replaced.len());
        }
        Ok(())
    }

    /// Whether a chunk starting at `offset` is held.
    pub(super) fn holds(&self, offset: u64) -> bool {
        self.chunks.contains_key(&offset)
    }

    /// The chunk starting at `offset`, no longer held.
    pub(super) fn take(&mut self, offset: u64) -> Option<Bytes> {
        let chunk = self.chunks.remove(&offset)?;
        self.release(chunk.len());
        Some(chunk)
    }

    /// The chunks held that run without a gap up to `end`, in order of offset, no longer held.
    pub(super) fn take_run_ending_at(&mut self, end: u64) -> Vec<(u64, Bytes)> {
        let mut run = Vec::new();
        let mut end = end;
        while let Some((&start, chunk)) = self.chunks.range(..end).next_back() {
            if start + chunk.len() as u64 != end {
                break;
            }
            run.extend(self.take(start).map(|chunk| (start, chunk)));
            end = start;
        }
        run.reverse();
        run
    }

    /// Every chunk held, in order of offset, no longer held.
    pub(super) fn take_all(&mut self) -> Vec<(u64, Bytes)> {
        let chunks = std::mem::take(&mut self.chunks);
        self.release(self.bytes);
        chunks.into_iter().collect()
    }

    fn release(&mut self, bytes: usize) {
        self.bytes -= bytes;
        self.budget.give_back(bytes);
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> &'static Budget {
        Box::leak(Box::new(Budget::new(limit)))
    }

    fn chunk(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    #[test]
    fn holds_up_to_its_own_bound_and_hands_back_the_rest() {
        let budget = budget(1000);
        let mut ahead = Ahead::bounded(10, 2, budget);
        assert!(ahead.hold(10, chunk(1)).is_err(), "shorter than the shortest held");
        assert!(ahead.hold(20, chunk(6)).is_ok());
        let refused = ahead.hold(30, chunk(5)).expect_err("11 bytes are over the file's 10");
        assert_eq!(refused.len(), 5, "the chunk comes back whole, to be written in place");
        assert!(ahead.hold(30, chunk(4)).is_ok(), "10 bytes fit");
        assert!(ahead.holds(20) && ahead.holds(30) && !ahead.holds(26));
        assert_eq!(budget.used(), 10);
    }

    #[test]
    fn files_share_the_process_bound() {
        let budget = budget(10);
        let mut first = Ahead::bounded(100, 1, budget);
        let mut second = Ahead::bounded(100, 1, budget);
        assert!(first.hold(0, chunk(8)).is_ok());
        assert!(second.hold(0, chunk(3)).is_err(), "8 + 3 is over the process's 10");
        assert!(second.hold(0, chunk(2)).is_ok());
        assert_eq!(first.take(0).map(|chunk| chunk.len()), Some(8));
        assert!(second.hold(8, chunk(8)).is_ok(), "taking a chunk gives its room back");
        assert_eq!(budget.used(), 10);
    }

    #[test]
    fn every_way_out_gives_the_room_back() {
        let budget = budget(100);
        let mut ahead = Ahead::bounded(100, 1, budget);
        for offset in [40, 0, 20] {
            ahead.hold(offset, chunk(10)).expect("room");
        }
        ahead.hold(30, chunk(10)).expect("room");
        let offsets = |chunks: Vec<(u64, Bytes)>| -> Vec<u64> {
            chunks.into_iter().map(|(offset, _)| offset).collect()
        };
        assert_eq!(offsets(ahead.take_run_ending_at(50)), [20, 30, 40], "in order, to the gap");
        assert_eq!(offsets(ahead.take_run_ending_at(50)), [], "nothing ends there now");
        assert_eq!(offsets(ahead.take_all()), [0]);
        assert_eq!(budget.used(), 0);
        ahead.hold(0, chunk(30)).expect("room");
        drop(ahead);
        assert_eq!(budget.used(), 0, "a writer dropped mid-transfer leaks no budget");
    }
}
