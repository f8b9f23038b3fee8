//! Per-user space accounting shared by all of a user's sessions.
//!
//! Usage is measured once per user (a walk of the home) when the user first logs in after the server
//! starts, so it is right after a restart; from then on every operation that frees space reports the
//! bytes it freed. Reservations (for uploads in flight) are part of the same ledger, so that parallel
//! writers can never together pass the limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
impl QuotaBook {
    /// Gives `bytes` back to `user`'s ledger, if it has been measured already (otherwise the bytes are
    /// simply not there when it is).
    pub fn release(&self, user: &str, bytes: u64) {
        let ledgers = self.ledgers.lock();
        if let Some(ledger) = ledgers.get(user).and_then(|cell| cell.get()) {
            ledger.release(bytes);
        }
    }
}

/// The ledgers of every user seen since the server started.
#[derive(Debug, Default)]
pub struct QuotaBook {
    ledgers: Mutex<HashMap<String, Arc<OnceCell<Arc<Ledger>>>>>,
}

impl QuotaBook {
    /// The ledger of `user`, measuring `home` the first time. Concurrent first logins measure once.
    pub async fn ledger(
        &self,
        user: &str,
        home: &dyn Home,
        limit: Option<u64>,
    ) -> StorageResult<Arc<Ledger>> {
        let cell = {
            let mut ledgers = self.ledgers.lock();
            ledgers.entry(user.to_owned()).or_default().clone()
        };
        let ledger = cell
            .get_or_try_init(|| async { Ok(Arc::new(Ledger::new(home.usage().await?, limit))) })
            .await?;
        ledger.set_limit(limit);
        Ok(ledger.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
