//! The filesystem backend: homes under `var/homes/`, each reached only through a cap-std [`Dir`].
//!
//! No path is ever joined onto a host path as a string. Each operation hands a relative path to the
//! home's directory handle, and cap-std resolves it with openat2 `RESOLVE_BENEATH` (or an equivalent
//! manual walk), so `..`, absolute symlinks and symlinks that climb out all fail with
//! `PermissionDenied`. Recursive walks open subdirectories with `O_NOFOLLOW`, so a directory swapped for
//! a symlink mid-walk is refused rather than followed. All of it runs on the blocking pool.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use cap_fs_ext::DirExt as _;
use cap_std::fs::{Dir, Metadata, PermissionsExt as _};
use tokio::sync::mpsc;
use wharf_common::hash::Sha256Digest;
use wharf_common::limits::LIST_PAGE_ENTRIES;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Entry, EntryKind, ErrorCode, unix_seconds};

use super::Installed;
use super::dir_sync::DirSyncs;
use super::fs_transfer::{
    Upload, begin_download, begin_upload, commit_upload, discard_upload, expire_partials,
    list_partials, partial_bytes, record_digest, subdir,
};
use super::fs_tree::{TreeWalk, file_bytes, freeing_later, remove_file, remove_tree, tree_bytes};
use super::{
    DownloadSource, Home, Listing, Storage, StorageError, StorageResult, TreeListing, UploadTarget,
};
use crate::blocking::BlockingPool;
use wharf_common::proto::PartialUpload;

/// Homes as directories below one host directory, with partial uploads and digests beside them.
#[derive(Debug)]
pub struct FsStorage {
    homes: Arc<Dir>,
    partials: Arc<Dir>,
    digests: Arc<Dir>,
    pool: BlockingPool,
    dir_syncs: Arc<DirSyncs>,
}

impl FsStorage {
    /// Opens the directories of the layout. This is the only use of ambient authority.
    pub fn open(layout: &crate::layout::Layout, pool: BlockingPool) -> io::Result<FsStorage> {
        let open = |path: std::path::PathBuf| -> io::Result<Arc<Dir>> {
            if layout.is_private(&path) {
                crate::layout::private_dir(&path)?;
            } else {
                std::fs::create_dir_all(&path)?;
            }
            Ok(Arc::new(Dir::open_ambient_dir(&path, cap_std::ambient_authority())?))
        };
        Ok(FsStorage {
            homes: open(layout.homes())?,
            partials: open(layout.partials())?,
            digests: open(layout.digests())?,
            pool,
            dir_syncs: Arc::default(),
        })
    }
}

fn home_error(err: &io::Error, user: &str) -> StorageError {
    StorageError::new(ErrorCode::Io, format!("home of {user:?}: {err}"))
}

#[async_trait]
impl Storage for FsStorage {
    async fn open_home(&self, user: &str) -> StorageResult<Arc<dyn Home>> {
        let (homes, partials, digests) =
            (self.homes.clone(), self.partials.clone(), self.digests.clone());
        let name = user.to_owned();
        let opened = self
            .pool
            .run(move || {
                let home = homes.open_dir_nofollow(&name)?;
                Ok::<_, io::Error>((home, subdir(&partials, &name)?, subdir(&digests, &name)?))
            })
            .await;
        let (dir, partials, digests) = opened.map_err(|err| home_error(&err, user))?;
        Ok(Arc::new(FsHome {
            dir: Arc::new(dir),
            partials: Arc::new(partials),
            digests: Arc::new(digests),
            pool: self.pool.clone(),
            dir_syncs: self.dir_syncs.clone(),
        }))
    }

    async fn create_home(&self, user: &str) -> StorageResult<()> {
        let homes = self.homes.clone();
        let name = user.to_owned();
        let created = self
            .pool
            .run(move || match homes.create_dir(&name) {
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Ok(()) => homes.set_permissions(&name, cap_std::fs::Permissions::from_mode(0o700)),
                Err(err) => Err(err),
            })
            .await;
        created.map_err(|err| home_error(&err, user))
    }

    async fn remove_home(&self, user: &str) -> StorageResult<()> {
        let dirs = [self.homes.clone(), self.partials.clone(), self.digests.clone()];
        let name = user.to_owned();
        let removed = self
            .pool
            .run(move || {
                for dir in dirs {
                    match dir.remove_dir_all(&name) {
                        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                        _ => {}
                    }
                }
                Ok(())
            })
            .await;
        removed.map_err(|err| home_error(&err, user))
    }

    async fn expire_partials(
        &self,
        max_age: std::time::Duration,
    ) -> StorageResult<Vec<(String, u64)>> {
        let partials = self.partials.clone();
        let expired = self.pool.run(move || expire_all(&partials, max_age)).await;
        expired.map_err(|err| {
            StorageError::new(ErrorCode::Io, format!("expiring partial uploads: {err}"))
        })
    }
}

/// Expires partials in every user's directory below `partials`.
fn expire_all(partials: &Dir, max_age: std::time::Duration) -> io::Result<Vec<(String, u64)>> {
    let mut freed = Vec::new();
    for user in partials.entries()? {
        let user = user?;
        let name = user.file_name().to_string_lossy().into_owned();
        if user.file_type()?.is_dir() {
            let bytes = expire_partials(&partials.open_dir_nofollow(&name)?, max_age)?;
            if bytes > 0 {
                freed.push((name, bytes));
            }
        }
    }
    Ok(freed)
}

/// One user's home directory handle, and the user's partials and digests.
#[derive(Debug)]
pub struct FsHome {
    dir: Arc<Dir>,
    partials: Arc<Dir>,
    digests: Arc<Dir>,
    pool: BlockingPool,
    /// Shared by every home, so that uploads landing in one directory share its fsyncs.
    dir_syncs: Arc<DirSyncs>,
}

impl FsHome {
    /// Runs `op` on the blocking pool with the home handle and an owned copy of `path`, mapping I/O
    /// errors to wire errors that name `path`.
    async fn with_path<T, F>(&self, path: &RemotePath, op: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Dir, &RemotePath) -> io::Result<T> + Send + 'static,
    {
        let dir = self.dir.clone();
        let path = path.clone();
        self.pool
            .run(move || op(&dir, &path).map_err(|err| StorageError::from_io(&err, &path)))
            .await
    }
}

fn refuse_root(path: &RemotePath, what: &str) -> StorageResult<()> {
    if path.is_root() {
        return Err(StorageError::new(
            ErrorCode::InvalidPath,
            format!("/: cannot {what} your home directory"),
        ));
    }
    Ok(())
}

#[async_trait]
impl Home for FsHome {
    async fn stat(&self, path: &RemotePath) -> StorageResult<Entry> {
        self.with_path(path, |dir, path| {
            let meta = dir.metadata(path.relative())?;
            Ok(entry(path.file_name().unwrap_or("/").to_owned(), &meta))
        })
        .await
    }

    async fn list(&self, path: &RemotePath) -> StorageResult<Listing> {
        let reader = self.with_path(path, |dir, path| dir.read_dir(path.relative())).await?;
        Ok(paged(self.pool.clone(), (reader, path.clone()), |(entries, shown)| {
            read_page(entries, shown)
        }))
    }

    async fn mkdir(&self, path: &RemotePath, parents: bool) -> StorageResult<()> {
        if path.is_root() {
            return if parents {
                Ok(())
            } else {
                Err(StorageError::new(ErrorCode::Exists, "/: already exists"))
            };
        }
        self.with_path(path, move |dir, path| {
            if parents {
                dir.create_dir_all(path.relative())
            } else {
                dir.create_dir(path.relative())
            }
        })
        .await
    }

    async fn rmdir(&self, path: &RemotePath) -> StorageResult<()> {
        refuse_root(path, "remove")?;
        self.with_path(path, |dir, path| dir.remove_dir(path.relative())).await
    }

    async fn remove(&self, path: &RemotePath, recursive: bool) -> StorageResult<u64> {
        refuse_root(path, "remove")?;
        self.with_path(path, move |dir, path| {
            let rel = path.relative();
            let meta = dir.symlink_metadata(rel)?;
            if meta.is_dir() {
                if !recursive {
                    return Err(io::Error::from(io::ErrorKind::IsADirectory));
                }
                let freed = remove_tree(&dir.open_dir_nofollow(rel)?)?;
                dir.remove_dir(rel)?;
                return Ok(freed);
            }
            remove_file(dir, rel, &meta)
        })
        .await
    }

    async fn rename(&self, from: &RemotePath, to: &RemotePath) -> StorageResult<u64> {
        refuse_root(from, "rename")?;
        refuse_root(to, "replace")?;
        let to_owned = to.clone();
        self.with_path(from, move |dir, from| {
            let replaced = match dir.symlink_metadata(to_owned.relative()) {
                Ok(meta) if meta.is_dir() => {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists));
                }
                Ok(meta) => file_bytes(&meta),
                Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
                Err(err) => return Err(err),
            };
            freeing_later(dir, to_owned.relative(), replaced, || {
                dir.rename(from.relative(), dir, to_owned.relative())
            })?;
            Ok(replaced)
        })
        .await
        .map_err(|err| match err.code {
            // The kernel says EINVAL for moving a directory into itself.
            ErrorCode::InvalidPath => StorageError::new(
                ErrorCode::InvalidPath,
                format!("{from} -> {to}: cannot move a directory into itself"),
            ),
            _ => err,
        })
    }

    async fn usage(&self) -> StorageResult<u64> {
        let partials = self.partials.clone();
        self.with_path(&RemotePath::root(), move |dir, _| {
            Ok(tree_bytes(dir)? + partial_bytes(&partials)?)
        })
        .await
    }

    async fn begin_upload(
        &self,
        path: &RemotePath,
        size: u64,
        source: &str,
        resume: bool,
    ) -> StorageResult<UploadTarget> {
        refuse_root(path, "replace")?;
        let (partials, source) = (self.partials.clone(), source.to_owned());
        self.with_path(path, move |dir, path| {
            begin_upload(dir, &partials, path, size, &source, resume)
        })
        .await
    }

    async fn commit_upload(
        &self,
        key: &str,
        path: &RemotePath,
        digest: Sha256Digest,
        mtime: Option<i64>,
    ) -> StorageResult<Installed> {
        let (partials, digests, key) =
            (self.partials.clone(), self.digests.clone(), key.to_owned());
        let dir_syncs = self.dir_syncs.clone();
        self.with_path(path, move |dir, path| {
            let upload = Upload { home: dir, partials: &partials, key: &key, path };
            commit_upload(&upload, &digests, &dir_syncs, digest, mtime)
        })
        .await
    }

    async fn partials(&self) -> StorageResult<Vec<(String, PartialUpload)>> {
        let partials = self.partials.clone();
        self.with_path(&RemotePath::root(), move |_, _| list_partials(&partials)).await
    }

    async fn tree(&self, path: &RemotePath) -> StorageResult<TreeListing> {
        let walk = self.with_path(path, TreeWalk::start).await?;
        Ok(paged(self.pool.clone(), (walk, path.clone()), |(walk, shown)| {
            walk.next_page().map_err(|err| StorageError::from_io(&err, shown))
        }))
    }

    async fn digest(&self, path: &RemotePath) -> StorageResult<(Sha256Digest, String)> {
        let digests = self.digests.clone();
        self.with_path(path, move |dir, path| super::fs_tree::digest(dir, &digests, path)).await
    }

    async fn chmod(&self, path: &RemotePath, mode: u32) -> StorageResult<()> {
        refuse_root(path, "change the mode of")?;
        self.with_path(path, move |dir, path| {
            dir.set_permissions(path.relative(), cap_std::fs::Permissions::from_mode(mode))
        })
        .await
    }

    async fn discard_upload(&self, key: &str) -> StorageResult<u64> {
        let (partials, key) = (self.partials.clone(), key.to_owned());
        self.with_path(&RemotePath::root(), move |_, _| discard_upload(&partials, &key)).await
    }

    async fn begin_download(&self, path: &RemotePath) -> StorageResult<DownloadSource> {
        let digests = self.digests.clone();
        self.with_path(path, move |dir, path| begin_download(dir, &digests, path)).await
    }

    async fn record_digest(
        &self,
        path: &RemotePath,
        version: &str,
        digest: Sha256Digest,
    ) -> StorageResult<()> {
        let (digests, version) = (self.digests.clone(), version.to_owned());
        self.with_path(path, move |dir, path| record_digest(dir, &digests, path, &version, digest))
            .await
    }
}

/// Reads up to one page of entries. Non-UTF-8 names (which wharf never creates) are shown lossily.
/// Pages of a listing or walk whose position is `state`, made by `next` on the pool one at a time,
/// as the receiver takes them: the permit is released before a page is sent, so a client that reads
/// slowly holds no blocking thread, and memory holds a couple of pages whatever the size. A page
/// shorter than [`LIST_PAGE_ENTRIES`] is the last.
fn paged<S, T>(
    pool: BlockingPool,
    state: S,
    next: fn(&mut S) -> StorageResult<Vec<T>>,
) -> mpsc::Receiver<StorageResult<Vec<T>>>
where
    S: Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut state = Some(state);
        while let Some(mut current) = state.take() {
            let (page, rest) = pool
                .run(move || {
                    let page = next(&mut current);
                    let more = matches!(&page, Ok(p) if p.len() == LIST_PAGE_ENTRIES);
                    (page, more.then_some(current))
                })
                .await;
            let failed = page.is_err();
            if tx.send(page).await.is_err() || failed {
                return;
            }
            state = rest;
        }
    });
    rx
}

fn read_page(entries: &mut cap_std::fs::ReadDir, path: &RemotePath) -> StorageResult<Vec<Entry>> {
    let mut page = Vec::with_capacity(LIST_PAGE_ENTRIES);
    for item in entries.by_ref() {
        let item = item.map_err(|err| StorageError::from_io(&err, path))?;
        let name = item.file_name().to_string_lossy().into_owned();
        match item.metadata() {
            Ok(meta) => page.push(entry(name, &meta)),
            // Removed between readdir and stat: it is simply gone.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(StorageError::from_io(&err, path)),
        }
        if page.len() == LIST_PAGE_ENTRIES {
            break;
        }
    }
    Ok(page)
}

fn entry(name: String, meta: &Metadata) -> Entry {
    Entry {
        name,
        kind: EntryKind::classify(meta.is_symlink(), meta.is_dir(), meta.is_file()),
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
        mtime: unix_seconds(meta.modified().ok().map(cap_std::time::SystemTime::into_std)),
    }
}
