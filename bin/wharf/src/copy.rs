//! `put` and `get` of many files: expanding globs and directory trees into a list of single-file
//! jobs, then running them `-j` at a time with progress.
//!
//! Arguments follow scp: with two or more, the last one is the destination directory; with one, the
//! destination is the current directory (remote for `put`, local for `get`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wharf_common::path::RemotePath;
use wharf_common::proto::{EntryKind, ErrorCode};

use crate::error::{ClientError, Result};
use crate::glob::{has_wildcards, matches};
use crate::progress::TransferUi;
use crate::reconnect::{RECONNECT_ATTEMPTS, with_reconnects};
use crate::session::Session;

/// How a batch of transfers is run.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    pub recursive: bool,
    pub jobs: usize,
    pub resume: bool,
}

/// One file to move.
#[derive(Debug, Clone)]
struct Job {
    local: PathBuf,
    remote: RemotePath,
    size: u64,
}

fn remote_error(code: ErrorCode, message: String) -> ClientError {
    ClientError::Remote { code, message }
}

fn child(dir: &RemotePath, name: &str) -> Result<RemotePath> {
    dir.join(name)
        .map_err(|err| remote_error(ErrorCode::InvalidPath, format!("{dir}/{name}: {err}")))
}

/// Splits scp-style arguments into sources and the destination (`None`: the current directory).
fn split_args(args: &[String]) -> (&[String], Option<&String>) {
    match args {
        [single] => (std::slice::from_ref(single), None),
        [sources @ .., dest] => (sources, Some(dest)),
        [] => (&[], None),
    }
}

/// `put [-r] [-j N] [--no-resume] LOCAL... [REMOTEDIR]`.
pub async fn put(session: &Arc<Session>, args: &[String], options: CopyOptions) -> Result<()> {
    let (sources, dest) = split_args(args);
    let dest = session.resolve(dest.map_or(".", String::as_str))?;
    if session.stat(&dest).await?.kind != EntryKind::Dir {
        return Err(remote_error(ErrorCode::NotADirectory, format!("{dest}: not a directory")));
    }
    let sources = sources.to_vec();
    let dest_dir = dest.clone();
    let recursive = options.recursive;
    let (dirs, jobs) =
        tokio::task::spawn_blocking(move || plan_put(&sources, &dest_dir, recursive))
            .await
            .map_err(|err| ClientError::Protocol(format!("planner failed: {err}")))??;
    for dir in &dirs {
        session.mkdir(dir, true).await?;
    }
    run(session, "put", jobs, options).await
}

fn plan_put(
    sources: &[String],
    dest: &RemotePath,
    recursive: bool,
) -> Result<(Vec<RemotePath>, Vec<Job>)> {
    let (mut dirs, mut jobs) = (Vec::new(), Vec::new());
    for source in sources {
        for local in expand_local(source)? {
            let meta = std::fs::metadata(&local)
                .map_err(|err| ClientError::local(local.display().to_string(), err))?;
            let name = local_name(&local)?;
            let remote = child(dest, &name)?;
            if meta.is_dir() {
                if !recursive {
                    return Err(ClientError::Usage(format!(
                        "{}: is a directory (use put -r)",
                        local.display()
                    )));
                }
                walk_local(&local, &remote, &mut dirs, &mut jobs)?;
            } else {
                jobs.push(Job { local, remote, size: meta.len() });
            }
        }
    }
    Ok((dirs, jobs))
}

fn local_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Usage(format!("{}: no usable file name", path.display())))
}

/// Expands a wildcard in the last component of a local path; a plain path is returned as it is.
fn expand_local(pattern: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !has_wildcards(name) {
        return Ok(vec![path.to_owned()]);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let entries =
        std::fs::read_dir(dir).map_err(|err| ClientError::local(dir.display().to_string(), err))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_str().is_some_and(|n| matches(name, n)))
        .map(|entry| dir.join(entry.file_name()))
        .collect();
    if found.is_empty() {
        return Err(ClientError::Usage(format!("{pattern}: no match")));
    }
    found.sort();
    Ok(found)
}

fn walk_local(
    dir: &Path,
    remote: &RemotePath,
    dirs: &mut Vec<RemotePath>,
    jobs: &mut Vec<Job>,
) -> Result<()> {
    dirs.push(remote.clone());
    let entries =
        std::fs::read_dir(dir).map_err(|err| ClientError::local(dir.display().to_string(), err))?;
    let mut entries: Vec<_> = entries.filter_map(|entry| entry.ok()).collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = std::fs::metadata(&path)
            .map_err(|err| ClientError::local(path.display().to_string(), err))?;
        let target = child(remote, &local_name(&path)?)?;
        if meta.is_dir() {
            walk_local(&path, &target, dirs, jobs)?;
        } else {
            jobs.push(Job { local: path, remote: target, size: meta.len() });
        }
    }
    Ok(())
}

/// `get [-r] [-j N] [--no-resume] REMOTE... [LOCALDIR]`.
pub async fn get(session: &Arc<Session>, args: &[String], options: CopyOptions) -> Result<()> {
    let (sources, dest) = split_args(args);
    let dest = PathBuf::from(dest.map_or(".", String::as_str));
    if !std::fs::metadata(&dest).is_ok_and(|m| m.is_dir()) {
        return Err(ClientError::Usage(format!("{}: not a local directory", dest.display())));
    }
    let mut jobs = Vec::new();
    for source in sources {
        for remote in expand_remote(session, source).await? {
            let entry = session.stat(&remote).await?;
            let name = remote.file_name().unwrap_or("home").to_owned();
            let local = dest.join(&name);
            if entry.kind == EntryKind::Dir {
                if !options.recursive {
                    return Err(ClientError::Usage(format!(
                        "{remote}: is a directory (use get -r)"
                    )));
                }
                walk_remote(session, &remote, &local, &mut jobs).await?;
            } else {
                jobs.push(Job { local, remote, size: entry.size });
            }
        }
    }
    run(session, "get", jobs, options).await
}

/// Expands a wildcard in the last component of a remote path.
async fn expand_remote(session: &Session, pattern: &str) -> Result<Vec<RemotePath>> {
    let (dir_part, name) = pattern
        .rsplit_once('/')
        .map_or((".", pattern), |(d, n)| (if d.is_empty() { "/" } else { d }, n));
    if !has_wildcards(name) {
        return Ok(vec![session.resolve(pattern)?]);
    }
    let dir = session.resolve(dir_part)?;
    let mut found = Vec::new();
    for entry in session.list(&dir).await? {
        if matches(name, &entry.name) {
            found.push(child(&dir, &entry.name)?);
        }
    }
    if found.is_empty() {
        return Err(ClientError::Usage(format!("{pattern}: no match")));
    }
    found.sort();
    Ok(found)
}

async fn walk_remote(
    session: &Session,
    remote: &RemotePath,
    local: &Path,
    jobs: &mut Vec<Job>,
) -> Result<()> {
    let mut pending = vec![(remote.clone(), local.to_owned())];
    while let Some((dir, local_dir)) = pending.pop() {
        std::fs::create_dir_all(&local_dir)
            .map_err(|err| ClientError::local(local_dir.display().to_string(), err))?;
        for entry in session.list(&dir).await? {
            let remote_child = child(&dir, &entry.name)?;
            let local_child = local_dir.join(&entry.name);
            match entry.kind {
                EntryKind::Dir => pending.push((remote_child, local_child)),
                EntryKind::File => {
                    jobs.push(Job { local: local_child, remote: remote_child, size: entry.size })
                }
                // Symlinks and special files are not copied: a symlink may point anywhere.
                _ => {}
            }
        }
    }
    Ok(())
}

/// Runs the jobs `options.jobs` at a time. Every file is attempted; the first error is returned
/// after all have finished, and every failure has been printed on its own line.
async fn run(
    session: &Arc<Session>,
    verb: &'static str,
    jobs: Vec<Job>,
    options: CopyOptions,
) -> Result<()> {
    let total: u64 = jobs.iter().map(|job| job.size).sum();
    let count = jobs.len();
    let ui = Arc::new(TransferUi::new(verb, count, total));
    let _clear = ui.clear_on_drop();
    let slots = Arc::new(Semaphore::new(options.jobs.max(1)));
    let mut tasks = JoinSet::new();
    for job in jobs {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Protocol("closed".into()))?;
        let (session, ui) = (session.clone(), ui.clone());
        tasks.spawn(async move {
            let name = job.remote.file_name().unwrap_or("/").to_owned();
            let file = ui.start(&name, job.size);
            let on_bytes = |n: u64| file.advance(n);
            let attempt = |resume: bool| {
                let (session, job, on_bytes) = (&session, &job, &on_bytes);
                async move {
                    if verb == "put" {
                        session.put(&job.local, &job.remote, resume, on_bytes).await
                    } else {
                        session.get(&job.remote, &job.local, resume, on_bytes).await
                    }
                }
            };
            let on_reconnect = |count: u32, err: &ClientError| {
                ui.print(format!(
                    "{verb} {name}: {err}; reconnecting ({count} of {RECONNECT_ATTEMPTS})"
                ));
                // The next attempt reports the bytes already in place afresh.
                file.restart();
            };
            let mut result =
                with_reconnects(&session, options.resume, on_reconnect, &attempt).await;
            let mismatch = matches!(
                &result,
                Err(ClientError::Remote { code: ErrorCode::ChecksumMismatch, .. })
            );
            if options.resume && mismatch {
                // A resumed transfer whose whole-file digest failed had a bad partial, which both
                // ends have now dropped: start over once, from byte 0.
                ui.print(format!(
                    "{verb} {name}: the partial file was corrupt (checksum mismatch); starting over"
                ));
                file.restart();
                result = with_reconnects(&session, false, on_reconnect, &attempt).await;
            }
            ui.finish(file, &result);
            drop(permit);
            result.map(|_| ())
        });
    }
    let mut first_error = None;
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        let result =
            joined.map_err(|err| ClientError::Protocol(format!("transfer task: {err}")))?;
        if let Err(err) = result {
            failed += 1;
            first_error.get_or_insert(err);
        }
    }
    if let Ok(ui) = Arc::try_unwrap(ui) {
        ui.close();
    }
    match first_error {
        None => Ok(()),
        Some(err) if count == 1 => Err(err),
        Some(err) => Err(remote_error(
            ErrorCode::TransferFailed,
            format!("{failed} of {count} files failed; first: {err}"),
        )),
    }
}
