//! What every connection shares: configuration, authentication, storage and quotas.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::quota::QuotaBook;
use crate::storage::Storage;

/// Server-wide state, shared by all connections behind an `Arc`.
pub struct ServerContext {
    pub config: Config,
    pub auth: Authenticator,
    pub storage: Arc<dyn Storage>,
    pub quotas: QuotaBook,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext").field("config", &self.config).finish_non_exhaustive()
    }
}
