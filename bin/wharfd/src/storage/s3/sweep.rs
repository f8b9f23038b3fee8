//! Deleting the blobs no row references any more. A transaction that stops referencing a blob
//! queues it in `blob_gc`; a sweep deletes its objects, then its row, so a node that dies midway
//! leaves the rest to the next sweep, on any node.
//!
//! Requests do not wait for a sweep: they ask the node's [`Sweeper`], which runs one sweep at a time
//! in the background and runs once more if asked while it ran. No sweep holds a database
//! connection while it talks to the store, so slow deletes cannot starve the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::Pool;

use super::blobs::Blobs;
use crate::db::Cached as _;

/// Blobs taken from the queue per sweep.
const SWEEP_BATCH: i64 = 100;

/// Deletes a batch of queued blobs from the store, each row once its objects are gone.
pub async fn sweep_blobs(pool: &Pool, blobs: &Blobs) -> anyhow::Result<()> {
    let queued = {
        let client = pool.get().await?;
        client.query_cached("SELECT blob, pieces FROM blob_gc LIMIT $1", &[&SWEEP_BATCH]).await?
    };
    for row in queued {
        let (blob, pieces): (String, i64) = (row.get(0), row.get(1));
        blobs.delete(&blob, u64::try_from(pieces).unwrap_or(0)).await?;
        let client = pool.get().await?;
        client.execute_cached("DELETE FROM blob_gc WHERE blob = $1", &[&blob]).await?;
    }
    Ok(())
}

/// A node's background sweeps: one at a time, and one more after it for any request made while
/// it ran.
#[derive(Clone)]
pub struct Sweeper {
    pool: Pool,
    blobs: Blobs,
    /// Requests not yet served by a sweep that started after them; above zero while one runs.
    requests: Arc<AtomicUsize>,
}

impl Sweeper {
    pub fn new(pool: Pool, blobs: Blobs) -> Sweeper {
        Sweeper { pool, blobs, requests: Arc::default() }
    }

    /// Asks for a sweep, without waiting for it.
    pub fn request(&self) {
        if self.requests.fetch_add(1, Ordering::AcqRel) > 0 {
            return; // The running sweep will see this request and go again.
        }
        let sweeper = self.clone();
        tokio::spawn(async move {
            loop {
                let served = sweeper.requests.load(Ordering::Acquire);
                if let Err(err) = sweep_blobs(&sweeper.pool, &sweeper.blobs).await {
                    tracing::warn!(%err, "cannot delete unreferenced blobs yet");
                }
                if sweeper.requests.fetch_sub(served, Ordering::AcqRel) == served {
                    break;
                }
            }
        });
    }
}
