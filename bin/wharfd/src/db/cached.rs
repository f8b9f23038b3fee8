//! Statements prepared once per pooled connection and reused after.
//!
//! tokio-postgres runs a query given as text in two round trips: one to have the server parse, plan
//! and describe it, one to run it. Every statement wharfd sends is one of a fixed set of texts, so
//! each connection prepares each text once (deadpool's per-connection cache) and every later use
//! is one round trip, without the server parsing it again.
//!
//! Statements of one transaction that need no answer from each other go out together (pipelined:
//! several futures polled at once, each sending on its first poll), so a batch costs one round trip.
//! The server runs them in the order they were sent, which is the order they were polled only if
//! none stops to prepare on the way: [`Cached::prepare_all`] prepares a batch's texts first.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

/// [`GenericClient`]'s queries, through the connection's cache of prepared statements.
#[async_trait]
pub trait Cached: GenericClient {
    /// Prepares `texts` into the connection's cache (those missing, pipelined: at most one round
    /// trip), so that the `*_cached` calls of a pipelined batch then send at their first poll, in
    /// the order they are polled.
    async fn prepare_all(&self, texts: &[&str]) -> Result<(), Error> {
        try_join_all(texts.iter().map(|text| self.prepare_cached(text))).await.map(drop)
    }

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
