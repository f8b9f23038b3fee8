//! Running a list of single-file jobs: small files pipelined well past `-j`, larger ones `-j` at
//! a time, each with its bar, riding out lost connections. A single file whose remote side was not
//! looked at first sends its `stat` beside its transfer ([`get_stating`], [`put_or_into`]).

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wharf_common::limits::DEFAULT_MAX_UNI_STREAMS;
use wharf_common::path::RemotePath;
use wharf_common::proto::{EntryKind, ErrorCode};

use super::{CopyOptions, Job, folder_without_r, local_name, remote_error};
use crate::error::{ClientError, Result};
use crate::expand::remote_child;
use crate::pipeline::batch_window;
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
/// more, three runs each of 1,000 files: puts 3.5-4.0 s with 240 against 4.5-4.7 s with 120, gets
/// 3.3-3.8 s against 4.1-4.4 s. (An earlier 10.9 s for gets at 240 was the congestion controller
/// cutting its window for one lost packet after an idle spell, since mended.) Each is one stream,
/// so this stays within [`DEFAULT_MAX_UNI_STREAMS`]; the server's `max_requests_in_flight` (512 by
/// default) less the 8 kept free and `-j` holds it to 480 at most. Once small files were sent in
/// the order they opened, 480 instead of 240 (232 within the old limit of 256), five runs each
/// across `far`, alternated: puts 2.14–2.32 s (median 2.19) against 2.63–3.00 s (2.72), gets
/// 2.22–2.68 s (2.43) against 2.56–3.83 s (2.80); across 50 ms, where about 250 cover the round
/// trip, no difference (six runs each: puts 0.88–0.95 s against 0.82–1.36 s).
pub const SMALL_FILES_IN_FLIGHT: usize = 480;
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
/// after all have finished, and every failure has been printed on its own line. Otherwise, what
/// each job's transfer did, by its remote path.
pub(crate) async fn run(
    session: &Arc<Session>,
    verb: &'static str,
    jobs: Vec<Job>,
    options: CopyOptions,
) -> Result<Vec<(RemotePath, Outcome)>> {
    let total: u64 = jobs.iter().filter_map(|job| job.size).sum();
    let count = jobs.len();
    let ui = Arc::new(TransferUi::new(verb, count, total));
    let _clear = ui.clear_on_drop();
    // The first files go out at once, behind a login still unanswered; the window widens to the
    // server's limit when the answer gives it, and the bars show then (a refused login shows none).
    let window = if count == 1 { 1 } else { small_file_window(session, options.jobs) };
    let pipeline = Arc::new(Semaphore::new(window));
    let answered = async {
        session.login_answered().await;
        ui.show();
        if count > 1 {
            pipeline.add_permits(small_file_window(session, options.jobs).saturating_sub(window));
        }
    };
    let lanes = Arc::new(Semaphore::new(options.jobs.max(1)));
    let copied = async {
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
                result.map(|outcome| (job.remote, outcome))
            });
        }
        gather(tasks, count).await
    };
    let ((), outcome) = tokio::join!(answered, copied);
    if let Ok(ui) = Arc::try_unwrap(ui) {
        ui.close();
    }
    outcome
}

/// Copies one file with its own progress bar, riding out lost connections; a resumed transfer
/// whose partial turns out corrupt starts over once. (A fresh transfer whose digest fails has no
/// partial to blame: its mismatch is the answer.)
async fn copy_one(
    session: &Session,
    verb: &'static str,
    job: &Job,
    options: CopyOptions,
    ui: &TransferUi,
) -> Result<Outcome> {
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
    if options.resume && mismatch && file.resumed() {
        // A resumed transfer whose whole-file digest failed had a bad partial, which both ends
        // have now dropped: start over once, from byte 0.
        ui.print(format!(
            "{verb} {name}: the partial file was corrupt (checksum mismatch); starting over"
        ));
        file.restart();
        result = with_reconnects(session, false, on_reconnect, &attempt).await;
    }
    ui.finish(file, &result);
    result
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

/// Waits for every file's task: what they did, or the first error, or one that counts the
/// failures.
async fn gather<T: 'static>(mut tasks: JoinSet<Result<T>>, count: usize) -> Result<Vec<T>> {
    let (mut done, mut first_error, mut failed) = (Vec::with_capacity(count), None, 0);
    while let Some(joined) = tasks.join_next().await {
        let result =
            joined.map_err(|err| ClientError::Internal(format!("transfer task: {err}")))?;
        match result {
            Ok(one) => done.push(one),
            Err(err) => {
                failed += 1;
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        None => Ok(done),
        Some(err) if count == 1 => Err(err),
        Some(err) => Err(remote_error(
            ErrorCode::TransferFailed,
            format!("{failed} of {count} files failed; first: {err}"),
        )),
    }
}
