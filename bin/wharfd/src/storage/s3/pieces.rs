//! The transfer engine's two ends on the s3 backend. An upload's bytes arrive piece by piece (each
//! piece sequentially, on one lane); a piece is held in memory until it is whole, then stored as
//! its own object and recorded in the database: only then does it count as received, so an upload
//! interrupted on one node resumes on another from the pieces recorded. A small file's one piece
//! is stored in its record instead ([`super::inline`]). A download reads ranges of the pieces'
//! objects, or a small file's bytes from its row.
//!
//! The engine calls these on its transfer threads, which are not the runtime's: each call runs its
//! I/O to the end on the runtime through a [`Handle`].

use std::collections::HashMap;
use std::io;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use wharf_common::transfer::{Destination, PIECE_SIZE, Ranges, Source};

use super::Namespace;
use super::blobs::Blobs;
use crate::storage::{ServiceFailure, StorageError};

/// Piece `index` of a file of `size` bytes cut into `piece_size` pieces: its start and end.
pub fn piece_bounds(index: u64, piece_size: u64, size: u64) -> (u64, u64) {
    let start = index * piece_size;
    (start, (start + piece_size).min(size))
}

/// How many pieces a file of `size` bytes has.
pub fn piece_count(size: u64, piece_size: u64) -> u64 {
    size.div_ceil(piece_size)
}

/// The object store failing, as the engine carries it: the client hears whether it failed or
/// did not answer in time, the log the whole error.
fn store_failure(err: object_store::Error) -> io::Error {
    let told = match timed_out(&err) {
        true => "the server's file store did not answer in time; try again",
        false => "the server's file store failed; try again",
    };
    ServiceFailure { told: told.to_owned(), detail: err.to_string() }.into_io()
}

/// Whether a request to the store failed by running out of time.
fn timed_out(err: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = cause {
        if error.downcast_ref::<HttpError>().is_some_and(|e| e.kind() == HttpErrorKind::Timeout) {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The database failing, as the engine carries it; its message is worded for the client already.
fn database_failure(err: StorageError) -> io::Error {
    ServiceFailure { told: err.message.clone(), detail: err.message }.into_io()
}

/// Where an upload's whole pieces go.
pub enum PieceStore {
    /// One object each, in the upload's blob (which reads them back).
    Objects(BlobSource),
    /// Into their records in the database: a file of at most [`super::inline::INLINE_MAX`] bytes.
    Inline,
}

/// An upload being received: the pieces not yet whole, and where whole ones go.
pub struct PieceDestination {
    pub namespace: Namespace,
    pub store: PieceStore,
    /// Where the database's and the store's I/O runs.
    pub runtime: Handle,
    pub key: String,
    pub size: u64,
    /// Pieces being filled, by index.
    filling: Mutex<HashMap<u64, Vec<u8>>>,
    /// Pieces stored and recorded: their ranges.
    stored: Mutex<Ranges>,
}

impl PieceDestination {
    /// The upload `key` of a file of `size` bytes into `store`, whose `stored` ranges are in
    /// place already.
    pub fn new(
        namespace: Namespace,
        store: PieceStore,
        runtime: Handle,
        key: String,
        size: u64,
        stored: Ranges,
    ) -> Self {
        PieceDestination {
            namespace,
            store,
            runtime,
            key,
            size,
            filling: Mutex::default(),
            stored: Mutex::new(stored),
        }
    }

    fn bounds(&self, index: u64) -> (u64, u64) {
        piece_bounds(index, PIECE_SIZE, self.size)
    }

    /// Stores a whole piece and records it; from then on it counts as received.
    fn store(&self, index: u64, bytes: Vec<u8>) -> io::Result<()> {
        let len = bytes.len() as u64;
        self.runtime.block_on(async {
            let inline = match &self.store {
                PieceStore::Objects(blob) => {
                    let put = blob.blobs.put_piece(&blob.blob, index, Bytes::from(bytes));
                    put.await.map_err(store_failure)?;
                    None
                }
                PieceStore::Inline => Some(bytes),
            };
            let record = self.namespace.record_piece(&self.key, index, len, inline.as_deref());
            record.await.map_err(database_failure)
        })?;
        let (start, end) = self.bounds(index);
        self.stored.lock().insert(start, end);
        Ok(())
    }

    /// Bytes of a stored piece, from where it was stored.
    fn read_stored(&self, part: &mut [u8], at: u64) -> io::Result<()> {
        match &self.store {
            PieceStore::Objects(blob) => blob.read_exact_at(part, at),
            PieceStore::Inline => {
                let index = at / PIECE_SIZE;
                let piece = self.runtime.block_on(self.namespace.inline_piece(&self.key, index));
                let piece = piece.map_err(database_failure)?;
                let from = (at - index * PIECE_SIZE) as usize;
                let bytes = piece.get(from..from + part.len()).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "a stored piece is short")
                })?;
                part.copy_from_slice(bytes);
                Ok(())
            }
        }
    }
}

impl Destination for PieceDestination {
    fn held(&self) -> io::Result<u64> {
        // What the quota counts, as for a partial file: its length, up to the last piece stored.
        Ok(self.stored.lock().iter().map(|(_, end)| end).max().unwrap_or(0))
    }

    fn clear(&self) -> io::Result<()> {
        let pieces = piece_count(self.size, PIECE_SIZE);
        self.runtime.block_on(async {
            self.namespace.forget_pieces(&self.key).await.map_err(database_failure)?;
            match &self.store {
                PieceStore::Objects(blob) => {
                    blob.blobs.delete(&blob.blob, pieces).await.map_err(store_failure)
                }
                PieceStore::Inline => Ok(()),
            }
        })?;
        *self.stored.lock() = Ranges::new();
        Ok(())
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        let index = offset / PIECE_SIZE;
        let (start, end) = self.bounds(index);
        let whole = {
            let mut filling = self.filling.lock();
            let piece = filling.entry(index).or_default();
            if start + piece.len() as u64 != offset || offset + bytes.len() as u64 > end {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bytes at {offset} are not the next of piece {index}"),
                ));
            }
            piece.extend_from_slice(bytes);
            if start + piece.len() as u64 == end { filling.remove(&index) } else { None }
        };
        match whole {
            Some(piece) => self.store(index, piece),
            None => Ok(()),
        }
    }

    /// Reads piece by piece: from the piece being filled while it is in memory, from the store
    /// once it is whole.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / PIECE_SIZE;
            let (start, end) = self.bounds(index);
            let want = (buf.len() - done).min(end.saturating_sub(at) as usize).max(1);
            let part = &mut buf[done..done + want];
            let from = (at - start) as usize;
            let buffered = self.filling.lock().get(&index).and_then(|piece| {
                piece.get(from..from + want).map(|bytes| part.copy_from_slice(bytes))
            });
            if buffered.is_none() {
                self.read_stored(part, at)?;
            }
            done += want;
        }
        Ok(())
    }
}

/// A stored file being sent: ranges read from its pieces' objects.
pub struct BlobSource {
    pub blobs: Blobs,
    pub runtime: Handle,
    pub blob: String,
    pub piece_size: u64,
    pub size: u64,
}

impl Source for BlobSource {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "past the end of the file"));
        }
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / self.piece_size;
            let (start, end) = piece_bounds(index, self.piece_size, self.size);
            let want = (buf.len() - done).min((end - at) as usize);
            let range = (at - start, at - start + want as u64);
            let bytes =
                self.runtime.block_on(self.blobs.read_piece(&self.blob, index, range.0, range.1));
            let bytes = bytes.map_err(store_failure)?;
            if bytes.len() != want {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a piece is short"));
            }
            buf[done..done + want].copy_from_slice(&bytes);
            done += want;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use object_store::client::{HttpError, HttpErrorKind};
    use wharf_common::path::RemotePath;

    use super::*;

    /// A request's error inside another, as the store's retries wrap it.
    #[derive(Debug, thiserror::Error)]
    #[error("Error performing PUT http://store/bucket/blobs/b/0 - {0}")]
    struct Retried(#[source] HttpError);

    fn failed_request(kind: HttpErrorKind) -> io::Error {
        let http = HttpError::new(kind, io::Error::other("error sending request"));
        store_failure(object_store::Error::Generic { store: "S3", source: Box::new(Retried(http)) })
    }

    #[test]
    fn the_client_hears_how_the_store_failed_and_the_log_what_failed() {
        let path = RemotePath::parse("/big.bin").expect("path");
        let timed_out = failed_request(HttpErrorKind::Timeout);
        let told = StorageError::from_io(&timed_out, &path);
        assert_eq!(told.code, wharf_common::proto::ErrorCode::Io);
        assert_eq!(
            told.message,
            "/big.bin: the server's file store did not answer in time; try again"
        );
        assert!(timed_out.to_string().contains("blobs/b/0"), "the log keeps it: {timed_out}");

        let refused = StorageError::from_io(&failed_request(HttpErrorKind::Connect), &path);
        assert_eq!(refused.message, "/big.bin: the server's file store failed; try again");
    }
}
