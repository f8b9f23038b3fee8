//! The s3 backend: users' files in an S3-compatible object store, their namespace, uploads and the
//! blobs to delete in PostgreSQL, so that several wharfd nodes serve the same users and files.
//!
//! - A file's content is a blob: one object per 8 MiB piece ([`blobs`]), under a name never reused,
//!   so no write depends on S3 conditional requests (which Garage ignores). Each piece is sent with
//!   its SHA-256 (`x-amz-checksum-sha256`), which the store checks before it keeps the piece. A
//!   file of at most [`INLINE_MAX`] bytes has no blob: its bytes are in its row ([`inline`]).
//! - A file appears under its name only when a transaction points its row at a verified blob
//!   ([`home`]); renames, of whole directories too, are transactions and move no bytes.
//! - Each user's files are counted by a running total, changed with them, which the quota check
//!   reads ([`uploads`]).
//! - An upload's pieces are stored and recorded as they arrive ([`pieces`]): an upload interrupted
//!   on one node resumes on another. The whole file's SHA-256 is checked before it is published, by
//!   reading back pieces that arrived ahead of the ones before them.
//!
//! Why pieces as objects, not one S3 multipart upload per file as first planned: the transfer
//! engine verifies the whole file before install by hashing it in order, reading back pieces that
//! came early, and the parts of an unfinished multipart upload cannot be read. Pieces as objects
//! can, from any node, so a resumed upload is verified the same way wherever it resumes.

mod blobs;
mod home;
mod inline;
mod namespace;
mod pieces;
mod sweep;
mod uploads;

pub use inline::INLINE_MAX;

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use deadpool_postgres::Pool;
use object_store::aws::AmazonS3Builder;

use super::{Home, Storage, StorageResult};
use crate::config::{DatabaseSettings, StorageSettings};
use crate::db::Cached as _;
use blobs::Blobs;
use home::S3Home;
use namespace::{Namespace, UPLOAD_HELD, db_error};
use sweep::{Sweeper, sweep_blobs};

/// Times a request to the store is retried (on a 5xx answer, a lost connection or a timeout)
/// before it fails.
const STORE_RETRIES: usize = 4;
/// How long past one request's timeout (`storage.request_timeout_secs`) a request to the store
/// keeps being retried. The window is counted from the first try, so it must outlast a whole
/// timeout: with the timeout alone, a piece's PUT that stalled until its timeout was never retried
/// (seen in the benchmark: one 8 MiB PUT to Garage timed out at 30 s and failed the upload).
/// Past the window, a store that keeps failing fails the transfer with an error, and the client
/// resumes it later, instead of holding it for minutes.
const STORE_RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(20);

/// All homes, in one bucket and one database.
pub struct S3Storage {
    pool: Pool,
    blobs: Blobs,
    sweeper: Sweeper,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage").finish_non_exhaustive()
    }
}

/// The store's credentials: from the file the settings name, or from the environment.
fn credentials(
    settings: &StorageSettings,
    root: &std::path::Path,
) -> anyhow::Result<(String, String)> {
    if settings.credentials_file.is_empty() {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        return Ok((var("WHARF_S3_ACCESS_KEY_ID")?, var("WHARF_S3_SECRET_ACCESS_KEY")?));
    }
    #[derive(serde::Deserialize)]
    struct File {
        access_key_id: String,
        secret_access_key: String,
    }
    let path = root.join(&settings.credentials_file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: File =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok((file.access_key_id, file.secret_access_key))
}

/// The HTTP client's options: plain HTTP allowed for an `http://` endpoint, each request's
/// timeout, and no idle connections kept where the settings say requests take fresh ones.
fn store_client_options(storage: &StorageSettings) -> object_store::ClientOptions {
    let options = object_store::ClientOptions::new()
        .with_allow_http(storage.endpoint.starts_with("http://"))
        .with_timeout(storage.request_timeout());
    match storage.reuse_connections() {
        true => options,
        false => options.with_pool_max_idle_per_host(0),
    }
}

impl S3Storage {
    /// Connects to the store and the database, and refuses a database whose schema is not this
    /// build's.
    pub async fn open(
        storage: &StorageSettings,
        database: &DatabaseSettings,
        root: &std::path::Path,
    ) -> anyhow::Result<S3Storage> {
        // reqwest's rustls has no provider of its own here: ring, as for QUIC.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (access_key, secret_key) = credentials(storage, root)?;
        let store = AmazonS3Builder::new()
            .with_endpoint(&storage.endpoint)
            .with_region(&storage.region)
            .with_bucket_name(&storage.bucket)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key)
            .with_virtual_hosted_style_request(false)
            // Each piece travels with its SHA-256, which the store checks before keeping it.
            .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
            .with_client_options(store_client_options(storage))
            .with_retry(object_store::RetryConfig {
                max_retries: STORE_RETRIES,
                retry_timeout: storage.request_timeout() + STORE_RETRY_WINDOW,
                ..Default::default()
            })
            .build()
            .context("configuring the object store")?;
        let pool = crate::db::pool(database)?;
        crate::db::check_schema(&pool).await?;
        let blobs = Blobs::new(Arc::new(store));
        let sweeper = Sweeper::new(pool.clone(), blobs.clone());
        Ok(S3Storage { pool, blobs, sweeper })
    }

    fn namespace(&self, user: &str) -> Namespace {
        Namespace { pool: self.pool.clone(), user: user.to_owned() }
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn open_home(&self, user: &str) -> StorageResult<Arc<dyn Home>> {
        let runtime = tokio::runtime::Handle::current();
        let (blobs, sweeper) = (self.blobs.clone(), self.sweeper.clone());
        Ok(Arc::new(S3Home { ns: self.namespace(user), blobs, sweeper, runtime }))
    }

    async fn create_home(&self, _user: &str) -> StorageResult<()> {
        // A home is the set of its rows: an empty one needs none.
        Ok(())
    }

    async fn remove_home(&self, user: &str) -> StorageResult<()> {
        let mut client = self.pool.get().await.map_err(db_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute_cached(
            "INSERT INTO blob_gc (blob, pieces)
                 SELECT blob, (size + piece_size - 1) / piece_size FROM entries
                 WHERE user_name = $1 AND blob IS NOT NULL
                 UNION ALL SELECT blob, (size + piece_size - 1) / piece_size FROM uploads
                 WHERE user_name = $1 AND blob IS NOT NULL
             ON CONFLICT DO NOTHING",
            &[&user],
        )
        .await
        .map_err(db_error)?;
        tx.execute_cached("DELETE FROM entries WHERE user_name = $1", &[&user])
            .await
            .map_err(db_error)?;
        tx.execute_cached("DELETE FROM uploads WHERE user_name = $1", &[&user])
            .await
            .map_err(db_error)?;
        tx.execute_cached("DELETE FROM usage WHERE user_name = $1", &[&user])
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        drop(client);
        sweep_blobs(&self.pool, &self.blobs).await.map_err(db_error)
    }

    async fn expire_partials(
        &self,
        max_age: std::time::Duration,
    ) -> StorageResult<Vec<(String, u64)>> {
        let mut client = self.pool.get().await.map_err(db_error)?;
        let tx = client.transaction().await.map_err(db_error)?;
        let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT user_name, key, {UPLOAD_HELD} FROM uploads u
             WHERE updated < now() - make_interval(secs => $1::double precision)"
        );
        let rows = tx.query_cached(&sql, &[&(secs as f64)]).await.map_err(db_error)?;
        let mut freed = Vec::new();
        for row in rows {
            let (user, key): (String, String) = (row.get(0), row.get(1));
            let held = uploads::discard(&tx, &user, &key).await?;
            freed.push((user, held));
        }
        tx.commit().await.map_err(db_error)?;
        drop(client);
        sweep_blobs(&self.pool, &self.blobs).await.map_err(db_error)?;
        Ok(freed)
    }
}
