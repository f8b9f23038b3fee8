//! Background jobs: a `put`, `get`, `mirror` or `cp` ending in `&` runs beside the shell, as
//! lftp's do. `jobs` lists them with their progress, `wait` waits for them, `kill` stops them
//! (the partial files of a stopped transfer are kept, as after Ctrl-C).
//!
//! A job is a task of its own on the session's connection; the connection's gate
//! ([`crate::rpc`]) keeps it and the shell's next commands within the server's limit together.
//! Its paths are pinned as it starts (see [`pinned`]), so a `cd` or `lcd` after it changes nothing
//! for it. It draws no bars: what it would print (each file's result line) is kept, and shown
//! with its end, before the next prompt or by `wait`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use indicatif::ProgressBar;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::commands::ShellCommand;
use crate::error::{ClientError, Result};
use crate::format::human_bytes;
use crate::session::Session;

tokio::task_local! {
    /// The job the running task belongs to, if it is one.
    static JOB: Arc<JobOutput>;
}

/// The job whose task this is, if any: its transfers report here instead of drawing bars.
pub fn current() -> Option<Arc<JobOutput>> {
    JOB.try_with(Arc::clone).ok()
}

/// What a job has said, how far its transfers are, and how it ended.
#[derive(Debug, Default)]
pub struct JobOutput {
    lines: Mutex<Vec<String>>,
    /// The overall bar of each batch of transfers the job ran (hidden, but counting).
    bars: Mutex<Vec<ProgressBar>>,
}

impl JobOutput {
    /// Keeps a line the job would have printed.
    pub fn line(&self, line: String) {
        self.lines.lock().push(line);
    }

    /// Follows a batch's overall bar, for `jobs`.
    pub fn track(&self, overall: ProgressBar) {
        self.bars.lock().push(overall);
    }

    /// Bytes moved and to move, and the rate, over the batches the job ran.
    fn progress(&self) -> Option<(u64, u64, f64)> {
        let bars = self.bars.lock();
        let last = bars.last()?;
        let moved = bars.iter().map(ProgressBar::position).sum();
        let total = bars.iter().filter_map(ProgressBar::length).sum();
        Some((moved, total, last.per_sec()))
    }
}

/// How a job ended.
#[derive(Debug, Clone)]
enum Ending {
    Done,
    /// The error's text, and the exit code it has.
    Failed(String, u8),
    Killed,
}

#[derive(Debug)]
struct Job {
    /// The command line as typed, without its `&`.
    line: String,
    /// What stopping it keeps.
    kept: &'static str,
    started: Instant,
    output: Arc<JobOutput>,
    task: tokio::task::AbortHandle,
    /// Set once, by whichever comes first: the task's end or a kill.
    ended: Arc<watch::Sender<Option<Ending>>>,
}

impl Job {
    fn ending(&self) -> Option<Ending> {
        self.ended.borrow().clone()
    }
}

/// Records how a job ended, unless its ending is known already.
fn end(ended: &watch::Sender<Option<Ending>>, ending: Ending) {
    ended.send_if_modified(|now| {
        let first = now.is_none();
        if first {
            *now = Some(ending);
        }
        first
    });
}

/// The session's background jobs, by number.
#[derive(Debug, Default)]
pub struct Jobs {
    table: Mutex<JobTable>,
}

#[derive(Debug, Default)]
struct JobTable {
    last: usize,
    jobs: BTreeMap<usize, Job>,
}

impl Jobs {
    /// Starts `command` (already [`pinned`]) as a job and returns its line for the terminal.
    pub fn start(&self, session: &Arc<Session>, command: ShellCommand, line: String) -> String {
        let kept = crate::exec::kept_when_stopped(&command);
        let output = Arc::new(JobOutput::default());
        let ended = Arc::new(watch::Sender::new(None));
        let (session, job_output, job_ended) = (session.clone(), output.clone(), ended.clone());
        let task = tokio::spawn(JOB.scope(output.clone(), async move {
            let mut printed = Vec::new();
            let result = crate::exec::run_job(&session, command, &mut printed).await;
            let text = String::from_utf8_lossy(&printed);
            text.lines().for_each(|line| job_output.line(line.to_owned()));
            let ending = match result {
                Ok(()) => Ending::Done,
                Err(err) => Ending::Failed(err.to_string(), err.exit_code()),
            };
            end(&job_ended, ending);
        }));
        let mut table = self.table.lock();
        table.last += 1;
        let number = table.last;
        let (started, task) = (Instant::now(), task.abort_handle());
        let job = Job { line, kept, started, output, task, ended };
        let started = format!("[{number}] {}", job.line);
        table.jobs.insert(number, job);
        started
    }

    /// How many jobs have not ended.
    pub fn running(&self) -> usize {
        self.table.lock().jobs.values().filter(|job| job.ending().is_none()).count()
    }

    /// `jobs`: each job still running, with its progress.
    pub fn list(&self) -> String {
        let table = self.table.lock();
        let mut text = String::new();
        for (number, job) in table.jobs.iter().filter(|(_, job)| job.ending().is_none()) {
            text.push_str(&format!("[{number}] {}: running, {}\n", job.line, progress_text(job)));
        }
        text
    }

    /// The reports of the jobs that have ended, which leave the table: each one's lines, then how
    /// it ended. Also the highest exit code of those that failed, if any did.
    pub fn take_ended(&self) -> (String, Option<u8>) {
        let mut table = self.table.lock();
        let ended: Vec<usize> = table
            .jobs
            .iter()
            .filter(|(_, job)| job.ending().is_some())
            .map(|(number, _)| *number)
            .collect();
        let (mut text, mut failed) = (String::new(), None::<u8>);
        for number in ended {
            let Some(job) = table.jobs.remove(&number) else { continue };
            for line in job.output.lines.lock().iter() {
                text.push_str(line);
                text.push('\n');
            }
            let how = match job.ending() {
                Some(Ending::Done) | None => "done".to_owned(),
                Some(Ending::Failed(err, code)) => {
                    failed = failed.max(Some(code));
                    format!("failed: {err}")
                }
                Some(Ending::Killed) => {
                    failed = failed.max(Some(1));
                    format!("killed ({})", job.kept)
                }
            };
            text.push_str(&format!("[{number}] {}: {how}\n", job.line));
        }
        (text, failed)
    }

    /// Waits until the jobs `numbers` (all of them, if none is named) have ended.
    pub async fn wait(&self, numbers: &[usize]) -> Result<()> {
        let waiting = self.select(numbers)?;
        for mut ended in waiting.into_iter().map(|(_, job_ended)| job_ended) {
            // The sender lives in the table, which outlives this wait.
            let _ = ended.wait_for(Option::is_some).await;
        }
        Ok(())
    }

    /// Stops the jobs `numbers` (all of them, if none is named) that are still running.
    pub fn kill(&self, numbers: &[usize]) -> Result<()> {
        let chosen: Vec<usize> = self.select(numbers)?.into_iter().map(|(n, _)| n).collect();
        let table = self.table.lock();
        for number in chosen {
            if let Some(job) = table.jobs.get(&number) {
                // Dropping the task's future cancels its requests, as Ctrl-C does. One that
                // ended just now keeps its own ending.
                job.task.abort();
                end(&job.ended, Ending::Killed);
            }
        }
        Ok(())
    }

    /// The named jobs (every one in the table if none is), with a way to wait for each one's end.
    fn select(&self, numbers: &[usize]) -> Result<Vec<(usize, watch::Receiver<Option<Ending>>)>> {
        let table = self.table.lock();
        if numbers.is_empty() {
            return Ok(table.jobs.iter().map(|(n, job)| (*n, job.ended.subscribe())).collect());
        }
        numbers
            .iter()
            .map(|number| match table.jobs.get(number) {
                Some(job) => Ok((*number, job.ended.subscribe())),
                None => Err(ClientError::Usage(format!("no job [{number}] (see `jobs`)"))),
            })
            .collect()
    }
}

/// `312.0 MiB of 1.0 GiB (30 %), 95.2 MiB/s, 12 s` for a job whose transfers have started.
fn progress_text(job: &Job) -> String {
    let elapsed = job.started.elapsed().as_secs();
    match job.output.progress() {
        Some((moved, total, rate)) if total > 0 => format!(
            "{} of {} ({} %), {}/s, {elapsed} s",
            human_bytes(moved),
            human_bytes(total),
            moved * 100 / total,
            human_bytes(rate as u64)
        ),
        _ => format!("{elapsed} s"),
    }
}

/// The line without its final `&`, if it ends in one (not escaped as `\&`).
pub fn backgrounded(line: &str) -> Option<&str> {
    let rest = line.trim_end().strip_suffix('&')?;
    (!rest.ends_with('\\') && !rest.trim().is_empty()).then_some(rest.trim_end())
}

/// `command` (typed as `line`, without its `&`) to run in the background, if it is a transfer.
pub fn background(command: ShellCommand, line: &str) -> Result<crate::commands::Parsed> {
    match command {
        ShellCommand::Put(_)
        | ShellCommand::Get(_)
        | ShellCommand::Mirror(_)
        | ShellCommand::Cp { .. } => {
            Ok(crate::commands::Parsed::Command(ShellCommand::Background {
                command: Box::new(command),
                line: line.to_owned(),
            }))
        }
        _ => Err(not_a_job()),
    }
}

/// The error for a line ending in `&` that is not a transfer.
pub fn not_a_job() -> ClientError {
    ClientError::Usage("only put, get, mirror and cp run in the background (&)".into())
}

/// Job numbers as `wait` and `kill` take them: `1` or `%1`; `all` for every job (an empty list).
pub fn numbers(words: &[String]) -> Result<Vec<usize>> {
    if words.iter().any(|word| word == "all") {
        return Ok(Vec::new());
    }
    words
        .iter()
        .map(|word| {
            word.trim_start_matches('%').parse().map_err(|_| {
                ClientError::Usage(format!("{word:?} is not a job number (see `jobs`)"))
            })
        })
        .collect()
}

/// `command` with its relative paths made absolute against the working folders as they are now,
/// `remote_cwd` and `local_cwd`, and the destinations they default to written out: a job that
/// runs on after a `cd` or `lcd` still works where it was started.
pub fn pinned(command: ShellCommand, remote_cwd: &str, local_cwd: &str) -> ShellCommand {
    let remote = |raw: &str| {
        let absolute = raw.starts_with('/') || raw == "~" || raw.starts_with("~/");
        if absolute { raw.to_owned() } else { under(remote_cwd, raw) }
    };
    let local =
        |raw: &str| if raw.starts_with('/') { raw.to_owned() } else { under(local_cwd, raw) };
    match command {
        ShellCommand::Put(mut args) => {
            sources_then_destination(&mut args.paths, remote_cwd, local, remote);
            ShellCommand::Put(args)
        }
        ShellCommand::Get(mut args) => {
            sources_then_destination(&mut args.paths, local_cwd, remote, local);
            ShellCommand::Get(args)
        }
        ShellCommand::Mirror(mut args) => {
            args.remote =
                Some(args.remote.as_deref().map_or_else(|| remote_cwd.to_owned(), remote));
            args.local = Some(args.local.as_deref().map_or_else(|| local_cwd.to_owned(), local));
            ShellCommand::Mirror(args)
        }
        ShellCommand::Cp { recursive, paths } => {
            ShellCommand::Cp { recursive, paths: paths.iter().map(|path| remote(path)).collect() }
        }
        other => other,
    }
}

/// `raw` below the folder `cwd`.
fn under(cwd: &str, raw: &str) -> String {
    format!("{}/{raw}", cwd.trim_end_matches('/'))
}

/// Pins a `put`'s or `get`'s paths: the sources, then the destination, which defaults to the
/// folder `default_into`, written with its slash (a folder to copy into, without asking what it is).
fn sources_then_destination(
    paths: &mut Vec<String>,
    default_into: &str,
    source: impl Fn(&str) -> String,
    destination: impl Fn(&str) -> String,
) {
    if paths.len() == 1 {
        paths.push(format!("{}/", default_into.trim_end_matches('/')));
    }
    let last = paths.len() - 1;
    for (i, path) in paths.iter_mut().enumerate() {
        *path = if i == last { destination(path) } else { source(path) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{Parsed, parse_line};

    fn command(line: &str) -> ShellCommand {
        match parse_line(line) {
            Ok(Parsed::Command(command)) => command,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn pins(line: &str, remote_cwd: &str, local_cwd: &str, expected: &str) {
        let pinned = pinned(command(line), remote_cwd, local_cwd);
        assert_eq!(pinned, command(expected), "{line} in {remote_cwd} and {local_cwd}");
    }

    #[test]
    fn a_job_s_paths_are_pinned_to_the_folders_it_started_in() {
        // The destination a single source defaults to is written out, as a folder.
        pins("put a.txt", "/docs", "/home/u", "put /home/u/a.txt /docs/");
        pins("get a.txt", "/docs", "/home/u", "get /docs/a.txt /home/u/");
        pins("put -r d x y", "/", "/l", "put -r /l/d /l/x /y");
        // Absolute paths and the remote home stay as they are; wildcards go along.
        pins("get a /abs/b ~/c '*.txt' out", "/d", "/l", "get /d/a /abs/b ~/c '/d/*.txt' /l/out");
        pins("put /etc/hosts ~", "/d", "/l", "put /etc/hosts ~");
        pins("mirror", "/docs", "/l", "mirror /docs /l");
        pins("mirror -R sub ../up", "/docs", "/l", "mirror -R /docs/sub /l/../up");
        pins("cp -r a /b c", "/d", "/l", "cp -r /d/a /b /d/c");
    }

    #[test]
    fn a_trailing_ampersand_sends_a_transfer_to_the_background() {
        assert_eq!(backgrounded("put a &"), Some("put a"));
        assert_eq!(backgrounded("put a&"), Some("put a"));
        assert_eq!(backgrounded("put a\\&"), None, "an escaped & is part of the name");
        assert_eq!(backgrounded("&"), None);
        assert_eq!(backgrounded("put a"), None);
        let Ok(Parsed::Command(ShellCommand::Background { command, line })) =
            parse_line("get -r 'my docs' &")
        else {
            panic!("a background get");
        };
        assert_eq!(
            (*command, line.as_str()),
            (self::command("get -r 'my docs'"), "get -r 'my docs'")
        );
        for line in ["ls &", "cd /a &", "cat x &", "put a & &"] {
            assert!(matches!(parse_line(line), Err(ClientError::Usage(_))), "{line}");
        }
    }

    #[test]
    fn job_numbers_are_read_as_a_shell_writes_them() {
        let words = |list: &[&str]| list.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(numbers(&words(&["1", "%2"])).ok(), Some(vec![1, 2]));
        assert_eq!(numbers(&words(&["all"])).ok(), Some(vec![]));
        assert!(numbers(&words(&["one"])).is_err());
    }
}
