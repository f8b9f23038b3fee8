//! `du` and `find`: what lies below remote paths, summed per directory or picked by name and kind.
//!
//! Both take one `tree` request per path (pages of the whole subtree), not a listing per directory:
//! across a long round trip a deep tree then costs one round trip, not one a level.

use std::collections::HashMap;
use std::io::Write;

use wharf_common::proto::{EntryKind, ErrorCode, TreeEntry};

use crate::commands::{DuArgs, FindArgs, FindKind};
use crate::error::{ClientError, Result};
use crate::exec::emit;
use crate::expand::RemoteMatch;
use crate::format::{below, human_bytes};
use crate::glob::matches;
use crate::pipeline;
use crate::session::Session;

/// What one path stands for: a directory's whole tree, or a single entry (a file, a link).
enum Found {
    Tree(Vec<TreeEntry>),
    Single(EntryKind, u64),
}

/// Every path (wildcards expanded, `.` when none is given) with what it holds, under the name it
/// is shown by, in the order given. The trees are fetched together.
async fn found(session: &Session, paths: &[String]) -> Result<Vec<(String, Found)>> {
    let paths = if paths.is_empty() { vec![".".to_owned()] } else { paths.to_vec() };
    let mut named: Vec<(String, RemoteMatch)> = Vec::new();
    for raw in &paths {
        let matched = crate::expand::remote(session, raw).await?;
        let literal = !crate::glob::has_wildcards(raw.rsplit('/').next().unwrap_or_default());
        for found in matched {
            let label = match (literal, raw.rsplit_once('/')) {
                (true, _) => raw.clone(),
                (false, Some((dir, _))) => below(dir, found.path.file_name().unwrap_or_default()),
                (false, None) => found.path.file_name().unwrap_or_default().to_owned(),
            };
            named.push((label, found));
        }
    }
    pipeline::each(session, named, |(label, found)| async move {
        let what = match found.known() {
            Some(entry) if entry.kind != EntryKind::Dir => Found::Single(entry.kind, entry.size),
            _ => match session.tree(&found.path).await {
                Ok(entries) => Found::Tree(entries),
                Err(ClientError::Remote { code: ErrorCode::NotADirectory, .. }) => {
                    let entry = session.stat(&found.path).await?;
                    Found::Single(entry.kind, entry.size)
                }
                Err(err) => return Err(err),
            },
        };
        Ok((label, what))
    })
    .await
}

/// `du [-a|-s] [-d N] [-h|-b] [PATH...]`.
pub async fn du(session: &Session, args: &DuArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let max_depth = if args.summarize { Some(0) } else { args.max_depth };
    let mut text = String::new();
    for (label, found) in found(session, &args.paths).await? {
        let lines = match found {
            Found::Tree(entries) => usage(&entries, args.all, max_depth),
            Found::Single(_, size) => vec![(size, String::new())],
        };
        for (size, relative) in lines {
            let size = if args.human {
                human_bytes(size)
            } else if args.bytes {
                size.to_string()
            } else {
                size.div_ceil(1024).to_string()
            };
            text += &format!("{size}\t{}\n", crate::format::shown(&below(&label, &relative)));
        }
    }
    emit(out, &text)
}

/// The size of everything below each directory of a tree (and with `all`, of each file), each
/// after what it holds, as du(1) prints them: `(bytes, path relative to the tree's top)`, the top
/// itself (`""`) last. Sizes are the files' own lengths, what the quota counts; a directory adds
/// nothing of its own.
fn usage(entries: &[TreeEntry], all: bool, max_depth: Option<u32>) -> Vec<(u64, String)> {
    let mut totals: HashMap<&str, u64> = HashMap::from([("", 0)]);
    for entry in entries {
        if entry.kind == EntryKind::Dir {
            totals.entry(&entry.path).or_default();
            continue;
        }
        let parents = entry.path.match_indices('/').map(|(at, _)| &entry.path[..at]);
        for dir in std::iter::once("").chain(parents) {
            *totals.entry(dir).or_default() += entry.size;
        }
    }
    let mut shown: Vec<(&str, u64)> = totals.into_iter().collect();
    if all {
        let files = entries.iter().filter(|entry| entry.kind != EntryKind::Dir);
        shown.extend(files.map(|entry| (entry.path.as_str(), entry.size)));
    }
    shown.retain(|(path, _)| within(path, max_depth));
    shown.sort_by(|a, b| depth_first(a.0, b.0));
    // Depth first, each directory once everything below it is out.
    let mut ordered = Vec::with_capacity(shown.len());
    let mut open: Vec<(&str, u64)> = Vec::new();
    for (path, size) in shown {
        while let Some(&(top, top_size)) = open.last() {
            if top.is_empty() || path.strip_prefix(top).is_some_and(|rest| rest.starts_with('/')) {
                break;
            }
            ordered.push((top_size, top.to_owned()));
            open.pop();
        }
        open.push((path, size));
    }
    ordered.extend(open.into_iter().rev().map(|(path, size)| (size, path.to_owned())));
    ordered
}

/// Whether `relative` (`""` for the top) lies at most `max_depth` levels below the top.
fn within(relative: &str, max_depth: Option<u32>) -> bool {
    let depth = if relative.is_empty() { 0 } else { relative.split('/').count() as u32 };
    max_depth.is_none_or(|max| depth <= max)
}

/// The order ls(1) and du(1) walk a tree in: by name, each directory's contents right after it.
/// (The top, `""`, comes first: no name is empty.)
pub fn depth_first(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// `find [PATH...] [--name PATTERN] [--type f|d|l] [--maxdepth N]`: each path and everything below
/// it that matches, one per line, as find(1) prints them.
pub async fn find(session: &Session, args: &FindArgs, out: &mut (dyn Write + Send)) -> Result<()> {
    let kind_of = |kind: EntryKind| match kind {
        EntryKind::File => Some(FindKind::F),
        EntryKind::Dir => Some(FindKind::D),
        EntryKind::Symlink => Some(FindKind::L),
        EntryKind::Other => None,
    };
    let wanted = |path: &str, kind: EntryKind| {
        let name = path.rsplit('/').next().unwrap_or_default();
        args.name.as_deref().is_none_or(|pattern| matches(pattern, name))
            && args.kind.is_none_or(|wanted| kind_of(kind) == Some(wanted))
    };
    let mut text = String::new();
    for (label, found) in found(session, &args.paths).await? {
        let top_kind = match &found {
            Found::Tree(_) => EntryKind::Dir,
            Found::Single(kind, _) => *kind,
        };
        let mut shown = Vec::new();
        if wanted(&label, top_kind) {
            shown.push(label.clone());
        }
        if let Found::Tree(mut entries) = found {
            entries.retain(|entry| {
                within(&entry.path, args.max_depth) && wanted(&entry.path, entry.kind)
            });
            entries.sort_by(|a, b| depth_first(&a.path, &b.path));
            shown.extend(entries.iter().map(|entry| below(&label, &entry.path)));
        }
        for path in shown {
            text += &format!("{}\n", crate::format::shown(&path));
        }
    }
    emit(out, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(items: &[(&str, EntryKind, u64)]) -> Vec<TreeEntry> {
        items
            .iter()
            .map(|&(path, kind, size)| TreeEntry {
                path: path.into(),
                kind,
                size,
                mtime: 0,
                version: String::new(),
            })
            .collect()
    }

    #[test]
    fn usage_sums_each_directory_after_its_contents() {
        use EntryKind::{Dir, File, Symlink};
        let entries = tree(&[
            ("a", Dir, 4096),
            ("a/b", Dir, 4096),
            ("a/b/f", File, 3000),
            ("a-c", Dir, 4096),
            ("a-c/z", File, 5),
            ("a/g", File, 10),
            ("l", Symlink, 1),
            ("top", File, 7),
        ]);
        assert_eq!(
            usage(&entries, false, None),
            [
                (3000, "a/b".to_owned()),
                (3010, "a".to_owned()),
                (5, "a-c".to_owned()),
                (3023, String::new())
            ]
        );
        let all = usage(&entries, true, None);
        let order: Vec<&str> = all.iter().map(|(_, path)| path.as_str()).collect();
        assert_eq!(order, ["a/b/f", "a/b", "a/g", "a", "a-c/z", "a-c", "l", "top", ""]);
        assert_eq!(usage(&entries, false, Some(0)), [(3023, String::new())]);
        assert_eq!(
            usage(&entries, true, Some(1)),
            [
                (3010, "a".to_owned()),
                (5, "a-c".into()),
                (1, "l".into()),
                (7, "top".into()),
                (3023, String::new())
            ]
        );
    }
}
