//! One user's home on the s3 backend: directories and file metadata are rows in PostgreSQL, file
//! content is in the object store (a small file's in its row). Paths arrive normalised ([`RemotePath`]) and are only ever used
//! as keys of the user's own rows, so no path reaches another user's files or anything outside.

use std::io::ErrorKind;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use wharf_common::hash::Sha256Digest;
use wharf_common::limits::LIST_PAGE_ENTRIES;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Entry, EntryKind, ErrorCode, PartialUpload, TreeEntry};
use wharf_common::transfer::{PIECE_SIZE, Source};

use super::blobs::Blobs;
use super::inline::InlineSource;
use super::namespace::{
    ENTRY_COLUMNS, FILES_USAGE, Namespace, Stored, UPLOAD_HELD, add_usage, db_error, path_error,
};
use super::pieces::{BlobSource, PieceDestination, PieceStore, piece_count};
use super::uploads::discard;
use crate::db::Cached as _;
use crate::storage::Installed;
use crate::storage::{
    DownloadSource, Home, Listing, StorageError, StorageResult, TreeListing, UploadTarget,
    partial_key,
};

/// Mode of new directories and files (the filesystem backend's defaults under a 022 umask).
const DIR_MODE: i32 = 0o755;
pub(super) const FILE_MODE: i32 = 0o644;

pub struct S3Home {
    pub ns: Namespace,
    pub blobs: Blobs,
    pub sweeper: super::sweep::Sweeper,
    pub runtime: Handle,
}

pub(super) fn now() -> i64 {
    wharf_common::proto::unix_seconds(Some(std::time::SystemTime::now()))
}

fn refuse_root(path: &RemotePath, what: &str) -> StorageResult<()> {
    if path.is_root() {
        let message = format!("/: cannot {what} your home directory");
        return Err(StorageError::new(ErrorCode::InvalidPath, message));
    }
    Ok(())
}

/// Streams the rows `sql` selects, page by page, each page a query of its own that starts after
/// the last path sent, so that no more than a page is ever held. `sql` selects the user's rows
/// ($1) under `key` ($2) with paths after $3, `ORDER BY path LIMIT $4`; `convert` makes each
/// row an item. Always sends at least one page, empty for an empty listing.
fn paged<T: Send + 'static>(
    ns: Namespace,
    sql: String,
    key: String,
    convert: impl Fn(Stored) -> T + Send + 'static,
) -> mpsc::Receiver<StorageResult<Vec<T>>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let (mut after, mut first) = (String::new(), true);
        loop {
            let page = match next_page(&ns, &sql, &key, &after).await {
                Ok(page) => page,
                Err(err) => {
                    let _ = tx.send(Err(err)).await;
                    break;
                }
            };
            let full = page.len() == LIST_PAGE_ENTRIES;
            if let Some(last) = page.last() {
                after.clone_from(&last.path);
            }
            // A page that comes up empty after a full one ends the listing without being sent.
            let send = first || !page.is_empty();
            if send && tx.send(Ok(page.into_iter().map(&convert).collect())).await.is_err() {
                break;
            }
            if !full {
                break;
            }
            first = false;
        }
    });
    rx
}

/// One page of [`paged`]'s query: the rows after `after`.
async fn next_page(
    ns: &Namespace,
    sql: &str,
    key: &str,
    after: &str,
) -> StorageResult<Vec<Stored>> {
    let client = ns.client().await?;
    let limit = LIST_PAGE_ENTRIES as i64;
    let rows =
        client.query_cached(sql, &[&ns.user, &key, &after, &limit]).await.map_err(db_error)?;
    Ok(rows.iter().map(Stored::from_row).collect())
}

/// Queues a blob (`$1`, of `$2` pieces) for the sweep.
pub(super) const FORGET_BLOB: &str =
    "INSERT INTO blob_gc (blob, pieces) VALUES ($1, $2) ON CONFLICT DO NOTHING";

impl S3Home {
    /// Queues `blob` for deletion, in the transaction that stops referencing it.
    pub(super) async fn forget_blob(
        tx: &deadpool_postgres::Transaction<'_>,
        blob: Option<&str>,
        size: u64,
    ) -> StorageResult<()> {
        let Some(blob) = blob else { return Ok(()) };
        let pieces = piece_count(size, PIECE_SIZE) as i64;
        tx.execute_cached(FORGET_BLOB, &[&blob, &pieces]).await.map_err(db_error)?;
        Ok(())
    }

    async fn insert_dir(&self, path: &RemotePath) -> StorageResult<bool> {
        let client = self.ns.client().await?;
        let parent = path.parent();
        let inserted = client
            .execute_cached(
                "INSERT INTO entries (user_name, path, parent, is_dir, mode, mtime, version)
                 VALUES ($1, $2, $3, true, $4, $5, nextval('content_versions'))
                 ON CONFLICT DO NOTHING",
                &[&self.ns.user, &path.as_str(), &parent.as_str(), &DIR_MODE, &now()],
            )
            .await
            .map_err(db_error)?;
        Ok(inserted == 1)
    }
}

#[async_trait]
impl Home for S3Home {
    async fn stat(&self, path: &RemotePath) -> StorageResult<Entry> {
        if path.is_root() {
            let root =
                Entry { name: "/".into(), kind: EntryKind::Dir, size: 0, mode: 0o755, mtime: 0 };
            return Ok(root);
        }
        let entry = self.ns.entry(path).await?;
        entry.map(|e| e.entry()).ok_or_else(|| path_error(ErrorKind::NotFound, path))
    }

    async fn list(&self, path: &RemotePath) -> StorageResult<Listing> {
        self.ns.require_dir(path).await?;
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE user_name = $1 AND parent = $2 \
             AND path > $3 ORDER BY path LIMIT $4"
        );
        Ok(paged(self.ns.clone(), sql, path.as_str().to_owned(), |stored| stored.entry()))
    }

    async fn mkdir(&self, path: &RemotePath, parents: bool) -> StorageResult<()> {
        if path.is_root() {
            return if parents { Ok(()) } else { Err(path_error(ErrorKind::AlreadyExists, path)) };
        }
        if !parents {
            self.ns.require_dir(&path.parent()).await?;
            return match self.insert_dir(path).await? {
                true => Ok(()),
                false => Err(path_error(ErrorKind::AlreadyExists, path)),
            };
        }
        let mut at = RemotePath::root();
        for component in path.components() {
            at = at.join(component).map_err(|_| path_error(ErrorKind::InvalidInput, path))?;
            if !self.insert_dir(&at).await? {
                self.ns.require_dir(&at).await?;
            }
        }
        Ok(())
    }

    async fn rmdir(&self, path: &RemotePath) -> StorageResult<()> {
        refuse_root(path, "remove")?;
        self.ns.require_dir(path).await?;
        let client = self.ns.client().await?;
        let removed = client
            .execute_cached(
                "DELETE FROM entries e WHERE user_name = $1 AND path = $2 AND NOT EXISTS
                     (SELECT 1 FROM entries c WHERE c.user_name = $1 AND c.parent = $2)",
                &[&self.ns.user, &path.as_str()],
            )
            .await
            .map_err(db_error)?;
        match removed {
            1 => Ok(()),
            _ => Err(path_error(ErrorKind::DirectoryNotEmpty, path)),
        }
    }

    async fn remove(&self, path: &RemotePath, recursive: bool) -> StorageResult<u64> {
        refuse_root(path, "remove")?;
        let entry =
            self.ns.entry(path).await?.ok_or_else(|| path_error(ErrorKind::NotFound, path))?;
        if entry.is_dir && !recursive {
            return Err(path_error(ErrorKind::IsADirectory, path));
        }
        let mut client = self.ns.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let below = format!("{}/", path.as_str());
        // One statement however large the tree: the rows go, their blobs are queued for the sweep,
        // and what the files held comes back as one sum.
        let freed: i64 = tx
            .query_one_cached(
                "WITH gone AS (
                     DELETE FROM entries WHERE user_name = $1 AND (path = $2 OR starts_with(path, $3))
                     RETURNING blob, size, piece_size, is_dir),
                 queued AS (
                     INSERT INTO blob_gc (blob, pieces)
                     SELECT blob, (size + piece_size - 1) / piece_size FROM gone WHERE blob IS NOT NULL
                     ON CONFLICT DO NOTHING)
                 SELECT coalesce(sum(size) FILTER (WHERE NOT is_dir), 0)::bigint FROM gone",
                &[&self.ns.user, &path.as_str(), &below],
            )
            .await
            .map_err(db_error)?
            .get(0);
        let freed = u64::try_from(freed).unwrap_or(0);
        add_usage(&tx, &self.ns.user, -(freed as i64)).await?;
        tx.commit().await.map_err(db_error)?;
        self.sweeper.request();
        Ok(freed)
    }

    async fn rename(&self, from: &RemotePath, to: &RemotePath) -> StorageResult<u64> {
        refuse_root(from, "rename")?;
        refuse_root(to, "replace")?;
        let source =
            self.ns.entry(from).await?.ok_or_else(|| path_error(ErrorKind::NotFound, from))?;
        self.ns.require_dir(&to.parent()).await?;
        if from == to {
            return Ok(0);
        }
        if source.is_dir && to.starts_with(from) {
            let message = format!("{from} -> {to}: cannot move a directory into itself");
            return Err(StorageError::new(ErrorCode::InvalidPath, message));
        }
        let mut client = self.ns.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE user_name = $1 AND path = $2 FOR UPDATE"
        );
        let target =
            tx.query_opt_cached(&sql, &[&self.ns.user, &to.as_str()]).await.map_err(db_error)?;
        let replaced = match target.as_ref().map(Stored::from_row) {
            Some(target) if target.is_dir => return Err(path_error(ErrorKind::AlreadyExists, to)),
            Some(_) if source.is_dir => return Err(path_error(ErrorKind::NotADirectory, to)),
            Some(target) => {
                tx.execute_cached(
                    "DELETE FROM entries WHERE user_name = $1 AND path = $2",
                    &[&self.ns.user, &to.as_str()],
                )
                .await
                .map_err(db_error)?;
                Self::forget_blob(&tx, target.blob.as_deref(), target.size).await?;
                target.size
            }
            None => 0,
        };
        let (from_s, to_s) = (from.as_str(), to.as_str());
        let below = format!("{from_s}/");
        let cut = i32::try_from(from_s.len()).unwrap_or(i32::MAX) + 1;
        tx.execute_cached(
            "UPDATE entries SET
                 path = $3 || substr(path, $5),
                 parent = CASE WHEN path = $2 THEN $6 ELSE $3 || substr(parent, $5) END
             WHERE user_name = $1 AND (path = $2 OR starts_with(path, $4))",
            &[&self.ns.user, &from_s, &to_s, &below, &cut, &to.parent().as_str()],
        )
        .await
        .map_err(db_error)?;
        add_usage(&tx, &self.ns.user, -(replaced as i64)).await?;
        tx.commit().await.map_err(db_error)?;
        self.sweeper.request();
        Ok(replaced)
    }

    async fn usage(&self) -> StorageResult<u64> {
        let client = self.ns.client().await?;
        let sql = format!(
            "SELECT ({FILES_USAGE}
                  + (SELECT coalesce(sum({UPLOAD_HELD}), 0) FROM uploads u WHERE user_name = $1))::bigint"
        );
        let row = client.query_one_cached(&sql, &[&self.ns.user]).await.map_err(db_error)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: u64,
        source: &str,
        resume: bool,
    ) -> StorageResult<UploadTarget> {
        refuse_root(path, "replace")?;
        let replaced = self.ns.upload_target(path).await?;
        let key = partial_key(path);
        let (blob, present, discarded) = self.open_upload(&key, path, size, source, resume).await?;
        let len = present.iter().map(|(_, end)| end).max().unwrap_or(0);
        let store = match blob {
            Some(blob) => PieceStore::Objects(BlobSource {
                blobs: self.blobs.clone(),
                runtime: self.runtime.clone(),
                blob,
                piece_size: PIECE_SIZE,
                size,
            }),
            None => PieceStore::Inline,
        };
        let (ns, runtime) = (self.ns.clone(), self.runtime.clone());
        let dest = PieceDestination::new(ns, store, runtime, key.clone(), size, present.clone());
        self.sweeper.request();
        Ok(UploadTarget { key, dest: Arc::new(dest), present, len, replaced, discarded })
    }

    async fn commit_upload(
        &self,
        key: &str,
        path: &RemotePath,
        digest: Sha256Digest,
        mtime: Option<i64>,
    ) -> StorageResult<Installed> {
        let installed = self.ns.timed(self.install(key, path, digest, mtime)).await?;
        self.sweeper.request();
        Ok(installed)
    }

    async fn partials(&self) -> StorageResult<Vec<(String, PartialUpload)>> {
        let client = self.ns.client().await?;
        let sql = format!(
            "SELECT key, path, size, {UPLOAD_HELD}, extract(epoch FROM updated)::bigint
             FROM uploads u WHERE user_name = $1 ORDER BY path"
        );
        let rows = client.query_cached(&sql, &[&self.ns.user]).await.map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| {
                let upload = PartialUpload {
                    path: Some(row.get(1)),
                    size: u64::try_from(row.get::<_, i64>(2)).ok(),
                    held: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
                    modified: row.get(4),
                };
                (row.get(0), upload)
            })
            .collect())
    }

    async fn chmod(&self, path: &RemotePath, mode: u32) -> StorageResult<()> {
        if path.is_root() {
            return Ok(());
        }
        let client = self.ns.client().await?;
        let mode = mode as i32;
        let changed = client
            .execute_cached(
                "UPDATE entries SET mode = $3 WHERE user_name = $1 AND path = $2",
                &[&self.ns.user, &path.as_str(), &mode],
            )
            .await
            .map_err(db_error)?;
        if changed == 0 {
            return Err(path_error(ErrorKind::NotFound, path));
        }
        Ok(())
    }

    async fn tree(&self, path: &RemotePath) -> StorageResult<TreeListing> {
        self.ns.require_dir(path).await?;
        let below = if path.is_root() { "/".to_owned() } else { format!("{}/", path.as_str()) };
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE user_name = $1 AND starts_with(path, $2) \
             AND path > $3 ORDER BY path LIMIT $4"
        );
        let skip = below.len();
        Ok(paged(self.ns.clone(), sql, below, move |stored| TreeEntry {
            path: stored.path[skip..].to_owned(),
            kind: if stored.is_dir { EntryKind::Dir } else { EntryKind::File },
            size: stored.size,
            mtime: stored.mtime,
            version: stored.version.to_string(),
        }))
    }

    async fn digest(&self, path: &RemotePath) -> StorageResult<(Sha256Digest, String)> {
        let entry =
            self.ns.entry(path).await?.ok_or_else(|| path_error(ErrorKind::NotFound, path))?;
        if entry.is_dir {
            return Err(path_error(ErrorKind::IsADirectory, path));
        }
        let digest = entry.sha256.as_deref().and_then(|d| d.parse().ok());
        let digest = digest.ok_or_else(|| db_error("a file row without a digest"))?;
        Ok((digest, entry.version.to_string()))
    }

    async fn discard_upload(&self, key: &str) -> StorageResult<u64> {
        let mut client = self.ns.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let freed = discard(&tx, &self.ns.user, key).await?;
        tx.commit().await.map_err(db_error)?;
        self.sweeper.request();
        Ok(freed)
    }

    async fn begin_download(&self, path: &RemotePath) -> StorageResult<DownloadSource> {
        let (entry, content) = self
            .ns
            .entry_with_content(path)
            .await?
            .ok_or_else(|| path_error(ErrorKind::NotFound, path))?;
        if entry.is_dir {
            return Err(path_error(ErrorKind::IsADirectory, path));
        }
        let source: Arc<dyn Source> = match (entry.blob.clone(), content) {
            (Some(blob), _) => Arc::new(BlobSource {
                blobs: self.blobs.clone(),
                runtime: self.runtime.clone(),
                blob,
                piece_size: entry.piece_size,
                size: entry.size,
            }),
            // An empty file stored inline may have no bytes at all.
            (None, content) => Arc::new(InlineSource(content.unwrap_or_default().into())),
        };
        Ok(DownloadSource {
            source,
            size: entry.size,
            version: entry.version.to_string(),
            digest: entry.sha256.as_deref().and_then(|d| d.parse().ok()),
        })
    }

    async fn reserve_shared(
        &self,
        key: &str,
        bytes: u64,
        limit: Option<u64>,
    ) -> StorageResult<Result<(), crate::quota::OverQuota>> {
        self.ns.timed(self.reserve(key, bytes, limit)).await
    }

    async fn record_digest(
        &self,
        _path: &RemotePath,
        _version: &str,
        _digest: Sha256Digest,
    ) -> StorageResult<()> {
        // Every file's digest is recorded when it is installed.
        Ok(())
    }
}
