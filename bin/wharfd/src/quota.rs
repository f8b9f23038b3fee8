//! Per-user space accounting shared by all of a user's sessions.
//!
//! Usage is measured once per user (a walk of the home) from the user's first login after the server
//! starts, so it is right after a restart; from then on every operation that frees space reports the
//! bytes it freed. Reservations (for uploads in flight) are part of the same ledger, so that parallel
//! writers can never together pass the limit.
//!
//! The login does not wait for the walk, which takes seconds for a home of a million files: the
//! walk runs beside the session, and only what changes or reports the space used waits for it
//! ([`UserLedger::get`]). Listing, reading and downloading never do.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;

use tokio::sync::OnceCell;
use wharf_common::proto::QuotaInfo;

use crate::storage::{Home, StorageResult};

/// One user's ledger.
#[derive(Debug)]
pub struct Ledger {
    state: Mutex<QuotaInfo>,
}

/// The upload would not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    pub needed: u64,
    pub available: u64,
}

impl Ledger {
    fn new(used: u64, limit: Option<u64>) -> Ledger {
        let state = QuotaInfo { used, reserved: 0, limit };
        Ledger { state: Mutex::new(state) }
    }

    /// Reserves `bytes` atomically, or refuses if used + reserved + bytes would pass the limit.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, OverQuota> {
        let mut state = self.lock();
        if let Some(limit) = state.limit {
            let committed = state.used.saturating_add(state.reserved);
            let available = limit.saturating_sub(committed);
            if bytes > available {
                return Err(OverQuota { needed: bytes, available });
            }
        }
        state.reserved += bytes;
        Ok(Reservation { ledger: self.clone(), remaining: bytes })
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, QuotaInfo> {
        // Plain counters; a panic mid-update cannot leave them worse than a missed update.
        self.state.lock()
    }

    /// The current figures.
    pub fn info(&self) -> QuotaInfo {
        *self.lock()
    }

    /// Applies a changed limit from the user record.
    pub fn set_limit(&self, limit: Option<u64>) {
        self.lock().limit = limit;
    }

    /// Gives back `bytes` after a delete or an overwrite.
    pub fn release(&self, bytes: u64) {
        let mut state = self.lock();
        state.used = state.used.saturating_sub(bytes);
    }
}

/// Space promised to one upload. Bytes written move from reserved to used; dropping it gives the
/// rest back.
#[derive(Debug)]
pub struct Reservation {
    ledger: Arc<Ledger>,
    remaining: u64,
}

impl Reservation {
    /// Records `bytes` written: they now count as used, drawn from the reservation while it lasts.
    pub fn consume(&mut self, bytes: u64) {
        let from_reservation = bytes.min(self.remaining);
        self.remaining -= from_reservation;
        let mut state = self.ledger.lock();
        state.reserved -= from_reservation;
        state.used = state.used.saturating_add(bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.ledger.lock();
        state.reserved = state.reserved.saturating_sub(self.remaining);
    }
}

/// What one upload owes its user's ledger: space reserved before any byte moves, bytes counted as
/// used as soon as they are written (the partial keeps them, to resume from), and the settling at
/// its end.
#[derive(Debug)]
pub struct UploadCharge {
    ledger: Arc<Ledger>,
    reservation: Mutex<Reservation>,
    charged: AtomicU64,
}

impl UploadCharge {
    /// Reserves `bytes` for an upload, or refuses if they do not fit.
    pub fn reserve(ledger: &Arc<Ledger>, bytes: u64) -> Result<UploadCharge, OverQuota> {
        let reservation = Mutex::new(ledger.reserve(bytes)?);
        Ok(UploadCharge { ledger: ledger.clone(), reservation, charged: AtomicU64::new(0) })
    }

    /// The partial grew by `grown` bytes: they count as used at once.
    pub fn written(&self, grown: u64) {
        self.reservation.lock().consume(grown);
        self.charged.fetch_add(grown, Ordering::Relaxed);
    }

    /// The upload broke off with its partial `grown` bytes longer than at the start. Those stay
    /// charged, kept for a resume; bytes charged but never written (the disk filled up, say) are
    /// given back, and so is the rest of the reservation.
    pub fn broke_off(self, grown: u64) {
        self.ledger.release(self.charged.load(Ordering::Relaxed).saturating_sub(grown));
    }

    /// The partial was dropped (its digest did not match), freeing `freed` bytes.
    pub fn discarded(self, freed: u64) {
        self.ledger.release(freed);
    }

    /// The upload was installed over a file of `replaced` bytes (0 if there was none).
    pub fn installed(self, replaced: u64) {
        self.ledger.release(replaced);
    }
}

/// The ledgers of every user seen since the server started.
#[derive(Debug, Default)]
pub struct QuotaBook {
    ledgers: Mutex<HashMap<String, Arc<OnceCell<Arc<Ledger>>>>>,
}

/// Measures a home's usage: a walk of it, or one query.
type Measure = Arc<dyn Fn() -> BoxFuture<'static, StorageResult<u64>> + Send + Sync>;

impl QuotaBook {
    /// The ledger of `user`, whose home `home` is, for a session that has just logged in with the
    /// limit `limit`. The first time, it starts measuring the home without waiting for it.
    pub fn open(&self, user: &str, home: Arc<dyn Home>, limit: Option<u64>) -> UserLedger {
        let measure: Measure = Arc::new(move || {
            let home = home.clone();
            Box::pin(async move { home.usage().await })
        });
        self.open_with(user, measure, limit)
    }

    fn open_with(&self, user: &str, measure: Measure, limit: Option<u64>) -> UserLedger {
        let cell = self.ledgers.lock().entry(user.to_owned()).or_default().clone();
        let ledger = UserLedger { cell, measure, limit };
        match ledger.cell.get() {
            Some(measured) => measured.set_limit(limit),
            None => {
                // Concurrent first logins each start one; the cell lets only one walk at a time,
                // and the others find it measured.
                let measuring = ledger.clone();
                let user = user.to_owned();
                tokio::spawn(async move {
                    if let Err(err) = measuring.get().await {
                        tracing::warn!(%user, %err, "cannot measure the home's usage");
                    }
                });
            }
        }
        ledger
    }

    /// Gives `bytes` back to `user`'s ledger, if it has been measured already (otherwise the bytes
    /// are simply not there when it is).
    pub fn release(&self, user: &str, bytes: u64) {
        let ledgers = self.ledgers.lock();
        if let Some(ledger) = ledgers.get(user).and_then(|cell| cell.get()) {
            ledger.release(bytes);
        }
    }
}

/// One session's handle on its user's ledger, which may still be being measured.
#[derive(Clone)]
pub struct UserLedger {
    cell: Arc<OnceCell<Arc<Ledger>>>,
    measure: Measure,
    /// The limit the session logged in with: the ledger's until a reload of the user's record
    /// changes it.
    limit: Option<u64>,
}

impl UserLedger {
    /// The ledger, once the home has been measured. Call it before changing what the home holds:
    /// a file removed while the walk is under way might be counted by it and released as well.
    /// A measurement that failed is tried again by the next caller.
    pub async fn get(&self) -> StorageResult<Arc<Ledger>> {
        let measure = || async {
            let used = (self.measure)().await?;
            Ok(Arc::new(Ledger::new(used, self.limit)))
        };
        self.cell.get_or_try_init(measure).await.cloned()
    }

    /// The ledger if the home has been measured already.
    pub fn measured(&self) -> Option<&Arc<Ledger>> {
        self.cell.get()
    }

    /// Applies a changed limit from the user record. Before the measurement ends there is nothing
    /// to apply it to; the next reload (every few seconds) does.
    pub fn set_limit(&self, limit: Option<u64>) {
        if let Some(ledger) = self.measured() {
            ledger.set_limit(limit);
        }
    }
}

impl std::fmt::Debug for UserLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserLedger").field("measured", &self.measured()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageError;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;
    use wharf_common::proto::ErrorCode;

    #[test]
    fn reservations_never_pass_the_limit_and_give_back_the_rest() {
        let ledger = Arc::new(Ledger::new(100, Some(1000)));
        let mut first = ledger.reserve(600).expect("fits");
        assert_eq!(ledger.reserve(301).err(), Some(OverQuota { needed: 301, available: 300 }));
        let second = ledger.reserve(300).expect("exactly fits");
        assert_eq!(ledger.info().reserved, 900);
        first.consume(250);
        assert_eq!((ledger.info().used, ledger.info().reserved), (350, 650));
        drop(first);
        drop(second);
        assert_eq!((ledger.info().used, ledger.info().reserved), (350, 0));
        ledger.release(350);
        assert_eq!(ledger.info().used, 0);
    }

    /// A measurement that takes one permit of `gate` per walk, so a test decides when a walk
    /// ends, and fails its first `failures` walks.
    fn gated(gate: &Arc<Semaphore>, used: u64, failures: usize) -> (Measure, Arc<AtomicUsize>) {
        let walks = Arc::new(AtomicUsize::new(0));
        let (gate, counted) = (gate.clone(), walks.clone());
        let measure: Measure = Arc::new(move || {
            let (gate, walks) = (gate.clone(), counted.clone());
            Box::pin(async move {
                gate.acquire().await.expect("open").forget();
                if walks.fetch_add(1, Ordering::SeqCst) < failures {
                    return Err(StorageError::new(ErrorCode::Io, "walk failed"));
                }
                Ok(used)
            })
        });
        (measure, walks)
    }

    #[tokio::test]
    async fn a_login_does_not_wait_for_the_walk_but_changes_to_the_space_do() {
        let (book, gate) = (QuotaBook::default(), Arc::new(Semaphore::new(0)));
        let (measure, walks) = gated(&gate, 700, 0);
        let first = book.open_with("ann", measure.clone(), Some(1000));
        assert!(first.measured().is_none(), "the session opens before the walk ends");
        // A change to the space must wait for the walk: it cannot finish while the walk is held.
        let waiting = tokio::spawn({
            let first = first.clone();
            async move { first.get().await.map(|ledger| ledger.info()) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "nothing may charge or release before the walk ends");
        gate.add_permits(1);
        let info = waiting.await.expect("task").expect("measured");
        assert_eq!((info.used, info.limit), (700, Some(1000)));
        // Later logins find it measured, with their own limit, and walk no more.
        let second = book.open_with("ann", measure, Some(2000));
        assert_eq!(second.measured().map(|ledger| ledger.info().limit), Some(Some(2000)));
        assert_eq!(walks.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_walk_that_failed_is_tried_again_by_the_next_change() {
        let (book, gate) = (QuotaBook::default(), Arc::new(Semaphore::new(2)));
        let (measure, walks) = gated(&gate, 5, 1);
        let ledger = book.open_with("bob", measure, None);
        // The login's own walk fails (logged); the session stays open, with nothing measured.
        while walks.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let used = ledger.get().await.expect("the second walk succeeds").info().used;
        assert_eq!((used, walks.load(Ordering::SeqCst)), (5, 2));
    }
}
