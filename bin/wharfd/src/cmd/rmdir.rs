//! `rmdir {path}` → `ok`: removes an empty directory.

use super::{CmdResult, Session, parse_path};
use wharf_common::proto::Reply;

pub async fn run(session: &Session, path: &str) -> CmdResult {
    session.home.rmdir(&parse_path(path)?).await?;
    Ok(Reply::Ok)
}
