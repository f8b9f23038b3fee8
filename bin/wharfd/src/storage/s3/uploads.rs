//! An upload's life on the s3 backend, in the database: started or resumed, its space reserved
//! across the nodes, published in one transaction, or discarded. The pieces themselves are
//! [`super::pieces`]'s.

use std::io::ErrorKind;

use futures_util::future::{try_join, try_join4};
use tokio_postgres::types::ToSql;
use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::ErrorCode;
use wharf_common::transfer::{PIECE_SIZE, Ranges};

use super::blobs::fresh_blob;
use super::home::{FILE_MODE, FORGET_BLOB, S3Home, now};
use super::inline::INLINE_MAX;
use super::namespace::{
    ADD_USAGE, ENTRY_COLUMNS, FILES_USAGE, Stored, UPLOAD_HELD, add_usage, db_error, path_error,
};
use super::pieces::piece_count;
use crate::db::Cached as _;
use crate::storage::Installed;
use crate::storage::{StorageError, StorageResult};

/// Deletes upload `key` of `user` and queues its blob; returns the bytes it held.
pub async fn discard(
    tx: &deadpool_postgres::Transaction<'_>,
    user: &str,
    key: &str,
) -> StorageResult<u64> {
    let sql = format!(
        "SELECT blob, size, {UPLOAD_HELD} FROM uploads u WHERE user_name = $1 AND key = $2"
    );
    let Some(row) = tx.query_opt_cached(&sql, &[&user, &key]).await.map_err(db_error)? else {
        return Ok(0);
    };
    let (blob, size, held): (Option<String>, i64, i64) = (row.get(0), row.get(1), row.get(2));
    tx.execute_cached(DROP_UPLOAD, &[&user, &key]).await.map_err(db_error)?;
    S3Home::forget_blob(tx, blob.as_deref(), u64::try_from(size).unwrap_or(0)).await?;
    Ok(u64::try_from(held).unwrap_or(0))
}

impl S3Home {
    /// Finds or starts upload `key` of `path`: with `resume`, an upload of the same size and source
    /// keeps the pieces it stored. Returns its blob (none for a file stored inline), the ranges in
    /// place, and the bytes discarded.
    pub(super) async fn open_upload(
        &self,
        key: &str,
        path: &RemotePath,
        size: u64,
        source: &str,
        resume: bool,
    ) -> StorageResult<(Option<String>, Ranges, u64)> {
        let user = &self.ns.user;
        let blob = (size > INLINE_MAX).then(fresh_blob);
        let (size_i, piece_i) = (size as i64, PIECE_SIZE as i64);
        let start = "INSERT INTO uploads (user_name, key, path, size, source, blob, piece_size)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let params: [&(dyn ToSql + Sync); 7] =
            [user, &key, &path.as_str(), &size_i, &source, &blob, &piece_i];
        let mut client = self.ns.client().await?;
        // Most uploads find none before them: one statement starts them.
        let fresh = format!("{start} ON CONFLICT (user_name, key) DO NOTHING");
        if client.execute_cached(&fresh, &params).await.map_err(db_error)? == 1 {
            return Ok((blob, Ranges::new(), 0));
        }
        let tx = client.transaction().await.map_err(db_error)?;
        let existing = tx
            .query_opt_cached(
                "SELECT path, size, source, blob FROM uploads WHERE user_name = $1 AND key = $2 FOR UPDATE",
                &[user, &key],
            )
            .await
            .map_err(db_error)?;
        let same = existing.as_ref().is_some_and(|row| {
            let (p, s, src): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
            p == path.as_str() && u64::try_from(s).ok() == Some(size) && src == source
        });
        if resume && same {
            let blob: Option<String> = existing.as_ref().and_then(|row| row.get(3));
            tx.commit().await.map_err(db_error)?;
            // Back to the pool first: holding one connection while waiting for another is how a
            // busy node deadlocks its pool.
            drop(client);
            let present = self.ns.stored_pieces(key, PIECE_SIZE, size).await?;
            return Ok((blob, present, 0));
        }
        let discarded = discard(&tx, user, key).await?;
        tx.execute_cached(start, &params).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok((blob, Ranges::new(), discarded))
    }

    /// Publishes a verified upload under `path` in one transaction: the file's row points at the
    /// upload's blob, the upload is gone, and the replaced file's blob is queued for deletion.
    pub(super) async fn install(
        &self,
        key: &str,
        path: &RemotePath,
        digest: Sha256Digest,
        mtime: Option<i64>,
    ) -> StorageResult<Installed> {
        let mut client = self.ns.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let user = &self.ns.user;
        let old_sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE user_name = $1 AND path = $2 FOR UPDATE"
        );
        tx.prepare_all(&[READ_UPLOAD, &old_sql, FORGET_BLOB, INSTALL, DROP_UPLOAD, ADD_USAGE])
            .await
            .map_err(db_error)?;
        // Both reads go out together (pipelined, `crate::db::cached`): one round trip, not two.
        let (upload, old) = try_join(
            tx.query_opt_cached(READ_UPLOAD, &[user, &key]),
            tx.query_opt_cached(&old_sql, &[user, &path.as_str()]),
        )
        .await
        .map_err(db_error)?;
        let upload = upload.ok_or_else(|| {
            StorageError::new(ErrorCode::TransferFailed, format!("{path}: the upload is gone"))
        })?;
        let (blob, size, piece_size, pieces, bytes): (Option<String>, i64, i64, i64, i64) =
            (upload.get(0), upload.get(1), upload.get(2), upload.get(3), upload.get(4));
        let whole = u64::try_from(pieces).ok() == Some(piece_count(size as u64, piece_size as u64));
        if !whole || bytes != size {
            let message = format!("{path}: not every piece of the upload is stored");
            return Err(StorageError::new(ErrorCode::TransferFailed, message));
        }
        let old = old.as_ref().map(Stored::from_row);
        if old.as_ref().is_some_and(|old| old.is_dir) {
            return Err(path_error(ErrorKind::IsADirectory, path));
        }
        let replaced = old.as_ref().map_or(0, |old| old.size);
        let mode = old.as_ref().map_or(FILE_MODE, |old| old.mode as i32);
        let (mtime, sha256) = (mtime.unwrap_or_else(now), digest.to_string());
        let old_blob = old.as_ref().and_then(|old| old.blob.as_deref());
        // The writes go out together too, and run in this order (the upload's pieces, whose
        // content the new row takes, go with the upload); the first to fail aborts the transaction.
        let (_, version, _, _) = try_join4(
            S3Home::forget_blob(&tx, old_blob, replaced),
            async {
                let row = tx
                    .query_one_cached(
                        INSTALL,
                        &[
                            user,
                            &path.as_str(),
                            &path.parent().as_str(),
                            &size,
                            &mode,
                            &mtime,
                            &blob,
                            &piece_size,
                            &sha256,
                            &key,
                        ],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(row.get::<_, i64>(0))
            },
            async { tx.execute_cached(DROP_UPLOAD, &[user, &key]).await.map_err(db_error) },
            add_usage(&tx, user, size - replaced as i64),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Installed { replaced, version: version.to_string() })
    }
}

impl S3Home {
    /// The quota across nodes: one transaction, serialised per user, that records the upload's
    /// reservation and checks that the user's files (their running total, [`FILES_USAGE`]),
    /// every upload's pieces and every live reservation still fit within `limit`.
    pub(super) async fn reserve(
        &self,
        key: &str,
        bytes: u64,
        limit: Option<u64>,
    ) -> StorageResult<Result<(), crate::quota::OverQuota>> {
        let user = &self.ns.user;
        let lease = super::namespace::RESERVATION_LEASE.as_secs();
        let record = format!(
            "UPDATE uploads SET reserved = $3, lease_until = now() + interval '{lease} seconds'
             WHERE user_name = $1 AND key = $2"
        );
        let reserved = bytes as i64;
        let client = self.ns.client().await?;
        let Some(limit) = limit else {
            // Nothing to check, so no lock to take: the reservation is recorded all the same.
            client.execute_cached(&record, &[user, &key, &reserved]).await.map_err(db_error)?;
            return Ok(Ok(()));
        };
        let lock = format!("wharf-quota:{user}");
        // This upload counts with the new reservation; the others, with theirs while their lease
        // runs, and with what they hold in any case. Recorded only if the total fits.
        let check_and_record = format!(
            "WITH counted AS (
                 SELECT u.key = $2 AS this_one,
                        greatest({UPLOAD_HELD}, CASE WHEN u.key = $2 THEN $3
                                                     WHEN lease_until > now() THEN reserved
                                                     ELSE 0 END) AS bytes
                 FROM uploads u WHERE user_name = $1),
             totals AS (
                 SELECT ({FILES_USAGE} + coalesce(sum(bytes), 0))::bigint AS committed,
                        coalesce(sum(bytes) FILTER (WHERE this_one), 0)::bigint AS this
                 FROM counted),
             recorded AS (
                 UPDATE uploads SET reserved = $3, lease_until = now() + interval '{lease} seconds'
                 WHERE user_name = $1 AND key = $2 AND (SELECT committed FROM totals) <= $4)
             SELECT committed, this FROM totals"
        );
        let limit_param = i64::try_from(limit).unwrap_or(i64::MAX);
        client.prepare_all(&[QUOTA_LOCK, &check_and_record]).await.map_err(db_error)?;
        // The whole transaction in one round trip (pipelined, `crate::db::cached`): the lock that
        // serialises the user's checks is held only while the database runs them, never across a
        // round trip to this node. The check is a statement of its own after the lock, so that
        // it sees every reservation committed before the lock was granted. Its commit does not
        // wait for the WAL to reach the disk: a reservation is a lease, and one lost to a crash of
        // the database is one that ran out (the pieces stored still count). After a failure the
        // COMMIT ends the aborted transaction as a ROLLBACK.
        let sent = try_join4(
            client.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
            client.execute_cached(QUOTA_LOCK, &[&lock]),
            client.query_one_cached(&check_and_record, &[user, &key, &reserved, &limit_param]),
            client.batch_execute("COMMIT"),
        )
        .await;
        let row = match sent {
            Ok((_, _, row, _)) => row,
            Err(err) => {
                // A batch cut short before its COMMIT went out would leave the connection inside
                // the transaction: it never goes back to the pool.
                drop(deadpool_postgres::Object::take(client));
                return Err(db_error(err));
            }
        };
        let (committed, this): (i64, i64) = (row.get(0), row.get(1));
        let (committed, this) =
            (u64::try_from(committed).unwrap_or(0), u64::try_from(this).unwrap_or(0));
        if committed > limit {
            // Nothing was recorded.
            let available = limit.saturating_sub(committed - this);
            return Ok(Err(crate::quota::OverQuota { needed: bytes, available }));
        }
        Ok(Ok(()))
    }
}

/// An upload (`$1`, `$2`) about to be installed, locked: its blob, size, piece size, and the
/// count and bytes of its stored pieces.
const READ_UPLOAD: &str = "SELECT blob, size, piece_size,
         (SELECT count(*) FROM upload_pieces p WHERE p.user_name = u.user_name AND p.key = u.key),
         (SELECT coalesce(sum(len), 0)::bigint FROM upload_pieces p
          WHERE p.user_name = u.user_name AND p.key = u.key)
     FROM uploads u WHERE user_name = $1 AND key = $2 FOR UPDATE";

/// Publishes an upload (key `$10`) as the file `$2`, replacing any file there. A file stored inline
/// takes its bytes from its piece's record; the pieces of one in the object store have none.
const INSTALL: &str = "INSERT INTO entries (user_name, path, parent, is_dir, size, mode, mtime, blob, piece_size, sha256, version, content)
     VALUES ($1, $2, $3, false, $4, $5, $6, $7, $8, $9, nextval('content_versions'),
         (SELECT content FROM upload_pieces WHERE user_name = $1 AND key = $10 AND idx = 0))
     ON CONFLICT (user_name, path) DO UPDATE SET size = excluded.size, mode = excluded.mode,
         mtime = excluded.mtime, blob = excluded.blob, piece_size = excluded.piece_size,
         sha256 = excluded.sha256, version = excluded.version, content = excluded.content
     RETURNING version";

/// Drops an upload (`$1`, `$2`) and, by cascade, its pieces' records.
const DROP_UPLOAD: &str = "DELETE FROM uploads WHERE user_name = $1 AND key = $2";

/// Takes the per-user (`$1`: `wharf-quota:USER`) lock that serialises quota checks.
const QUOTA_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext($1))";
