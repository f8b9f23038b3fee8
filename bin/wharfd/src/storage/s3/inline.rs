//! Small files on the s3 backend keep their bytes in their database row, not in the object store.
//!
//! A file in the object store costs a PUT to write and a GET to read, each a request the store
//! must sign-check, log and index, on top of the rows that place it. For a file of a few KiB that
//! request is nearly all of its cost: on one 2-core machine (the benchmark's s3 profile, Garage
//! and PostgreSQL beside wharfd, two runs each alternated), 1,000 uploads of 4 KiB took 2.9 and
//! 3.6 s with a PUT each, 1.2 and 1.5 s inline; 1,000 downloads 1.5 and 1.8 s, 1.0 and 1.2 s. A file of at most [`INLINE_MAX`] bytes is therefore stored in its
//! row (`entries.content`, and while it is uploaded `upload_pieces.content`), with no blob: it is
//! written, renamed, replaced and removed in the same transactions as its metadata, and nothing is
//! ever left in the bucket to sweep.

use std::io;

use bytes::Bytes;
use wharf_common::transfer::Source;

/// The largest file kept in the database. Small enough that a row stays cheap to copy and a
/// database stays a small part of the data; PostgreSQL moves values this large out of the row into
/// its TOAST table, so listings, which never select the content, do not read them.
pub const INLINE_MAX: u64 = 64 * 1024;

/// A small file's bytes, read with its row, being sent.
pub struct InlineSource(pub Bytes);

impl Source for InlineSource {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start.checked_add(buf.len()).and_then(|end| self.0.get(start..end));
        let bytes = bytes.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "past the end of the file")
        })?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}
