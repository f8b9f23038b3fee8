//! The object store's side of the s3 backend: a file's content is a blob, stored as one object per
//! piece under `blobs/BLOB/INDEX`. Keys are never reused (a blob name is random and fresh for each
//! upload), so no write ever needs a conditional put, which some stores (Garage) ignore.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

/// The bucket, as the backend uses it.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").finish_non_exhaustive()
    }
}

/// A fresh blob name: 128 random bits, never reused.
pub fn fresh_blob() -> String {
    use ring::rand::SecureRandom as _;
    let mut random = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut random).expect("system randomness");
    random.iter().map(|b| format!("{b:02x}")).collect()
}

fn piece_path(blob: &str, index: u64) -> ObjectPath {
    ObjectPath::from(format!("blobs/{blob}/{index}"))
}

impl Blobs {
    pub fn new(store: Arc<dyn ObjectStore>) -> Blobs {
        Blobs { store }
    }

    /// Stores piece `index` of `blob`.
    pub async fn put_piece(
        &self,
        blob: &str,
        index: u64,
        bytes: Bytes,
    ) -> object_store::Result<()> {
        let path = piece_path(blob, index);
        let put = self.store.put(&path, PutPayload::from_bytes(bytes));
        crate::metrics::global().store.time(put).await.map(drop)
    }

    /// Bytes `start..end` of piece `index` of `blob`.
    pub async fn read_piece(
        &self,
        blob: &str,
        index: u64,
        start: u64,
        end: u64,
    ) -> object_store::Result<Bytes> {
        let path = piece_path(blob, index);
        let get = self.store.get_range(&path, start..end);
        crate::metrics::global().store.time(get).await
    }

    /// Deletes pieces `0..pieces` of `blob`; pieces already gone are fine.
    pub async fn delete(&self, blob: &str, pieces: u64) -> object_store::Result<()> {
        for index in 0..pieces {
            let path = piece_path(blob, index);
            match crate::metrics::global().store.time(self.store.delete(&path)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}
