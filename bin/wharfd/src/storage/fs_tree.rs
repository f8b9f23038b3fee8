//! What a mirror needs from the filesystem backend: a recursive walk in pages, and a file's digest
//! with the recorded one reused while it is still valid.
//!
//! The walk opens every subdirectory with `O_NOFOLLOW` beneath its parent's handle, like the other
//! recursive operations, so a directory swapped for a symlink mid-walk is skipped, never followed.

use std::io;

use cap_fs_ext::DirExt as _;
use cap_std::fs::{Dir, Metadata, MetadataExt as _, ReadDir};
use sha2::{Digest as _, Sha256};
use wharf_common::hash::Sha256Digest;
use wharf_common::limits::LIST_PAGE_ENTRIES;
use wharf_common::path::RemotePath;
use wharf_common::proto::{EntryKind, TreeEntry, unix_seconds};

use super::fs_transfer::{record, recorded};

/// A walk in progress: the directories still being read, deepest last, each with the path prefix of
/// its entries. Kept between pages, so that no thread is held while the client reads.
pub struct TreeWalk {
    pending: Vec<(String, Dir, ReadDir)>,
}

impl TreeWalk {
    /// Starts a walk of the directory `path` of `home`.
    pub fn start(home: &Dir, path: &RemotePath) -> io::Result<TreeWalk> {
        let dir = if path.is_root() { home.try_clone()? } else { home.open_dir(path.relative())? };
        let entries = dir.entries()?;
        Ok(TreeWalk { pending: vec![(String::new(), dir, entries)] })
    }

    /// The next page of at most [`LIST_PAGE_ENTRIES`] entries; empty when the walk is done.
    pub fn next_page(&mut self) -> io::Result<Vec<TreeEntry>> {
        let mut page = Vec::with_capacity(LIST_PAGE_ENTRIES);
        while page.len() < LIST_PAGE_ENTRIES {
            let Some((prefix, dir, entries)) = self.pending.last_mut() else { break };
            let Some(item) = entries.next() else {
                self.pending.pop();
                continue;
            };
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            let meta = match item.metadata() {
                Ok(meta) => meta,
                // Removed between readdir and stat: it is simply gone.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            let path = format!("{prefix}{name}");
            if meta.is_dir() {
                // Renamed away or swapped for a symlink since it was listed: not followed, skipped.
                if let Ok(child) = dir.open_dir_nofollow(&name) {
                    let entries = child.entries()?;
                    self.pending.push((format!("{path}/"), child, entries));
                }
            }
            page.push(tree_entry(path, &meta));
        }
        Ok(page)
    }
}

fn tree_entry(path: String, meta: &Metadata) -> TreeEntry {
    TreeEntry {
        path,
        kind: EntryKind::classify(meta.is_symlink(), meta.is_dir(), meta.is_file()),
        size: meta.len(),
        mtime: unix_seconds(meta.modified().ok().map(cap_std::time::SystemTime::into_std)),
        version: content_version(meta),
    }
}

/// The entry's content version (see [`wharf_common::proto::content_version`]).
pub fn content_version(meta: &Metadata) -> String {
    wharf_common::proto::content_version(
        meta.len(),
        (meta.mtime(), meta.mtime_nsec()),
        (meta.ctime(), meta.ctime_nsec()),
        meta.ino(),
    )
}

/// The digest of the file `path` and its content version: the recorded digest while it is valid,
/// otherwise the file is read and hashed, and the digest recorded.
pub fn digest(home: &Dir, digests: &Dir, path: &RemotePath) -> io::Result<(Sha256Digest, String)> {
    let file = home.open(path.relative())?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::from(io::ErrorKind::IsADirectory));
    }
    if let Some(digest) = recorded(digests, &meta) {
        return Ok((digest, content_version(&meta)));
    }
    let file = file.into_std();
    let mut hasher = Sha256::new();
    wharf_common::transfer::hash_range(&file, 0, meta.len(), &mut hasher)?;
    let digest = Sha256Digest::from_hasher(hasher);
    // Recorded only if the file did not change while it was read (its change time would move).
    let after = std::os::unix::fs::MetadataExt::ctime_nsec(&file.metadata()?);
    if after == meta.ctime_nsec() {
        record(digests, &meta, digest)?;
    }
    Ok((digest, content_version(&meta)))
}
