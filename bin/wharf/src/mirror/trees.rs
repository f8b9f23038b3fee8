//! Each side's tree as a mirror sees it: files with their sizes, versions and times, and folders.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use wharf_common::path::RemotePath;
use wharf_common::proto::{EntryKind, ErrorCode};

use super::STATE_FILE;
use crate::error::{ClientError, Result};
use crate::local::blocking;
use crate::session::Session;

/// One side's view of an entry: a file with its size and version, or a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    File { size: u64, version: String, mtime: i64 },
    Dir,
}

/// What a remote tree whose root is missing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MissingRoot {
    /// An error: the source of a download.
    Fails,
    /// An empty tree: the destination of an upload, in a dry run.
    IsEmpty,
    /// An empty tree, and the root is made: the destination of an upload.
    IsMade,
}

/// The remote tree below `root`.
pub(super) async fn remote_tree(
    session: &Session,
    root: &RemotePath,
    missing: MissingRoot,
) -> Result<BTreeMap<String, Node>> {
    let entries = match session.tree(root).await {
        Err(ClientError::Remote { code: ErrorCode::NotFound, .. })
            if missing != MissingRoot::Fails =>
        {
            if missing == MissingRoot::IsMade {
                session.mkdir(root, true).await?;
            }
            Vec::new()
        }
        other => other?,
    };
    Ok(entries
        .into_iter()
        .filter_map(|entry| {
            let node = match entry.kind {
                EntryKind::File => {
                    Node::File { size: entry.size, version: entry.version, mtime: entry.mtime }
                }
                EntryKind::Dir => Node::Dir,
                // Symlinks and special files are not mirrored: a symlink may point anywhere.
                _ => return None,
            };
            Some((entry.path, node))
        })
        .collect())
}

/// [`local_tree`] on a blocking thread: a walk of thousands of files must not stall the runtime
/// that keeps the connection alive.
pub(super) async fn local_tree_off_executor(
    root: &Path,
    may_be_missing: bool,
) -> Result<BTreeMap<String, Node>> {
    let root = root.to_owned();
    blocking(move || local_tree(&root, may_be_missing)).await
}

/// The local tree below `root`, without the mirror's own files and partial downloads; a missing root
/// is an empty tree when `may_be_missing`.
fn local_tree(root: &Path, may_be_missing: bool) -> Result<BTreeMap<String, Node>> {
    let mut tree = BTreeMap::new();
    let mut pending = vec![(root.to_owned(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Err(err) if may_be_missing && err.kind() == std::io::ErrorKind::NotFound => continue,
            other => other.map_err(|err| ClientError::local(dir.display().to_string(), err))?,
        };
        for entry in entries {
            let entry = entry.map_err(|err| ClientError::local(dir.display().to_string(), err))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if name.starts_with(STATE_FILE) || name.contains(".wharf-part") {
                continue;
            }
            let meta = entry
                .metadata()
                .map_err(|err| ClientError::local(entry.path().display().to_string(), err))?;
            let path = format!("{prefix}{name}");
            if meta.is_dir() {
                pending.push((entry.path(), format!("{path}/")));
                tree.insert(path, Node::Dir);
            } else if meta.is_file() {
                let node = Node::File {
                    size: meta.len(),
                    version: crate::local::content_version(&meta),
                    mtime: meta.mtime(),
                };
                tree.insert(path, node);
            }
        }
    }
    Ok(tree)
}
