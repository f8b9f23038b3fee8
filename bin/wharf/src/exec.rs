//! Runs one parsed [`ShellCommand`] against a [`Session`], writing its output to `out`.

use std::io::Write;

use wharf_common::proto::{EntryKind, ErrorCode};

use std::sync::Arc;

use crate::commands::{ShellCommand, overview, usage_of};
use crate::error::{ClientError, Result};
use crate::format::{columns, long_line, prepare, quota_text, stat_text};
use crate::session::Session;

/// Whether the shell goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit,
}

/// Terminal width for `ls` columns: `$COLUMNS`, or 80.
fn width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w| *w > 0).unwrap_or(80)
}

/// Runs `command`.
pub async fn execute(
    session: &Arc<Session>,
    command: ShellCommand,
    out: &mut dyn Write,
) -> Result<Flow> {
    let write_err = |err| ClientError::local("writing output", err);
    match command {
        ShellCommand::Pwd => writeln!(out, "{}", session.cwd()).map_err(write_err)?,
        ShellCommand::Cd { path } => {
            session.cd(path.as_deref().unwrap_or("/")).await?;
        }
        ShellCommand::Ls { long, all, path } => {
            ls(session, long, all, path.as_deref(), out).await?
        }
        ShellCommand::Stat { path } => {
            let resolved = session.resolve(&path)?;
            let entry = session.stat(&resolved).await?;
            out.write_all(stat_text(resolved.as_str(), &entry).as_bytes()).map_err(write_err)?;
        }
        ShellCommand::Mkdir { parents, paths } => {
            for path in paths {
                session.mkdir(&session.resolve(&path)?, parents).await?;
            }
        }
        ShellCommand::Rmdir { paths } => {
            for path in paths {
                session.rmdir(&session.resolve(&path)?).await?;
            }
        }
        ShellCommand::Rm { recursive, paths } => {
            for path in paths {
                session.remove(&session.resolve(&path)?, recursive).await?;
            }
        }
        ShellCommand::Mv { from, to } => mv(session, &from, &to).await?,
        ShellCommand::Quota => {
            let quota = session.quota().await?;
            out.write_all(quota_text(&quota).as_bytes()).map_err(write_err)?;
        }
        ShellCommand::Put(args) => {
            interruptible(crate::copy::put(session, &args.paths, args.options())).await?;
        }
        ShellCommand::Get(args) => {
            interruptible(crate::copy::get(session, &args.paths, args.options())).await?;
        }
        ShellCommand::Lcd { path } => {
            crate::local::change_dir(path.as_deref())?;
        }
        ShellCommand::Lpwd => {
            writeln!(out, "{}", crate::local::current_dir()?.display()).map_err(write_err)?
        }
        ShellCommand::Lls { long, all, path } => {
            let entries =
                crate::local::entries(std::path::Path::new(path.as_deref().unwrap_or(".")))?;
            print_entries(prepare(entries, all), long, out)?;
        }
        ShellCommand::Help { command } => {
            let text = match command {
                Some(name) => usage_of(&name)?,
                None => overview(),
            };
            out.write_all(text.as_bytes()).map_err(write_err)?;
        }
        ShellCommand::Exit => return Ok(Flow::Exit),
    }
    Ok(Flow::Continue)
}

/// Runs a transfer until it ends or the user presses Ctrl-C, with the terminal's echo off meanwhile.
/// Cancelling drops the transfer tasks and cancels their requests; partial files stay for a resume.
async fn interruptible(transfer: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    let _echo = crate::progress::EchoOff::on_stdin();
    tokio::select! {
        result = transfer => result,
        _ = tokio::signal::ctrl_c() => Err(ClientError::Interrupted),
    }
}

async fn ls(
    session: &Session,
    long: bool,
    all: bool,
    path: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let target = session.resolve(path.unwrap_or("."))?;
    let entries = match session.list(&target).await {
        Ok(entries) => prepare(entries, all),
        // `ls FILE` shows the file itself, as ls(1) does.
        Err(ClientError::Remote { code: ErrorCode::NotADirectory, .. }) => {
            let mut entry = session.stat(&target).await?;
            entry.name = path.unwrap_or_default().to_owned();
            vec![entry]
        }
        Err(err) => return Err(err),
    };
    print_entries(entries, long, out)
}

fn print_entries(
    entries: Vec<wharf_common::proto::Entry>,
    long: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let text = if long {
        entries.iter().map(|e| long_line(e) + "\n").collect::<String>()
    } else {
        let names: Vec<String> = entries.iter().map(crate::format::display_name).collect();
        columns(&names, width())
    };
    out.write_all(text.as_bytes()).map_err(|err| ClientError::local("writing output", err))
}

/// `mv FROM TO`: into `TO` when it is an existing directory, as mv(1) does.
async fn mv(session: &Session, from: &str, to: &str) -> Result<()> {
    let from = session.resolve(from)?;
    let mut to = session.resolve(to)?;
    if let Ok(entry) = session.stat(&to).await
        && entry.kind == EntryKind::Dir
        && let Some(name) = from.file_name()
    {
        to = to.join(name).map_err(|err| ClientError::Remote {
            code: ErrorCode::InvalidPath,
            message: format!("{to}/{name}: {err}"),
        })?;
    }
    session.rename(&from, &to).await
}
