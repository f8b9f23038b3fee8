//! One user's part of the namespace in PostgreSQL: entries (files and directories), uploads in
//! progress and their pieces, and blobs to delete. Every change that must be atomic (installing a
//! file, renaming a directory with everything below it) is one transaction.

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Entry, EntryKind, ErrorCode};
use wharf_common::transfer::Ranges;

use super::pieces::piece_bounds;
use crate::db::Cached as _;
use crate::storage::{StorageError, StorageResult};

/// The columns [`Stored::from_row`] reads.
pub const ENTRY_COLUMNS: &str =
    "path, is_dir, size, mode, mtime, blob, piece_size, sha256, version";

/// One row of `entries`.
#[derive(Debug, Clone)]
pub struct Stored {
    pub path: String,
    pub is_dir: bool,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
    pub blob: Option<String>,
    pub piece_size: u64,
    pub sha256: Option<String>,
    pub version: i64,
}

impl Stored {
    pub fn from_row(row: &Row) -> Stored {
        Stored {
            path: row.get(0),
            is_dir: row.get(1),
            size: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
            mode: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
            mtime: row.get(4),
            blob: row.get(5),
            piece_size: row
                .get::<_, Option<i64>>(6)
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            sha256: row.get(7),
            version: row.get(8),
        }
    }

    pub fn entry(&self) -> Entry {
        let name = self.path.rsplit('/').next().unwrap_or("/").to_owned();
        let kind = if self.is_dir { EntryKind::Dir } else { EntryKind::File };
        Entry { name, kind, size: self.size, mode: self.mode, mtime: self.mtime }
    }
}

/// The database's error as a storage error: the user sees that the server failed, not why.
pub fn db_error(err: impl std::fmt::Display) -> StorageError {
    tracing::warn!(%err, "database");
    StorageError::new(ErrorCode::Io, "the server's database failed; try again".to_owned())
}

/// An error of `kind` about `path`, worded as the filesystem backend words it.
pub fn path_error(kind: std::io::ErrorKind, path: &RemotePath) -> StorageError {
    StorageError::from_io(&std::io::Error::from(kind), path)
}

/// One user's namespace.
#[derive(Clone)]
pub struct Namespace {
    pub pool: Pool,
    pub user: String,
}

impl Namespace {
    pub async fn client(&self) -> StorageResult<Object> {
        self.pool.get().await.map_err(db_error)
    }

    /// Runs `work` and counts its time as database latency.
    pub async fn timed<T>(&self, work: impl Future<Output = T>) -> T {
        crate::metrics::global().database.time(work).await
    }

    /// The entry at `path`; `None` if there is none (the root has none).
    pub async fn entry(&self, path: &RemotePath) -> StorageResult<Option<Stored>> {
        self.timed(async {
            let client = self.client().await?;
            let sql =
                format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE user_name = $1 AND path = $2");
            let row = client
                .query_opt_cached(&sql, &[&self.user, &path.as_str()])
                .await
                .map_err(db_error)?;
            Ok(row.as_ref().map(Stored::from_row))
        })
        .await
    }

    /// The entry at `path` with a small file's bytes kept inline (see [`super::inline`]).
    pub async fn entry_with_content(
        &self,
        path: &RemotePath,
    ) -> StorageResult<Option<(Stored, Option<Vec<u8>>)>> {
        self.timed(async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {ENTRY_COLUMNS}, content FROM entries WHERE user_name = $1 AND path = $2"
            );
            let row = client
                .query_opt_cached(&sql, &[&self.user, &path.as_str()])
                .await
                .map_err(db_error)?;
            Ok(row.map(|row| (Stored::from_row(&row), row.get("content"))))
        })
        .await
    }

    /// What an upload to `path` would replace (the bytes of the file there, if any), in one
    /// query: fails if `path` is a directory, or its parent is missing or not a directory.
    pub async fn upload_target(&self, path: &RemotePath) -> StorageResult<u64> {
        let parent = path.parent();
        let row = self
            .timed(async {
                let client = self.client().await?;
                client
                    .query_one_cached(
                        "SELECT (SELECT is_dir FROM entries WHERE user_name = $1 AND path = $3),
                                e.is_dir, e.size
                         FROM (SELECT 1) one
                         LEFT JOIN entries e ON e.user_name = $1 AND e.path = $2",
                        &[&self.user, &path.as_str(), &parent.as_str()],
                    )
                    .await
                    .map_err(db_error)
            })
            .await?;
        let (parent_is_dir, is_dir, size): (Option<bool>, Option<bool>, Option<i64>) =
            (row.get(0), row.get(1), row.get(2));
        match parent_is_dir {
            _ if parent.is_root() => {}
            Some(true) => {}
            Some(false) => return Err(path_error(std::io::ErrorKind::NotADirectory, &parent)),
            None => return Err(path_error(std::io::ErrorKind::NotFound, &parent)),
        }
        match is_dir {
            Some(true) => Err(path_error(std::io::ErrorKind::IsADirectory, path)),
            _ => Ok(size.and_then(|size| u64::try_from(size).ok()).unwrap_or(0)),
        }
    }

    /// Fails unless `path` is a directory (the root always is).
    pub async fn require_dir(&self, path: &RemotePath) -> StorageResult<()> {
        if path.is_root() {
            return Ok(());
        }
        match self.entry(path).await? {
            Some(entry) if entry.is_dir => Ok(()),
            Some(_) => Err(path_error(std::io::ErrorKind::NotADirectory, path)),
            None => Err(path_error(std::io::ErrorKind::NotFound, path)),
        }
    }

    /// Records that piece `index` of upload `key` is stored, with its bytes if they are kept
    /// `inline`: from now on it counts as received, and the upload's lease runs again.
    pub async fn record_piece(
        &self,
        key: &str,
        index: u64,
        len: u64,
        inline: Option<&[u8]>,
    ) -> StorageResult<()> {
        let client = self.client().await?;
        let (index, len) = (index as i64, len as i64);
        // One statement: the piece and the lease are one round trip and one commit.
        let sql = format!(
            "WITH piece AS (
                 INSERT INTO upload_pieces (user_name, key, idx, len, content)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_name, key, idx)
                 DO UPDATE SET len = excluded.len, content = excluded.content)
             UPDATE uploads SET updated = now(), lease_until = now() + interval '{} seconds'
             WHERE user_name = $1 AND key = $2",
            RESERVATION_LEASE.as_secs()
        );
        client
            .execute_cached(&sql, &[&self.user, &key, &index, &len, &inline])
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The bytes of piece `index` of upload `key`, stored inline.
    pub async fn inline_piece(&self, key: &str, index: u64) -> StorageResult<Vec<u8>> {
        let client = self.client().await?;
        let row = client
            .query_opt_cached(
                "SELECT content FROM upload_pieces WHERE user_name = $1 AND key = $2 AND idx = $3",
                &[&self.user, &key, &(index as i64)],
            )
            .await
            .map_err(db_error)?;
        let content: Option<Vec<u8>> = row.and_then(|row| row.get(0));
        content.ok_or_else(|| db_error(format!("piece {index} of upload {key} has no bytes")))
    }

    /// Forgets every piece of upload `key`.
    pub async fn forget_pieces(&self, key: &str) -> StorageResult<()> {
        let client = self.client().await?;
        client
            .execute_cached(
                "DELETE FROM upload_pieces WHERE user_name = $1 AND key = $2",
                &[&self.user, &key],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The ranges of upload `key` whose pieces are stored.
    pub async fn stored_pieces(
        &self,
        key: &str,
        piece_size: u64,
        size: u64,
    ) -> StorageResult<Ranges> {
        let client = self.client().await?;
        let rows = client
            .query_cached(
                "SELECT idx FROM upload_pieces WHERE user_name = $1 AND key = $2",
                &[&self.user, &key],
            )
            .await
            .map_err(db_error)?;
        let mut present = Ranges::new();
        for row in rows {
            let index = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
            let (start, end) = piece_bounds(index, piece_size, size);
            present.insert(start, end);
        }
        Ok(present)
    }
}

/// Adds `delta` bytes to what `user`'s files hold, in the transaction that changed them. Taken
/// last in every transaction that takes it, so that it is held only until the commit.
pub async fn add_usage(
    tx: &deadpool_postgres::Transaction<'_>,
    user: &str,
    delta: i64,
) -> StorageResult<()> {
    if delta == 0 {
        return Ok(());
    }
    tx.execute_cached(ADD_USAGE, &[&user, &delta]).await.map_err(db_error)?;
    Ok(())
}

/// Adds `$2` bytes to the files of user `$1`, in one of the user's 16 stripes (schema 8) chosen at
/// random, so that concurrent changes seldom wait for each other's commit.
pub const ADD_USAGE: &str = "INSERT INTO usage (user_name, stripe, files)
     VALUES ($1, floor(random() * 16)::smallint, $2)
     ON CONFLICT (user_name, stripe) DO UPDATE SET files = usage.files + excluded.files";

/// The bytes in a user's (`$1`) files, as SQL.
pub const FILES_USAGE: &str =
    "coalesce((SELECT sum(files) FROM usage WHERE user_name = $1), 0)::bigint";

/// How long an upload's reservation lasts without a piece arriving: long enough for a slow link to
/// move a piece, short enough that a dead node's reservations come back soon.
pub const RESERVATION_LEASE: std::time::Duration = std::time::Duration::from_secs(600);

/// The bytes an upload holds as the quota counts them: up to the end of its last stored piece.
pub const UPLOAD_HELD: &str =
    "coalesce((SELECT max(p.idx * u.piece_size + p.len) FROM upload_pieces p
     WHERE p.user_name = u.user_name AND p.key = u.key), 0)";
