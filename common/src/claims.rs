//! Exclusive claims on keys (a partial upload's key, a download's destination), so that two
//! transfers never write the same partial file. A claim lives as long as its guard, which a transfer
//! hands to the thread that writes the file, so it is released only when the last write is done.
//!
//! A newcomer may also ask the holder to stop ([`ClaimSet::take_over`]): an upload whose client
//! died holds its claim until the dead connection times out, and the same user's next attempt at the
//! same file must not wait for that.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// How long a transfer waits for an earlier one on the same key to let go: the earlier one's writer
/// may still be writing the chunks its lanes handed over, which takes well under a second unless
/// the disk is in trouble.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The keys currently claimed.
#[derive(Debug)]
pub struct ClaimSet<K> {
    /// Each held key, with the signal that asks its holder to stop.
    held: Mutex<HashMap<K, Arc<Notify>>>,
    released: Notify,
}

impl<K> Default for ClaimSet<K> {
    fn default() -> Self {
        ClaimSet { held: Mutex::new(HashMap::new()), released: Notify::new() }
    }
}

/// Exclusive use of one key; released on drop.
#[derive(Debug)]
pub struct Claim<K: Hash + Eq> {
    set: Arc<ClaimSet<K>>,
    key: K,
    stop: Arc<Notify>,
}

impl<K: Hash + Eq + Clone> ClaimSet<K> {
    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<K, Arc<Notify>>> {
        self.held.lock()
    }

    /// Claims `key` now, or `None` if it is held.
    pub fn try_claim(self: &Arc<Self>, key: &K) -> Option<Claim<K>> {
        let mut held = self.lock();
        if held.contains_key(key) {
            return None;
        }
        let stop = Arc::new(Notify::new());
        held.insert(key.clone(), stop.clone());
        Some(Claim { set: self.clone(), key: key.clone(), stop })
    }

    /// Claims `key`, first asking its holder, if any, to stop ([`Claim::stop_requested`]), then
    /// waiting up to `patience` for it to let go.
    pub async fn take_over(self: &Arc<Self>, key: &K, patience: Duration) -> Option<Claim<K>> {
        if let Some(stop) = self.lock().get(key) {
            // A permit is kept if the holder is not waiting yet, so the request is never lost.
            stop.notify_one();
        }
        self.claim_within(key, patience).await
    }

    /// Claims `key`, waiting up to `patience` for its holder to let go (an interrupted transfer whose
    /// writer is still finishing, for instance).
    pub async fn claim_within(self: &Arc<Self>, key: &K, patience: Duration) -> Option<Claim<K>> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Register before checking, so a release between the check and the wait is not missed.
            released.as_mut().enable();
            if let Some(claim) = self.try_claim(key) {
                return Some(claim);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return None;
            }
        }
    }
}

impl<K: Hash + Eq> Claim<K> {
    /// Completes when a newcomer asks for this key ([`ClaimSet::take_over`]).
    pub async fn stop_requested(&self) {
        self.stop.notified().await;
    }
}

impl<K: Hash + Eq> Drop for Claim<K> {
    fn drop(&mut self) {
        self.set.held.lock().remove(&self.key);
        self.set.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_waiters_get_it_on_release() {
        let set = Arc::new(ClaimSet::<String>::default());
        let key = "k".to_owned();
        let first = set.try_claim(&key).expect("free");
        assert!(set.try_claim(&key).is_none());
        assert!(
            set.claim_within(&key, Duration::from_millis(20)).await.is_none(),
            "times out while held"
        );
        let waiter = {
            let set = set.clone();
            let key = key.clone();
            tokio::spawn(
                async move { set.claim_within(&key, Duration::from_secs(10)).await.is_some() },
            )
        };
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiter.await.expect("task"), "the waiter gets the key once it is released");
    }

    #[tokio::test]
    async fn a_newcomer_asks_the_holder_to_stop_and_gets_the_key() {
        let set = Arc::new(ClaimSet::<String>::default());
        let key = "k".to_owned();
        let holder = set.try_claim(&key).expect("free");
        let holder = tokio::spawn(async move {
            holder.stop_requested().await;
            // Finishing the last write takes a moment; the newcomer waits for it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(holder);
        });
        let taken = set.take_over(&key, Duration::from_secs(10)).await;
        assert!(taken.is_some(), "the newcomer gets the key once the holder stopped");
        holder.await.expect("holder");
        assert!(set.try_claim(&key).is_none(), "the newcomer holds it now");
    }
}
