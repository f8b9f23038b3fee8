//! `list {path}` → `entries {entries, done: false}`* then `entries {entries, done: true}`.
//!
//! Pages are forwarded as the storage layer reads them, so memory stays bounded by a couple of pages
//! whatever the directory's size; QUIC flow control slows the reading down to the client's pace.

use super::{CmdResult, Progress, Session, forward_pages, parse_path};
use wharf_common::proto::Reply;

pub async fn run(session: &Session, path: &str, progress: &Progress<'_>) -> CmdResult {
    let pages = session.home.list(&parse_path(path)?).await?;
    forward_pages(pages, progress, |entries, done| Reply::Entries { entries, done }).await
}
