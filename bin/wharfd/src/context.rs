//! What every connection shares: configuration, authentication, storage, quotas, and the partial
//! uploads being written.

use std::sync::Arc;

use wharf_common::claims::ClaimSet;

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
    /// The partial uploads being written right now, by user and partial key, so that two uploads
    /// never share a partial.
    pub uploads: Arc<ClaimSet<UploadKey>>,
}

/// A partial upload: its user, and its key within the user's partials.
pub type UploadKey = (String, String);

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext").field("config", &self.config).finish_non_exhaustive()
    }
}
