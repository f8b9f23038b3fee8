//! The filesystem backend's work on whole trees: the walk a mirror reads in pages, a file's digest
//! (the recorded one reused while it is still valid), the bytes a tree holds and removing one (or
//! one file: large ones are held open across their unlink and freed after the reply).
//!
//! Every walk opens each subdirectory with `O_NOFOLLOW` beneath its parent's handle, so a directory
//! swapped for a symlink mid-walk is skipped or refused, never followed.

use std::io;
use std::path::Path;

use cap_fs_ext::{DirExt as _, FollowSymlinks, OpenOptionsFollowExt as _};
use cap_std::fs::{Dir, Metadata, MetadataExt as _, OpenOptions, OpenOptionsExt as _, ReadDir};
use sha2::{Digest as _, Sha256};
use wharf_common::hash::Sha256Digest;
use wharf_common::limits::LIST_PAGE_ENTRIES;
use wharf_common::path::RemotePath;
use wharf_common::proto::{EntryKind, TreeEntry, unix_seconds};
use wharf_common::release::{HOLD_MIN_BYTES, run_holding};

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

/// Bytes a non-directory entry counts against the quota: regular files only.
pub fn file_bytes(meta: &Metadata) -> u64 {
    if meta.is_file() { meta.len() } else { 0 }
}

/// Sums the regular files below `dir`, without following symlinks.
pub fn tree_bytes(dir: &Dir) -> io::Result<u64> {
    let mut total = 0u64;
    for item in dir.entries()? {
        let item = item?;
        let meta = match item.metadata() {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        total += if meta.is_dir() {
            match dir.open_dir_nofollow(item.file_name()) {
                Ok(sub) => tree_bytes(&sub)?,
                // Renamed away or swapped for a symlink since it was listed (the user's other
                // sessions keep working while this one logs in): it holds nothing here now.
                Err(err) if changed_under_us(&err) => 0,
                Err(err) => return Err(err),
            }
        } else {
            file_bytes(&meta)
        };
    }
    Ok(total)
}

/// Whether opening a directory just listed failed because it is no longer one: gone, or replaced
/// by a symlink (refused with ELOOP) or a file.
fn changed_under_us(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
        || matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR))
}

/// Empties `dir` depth first, never following symlinks, and returns the bytes of the files removed.
pub fn remove_tree(dir: &Dir) -> io::Result<u64> {
    let mut freed = 0u64;
    for item in dir.entries()? {
        let item = item?;
        let name = item.file_name();
        let meta = dir.symlink_metadata(&name)?;
        if meta.is_dir() {
            freed += remove_tree(&dir.open_dir_nofollow(&name)?)?;
            dir.remove_dir(&name)?;
        } else {
            freed += remove_file(dir, &name, &meta)?;
        }
    }
    Ok(freed)
}

/// Removes the file (or symlink) `name` of `dir`, whose metadata is `meta`, and returns its bytes.
pub fn remove_file(dir: &Dir, name: impl AsRef<Path>, meta: &Metadata) -> io::Result<u64> {
    let bytes = file_bytes(meta);
    freeing_later(dir, &name, bytes, || dir.remove_file(&name))?;
    Ok(bytes)
}

/// Runs `drop_it`, a rename over or an unlink of the file `name` of `dir` (of `bytes` bytes), with
/// the file held open if it is large, so that its blocks are freed by the closing thread after the
/// reply rather than inside the call. A file that cannot be held is freed in place, as usual.
pub fn freeing_later<T>(
    dir: &Dir,
    name: impl AsRef<Path>,
    bytes: u64,
    drop_it: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    run_holding((bytes >= HOLD_MIN_BYTES).then(|| hold(dir, name)).flatten(), drop_it)
}

/// Opens the file `name` of `dir` to hold it; never follows a symlink in the last component, and
/// never waits on a FIFO swapped in since its size was read.
fn hold(dir: &Dir, name: impl AsRef<Path>) -> Option<std::fs::File> {
    let mut options = OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No).custom_flags(libc::O_NONBLOCK);
    let file = dir.open_with(name, &options).ok()?;
    file.metadata().ok()?.is_file().then(|| file.into_std())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_file_is_held_across_its_removal_only_if_it_is_a_regular_file() {
        let home = tempfile::tempdir().expect("home");
        std::fs::File::create(home.path().join("big"))
            .and_then(|f| f.set_len(1 << 30))
            .expect("big");
        std::os::unix::fs::symlink("big", home.path().join("link")).expect("symlink");
        let made = std::process::Command::new("mkfifo").arg(home.path().join("fifo")).status();
        assert!(made.expect("mkfifo").success());
        let dir = Dir::open_ambient_dir(home.path(), cap_std::ambient_authority()).expect("open");
        assert!(hold(&dir, "big").is_some());
        assert!(hold(&dir, "link").is_none(), "a symlink is never followed");
        // This would wait for a writer forever without O_NONBLOCK.
        assert!(hold(&dir, "fifo").is_none(), "a FIFO is not held");
        let meta = dir.symlink_metadata("big").expect("stat");
        assert_eq!(remove_file(&dir, "big", &meta).expect("remove"), 1 << 30);
        assert!(!home.path().join("big").exists());
    }

    #[test]
    fn measuring_usage_survives_directories_renamed_or_swapped_for_symlinks_meanwhile() {
        let home = tempfile::tempdir().expect("home");
        let (d, hidden) = (home.path().join("d"), home.path().join("d.hidden"));
        std::fs::create_dir(&d).expect("d");
        std::fs::write(d.join("f"), b"x").expect("f");
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = std::thread::spawn({
            let (d, hidden, stop) = (d.clone(), hidden.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    std::fs::rename(&d, &hidden).expect("hide");
                    std::os::unix::fs::symlink("/", &d).expect("symlink");
                    std::fs::remove_file(&d).expect("unlink");
                    std::fs::rename(&hidden, &d).expect("restore");
                }
            }
        });
        let dir = Dir::open_ambient_dir(home.path(), cap_std::ambient_authority()).expect("open");
        let outcomes: Vec<_> = (0..20_000).map(|_| tree_bytes(&dir)).collect();
        stop.store(true, Ordering::Relaxed);
        swapper.join().expect("swapper");
        for outcome in outcomes {
            let bytes = outcome.expect("usage measured despite the race");
            // A live walk may meet the directory under both names (like du), never what is outside.
            assert!(bytes <= 2, "nothing outside the home is counted, got {bytes}");
        }
    }
}
