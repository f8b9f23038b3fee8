//! Runs one parsed [`ShellCommand`] against a [`Session`], writing its output to `out`.

use std::io::Write;
use std::sync::Arc;

use wharf_common::path::RemotePath;

use crate::commands::{PartialsAction, ShellCommand, overview, usage_of};
use crate::error::{ClientError, Result};
use crate::format::{df_text, human_bytes, partials_text, quota_text, shown, stat_text};
use crate::pipeline;
use crate::session::Session;

/// Whether the shell goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit,
}

/// Writes `text` to `out`.
pub fn emit(out: &mut (dyn Write + Send), text: &str) -> Result<()> {
    out.write_all(crate::format::printable(text).as_bytes())
        .map_err(|err| ClientError::local("writing output", err))
}

/// Runs `command`.
pub async fn execute(
    session: &Arc<Session>,
    command: ShellCommand,
    out: &mut (dyn Write + Send),
) -> Result<Flow> {
    if prints_without_asking(&command) {
        // Behind a login whose reply has not come yet, nothing may show that the login's failure
        // should have stopped (see `Session::login_then`).
        session.login_answered().await;
    }
    let command = with_local_home(command);
    match command {
        ShellCommand::Exit => return Ok(Flow::Exit),
        ShellCommand::Put(_)
        | ShellCommand::Get(_)
        | ShellCommand::Mirror(_)
        | ShellCommand::Cat { .. }
        | ShellCommand::Cp { .. } => {
            transfer(session, command, out, true).await?;
        }
        ShellCommand::Lls(args) => {
            // Off the async threads: `lls -R` may read many directories.
            let text = crate::local::blocking(move || crate::listing::local(&args)).await?;
            emit(out, &text)?;
        }
        ShellCommand::Lmkdir { parents, paths } => {
            crate::local::blocking(move || crate::local::make_dirs(&paths, parents)).await?;
        }
        ShellCommand::Lcd { .. } | ShellCommand::Lpwd | ShellCommand::Help { .. } => {
            local(command, out)?
        }
        ShellCommand::Background { command, line } => {
            let local_cwd = crate::local::current_dir()?;
            let local_cwd = local_cwd.to_str().ok_or_else(|| {
                ClientError::Usage(
                    "a job cannot start in a local folder whose name is not UTF-8".into(),
                )
            })?;
            let remote_cwd = session.cwd();
            let command =
                crate::jobs::pinned(with_local_home(*command), remote_cwd.as_str(), local_cwd);
            let started = session.jobs().start(session, command, line);
            emit(out, &format!("{started}\n"))?;
        }
        // The jobs running, then the reports of those that ended.
        ShellCommand::Jobs => {
            emit(out, &session.jobs().list())?;
            show_ended_jobs(session, out)?;
        }
        ShellCommand::Wait { jobs } => wait(session, &crate::jobs::numbers(&jobs)?, out).await?,
        ShellCommand::Kill { jobs } => {
            session.jobs().kill(&crate::jobs::numbers(&jobs)?)?;
            show_ended_jobs(session, out)?;
        }
        other => remote(session, other, out).await?,
    }
    Ok(Flow::Continue)
}

/// `command` with `~` read as the home directory in its local paths: what `lcd` and `lls` take,
/// the sources of a `put` (all its paths but the last, when there are several) and the destination
/// of a `get` or a `mirror`. (Remote paths read `~` as `/`, the home there:
/// [`Session::resolve`].)
fn with_local_home(command: ShellCommand) -> ShellCommand {
    use crate::local::with_home;
    match command {
        ShellCommand::Lcd { path } => ShellCommand::Lcd { path: path.map(|p| with_home(&p)) },
        ShellCommand::Lls(mut args) => {
            args.paths = args.paths.iter().map(|p| with_home(p)).collect();
            ShellCommand::Lls(args)
        }
        ShellCommand::Lmkdir { parents, paths } => {
            ShellCommand::Lmkdir { parents, paths: paths.iter().map(|p| with_home(p)).collect() }
        }
        ShellCommand::Put(mut args) => {
            let local = if args.paths.len() > 1 { args.paths.len() - 1 } else { args.paths.len() };
            for path in &mut args.paths[..local] {
                *path = with_home(path);
            }
            ShellCommand::Put(args)
        }
        ShellCommand::Get(mut args) => {
            if let [_, .., last] = args.paths.as_mut_slice() {
                *last = with_home(last);
            }
            ShellCommand::Get(args)
        }
        ShellCommand::Mirror(mut args) => {
            args.local = args.local.map(|p| with_home(&p));
            ShellCommand::Mirror(args)
        }
        other => other,
    }
}

/// Whether `command` prints something without a request to the server. (`lcd` and `exit` show
/// nothing: a script may start with them and still have its first request leave with the login.)
fn prints_without_asking(command: &ShellCommand) -> bool {
    match command {
        ShellCommand::Pwd
        | ShellCommand::Lpwd
        | ShellCommand::Lls(_)
        | ShellCommand::Help { .. }
        | ShellCommand::Background { .. }
        | ShellCommand::Jobs
        | ShellCommand::Wait { .. }
        | ShellCommand::Kill { .. } => true,
        // `lcd -` says where it went.
        ShellCommand::Lcd { path } => path.as_deref() == Some("-"),
        _ => false,
    }
}

/// The commands on the server's files, other than transfers.
async fn remote(
    session: &Arc<Session>,
    command: ShellCommand,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    match command {
        ShellCommand::Pwd => emit(out, &format!("{}\n", shown(session.cwd().as_str())))?,
        ShellCommand::Cd { path } => {
            let now = session.cd(path.as_deref().unwrap_or("/")).await?;
            if path.as_deref() == Some("-") {
                // As a Unix shell does: going back says where it went.
                emit(out, &format!("{}\n", shown(now.as_str())))?;
            }
        }
        ShellCommand::Ls(args) => crate::listing::remote(session, &args, out).await?,
        ShellCommand::Stat { paths } => {
            let found = crate::expand::remote_all(session, &paths).await?;
            // A wildcard's matches need no stat: their listing said it.
            let stats = pipeline::all(session, &found, |found| found.stat(session)).await;
            // Printed in order up to the first failure, as one stat after another would have.
            for (found, entry) in found.iter().zip(stats) {
                emit(out, &stat_text(found.path.as_str(), &entry?))?;
            }
        }
        ShellCommand::Mkdir { parents, paths } => {
            let paths = resolve_all(session, &paths)?;
            on_every_path(session, &paths, |p| session.mkdir(p, parents)).await?;
        }
        ShellCommand::Rmdir { paths } => {
            let paths = resolve_all(session, &paths)?;
            on_every_path(session, &paths, |p| session.rmdir(p)).await?;
        }
        ShellCommand::Rm { recursive, paths } => {
            let paths = crate::expand::remote_paths(session, &paths).await?;
            first_failure(pipeline::all(session, &paths, |p| session.remove(p, recursive)).await)?;
        }
        ShellCommand::Mv { paths } => crate::rearrange::mv(session, &paths).await?,
        ShellCommand::Chmod { mode, paths } => {
            let mode = parse_mode(&mode)?;
            let paths = crate::expand::remote_paths(session, &paths).await?;
            first_failure(pipeline::all(session, &paths, |p| session.chmod(p, mode)).await)?;
        }
        ShellCommand::Quota => {
            let quota = session.quota().await?;
            let partials = session.partials().await?;
            emit(out, &quota_text(&quota, &partials))?;
        }
        ShellCommand::Du(args) => crate::tree::du(session, &args, out).await?,
        ShellCommand::Find(args) => crate::tree::find(session, &args, out).await?,
        ShellCommand::Df { human, .. } => emit(out, &df_text(&session.quota().await?, human))?,
        ShellCommand::Partials { action } => partials(session, action, out).await?,
        other => unreachable!("not a remote command: {other:?}"),
    }
    Ok(())
}

fn resolve_all(session: &Session, paths: &[String]) -> Result<Vec<RemotePath>> {
    paths.iter().map(|path| session.resolve(path)).collect()
}

/// Runs `op` (`mkdir`, `rmdir`) on every path: all at once, every path tried, unless one lies in
/// (or is) another. Then (`mkdir a a/b`) each may need the one before, so one after the other,
/// stopping at the first failure.
async fn on_every_path<'a, Fut>(
    session: &Session,
    paths: &'a [RemotePath],
    op: impl Fn(&'a RemotePath) -> Fut,
) -> Result<()>
where
    Fut: std::future::Future<Output = Result<()>>,
{
    let nested = paths
        .iter()
        .enumerate()
        .any(|(i, a)| paths[i + 1..].iter().any(|b| a.starts_with(b) || b.starts_with(a)));
    if !nested {
        return first_failure(pipeline::all(session, paths, op).await);
    }
    for path in paths {
        op(path).await?;
    }
    Ok(())
}

/// The first of `results` that failed. `rm`, `chmod`, and `mkdir` and `rmdir` of paths that do not
/// lie in one another, go out together (each a round trip otherwise), so every path is tried, as
/// coreutils does, and the first failure is the one reported.
pub fn first_failure(results: Vec<Result<()>>) -> Result<()> {
    results.into_iter().collect()
}

/// `wait`: until the jobs end, or Ctrl-C (the jobs go on); then reports those that ended. A job that
/// failed or was killed fails the `wait`, so that a batch stops there.
async fn wait(session: &Session, jobs: &[usize], out: &mut (dyn Write + Send)) -> Result<()> {
    let waited = interruptible(session.jobs().wait(jobs), "the jobs go on in the background");
    let waited = waited.await;
    report_jobs(session, out)?;
    waited
}

/// Prints the reports of the jobs that ended, which leave the list; fails if one of them failed.
pub fn report_jobs(session: &Session, out: &mut (dyn Write + Send)) -> Result<()> {
    match show_ended_jobs(session, out)? {
        Some(code) => Err(ClientError::JobFailed { code }),
        None => Ok(()),
    }
}

/// Prints the reports of the jobs that ended, which leave the list; returns the exit code of the
/// worst failure among them, if one failed.
pub fn show_ended_jobs(session: &Session, out: &mut (dyn Write + Send)) -> Result<Option<u8>> {
    let (text, failed) = session.jobs().take_ended();
    emit(out, &text)?;
    Ok(failed)
}

/// Runs a transfer as a background job: to its end, deaf to Ctrl-C (which belongs to the command
/// in the foreground).
pub async fn run_job(
    session: &Arc<Session>,
    command: ShellCommand,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    transfer(session, command, out, false).await
}

/// What a transfer keeps when it is stopped: by Ctrl-C, or `kill` of its job.
pub fn kept_when_stopped(command: &ShellCommand) -> &'static str {
    match command {
        ShellCommand::Cat { .. } => "the rest is not shown",
        // Ctrl-C cancels a copy on the server, which drops it.
        ShellCommand::Cp { .. } => "the copies under way were dropped; those done are kept",
        _ => "partial files are kept: run the same command again to resume",
    }
}

/// `put`, `get`, `mirror`, `cat` and `cp`, each interruptible with Ctrl-C in the foreground.
async fn transfer(
    session: &Arc<Session>,
    command: ShellCommand,
    out: &mut (dyn Write + Send),
    foreground: bool,
) -> Result<()> {
    let kept = kept_when_stopped(&command);
    match command {
        ShellCommand::Put(args) => {
            run_as(foreground, crate::copy::put(session, &args.paths, args.options()), kept).await
        }
        ShellCommand::Get(args) => {
            run_as(foreground, crate::copy::get(session, &args.paths, args.options()), kept).await
        }
        ShellCommand::Mirror(args) => {
            let (remote, local) = (args.remote.as_deref(), args.local.as_deref());
            let mirror = crate::mirror::mirror(session, remote, local, args.options(), out);
            run_as(foreground, mirror, kept).await
        }
        ShellCommand::Cat { paths } => {
            run_as(foreground, crate::cat::cat(session, &paths, out), kept).await
        }
        ShellCommand::Cp { recursive, paths } => {
            run_as(foreground, crate::rearrange::cp(session, &paths, recursive), kept).await
        }
        other => unreachable!("not a transfer: {other:?}"),
    }
}

/// The commands on this side that read nothing but the working directory: `lcd`, `lpwd`, `help`.
fn local(command: ShellCommand, out: &mut (dyn Write + Send)) -> Result<()> {
    match command {
        ShellCommand::Lcd { path } => {
            let now = crate::local::change_dir(path.as_deref())?;
            if path.as_deref() == Some("-") {
                emit(out, &format!("{}\n", shown(&now.display().to_string())))?;
            }
        }
        ShellCommand::Lpwd => {
            let dir = crate::local::current_dir()?.display().to_string();
            emit(out, &format!("{}\n", shown(&dir)))?;
        }
        ShellCommand::Help { command } => {
            let text = match command {
                Some(name) => usage_of(&name)?,
                None => overview(),
            };
            emit(out, &text)?;
        }
        other => unreachable!("not a local command: {other:?}"),
    }
    Ok(())
}

/// Runs `work` in the foreground ([`interruptible`]), or as a job: to its end.
async fn run_as(
    foreground: bool,
    work: impl std::future::Future<Output = Result<()>>,
    kept: &'static str,
) -> Result<()> {
    if foreground { interruptible(work, kept).await } else { work.await }
}

/// Runs a transfer until it ends or the user presses Ctrl-C, with the terminal's echo off meanwhile.
/// Cancelling drops the transfer tasks and cancels their requests; the error says what `kept`.
async fn interruptible(
    transfer: impl std::future::Future<Output = Result<()>>,
    kept: &'static str,
) -> Result<()> {
    let _echo = crate::terminal::EchoOff::on_stdin();
    tokio::select! {
        result = transfer => result,
        _ = tokio::signal::ctrl_c() => Err(ClientError::Interrupted(kept)),
    }
}

/// `640`, `0640` or `755` as permission bits.
fn parse_mode(text: &str) -> Result<u32> {
    u32::from_str_radix(text, 8).ok().filter(|mode| *mode <= 0o777).ok_or_else(|| {
        ClientError::Usage(format!("chmod: {text:?} is not an octal mode (000 to 777)"))
    })
}

/// `partials` and `partials drop PATH...|--all`.
async fn partials(
    session: &Session,
    action: Option<PartialsAction>,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let Some(PartialsAction::Drop { all, paths }) = action else {
        return emit(out, &partials_text(&session.partials().await?));
    };
    let (mut count, mut bytes) = (0, 0);
    if all {
        (count, bytes) = session.drop_partials(None).await?;
    }
    for path in paths {
        let (dropped, freed) = session.drop_partials(Some(&session.resolve(&path)?)).await?;
        count += dropped;
        bytes += freed;
    }
    let uploads = if count == 1 { "upload" } else { "uploads" };
    emit(out, &format!("dropped {count} partial {uploads}, {} given back\n", human_bytes(bytes)))
}

/// `!COMMAND` runs COMMAND with `sh -c`; `!` alone starts an interactive `$SHELL`. The command's
/// failure is the line's failure.
pub fn run_local(command: &str) -> Result<()> {
    let mut process = if command.is_empty() {
        std::process::Command::new(std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into()))
    } else {
        let mut sh = std::process::Command::new("/bin/sh");
        sh.arg("-c").arg(command);
        sh
    };
    let status =
        process.status().map_err(|err| ClientError::local("starting a local shell", err))?;
    if status.success() {
        Ok(())
    } else {
        Err(ClientError::local(
            format!("!{command}"),
            std::io::Error::other(format!("exited with {status}")),
        ))
    }
}
