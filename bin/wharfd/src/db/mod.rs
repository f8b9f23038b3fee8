//! The PostgreSQL database that several wharfd nodes share: a pool of connections, and the schema,
//! created and upgraded by `wharfd migrate` through numbered migrations. A node refuses to start on
//! a schema older or newer than the one it was built for.

pub mod cached;
pub mod throttle;

pub use cached::Cached;

use anyhow::{Context as _, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::config::DatabaseSettings;

/// The migrations, in order: (version, SQL). The schema's version is the last one applied.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/001_namespace.sql")),
    (2, include_str!("migrations/002_users.sql")),
    (3, include_str!("migrations/003_reservations.sql")),
    (4, include_str!("migrations/004_login_failures.sql")),
    (5, include_str!("migrations/005_listing_order.sql")),
    (6, include_str!("migrations/006_inline_content.sql")),
    (7, include_str!("migrations/007_usage.sql")),
    (8, include_str!("migrations/008_usage_stripes.sql")),
];

/// The schema version this build uses.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Any one node runs migrations at a time: the first takes this advisory lock, the others wait.
const MIGRATION_LOCK: i64 = 0x7768_6172_6600_0001;

/// A pool of connections to the database in `settings`.
pub fn pool(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = settings.url.parse().context("database.url")?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager).max_size(settings.pool_size).build().context("the database pool")
}

/// The schema version the database is at; 0 for an empty database.
pub async fn schema_version(client: &tokio_postgres::Client) -> anyhow::Result<i32> {
    let exists: bool =
        client.query_one("SELECT to_regclass('wharf_schema') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    let row = client.query_one("SELECT coalesce(max(version), 0) FROM wharf_schema", &[]).await?;
    Ok(row.get(0))
}

/// Brings the schema up to [`SCHEMA_VERSION`], in one transaction; returns the versions applied.
pub async fn migrate(pool: &Pool) -> anyhow::Result<Vec<i32>> {
    let mut client = pool.get().await.context("connecting to the database")?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS wharf_schema (
             version integer PRIMARY KEY,
             applied timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i32 =
        tx.query_one("SELECT coalesce(max(version), 0) FROM wharf_schema", &[]).await?.get(0);
    if current > SCHEMA_VERSION {
        bail!(
            "the database's schema is version {current}, newer than this wharfd ({SCHEMA_VERSION})"
        );
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        tx.batch_execute(sql).await.with_context(|| format!("migration {version}"))?;
        tx.execute("INSERT INTO wharf_schema (version) VALUES ($1)", &[version]).await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// Refuses a database whose schema is not the one this build uses.
pub async fn check_schema(pool: &Pool) -> anyhow::Result<()> {
    let client = pool.get().await.context("connecting to the database")?;
    match schema_version(&client).await? {
        SCHEMA_VERSION => Ok(()),
        0 => bail!("the database has no wharf schema: run `wharfd migrate` first"),
        older if older < SCHEMA_VERSION => bail!(
            "the database's schema is version {older}, this wharfd needs {SCHEMA_VERSION}: run \
             `wharfd migrate`"
        ),
        newer => bail!(
            "the database's schema is version {newer}, newer than this wharfd knows \
             ({SCHEMA_VERSION}): upgrade wharfd"
        ),
    }
}
