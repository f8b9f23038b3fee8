//! `tree {path}` → `tree_entries {entries, done: false}`* then `tree_entries {entries, done: true}`,
//! and `digest {path}` → `digest {sha256, version}`: what a mirror compares.
//!
//! Pages are forwarded as the storage layer walks, so memory stays bounded whatever the tree's size.

use super::{CmdResult, Progress, Session, forward_pages, parse_path};
use wharf_common::proto::Reply;

pub async fn run(session: &Session, path: &str, progress: &Progress<'_>) -> CmdResult {
    let pages = session.home.tree(&parse_path(path)?).await?;
    forward_pages(pages, progress, |entries, done| Reply::TreeEntries { entries, done }).await
}

pub async fn digest(session: &Session, path: &str) -> CmdResult {
    let (sha256, version) = session.home.digest(&parse_path(path)?).await?;
    Ok(Reply::Digest { sha256: sha256.to_string(), version })
}
