//! `mkdir {path, parents}` → `ok`.

use super::{CmdResult, Session, parse_path};
use wharf_common::proto::Reply;

pub async fn run(session: &Session, path: &str, parents: bool) -> CmdResult {
    session.home.mkdir(&parse_path(path)?, parents).await?;
    Ok(Reply::Ok)
}
