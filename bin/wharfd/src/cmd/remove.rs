//! `remove {path, recursive}` → `ok`: deletes a file, a symlink, or with `recursive` a tree, and gives
//! the freed bytes back to the quota.

use super::{CmdResult, Session, parse_path};
use wharf_common::proto::Reply;

pub async fn run(session: &Session, path: &str, recursive: bool) -> CmdResult {
    let path = parse_path(path)?;
    let ledger = session.ledger.get().await?;
    ledger.release(session.home.remove(&path, recursive).await?);
    Ok(Reply::Ok)
}
