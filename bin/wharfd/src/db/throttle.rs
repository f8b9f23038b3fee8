//! Login failures shared by the nodes, in the database: the counts each node's own throttle
//! ([`crate::throttle`]) combines with its own, so that attempts spread over several nodes are
//! delayed and refused as if they all came to one. A database that cannot be reached leaves each
//! node to its own counts (and logs why): logins then fail anyway, the user records being there.

use std::net::IpAddr;
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::db::Cached as _;
use crate::throttle::source_key;

/// The failure counts of the database.
#[derive(Debug, Clone)]
pub struct SharedFailures {
    pool: Pool,
    window: Duration,
}

impl SharedFailures {
    pub fn new(pool: Pool, window: Duration) -> SharedFailures {
        SharedFailures { pool, window }
    }

    fn window_secs(&self) -> f64 {
        self.window.as_secs_f64()
    }

    /// Runs `work` on a pooled connection; a failure is logged as `what`, and gives `None`.
    async fn with_client<T>(
        &self,
        what: &str,
        work: impl AsyncFnOnce(&deadpool_postgres::Object) -> Result<T, tokio_postgres::Error>,
    ) -> Option<T> {
        let result = match self.pool.get().await {
            Ok(client) => work(&client).await.map_err(anyhow::Error::from),
            Err(err) => Err(anyhow::Error::from(err)),
        };
        result.map_err(|err| tracing::warn!(%err, "cannot {what}")).ok()
    }

    /// Recent failures from `ip` and for `user`, across the nodes.
    pub async fn counts(&self, ip: IpAddr, user: &str) -> (u32, u32) {
        let (key, window) = (source_key(ip).to_string(), self.window_secs());
        let rows = self
            .with_client("read the shared login failures", async |client| {
                client
                    .query_cached(
                        "SELECT kind, count FROM login_failures
                         WHERE ((kind = 'ip' AND key = $1) OR (kind = 'user' AND key = $2))
                           AND last > now() - make_interval(secs => $3)",
                        &[&key, &user, &window],
                    )
                    .await
            })
            .await
            .unwrap_or_default();
        let mut counts = (0, 0);
        for row in rows {
            let count = u32::try_from(row.get::<_, i32>(1)).unwrap_or(0);
            match row.get::<_, &str>(0) {
                "ip" => counts.0 = count,
                _ => counts.1 = count,
            }
        }
        counts
    }

    /// Counts one more failure from `ip` for `user`; a count past the window starts again.
    pub async fn record_failure(&self, ip: IpAddr, user: &str) {
        let (key, window) = (source_key(ip).to_string(), self.window_secs());
        self.with_client("record a login failure in the database", async |client| {
            client
                .execute_cached(
                    "INSERT INTO login_failures (kind, key, count, last)
                     VALUES ('ip', $1, 1, now()), ('user', $2, 1, now())
                     ON CONFLICT (kind, key) DO UPDATE SET
                         count = CASE WHEN login_failures.last > now() - make_interval(secs => $3)
                                      THEN login_failures.count + 1 ELSE 1 END,
                         last = now()",
                    &[&key, &user, &window],
                )
                .await
        })
        .await;
    }

    /// A successful login clears the address's and the user name's failures.
    pub async fn record_success(&self, ip: IpAddr, user: &str) {
        let key = source_key(ip).to_string();
        self.with_client("clear login failures in the database", async |client| {
            client
                .execute_cached(
                    "DELETE FROM login_failures
                     WHERE (kind = 'ip' AND key = $1) OR (kind = 'user' AND key = $2)",
                    &[&key, &user],
                )
                .await
        })
        .await;
    }
}
