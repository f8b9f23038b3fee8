//! Sets of byte ranges: the bytes a receiver already has, the bytes a sender still owes, and how
//! those are cut into pieces.
//!
//! A [`Ranges`] is kept normalised (sorted, disjoint, non-empty, non-adjacent ranges), so equality
//! means equal sets. On the wire it is an array of `[start, end]` pairs, `end` exclusive.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Most ranges a peer may send in one set (`get`'s `have`, `transfer`'s `ranges`). A receiver with
/// more (a pathologically fragmented partial) claims only its first ones, which is always safe.
pub const MAX_RANGES: usize = 1024;

/// A normalised set of half-open byte ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ranges(Vec<[u64; 2]>);

impl Ranges {
    /// The empty set.
    pub fn new() -> Ranges {
        Ranges(Vec::new())
    }

    /// Every byte of a file of `size` bytes.
    pub fn full(size: u64) -> Ranges {
        let mut ranges = Ranges::new();
        ranges.insert(0, size);
        ranges
    }

    /// Checks a set received from a peer against a file of `size` bytes: every range non-empty and
    /// within the file, at most [`MAX_RANGES`] of them. Overlapping or unsorted ranges are merged.
    pub fn checked(ranges: &Ranges, size: u64) -> Option<Ranges> {
        if ranges.0.len() > MAX_RANGES {
            return None;
        }
        let mut normal = Ranges::new();
        for &[start, end] in &ranges.0 {
            if start >= end || end > size {
                return None;
            }
            normal.insert(start, end);
        }
        Some(normal)
    }

    /// The first ranges of the set, few enough that both the set and its complement fit in
    /// [`MAX_RANGES`]: what a receiver may claim to have.
    pub fn truncated(&self) -> Ranges {
        Ranges(self.0.iter().take(MAX_RANGES - 1).copied().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of bytes in the set.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|[start, end]| end - start).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().map(|&[start, end]| (start, end))
    }

    /// Adds `start..end`, merging with the ranges it touches.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // First range that ends at or after `start` (touching counts), and first that starts after `end`.
        let first = self.0.partition_point(|&[_, e]| e < start);
        let last = self.0.partition_point(|&[s, _]| s <= end);
        let (mut start, mut end) = (start, end);
        if first < last {
            start = start.min(self.0[first][0]);
            end = end.max(self.0[last - 1][1]);
        }
        self.0.splice(first..last, [[start, end]]);
    }

    /// The end of the range holding `position`, if one does.
    pub fn end_of_range_at(&self, position: u64) -> Option<u64> {
        let index = self.0.partition_point(|&[_, e]| e <= position);
        self.0.get(index).filter(|&&[s, _]| s <= position).map(|&[_, e]| e)
    }

    /// The bytes of `0..size` not in the set.
    pub fn complement(&self, size: u64) -> Ranges {
        let mut gaps = Ranges::new();
        let mut position = 0;
        for (start, end) in self.iter() {
            gaps.insert(position, start.min(size));
            position = end;
        }
        gaps.insert(position, size);
        gaps
    }

    /// Cuts the set into pieces of at most `piece` bytes, in order, each range cut from its own start.
    /// Sender and receiver both derive the pieces this way, so a receiver knows every piece it may
    /// be sent.
    pub fn pieces(&self, piece: u64) -> VecDeque<(u64, u64)> {
        let piece = piece.max(1);
        let mut pieces = VecDeque::new();
        for (start, end) in self.iter() {
            let mut offset = start;
            while offset < end {
                let len = piece.min(end - offset);
                pieces.push_back((offset, len));
                offset += len;
            }
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[[u64; 2]]) -> Ranges {
        Ranges(pairs.to_vec())
    }

    #[test]
    fn insert_merges_overlapping_and_touching_ranges() {
        let mut ranges = Ranges::new();
        ranges.insert(10, 20);
        ranges.insert(30, 40);
        assert_eq!(ranges, set(&[[10, 20], [30, 40]]));
        ranges.insert(20, 25);
        assert_eq!(ranges, set(&[[10, 25], [30, 40]]));
        ranges.insert(5, 8);
        ranges.insert(0, 1);
        assert_eq!(ranges, set(&[[0, 1], [5, 8], [10, 25], [30, 40]]));
        ranges.insert(7, 35);
        assert_eq!(ranges, set(&[[0, 1], [5, 40]]));
        ranges.insert(2, 2);
        assert_eq!(ranges.total(), 36);
    }

    #[test]
    fn complement_and_lookup() {
        let ranges = set(&[[0, 4], [10, 20]]);
        assert_eq!(ranges.complement(30), set(&[[4, 10], [20, 30]]));
        assert_eq!(set(&[[5, 30]]).complement(30), set(&[[0, 5]]));
        assert_eq!(Ranges::new().complement(7), Ranges::full(7));
        assert_eq!(Ranges::full(0), Ranges::new());
        assert_eq!(ranges.end_of_range_at(0), Some(4));
        assert_eq!(ranges.end_of_range_at(4), None);
        assert_eq!(ranges.end_of_range_at(15), Some(20));
        assert_eq!(ranges.end_of_range_at(25), None);
    }

    #[test]
    fn checked_refuses_ranges_outside_the_file_and_merges_the_rest() {
        assert_eq!(Ranges::checked(&set(&[[0, 11]]), 10), None);
        assert_eq!(Ranges::checked(&set(&[[5, 5]]), 10), None);
        assert_eq!(Ranges::checked(&set(&[[6, 9], [0, 7]]), 10), Some(set(&[[0, 9]])));
        let many = Ranges((0..=MAX_RANGES as u64).map(|i| [2 * i, 2 * i + 1]).collect());
        assert_eq!(Ranges::checked(&many, u64::MAX), None);
        assert_eq!(many.truncated().0.len(), MAX_RANGES - 1);
        assert!(Ranges::checked(&many.truncated().complement(u64::MAX), u64::MAX).is_some());
    }

    #[test]
    fn pieces_cover_each_range_from_its_start() {
        let pieces: Vec<_> = set(&[[0, 10], [15, 18]]).pieces(4).into_iter().collect();
        assert_eq!(pieces, [(0, 4), (4, 4), (8, 2), (15, 3)]);
    }
}
