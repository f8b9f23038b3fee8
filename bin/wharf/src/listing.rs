//! `ls` and `lls`: which entries to show for the paths given (directories are listed, files and
//! wildcard matches shown as themselves, as ls(1) does; with `-R`, every directory below too), in
//! the order and form the flags ask for.

use std::io::Write;
use std::path::Path;

use wharf_common::path::RemotePath;
use wharf_common::proto::{Entry, EntryKind, ErrorCode};

use crate::commands::ListArgs;
use crate::error::{ClientError, Result};
use crate::exec::emit;
use crate::format::{columns, display_name, long_line};
use crate::glob::has_wildcards;
use crate::pipeline;
use crate::session::Session;

/// Terminal width for `ls` columns: `$COLUMNS`, or 80.
fn width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w| *w > 0).unwrap_or(80)
}

/// What one path argument stands for.
enum Shown {
    /// A directory's entries, under its name when several paths are listed.
    Dir(String, Vec<Entry>),
    /// Files (or wildcard matches) shown as themselves.
    Entries(Vec<Entry>),
}

/// `ls [FLAGS] [PATH...]` on the server.
pub async fn remote(
    session: &Session,
    args: &ListArgs,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let paths = if args.paths.is_empty() { vec![".".to_owned()] } else { args.paths.clone() };
    let mut shown = Vec::new();
    for raw in &paths {
        let name = raw.rsplit('/').next().unwrap_or_default();
        if has_wildcards(name) {
            // Only symlinks need a stat (to show what they point to), all at once: the other
            // matches' listing said it.
            let matches = crate::expand::remote(session, raw).await?;
            let entries = pipeline::each(session, matches, |found| async move {
                let mut entry = found.stat(session).await?;
                entry.name = found.path.file_name().unwrap_or("/").to_owned();
                Ok(entry)
            })
            .await?;
            shown.push(Shown::Entries(entries));
            continue;
        }
        let target = session.resolve(raw)?;
        if args.directory {
            // `-d`: the path itself, never its contents.
            let mut entry = session.stat(&target).await?;
            entry.name = raw.clone();
            shown.push(Shown::Entries(vec![entry]));
            continue;
        }
        match session.list(&target).await {
            Ok(entries) => {
                shown.push(Shown::Dir(raw.clone(), entries));
                if args.recursive {
                    shown.extend(remote_below(session, &target, raw, args.all).await?);
                }
            }
            // `ls FILE` shows the file itself, as ls(1) does.
            Err(ClientError::Remote { code: ErrorCode::NotADirectory, .. }) => {
                let mut entry = session.stat(&target).await?;
                entry.name = raw.clone();
                shown.push(Shown::Entries(vec![entry]));
            }
            Err(err) => return Err(err),
        }
    }
    emit(out, &print(shown, args))
}

/// `ls -R`: the directories below `dir` (which `raw` named), each under its path, in the order
/// ls(1) prints them: depth first, by name. One `tree` finds them all and their listings go out
/// together, so a tree of any depth costs two round trips, not one a level.
async fn remote_below(
    session: &Session,
    dir: &RemotePath,
    raw: &str,
    all: bool,
) -> Result<Vec<Shown>> {
    let mut below: Vec<String> = session
        .tree(dir)
        .await?
        .into_iter()
        .filter(|entry| entry.kind == EntryKind::Dir && (all || !hidden(&entry.path)))
        .map(|entry| entry.path)
        .collect();
    below.sort_by(|a, b| crate::tree::depth_first(a, b));
    pipeline::each(session, below, |relative| async move {
        let path = crate::expand::remote_child(dir, &relative)?;
        Ok(Shown::Dir(crate::format::below(raw, &relative), session.list(&path).await?))
    })
    .await
}

/// Whether a relative path lies in (or is) a dot-directory, which `-R` skips without `-a`.
fn hidden(relative: &str) -> bool {
    relative.split('/').any(|name| name.starts_with('.'))
}

/// `lls [FLAGS] [PATH...]` on this machine: the text to print. Blocking (it reads directories).
pub fn local(args: &ListArgs) -> Result<String> {
    let paths = if args.paths.is_empty() { vec![".".to_owned()] } else { args.paths.clone() };
    let mut shown = Vec::new();
    for raw in &paths {
        for path in crate::expand::local(raw)? {
            let is_dir = !args.directory && std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
            if is_dir {
                local_dir(&path, args, &mut shown)?;
            } else {
                shown.push(Shown::Entries(crate::local::entries(&path, args.directory)?));
            }
        }
    }
    Ok(print(shown, args))
}

/// The local directory `dir` under its name, and with `-R` every directory below it after it, as
/// [`remote_below`] orders them. Links to directories are shown, not followed.
fn local_dir(dir: &Path, args: &ListArgs, shown: &mut Vec<Shown>) -> Result<()> {
    let entries = crate::local::entries(dir, false)?;
    let mut below: Vec<String> = if args.recursive {
        entries
            .iter()
            .filter(|entry| entry.kind == EntryKind::Dir && (args.all || !hidden(&entry.name)))
            .map(|entry| entry.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    below.sort();
    shown.push(Shown::Dir(dir.display().to_string(), entries));
    for name in below {
        local_dir(&dir.join(name), args, shown)?;
    }
    Ok(())
}

/// The text of a listing: loose files first, as ls(1) does, then each directory, under its name
/// when there are several (always with `-R`).
fn print(shown: Vec<Shown>, args: &ListArgs) -> String {
    let headed = shown.len() > 1 || args.recursive;
    let mut text = String::new();
    let (mut loose, mut dirs) = (Vec::new(), Vec::new());
    for item in shown {
        match item {
            Shown::Entries(entries) => loose.extend(entries),
            Shown::Dir(name, entries) => dirs.push((name, entries)),
        }
    }
    if !loose.is_empty() {
        text += &render(arrange(loose, args, true), args);
    }
    for (name, entries) in dirs {
        if headed {
            let gap = if text.is_empty() { "" } else { "\n" };
            text += &format!("{gap}{}:\n", crate::format::shown(&name));
        }
        text += &render(arrange(entries, args, false), args);
    }
    text
}

/// Drops dot-files unless `-a` (names given explicitly always show) and sorts as the flags say:
/// by name, or newest first (`-t`), or largest first (`-S`); `-r` reverses.
fn arrange(mut entries: Vec<Entry>, args: &ListArgs, named: bool) -> Vec<Entry> {
    entries.retain(|e| named || args.all || !e.name.starts_with('.'));
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if args.by_time {
        entries.sort_by_key(|e| std::cmp::Reverse(e.mtime));
    } else if args.by_size {
        entries.sort_by_key(|e| std::cmp::Reverse(e.size));
    }
    if args.reverse {
        entries.reverse();
    }
    entries
}

fn render(entries: Vec<Entry>, args: &ListArgs) -> String {
    if args.long {
        entries.iter().map(|e| long_line(e, args.human) + "\n").collect()
    } else if args.one_per_line {
        entries.iter().map(|e| display_name(e) + "\n").collect()
    } else {
        let names: Vec<String> = entries.iter().map(display_name).collect();
        columns(&names, width())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_common::proto::EntryKind;

    fn entry(name: &str, size: u64, mtime: i64) -> Entry {
        Entry { name: name.into(), kind: EntryKind::File, size, mode: 0o644, mtime }
    }

    #[test]
    fn flags_sort_and_filter_like_ls() {
        let all =
            || vec![entry("b", 1, 30), entry(".h", 9, 99), entry("a", 5, 10), entry("c", 3, 20)];
        let names = |entries: Vec<Entry>| entries.into_iter().map(|e| e.name).collect::<Vec<_>>();
        let plain = ListArgs::default();
        assert_eq!(names(arrange(all(), &plain, false)), ["a", "b", "c"]);
        let dot = ListArgs { all: true, ..ListArgs::default() };
        assert_eq!(names(arrange(all(), &dot, false)), [".h", "a", "b", "c"]);
        let newest = ListArgs { by_time: true, ..ListArgs::default() };
        assert_eq!(names(arrange(all(), &newest, false)), ["b", "c", "a"]);
        let largest_last = ListArgs { by_size: true, reverse: true, ..ListArgs::default() };
        assert_eq!(names(arrange(all(), &largest_last, false)), ["b", "c", "a"]);
        let one = ListArgs { one_per_line: true, ..ListArgs::default() };
        assert_eq!(render(arrange(all(), &one, false), &one), "a\nb\nc\n");
    }
}
