//! `stat {path}` → `stat {entry}`: metadata of one path, following symlinks inside the home.

use super::{CmdResult, Session, parse_path};
use wharf_common::proto::Reply;

pub async fn run(session: &Session, path: &str) -> CmdResult {
    let entry = session.home.stat(&parse_path(path)?).await?;
    Ok(Reply::Stat { entry })
}
