//! Bounded offloading of blocking work (file I/O, Argon2) from the async executor: the one way in,
//! besides the transfer engine's own threads (`transfer::run_on_transfer_thread`).
//!
//! Each [`BlockingPool`] is a semaphore in front of tokio's blocking thread pool, so that one kind of
//! work cannot flood the pool: on the server, Argon2 gets a pool of its own, sized to the cores, so
//! that a storm of logins never delays file operations and the reverse.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Runs closures on blocking threads, at most `limit` at once.
#[derive(Debug, Clone)]
pub struct BlockingPool {
    permits: Arc<Semaphore>,
}

impl BlockingPool {
    pub fn new(limit: usize) -> BlockingPool {
        BlockingPool { permits: Arc::new(Semaphore::new(limit.max(1))) }
    }

    /// Runs `work` on a blocking thread once a permit is free, and returns its result.
    /// A panic in `work` is propagated to the caller, as if it had run inline.
    pub async fn run<T, F>(&self, work: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit =
            self.permits.clone().acquire_owned().await.expect("pool semaphore is never closed");
        let joined = tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
}
