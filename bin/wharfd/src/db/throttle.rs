//! Login failures shared by the nodes, in the database: the counts each node's own throttle
//! ([`crate::throttle`]) combines with its own, so that attempts spread over several nodes are
//! delayed and refused as if they all came to one. A database that cannot be reached leaves each
//! node to its own counts (and logs why): logins then fail anyway, the user records being there.

use std::net::IpAddr;
use std::time::Duration;

use deadpool_postgres::Pool;

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

    /// Recent failures from `ip` and for `user`, across the nodes.
    pub async fn counts(&self, ip: IpAddr, user: &str) -> (u32, u32) {
        let result = async {
            let client = self.pool.get().await?;
            let rows = client
                .query(
                    "SELECT kind, count FROM login_failures
                     WHERE ((kind = 'ip' AND key = $1) OR (kind = 'user' AND key = $2))
                       AND last > now() - make_interval(secs => $3)",
                    &[&source_key(ip).to_string(), &user, &self.window_secs()],
                )
                .await?;
            let mut counts = (0, 0);
            for row in rows {
                let count = u32::try_from(row.get::<_, i32>(1)).unwrap_or(0);
                match row.get::<_, &str>(0) {
                    "ip" => counts.0 = count,
                    _ => counts.1 = count,
                }
            }
            anyhow::Ok(counts)
        }
        .await;
        result.unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot read the shared login failures");
            (0, 0)
        })
    }

    /// Counts one more failure from `ip` for `user`; a count past the window starts again.
    pub async fn record_failure(&self, ip: IpAddr, user: &str) {
        let result = async {
            let client = self.pool.get().await?;
            client
                .execute(
                    "INSERT INTO login_failures (kind, key, count, last)
                     VALUES ('ip', $1, 1, now()), ('user', $2, 1, now())
                     ON CONFLICT (kind, key) DO UPDATE SET
                         count = CASE WHEN login_failures.last > now() - make_interval(secs => $3)
                                      THEN login_failures.count + 1 ELSE 1 END,
                         last = now()",
                    &[&source_key(ip).to_string(), &user, &self.window_secs()],
                )
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(%err, "cannot record a login failure in the database");
        }
    }

    /// A successful login clears the address's and the user name's failures.
    pub async fn record_success(&self, ip: IpAddr, user: &str) {
        let result = async {
            let client = self.pool.get().await?;
            client
                .execute(
                    "DELETE FROM login_failures
                     WHERE (kind = 'ip' AND key = $1) OR (kind = 'user' AND key = $2)",
                    &[&source_key(ip).to_string(), &user],
                )
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(%err, "cannot clear login failures in the database");
        }
    }
}
