//! `put` and `get` of many files: expanding globs and directory trees into a list of single-file
//! jobs, then running them `-j` at a time with progress.
//!
//! Arguments follow scp: with two or more, the last one is the destination directory; with one, the
//! destination is the current directory (remote for `put`, local for `get`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wharf_common::limits::DEFAULT_MAX_UNI_STREAMS;
use wharf_common::path::RemotePath;
use wharf_common::proto::{EntryKind, ErrorCode, TreeEntry};

use crate::error::{ClientError, Result};
use crate::expand::remote_child;
use crate::local::blocking;
use crate::pipeline::{self, batch_window};
use crate::progress::{FileProgress, TransferUi};
use crate::reconnect::{RECONNECT_ATTEMPTS, with_reconnects};
use crate::session::Session;
use crate::transfer::{Outcome, PutOptions};

/// Files up to this size are pipelined instead of taking one of the `-j` lanes: what a small file
/// costs is round trips, not bytes, so many are kept in flight at once.
pub const SMALL_FILE: u64 = 256 * 1024;

/// Small files in flight at once, well past `-j` (within what the server allows, less what
/// [`batch_window`] keeps free). Across 50 ms, 120 in flight bring 1,000 files' round trips from
/// ~6 s at sixteen to under 1 s. Across 150 ms and 1 % loss (`far`), where the round trip asks for
/// 300, three runs each of 1,000 files: puts 3.5-4.0 s with 240 against 4.5-4.7 s with 120, gets
/// 3.3-3.8 s against 4.1-4.4 s. (An earlier 10.9 s for gets at 240 was the congestion controller
/// cutting its window for one lost packet after an idle spell, since mended.) Each is one stream,
/// so this stays within [`DEFAULT_MAX_UNI_STREAMS`]; the server's `max_requests_in_flight` (256 by
/// default) less the 8 kept free and `-j` holds it to 232.
pub const SMALL_FILES_IN_FLIGHT: usize = 240;
const _: () = assert!(SMALL_FILES_IN_FLIGHT <= DEFAULT_MAX_UNI_STREAMS as usize);

/// One small file in flight for each this much of the round trip. First set to what a small file
/// cost the server (1,000 gets of 4 KiB took 0.53 s on loopback, sixteen at a time), 500 µs:
/// 100 in flight across 50 ms. But a file's time in flight is the round trip and more while the
/// window grows, not the server's work, and more in flight paid: across the `lossy` profile
/// (50 ms, 0.5 % loss), five runs each of the small rows alone, 1,000 puts took 1.60–2.11 s
/// (median 1.65) with 200 µs (232 in flight) against 1.62–2.16 s (1.86) with 500 µs, and gets
/// 1.26–1.80 s (1.54) against 1.41–2.13 s (1.94).
const SMALL_FILE_COST: std::time::Duration = std::time::Duration::from_micros(200);

/// Small files in flight however short the round trip: the server overlaps their disk work
/// (creates, fsyncs, renames), so even on loopback more than `-j` pay. 1,000 files of 4 KiB on
/// loopback, medians of four runs each: put 0.365 s and get 0.24 s with 16 in flight, 0.31 s and
/// 0.23 s with 32, 0.29 s and 0.21 s with 48; 64, 96 and 120 did no better than 48.
const MIN_SMALL_FILES_IN_FLIGHT: usize = 48;

/// How many small files to keep in flight: enough to cover the round trip at the server's pace,
/// at least [`MIN_SMALL_FILES_IN_FLIGHT`] and `-j`, within [`SMALL_FILES_IN_FLIGHT`] and what the
/// server allows (behind a login not yet answered, what every server allows).
fn small_file_window(session: &Session, jobs: usize) -> usize {
    let allowed = batch_window(session).saturating_sub(jobs);
    let covering = session.rtt().as_micros() / SMALL_FILE_COST.as_micros();
    let covering = usize::try_from(covering).unwrap_or(usize::MAX);
    let floor = MIN_SMALL_FILES_IN_FLIGHT.max(jobs);
    covering.clamp(floor, SMALL_FILES_IN_FLIGHT).min(allowed).max(1)
}

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
        let (local, named) = (local.clone(), Destination::As(dest_path.clone()));
        let (dirs, mut jobs) = blocking(move || plan_put(&[local], &named, recursive)).await?;
        if let (true, [job]) = (dirs.is_empty(), jobs.as_mut_slice()) {
            // One file to a name: sent there at once, not after a stat of the name.
            job.into_if_folder = true;
            return run(session, "put", jobs, options).await;
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
    let (dirs, jobs) = blocking(move || plan_put(&locals, &target, recursive)).await?;
    put_tree(session, dirs, jobs, options).await
}

/// Makes the remote folders `dirs` and uploads `jobs`. The uploads of a tree's files make the
/// folders above them (`make_parents`), so only folders left empty are made apart: a round trip
/// before the uploads only where there are some. (Not beside the uploads: both use up to what
/// the server allows in flight.)
pub(crate) async fn put_tree(
    session: &Arc<Session>,
    dirs: Vec<RemotePath>,
    jobs: Vec<Job>,
    options: CopyOptions,
) -> Result<()> {
    make_remote_dirs(session, dirs_without_uploads(dirs, &jobs)).await?;
    if jobs.is_empty() {
        return Ok(());
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

fn plan_put(
    locals: &[PathBuf],
    target: &Destination<RemotePath>,
    recursive: bool,
) -> Result<(Vec<RemotePath>, Vec<Job>)> {
    let (mut dirs, mut jobs) = (Vec::new(), Vec::new());
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
            walk_local(local, &remote, &mut dirs, &mut jobs)?;
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
    Ok((dirs, jobs))
}

fn local_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Usage(format!("{}: no usable file name", path.display())))
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
        let target = remote_child(remote, &local_name(&path)?)?;
        if meta.is_dir() {
            walk_local(&path, &target, dirs, jobs)?;
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
    if let (false, [remote]) = (options.recursive, remotes.as_slice()) {
        // One file: no stat first; it goes out beside the download instead.
        let (local, remote) = (local_of(remote), remote.clone());
        let job = Job {
            local,
            remote,
            size: None,
            mtime: None,
            make_parents: false,
            into_if_folder: false,
        };
        return run(session, "get", vec![job], options).await;
    }
    let entries = pipeline::each(session, remotes, |remote| async move {
        if !options.recursive {
            return Ok((session.stat(&remote).await?, remote, None));
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
    run(session, "get", jobs, options).await
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

/// Gives a downloaded file the remote file's modification time (`get -p`).
fn set_mtime(path: &Path, secs: i64) -> Result<()> {
    let time = if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs())
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    };
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(time))
        .map_err(|err| ClientError::local(format!("{}: keeping the time", path.display()), err))
}

/// Runs the jobs `options.jobs` at a time. Every file is attempted; the first error is returned
/// after all have finished, and every failure has been printed on its own line.
pub(crate) async fn run(
    session: &Arc<Session>,
    verb: &'static str,
    jobs: Vec<Job>,
    options: CopyOptions,
) -> Result<()> {
    let total: u64 = jobs.iter().filter_map(|job| job.size).sum();
    let count = jobs.len();
    let ui = Arc::new(TransferUi::new(verb, count, total));
    let _clear = ui.clear_on_drop();
    // The first files go out at once, behind a login still unanswered; the window widens to the
    // server's limit when the answer gives it.
    let window = if count == 1 { 1 } else { small_file_window(session, options.jobs) };
    let pipeline = Arc::new(Semaphore::new(window));
    once_logged_in(session, &ui, (count > 1).then(|| (pipeline.clone(), window, options.jobs)));
    let lanes = Arc::new(Semaphore::new(options.jobs.max(1)));
    let mut tasks = JoinSet::new();
    for job in jobs {
        let small = job.size.is_some_and(|size| size <= SMALL_FILE);
        let slots = if small { &pipeline } else { &lanes };
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Internal("the transfer slots closed".into()))?;
        let (session, ui) = (session.clone(), ui.clone());
        tasks.spawn(async move {
            let result = copy_one(&session, verb, &job, options, &ui).await;
            drop(permit);
            result
        });
    }
    let outcome = gather(tasks, count).await;
    if let Ok(ui) = Arc::try_unwrap(ui) {
        ui.close();
    }
    outcome
}

/// Once the login is answered, shows the bars (a refused login shows none) and widens the
/// small-file `window` (its semaphore, its size, `-j`) to what the server allows.
fn once_logged_in(
    session: &Arc<Session>,
    ui: &Arc<TransferUi>,
    window: Option<(Arc<Semaphore>, usize, usize)>,
) {
    let (session, ui) = (session.clone(), Arc::downgrade(ui));
    tokio::spawn(async move {
        session.login_answered().await;
        if let Some(ui) = ui.upgrade() {
            ui.show();
        }
        if let Some((pipeline, first, jobs)) = window {
            pipeline.add_permits(small_file_window(&session, jobs).saturating_sub(first));
        }
    });
}

/// Copies one file with its own progress bar, riding out lost connections; a resumed transfer
/// whose partial turns out corrupt starts over once.
async fn copy_one(
    session: &Session,
    verb: &'static str,
    job: &Job,
    options: CopyOptions,
    ui: &TransferUi,
) -> Result<()> {
    // Where an upload lands is not known yet when its destination may be a folder.
    let shown = if job.into_if_folder { job.local.file_name() } else { None };
    let shown = shown.map(|name| name.to_string_lossy().into_owned());
    let name = shown.unwrap_or_else(|| job.remote.file_name().unwrap_or("/").to_owned());
    let file = ui.start(&name, job.size.unwrap_or(0));
    let attempt = |resume: bool| attempt(session, verb, job, options, resume, &file);
    let on_reconnect = |count: u32, err: &ClientError| {
        ui.print(format!("{verb} {name}: {err}; reconnecting ({count} of {RECONNECT_ATTEMPTS})"));
        // The next attempt reports the bytes already in place afresh.
        file.restart();
    };
    let mut result = with_reconnects(session, options.resume, on_reconnect, &attempt).await;
    let mismatch =
        matches!(&result, Err(ClientError::Remote { code: ErrorCode::ChecksumMismatch, .. }));
    if options.resume && mismatch {
        // A resumed transfer whose whole-file digest failed had a bad partial, which both ends
        // have now dropped: start over once, from byte 0.
        ui.print(format!(
            "{verb} {name}: the partial file was corrupt (checksum mismatch); starting over"
        ));
        file.restart();
        result = with_reconnects(session, false, on_reconnect, &attempt).await;
    }
    ui.finish(file, &result);
    result.map(|_| ())
}

/// One attempt at one file.
async fn attempt(
    session: &Session,
    verb: &'static str,
    job: &Job,
    options: CopyOptions,
    resume: bool,
    file: &FileProgress,
) -> Result<Outcome> {
    let on_bytes = |n: u64| file.advance(n);
    if verb == "put" {
        let (keep_time, make_parents) = (options.preserve, job.make_parents);
        let put = PutOptions { resume, keep_time, make_parents };
        if job.into_if_folder {
            return put_or_into(session, job, put, file).await;
        }
        return session.put_with(&job.local, &job.remote, put, &on_bytes).await;
    }
    let (got, mtime) = if job.size.is_some() {
        (session.get(&job.remote, &job.local, resume, &on_bytes).await?, job.mtime)
    } else {
        get_stating(session, job, options, resume, file).await?
    };
    if let (true, Some(mtime)) = (options.preserve, mtime) {
        set_mtime(&job.local, mtime)?;
    }
    Ok(got)
}

/// An upload to a name that may be a folder: it goes to the name at once, with a stat of the name
/// beside it. The server refuses to put a file in a folder's place (or a link's to one); then the
/// stat says it is a folder, and the file goes into it. A round trip sooner than a stat first,
/// but for a folder, where it costs the same (and a small file's bytes twice).
async fn put_or_into(
    session: &Session,
    job: &Job,
    put: PutOptions,
    file: &FileProgress,
) -> Result<Outcome> {
    let on_bytes = |n: u64| file.advance(n);
    let sent = session.put_with(&job.local, &job.remote, put, &on_bytes);
    match tokio::join!(session.stat(&job.remote), sent) {
        (Ok(entry), Err(ClientError::Remote { code: ErrorCode::IsADirectory, .. }))
            if entry.kind == EntryKind::Dir =>
        {
            let into = remote_child(&job.remote, &local_name(&job.local)?)?;
            file.restart();
            session.put_with(&job.local, &into, put, &on_bytes).await
        }
        (_, sent) => sent,
    }
}

/// A download whose file was not stat'ed first: the stat goes out beside the `get`, a round trip
/// sooner than before it. It gives the bar its size and `-p` its time; a folder is refused as
/// before (the server refuses its `get`). Returns the download and the file's time.
async fn get_stating(
    session: &Session,
    job: &Job,
    options: CopyOptions,
    resume: bool,
    file: &FileProgress,
) -> Result<(Outcome, Option<i64>)> {
    let stat = async {
        let entry = session.stat(&job.remote).await;
        if let Ok(entry) = &entry
            && entry.kind == EntryKind::File
        {
            file.learn_size(entry.size);
        }
        entry
    };
    let on_bytes = |n: u64| file.advance(n);
    let get = session.get(&job.remote, &job.local, resume, &on_bytes);
    match tokio::join!(stat, get) {
        (Ok(entry), _) if entry.kind == EntryKind::Dir => Err(folder_without_r(&job.remote)),
        (Ok(entry), got) => Ok((got?, Some(entry.mtime))),
        // The stat says plainly what is wrong (no such file, say).
        (Err(err), Err(_)) => Err(err),
        // The file went between the two: without its time, `-p` cannot be kept.
        (Err(err), Ok(_)) if options.preserve => Err(err),
        (Err(_), Ok(got)) => Ok((got, None)),
    }
}

/// Waits for every file's task; the first error, or one that counts the failures.
async fn gather(mut tasks: JoinSet<Result<()>>, count: usize) -> Result<()> {
    let mut first_error = None;
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        let result =
            joined.map_err(|err| ClientError::Internal(format!("transfer task: {err}")))?;
        if let Err(err) = result {
            failed += 1;
            first_error.get_or_insert(err);
        }
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
