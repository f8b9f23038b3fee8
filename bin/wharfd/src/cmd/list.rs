//! `list {path}` → `entries {entries, done: false}`* then `entries {entries, done: true}`.
//!
//! Pages are forwarded as the storage layer reads them, so memory stays bounded by a couple of pages
//! whatever the directory's size; QUIC flow control slows the reading down to the client's pace.

use super::{CmdResult, Progress, Session, parse_path};
use wharf_common::proto::Reply;

pub async fn run(session: &Session, path: &str, progress: &Progress<'_>) -> CmdResult {
    let mut pages = session.home.list(&parse_path(path)?).await?;
    let mut previous = None;
    while let Some(page) = pages.recv().await {
        // Hold each page back by one, so that the last one can carry `done`.
        if let Some(entries) = previous.replace(page?)
            && !progress.send(Reply::Entries { entries, done: false }).await
        {
            break;
        }
    }
    Ok(Reply::Entries { entries: previous.unwrap_or_default(), done: true })
}
