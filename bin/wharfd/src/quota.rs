//! Per-user space accounting shared by all of a user's sessions.
//!
//! Usage is measured once per user (a walk of the home) when the user first logs in after the server
//! starts, so it is right after a restart; from then on every operation that frees space reports the
//! bytes it freed. Reservations (for uploads in flight) are part of the same ledger, so that parallel
//! writers can never together pass the limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use wharf_common::proto::QuotaInfo;

use crate::storage::{Home, StorageResult};

/// One user's ledger.
#[derive(Debug)]
pub struct Ledger {
    state: Mutex<QuotaInfo>,
}

impl Ledger {
    fn new(used: u64, limit: Option<u64>) -> Ledger {
        Ledger {
            state: Mutex::new(QuotaInfo {
                used,
                reserved: 0,
                limit,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QuotaInfo> {
        // Plain counters; a panic mid-update cannot leave them worse than a missed update.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            let mut ledgers = self
                .ledgers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            ledgers.entry(user.to_owned()).or_default().clone()
        };
        let ledger = cell
            .get_or_try_init(|| async { Ok(Arc::new(Ledger::new(home.usage().await?, limit))) })
            .await?;
        ledger.set_limit(limit);
        Ok(ledger.clone())
    }
}
