//! `mirror [-R] [--delete] [--dry-run] [-j N] [REMOTE [LOCAL]]`: make LOCAL a copy of REMOTE (or,
//! with `-R`, REMOTE a copy of LOCAL), sending only files whose content differs.
//!
//! Both sides are listed once (the server walks its tree in pages). A file whose two versions (size,
//! modification time, change time, inode) are what they were when the last mirror left the pair
//! equal is unchanged without reading a byte: the client keeps those versions in `LOCAL/.wharf-mirror`.
//! A small file whose size or modification time differs is sent (that costs what comparing would);
//! any other file of equal size is compared by SHA-256, the server's recorded digest against the
//! local file's; a change that kept the size and modification time still moves the change time, so it
//! is caught. Transfers are ordinary verified, resumable transfers; `--delete` removes what the
//! source no longer has only after every transfer succeeded. What the mirror leaves equal is
//! remembered from the trees as read and from the uploads' answers, without listing again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wharf_common::hash::Sha256Digest;
use wharf_common::path::RemotePath;
use wharf_common::proto::ErrorCode;

use crate::copy::{CopyOptions, Job, SMALL_FILE};
use crate::error::{ClientError, Result};
use crate::exec::emit;
use crate::format::{human_bytes, shown};
use crate::local::blocking;
use crate::pipeline;
use crate::session::Session;

mod state;
mod trees;

pub use state::STATE_FILE;
use state::{State, after_uploads, load_state, remember_equal, save_state};
use trees::{MissingRoot, Node, local_tree_off_executor, remote_tree};

/// How a mirror runs.
#[derive(Debug, Clone, Copy)]
pub struct MirrorOptions {
    /// Local to remote (`-R`) instead of remote to local.
    pub reverse: bool,
    pub delete: bool,
    pub dry_run: bool,
    pub jobs: usize,
}

/// What the mirror will do.
#[derive(Debug, Default)]
struct Plan {
    new: Vec<(String, u64)>,
    changed: Vec<(String, u64)>,
    unchanged: Vec<String>,
    dirs: Vec<String>,
    delete: Vec<String>,
}

impl Plan {
    fn bytes(&self) -> u64 {
        self.new.iter().chain(&self.changed).map(|(_, size)| size).sum()
    }
}

/// Runs a mirror between `remote` (resolved against the working directory) and the local `local`.
pub async fn mirror(
    session: &Arc<Session>,
    remote: Option<&str>,
    local: Option<&str>,
    options: MirrorOptions,
    out: &mut (dyn Write + Send),
) -> Result<()> {
    let started = Instant::now();
    let remote_root = session.resolve(remote.unwrap_or("."))?;
    let local_root = PathBuf::from(local.unwrap_or("."));
    if !options.reverse && !options.dry_run {
        std::fs::create_dir_all(&local_root)
            .map_err(|err| ClientError::local(local_root.display().to_string(), err))?;
    }
    let missing = match (options.reverse, options.dry_run) {
        (false, _) => MissingRoot::Fails,
        (true, true) => MissingRoot::IsEmpty,
        (true, false) => MissingRoot::IsMade,
    };
    // The local walk runs while the remote tree is on its way.
    let (remote_side, local_side) = tokio::join!(
        remote_tree(session, &remote_root, missing),
        local_tree_off_executor(&local_root, !options.reverse)
    );
    let (remote_side, local_side) = (remote_side?, local_side?);
    let mut state = load_state(&local_root, &remote_root);
    let (source, dest) =
        if options.reverse { (&local_side, &remote_side) } else { (&remote_side, &local_side) };
    let plan = plan(session, &remote_root, &local_root, source, dest, &state, options).await?;
    if options.dry_run {
        return emit(out, &dry_run_text(&plan, options));
    }
    let jobs = jobs(&remote_root, &local_root, &plan, source, options.reverse)?;
    let copy = CopyOptions { jobs: options.jobs, ..CopyOptions::MIRROR };
    let mut uploaded = Vec::new();
    if options.reverse {
        let dirs = plan.dirs.iter().map(|dir| remote_path(&remote_root, dir));
        let dirs = dirs.collect::<Result<_>>()?;
        uploaded = crate::copy::put_tree(session, dirs, jobs, copy).await?;
    } else {
        make_local_dirs(&local_root, &plan.dirs)?;
        if !jobs.is_empty() {
            crate::copy::run(session, "get", jobs, copy).await?;
        }
    }
    if options.delete {
        delete(session, &remote_root, &local_root, &plan.delete, options.reverse).await?;
    }
    let sent_any = !plan.new.is_empty() || !plan.changed.is_empty();
    let deleted_any = options.delete && !plan.delete.is_empty();
    if !sent_any && plan.dirs.is_empty() && !deleted_any {
        // Nothing was changed: both sides are as read, and reading them again would cost a
        // round trip for nothing.
        remember_equal(source, &remote_side, &local_side, &mut state);
    } else if options.reverse {
        // Each upload's answer said its file's version: the remote tree need not be read again
        // (from a server too old to say, it is). The local versions are those read before the
        // uploads: a file changed since was sent as it is now, or not at all, and either way
        // its new version makes the next mirror compare it.
        let sent = plan
            .new
            .iter()
            .chain(&plan.changed)
            .map(|(path, _)| Ok((path.clone(), remote_path(&remote_root, path)?)));
        let sent = sent.collect::<Result<_>>()?;
        let remote_after = match after_uploads(remote_side.clone(), sent, &uploaded) {
            Some(known) => known,
            None => remote_tree(session, &remote_root, MissingRoot::Fails).await?,
        };
        remember_equal(source, &remote_after, &local_side, &mut state);
    } else {
        // Downloads changed only this side. The remote versions are those read before: a file
        // changed there since was downloaded as it is now, and its new version, not the one
        // remembered, makes the next mirror compare it again. No round trip to read them again.
        let local_after = local_tree_off_executor(&local_root, false).await?;
        remember_equal(source, &remote_side, &local_after, &mut state);
    }
    save_state(&local_root, &state)?;
    let deleted = if options.delete { plan.delete.len() } else { 0 };
    emit(
        out,
        &format!(
            "mirror: {} sent ({}), {} unchanged, {deleted} deleted, in {:.1} s\n",
            plan.new.len() + plan.changed.len(),
            human_bytes(plan.bytes()),
            plan.unchanged.len(),
            started.elapsed().as_secs_f64()
        ),
    )
}

async fn plan(
    session: &Session,
    remote_root: &RemotePath,
    local_root: &Path,
    source: &BTreeMap<String, Node>,
    dest: &BTreeMap<String, Node>,
    state: &State,
    options: MirrorOptions,
) -> Result<Plan> {
    let mut plan = Plan::default();
    // Files of equal size that the state does not vouch for: compared by content, all at once.
    let mut undecided = Vec::new();
    for (path, node) in source {
        let Node::File { size, version, mtime } = node else {
            if dest.get(path) != Some(&Node::Dir) {
                plan.dirs.push(path.clone());
            }
            continue;
        };
        match dest.get(path) {
            None => plan.new.push((path.clone(), *size)),
            Some(Node::Dir) => {
                return Err(ClientError::Usage(format!(
                    "{path}: a file on one side and a directory on the other; move one of them"
                )));
            }
            Some(Node::File { size: other_size, version: other_version, mtime: other_mtime }) => {
                let (local, remote) = if options.reverse {
                    (version, other_version)
                } else {
                    (other_version, version)
                };
                let remembered = state.files.get(path);
                if remembered.is_some_and(|(l, r)| l == local && r == remote) {
                    plan.unchanged.push(path.clone());
                } else if size != other_size || (mtime != other_mtime && *size < SMALL_FILE) {
                    // A small file whose time differs is sent rather than compared: sending it
                    // costs the round trip that asking for its digest would.
                    plan.changed.push((path.clone(), *size));
                } else {
                    undecided.push((path.clone(), *size));
                }
            }
        }
    }
    // A small file's comparison costs a round trip; a large one's, reading it at both ends, so
    // large files are compared `-j` at a time, as they would be sent.
    let (small, large): (Vec<_>, Vec<_>) =
        undecided.into_iter().partition(|(_, size)| *size < SMALL_FILE);
    let compare = |(path, size): (String, u64)| async move {
        let same = same_content(session, remote_root, local_root, &path).await?;
        Ok((path, size, same))
    };
    let mut compared = pipeline::each(session, small, compare).await?;
    compared.extend(pipeline::each_at_most(options.jobs, large, compare).await?);
    for (path, size, same) in compared {
        if same {
            plan.unchanged.push(path);
        } else {
            plan.changed.push((path, size));
        }
    }
    // In the tree's order, as they would be without the comparisons set apart.
    plan.changed.sort();
    plan.unchanged.sort();
    for path in dest.keys() {
        let covered = plan.delete.iter().any(|gone| path.starts_with(&format!("{gone}/")));
        if !source.contains_key(path) && !covered {
            plan.delete.push(path.clone());
        }
    }
    Ok(plan)
}

/// Whether the remote and local files at `path` hold the same bytes, by SHA-256: the server's
/// (recorded, or read once) against the local file's, the two worked out at the same time.
async fn same_content(
    session: &Session,
    remote_root: &RemotePath,
    local_root: &Path,
    path: &str,
) -> Result<bool> {
    let local = local_root.join(path);
    let shown = local.display().to_string();
    let local_digest = async {
        blocking(move || {
            let mut file = std::fs::File::open(&local)?;
            let mut hasher = sha2::Sha256::default();
            std::io::copy(&mut file, &mut hasher)?;
            Ok::<_, std::io::Error>(Sha256Digest::from_hasher(hasher))
        })
        .await
        .map_err(|err| ClientError::local(shown, err))
    };
    let remote_path = remote_path(remote_root, path)?;
    let ((remote, _), local) = tokio::try_join!(session.digest(&remote_path), local_digest)?;
    Ok(local.to_string() == remote)
}

fn remote_path(root: &RemotePath, relative: &str) -> Result<RemotePath> {
    root.join(relative).map_err(|err| ClientError::Remote {
        code: ErrorCode::InvalidPath,
        message: format!("{root}/{relative}: {err}"),
    })
}

fn make_local_dirs(local_root: &Path, dirs: &[String]) -> Result<()> {
    for dir in dirs {
        let local = local_root.join(dir);
        std::fs::create_dir_all(&local)
            .map_err(|err| ClientError::local(local.display().to_string(), err))?;
    }
    Ok(())
}

fn jobs(
    remote_root: &RemotePath,
    local_root: &Path,
    plan: &Plan,
    source: &BTreeMap<String, Node>,
    reverse: bool,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for (path, size) in plan.new.iter().chain(&plan.changed) {
        let mtime = match source.get(path) {
            Some(Node::File { mtime, .. }) => Some(*mtime),
            _ => None,
        };
        jobs.push(Job {
            local: local_root.join(path),
            remote: remote_path(remote_root, path)?,
            size: Some(*size),
            mtime,
            // An upload makes the new folders it goes into.
            make_parents: reverse,
            into_if_folder: false,
        });
    }
    Ok(jobs)
}

/// Deletes `paths` (none inside another) on the destination side.
async fn delete(
    session: &Session,
    remote_root: &RemotePath,
    local_root: &Path,
    paths: &[String],
    reverse: bool,
) -> Result<()> {
    if reverse {
        pipeline::each(session, paths.iter().cloned(), |path| async move {
            session.remove(&remote_path(remote_root, &path)?, true).await
        })
        .await?;
        return Ok(());
    }
    for path in paths {
        let local = local_root.join(path);
        let removed = if local.is_dir() {
            std::fs::remove_dir_all(&local)
        } else {
            std::fs::remove_file(&local)
        };
        removed.map_err(|err| ClientError::local(local.display().to_string(), err))?;
    }
    Ok(())
}

fn dry_run_text(plan: &Plan, options: MirrorOptions) -> String {
    let mut text = String::new();
    for (path, size) in &plan.new {
        text.push_str(&format!("new      {} ({})\n", shown(path), human_bytes(*size)));
    }
    for (path, size) in &plan.changed {
        text.push_str(&format!("changed  {} ({})\n", shown(path), human_bytes(*size)));
    }
    if options.delete {
        for path in &plan.delete {
            text.push_str(&format!("delete   {}\n", shown(path)));
        }
    }
    let deleted = if options.delete { plan.delete.len() } else { 0 };
    text.push_str(&format!(
        "dry run: {} new, {} changed, {} unchanged, {deleted} to delete, {} to send; nothing was changed\n",
        plan.new.len(),
        plan.changed.len(),
        plan.unchanged.len(),
        human_bytes(plan.bytes())
    ));
    text
}
