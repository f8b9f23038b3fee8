//! The disk side of a receive: writes chunks in place, in any order, and hashes the file in order as
//! its prefix fills in.
//!
//! The digest must cover the whole file from byte 0, but pieces arrive out of order. The writer keeps
//! a hash "frontier": a chunk that lands exactly there is hashed as it is written; a chunk beyond it
//! is only written, and read back from the page cache once the bytes before it are in. With one lane
//! every chunk lands on the frontier, so nothing is read twice.
//!
//! The work runs as short jobs on the transfer threads ([`super::workers`]), one per chunk plus a
//! few to catch the frontier up, with the writer's state moved into each job and back.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

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
            self.write(offset, &chunk)?;
            written += chunk.len() as u64;
            if written < HASH_STEP {
                next = self.chunks.try_recv().ok();
            }
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, chunk: &[u8]) -> std::io::Result<()> {
        let len = chunk.len() as u64;
        if offset == self.frontier {
            // Hashed here, so never read back.
            self.dest.write_once(chunk, offset)?;
            self.hasher.update(chunk);
            self.frontier += len;
        } else {
            self.dest.write_all_at(chunk, offset)?;
        }
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
        Ok(())
    }

    /// Whether bytes in place lie right past the frontier, waiting to be hashed.
    fn can_catch_up(&self) -> bool {
        self.present.end_of_range_at(self.frontier).is_some()
    }

    /// Hashes up to [`HASH_STEP`] bytes in place right past the frontier, reading them back.
    fn catch_up(&mut self) -> std::io::Result<()> {
        if let Some(end) = self.present.end_of_range_at(self.frontier) {
            let end = end.min(self.frontier + HASH_STEP);
            hash_range(&ReadBack(&self.dest), self.frontier, end, &mut self.hasher)?;
            self.frontier = end;
        }
        Ok(())
    }

    fn record_if_short(&self) {
        if self.present.total() < self.size {
            self.dest.checkpoint(&self.present);
        }
    }

    /// The digest if the whole file is in place and hashed; records the ranges otherwise.
    fn finish(self) -> Option<Sha256Digest> {
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

    use super::*;

    /// A destination in memory that notes which way each write came.
    #[derive(Default, Clone)]
    struct Noted {
        writes: Arc<Mutex<Vec<(&'static str, u64)>>>,
    }

    impl Noted {
        fn note(&self, how: &'static str, offset: u64) -> io::Result<()> {
            self.writes.lock().expect("lock").push((how, offset));
            Ok(())
        }
    }

    impl Destination for Noted {
        fn held(&self) -> io::Result<u64> {
            Ok(0)
        }
        fn clear(&self) -> io::Result<()> {
            Ok(())
        }
        fn write_all_at(&self, _: &[u8], offset: u64) -> io::Result<()> {
            self.note("kept for reading back", offset)
        }
        fn write_once(&self, _: &[u8], offset: u64) -> io::Result<()> {
            self.note("once", offset)
        }
        fn read_exact_at(&self, _: &mut [u8], _: u64) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_bytes_hashed_as_they_are_written_are_written_once() {
        let dest = Noted::default();
        let (_tx, chunks) = mpsc::channel(1);
        let mut writer = Writer {
            dest: dest.clone(),
            chunks,
            present: Ranges::new(),
            size: 3,
            hasher: Sha256::new(),
            frontier: 0,
            durability: Durability::Lazy,
            unsynced: 0,
            unrecorded: 0,
        };
        // The last byte arrives first (another lane's piece), then the first two in order.
        for (offset, byte) in [(2, b"c"), (0, b"a"), (1, b"b")] {
            writer.write(offset, byte).expect("write");
        }
        let noted = dest.writes.lock().expect("lock").clone();
        assert_eq!(
            noted,
            [("kept for reading back", 2), ("once", 0), ("once", 1)],
            "a byte ahead of the frontier is read back to be hashed; the others never are"
        );
    }
}
