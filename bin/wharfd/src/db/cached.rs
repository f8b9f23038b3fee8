//! Statements prepared once per pooled connection and reused after.
//!
//! tokio-postgres runs a query given as text in two round trips: one to have the server parse, plan
//! and describe it, one to run it. Every statement wharfd sends is one of a fixed set of texts, so
//! each connection prepares each text once (deadpool's per-connection cache) and every later use
//! is one round trip, without the server parsing it again. On the s3 backend a small upload sends
//! about fifteen statements, four of them inside the per-user quota lock.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

/// [`GenericClient`]'s queries, through the connection's cache of prepared statements.
#[async_trait]
pub trait Cached: GenericClient {
    async fn query_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query(&statement, params).await
    }

    async fn query_opt_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_opt(&statement, params).await
    }

    async fn query_one_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_one(&statement, params).await
    }

    async fn execute_cached(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        let statement = self.prepare_cached(sql).await?;
        self.execute(&statement, params).await
    }
}

impl<C: GenericClient> Cached for C {}
