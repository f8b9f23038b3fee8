//! `mv` and `cp`: remote files moved or copied on the server, named as mv(1) and cp(1) take them
//! (`FROM... TO`: into `TO` when it is a directory, and otherwise one source to the name `TO`).

use wharf_common::path::RemotePath;
use wharf_common::proto::{EntryKind, ErrorCode};

use crate::error::{ClientError, Result};
use crate::exec::first_failure;
use crate::expand::{RemoteMatch, remote_child};
use crate::pipeline;
use crate::session::Session;

/// The sources and the destination of `command FROM... TO`.
pub fn split<'a>(command: &str, paths: &'a [String]) -> Result<(&'a [String], &'a String)> {
    let usage =
        |what: String| ClientError::Usage(format!("{command}: {what} ({command} FROM... TO)"));
    match paths {
        [] => Err(usage("missing FROM and TO".into())),
        [only] => Err(usage(format!("missing TO after {only}"))),
        [from @ .., to] => Ok((from, to)),
    }
}

/// The sources (wildcards expanded) and where each goes: into `to` when it is a directory, or,
/// for one source named outright, to `to` itself. Several sources into anything else: nothing.
async fn destinations(
    session: &Session,
    verb: &str,
    from: &[String],
    to: &str,
) -> Result<Vec<(RemoteMatch, RemotePath)>> {
    let several = from.len() > 1 || from.iter().any(|raw| crate::glob::has_wildcards(raw));
    let sources = crate::expand::remote_all(session, from).await?;
    let to_path = session.resolve(to)?;
    let into = session.stat(&to_path).await.is_ok_and(|entry| entry.kind == EntryKind::Dir);
    if !into {
        return match sources.len() {
            1 if !several => {
                Ok(sources.into_iter().map(|source| (source, to_path.clone())).collect())
            }
            _ => Err(ClientError::Remote {
                code: ErrorCode::NotADirectory,
                message: format!("{to}: not a directory ({verb} several sources needs one)"),
            }),
        };
    }
    // The home has no name: into TO it is `/` itself again, which the server refuses to move.
    sources
        .into_iter()
        .map(|source| {
            let name = source.path.file_name().unwrap_or_default().to_owned();
            let dest = remote_child(&to_path, &name)?;
            Ok((source, dest))
        })
        .collect()
}

/// `mv FROM... TO`. Several sources (or a wildcard's matches) all go out together, every one is
/// tried, and the first failure is reported, as with `rm`.
pub async fn mv(session: &Session, paths: &[String]) -> Result<()> {
    let (from, to) = split("mv", paths)?;
    let moves = destinations(session, "moving", from, to).await?;
    let renamed = pipeline::all(session, &moves, |(from, to)| session.rename(&from.path, to));
    first_failure(renamed.await)
}

/// `cp [-r] FROM... TO`: each file copied by the server (`copy`), all at once; with `-r` a
/// directory's tree is made below TO and its files copied into it (links and special files are
/// left out, as `get -r` leaves them). A directory never goes into itself.
pub async fn cp(session: &Session, paths: &[String], recursive: bool) -> Result<()> {
    let (from, to) = split("cp", paths)?;
    let mut copies = Vec::new();
    let mut folders = Vec::new();
    for (source, dest) in destinations(session, "copying", from, to).await? {
        if dest == source.path {
            return Err(ClientError::Remote {
                code: ErrorCode::InvalidPath,
                message: format!("{dest}: cannot be copied onto itself"),
            });
        }
        let entry = source.stat(session).await?;
        if entry.kind != EntryKind::Dir {
            copies.push((source.path, dest));
            continue;
        }
        if !recursive {
            return Err(ClientError::Usage(format!("{}: is a directory (use cp -r)", source.path)));
        }
        if dest.starts_with(&source.path) {
            return Err(ClientError::Remote {
                code: ErrorCode::InvalidPath,
                message: format!("{}: cannot copy a directory into itself ({dest})", source.path),
            });
        }
        folders.push(dest.clone());
        for below in session.tree(&source.path).await? {
            let pair =
                (remote_child(&source.path, &below.path)?, remote_child(&dest, &below.path)?);
            match below.kind {
                EntryKind::Dir => folders.push(pair.1),
                EntryKind::File => copies.push(pair),
                EntryKind::Symlink | EntryKind::Other => {}
            }
        }
    }
    // Every folder with its parents, so that none waits for the one above it.
    // Owned items: a closure over borrowed ones makes the future one the compiler cannot prove
    // `Send` (rust-lang/rust#64552), and a background job must be.
    let made =
        pipeline::all(session, folders, |dir| async move { session.mkdir(&dir, true).await });
    first_failure(made.await)?;
    let copied = pipeline::all(session, copies, |(from, to)| async move {
        session.copy(&from, &to).await.map(drop)
    });
    first_failure(copied.await)
}
