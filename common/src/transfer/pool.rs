//! Chunk buffers, reused.
//!
//! Every chunk of every transfer is a 1 MiB buffer: filled by a transfer thread and freed by the
//! network task once QUIC is done with it, or filled by a lane and freed by a transfer thread. Under
//! load that is hundreds of large allocations a second, each freed on another thread than the one
//! that made it, which allocators handle worst. Buffers taken from this pool go back to it when the
//! last [`Bytes`] referring to them drops, and are handed out again without touching the allocator
//! (nor zeroing them again). A chunk known to be small (a small file, the tail of a piece) gets a
//! buffer of its own size instead: see [`POOLED_FROM`].
//!
//! A pooled buffer starts at an address aligned to [`DIRECT_ALIGN`], so that a received chunk can
//! be written around the page cache as it is ([`super::direct`]).

use parking_lot::Mutex;

use bytes::Bytes;

use super::CHUNK_SIZE;
use super::direct::DIRECT_ALIGN;

/// Idle buffers the pool keeps: beyond this, returned buffers are freed. Enough for the chunks of
/// several busy transfers to cycle without touching the allocator.
pub const MAX_IDLE_CHUNKS: usize = 64;

/// Chunks of fewer bytes than this get a buffer of their exact size from the allocator rather than
/// a pooled 1 MiB one. With dozens of small files in flight the pool runs dry, and each fresh
/// 1 MiB buffer came from new memory that the kernel backs (and zeroes) a 2 MiB huge page at a
/// time. On loopback, 3 × 1,000 uploads of 4 KiB and a download of them: the server's peak RSS
/// fell from 128–131 MB to 93–99 MB, and its samples in page zeroing under `perf` from 11 % to
/// 3 %; its CPU time per 1,000 uploads did not change beyond the noise.
pub const POOLED_FROM: usize = 256 * 1024;

static IDLE: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// The allocation behind a pooled buffer: a chunk, and room to start it at an aligned address.
const POOLED_ALLOCATION: usize = CHUNK_SIZE + DIRECT_ALIGN;

/// A chunk-sized buffer of which the first `len` bytes are in use.
#[derive(Debug)]
pub struct ChunkBuf {
    buf: Option<Box<[u8]>>,
    len: usize,
}

impl ChunkBuf {
    /// An empty buffer with room for `len` bytes (at most [`CHUNK_SIZE`]): a pooled one, reused if
    /// the pool has one, or one of exactly `len` bytes when that is under [`POOLED_FROM`].
    pub fn with_room(len: usize) -> ChunkBuf {
        let buf = if len < POOLED_FROM { vec![0u8; len].into_boxed_slice() } else { take_buffer() };
        ChunkBuf { buf: Some(buf), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`, which must fit in what remains.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let (start, end) = (self.len, self.len + bytes.len());
        self.room_mut()[start..end].copy_from_slice(bytes);
        self.len = end;
    }

    /// The first `len` bytes, to be filled in place (by a read); they are then in use.
    pub fn fill(&mut self, len: usize) -> &mut [u8] {
        self.len = len;
        &mut self.room_mut()[..len]
    }

    /// The bytes in use, as `Bytes` that return the buffer to the pool when the last clone drops.
    /// Leaves this buffer empty (with a fresh one taken on the next write).
    pub fn freeze(&mut self) -> Bytes {
        let taken = ChunkBuf { buf: self.buf.take(), len: std::mem::take(&mut self.len) };
        Bytes::from_owner(taken)
    }

    /// Bytes the buffer has room for.
    #[cfg(test)]
    fn room(&self) -> usize {
        self.buf.as_deref().map_or(CHUNK_SIZE, |buf| usable(buf).len())
    }

    /// The whole buffer there is room in, taken from the pool if there is none yet.
    fn room_mut(&mut self) -> &mut [u8] {
        let buf = self.buf.get_or_insert_with(take_buffer);
        let usable = usable(buf);
        &mut buf[usable]
    }
}

/// The part of an allocation a chunk uses: all of an exact-sized one, the aligned chunk within a
/// pooled one. (A boxed slice never moves, so the offset stays the same.)
fn usable(buf: &[u8]) -> std::ops::Range<usize> {
    if buf.len() != POOLED_ALLOCATION {
        return 0..buf.len();
    }
    let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
    start..start + CHUNK_SIZE
}

/// An idle buffer, or a new one. Zeroed once, when first allocated (by the kernel, as it first
/// touches the fresh pages); a reused buffer keeps stale bytes, which are never exposed.
fn take_buffer() -> Box<[u8]> {
    let reused = IDLE.lock().pop();
    reused.unwrap_or_else(|| vec![0u8; POOLED_ALLOCATION].into_boxed_slice())
}

impl AsRef<[u8]> for ChunkBuf {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_deref().map_or(&[], |buf| &buf[usable(buf)][..self.len])
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take().filter(|buf| buf.len() == POOLED_ALLOCATION) {
            let mut idle = IDLE.lock();
            if idle.len() < MAX_IDLE_CHUNKS {
                idle.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_bytes_hold_what_was_written_and_buffers_are_reused() {
        let mut chunk = ChunkBuf::with_room(CHUNK_SIZE);
        chunk.extend_from_slice(b"abc");
        chunk.extend_from_slice(b"def");
        assert_eq!(chunk.len(), 6);
        let frozen = chunk.freeze();
        assert_eq!(&frozen[..], b"abcdef");
        assert_eq!(frozen.as_ptr().align_offset(DIRECT_ALIGN), 0, "a pooled chunk is aligned");
        assert!(chunk.is_empty());
        chunk.fill(2).copy_from_slice(b"xy");
        assert_eq!(&chunk.freeze()[..], b"xy");
        assert_eq!(&frozen[..], b"abcdef", "a frozen chunk is not touched by later writes");

        // A dropped chunk's buffer comes back (stale bytes and all) but shows none of them.
        drop(frozen);
        let reused = ChunkBuf::with_room(CHUNK_SIZE);
        assert!(reused.is_empty() && reused.as_ref().is_empty());
    }

    #[test]
    fn a_small_chunk_is_sized_to_its_bytes() {
        let mut chunk = ChunkBuf::with_room(5);
        assert_eq!(chunk.room(), 5);
        assert_eq!(ChunkBuf::with_room(POOLED_FROM).room(), CHUNK_SIZE);
        chunk.fill(5).copy_from_slice(b"small");
        let frozen = chunk.freeze();
        assert_eq!(&frozen[..], b"small");
        // The next write takes a pooled buffer, which has room for a whole chunk.
        chunk.extend_from_slice(&[7u8; CHUNK_SIZE]);
        assert_eq!(chunk.len(), CHUNK_SIZE);
        assert_eq!(&frozen[..], b"small");
    }
}
