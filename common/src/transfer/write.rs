//! The disk side of a receive: writes chunks in place, in any order, and hashes the file in order as
//! its prefix fills in.
//!
//! The digest must cover the whole file from byte 0, but pieces arrive out of order. The writer keeps
//! a hash "frontier": a chunk that lands exactly there is hashed as it is written; a chunk beyond it
//! is held in memory until the frontier reaches it ([`super::ahead`]), or, past the memory bound,
//! written and read back once the bytes before it are in. With one lane every chunk lands on the
//! frontier, so nothing is held or read twice.
//!
//! The work runs as short jobs on the transfer threads ([`super::workers`]), one per chunk plus a
//! few to catch the frontier up, with the writer's state moved into each job and back.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::ahead::Ahead;
use super::ends::ReadBack;
use super::{Destination, HASH_STEP, Ranges, TransferError, hash_range, workers};
use crate::hash::Sha256Digest;

/// Bytes written between two checkpoints of the ranges in place: at most this much is sent again
/// after the receiver is killed outright. (A checkpoint is a small file write and a rename.)
pub const CHECKPOINT_EVERY: u64 = 4 * 1024 * 1024;
/// Bytes written between two background flushes of a [`Durability::Synced`] file.
const WRITEBACK_EVERY: u64 = 32 * 1024 * 1024;

/// Whether the receiver will fsync the file when it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The caller fsyncs at the end: start writeback during the transfer, so that final fsync has
    /// little left to do.
    Synced,
    /// Leave writeback to the kernel.
    Lazy,
}

/// Writes the chunks that arrive on `chunks` into `dest`, whose `present` ranges are already in
/// place, and returns the whole file's digest, or `None` if it is not all there. Reports the file's
/// length on `ready` once the file is prepared. Records the ranges in place when it stops short,
/// whatever stopped it. Runs until `chunks` is closed and empty, even if the receiver gave up.
pub async fn write_in_place(
    dest: impl Destination,
    present: Ranges,
    size: u64,
    chunks: mpsc::Receiver<(u64, Bytes)>,
    durability: Durability,
    ready: oneshot::Sender<u64>,
) -> Result<Option<Sha256Digest>, TransferError> {
    let writer = Writer {
        dest,
        chunks,
        present,
        size,
        hasher: Sha256::new(),
        frontier: 0,
        durability,
        unsynced: 0,
        unrecorded: 0,
        ahead: Ahead::new(),
    };
    let (mut writer, len) = step(writer, Writer::prepare).await?;
    let _ = ready.send(len);
    while writer.can_catch_up() {
        writer = step(writer, Writer::catch_up).await?.0;
    }
    // Waiting for chunks happens here, on the runtime; a job never waits, it writes what is there.
    while let Some(first) = writer.chunks.recv().await {
        writer = step(writer, move |writer| writer.write_queued(first)).await?.0;
        while writer.can_catch_up() {
            writer = step(writer, Writer::catch_up).await?.0;
        }
    }
    workers::run(move || writer.finish()).await
}

/// Runs one job on the writer; on an error, records the ranges in place before reporting it.
async fn step<D: Destination, T: Send + 'static>(
    writer: Writer<D>,
    job: impl FnOnce(&mut Writer<D>) -> std::io::Result<T> + Send + 'static,
) -> Result<(Writer<D>, T), TransferError> {
    workers::run(move || {
        let mut writer = writer;
        match job(&mut writer) {
            Ok(value) => Ok((writer, value)),
            Err(err) => {
                writer.record_if_short();
                Err(TransferError::File(err))
            }
        }
    })
    .await?
}

/// A file being written, and the hash of its complete prefix.
struct Writer<D> {
    dest: D,
    chunks: mpsc::Receiver<(u64, Bytes)>,
    present: Ranges,
    size: u64,
    hasher: Sha256,
    /// Bytes from 0 hashed so far.
    frontier: u64,
    durability: Durability,
    unsynced: u64,
    unrecorded: u64,
    /// Chunks that came beyond the frontier, not yet written.
    ahead: Ahead,
}

impl<D: Destination> Writer<D> {
    /// Drops what an older attempt left if nothing of it is to be kept; returns the file's length.
    fn prepare(&mut self) -> std::io::Result<u64> {
        let len = self.dest.held()?;
        if self.present.is_empty() && len > 0 {
            // Otherwise the old bytes would survive as a tail.
            self.dest.clear()?;
            return Ok(0);
        }
        Ok(len)
    }

    /// Writes `first`, then the chunks already queued behind it, up to [`HASH_STEP`] bytes: while
    /// data streams in, one job writes several chunks instead of waiting for the runtime between
    /// each.
    fn write_queued(&mut self, first: (u64, Bytes)) -> std::io::Result<()> {
        let mut written = 0;
        let mut next = Some(first);
        while let Some((offset, chunk)) = next.take() {
            written += chunk.len() as u64;
            self.write(offset, chunk)?;
            if written < HASH_STEP {
                next = self.chunks.try_recv().ok();
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, chunk: Bytes) -> std::io::Result<()> {
        if offset == self.frontier {
            return self.write_hashed(&chunk);
        }
        let Err(chunk) = self.ahead.hold(offset, chunk) else { return Ok(()) };
        // A lane sends each piece in order, and a destination may count on that (the s3 backend
        // stores a piece once it is whole): the chunks held right before this one, which came
        // before it on its lane, go first.
        for (before, held) in self.ahead.take_run_ending_at(offset) {
            self.write_in_place(before, &held)?;
        }
        self.write_in_place(offset, &chunk)
    }

    /// Writes a chunk that starts at the frontier, hashing it on the way: it is never read back.
    fn write_hashed(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let offset = self.frontier;
        self.dest.write_once(chunk, offset)?;
        self.hasher.update(chunk);
        self.frontier += chunk.len() as u64;
        self.note_written(offset, chunk.len() as u64);
        Ok(())
    }

    /// Writes a chunk beyond the frontier, to be read back when the frontier reaches it.
    fn write_in_place(&mut self, offset: u64, chunk: &[u8]) -> std::io::Result<()> {
        self.dest.write_all_at(chunk, offset)?;
        self.note_written(offset, chunk.len() as u64);
        Ok(())
    }

    fn note_written(&mut self, offset: u64, len: u64) {
        self.present.insert(offset, offset + len);
        self.unsynced += len;
        self.unrecorded += len;
        if self.durability == Durability::Synced && self.unsynced >= WRITEBACK_EVERY {
            self.unsynced = 0;
            self.dest.start_writeback();
        }
        if self.unrecorded >= CHECKPOINT_EVERY {
            self.unrecorded = 0;
            self.dest.checkpoint(&self.present);
        }
    }

    /// Whether bytes held or in place lie right past the frontier, waiting to be hashed.
    fn can_catch_up(&self) -> bool {
        self.ahead.holds(self.frontier) || self.present.end_of_range_at(self.frontier).is_some()
    }

    /// Hashes up to [`HASH_STEP`] bytes right past the frontier: chunks held (written as they are
    /// hashed), or else bytes in place (read back).
    fn catch_up(&mut self) -> std::io::Result<()> {
        let mut hashed = 0;
        while hashed < HASH_STEP {
            let Some(chunk) = self.ahead.take(self.frontier) else { break };
            hashed += chunk.len() as u64;
            self.write_hashed(&chunk)?;
        }
        if hashed > 0 {
            return Ok(());
        }
        if let Some(end) = self.present.end_of_range_at(self.frontier) {
            let end = end.min(self.frontier + HASH_STEP);
            hash_range(&ReadBack(&self.dest), self.frontier, end, &mut self.hasher)?;
            self.frontier = end;
        }
        Ok(())
    }

    /// Writes the chunks still held in place and records the ranges in place, if the file is not
    /// all there: a resume then need not ask for what arrived. Best effort, as a checkpoint is.
    fn record_if_short(&mut self) {
        for (offset, chunk) in self.ahead.take_all() {
            if self.write_in_place(offset, &chunk).is_err() {
                break;
            }
        }
        if self.present.total() < self.size {
            self.dest.checkpoint(&self.present);
        }
    }

    /// The digest if the whole file is in place and hashed; records the ranges otherwise.
    fn finish(mut self) -> Option<Sha256Digest> {
        self.record_if_short();
        (self.frontier == self.size).then(|| Sha256Digest::from_hasher(self.hasher))
    }
}

/// Set while a writeback runs: one at a time for the whole process, so that flushes waiting on a slow
/// disk never hold more than one transfer thread.
static WRITEBACK_RUNNING: AtomicBool = AtomicBool::new(false);

/// Starts flushing the file's dirty pages (fdatasync) on a transfer thread without waiting for it,
/// so that the disk works while the network does and the final fsync has little left. Skipped
/// while another flush runs. Best effort: the final fsync reports any error.
pub(super) fn start_writeback(file: &File) {
    if WRITEBACK_RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    match file.try_clone() {
        Ok(file) => workers::detach(move || {
            let _ = file.sync_data();
            WRITEBACK_RUNNING.store(false, Ordering::Release);
        }),
        Err(_) => WRITEBACK_RUNNING.store(false, Ordering::Release),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::super::ahead::Budget;
    use super::*;

    /// A destination in memory that notes which way each write came, and each checkpoint.
    #[derive(Default, Clone)]
    struct Noted {
        writes: Arc<Mutex<Vec<(&'static str, u64)>>>,
        bytes: Arc<Mutex<Vec<u8>>>,
        checkpoints: Arc<Mutex<Vec<Ranges>>>,
    }

    impl Noted {
        fn note(&self, how: &'static str, bytes: &[u8], offset: u64) -> io::Result<()> {
            self.writes.lock().expect("lock").push((how, offset));
            let mut file = self.bytes.lock().expect("lock");
            let (start, end) = (offset as usize, offset as usize + bytes.len());
            if file.len() < end {
                file.resize(end, 0);
            }
            file[start..end].copy_from_slice(bytes);
            Ok(())
        }

        fn noted(&self) -> Vec<(&'static str, u64)> {
            self.writes.lock().expect("lock").clone()
        }
    }

    impl Destination for Noted {
        fn held(&self) -> io::Result<u64> {
            Ok(0)
        }
        fn clear(&self) -> io::Result<()> {
            Ok(())
        }
        fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
            self.note("kept for reading back", bytes, offset)
        }
        fn write_once(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
            self.note("once", bytes, offset)
        }
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let file = self.bytes.lock().expect("lock");
            buf.copy_from_slice(&file[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
        fn checkpoint(&self, present: &Ranges) {
            self.checkpoints.lock().expect("lock").push(present.clone());
        }
    }

    /// A writer of a `size`-byte file that may hold `ahead` bytes beyond its frontier.
    fn writer(dest: &Noted, size: u64, ahead: usize) -> Writer<Noted> {
        let budget = Box::leak(Box::new(Budget::new(usize::MAX)));
        Writer {
            dest: dest.clone(),
            chunks: mpsc::channel(1).1,
            present: Ranges::new(),
            size,
            hasher: Sha256::new(),
            frontier: 0,
            durability: Durability::Lazy,
            unsynced: 0,
            unrecorded: 0,
            ahead: Ahead::bounded(ahead, 1, budget),
        }
    }

    /// Writes one-byte chunks in the order given, catching up as the writer's task does.
    fn write_all(writer: &mut Writer<Noted>, chunks: &[(u64, &'static [u8])]) {
        for &(offset, byte) in chunks {
            writer.write(offset, Bytes::from_static(byte)).expect("write");
            while writer.can_catch_up() {
                writer.catch_up().expect("catch up");
            }
        }
    }

    #[test]
    fn chunks_ahead_are_held_within_the_bound_and_every_byte_is_hashed_once() {
        let dest = Noted::default();
        let mut writer = writer(&dest, 4, 1);
        // Two bytes arrive before the first two (other lanes' pieces): room to hold one of them.
        write_all(&mut writer, &[(3, b"d"), (2, b"c"), (0, b"a"), (1, b"b")]);
        assert_eq!(
            dest.noted(),
            [("kept for reading back", 2), ("once", 0), ("once", 1), ("once", 3)],
            "the held byte is written once when the frontier reaches it; only the one past the \
             bound is read back"
        );
        let digest = writer.finish().expect("all there");
        assert_eq!(digest, Sha256Digest::from_hasher(Sha256::new_with_prefix(b"abcd")));
        assert!(dest.checkpoints.lock().expect("lock").is_empty(), "nothing to record");
    }

    #[test]
    fn a_chunk_past_the_bound_is_written_after_those_held_before_it_in_its_piece() {
        let dest = Noted::default();
        let mut writer = writer(&dest, 4, 2);
        write_all(&mut writer, &[(1, b"b"), (2, b"c"), (3, b"d")]);
        assert_eq!(
            dest.noted(),
            [
                ("kept for reading back", 1),
                ("kept for reading back", 2),
                ("kept for reading back", 3)
            ],
            "a piece's bytes reach the destination in order"
        );
        write_all(&mut writer, &[(0, b"a")]);
        let digest = writer.finish().expect("all there");
        assert_eq!(digest, Sha256Digest::from_hasher(Sha256::new_with_prefix(b"abcd")));
    }

    #[test]
    fn a_writer_stopped_short_writes_what_it_held_before_recording_it() {
        let dest = Noted::default();
        let mut writer = writer(&dest, 4, 100);
        write_all(&mut writer, &[(2, b"c"), (3, b"d"), (0, b"a")]);
        assert_eq!(dest.noted(), [("once", 0)], "bytes 2 and 3 are only held so far");
        assert_eq!(writer.finish(), None, "byte 1 never came");
        assert_eq!(
            dest.noted(),
            [("once", 0), ("kept for reading back", 2), ("kept for reading back", 3)]
        );
        let mut expected = Ranges::new();
        expected.insert(0, 1);
        expected.insert(2, 4);
        assert_eq!(
            dest.checkpoints.lock().expect("lock").last(),
            Some(&expected),
            "a resume keeps the held bytes"
        );
        assert_eq!(&dest.bytes.lock().expect("lock")[2..], b"cd");
    }
}
