//! `put` and `get` of many files: expanding globs and directory trees into a list of single-file
//! jobs, then running them ([`run`]).
//!
//! Arguments follow scp: with two or more, the last one is the destination directory; with one, the
//! destination is the current directory (remote for `put`, local for `get`).

mod run;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_common::path::RemotePath;
use wharf_common::proto::{EntryKind, ErrorCode, TreeEntry};

use crate::error::{ClientError, Result};
use crate::expand::remote_child;
use crate::format::shown;
use crate::local::blocking;
use crate::pipeline;
use crate::session::Session;
use crate::transfer::Outcome;

pub use run::SMALL_FILE;
pub(crate) use run::run;

/// How a batch of transfers is run.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    pub recursive: bool,
    pub jobs: usize,
    pub resume: bool,
    /// Keep modification times (`-p`).
    pub preserve: bool,
    /// Expand wildcards in local paths. Off for the one-shot `wharf put`, whose local paths the
    /// user's shell has expanded already: a name like `report[1].txt` must not be globbed twice.
    pub glob_local: bool,
}

impl CopyOptions {
    /// What a mirror copies with: single files, resumed, with their modification times (which is
    /// how the next mirror sees them unchanged).
    pub const MIRROR: CopyOptions =
        CopyOptions { recursive: false, jobs: 4, resume: true, preserve: true, glob_local: false };
}

/// One file to move.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub local: PathBuf,
    pub remote: RemotePath,
    /// `None` for a download whose remote file was not stat'ed first: its stat goes out beside
    /// its `get` and gives its size and time then ([`get_stating`]).
    pub size: Option<u64>,
    /// The source's modification time, for `-p` on downloads.
    pub mtime: Option<i64>,
    /// An upload of a tree's file: the server makes the folders above `remote` on its way.
    pub make_parents: bool,
    /// An upload to a name not looked at first: if the server finds a folder there (which it
    /// never replaces), the file goes into it instead, as it would have after a stat.
    pub into_if_folder: bool,
}

fn remote_error(code: ErrorCode, message: String) -> ClientError {
    ClientError::Remote { code, message }
}

/// Splits scp-style arguments into sources and the destination (`None`: the current directory).
fn split_args(args: &[String]) -> (&[String], Option<&String>) {
    match args {
        [single] => (std::slice::from_ref(single), None),
        [sources @ .., dest] => (sources, Some(dest)),
        [] => (&[], None),
    }
}

/// Where the sources go, as cp(1) and scp decide it: into an existing directory, or, for a single
/// source, to the name given.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination<P> {
    Into(P),
    As(P),
}

/// Decides the destination from what `dest` is (`Some(true)` a directory, `Some(false)` something
/// else, `None` nothing) and how many sources there are.
fn destination<P>(
    path: P,
    shown: &str,
    is_dir: Option<bool>,
    sources: usize,
) -> Result<Destination<P>> {
    let names_a_dir = shown.ends_with('/');
    match is_dir {
        Some(true) => Ok(Destination::Into(path)),
        _ if sources == 1 && !names_a_dir => Ok(Destination::As(path)),
        None if sources == 1 => {
            Err(remote_error(ErrorCode::NotFound, format!("{shown}: no such directory")))
        }
        None => Err(remote_error(
            ErrorCode::NotFound,
            format!(
                "{shown}: no such directory (with several sources, the destination must be an existing directory)"
            ),
        )),
        Some(false) => {
            Err(remote_error(ErrorCode::NotADirectory, format!("{shown}: not a directory")))
        }
    }
}

/// `put [-r] [-j N] [-p] [--no-resume] LOCAL... [REMOTE]`.
pub async fn put(session: &Arc<Session>, args: &[String], options: CopyOptions) -> Result<()> {
    let (sources, dest) = split_args(args);
    let shown = dest.map_or(".", String::as_str);
    let sources = sources.to_vec();
    let locals = blocking(move || expand_locals(&sources, options.glob_local)).await?;
    let dest_path = session.resolve(shown)?;
    // The home and the working directory need no stat: they are directories (or the working one
    // is gone, and the puts into it fail as they would anyway). Nor does `DIR/` for one file
    // (without -r, which would make DIR): a missing or file DIR fails its put as it fails the
    // stat. One round trip fewer for `wharf put FILE wharf://HOST/DIR/`.
    let one_file_into = !options.recursive && locals.len() == 1 && shown.ends_with('/');
    let into_folder = shown == "." || dest_path.is_root() || one_file_into;
    let recursive = options.recursive;
    if let (false, [local]) = (into_folder, locals.as_slice()) {
        let path = local.clone();
        let meta = blocking(move || {
            std::fs::metadata(&path)
                .map_err(|err| ClientError::local(path.display().to_string(), err))
        })
        .await?;
        if !meta.is_dir() {
            if !meta.is_file() {
                return Err(not_a_file(local));
            }
            // One file to a name: sent there at once, not after a stat of the name.
            let (local, remote, size) = (local.clone(), dest_path, Some(meta.len()));
            let job =
                Job { local, remote, size, mtime: None, make_parents: false, into_if_folder: true };
            return run(session, "put", vec![job], options).await.map(drop);
        }
    }
    let is_dir = if into_folder {
        Some(true)
    } else {
        match session.stat(&dest_path).await {
            Ok(entry) => Some(entry.kind == EntryKind::Dir),
            Err(ClientError::Remote { code: ErrorCode::NotFound, .. }) => None,
            Err(err) => return Err(err),
        }
    };
    let target = destination(dest_path, shown, is_dir, locals.len())?;
    let (dirs, jobs, skipped) = blocking(move || plan_put(&locals, &target, recursive)).await?;
    if !skipped.is_empty() {
        match crate::jobs::current() {
            // A background job's lines wait for its report, not over the prompt.
            Some(job) => job.line(skipped_note(&skipped)),
            None => eprintln!("{}", skipped_note(&skipped)),
        }
    }
    put_tree(session, dirs, jobs, options).await.map(drop)
}

/// A local path named for upload that is neither a file nor a folder (a FIFO would be read
/// forever, a device endlessly).
fn not_a_file(local: &Path) -> ClientError {
    let why = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
    ClientError::local(local.display().to_string(), why)
}

/// What `put -r` left out of a tree, in one line: the first few, and how many.
fn skipped_note(skipped: &[PathBuf]) -> String {
    const NAMED: usize = 3;
    let names: Vec<String> =
        skipped.iter().take(NAMED).map(|path| shown(&path.display().to_string()).into()).collect();
    let more = skipped.len().saturating_sub(NAMED);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!(
        "wharf: skipped {}{more}: symbolic links and special files are not copied, only files and folders",
        names.join(", ")
    )
}

/// Makes the remote folders `dirs` and uploads `jobs`, and says what each upload did. The
/// uploads of a tree's files make the folders above them (`make_parents`), so only folders left
/// empty are made apart: a round trip before the uploads only where there are some. (Not beside
/// the uploads: both use up to what the server allows in flight.)
pub(crate) async fn put_tree(
    session: &Arc<Session>,
    dirs: Vec<RemotePath>,
    jobs: Vec<Job>,
    options: CopyOptions,
) -> Result<Vec<(RemotePath, Outcome)>> {
    make_remote_dirs(session, dirs_without_uploads(dirs, &jobs)).await?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    run(session, "put", jobs, options).await
}

/// The folders of `dirs` that no upload makes on its way: those with no file to upload below.
fn dirs_without_uploads(dirs: Vec<RemotePath>, jobs: &[Job]) -> Vec<RemotePath> {
    let mut made = std::collections::HashSet::new();
    for job in jobs.iter().filter(|job| job.make_parents) {
        let mut dir = job.remote.parent();
        // A folder already counted had its own parents counted with it.
        while !dir.is_root() && made.insert(dir.clone()) {
            dir = dir.parent();
        }
    }
    dirs.into_iter().filter(|dir| !made.contains(dir)).collect()
}

/// Makes the remote directories `dirs` with their parents: only those no other one lies in, and
/// all at once (making a parent twice at once is harmless), not a round trip each.
async fn make_remote_dirs(session: &Session, dirs: Vec<RemotePath>) -> Result<()> {
    let parents: std::collections::HashSet<RemotePath> =
        dirs.iter().map(RemotePath::parent).collect();
    let deepest = dirs.into_iter().filter(|dir| !parents.contains(dir));
    pipeline::each(session, deepest, |dir| async move { session.mkdir(&dir, true).await }).await?;
    Ok(())
}

fn expand_locals(sources: &[String], glob: bool) -> Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    for source in sources {
        if glob {
            all.extend(crate::expand::local(source)?);
        } else {
            all.push(PathBuf::from(source));
        }
    }
    Ok(all)
}

/// The folders to make, the files to send and, below the named folders, the entries left out.
type PutPlan = (Vec<RemotePath>, Vec<Job>, Vec<PathBuf>);

fn plan_put(
    locals: &[PathBuf],
    target: &Destination<RemotePath>,
    recursive: bool,
) -> Result<PutPlan> {
    let (mut dirs, mut jobs, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for local in locals {
        let meta = std::fs::metadata(local)
            .map_err(|err| ClientError::local(local.display().to_string(), err))?;
        let remote = match target {
            Destination::Into(dir) => remote_child(dir, &local_name(local)?)?,
            Destination::As(path) => path.clone(),
        };
        if meta.is_dir() {
            if !recursive {
                return Err(ClientError::Usage(format!(
                    "{}: is a directory (use put -r)",
                    local.display()
                )));
            }
            walk_local(local, &remote, &mut dirs, &mut jobs, &mut skipped)?;
        } else if !meta.is_file() {
            return Err(not_a_file(local));
        } else {
            let size = Some(meta.len());
            jobs.push(Job {
                local: local.clone(),
                remote,
                size,
                mtime: None,
                make_parents: false,
                into_if_folder: false,
            });
        }
    }
    Ok((dirs, jobs, skipped))
}

fn local_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Usage(format!("{}: no usable file name", path.display())))
}

/// Adds the tree below `dir` to the plan. A named path is followed if it is a link (as sftp does);
/// links inside are not, nor copied: one may point out of the tree or back into it, without end
/// (as get -r and mirror leave them). Nor are FIFOs, sockets and devices, which have no size to
/// send and would be read forever.
fn walk_local(
    dir: &Path,
    remote: &RemotePath,
    dirs: &mut Vec<RemotePath>,
    jobs: &mut Vec<Job>,
    skipped: &mut Vec<PathBuf>,
) -> Result<()> {
    dirs.push(remote.clone());
    let entries =
        std::fs::read_dir(dir).map_err(|err| ClientError::local(dir.display().to_string(), err))?;
    let mut entries: Vec<_> = entries.filter_map(|entry| entry.ok()).collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let meta =
            entry.metadata().map_err(|err| ClientError::local(path.display().to_string(), err))?;
        let target = remote_child(remote, &local_name(&path)?)?;
        if meta.is_dir() {
            walk_local(&path, &target, dirs, jobs, skipped)?;
        } else if !meta.is_file() {
            skipped.push(path);
        } else {
            let size = Some(meta.len());
            jobs.push(Job {
                local: path,
                remote: target,
                size,
                mtime: None,
                make_parents: true,
                into_if_folder: false,
            });
        }
    }
    Ok(())
}

/// `get [-r] [-j N] [-p] [--no-resume] REMOTE... [LOCAL]`.
pub async fn get(session: &Arc<Session>, args: &[String], options: CopyOptions) -> Result<()> {
    let (sources, dest) = split_args(args);
    let shown = dest.map_or(".", String::as_str);
    let remotes = crate::expand::remote_all(session, sources).await?;
    let dest_path = PathBuf::from(shown);
    let is_dir = std::fs::metadata(&dest_path).ok().map(|meta| meta.is_dir());
    let target = destination(dest_path, shown, is_dir, remotes.len())
        .map_err(|err| ClientError::Usage(format!("local {err}")))?;
    if let Destination::As(path) = &target
        && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(ClientError::Usage(format!("{}: no such local directory", parent.display())));
    }
    let local_of = |remote: &RemotePath| match &target {
        Destination::Into(dir) => dir.join(remote.file_name().unwrap_or("home")),
        Destination::As(path) => path.clone(),
    };
    let named_outright = remotes.iter().all(|found| found.known().is_none());
    if !options.recursive && named_outright && remotes.len() <= options.jobs.max(1) {
        // Files named outright, as many as move at once: no stat first; each goes out beside
        // its download instead (more would each hold a lane for a round trip: they are stat'ed
        // first, and the small ones pipelined).
        let jobs = remotes
            .iter()
            .map(|found| Job {
                local: local_of(&found.path),
                remote: found.path.clone(),
                size: None,
                mtime: None,
                make_parents: false,
                into_if_folder: false,
            })
            .collect();
        return run(session, "get", jobs, options).await.map(drop);
    }
    // A wildcard's matches need no stat: their listing said what they are.
    let entries = pipeline::each(session, remotes, |found| async move {
        let remote = found.path.clone();
        if !options.recursive {
            return Ok((found.stat(session).await?, remote, None));
        }
        if let Some(entry) = found.known() {
            let is_dir = entry.kind == EntryKind::Dir;
            let tree = if is_dir { Some(session.tree(&remote).await?) } else { None };
            return Ok((entry.clone(), remote, tree));
        }
        // The tree goes out beside the stat rather than after it, a round trip sooner; for a
        // file its error is not needed.
        let (entry, tree) = tokio::join!(session.stat(&remote), session.tree(&remote));
        let entry = entry?;
        let tree = if entry.kind == EntryKind::Dir { Some(tree?) } else { None };
        Ok((entry, remote, tree))
    })
    .await?;
    let mut jobs = Vec::new();
    for (entry, remote, tree) in entries {
        let local = local_of(&remote);
        if entry.kind == EntryKind::Dir {
            let Some(tree) = tree else {
                return Err(folder_without_r(&remote));
            };
            jobs_below(&remote, tree, &local, &mut jobs).await?;
        } else {
            let (size, mtime) = (Some(entry.size), Some(entry.mtime));
            jobs.push(Job {
                local,
                remote,
                size,
                mtime,
                make_parents: false,
                into_if_folder: false,
            });
        }
    }
    run(session, "get", jobs, options).await.map(drop)
}

/// Adds a job for every file of `tree`, the remote directory `remote`'s, and makes the local
/// directories they go into. The server walks the tree and sends it in pages, one request for the
/// whole tree rather than a listing (a round trip) per directory.
async fn jobs_below(
    remote: &RemotePath,
    tree: Vec<TreeEntry>,
    local: &Path,
    jobs: &mut Vec<Job>,
) -> Result<()> {
    let mut dirs = vec![local.to_owned()];
    for entry in tree {
        let remote_child = remote.join(&entry.path).map_err(|err| {
            remote_error(ErrorCode::InvalidPath, format!("{remote}/{}: {err}", entry.path))
        })?;
        let local_child = local.join(&entry.path);
        match entry.kind {
            EntryKind::Dir => dirs.push(local_child),
            EntryKind::File => jobs.push(Job {
                local: local_child,
                remote: remote_child,
                size: Some(entry.size),
                mtime: Some(entry.mtime),
                make_parents: false,
                into_if_folder: false,
            }),
            // Symlinks and special files are not copied: a symlink may point anywhere.
            _ => {}
        }
    }
    blocking(move || {
        for dir in dirs {
            std::fs::create_dir_all(&dir)
                .map_err(|err| ClientError::local(dir.display().to_string(), err))?;
        }
        Ok(())
    })
    .await
}

fn folder_without_r(remote: &RemotePath) -> ClientError {
    ClientError::Usage(format!("{remote}: is a directory (use get -r)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<Destination<&str>>) -> String {
        match result {
            Err(ClientError::Remote { message, .. }) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_destination_is_a_folder_to_go_into_or_one_sources_new_name() {
        assert_eq!(destination("d", "d", Some(true), 2).ok(), Some(Destination::Into("d")));
        assert_eq!(destination("n", "n", None, 1).ok(), Some(Destination::As("n")));
        assert_eq!(destination("f", "f", Some(false), 1).ok(), Some(Destination::As("f")));
        // `DIR/` names a folder, so it must be one; only several sources are told why.
        assert_eq!(message(destination("n/", "n/", None, 1)), "n/: no such directory");
        let several = message(destination("n", "n", None, 2));
        assert!(several.starts_with("n: no such directory (with several sources"), "{several}");
        assert_eq!(message(destination("f/", "f/", Some(false), 1)), "f/: not a directory");
    }
}
