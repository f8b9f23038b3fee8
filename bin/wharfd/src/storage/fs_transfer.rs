//! The filesystem backend's side of transfers: partial uploads and recorded digests.
//!
//! Partials live in `var/partials/USER/KEY.part`, outside the home, so listings never show them;
//! beside each, `KEY.meta` records the path, size and source version the partial belongs to, which is
//! what a resume must match. Verified digests live in `var/digests/USER/INODE`, with the size and
//! modification time they are valid for: renames keep them valid, any change to the file voids them.

use std::io;
use std::sync::Arc;

use cap_fs_ext::DirExt as _;
use cap_std::fs::{Dir, MetadataExt as _, OpenOptions, OpenOptionsExt as _};
use serde::{Deserialize, Serialize};
use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::PartialUpload;
use wharf_common::transfer::{Destination, PartialRecord, Ranges, Recorded, Unbuffered};

use super::dir_sync::DirSyncs;
use super::fs_tree::{content_version, freeing_later};
use super::{DownloadSource, Installed, UploadTarget, partial_key};

/// Below this size a file gets no partial metadata (it is never resumed) and no digest record (it
/// is hashed again when downloaded): both cost inodes, which cost more than resending or rehashing a
/// small file.
const SMALL_FILE: u64 = wharf_common::transfer::RESUME_MIN_SIZE;

/// What a partial upload belongs to: a resume keeps it only for the same path, size and source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UploadOf {
    path: String,
    size: u64,
    source: String,
}

type PartialMeta = PartialRecord<UploadOf>;

fn part_name(key: &str) -> String {
    format!("{key}.part")
}

fn meta_name(key: &str) -> String {
    format!("{key}.meta")
}

/// Bytes the target of an upload holds now (0 if absent), refusing directories and symlinks to
/// directories in the home: a client that sends a file to a name without asking what it is first
/// (PROTOCOL.md, section 5.1) learns that it names a folder. Any other symlink is replaced, never
/// written through.
fn target_bytes(dir: &Dir, name: &str) -> io::Result<u64> {
    match dir.symlink_metadata(name) {
        Ok(meta) if meta.is_dir() => Err(io::Error::from(io::ErrorKind::IsADirectory)),
        Ok(meta) if meta.is_file() => Ok(meta.len()),
        // cap-std follows the link only within the home; one leading out is just replaced.
        Ok(meta) if meta.is_symlink() && dir.metadata(name).is_ok_and(|target| target.is_dir()) => {
            Err(io::Error::from(io::ErrorKind::IsADirectory))
        }
        Ok(_) => Ok(0),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(err) => Err(err),
    }
}

pub fn begin_upload(
    home: &Dir,
    partials: &Arc<Dir>,
    path: &RemotePath,
    size: u64,
    source: &str,
    resume: bool,
) -> io::Result<UploadTarget> {
    // Opening the parent as a directory refuses anything else (NotADirectory), and the target is
    // then looked up beneath it: one walk of the path instead of two.
    let name = path.file_name().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let replaced = target_bytes(&home.open_dir(path.parent().relative())?, name)?;
    let key = partial_key(path);
    let wanted = UploadOf { path: path.to_string(), size, source: source.to_owned() };
    let previous_bytes = partials.metadata(part_name(&key)).map_or(0, |m| m.len());
    let kept = if resume { resumable(partials, &key, &wanted, previous_bytes) } else { None };
    let (file, len, discarded, present) = match kept {
        Some(present) => {
            let file =
                partials.open_with(part_name(&key), OpenOptions::new().read(true).write(true))?;
            (file, previous_bytes, 0, present)
        }
        None => {
            let file = partials.open_with(
                part_name(&key),
                OpenOptions::new().read(true).write(true).create(true).truncate(true),
            )?;
            if size >= SMALL_FILE {
                write_meta(partials, &key, &PartialRecord::new(wanted.clone(), &Ranges::new()))?;
            } else {
                // No metadata, so never resumed: resending a small file costs less than the inodes.
                let _ = partials.remove_file(meta_name(&key));
            }
            (file, 0, previous_bytes, Ranges::new())
        }
    };
    let dest = recorded_destination(file.into_std(), partials, &key, wanted);
    Ok(UploadTarget { key, dest, present, len, replaced, discarded })
}

/// The ranges of the partial `key` (of `len` bytes) that a resume of `wanted` may keep: those its
/// record names, if the record is of the same upload and all of them lie within the partial as it
/// is on disk (a record never claims a hole).
fn resumable(partials: &Dir, key: &str, wanted: &UploadOf, len: u64) -> Option<Ranges> {
    let text = partials.read_to_string(meta_name(key)).ok()?;
    let existing = PartialMeta::parse(&text)?;
    (existing.of == *wanted && len <= wanted.size)
        .then(|| existing.present_within(len))
        .flatten()
        // With nothing recorded, start afresh: the receiver truncates such a partial, and the
        // quota must be given back what it held.
        .filter(|present| !present.is_empty())
}

/// The partial file as the transfer engine writes it: a large upload records its progress at
/// each checkpoint, a small one (never resumed) records nothing.
fn recorded_destination(
    file: std::fs::File,
    partials: &Arc<Dir>,
    key: &str,
    wanted: UploadOf,
) -> Arc<dyn Destination> {
    if wanted.size < SMALL_FILE {
        return Arc::new(file);
    }
    let file = Unbuffered::new(file, wanted.size, |flags| {
        let options = OpenOptions::new().write(true).custom_flags(flags).clone();
        Ok(partials.open_with(part_name(key), &options)?.into_std())
    });
    let (partials, key) = (partials.clone(), key.to_owned());
    let record = move |present: &Ranges| {
        let meta = PartialRecord::new(wanted.clone(), present);
        if let Err(err) = write_meta(&partials, &key, &meta) {
            tracing::warn!(%err, "cannot record the progress of a partial upload");
        }
    };
    Arc::new(Recorded { dest: file, record })
}

fn write_meta(partials: &Dir, key: &str, meta: &PartialMeta) -> io::Result<()> {
    write_atomically(partials, &meta_name(key), meta.to_text()?.as_bytes())
}

/// One upload being installed: where its partial is, and where it goes.
pub struct Upload<'a> {
    pub home: &'a Dir,
    pub partials: &'a Dir,
    pub key: &'a str,
    pub path: &'a RemotePath,
}

/// Installs the verified partial under its name, durably, and returns the bytes of the file it
/// replaced.
pub fn commit_upload(
    upload: &Upload<'_>,
    digests: &Dir,
    dir_syncs: &DirSyncs,
    digest: Sha256Digest,
    mtime: Option<i64>,
) -> io::Result<Installed> {
    let Upload { home, partials, key, path } = *upload;
    let name = path.file_name().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let part = partials.open_with(part_name(key), OpenOptions::new().write(true))?.into_std();
    if let Some(secs) = mtime {
        part.set_modified(system_time(secs))?;
    }
    part.sync_all()?;
    let size = part.metadata()?.len();
    // One handle on the directory the name goes into, opened beneath the home once, for the
    // rename, the fsync and the stats: a walk of the path each costs more than a small file's
    // bytes. (A read-only open, because cap-std's `open_dir` gives an O_PATH handle, which fsync
    // refuses.)
    let parent = home.open_with(path.parent().relative(), OpenOptions::new().read(true))?;
    let parent = Dir::from_std_file(parent.into_std());
    let replaced = target_bytes(&parent, name)?;
    freeing_later(&parent, name, replaced, || {
        partials.rename(part_name(key), &parent, name)?;
        // The rename is durable only once the directory holding the new name is synced.
        dir_syncs.sync(&parent.try_clone()?.into_std_file())
    })?;
    // A small upload never had a record (`begin_upload` removed any left over).
    if size >= SMALL_FILE
        && let Err(err) = partials.remove_file(meta_name(key))
        && err.kind() != io::ErrorKind::NotFound
    {
        return Err(err);
    }
    let meta = parent.symlink_metadata(name)?;
    if meta.len() >= SMALL_FILE {
        record(digests, &meta, digest)?;
    }
    Ok(Installed { replaced, version: content_version(&meta) })
}

pub fn discard_upload(partials: &Dir, key: &str) -> io::Result<u64> {
    let bytes = partials.metadata(part_name(key)).map(|m| m.len()).unwrap_or(0);
    for name in [part_name(key), meta_name(key)] {
        match partials.remove_file(name) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    Ok(bytes)
}

pub fn begin_download(home: &Dir, digests: &Dir, path: &RemotePath) -> io::Result<DownloadSource> {
    let file = home.open(path.relative())?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::from(io::ErrorKind::IsADirectory));
    }
    let version = content_version(&meta);
    let digest = recorded(digests, &meta);
    Ok(DownloadSource { source: Arc::new(file.into_std()), size: meta.len(), version, digest })
}

pub fn record_digest(
    home: &Dir,
    digests: &Dir,
    path: &RemotePath,
    version: &str,
    digest: Sha256Digest,
) -> io::Result<()> {
    let meta = home.metadata(path.relative())?;
    if content_version(&meta) == version && meta.len() >= SMALL_FILE {
        record(digests, &meta, digest)?;
    }
    Ok(())
}

/// Deletes the partials in `partials` (one user's) last written more than `max_age` ago, with their
/// metadata; returns the bytes freed.
pub fn expire_partials(partials: &Dir, max_age: std::time::Duration) -> io::Result<u64> {
    let now = std::time::SystemTime::now();
    let mut freed = 0;
    for entry in partials.entries()? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = name.strip_suffix(".part") else { continue };
        let meta = entry.metadata()?;
        let age = meta.modified().ok().and_then(|t| now.duration_since(t.into_std()).ok());
        if age.is_some_and(|age| age > max_age) {
            freed += discard_upload(partials, key)?;
        }
    }
    Ok(freed)
}

/// Seconds since the epoch as a time (before the epoch too).
fn system_time(secs: i64) -> std::time::SystemTime {
    let offset = std::time::Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 { std::time::UNIX_EPOCH + offset } else { std::time::UNIX_EPOCH - offset }
}

/// One user's partial uploads, with their keys.
pub fn list_partials(partials: &Dir) -> io::Result<Vec<(String, PartialUpload)>> {
    let mut found = Vec::new();
    for entry in partials.entries()? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = name.strip_suffix(".part") else { continue };
        let meta = entry.metadata()?;
        let recorded: Option<PartialMeta> =
            partials.read_to_string(meta_name(key)).ok().and_then(|text| PartialMeta::parse(&text));
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.into_std().duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |age| i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
        let upload = PartialUpload {
            path: recorded.as_ref().map(|r| r.of.path.clone()),
            size: recorded.map(|r| r.of.size),
            held: meta.len(),
            modified,
        };
        found.push((key.to_owned(), upload));
    }
    found.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    Ok(found)
}

/// Bytes held by partial uploads.
pub fn partial_bytes(partials: &Dir) -> io::Result<u64> {
    let mut total = 0;
    for entry in partials.entries()? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".part") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

pub(super) fn record(
    digests: &Dir,
    meta: &cap_std::fs::Metadata,
    digest: Sha256Digest,
) -> io::Result<()> {
    write_atomically(
        digests,
        &meta.ino().to_string(),
        format!("{} {digest}\n", content_version(meta)).as_bytes(),
    )
}

pub(super) fn recorded(digests: &Dir, meta: &cap_std::fs::Metadata) -> Option<Sha256Digest> {
    // Only files of at least SMALL_FILE bytes are recorded, and a record names the size it holds
    // for: a smaller file has none to look for.
    if meta.len() < SMALL_FILE {
        return None;
    }
    let text = digests.read_to_string(meta.ino().to_string()).ok()?;
    let (valid_for, digest) = text.trim_end().rsplit_once(' ')?;
    (valid_for == content_version(meta)).then(|| digest.parse().ok()).flatten()
}

/// Writes a record (partial metadata, a digest) in one rename. Not synced: these are hints. Losing
/// one in a crash makes a resume start over or a download hash the file again; it never makes data
/// wrong.
fn write_atomically(dir: &Dir, name: &str, contents: &[u8]) -> io::Result<()> {
    crate::atomic::replace(dir, name, contents, crate::atomic::Durability::Hint)
}

/// Opens (creating if needed) `parent/name` without following a symlink.
pub fn subdir(parent: &Dir, name: &str) -> io::Result<Dir> {
    match parent.create_dir(name) {
        Err(err) if err.kind() != io::ErrorKind::AlreadyExists => return Err(err),
        _ => {}
    }
    parent.open_dir_nofollow(name)
}
