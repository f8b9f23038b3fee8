//! The local side: the shell's `lcd`, `lpwd`, `lls` and `lmkdir`, and what transfers need of local files
//! (their content versions, records replaced atomically).

use std::path::{Path, PathBuf};

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use wharf_common::blocking::BlockingPool;
use wharf_common::proto::{Entry, EntryKind, unix_seconds};

use crate::error::{ClientError, Result};

/// A local file's content version, made like the server's: what `put` names as its `source` (so a
/// resume never splices a changed file onto old bytes) and what `mirror` compares.
pub fn content_version(meta: &std::fs::Metadata) -> String {
    wharf_common::proto::content_version(
        meta.len(),
        (meta.mtime(), meta.mtime_nsec()),
        (meta.ctime(), meta.ctime_nsec()),
        meta.ino(),
    )
}

/// Replaces the file `path` with `contents` in one rename, so that readers (and a crash) see the old
/// record or the new one, never a mix. Readable by the user alone. Not synced: the client's records
/// (partial downloads' progress, mirror state) are hints whose loss costs a resend.
pub fn replace_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // Named after the record, so that whatever skips the record (a mirror's walk) skips this too.
    let mut prefix = path.file_name().unwrap_or_default().to_owned();
    prefix.push(".tmp");
    let mut temp = tempfile::Builder::new().prefix(&prefix).tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(())
}

/// Blocking local work (walking a tree, opening, hashing or renaming files) in flight at once.
const BLOCKING_LIMIT: usize = 16;

/// Runs blocking local file work off the async threads, at most [`BLOCKING_LIMIT`] jobs at once:
/// the client's one way into blocking work (besides the transfer engine's own threads). A panic in
/// `work` is propagated, as if it had run inline.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    static POOL: std::sync::LazyLock<BlockingPool> =
        std::sync::LazyLock::new(|| BlockingPool::new(BLOCKING_LIMIT));
    POOL.run(work).await
}

/// `path` with a leading `~` (alone, or before a `/`) standing for the home directory, as a shell
/// reads it; anything else as it is (`~user` too). For paths typed in wharf: a one-shot command's
/// paths come from the user's shell, which has done this already.
pub fn with_home(path: &str) -> String {
    match below_home(path) {
        Some(rest) => format!("{}{rest}", home_dir().display()),
        None => path.to_owned(),
    }
}

/// What follows a leading `~` that stands for a home (`""` or `/...`), on either side.
pub fn below_home(path: &str) -> Option<&str> {
    path.strip_prefix('~').filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The user's home directory, for `lcd` without an argument.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// Changes the process's working directory.
pub fn change_dir(path: Option<&str>) -> Result<PathBuf> {
    // The working directory is the process's, so the one before it is kept beside it.
    static PREVIOUS: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut previous = PREVIOUS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let target = match path {
        Some("-") => previous
            .clone()
            .ok_or_else(|| ClientError::Usage("lcd -: no previous directory".into()))?,
        Some(path) => PathBuf::from(path),
        None => home_dir(),
    };
    let left = current_dir()?;
    std::env::set_current_dir(&target)
        .map_err(|err| ClientError::local(format!("lcd {}", target.display()), err))?;
    *previous = Some(left);
    current_dir()
}

/// `lmkdir [-p] PATH...`: every path is tried, and the first failure reported, as mkdir(1) does.
pub fn make_dirs(paths: &[String], parents: bool) -> Result<()> {
    let made = paths.iter().map(|path| {
        let made = if parents { std::fs::create_dir_all(path) } else { std::fs::create_dir(path) };
        made.map_err(|err| ClientError::local(format!("lmkdir {path}"), err))
    });
    made.collect::<Vec<_>>().into_iter().collect()
}

pub fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().map_err(|err| ClientError::local("lpwd", err))
}

/// Entries of a local directory (or the one entry for a file, or with `itself`, for anything), in
/// the same shape as remote ones.
pub fn entries(path: &Path, itself: bool) -> Result<Vec<Entry>> {
    let context = || format!("lls {}", path.display());
    let meta = std::fs::symlink_metadata(path).map_err(|err| ClientError::local(context(), err))?;
    if itself || !meta.is_dir() {
        let name = if itself { path.display().to_string() } else { file_name_of(path) };
        return Ok(vec![entry(name, &meta)]);
    }
    let mut entries = Vec::new();
    for item in std::fs::read_dir(path).map_err(|err| ClientError::local(context(), err))? {
        let item = item.map_err(|err| ClientError::local(context(), err))?;
        if let Ok(meta) = item.metadata() {
            entries.push(entry(item.file_name().to_string_lossy().into_owned(), &meta));
        }
    }
    Ok(entries)
}

fn file_name_of(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into())
}

fn entry(name: String, meta: &std::fs::Metadata) -> Entry {
    let file_type = meta.file_type();
    Entry {
        name,
        kind: EntryKind::classify(file_type.is_symlink(), file_type.is_dir(), file_type.is_file()),
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
        mtime: unix_seconds(meta.modified().ok()),
    }
}
